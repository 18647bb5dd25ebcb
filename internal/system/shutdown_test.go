package system

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// holdingRuntime loads real ONNX Runtime models whose runs are held: a run
// reports on entered and then waits for its context to end (as ONNX Runtime's
// own cancellation does) — or, with ignoreCtx, for release, like a run stuck in
// native code.
type holdingRuntime struct {
	runtime.Runtime
	entered   chan struct{}
	release   chan struct{}
	ignoreCtx bool
}

func (h *holdingRuntime) Load(ctx context.Context, path string, opts runtime.Options) (runtime.Model, error) {
	m, err := h.Runtime.Load(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	return &holdingModel{Model: m, h: h}, nil
}

type holdingModel struct {
	runtime.Model
	h *holdingRuntime
}

func (m *holdingModel) Run(ctx context.Context, in []*tensor.Tensor, out []string) ([]*tensor.Tensor, error) {
	m.h.entered <- struct{}{}
	if m.h.ignoreCtx {
		<-m.h.release
	} else {
		select {
		case <-ctx.Done():
		case <-m.h.release:
		}
	}
	return m.Model.Run(ctx, in, out)
}

// startHolding starts a system whose model runs hold, with model "m" (mlp)
// pushed with two instances.
func startHolding(t *testing.T, h *holdingRuntime, shutdown time.Duration) (*System, func() (time.Duration, error)) {
	t.Helper()
	return startSystem(t, func(c *config.Config) { c.ShutdownTimeout = shutdown }, func(rt runtime.Runtime) runtime.Runtime {
		h.Runtime = rt
		return h
	})
}

// startSystem starts a system on loopback with model "m" (mlp, two instances)
// pushed; mutate adjusts the configuration, wrap (if set) the runtime. stop
// shuts it down and reports how long Run took to return.
func startSystem(t *testing.T, mutate func(*config.Config), wrap func(runtime.Runtime) runtime.Runtime) (*System, func() (time.Duration, error)) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	// These tests are about limits and shutdown: callers are admins here, and
	// access is tested with real tokens in e2e (TestAccessMatrix).
	cfg.Auth, cfg.CLIConfig = "off", "none"
	if mutate != nil {
		mutate(&cfg)
	}
	shutdown := cfg.ShutdownTimeout
	ctx, cancel := context.WithCancel(context.Background())
	s, err := newSystem(ctx, cfg, "test", slog.New(slog.DiscardHandler), hooks{wrapRuntime: wrap})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	_, file, _, _ := goruntime.Caller(0)
	model, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "models", "mlp.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	blob, err := s.Registry.PutBlob(ctx, bytes.NewReader(model), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Registry.CreateVersion(ctx, registry.CreateVersionRequest{
		Namespace: "default", Model: "m", SHA256: blob.SHA256,
		Serving: &registry.ServingConfig{Instances: &registry.InstancesConfig{Min: 2, Max: 2}},
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(shutdown + 10*time.Second):
		}
	})
	stop := func() (time.Duration, error) {
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			done <- err // for the cleanup
			return time.Since(start), err
		case <-time.After(shutdown + 10*time.Second):
			t.Fatalf("Run has not returned %s after the shutdown began (deadline %s)", time.Since(start), shutdown)
			return 0, nil
		}
	}
	return s, stop
}

const inferBody = `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}`

// TestShutdownDeadlineCancelsHeldRequests: requests still running or queued
// when the drain deadline passes are cancelled — REST clients get 503 "server
// is shutting down", the gRPC client UNAVAILABLE, none hangs — and Run returns
// within the deadline plus a small margin.
func TestShutdownDeadlineCancelsHeldRequests(t *testing.T) {
	h := &holdingRuntime{entered: make(chan struct{}, 4), release: make(chan struct{})}
	defer close(h.release)
	const timeout = 500 * time.Millisecond
	s, stop := startHolding(t, h, timeout)

	type restAnswer struct {
		status int
		body   string
		err    error
	}
	rest := make(chan restAnswer, 2)
	post := func() {
		resp, err := http.Post("http://"+s.HTTPAddr()+"/v2/models/m/infer", "application/json", strings.NewReader(inferBody))
		if err != nil {
			rest <- restAnswer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		rest <- restAnswer{status: resp.StatusCode, body: string(b)}
	}
	go post()
	<-h.entered

	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	grpcErr := make(chan error, 1)
	go func() {
		_, err := pb.NewGRPCInferenceServiceClient(conn).ModelInfer(context.Background(), &pb.ModelInferRequest{
			ModelName: "m",
			Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
				Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}},
		})
		grpcErr <- err
	}()
	<-h.entered // both instances are busy now
	go post()   // queued behind them
	waitUntil(t, func() bool { return s.Metrics.InFlight("rest") == 2 }, "a second REST request in flight")

	took, err := stop()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if limit := timeout + 3*shutdownGrace; took > limit {
		t.Errorf("Run returned %s after the shutdown began, more than the %s deadline plus margin (%s)", took, timeout, limit)
	}
	if took < timeout {
		t.Errorf("Run returned after %s, before the %s drain deadline, with requests in flight", took, timeout)
	}
	for range 2 {
		select {
		case a := <-rest:
			if a.err != nil || a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "shutting down") {
				t.Errorf("REST request held at the deadline: status %d %q, err %v; want 503 server is shutting down", a.status, a.body, a.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a REST client still waits after Run returned")
		}
	}
	select {
	case err := <-grpcErr:
		if code := status.Code(err); code != codes.Unavailable {
			t.Errorf("gRPC request held at the deadline: %v, want UNAVAILABLE", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the gRPC client still waits after Run returned")
	}
}

// TestShutdownReturnsWhenARunIgnoresCancellation: a model run that never
// returns (stuck in native code, deaf to cancellation) still lets Run return
// within the deadline plus the margin, and its REST client gets an error.
func TestShutdownReturnsWhenARunIgnoresCancellation(t *testing.T) {
	h := &holdingRuntime{entered: make(chan struct{}, 4), release: make(chan struct{}), ignoreCtx: true}
	defer close(h.release)
	const timeout = 300 * time.Millisecond
	s, stop := startHolding(t, h, timeout)
	rest := make(chan int, 1) // status, or 0 for a transport error
	go func() {
		resp, err := http.Post("http://"+s.HTTPAddr()+"/v2/models/m/infer", "application/json", strings.NewReader(inferBody))
		if err != nil {
			rest <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		rest <- resp.StatusCode
	}()
	<-h.entered
	took, err := stop()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if limit := timeout + 3*shutdownGrace; took > limit {
		t.Errorf("Run returned %s after the shutdown began, more than the %s deadline plus margin (%s)", took, timeout, limit)
	}
	select {
	case code := <-rest:
		if code == http.StatusOK {
			t.Error("a run stuck past the shutdown answered 200")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the REST client still waits after Run returned")
	}
}

// waitUntil polls cond until it holds or 10 s pass (testutil.Eventually, which
// this package cannot import).
func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
