package oip

import (
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
)

// checkDecoded holds the decoder to its contract on any input: an error is an
// InvalidArgument (or TooLarge past the decode bound); a success yields valid
// tensors that encode again.
func checkDecoded(t *testing.T, req *serving.InferRequest, err error) {
	if err != nil {
		if k := errs.KindOf(err); k != errs.InvalidArgument && k != errs.TooLarge {
			t.Fatalf("error kind %v: %v", k, err)
		}
		return
	}
	for _, in := range req.Inputs {
		if verr := in.Validate(); verr != nil {
			t.Fatalf("decoded an invalid tensor: %v", verr)
		}
	}
	for _, bin := range []bool{false, true} {
		if _, _, err := EncodeInferRequest(nil, req, bin); err != nil {
			t.Fatalf("re-encode (binary=%v): %v", bin, err)
		}
	}
	resp := &serving.InferResponse{ModelName: "m", Outputs: req.Inputs, Parameters: req.Parameters}
	if _, _, err := EncodeInferResponse(nil, resp, req); err != nil {
		t.Fatalf("encode response: %v", err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(inferBody))
	f.Add([]byte(`{"id":"1","parameters":{"a":1,"b":"x","c":true,"d":1.5},"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["a\u00e9","\ud83d\ude00"]}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`))
	f.Add(inputJSON("UINT64", "[2,1]", "[[18446744073709551615],[0]]"))
	f.Add(inputJSON("FP16", "[3]", `["NaN",65504,-6e-8]`))
	f.Add(inputJSON("BOOL", "[1,1,2]", "[[[true,false]]]"))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeInferRequest(body, 0)
		checkDecoded(t, req, err)
	})
}

func FuzzBinaryRequest(f *testing.F) {
	js := `{"inputs":[{"name":"u","shape":[2],"datatype":"UINT32","parameters":{"binary_data_size":8}},` +
		`{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":9}}]}`
	body, hl := binaryBody(js, le32(1, 2), bytesElems("ab", "c"))
	f.Add(hl, body)
	f.Add(0, []byte(inferBody))
	f.Add(len(inferBody), []byte(inferBody))
	f.Add(5, []byte(`{}`))
	f.Fuzz(func(t *testing.T, headerLen int, body []byte) {
		req, err := DecodeInferRequest(body, headerLen)
		checkDecoded(t, req, err)
	})
}
