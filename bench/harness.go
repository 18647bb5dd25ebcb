// Package bench measures Nimbus's serving core against its physical limits: the raw
// ONNX Runtime Run in-process, then each layer Nimbus adds (serving.Manager, the
// OIP REST handler with its JSON codec, REST and gRPC over loopback), and, in the
// same run, bare net/http and grpc-go servers that answer fixed bytes of the same
// size, driven by the same client code. See docs/BENCHMARKS.md.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/system"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
)

// Paths, in the order each (model, batch, concurrency) group runs them.
const (
	PathORT          = "ort-direct"    // ONNX Runtime AdvancedSession.Run with tensors bound once, in-process
	PathRaw          = "raw-run"       // runtime/onnx Model.Run in-process, context.Background
	PathManager      = "manager"       // serving.Manager.Infer in-process
	PathRESTHandler  = "rest-handler"  // OIP REST http.Handler in-process (JSON codec, no network)
	PathRESTLoopback = "rest-loopback" // Nimbus REST over 127.0.0.1, keep-alive
	PathBareHTTP     = "bare-http"     // bare net/http server answering fixed bytes
	PathGRPCLoopback = "grpc-loopback" // Nimbus gRPC over 127.0.0.1, raw_input_contents
	PathBareGRPC     = "bare-grpc"     // bare grpc-go server answering a fixed ModelInferResponse
)

// Paths lists every path in run order.
var Paths = []string{PathORT, PathRaw, PathManager, PathRESTHandler, PathRESTLoopback, PathBareHTTP, PathGRPCLoopback, PathBareGRPC}

// Config is one benchmark run.
type Config struct {
	Models      []string // test model names under ModelDir, e.g. "mlp"
	Batches     []int
	Concurrency []int
	// Paths restricts the run to these paths (nil: all); derived columns need
	// their reference paths in the same run.
	Paths []string
	Load  Load
	// RepoRoot holds testdata/models and .deps/onnxruntime; "" finds it from the working directory.
	RepoRoot string
	// Log receives the server's warnings; nil discards them.
	Log *slog.Logger
	// Progress, when non-nil, is told about each finished cell.
	Progress func(Result)
	// Pin, when set, runs Nimbus and the bare servers as child processes on
	// their own cores (pinned.go); only the suite uses it.
	Pin *Pinning
}

// Result is one cell: a path measured for one model, batch size and concurrency.
type Result struct {
	Model   string
	Batch   int
	Conc    int
	Path    string
	Samples int
	Elapsed time.Duration
	P50     time.Duration
	P99     time.Duration
	// ReqPerSec is calls per second; RowsPerSec is ReqPerSec × Batch.
	ReqPerSec  float64
	RowsPerSec float64
	// Added latency over the reference: raw-run for in-process paths, raw-run plus
	// the bare server of the same protocol for loopback paths, ort-direct for
	// raw-run itself (the adapter's cost). HasAdded is false for ort-direct and
	// the bare servers.
	HasAdded bool
	AddedP50 time.Duration
	AddedP99 time.Duration
	// RawRatio is RowsPerSec ÷ raw-run's RowsPerSec (÷ ort-direct's for raw-run;
	// 0 where HasAdded is false).
	RawRatio float64
}

// Run starts a Nimbus server on loopback with a temporary data dir, pushes the
// models, starts the bare peers, and measures every cell.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.RepoRoot == "" {
		root, err := FindRepoRoot()
		if err != nil {
			return nil, err
		}
		cfg.RepoRoot = root
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Concurrency) == 0 {
		cfg.Concurrency = []int{1}
	}
	for _, p := range cfg.Paths {
		if !slices.Contains(Paths, p) {
			return nil, fmt.Errorf("unknown path %q (known: %s)", p, strings.Join(Paths, ", "))
		}
	}
	env, err := start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer env.close()

	var out []Result
	for _, name := range cfg.Models {
		path := filepath.Join(cfg.RepoRoot, "testdata", "models", name+".onnx")
		raw, err := onnx.New(env.libPath, cfg.Log).Load(ctx, path, runtime.Options{})
		if err != nil {
			return nil, fmt.Errorf("load %s for raw runs: %w", name, err)
		}
		if _, err := client.New(env.url, client.WithToken(env.token)).PushFile(ctx, registry.DefaultNamespace, name, path, registry.CreateVersionRequest{}, nil); err != nil {
			raw.Close()
			return nil, fmt.Errorf("push %s: %w", name, err)
		}
		for _, batch := range cfg.Batches {
			w, err := env.workload(ctx, name, path, raw, batch)
			if err != nil {
				raw.Close()
				return nil, fmt.Errorf("%s batch %d: %w", name, batch, err)
			}
			for _, conc := range cfg.Concurrency {
				group, err := env.runGroup(ctx, cfg, w, conc)
				if err != nil {
					raw.Close()
					return nil, fmt.Errorf("%s batch %d concurrency %d: %w", name, batch, conc, err)
				}
				out = append(out, group...)
			}
		}
		raw.Close()
	}
	return out, nil
}

// env is the servers and clients shared by every cell of a run.
type env struct {
	libPath  string
	url      string         // Nimbus REST base URL
	grpcAddr string         // Nimbus gRPC address
	token    string         // the bootstrap admin token every client sends
	sys      *system.System // nil when Nimbus is a child process (pinned runs)
	rest     http.Handler   // the OIP handler over the running system's manager
	hc       *http.Client
	grpc     pb.GRPCInferenceServiceClient
	bare     *bareServers

	conns []*grpc.ClientConn
	stop  func() error
}

func start(ctx context.Context, cfg Config) (_ *env, err error) {
	e := &env{stop: func() error { return nil }}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.libPath, err = onnx.FindLibrary(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "nimbusbench-")
	if err != nil {
		return nil, err
	}
	if cfg.Pin != nil {
		err = e.startChildren(ctx, *cfg.Pin, dir)
	} else {
		err = e.startInProcess(cfg, dir)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	maxConc := 1
	for _, c := range cfg.Concurrency {
		maxConc = max(maxConc, c)
	}
	e.hc = &http.Client{Transport: withToken(&http.Transport{
		MaxIdleConns:        2 * maxConc,
		MaxIdleConnsPerHost: maxConc,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}, e.token)}
	if err := waitReady(ctx, e.hc, e.url+"/v2/health/ready"); err != nil {
		return nil, err
	}
	conn, err := dial(e.grpcAddr, grpc.WithPerRPCCredentials(bearerCreds(e.token)))
	if err != nil {
		return nil, err
	}
	e.conns = append(e.conns, conn)
	e.grpc = pb.NewGRPCInferenceServiceClient(conn)
	if e.bare == nil {
		if e.bare, err = startBare(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// startInProcess runs Nimbus in this process (system.New) on dir; e.stop
// stops it and removes dir.
func (e *env) startInProcess(cfg Config, dir string) error {
	scfg := config.Default()
	scfg.DataDir = dir
	scfg.HTTPAddr = "127.0.0.1:0"
	scfg.GRPCAddr = "127.0.0.1:0"
	scfg.ORTLib = e.libPath
	scfg.ShutdownTimeout = 10 * time.Second
	scfg.CLIConfig = "none"
	sctx, cancel := context.WithCancel(context.Background())
	sys, err := system.New(sctx, scfg, "bench", cfg.Log)
	if err != nil {
		cancel()
		return fmt.Errorf("start nimbus: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sys.Run(sctx) }()
	e.sys = sys
	e.stop = func() error {
		cancel()
		err := <-done
		os.RemoveAll(dir)
		return err
	}
	e.url, e.grpcAddr = sys.URL(), sys.GRPCAddr()
	if e.token, err = readToken(dir); err != nil {
		return err
	}
	// The same constructor and options internal/system uses for its REST
	// routes, behind the same authentication.
	e.rest = sys.Guard.HTTP(oip.NewHandler(sys.Manager, oip.Options{MaxBodyBytes: scfg.MaxBodyBytes, Metrics: sys.Metrics, Logger: cfg.Log}))
	return nil
}

func (e *env) close() {
	for _, c := range e.conns {
		c.Close()
	}
	if e.bare != nil {
		e.bare.close()
	}
	if e.hc != nil {
		e.hc.CloseIdleConnections()
	}
	if err := e.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "nimbusbench: server stopped with: %v\n", err)
	}
}

func dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20))}, opts...)...)
}

// readToken reads the bootstrap admin token a server wrote to its data dir.
func readToken(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, system.AdminTokenFile))
	if err != nil {
		return "", fmt.Errorf("read the admin token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// withToken sends "Authorization: Bearer tok" on every request rt makes.
func withToken(rt http.RoundTripper, tok string) http.RoundTripper {
	return tokenTransport{rt, "Bearer " + tok}
}

type tokenTransport struct {
	rt     http.RoundTripper
	header string
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", t.header)
	return t.rt.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (t tokenTransport) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// bearerCreds sends the token on every gRPC call.
type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerCreds) RequireTransportSecurity() bool { return false }

func waitReady(ctx context.Context, hc *http.Client, url string) error {
	deadline := time.Now().Add(15 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := hc.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("nimbus never became ready")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// FindRepoRoot walks up from the working directory to the directory holding
// go.mod and testdata/models.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isFile(filepath.Join(dir, "go.mod")) && isDir(filepath.Join(dir, "testdata", "models")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (go.mod with testdata/models) above the working directory")
		}
		dir = parent
	}
}

func isFile(p string) bool { fi, err := os.Stat(p); return err == nil && fi.Mode().IsRegular() }
func isDir(p string) bool  { fi, err := os.Stat(p); return err == nil && fi.IsDir() }

// Machine describes where a run happened.
type Machine struct {
	CPU        string
	NumCPU     int
	GOMAXPROCS int
	GoVersion  string
	ORTVersion string
	OS         string
}

// DescribeMachine reads the CPU model from /proc/cpuinfo and the ONNX Runtime
// version from .deps/onnxruntime/VERSION under root.
func DescribeMachine(root string) Machine {
	m := Machine{
		CPU: "unknown", NumCPU: goruntime.NumCPU(), GOMAXPROCS: goruntime.GOMAXPROCS(0),
		GoVersion: goruntime.Version(), ORTVersion: "unknown", OS: goruntime.GOOS + "/" + goruntime.GOARCH,
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, ".deps", "onnxruntime", "VERSION")); err == nil {
		m.ORTVersion = strings.TrimSpace(string(b))
	}
	return m
}
