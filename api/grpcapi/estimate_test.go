package grpcapi

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
)

// decodeAlloc is what proto.Unmarshal and RequestFromProto allocate for b: the
// least of a few runs with the collector off (other goroutines' allocations
// only ever add to one run).
func decodeAlloc(b []byte) int64 {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	best := int64(-1)
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m := &pb.ModelInferRequest{}
		if proto.Unmarshal(b, m) == nil {
			_, _ = RequestFromProto(m)
		}
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(m)
		if d := int64(after.TotalAlloc - before.TotalAlloc); best < 0 || d < best {
			best = d
		}
	}
	return best
}

// estimateCases are messages whose decoding cost the estimate must bound:
// ordinary requests and the shapes that inflate.
func estimateCases() map[string][]byte {
	marshal := func(m *pb.ModelInferRequest) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		return b
	}
	in := func(name, dt string, shape []int64, c *pb.InferTensorContents) *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: name, Datatype: dt, Shape: shape, Contents: c}
	}
	cases := map[string][]byte{}
	cases["raw fp32"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("x", "FP32", []int64{256, 64}, nil)},
		RawInputContents: [][]byte{make([]byte, 256*64*4)}})
	cases["typed fp32"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		in("x", "FP32", []int64{1000, 4}, &pb.InferTensorContents{Fp32Contents: make([]float32, 4000)})}})
	small := make([]int64, 20000)
	cases["typed int64 small values"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		in("ids", "INT64", []int64{1, 20000}, &pb.InferTensorContents{Int64Contents: small})}})
	cases["typed int8"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		in("b", "INT8", []int64{5000}, &pb.InferTensorContents{IntContents: make([]int32, 5000)})}})
	cases["typed bool"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		in("b", "BOOL", []int64{5000}, &pb.InferTensorContents{BoolContents: make([]bool, 5000)})}})
	words := make([][]byte, 10000)
	for i := range words {
		words[i] = []byte("word" + strconv.Itoa(i))
	}
	cases["typed bytes words"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		in("s", "BYTES", []int64{10000}, &pb.InferTensorContents{BytesContents: words})}})
	cases["typed bytes empty"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		in("s", "BYTES", []int64{50000}, &pb.InferTensorContents{BytesContents: make([][]byte, 50000)})}})
	cases["raw bytes empty"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{in("s", "BYTES", []int64{50000}, nil)},
		RawInputContents: [][]byte{make([]byte, 4*50000)}})
	params := map[string]*pb.InferParameter{}
	for i := range 3000 {
		params[strconv.Itoa(i)] = param(int64(i))
	}
	cases["many parameters"] = marshal(&pb.ModelInferRequest{ModelName: "m", Parameters: params})
	var outs []*pb.ModelInferRequest_InferRequestedOutputTensor
	var ins []*pb.ModelInferRequest_InferInputTensor
	for i := range 3000 {
		outs = append(outs, &pb.ModelInferRequest_InferRequestedOutputTensor{Name: strconv.Itoa(i)})
		ins = append(ins, in(strconv.Itoa(i), "FP32", []int64{1}, &pb.InferTensorContents{Fp32Contents: []float32{1}}))
	}
	cases["many outputs"] = marshal(&pb.ModelInferRequest{ModelName: "m", Outputs: outs})
	cases["many inputs"] = marshal(&pb.ModelInferRequest{ModelName: "m", Inputs: ins})

	// Hand-made wire: unpacked int64 elements, many packed chunks of one
	// field, unknown fields.
	var contents, chunks, unknown []byte
	for range 20000 {
		contents = protowire.AppendTag(contents, 3, protowire.VarintType)
		contents = protowire.AppendVarint(contents, 1)
	}
	for range 2000 {
		chunks = protowire.AppendTag(chunks, 3, protowire.BytesType)
		chunks = protowire.AppendBytes(chunks, []byte{1})
	}
	for i := range 20000 {
		unknown = protowire.AppendTag(unknown, protowire.Number(100+i%50), protowire.VarintType)
		unknown = protowire.AppendVarint(unknown, 7)
	}
	wrap := func(contents []byte) []byte {
		var input []byte
		input = protowire.AppendTag(input, 1, protowire.BytesType)
		input = protowire.AppendString(input, "ids")
		input = protowire.AppendTag(input, 2, protowire.BytesType)
		input = protowire.AppendString(input, "INT64")
		input = protowire.AppendTag(input, 5, protowire.BytesType)
		input = protowire.AppendBytes(input, contents)
		var req []byte
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendString(req, "m")
		req = protowire.AppendTag(req, 5, protowire.BytesType)
		return protowire.AppendBytes(req, input)
	}
	cases["unpacked int64"] = wrap(contents)
	cases["packed chunks"] = wrap(chunks)
	cases["unknown fields"] = append(marshal(&pb.ModelInferRequest{ModelName: "m"}), unknown...)
	return cases
}

// TestInferCostBoundsDecoding: for ordinary and inflating messages alike, the
// estimate is at least what decoding allocates, and not wildly more for
// ordinary requests (else honest requests would be refused).
func TestInferCostBoundsDecoding(t *testing.T) {
	for name, b := range estimateCases() {
		t.Run(name, func(t *testing.T) {
			est, got := inferCost(b), decodeAlloc(b)
			t.Logf("%d wire bytes: decoding allocates %d (%.1f×), estimated %d (%.1f×)",
				len(b), got, float64(got)/float64(len(b)), est, float64(est)/float64(len(b)))
			if est < got {
				t.Errorf("estimate %d is below the %d bytes decoding allocates", est, got)
			}
			if est > 3*got+4096 {
				t.Errorf("estimate %d is more than 3× the %d bytes decoding allocates", est, got)
			}
		})
	}
}

// FuzzInferCost: on any bytes the estimate never panics, and for any message
// the server would decode (within the bound) that protobuf accepts, it bounds
// what decoding allocates.
func FuzzInferCost(f *testing.F) {
	for _, b := range estimateCases() {
		if len(b) <= 4096 {
			f.Add(b)
		}
	}
	f.Add(mustMarshal(&pb.ModelInferRequest{ModelName: "m", Id: "1", Parameters: map[string]*pb.InferParameter{"a": param("x"), "b": param(true)},
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "s", Datatype: "BYTES", Shape: []int64{2},
			Contents: &pb.InferTensorContents{BytesContents: [][]byte{[]byte("a"), {}}}}},
		Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y", Parameters: map[string]*pb.InferParameter{"c": param(int64(2))}}}}))
	f.Add(mustMarshal(&pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "s", Datatype: "BYTES", Shape: []int64{2}}},
		RawInputContents: [][]byte{{1, 0, 0, 0, 'a', 0, 0, 0, 0}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		est := inferCost(b)
		if est > MaxDecodeFactor*int64(len(b))+decodeSlack {
			return // the server refuses it undecoded
		}
		if proto.Unmarshal(b, &pb.ModelInferRequest{}) != nil {
			return
		}
		if got := decodeAlloc(b); est < got-1024 {
			t.Fatalf("estimate %d is below the %d bytes decoding allocates", est, got)
		}
	})
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}
