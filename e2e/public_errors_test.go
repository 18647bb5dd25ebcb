package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	o "github.com/nimbus-ai/nimbus/runtime/onnx/onnxtest"
)

// TestInternalCausesNeverReachClients (issue 10 defect 7): what went wrong
// inside the server — ONNX Runtime's text, a dial error, an *os.PathError with
// the data dir's paths — is logged, and clients get the classified message
// only, over REST (OIP and management) and gRPC.
func TestInternalCausesNeverReachClients(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("lookup"), "--name", "lookup")
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "gone")
	// A model the inspector accepts and ONNX Runtime cannot load.
	noOp := filepath.Join(t.TempDir(), "noop.onnx")
	if err := os.WriteFile(noOp, o.Model(o.Graph{
		Nodes:   [][]byte{o.Node("n", "NoSuchOperator", []string{"x"}, []string{"y"})},
		Inputs:  [][]byte{o.ValueInfo("x", o.Float, -1, 4)},
		Outputs: [][]byte{o.ValueInfo("y", o.Float, -1, 4)},
	}.Bytes()), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, srv, "models", "push", noOp, "--name", "noop")
	// The blob of "gone" turns into a directory: reading it fails with an
	// *os.PathError that names the data dir.
	v, err := client.New(srv.URL, client.WithToken(srv.Token)).GetVersion(context.Background(), "default", "gone", "1")
	if err != nil {
		t.Fatal(err)
	}
	blob := blobFile(srv.DataDir, v.SHA256)
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(blob, 0o755); err != nil {
		t.Fatal(err)
	}

	x4 := `{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}`
	grpcX4 := &pb.ModelInferRequest_InferInputTensor{Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}
	cases := []struct {
		name, model, body string
		grpcIn            *pb.ModelInferRequest_InferInputTensor
		status            int
		code              codes.Code
		public            string
		secret            []string // texts of the internal cause
	}{
		{"ONNX Runtime run error", "lookup", `{"inputs":[{"name":"idx","shape":[1,1],"datatype":"INT64","data":[99]}]}`,
			&pb.ModelInferRequest_InferInputTensor{Name: "idx", Datatype: "INT64", Shape: []int64{1, 1},
				Contents: &pb.InferTensorContents{Int64Contents: []int64{99}}},
			500, codes.Internal, "model lookup version 1 failed to run", []string{"out of data bounds", "Gather", "idx=99"}},
		{"ONNX Runtime load error", "noop", `{"inputs":[` + x4 + `]}`, grpcX4,
			503, codes.Unavailable, "model noop version 1 failed to load: onnx: ONNX Runtime cannot load the model",
			[]string{"NoSuchOperator", "registered", "C session"}},
		{"path error", "gone", `{"inputs":[` + x4 + `]}`, grpcX4,
			503, codes.Unavailable, "model gone version 1 failed to load", []string{"is a directory", srv.DataDir}},
	}
	c := dialGRPC(t, srv)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body := postJSON(t, srv.URL+"/v2/models/"+tc.model+"/infer", tc.body)
			var answer struct{ Error string }
			if err := json.Unmarshal(body, &answer); err != nil || st != tc.status || !strings.HasPrefix(answer.Error, tc.public) {
				t.Errorf("REST: %d %s, want %d %q", st, body, tc.status, tc.public)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: tc.model, Inputs: []*pb.ModelInferRequest_InferInputTensor{tc.grpcIn}})
			s := status.Convert(err)
			if s.Code() != tc.code || !strings.HasPrefix(s.Message(), tc.public) {
				t.Errorf("gRPC: %v %q, want %v %q", s.Code(), s.Message(), tc.code, tc.public)
			}
			for _, secret := range tc.secret {
				if strings.Contains(string(body), secret) || strings.Contains(s.Message(), secret) {
					t.Errorf("the answer carries %q:\nREST %s\ngRPC %s", secret, body, s.Message())
				}
			}
		})
	}

	// The management API: an apply whose source cannot be dialled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	sha := strings.Repeat("a", 64)
	yaml := fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: Model
metadata: {name: far}
spec:
  versions:
    - {version: 1, source: {uri: "https://%s/m.onnx", sha256: %s}}
`, closed, sha)
	st, _, body := do(t, "POST", srv.URL+"/api/v1/apply", "application/json",
		mustJSON(t, map[string]any{"files": []map[string]string{{"name": "m.yaml", "content": yaml}}}))
	if st < 400 || !strings.Contains(string(body), "source https://"+closed+"/m.onnx") {
		t.Fatalf("apply: %d %s", st, body)
	}
	for _, secret := range []string{"dial tcp", "connection refused"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("the apply answer carries %q: %s", secret, body)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
