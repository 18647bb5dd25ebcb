package grpcapi_test

// These tests call the inference service over a real serving manager (real
// registry over SQLite, ONNX Runtime) to check what happens before a request's
// tensors are converted.

import (
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nimbus-ai/nimbus/api/grpcapi"
	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// rawBytesRequest asks model for a BYTES input "x" of n empty elements, sent as
// raw_input_contents (4 bytes each): converting it takes 24 bytes per element.
func rawBytesRequest(model string, n int) *pb.ModelInferRequest {
	return &pb.ModelInferRequest{
		ModelName:        model,
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "BYTES", Shape: []int64{int64(n)}}},
		RawInputContents: [][]byte{make([]byte, 4*n)},
	}
}

// inferAlloc calls ModelInfer in-process and returns its error and what it
// allocated (the collector off, so every allocation counts).
func inferAlloc(t *testing.T, s *grpcapi.Server, req *pb.ModelInferRequest) (error, int64) {
	t.Helper()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := s.ModelInfer(context.Background(), req)
	runtime.ReadMemStats(&after)
	return err, int64(after.TotalAlloc - before.TotalAlloc)
}

// TestUnknownModelIsRefusedBeforeConversion: a request for a model that does
// not exist is refused NOT_FOUND before its 4 million BYTES elements are split
// (96 MB of slice headers).
func TestUnknownModelIsRefusedBeforeConversion(t *testing.T) {
	srv := testutil.StartServer(t)
	s := grpcapi.New(srv.Sys.Manager, grpcapi.Options{})
	req := rawBytesRequest("nope", 4<<20)
	err, alloc := inferAlloc(t, s, req)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown model: %v, want NOT_FOUND", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("refusing it allocated %d bytes: its tensors were converted first", alloc)
	}
}

// TestInputTheModelCannotTakeIsNotConverted: a BYTES tensor for a model whose
// input is FP32 is refused with the signature's message before it is split.
func TestInputTheModelCannotTakeIsNotConverted(t *testing.T) {
	srv := testutil.StartServer(t)
	srv.Push(t, "m", "mlp")
	ctx := context.Background()
	s := grpcapi.New(srv.Sys.Manager, grpcapi.Options{})
	req := rawBytesRequest("m", 4<<20)
	s.ModelInfer(ctx, req) // resolves and caches the model
	err, alloc := inferAlloc(t, s, req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "input x expects shape [-1,4] FP32, got [4194304] BYTES") {
		t.Fatalf("an input the model cannot take: %v", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("refusing it allocated %d bytes: the tensor was converted first", alloc)
	}
}
