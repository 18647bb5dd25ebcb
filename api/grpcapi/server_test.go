package grpcapi

// These tests run the real gRPC stack in-process against a fake Backend that echoes
// its inputs or returns canned results, so they exercise the wire format, the
// conversions and the error mapping. End-to-end tests against the real serving
// Manager and ONNX Runtime live elsewhere (written by the lead).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/tensor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend echoes inputs as outputs, except for a few model names that fail or
// return canned outputs. It records the namespace of every call.
type fakeBackend struct {
	mu  sync.Mutex
	nss []string
}

func (f *fakeBackend) record(ns string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nss = append(f.nss, ns)
}

func (f *fakeBackend) lastNS() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.nss) == 0 {
		return ""
	}
	return f.nss[len(f.nss)-1]
}

// ResolveInputs knows every model but "missing", and no model's inputs.
func (f *fakeBackend) ResolveInputs(_ context.Context, _, model, _ string) ([]tensor.TensorSpec, bool, error) {
	if model == "missing" {
		return nil, false, errs.New(errs.NotFound, "model %q not found", model)
	}
	return nil, false, nil
}

func (f *fakeBackend) Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
	f.record(req.Namespace)
	switch req.Model {
	case "missing":
		return nil, errs.New(errs.NotFound, "model %q not found", req.Model)
	case "busy":
		return nil, errs.New(errs.ResourceExhausted, "queue full")
	case "expired":
		return nil, fmt.Errorf("run: %w", context.DeadlineExceeded)
	case "slow":
		<-ctx.Done()
		return nil, ctx.Err()
	case "boom":
		return nil, errors.New("secret internal detail")
	case "panic":
		panic("secret panic detail")
	case "fp16out":
		return &serving.InferResponse{ModelName: req.Model, ModelVersion: "3", Outputs: []*tensor.Tensor{
			{Name: "h", DataType: tensor.FP16, Shape: []int64{2}, Data: []byte{0x00, 0x3c, 0x00, 0xc0}},
			{Name: "f", DataType: tensor.FP32, Shape: []int64{1}, Data: []byte{0, 0, 0x80, 0x3f}},
		}}, nil
	case "badout":
		return &serving.InferResponse{ModelName: req.Model, Outputs: []*tensor.Tensor{
			{Name: "y", DataType: tensor.FP32, Shape: []int64{2}, Data: []byte{1, 2, 3}},
		}}, nil
	}
	resp := &serving.InferResponse{ModelName: req.Model, ModelVersion: "7", ID: req.ID, Parameters: req.Parameters}
	for _, in := range req.Inputs {
		if len(req.Outputs) > 0 && !wanted(req.Outputs, in.Name) {
			continue
		}
		resp.Outputs = append(resp.Outputs, in)
	}
	return resp, nil
}

func wanted(outs []serving.OutputRequest, name string) bool {
	for _, o := range outs {
		if o.Name == name {
			return true
		}
	}
	return false
}

func (f *fakeBackend) ModelMetadata(_ context.Context, ns, model, version string) (*serving.ModelMetadata, error) {
	f.record(ns)
	if model == "missing" {
		return nil, errs.New(errs.NotFound, "model %q not found", model)
	}
	return &serving.ModelMetadata{
		Name: model, Versions: []string{"1", "2"}, Platform: "onnxruntime_onnx",
		Inputs: []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}}},
		Outputs: []tensor.TensorSpec{
			{Name: "label", DataType: tensor.Int64, Shape: []int64{-1}, Kind: "tensor"},
			{Name: "probs", Shape: []int64{-1}, Kind: "seq(map(int64,tensor(float)))"},
		},
	}, nil
}

func (f *fakeBackend) ModelReady(_ context.Context, ns, model, version string) (bool, error) {
	f.record(ns)
	if model == "missing" {
		return false, errs.New(errs.NotFound, "model %q not found", model)
	}
	return version != "0", nil
}

func (f *fakeBackend) ServerReady(context.Context) bool { return true }

func (f *fakeBackend) ServerMetadata() serving.ServerMetadata {
	return serving.ServerMetadata{Name: "nimbus", Version: "0.1.0", Extensions: []string{"model_repository"}}
}

type harness struct {
	client pb.GRPCInferenceServiceClient
	conn   *grpc.ClientConn
	fake   *fakeBackend
}

// start runs a real server on a random loopback port and dials it.
func start(t *testing.T, opts Options) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeBackend{}
	g := NewGRPCServer(opts)
	New(fake, opts).Register(g)
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &harness{client: pb.NewGRPCInferenceServiceClient(conn), conn: conn, fake: fake}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustEqual(t *testing.T, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("mismatch\n got: %s\nwant: %s", prototext.Format(got), prototext.Format(want))
	}
}

func param(v any) *pb.InferParameter {
	p, ok := paramToProto(v)
	if !ok {
		panic(fmt.Sprintf("bad test parameter %T", v))
	}
	return p
}

func TestModelInferTypedRoundTrip(t *testing.T) {
	h := start(t, Options{})
	ctx := testCtx(t)
	type C = pb.InferTensorContents
	tests := []struct {
		dt    string
		shape []int64
		c     *C
	}{
		{"BOOL", []int64{2}, &C{BoolContents: []bool{true, false}}},
		{"UINT8", []int64{3}, &C{UintContents: []uint32{0, 1, 255}}},
		{"UINT16", []int64{2}, &C{UintContents: []uint32{0, math.MaxUint16}}},
		{"UINT32", []int64{2}, &C{UintContents: []uint32{0, math.MaxUint32}}},
		{"UINT64", []int64{2}, &C{Uint64Contents: []uint64{0, math.MaxUint64}}},
		{"INT8", []int64{3}, &C{IntContents: []int32{math.MinInt8, 0, math.MaxInt8}}},
		{"INT16", []int64{2}, &C{IntContents: []int32{math.MinInt16, math.MaxInt16}}},
		{"INT32", []int64{2}, &C{IntContents: []int32{math.MinInt32, math.MaxInt32}}},
		{"INT64", []int64{1, 2}, &C{Int64Contents: []int64{math.MinInt64, math.MaxInt64}}},
		{"FP32", []int64{2, 2}, &C{Fp32Contents: []float32{1.5, -2, float32(math.Inf(1)), math.SmallestNonzeroFloat32}}},
		{"FP64", []int64{3}, &C{Fp64Contents: []float64{math.Pi, math.Inf(-1), -0.5}}},
		{"BYTES", []int64{3}, &C{BytesContents: [][]byte{[]byte("hello"), {}, {0, 0xff}}}},
		{"FP32", []int64{}, &C{Fp32Contents: []float32{42}}}, // scalar
		{"INT64", []int64{0, 3}, &C{}},                       // empty tensor
	}
	for _, tt := range tests {
		t.Run(tt.dt+tensor.ShapeString(tt.shape), func(t *testing.T) {
			tparams := map[string]*pb.InferParameter{"note": param("t")}
			req := &pb.ModelInferRequest{
				ModelName: "echo", Id: "req-1",
				Parameters: map[string]*pb.InferParameter{
					"b": param(true), "i": param(int64(-3)), "s": param("x"), "d": param(0.25),
				},
				Inputs: []*pb.ModelInferRequest_InferInputTensor{
					{Name: "x", Datatype: tt.dt, Shape: tt.shape, Contents: tt.c, Parameters: tparams},
				},
			}
			resp, err := h.client.ModelInfer(ctx, req)
			if err != nil {
				t.Fatalf("ModelInfer: %v", err)
			}
			want := &pb.ModelInferResponse{
				ModelName: "echo", ModelVersion: "7", Id: "req-1", Parameters: req.Parameters,
				Outputs: []*pb.ModelInferResponse_InferOutputTensor{
					{Name: "x", Datatype: tt.dt, Shape: tt.shape, Contents: tt.c, Parameters: tparams},
				},
			}
			mustEqual(t, resp, want)
		})
	}
}

// rawOf encodes values as raw_input_contents would carry them.
func rawOf(dt tensor.DataType, vals ...uint64) []byte {
	var b []byte
	for _, v := range vals {
		switch dt.Size() {
		case 1:
			b = append(b, byte(v))
		case 2:
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		case 4:
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		case 8:
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

func rawStrings(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func TestModelInferRawRoundTrip(t *testing.T) {
	h := start(t, Options{})
	req := &pb.ModelInferRequest{ModelName: "echo", ModelVersion: "7"}
	for dt := tensor.Bool; dt <= tensor.Bytes; dt++ {
		raw := rawOf(dt, 1, 0, 255)
		if dt == tensor.Bytes {
			raw = rawStrings("a", "", "ccc")
		}
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{
			Name: "in_" + dt.String(), Datatype: dt.String(), Shape: []int64{1, 3},
		})
		req.RawInputContents = append(req.RawInputContents, raw)
	}
	resp, err := h.client.ModelInfer(testCtx(t), req)
	if err != nil {
		t.Fatalf("ModelInfer: %v", err)
	}
	want := &pb.ModelInferResponse{ModelName: "echo", ModelVersion: "7", RawOutputContents: req.RawInputContents}
	for _, in := range req.Inputs {
		want.Outputs = append(want.Outputs, &pb.ModelInferResponse_InferOutputTensor{
			Name: in.Name, Datatype: in.Datatype, Shape: in.Shape,
		})
	}
	mustEqual(t, resp, want)
}

// TestModelInferRawInRawOut: a raw request whose outputs all have typed fields
// still gets raw outputs. TestModelInferRawRoundTrip cannot show this, because its
// FP16 and BF16 outputs force raw whatever the request used.
func TestModelInferRawInRawOut(t *testing.T) {
	h := start(t, Options{})
	req := &pb.ModelInferRequest{
		ModelName: "echo",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{2}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{1}},
		},
		RawInputContents: [][]byte{rawOf(tensor.FP32, uint64(math.Float32bits(1)), uint64(math.Float32bits(-2))), rawStrings("hi")},
	}
	resp, err := h.client.ModelInfer(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, resp, &pb.ModelInferResponse{
		ModelName: "echo", ModelVersion: "7",
		Outputs: []*pb.ModelInferResponse_InferOutputTensor{
			{Name: "x", Datatype: "FP32", Shape: []int64{2}},
			{Name: "s", Datatype: "BYTES", Shape: []int64{1}},
		},
		RawOutputContents: req.RawInputContents,
	})
}

func TestModelInferOutputSelectionAndFP16Fallback(t *testing.T) {
	h := start(t, Options{})
	ctx := testCtx(t)
	req := &pb.ModelInferRequest{
		ModelName: "echo",
		Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "a", Datatype: "INT32", Shape: []int64{1}, Contents: &pb.InferTensorContents{IntContents: []int32{1}}},
			{Name: "b", Datatype: "INT32", Shape: []int64{1}, Contents: &pb.InferTensorContents{IntContents: []int32{2}}},
		},
		Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "b"}},
	}
	resp, err := h.client.ModelInfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Outputs) != 1 || resp.Outputs[0].Name != "b" {
		t.Fatalf("outputs = %v, want only b", resp.Outputs)
	}

	// A typed request whose answer holds FP16 must switch every output to raw.
	// The fake does not echo the id; the server must.
	req = &pb.ModelInferRequest{ModelName: "fp16out", Id: "r2"}
	resp, err = h.client.ModelInfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.ModelInferResponse{
		ModelName: "fp16out", ModelVersion: "3", Id: "r2",
		Outputs: []*pb.ModelInferResponse_InferOutputTensor{
			{Name: "h", Datatype: "FP16", Shape: []int64{2}},
			{Name: "f", Datatype: "FP32", Shape: []int64{1}},
		},
		RawOutputContents: [][]byte{{0x00, 0x3c, 0x00, 0xc0}, {0, 0, 0x80, 0x3f}},
	}
	mustEqual(t, resp, want)
}

func TestModelInferInvalid(t *testing.T) {
	h := start(t, Options{})
	ctx := testCtx(t)
	type In = pb.ModelInferRequest_InferInputTensor
	type C = pb.InferTensorContents
	fp32x := func(shape []int64, c *C) []*In {
		return []*In{{Name: "x", Datatype: "FP32", Shape: shape, Contents: c}}
	}
	tests := []struct {
		name string
		req  *pb.ModelInferRequest
		want string
	}{
		{"no model", &pb.ModelInferRequest{}, "model_name is required"},
		{"typed count", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{1, 4}, &C{Fp32Contents: []float32{1, 2, 3}})},
			`input "x": shape [1,4] needs 4 elements, got 3`},
		{"typed none", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{2}, nil)},
			`input "x": shape [2] needs 2 elements, got 0`},
		{"raw size", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{1, 4}, nil), RawInputContents: [][]byte{make([]byte, 12)}},
			`raw_input_contents[0] for input "x" has 12 bytes, shape [1,4] of FP32 needs 16`},
		{"mixed", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{1}, &C{Fp32Contents: []float32{1}}), RawInputContents: [][]byte{make([]byte, 4)}},
			`input "x": contents must not be set when raw_input_contents is used`},
		{"raw count", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{1}, nil), RawInputContents: [][]byte{{}, {}}},
			"raw_input_contents has 2 entries for 1 inputs; it needs one per input"},
		{"wrong field", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{1}, &C{IntContents: []int32{1}})},
			`input "x": FP32 data belongs in fp32_contents, got int_contents`},
		{"fp16 typed", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "h", Datatype: "FP16", Shape: []int64{1}}}},
			`input "h": FP16 data must be sent in raw_input_contents`},
		{"bf16 typed field", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "h", Datatype: "BF16", Shape: []int64{1}, Contents: &C{Fp32Contents: []float32{1}}}}},
			`input "h": BF16 data must be sent in raw_input_contents, got fp32_contents`},
		{"unknown datatype", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "x", Datatype: "fp32"}}},
			`input "x": unknown datatype "fp32"`},
		{"negative dim", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{-1, 4}, nil)},
			`input "x": negative dimension -1 in shape [-1,4]`},
		{"huge shape", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{1 << 40, 1 << 40}, nil), RawInputContents: [][]byte{{}}},
			`input "x": shape [1099511627776,1099511627776] is too large`},
		{"huge but valid count", &pb.ModelInferRequest{ModelName: "m", Inputs: fp32x([]int64{1 << 30, 1 << 20}, &C{Fp32Contents: []float32{1}})},
			`input "x": shape [1073741824,1048576] needs 1125899906842624 elements, got 1`},
		{"int8 range", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "i", Datatype: "INT8", Shape: []int64{2}, Contents: &C{IntContents: []int32{1, 300}}}}},
			`input "i": int_contents[1] = 300 is out of range for INT8`},
		{"uint16 range", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "u", Datatype: "UINT16", Shape: []int64{1}, Contents: &C{UintContents: []uint32{70000}}}}},
			`input "u": uint_contents[0] = 70000 is out of range for UINT16`},
		{"bytes raw truncated", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "s", Datatype: "BYTES", Shape: []int64{2}}}, RawInputContents: [][]byte{rawStrings("abc", "de")[:12]}},
			`raw_input_contents[0] for input "s": element 1: length 2 runs past the end (1 bytes left)`},
		{"bytes raw prefix cut", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "s", Datatype: "BYTES", Shape: []int64{2}}}, RawInputContents: [][]byte{rawStrings("abc", "de")[:10]}},
			`raw_input_contents[0] for input "s": element 1: length prefix truncated at byte 7`},
		{"bytes raw trailing", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "s", Datatype: "BYTES", Shape: []int64{1}}}, RawInputContents: [][]byte{rawStrings("abc", "de")}},
			`raw_input_contents[0] for input "s": has 6 trailing bytes after 1 elements`},
		{"bytes raw too many", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "s", Datatype: "BYTES", Shape: []int64{1 << 40}}}, RawInputContents: [][]byte{rawStrings("abc")}},
			`raw_input_contents[0] for input "s": has 7 bytes, too few for 1099511627776 length-prefixed elements`},
		{"duplicate input", &pb.ModelInferRequest{ModelName: "m", Inputs: append(fp32x([]int64{0}, nil), fp32x([]int64{0}, nil)...)},
			`input "x" appears more than once`},
		{"duplicate input, not adjacent", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{
			{Name: "a", Datatype: "FP32", Shape: []int64{0}}, {Name: "b", Datatype: "FP32", Shape: []int64{0}}, {Name: "a", Datatype: "FP32", Shape: []int64{0}}}},
			`input "a" appears more than once`},
		{"duplicate among many inputs", &pb.ModelInferRequest{ModelName: "m", Inputs: manyInputs(20, "i7")},
			`input "i7" appears more than once`},
		{"raw without inputs", &pb.ModelInferRequest{ModelName: "m", RawInputContents: [][]byte{{1, 2, 3, 4}}},
			"raw_input_contents has 1 entries for 0 inputs; it needs one per input"},
		{"int8 below range", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "i", Datatype: "INT8", Shape: []int64{1}, Contents: &C{IntContents: []int32{-129}}}}},
			`input "i": int_contents[0] = -129 is out of range for INT8`},
		{"int16 range", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "i", Datatype: "INT16", Shape: []int64{2}, Contents: &C{IntContents: []int32{0, math.MaxInt16 + 1}}}}},
			`input "i": int_contents[1] = 32768 is out of range for INT16`},
		{"uint8 range", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "u", Datatype: "UINT8", Shape: []int64{1}, Contents: &C{UintContents: []uint32{256}}}}},
			`input "u": uint_contents[0] = 256 is out of range for UINT8`},
		{"empty parameter", &pb.ModelInferRequest{ModelName: "m", Parameters: map[string]*pb.InferParameter{"p": {}}},
			`parameter "p" has no value`},
		{"empty tensor parameter", &pb.ModelInferRequest{ModelName: "m", Inputs: []*In{{Name: "x", Datatype: "FP32", Shape: []int64{0}, Parameters: map[string]*pb.InferParameter{"p": nil}}}},
			`input "x": parameter "p" has no value`},
		{"empty output parameter", &pb.ModelInferRequest{ModelName: "m", Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y", Parameters: map[string]*pb.InferParameter{"p": {}}}}},
			`output "y": parameter "p" has no value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.ModelInfer(ctx, tt.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || st.Message() != tt.want {
				t.Fatalf("got %v %q, want InvalidArgument %q", st.Code(), st.Message(), tt.want)
			}
		})
	}
}

// manyInputs returns n empty FP32 inputs i0..i(n-1), plus one more named dup.
func manyInputs(n int, dup string) []*pb.ModelInferRequest_InferInputTensor {
	var ins []*pb.ModelInferRequest_InferInputTensor
	for i := range n {
		ins = append(ins, &pb.ModelInferRequest_InferInputTensor{Name: fmt.Sprintf("i%d", i), Datatype: "FP32", Shape: []int64{0}})
	}
	return append(ins, &pb.ModelInferRequest_InferInputTensor{Name: dup, Datatype: "FP32", Shape: []int64{0}})
}

func TestModelInferErrorMapping(t *testing.T) {
	m := telemetry.NewMetrics()
	h := start(t, Options{Metrics: m})
	ctx := testCtx(t)
	tests := []struct {
		model   string
		timeout time.Duration
		code    codes.Code
		msg     string
	}{
		{model: "missing", code: codes.NotFound, msg: `model "missing" not found`},
		{model: "busy", code: codes.ResourceExhausted, msg: "queue full"},
		{model: "expired", code: codes.DeadlineExceeded, msg: "deadline exceeded"},
		{model: "slow", timeout: 50 * time.Millisecond, code: codes.DeadlineExceeded},
		{model: "boom", code: codes.Internal, msg: "internal error"},
		{model: "panic", code: codes.Internal, msg: "internal error"}, // recovered; the server lives on
		{model: "badout", code: codes.Internal, msg: `output "y" is malformed`},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			cctx := ctx
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			_, err := h.client.ModelInfer(cctx, &pb.ModelInferRequest{ModelName: tt.model})
			st := status.Convert(err)
			if st.Code() != tt.code || (tt.msg != "" && st.Message() != tt.msg) {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}
	if _, err := h.client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "echo"}); err != nil {
		t.Fatal(err)
	}
	// Requests no version answered share one series (telemetry drops client-chosen
	// names there to bound cardinality).
	want := map[string]float64{
		"default/echo/7/grpc/OK":    1,
		"///grpc/NotFound":          1,
		"///grpc/ResourceExhausted": 1,
		"///grpc/Internal":          2, // boom, badout
	}
	// The server may still be finishing the "slow" call when the client gives up, and
	// it sees either its own deadline or the client's cancellation first.
	slow := func(got map[string]float64) float64 {
		return got["///grpc/DeadlineExceeded"] + got["///grpc/Canceled"]
	}
	var got map[string]float64
	waitFor(t, 10*time.Second, func() bool {
		got = requestCounts(t, m)
		return slow(got) == 2 // expired + slow
	})
	for k, v := range want {
		if got[k] != v {
			t.Errorf("nimbus_requests_total{%s} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("condition not met within %v", timeout)
		}
	}
}

// requestCounts reads nimbus_requests_total keyed "ns/model/version/protocol/code".
func requestCounts(t *testing.T, m *telemetry.Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "nimbus_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range mt.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			k := strings.Join([]string{l["namespace"], l["model"], l["version"], l["protocol"], l["code"]}, "/")
			out[k] = mt.GetCounter().GetValue()
		}
	}
	return out
}

func TestNamespaceMetadata(t *testing.T) {
	h := start(t, Options{})
	ctx := testCtx(t)
	tests := []struct {
		name string
		md   []string
		want string
	}{
		{"default", nil, "default"},
		{"set", []string{NamespaceMetadataKey, "team-a"}, "team-a"},
		{"empty", []string{NamespaceMetadataKey, ""}, "default"},
		{"first of two", []string{NamespaceMetadataKey, "team-b", NamespaceMetadataKey, "team-c"}, "team-b"},
		{"other keys only", []string{"nimbus-other", "team-d"}, "default"},
	}
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"ModelInfer", func(ctx context.Context) error {
			_, err := h.client.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "echo"})
			return err
		}},
		{"ModelReady", func(ctx context.Context) error {
			_, err := h.client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "echo"})
			return err
		}},
		{"ModelMetadata", func(ctx context.Context) error {
			_, err := h.client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "echo"})
			return err
		}},
	}
	for _, tt := range tests {
		for _, c := range calls {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				cctx := ctx
				if tt.md != nil {
					cctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
				}
				if err := c.call(cctx); err != nil {
					t.Fatal(err)
				}
				if got := h.fake.lastNS(); got != tt.want {
					t.Fatalf("backend saw namespace %q, want %q", got, tt.want)
				}
			})
		}
	}
}

func TestMetadataAndReadiness(t *testing.T) {
	h := start(t, Options{})
	ctx := testCtx(t)

	live, err := h.client.ServerLive(ctx, &pb.ServerLiveRequest{})
	if err != nil || !live.Live {
		t.Fatalf("ServerLive = %v, %v", live, err)
	}
	ready, err := h.client.ServerReady(ctx, &pb.ServerReadyRequest{})
	if err != nil || !ready.Ready {
		t.Fatalf("ServerReady = %v, %v", ready, err)
	}
	sm, err := h.client.ServerMetadata(ctx, &pb.ServerMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, sm, &pb.ServerMetadataResponse{Name: "nimbus", Version: "0.1.0", Extensions: []string{"model_repository"}})

	mm, err := h.client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "iris"})
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, mm, &pb.ModelMetadataResponse{
		Name: "iris", Versions: []string{"1", "2"}, Platform: "onnxruntime_onnx",
		Inputs: []*pb.ModelMetadataResponse_TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}},
		Outputs: []*pb.ModelMetadataResponse_TensorMetadata{
			{Name: "label", Datatype: "INT64", Shape: []int64{-1}},
			{Name: "probs", Datatype: "", Shape: []int64{-1}},
		},
	})

	errTests := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"metadata missing", func() error {
			_, err := h.client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "missing"})
			return err
		}, codes.NotFound},
		{"metadata no name", func() error {
			_, err := h.client.ModelMetadata(ctx, &pb.ModelMetadataRequest{})
			return err
		}, codes.InvalidArgument},
		{"ready missing", func() error {
			_, err := h.client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "missing"})
			return err
		}, codes.NotFound},
		{"ready no name", func() error {
			_, err := h.client.ModelReady(ctx, &pb.ModelReadyRequest{})
			return err
		}, codes.InvalidArgument},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.call()); got != tt.code {
				t.Fatalf("code = %v, want %v", got, tt.code)
			}
		})
	}

	for version, want := range map[string]bool{"1": true, "0": false} {
		r, err := h.client.ModelReady(ctx, &pb.ModelReadyRequest{Name: "iris", Version: version})
		if err != nil || r.Ready != want {
			t.Fatalf("ModelReady(v%s) = %v, %v; want %v", version, r, err, want)
		}
	}
}

func TestHealthService(t *testing.T) {
	hs := health.NewServer()
	h := start(t, Options{Health: hs})
	ctx := testCtx(t)
	hc := healthpb.NewHealthClient(h.conn)
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return r.Status
	}
	for _, svc := range []string{"", ServiceName} {
		if got := check(svc); got != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, want SERVING", svc, got)
		}
	}
	hs.Shutdown() // what the caller does when draining
	for _, svc := range []string{"", ServiceName} {
		if got := check(svc); got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("after Shutdown, Check(%q) = %v, want NOT_SERVING", svc, got)
		}
	}
}

// TestHealthServiceDefault: without Options.Health the server still reports SERVING.
func TestHealthServiceDefault(t *testing.T) {
	h := start(t, Options{})
	r, err := healthpb.NewHealthClient(h.conn).Check(testCtx(t), &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check = %v, %v; want SERVING", r, err)
	}
}

func TestReflectionListsServices(t *testing.T) {
	h := start(t, Options{})
	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		got[s.GetName()] = true
	}
	for _, want := range []string{ServiceName, "grpc.health.v1.Health"} {
		if !got[want] {
			t.Errorf("reflection does not list %s; got %v", want, got)
		}
	}
	// grpcurl and similar tools also need the descriptor behind the name.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: ServiceName + ".ModelInfer"},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetErrorResponse(); e != nil || len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Fatalf("reflection cannot resolve %s.ModelInfer: %v", ServiceName, e)
	}
}

func TestMessageSizeLimit(t *testing.T) {
	// A request that fits the REST body limit must fit the gRPC one.
	if DefaultMaxMessageBytes != oip.DefaultMaxBodyBytes {
		t.Fatalf("DefaultMaxMessageBytes = %d, REST DefaultMaxBodyBytes = %d", DefaultMaxMessageBytes, oip.DefaultMaxBodyBytes)
	}
	bigReq := func(bytes int) *pb.ModelInferRequest {
		n := bytes / 4
		return &pb.ModelInferRequest{
			ModelName:        "echo",
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{int64(n)}}},
			RawInputContents: [][]byte{make([]byte, 4*n)},
		}
	}
	tests := []struct {
		name  string
		limit int
		bytes int
		code  codes.Code
	}{
		{"10MiB under default", 0, 10 << 20, codes.OK},                     // above gRPC's 4 MiB default
		{"just under default", 0, DefaultMaxMessageBytes - 1024, codes.OK}, // fails if the default shrinks
		{"over default", 0, DefaultMaxMessageBytes + 1024, codes.ResourceExhausted},
		{"under custom", 1 << 20, 1<<20 - 1024, codes.OK},
		{"over custom", 1 << 20, 2 << 20, codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, Options{MaxMessageBytes: tt.limit})
			req := bigReq(tt.bytes)
			resp, err := h.client.ModelInfer(testCtx(t), req)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.code)
			}
			if err == nil && len(resp.GetRawOutputContents()[0]) != len(req.RawInputContents[0]) {
				t.Fatalf("echoed %d bytes, want %d", len(resp.GetRawOutputContents()[0]), len(req.RawInputContents[0]))
			}
		})
	}
}
