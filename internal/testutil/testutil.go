// Package testutil starts real Nimbus servers in-process on random ports for
// end-to-end tests, finds the committed test models, and polls with deadlines
// instead of sleeping.
package testutil

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
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/system"
	"github.com/nimbus-ai/nimbus/registry"
)

// Server is a running in-process Nimbus server.
type Server struct {
	Sys     *system.System
	URL     string // http://127.0.0.1:PORT
	GRPC    string // 127.0.0.1:PORT
	DataDir string

	stop func()
}

// Stop shuts the server down gracefully and waits for it (idempotent).
func (s *Server) Stop() { s.stop() }

// StartServer starts a server on a fresh data dir (or cfg's, when mutate sets one).
func StartServer(t testing.TB, mutate ...func(*config.Config)) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 10 * time.Second
	for _, m := range mutate {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := system.New(ctx, cfg, "test", log)
	if err != nil {
		cancel()
		t.Fatalf("start server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	var once sync.Once
	s := &Server{Sys: sys, URL: "http://" + sys.HTTPAddr(), GRPC: sys.GRPCAddr(), DataDir: cfg.DataDir}
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server run: %v", err)
			}
		})
	}
	t.Cleanup(s.Stop)
	Eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get(s.URL + "/v2/health/ready")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "server never became ready")
	return s
}

// Push stores the committed test model file (see Model) as a new version of
// model in the default namespace, through the server's registry.
func (s *Server) Push(t testing.TB, model, file string) registry.Version {
	t.Helper()
	data, err := os.ReadFile(Model(file))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	blob, err := s.Sys.Registry.PutBlob(ctx, bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Sys.Registry.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: registry.DefaultNamespace, Model: model, SHA256: blob.SHA256})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for wait := time.Millisecond; ; wait = min(wait*2, 50*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, msg)
		}
		time.Sleep(wait)
	}
}

// RepoRoot is the repository root (found from this file's location).
func RepoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Model returns the path of a committed test model, e.g. Model("mlp").
func Model(name string) string {
	return filepath.Join(RepoRoot(), "testdata", "models", name+".onnx")
}

type testWriter struct {
	mu sync.Mutex
	t  testing.TB
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
