package oip

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// binaryBody joins a JSON header and binary parts, returning the body and header length.
func binaryBody(js string, parts ...[]byte) ([]byte, int) {
	b := []byte(js)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b, len(js)
}

func bytesElems(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = append(b, le32(uint32(len(s)))...)
		b = append(b, s...)
	}
	return b
}

func TestBinaryRequest(t *testing.T) {
	js := `{"inputs":[` +
		`{"name":"u","shape":[2,2],"datatype":"UINT32","parameters":{"binary_data_size":16}},` +
		`{"name":"j","shape":[2],"datatype":"FP32","data":[1,2]},` +
		`{"name":"b","shape":[3],"datatype":"BOOL","parameters":{"binary_data_size":3}},` +
		`{"name":"s","shape":[3],"datatype":"BYTES","parameters":{"binary_data_size":18}}],` +
		`"outputs":[{"name":"o","parameters":{"binary_data":true}}]}`
	body, hl := binaryBody(js, le32(1, 2, 3, 4), []byte{1, 0, 1}, bytesElems("abc", "", "\x00é"))
	req, err := DecodeInferRequest(body, hl)
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, req.Inputs[0], &tensor.Tensor{Name: "u", DataType: tensor.Uint32, Shape: []int64{2, 2}, Data: le32(1, 2, 3, 4)})
	sameTensor(t, req.Inputs[1], &tensor.Tensor{Name: "j", DataType: tensor.FP32, Shape: []int64{2}, Data: f32s(1, 2)})
	sameTensor(t, req.Inputs[2], &tensor.Tensor{Name: "b", DataType: tensor.Bool, Shape: []int64{3}, Data: []byte{1, 0, 1}})
	sameTensor(t, req.Inputs[3], &tensor.Tensor{Name: "s", DataType: tensor.Bytes, Shape: []int64{3},
		Strings: [][]byte{[]byte("abc"), {}, []byte("\x00é")}})
	if req.Inputs[0].Parameters[paramBinarySize] != int64(16) {
		t.Fatalf("parameters = %v", req.Inputs[0].Parameters)
	}
	roundTrip(t, req)
}

func TestBinaryResponse(t *testing.T) {
	out := []*tensor.Tensor{
		{Name: "a", DataType: tensor.FP32, Shape: []int64{2}, Data: f32s(1, 2), Parameters: map[string]any{"k": "v", paramBinarySize: int64(99)}},
		{Name: "b", DataType: tensor.Int8, Shape: []int64{1}, Data: []byte{0xff}},
		{Name: "c", DataType: tensor.Bytes, Shape: []int64{2}, Strings: [][]byte{[]byte("hi"), []byte("\xff")}},
	}
	resp := &serving.InferResponse{ModelName: "m", ModelVersion: "1", Outputs: out}
	tests := []struct {
		name     string
		req      *serving.InferRequest
		wantJSON string
		wantBin  []byte
	}{
		{
			name: "none",
			req:  &serving.InferRequest{},
			wantJSON: `{"model_name":"m","model_version":"1","outputs":[` +
				`{"name":"a","datatype":"FP32","shape":[2],"parameters":{"k":"v"},"data":[1,2]},` +
				`{"name":"b","datatype":"INT8","shape":[1],"data":[-1]},` +
				`{"name":"c","datatype":"BYTES","shape":[2],"data":["hi","\ufffd"]}]}`,
		},
		{
			name: "per output",
			req: &serving.InferRequest{Outputs: []serving.OutputRequest{
				{Name: "a", Parameters: map[string]any{"binary_data": true}}, {Name: "b"},
				{Name: "c", Parameters: map[string]any{"binary_data": true}},
			}},
			wantJSON: `{"model_name":"m","model_version":"1","outputs":[` +
				`{"name":"a","datatype":"FP32","shape":[2],"parameters":{"binary_data_size":8,"k":"v"}},` +
				`{"name":"b","datatype":"INT8","shape":[1],"data":[-1]},` +
				`{"name":"c","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":11}}]}`,
			wantBin: append(f32s(1, 2), bytesElems("hi", "\xff")...),
		},
		{
			name: "request-wide with an output override",
			req: &serving.InferRequest{
				Parameters: map[string]any{"binary_data_output": true},
				Outputs:    []serving.OutputRequest{{Name: "a", Parameters: map[string]any{"binary_data": false}}},
			},
			wantJSON: `{"model_name":"m","model_version":"1","outputs":[` +
				`{"name":"a","datatype":"FP32","shape":[2],"parameters":{"k":"v"},"data":[1,2]},` +
				`{"name":"b","datatype":"INT8","shape":[1],"parameters":{"binary_data_size":1}},` +
				`{"name":"c","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":11}}]}`,
			wantBin: append([]byte{0xff}, bytesElems("hi", "\xff")...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, hl, err := EncodeInferResponse([]byte("prefix"), resp, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			body = body[len("prefix"):]
			if tt.wantBin == nil {
				if hl != 0 || string(body) != tt.wantJSON {
					t.Fatalf("headerLen %d body\n%s\nwant\n%s", hl, body, tt.wantJSON)
				}
				return
			}
			if hl != len(tt.wantJSON) || string(body[:hl]) != tt.wantJSON || !bytes.Equal(body[hl:], tt.wantBin) {
				t.Fatalf("headerLen %d body\n%q\nwant\n%q", hl, body, tt.wantJSON+string(tt.wantBin))
			}
			if _, err := DecodeInferResponse(body, hl); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	in := func(fields string) string { return `{"inputs":[{` + fields + `}]}` }
	bin := func(dt, shape string, size int) string {
		return in(`"name":"x","shape":` + shape + `,"datatype":"` + dt + `","parameters":{"binary_data_size":` + strconv.Itoa(size) + `}`)
	}
	deep := strings.Repeat("[", 600) + strings.Repeat("]", 600)
	tests := []struct {
		name      string
		body      string
		headerLen int
		binary    []byte
		want      string
	}{
		// Malformed JSON, with offsets.
		{"empty body", ``, 0, nil, `invalid JSON at offset 0: unexpected end of input, expected '{'`},
		{"not an object", `[]`, 0, nil, `invalid JSON at offset 0: unexpected '[', expected '{'`},
		{"missing comma", `{"id":"a" "inputs":[]}`, 0, nil, `invalid JSON at offset 10: unexpected '"', expected ',' or '}' after object member`},
		{"truncated", `{"inputs":[{"name":"x"`, 0, nil, `invalid JSON at offset 22: unexpected end of input, expected ',' or '}' after object member`},
		{"unterminated string", `{"id":"abc`, 0, nil, `invalid JSON at offset 10: unexpected end of input in string starting at offset 6`},
		{"bad literal", `{"id":nul}`, 0, nil, `invalid JSON at offset 6: invalid literal, expected null`},
		{"bad number", `{"inputs":[{"name":"x","shape":[01]}]}`, 0, nil, `invalid JSON at offset 33: unexpected '1', expected ',' or ']' after array element`},
		{"bad escape", `{"id":"\q"}`, 0, nil, `invalid JSON at offset 7: invalid escape 'q' in string`},
		{"control char", "{\"id\":\"a\nb\"}", 0, nil, `invalid JSON at offset 8: control character 0x0a in string`},
		{"trailing data", `{"inputs":[]} x`, 0, nil, `invalid JSON at offset 14: unexpected 'x' after the top-level value`},
		{"too deep", `{"x":` + deep + `}`, 0, nil, `invalid JSON at offset 518: nesting deeper than 512 levels`},
		{"bad element syntax", in(`"name":"x","shape":[2],"datatype":"FP32","data":[1,]`), 0, nil, `invalid JSON at offset 63: unexpected ']', expected a value`},
		// Structure.
		{"no inputs", `{"id":"a"}`, 0, nil, `inputs is required`},
		{"id not a string", `{"id":42,"inputs":[]}`, 0, nil, `"id" at offset 6 must be a string`},
		{"parameter object", `{"parameters":{"p":{"a":1}},"inputs":[]}`, 0, nil, `parameter "p" at offset 19: value must be a string, number or boolean`},
		{"missing name", in(`"shape":[1],"datatype":"FP32","data":[1]`), 0, nil, `input 0: name is required`},
		{"missing datatype", in(`"name":"x","shape":[1],"data":[1]`), 0, nil, `input "x": datatype is required`},
		{"unknown datatype", in(`"name":"x","shape":[1],"datatype":"FP33","data":[1]`), 0, nil, `input "x": unknown datatype "FP33"`},
		{"missing shape", in(`"name":"x","datatype":"FP32","data":[1]`), 0, nil, `input "x": shape is required`},
		{"negative dim", in(`"name":"x","shape":[-1,2],"datatype":"FP32","data":[1]`), 0, nil, `input "x": negative dimension -1 in shape [-1,2]`},
		{"fractional dim", in(`"name":"x","shape":[1.5],"datatype":"FP32","data":[1]`), 0, nil, `input "x": shape dimension 0 at offset 32 must be an integer, got 1.5`},
		{"missing data", in(`"name":"x","shape":[1],"datatype":"FP32"`), 0, nil, `input "x": data is required (or parameters.binary_data_size with binary data)`},
		{"data not array", in(`"name":"x","shape":[1],"datatype":"FP32","data":1`), 0, nil, `input "x": data at offset 60 must be an array`},
		{"duplicate input", `{"inputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[true]},{"name":"x","shape":[1],"datatype":"BOOL","data":[true]}]}`, 0, nil, `input "x" appears more than once`},
		{"output without name", `{"inputs":[],"outputs":[{"parameters":{}}]}`, 0, nil, `output 0: name is required`},
		// Element values.
		{"uint8 overflow", string(inputJSON("UINT8", "[2]", "[1,256]")), 0, nil, `input "x": element 1: value 256 is out of range for UINT8`},
		{"uint64 negative", string(inputJSON("UINT64", "[1]", "[-1]")), 0, nil, `input "x": element 0: value -1 is out of range for UINT64`},
		{"int64 overflow", string(inputJSON("INT64", "[2]", "[0,9223372036854775808]")), 0, nil, `input "x": element 1: value 9223372036854775808 is out of range for INT64`},
		{"int8 underflow", string(inputJSON("INT8", "[1]", "[-129]")), 0, nil, `input "x": element 0: value -129 is out of range for INT8`},
		{"int not integer", string(inputJSON("INT32", "[2]", "[1,1.5]")), 0, nil, `input "x": element 1: 1.5 is not an integer`},
		{"int exponent", string(inputJSON("INT32", "[1]", "[1e3]")), 0, nil, `input "x": element 0: 1e3 is not an integer`},
		{"string for int", string(inputJSON("INT32", "[1]", `["1"]`)), 0, nil, `input "x": element 0: expected an integer for INT32, got a string`},
		{"bool for fp32", string(inputJSON("FP32", "[1]", `[true]`)), 0, nil, `input "x": element 0: expected a number for FP32, got a boolean`},
		{"number for bool", string(inputJSON("BOOL", "[1]", `[1]`)), 0, nil, `input "x": element 0: expected true or false for BOOL, got a number`},
		{"number for bytes", string(inputJSON("BYTES", "[1]", `[1]`)), 0, nil, `input "x": element 0: expected a string for BYTES, got a number`},
		{"null element", string(inputJSON("FP64", "[1]", `[null]`)), 0, nil, `input "x": element 0: expected a number for FP64, got null`},
		{"bad float string", string(inputJSON("FP32", "[1]", `["nan"]`)), 0, nil, `input "x": element 0: string "nan" is not a number (only "NaN", "Infinity" and "-Infinity" are)`},
		{"fp32 overflow", string(inputJSON("FP32", "[1]", `[1e39]`)), 0, nil, `input "x": element 0: value 1e39 is out of range for FP32`},
		{"fp64 overflow", string(inputJSON("FP64", "[1]", `[1e309]`)), 0, nil, `input "x": element 0: value 1e309 is out of range for FP64`},
		{"fp16 overflow", string(inputJSON("FP16", "[1]", `[70000]`)), 0, nil, `input "x": element 0: value 70000 is out of range for FP16`},
		{"bf16 overflow", string(inputJSON("BF16", "[1]", `[3.4e38]`)), 0, nil, `input "x": element 0: value 3.4e38 is out of range for BF16`},
		// Shape and nesting.
		{"too few elements", string(inputJSON("FP32", "[2,2]", "[1,2,3]")), 0, nil, `input "x": shape [2,2] needs 4 elements, data has 3`},
		{"too many elements", string(inputJSON("FP32", "[2]", "[1,2,3]")), 0, nil, `input "x": shape [2] needs 2 elements, data has 3`},
		{"nested dim", string(inputJSON("FP32", "[2,2]", "[[1,2],[3]]")), 0, nil, `input "x": data dimension 1 has 1 elements, shape [2,2] needs 2`},
		{"nested outer dim", string(inputJSON("FP32", "[2,2]", "[[1,2],[3,4],[5,6]]")), 0, nil, `input "x": data dimension 0 has 3 elements, shape [2,2] needs 2`},
		{"nested too deep", string(inputJSON("FP32", "[2,2]", "[[[1],[2]],[[3],[4]]]")), 0, nil, `input "x": data is nested deeper than shape [2,2] allows`},
		{"shape redefined after data", in(`"name":"x","shape":[1],"datatype":"FP32","data":[1],"shape":[2]`), 0, nil, `input "x": shape [2] needs 2 elements, data has 1`},
		{"datatype redefined after data", in(`"name":"x","shape":[1],"datatype":"FP32","data":[1.5],"datatype":"INT32"`), 0, nil, `input "x": element 0: 1.5 is not an integer`},
		{"nested on rank 1", string(inputJSON("FP32", "[2]", "[[1,2]]")), 0, nil, `input "x": data is nested deeper than shape [2] allows`},
		{"nested too shallow", string(inputJSON("FP32", "[1,2,2]", "[[1,2],[3,4]]")), 0, nil, `input "x": data is nested less deeply than shape [1,2,2] (rank 3)`},
		{"flat then nested", string(inputJSON("FP32", "[2,2]", "[1,[2]]")), 0, nil, `input "x": data is nested deeper than shape [2,2] allows`},
		// Binary data extension.
		{"data and binary size", in(`"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"binary_data_size":4}`), 0, nil, `input "x": has both data and parameters.binary_data_size`},
		{"negative binary size", bin("FP32", "[1]", -4), 0, nil, `input "x": parameters.binary_data_size must be a non-negative integer, got -4`},
		{"string binary size", in(`"name":"x","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":"4"}`), 0, nil, `input "x": parameters.binary_data_size must be a non-negative integer, got 4`},
		{"no header", bin("FP32", "[1]", 4), 0, nil, `input "x": parameters.binary_data_size is set but the request has no binary data (no Inference-Header-Content-Length header)`},
		{"too few bytes", bin("FP32", "[2]", 8), -1, le32(1), `input "x": binary_data_size 8 exceeds the 4 bytes of binary data left`},
		{"size mismatch", bin("FP32", "[2]", 4), -1, le32(1), `input "x": binary_data_size 4 does not match shape [2] of FP32 (8 bytes)`},
		{"leftover bytes", bin("FP32", "[1]", 4), -1, le32(1, 2), `binary data has 4 bytes left over after the last input`},
		{"leftover without binary inputs", string(inputJSON("FP32", "[1]", "[1]")), -1, []byte{1}, `binary data has 1 bytes left over after the last input`},
		{"header larger than body", `{}`, 10, nil, `Inference-Header-Content-Length 10 exceeds the body size 2`},
		{"negative header", `{}`, -5, nil, `Inference-Header-Content-Length must not be negative, got -5`},
		{"bytes length overruns", bin("BYTES", "[1]", 6), -1, append(le32(5), 'a', 'b'), `input "x": BYTES element 0: length 5 exceeds the 2 bytes left`},
		{"bytes short length", bin("BYTES", "[2]", 6), -1, append(le32(0), 'a', 'b'), `input "x": BYTES element 1: 2 bytes left, too few for its 4-byte length`},
		{"bytes too many", bin("BYTES", "[1]", 8), -1, bytesElems("", ""), `input "x": binary data holds more than the 1 BYTES elements of shape [1]`},
		{"bytes too few", bin("BYTES", "[2]", 4), -1, bytesElems(""), `input "x": binary data holds 1 BYTES elements, shape [2] needs 2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := append([]byte(tt.body), tt.binary...)
			hl := tt.headerLen
			if hl == -1 {
				hl = len(tt.body)
			}
			_, err := DecodeInferRequest(body, hl)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errs.PublicMessage(err); got != tt.want {
				t.Fatalf("error = %s\nwant    %s", got, tt.want)
			}
			if k := errs.KindOf(err); k != errs.InvalidArgument || k.HTTPStatus() != 400 {
				t.Fatalf("kind = %v", k)
			}
		})
	}
}
