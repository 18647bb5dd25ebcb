package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

func dialGRPC(t *testing.T, srv *testutil.Server) pb.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(srv.GRPC, append(srv.GRPCDialOptions(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewGRPCInferenceServiceClient(conn)
}

func TestGRPCInference(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "mlp", "--alias", "champion")
	mustCLI(t, srv, "-n", "payments", "models", "push", testutil.Model("multi_io"), "--name", "multi")
	c := dialGRPC(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if r, err := c.ServerLive(ctx, &pb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("live: %v %v", r, err)
	}
	if r, err := c.ServerReady(ctx, &pb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ready: %v %v", r, err)
	}
	if r, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "mlp"}); err != nil || !r.Ready {
		t.Fatalf("model ready: %v %v", r, err)
	}
	md, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "mlp"})
	if err != nil || md.Platform != "onnxruntime_onnx" || md.Inputs[0].Datatype != "FP32" || md.Inputs[0].Shape[1] != 4 {
		t.Fatalf("metadata: %v %v", md, err)
	}

	x := []float32{0.3, 12, 1, 0, -1, 2, -3, 4}
	want := rawRun(t, "mlp", f32Tensor("x", []int64{2, 4}, x...))

	// Typed contents in, typed contents out.
	resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "mlp", Id: "t1", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{2, 4}, Contents: &pb.InferTensorContents{Fp32Contents: x},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelVersion != "1" || resp.Id != "t1" || len(resp.RawOutputContents) != 0 {
		t.Fatalf("typed response: %+v", resp)
	}
	for _, o := range resp.Outputs {
		if !equalFloats(o.Contents.Fp32Contents, f32s(want[o.Name].Data)) {
			t.Errorf("typed %s = %v, raw = %v", o.Name, o.Contents.Fp32Contents, f32s(want[o.Name].Data))
		}
	}

	// Raw contents in, raw contents out (as Triton's clients expect).
	raw := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	resp, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "mlp", ModelVersion: "champion",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{2, 4}}},
		RawInputContents: [][]byte{raw},
		Outputs:          []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "probs"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Outputs) != 1 || resp.Outputs[0].Name != "probs" || len(resp.RawOutputContents) != 1 {
		t.Fatalf("raw response: %+v", resp)
	}
	if !bytes.Equal(resp.RawOutputContents[0], want["probs"].Data) {
		t.Errorf("raw probs differ from the raw runtime")
	}

	// Namespaces through metadata.
	nsCtx := metadata.AppendToOutgoingContext(ctx, "nimbus-namespace", "payments")
	resp, err = c.ModelInfer(nsCtx, &pb.ModelInferRequest{ModelName: "multi", Inputs: []*pb.ModelInferRequest_InferInputTensor{
		{Name: "a", Datatype: "FP32", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}},
		{Name: "b", Datatype: "INT64", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Int64Contents: []int64{1 << 40, 0, -5}}},
		{Name: "mask", Datatype: "BOOL", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{BoolContents: []bool{true, false, true}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range resp.Outputs {
		if o.Name == "count" && (o.Datatype != "INT64" || len(o.Contents.Int64Contents) != 1 || o.Contents.Int64Contents[0] != 2) {
			t.Errorf("count output: %+v", o)
		}
	}
	if _, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "multi"}); status.Code(err) != codes.NotFound {
		t.Errorf("default namespace sees payments/multi: %v", err)
	}

	// Errors carry the right codes and precise messages.
	_, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "mlp", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 3}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3}},
	}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "expects shape [-1,4] FP32, got [1,3] FP32") {
		t.Errorf("wrong shape: %v", err)
	}

	// A request past gRPC's 4 MiB default but within the configured limit works.
	rows := 300_000 // 300k x 4 x 4 bytes = 4.8 MB
	big := make([]byte, rows*16)
	resp, err = c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "mlp", Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), 4}}},
		RawInputContents: [][]byte{big}, Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y"}}})
	if err != nil || resp.Outputs[0].Shape[0] != int64(rows) {
		t.Fatalf("large request: %v", err)
	}
}

func TestGRPCHealthService(t *testing.T) {
	srv := testutil.StartServer(t)
	conn, err := grpc.NewClient(srv.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", r, err)
	}
}
