package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/tensor"
)

// The serverless benchmarks (issue 4), each against a real `nimbus server`
// child process so that its memory is its own. See docs/BENCHMARKS.md.
const (
	BenchCold    = "cold"    // time to first response for versions never loaded
	BenchDensity = "density" // 10,000 models, Zipf traffic, a budget for ~5% of them
	BenchMemory  = "memory"  // RSS after 1,000 load/infer/unload cycles vs after the first
)

// ServerlessBenchmarks lists them (RunServerless runs memory return first).
var ServerlessBenchmarks = []string{BenchCold, BenchDensity, BenchMemory}

// ServerlessConfig is one run of the serverless benchmarks.
type ServerlessConfig struct {
	Binary   string // the nimbus binary (bin/nimbus)
	RepoRoot string // holds testdata/models
	ORTLib   string // libonnxruntime for the server and the in-process references; "": onnx.FindLibrary
	// Benchmarks to run, from ServerlessBenchmarks; nil: all.
	Benchmarks []string
	Cold       ColdConfig
	Density    DensityConfig
	Memory     MemoryConfig
	// WorkDir holds data dirs and generated models (removed at the end); "": the system temp dir.
	WorkDir string
	// Progress receives one line per step; ServerLog every server log line. nil: discarded.
	Progress  io.Writer
	ServerLog io.Writer
}

// ColdConfig is the cold-start benchmark.
type ColdConfig struct {
	// Samples is how many fresh variants are timed per model, after one untimed
	// warm-up variant (the server's and the bench's first load set up ONNX
	// Runtime's environment).
	Samples int
	// Models are test models (testdata/models/NAME.onnx); Generated are built by MLPSpec.
	Models    []string
	Generated []MLPSpec
}

// DensityConfig is the density benchmark.
type DensityConfig struct {
	Models      int           // registered variants of testdata/models/mlp.onnx
	Resident    int           // the budget holds this many measured costs
	Concurrency int           // closed-loop workers
	Warmup      time.Duration // traffic before measuring (fills the resident set)
	Duration    time.Duration // measured traffic
	ZipfS       float64       // Zipf exponent s (> 1)
	ZipfV       float64       // Zipf offset v (≥ 1)
	Seed        uint64        // seeds the popularity order and each worker's draws
	PushWorkers int           // concurrent pushes
	// Budget, when set, is passed as --memory-budget as is and calibration is
	// skipped (Resident then means nothing to the server).
	Budget string
}

// MemoryConfig is the memory-return benchmark.
type MemoryConfig struct {
	Model  string // test model, default mlp_medium
	Cycles int    // load, infer, unload cycles
}

// DefaultServerlessConfig is the full run (make bench-serverless); quick is the
// smoke run (seconds) used by go test and -quick.
func DefaultServerlessConfig(quick bool) ServerlessConfig {
	cfg := ServerlessConfig{
		Cold: ColdConfig{Samples: 100, Models: []string{"mlp_medium"}, Generated: []MLPSpec{BigMLP}},
		Density: DensityConfig{Models: 10_000, Resident: 500, Concurrency: 8, Warmup: 10 * time.Second,
			Duration: 60 * time.Second, ZipfS: 1.1, ZipfV: 1, Seed: 1, PushWorkers: 8},
		Memory: MemoryConfig{Model: "mlp_medium", Cycles: 1000},
	}
	if quick {
		cfg.Cold.Samples = 10
		cfg.Density.Models, cfg.Density.Resident = 40, 4
		cfg.Density.Concurrency = 4
		cfg.Density.Warmup, cfg.Density.Duration = 500*time.Millisecond, 2*time.Second
		cfg.Memory.Cycles = 20
	}
	return cfg
}

// ServerlessResult is what a run measured; a benchmark not run is nil/empty.
type ServerlessResult struct {
	NimbusVersion string
	Cold          []ColdResult
	Density       *DensityResult
	Memory        *MemoryResult
	// Notes are problems that did not invalidate a measurement, e.g. a server
	// that did not stop cleanly after its benchmark.
	Notes []string
}

// Dist summarizes latencies (nearest-rank percentiles).
type Dist struct {
	N                  int
	P50, P90, P99, Max time.Duration
	Mean               time.Duration
}

func distOf(lat []time.Duration) Dist {
	if len(lat) == 0 {
		return Dist{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Dist{N: len(s), P50: percentile(s, 50), P90: percentile(s, 90), P99: percentile(s, 99), Max: s[len(s)-1],
		Mean: sum / time.Duration(len(s))}
}

// RunServerless runs the selected benchmarks one after the other: memory
// return, cold start, density.
func RunServerless(ctx context.Context, cfg ServerlessConfig) (ServerlessResult, error) {
	var res ServerlessResult
	for _, b := range cfg.Benchmarks {
		if !slices.Contains(ServerlessBenchmarks, b) {
			return res, fmt.Errorf("unknown benchmark %q (known: %s)", b, strings.Join(ServerlessBenchmarks, ", "))
		}
	}
	want := func(b string) bool { return len(cfg.Benchmarks) == 0 || slices.Contains(cfg.Benchmarks, b) }
	if cfg.RepoRoot == "" {
		root, err := FindRepoRoot()
		if err != nil {
			return res, err
		}
		cfg.RepoRoot = root
	}
	if cfg.ORTLib == "" {
		lib, err := onnx.FindLibrary()
		if err != nil {
			return res, err
		}
		cfg.ORTLib = lib
	}
	if !isFile(cfg.Binary) {
		return res, fmt.Errorf("nimbus binary %q not found (make build)", cfg.Binary)
	}
	if out, err := exec.Command(cfg.Binary, "version").Output(); err == nil {
		res.NimbusVersion, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	work, err := os.MkdirTemp(cfg.WorkDir, "serverlessbench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	e := &slEnv{cfg: cfg, work: work, rt: onnx.New(cfg.ORTLib, slog.New(slog.DiscardHandler))}
	defer func() { res.Notes = e.notes }()

	// Memory return runs first: its in-process reference reads this process's
	// RSS, which the cold-start benchmark's ONNX Runtime sessions would leave
	// inflated (glibc keeps freed arenas).
	if want(BenchMemory) {
		r, err := e.runMemory(ctx)
		if err != nil {
			return res, fmt.Errorf("memory return: %w", err)
		}
		res.Memory = &r
	}
	if want(BenchCold) {
		for _, name := range cfg.Cold.Models {
			base, err := os.ReadFile(filepath.Join(cfg.RepoRoot, "testdata", "models", name+".onnx"))
			if err != nil {
				return res, err
			}
			r, err := e.runCold(ctx, name, base)
			if err != nil {
				return res, fmt.Errorf("cold start, %s: %w", name, err)
			}
			res.Cold = append(res.Cold, r)
		}
		for _, spec := range cfg.Cold.Generated {
			r, err := e.runCold(ctx, spec.Name(), spec.ONNX())
			if err != nil {
				return res, fmt.Errorf("cold start, %s: %w", spec.Name(), err)
			}
			res.Cold = append(res.Cold, r)
		}
	}
	if want(BenchDensity) {
		r, err := e.runDensity(ctx)
		if err != nil {
			return res, fmt.Errorf("density: %w", err)
		}
		res.Density = &r
	}
	return res, nil
}

// slEnv is what the benchmarks of one run share.
type slEnv struct {
	cfg   ServerlessConfig
	work  string
	rt    *onnx.Runtime // in-process references
	notes []string
}

func (e *slEnv) progress(format string, args ...any) {
	if e.cfg.Progress != nil {
		fmt.Fprintf(e.cfg.Progress, "serverless: "+format+"\n", args...)
	}
}

// startServer starts a server on dataDir (created if missing).
func (e *slEnv) startServer(ctx context.Context, dataDir, budget string) (*ServerProcess, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	return StartServer(ctx, ServerOptions{Binary: e.cfg.Binary, DataDir: dataDir, ORTLib: e.cfg.ORTLib,
		MemoryBudget: budget, Log: e.cfg.ServerLog})
}

// stopServer stops srv. If the benchmark failed (*err != nil) a stop error is
// joined to it; if it succeeded, its measurements stand and a stop error (the
// server died, exited non-zero or ignored SIGTERM) becomes a note in the report.
func (e *slEnv) stopServer(srv *ServerProcess, what string, err *error) {
	serr := srv.Stop()
	switch {
	case serr == nil:
	case *err != nil:
		*err = errors.Join(*err, serr)
	default:
		first, _, _ := strings.Cut(serr.Error(), "\n")
		e.notes = append(e.notes, what+": "+strings.TrimSuffix(first, ":"))
	}
}

// probe is a model's single-row request and its expected answer.
type probe struct {
	inputs []*tensor.Tensor
	body   []byte           // OIP JSON
	want   []*tensor.Tensor // raw ONNX Runtime's outputs for the base model
}

// newProbe builds a one-row request (fp32Request) and computes the expected
// outputs with ONNX Runtime in-process. It writes the model to path.
func (e *slEnv) newProbe(ctx context.Context, path string, model []byte) (*probe, error) {
	if err := os.WriteFile(path, model, 0o644); err != nil {
		return nil, err
	}
	sig, err := onnx.InspectFile(path)
	if err != nil {
		return nil, err
	}
	x, body, err := fp32Request(sig, 1)
	if err != nil {
		return nil, err
	}
	p := &probe{inputs: []*tensor.Tensor{x}, body: body}
	m, err := e.rt.Load(ctx, path, runtime.Options{})
	if err != nil {
		return nil, fmt.Errorf("load %s in-process: %w", path, err)
	}
	defer m.Close()
	if p.want, err = m.Run(ctx, p.inputs, nil); err != nil {
		return nil, fmt.Errorf("run %s in-process: %w", path, err)
	}
	return p, nil
}

// check compares a server answer with the expected outputs, exactly: the same
// library, thread settings and input give the same floats, and Nimbus's JSON
// writes float32 so that it parses back to the same bits.
func (p *probe) check(body []byte) error {
	resp, err := oip.DecodeInferResponse(body, 0)
	if err != nil {
		return fmt.Errorf("decode answer: %w: %.200s", err, body)
	}
	return sameOutputs(p.want, resp.Outputs)
}

func sameOutputs(want, got []*tensor.Tensor) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d outputs, want %d", len(got), len(want))
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(t *tensor.Tensor) bool { return t.Name == w.Name })
		if i < 0 {
			return fmt.Errorf("no output %q", w.Name)
		}
		g := got[i]
		if g.DataType != w.DataType || !slices.Equal(g.Shape, w.Shape) || string(g.Data) != string(w.Data) {
			return fmt.Errorf("output %q differs: %s %v (%d bytes) vs %s %v (%d bytes)", w.Name,
				g.DataType, g.Shape, len(g.Data), w.DataType, w.Shape, len(w.Data))
		}
	}
	return nil
}

// ColdResult is the cold-start benchmark for one model.
type ColdResult struct {
	Model   string
	Bytes   int // artifact size
	Samples int
	// Cold is the time to the first response of a never-loaded version (client
	// side: send to last byte); Warm the second request to it right after;
	// ServerWait what the server reported in Nimbus-Cold-Start.
	Cold, Warm, ServerWait Dist
	// RawLoad is ONNX Runtime's session create in the bench process (runtime/onnx
	// Load) for a fresh variant file; Raw adds its first Run.
	RawLoad, Raw Dist
	// HeaderOnCold counts cold requests that carried Nimbus-Cold-Start (want
	// all); HeaderOnWarm warm ones that did (want none).
	HeaderOnCold, HeaderOnWarm int
}

// runCold pushes Samples+1 variants of model as separate models to a fresh
// server, then per variant: times its first request (cold) and a second one
// (warm), unloads it through the repository API so that the server's footprint
// stays that of one model, and times ONNX Runtime's own session create plus
// first Run of another fresh variant in the bench process. Every answer is
// checked against the base model's outputs.
func (e *slEnv) runCold(ctx context.Context, name string, base []byte) (_ ColdResult, err error) {
	res := ColdResult{Model: name, Bytes: len(base), Samples: e.cfg.Cold.Samples}
	dir := filepath.Join(e.work, "cold-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	p, err := e.newProbe(ctx, filepath.Join(dir, "base.onnx"), base)
	if err != nil {
		return res, err
	}
	srv, err := e.startServer(ctx, filepath.Join(dir, "data"), "0")
	if err != nil {
		return res, err
	}
	defer e.stopServer(srv, "cold start "+name, &err)
	a := newAPI(srv, 1)
	defer a.close()

	n := e.cfg.Cold.Samples
	model := func(i int) string { return fmt.Sprintf("cold-%s-%04d", name, i) }
	start := time.Now()
	for i := range n + 1 {
		if err := a.push(ctx, model(i), Variant(base, i)); err != nil {
			return res, err
		}
	}
	e.progress("cold %s: pushed %d variants of %d bytes in %s", name, n+1, len(base), time.Since(start).Round(time.Millisecond))

	var cold, warm, wait, rawLoad, raw []time.Duration
	rawPath := filepath.Join(dir, "raw.onnx")
	for i := range n + 1 {
		// Nimbus: first request, second request, unload.
		t0 := time.Now()
		r1, err := a.infer(ctx, model(i), p.body, nil)
		d1 := time.Since(t0)
		if err != nil {
			return res, fmt.Errorf("%s: %w", model(i), err)
		}
		if r1.status != 200 {
			return res, fmt.Errorf("%s: first request: HTTP %d: %.300s", model(i), r1.status, r1.body)
		}
		if err := p.check(r1.body); err != nil {
			return res, fmt.Errorf("%s: first request: %w", model(i), err)
		}
		t0 = time.Now()
		r2, err := a.infer(ctx, model(i), p.body, nil)
		d2 := time.Since(t0)
		if err != nil {
			return res, fmt.Errorf("%s: %w", model(i), err)
		}
		if r2.status != 200 {
			return res, fmt.Errorf("%s: second request: HTTP %d: %.300s", model(i), r2.status, r2.body)
		}
		if err := p.check(r2.body); err != nil {
			return res, fmt.Errorf("%s: second request: %w", model(i), err)
		}
		if err := a.repository(ctx, "unload", model(i)); err != nil {
			return res, err
		}
		// ONNX Runtime alone, on a variant file it has never seen.
		if err := os.WriteFile(rawPath, Variant(base, 1_000_000+i), 0o644); err != nil {
			return res, err
		}
		t0 = time.Now()
		m, err := e.rt.Load(ctx, rawPath, runtime.Options{})
		dl := time.Since(t0)
		if err != nil {
			return res, fmt.Errorf("raw load: %w", err)
		}
		out, err := m.Run(ctx, p.inputs, nil)
		dr := time.Since(t0)
		m.Close()
		if err != nil {
			return res, fmt.Errorf("raw run: %w", err)
		}
		if err := sameOutputs(p.want, out); err != nil {
			return res, fmt.Errorf("raw variant %d: %w", i, err)
		}
		if i == 0 {
			continue // warm-up: not timed
		}
		cold, warm, rawLoad, raw = append(cold, d1), append(warm, d2), append(rawLoad, dl), append(raw, dr)
		if r1.cold {
			res.HeaderOnCold++
			wait = append(wait, r1.wait)
		}
		if r2.cold {
			res.HeaderOnWarm++
		}
	}
	res.Cold, res.Warm, res.ServerWait, res.RawLoad, res.Raw = distOf(cold), distOf(warm), distOf(wait), distOf(rawLoad), distOf(raw)
	e.progress("cold %s: p50 cold %s, warm %s, raw ORT %s", name, res.Cold.P50.Round(10*time.Microsecond),
		res.Warm.P50.Round(10*time.Microsecond), res.Raw.P50.Round(10*time.Microsecond))
	return res, nil
}
