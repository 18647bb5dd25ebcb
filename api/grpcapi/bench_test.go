package grpcapi

import (
	"encoding/binary"
	"math"
	"testing"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// bench64x4 is a 64-row × 4 FP32 request in both encodings, and a response with
// one 64×4 FP32 output.
func bench64x4() (raw, typed *pb.ModelInferRequest, resp *serving.InferResponse) {
	const rows, cols = 64, 4
	vals := make([]float32, rows*cols)
	data := make([]byte, 0, 4*len(vals))
	for i := range vals {
		vals[i] = float32(i%7)*0.25 - 0.5
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(vals[i]))
	}
	shape := []int64{rows, cols}
	in := func() *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: "x", Datatype: "FP32", Shape: shape}
	}
	raw = &pb.ModelInferRequest{ModelName: "bench", Id: "1", Inputs: []*pb.ModelInferRequest_InferInputTensor{in()},
		RawInputContents: [][]byte{data}}
	typedIn := in()
	typedIn.Contents = &pb.InferTensorContents{Fp32Contents: vals}
	typed = &pb.ModelInferRequest{ModelName: "bench", Id: "1", Inputs: []*pb.ModelInferRequest_InferInputTensor{typedIn}}
	resp = &serving.InferResponse{ModelName: "bench", ModelVersion: "1", ID: "1", Outputs: []*tensor.Tensor{
		{Name: "y", DataType: tensor.FP32, Shape: shape, Data: data},
	}}
	return raw, typed, resp
}

func BenchmarkConvert64x4FP32(b *testing.B) {
	raw, typed, resp := bench64x4()
	for _, bb := range []struct {
		name string
		req  *pb.ModelInferRequest
	}{{"raw", raw}, {"typed", typed}} {
		isRaw := bb.name == "raw"
		b.Run("RequestFromProto/"+bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := RequestFromProto(bb.req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("ResponseToProto/"+bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ResponseToProto(resp, isRaw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTypedPortablePath checks that the one-copy conversion of typed contents
// matches the per-element one used on big-endian hosts.
func TestTypedPortablePath(t *testing.T) {
	_, typed, resp := bench64x4()
	convert := func() ([]byte, []float32) {
		req, err := RequestFromProto(typed)
		if err != nil {
			t.Fatal(err)
		}
		out, err := ResponseToProto(resp, false)
		if err != nil {
			t.Fatal(err)
		}
		return req.Inputs[0].Data, out.Outputs[0].GetContents().GetFp32Contents()
	}
	fastIn, fastOut := convert()
	defer func(v bool) { hostLittleEndian = v }(hostLittleEndian)
	hostLittleEndian = false
	slowIn, slowOut := convert()
	if string(fastIn) != string(slowIn) || string(fastIn) != string(resp.Outputs[0].Data) {
		t.Fatal("typed input conversion differs between the fast and portable paths")
	}
	if string(asBytes(fastOut)) != string(asBytes(slowOut)) || string(asBytes(fastOut)) != string(resp.Outputs[0].Data) {
		t.Fatal("typed output conversion differs between the fast and portable paths")
	}
	for _, dt := range []struct {
		v int64
		u uint64
	}{{-3, 1<<63 + 5}, {math.MaxInt64, 0}} {
		var d [8]byte
		putLE(d[:], []int64{dt.v}, func(b []byte, v int64) { binary.LittleEndian.PutUint64(b, uint64(v)) })
		if int64(binary.LittleEndian.Uint64(d[:])) != dt.v {
			t.Fatal("putLE int64")
		}
		got := make([]uint64, 1)
		getLE(got, binary.LittleEndian.AppendUint64(nil, dt.u), binary.LittleEndian.Uint64)
		if got[0] != dt.u {
			t.Fatal("getLE uint64")
		}
	}
}
