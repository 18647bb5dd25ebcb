package grpcapi

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

func TestParamsRoundTrip(t *testing.T) {
	tests := []struct {
		in   any
		want any // after paramsToProto then paramsFromProto
	}{
		{true, true},
		{"s", "s"},
		{int64(-5), int64(-5)},
		{int(7), int64(7)},
		{int8(-1), int64(-1)},
		{uint32(9), int64(9)},
		{uint64(math.MaxInt64), int64(math.MaxInt64)},
		{uint64(math.MaxUint64), uint64(math.MaxUint64)},
		{float32(0.5), 0.5},
		{1.25, 1.25},
		{json.Number("12"), int64(12)},
		{json.Number("1.5"), 1.5},
	}
	for _, tt := range tests {
		p, err := paramsToProto("", map[string]any{"k": tt.in})
		if err != nil {
			t.Fatalf("paramsToProto(%T %v): %v", tt.in, tt.in, err)
		}
		back, err := paramsFromProto("", p)
		if err != nil {
			t.Fatalf("paramsFromProto: %v", err)
		}
		if back["k"] != tt.want {
			t.Errorf("%T %v came back as %T %v, want %T %v", tt.in, tt.in, back["k"], back["k"], tt.want, tt.want)
		}
	}
	_, err := paramsToProto("output \"y\": ", map[string]any{"k": []int{1}})
	if errs.KindOf(err) != errs.Internal || errs.PublicMessage(err) != `output "y": parameter "k" has unsupported type []int` {
		t.Fatalf("unsupported type: %v", err)
	}
}

func TestResponseToProtoErrors(t *testing.T) {
	tests := []struct {
		name string
		resp *serving.InferResponse
		want string
	}{
		{"nil response", nil, "backend returned no response"},
		{"nil output", &serving.InferResponse{Outputs: []*tensor.Tensor{nil}}, "backend returned a nil output"},
		{"invalid datatype", &serving.InferResponse{Outputs: []*tensor.Tensor{{Name: "y"}}},
			`output "y" is malformed`}, // the detail is the server's, for its log
		{"bytes count", &serving.InferResponse{Outputs: []*tensor.Tensor{{Name: "s", DataType: tensor.Bytes, Shape: []int64{2}}}},
			`output "s" is malformed`},
		{"bad parameter", &serving.InferResponse{Parameters: map[string]any{"p": struct{}{}}},
			`parameter "p" has unsupported type struct {}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, raw := range []bool{false, true} {
				_, err := ResponseToProto(tt.resp, raw)
				if errs.KindOf(err) != errs.Internal || errs.PublicMessage(err) != tt.want {
					t.Fatalf("raw=%v: got %v, want Internal %q", raw, err, tt.want)
				}
			}
		})
	}
}

func TestRawBytesEncoding(t *testing.T) {
	resp := &serving.InferResponse{Outputs: []*tensor.Tensor{
		{Name: "s", DataType: tensor.Bytes, Shape: []int64{3}, Strings: [][]byte{[]byte("ab"), nil, []byte("c")}},
	}}
	out, err := ResponseToProto(resp, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0, 1, 0, 0, 0, 'c'}
	if !bytes.Equal(out.RawOutputContents[0], want) {
		t.Fatalf("raw = %v, want %v", out.RawOutputContents[0], want)
	}
	if out.Outputs[0].Contents != nil {
		t.Fatal("raw response also set typed contents")
	}
}

// echoAsRequest turns a response into the request that would send the same tensors.
func echoAsRequest(resp *pb.ModelInferResponse) *pb.ModelInferRequest {
	req := &pb.ModelInferRequest{ModelName: "m", RawInputContents: resp.RawOutputContents}
	for _, o := range resp.Outputs {
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{
			Name: o.Name, Datatype: o.Datatype, Shape: o.Shape, Contents: o.Contents,
		})
	}
	return req
}

func FuzzModelInferRequest(f *testing.F) {
	seeds := []*pb.ModelInferRequest{
		{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{1, 2}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2}}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{1}, Contents: &pb.InferTensorContents{BytesContents: [][]byte{[]byte("a")}}},
			{Name: "i", Datatype: "INT8", Shape: []int64{1}, Contents: &pb.InferTensorContents{IntContents: []int32{-3}}},
		}, Parameters: map[string]*pb.InferParameter{"p": param(int64(1))}},
		{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "h", Datatype: "FP16", Shape: []int64{2}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{2}},
		}, RawInputContents: [][]byte{{0, 0x3c, 0, 0xc0}, rawStrings("ab", "")}},
		{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 1 << 62}}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.ModelInferRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		ir, err := RequestFromProto(&req)
		if err != nil {
			if errs.KindOf(err) != errs.InvalidArgument {
				t.Fatalf("rejected with %v, want InvalidArgument: %v", errs.KindOf(err), err)
			}
			return
		}
		for _, in := range ir.Inputs {
			if err := in.Validate(); err != nil {
				t.Fatalf("accepted an invalid tensor: %v", err)
			}
		}
		// Whatever was accepted must echo back in both forms, and the raw form must
		// parse again to the same tensors.
		echo := &serving.InferResponse{ModelName: ir.Model, Outputs: ir.Inputs}
		if _, err := ResponseToProto(echo, false); err != nil {
			t.Fatalf("typed echo: %v", err)
		}
		raw, err := ResponseToProto(echo, true)
		if err != nil {
			t.Fatalf("raw echo: %v", err)
		}
		again, err := RequestFromProto(echoAsRequest(raw))
		if err != nil {
			t.Fatalf("raw echo does not parse: %v", err)
		}
		for i, a := range again.Inputs {
			b := ir.Inputs[i]
			if a.DataType != b.DataType || !bytes.Equal(a.Data, b.Data) || len(a.Strings) != len(b.Strings) {
				t.Fatalf("input %d changed in the raw round trip", i)
			}
			for k := range a.Strings {
				if !bytes.Equal(a.Strings[k], b.Strings[k]) {
					t.Fatalf("input %d element %d changed in the raw round trip", i, k)
				}
			}
		}
	})
}

// TestRequestFromProtoNil: messages built in Go (not decoded from the wire) may hold
// nils; they are refused, never a panic.
func TestRequestFromProtoNil(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.ModelInferRequest
		want string
	}{
		{"nil request", nil, "model_name is required"},
		{"nil input", &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{nil}},
			`input "": unknown datatype ""`},
		{"nil raw entry", &pb.ModelInferRequest{ModelName: "m",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1}}},
			RawInputContents: [][]byte{nil}},
			`raw_input_contents[0] for input "x" has 0 bytes, shape [1] of FP32 needs 4`},
		{"nil output parameter", &pb.ModelInferRequest{ModelName: "m",
			Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{nil, {Name: "y", Parameters: map[string]*pb.InferParameter{"p": nil}}}},
			`output "y": parameter "p" has no value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RequestFromProto(tt.req)
			if errs.KindOf(err) != errs.InvalidArgument || errs.PublicMessage(err) != tt.want {
				t.Fatalf("got %v, want InvalidArgument %q", err, tt.want)
			}
		})
	}
	// A nil raw entry is a valid empty tensor.
	if _, err := RequestFromProto(&pb.ModelInferRequest{ModelName: "m",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{0}}},
		RawInputContents: [][]byte{nil}}); err != nil {
		t.Fatalf("empty tensor with a nil raw entry: %v", err)
	}
}
