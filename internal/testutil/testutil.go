// Package testutil starts real Nimbus servers in-process on random ports for
// end-to-end tests, finds the committed test models, and polls with deadlines
// instead of sleeping.
package testutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

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
	// Token is the bootstrap admin token ("" with auth off). Client sends it
	// to this server unless a request carries its own Authorization header.
	Token string

	tlsConfig *tls.Config

	stop func()
}

// Client is an HTTP client for test servers: requests to a server StartServer
// started carry its admin token unless they set Authorization themselves (set
// it to "" with NoToken to send none).
var Client = &http.Client{Transport: tokenTransport{}}

// NoToken marks a request that must go out without a token.
func NoToken(r *http.Request) *http.Request {
	r.Header["Authorization"] = nil
	return r
}

// tokens maps host:port of running test servers to their admin tokens;
// transports to the transport that trusts a TLS server's certificate.
var tokens, transports sync.Map

type tokenTransport struct{}

func (tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	base := http.DefaultTransport
	if t, ok := transports.Load(r.URL.Host); ok {
		base = t.(http.RoundTripper)
	}
	if _, set := r.Header["Authorization"]; !set {
		if tok, ok := tokens.Load(r.URL.Host); ok {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+tok.(string))
		}
	} else if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Del("Authorization")
	}
	return base.RoundTrip(r)
}

// TLSConfig trusts the server's certificate (nil for a plain-text server).
func (s *Server) TLSConfig() *tls.Config { return s.tlsConfig }

// GRPCToken returns per-RPC credentials sending tok (for grpc.WithPerRPCCredentials).
func GRPCToken(tok string) credentials.PerRPCCredentials { return bearerCreds(tok) }

type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerCreds) RequireTransportSecurity() bool { return false }

// GRPCDialOptions are what a test gRPC client of s needs: plain text and the
// admin token.
func (s *Server) GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(GRPCToken(s.Token)),
	}
}

// Env is the environment the CLI needs to talk to s as its admin.
func (s *Server) Env() map[string]string {
	return map[string]string{"NIMBUS_SERVER": s.URL, "NIMBUS_TOKEN": s.Token}
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
	cfg.CLIConfig = "none" // never the developer's own ~/.config/nimbus
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
	s := &Server{Sys: sys, URL: sys.URL(), GRPC: sys.GRPCAddr(), DataDir: cfg.DataDir}
	if cfg.TLSCert != "" {
		pem, err := os.ReadFile(cfg.TLSCert)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		s.tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = s.tlsConfig
		transports.Store(sys.HTTPAddr(), tr)
	}
	if sys.Auth != nil {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, system.AdminTokenFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("read admin token: %v", err)
		}
		s.Token = strings.TrimSpace(string(b))
		tokens.Store(sys.HTTPAddr(), s.Token)
	}
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server run: %v", err)
			}
			tokens.Delete(sys.HTTPAddr())
			transports.Delete(sys.HTTPAddr())
		})
	}
	t.Cleanup(s.Stop)
	WaitReady(t, s.URL, 10*time.Second)
	return s
}

// WaitReady waits until the server at url answers its readiness check.
func WaitReady(t testing.TB, url string, within time.Duration) {
	t.Helper()
	Eventually(t, within, func() bool {
		resp, err := Client.Get(url + "/v2/health/ready")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "server never became ready")
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
