// Command nimbusbench measures Nimbus against raw ONNX Runtime, bare net/http and
// grpc-go servers and a Node.js peer in one run, and prints a markdown report.
// Two modes: -suite (issue 3's suite: single-row requests, batching off and on,
// closed and open loop, wrk and ghz where installed, targets) and the default
// layer-by-layer path matrix. bench/run.sh (make bench) builds and runs the suite;
// see docs/BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nimbus-ai/nimbus/bench"
	"github.com/nimbus-ai/nimbus/registry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nimbusbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		models   = flag.String("models", "mlp,mlp_medium", "comma-separated test models (testdata/models/NAME.onnx)")
		batches  = flag.String("batches", "1,64", "comma-separated batch sizes")
		concs    = flag.String("concurrency", "1", "comma-separated closed-loop concurrency levels")
		paths    = flag.String("paths", "", "comma-separated paths to run (default all: "+strings.Join(bench.Paths, ",")+")")
		duration = flag.Duration("duration", 5*time.Second, "measured time per cell")
		warmup   = flag.Duration("warmup", time.Second, "warm-up time per cell")
		iters    = flag.Int("iterations", 0, "measured calls per worker per cell (overrides -duration when > 0)")
		quick    = flag.Bool("quick", false, "tiny run for CI smoke: 200 iterations per cell after 20 warm-up calls")
		out      = flag.String("out", "", "also write the markdown report to this file")
		command  = flag.String("command", "", "command line to record in the report (default: this process's)")
		cpuprof  = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
		verbose  = flag.Bool("v", false, "print each cell as it finishes and the server's warnings")

		suite      = flag.Bool("suite", false, "run the benchmark suite (issue 3) instead of the path matrix")
		openDur    = flag.Duration("open-duration", 2*time.Second, "suite: measured time per open-loop cell")
		openFrac   = flag.Float64("open-fraction", 0.5, "suite: open-loop rate, one for every target of a model and concurrency, as a fraction of the slowest one's closed-loop req/s")
		extDur     = flag.Duration("ext-duration", 2*time.Second, "suite: time per wrk/ghz cell")
		maxBatch   = flag.Int("max-batch", 64, "suite: MaxBatchSize of the batched copies")
		queueDelay = flag.Duration("queue-delay", time.Millisecond, "suite: MaxQueueDelay of the batched copies")
		instances  = flag.Int("instances", 1, "suite: instances (Instances.Max) of every model")
		drivers    = flag.String("drivers", "", "suite: comma-separated drivers (default all installed: "+strings.Join(bench.SuiteDrivers, ",")+")")
		noExt      = flag.Bool("no-external", false, "suite: skip wrk, ghz and the Node peer even if installed")
		pin        = flag.String("pin", "", "suite: SERVER:CLIENT CPU lists, e.g. 0:1 — Nimbus and the bare servers run as child processes on SERVER, the clients and raw runs on CLIENT (needs bin/nimbus and taskset)")
		serveBare  = flag.Bool("serve-bare", false, "internal: serve the bare servers for a pinned run")
	)
	flag.Parse()
	if *serveBare {
		return bench.ServeBare()
	}
	if *pin != "" {
		if err := pinSelf(*pin); err != nil {
			return err
		}
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *suite {
		if !set["models"] {
			*models = "mlp,mlp_medium,tree"
		}
		if !set["concurrency"] {
			*concs = "1,8,64,256"
		}
		if !set["duration"] {
			*duration = 3 * time.Second
		}
		if !set["warmup"] {
			*warmup = 500 * time.Millisecond
		}
		return runSuite(suiteFlags{models: *models, concs: *concs, duration: *duration, warmup: *warmup, iters: *iters,
			quick: *quick, out: *out, command: *command, verbose: *verbose, openDur: *openDur, openFrac: *openFrac,
			extDur: *extDur, maxBatch: *maxBatch, queueDelay: *queueDelay, instances: *instances, drivers: *drivers, noExt: *noExt, pin: *pin})
	}

	cfg := bench.Config{Load: bench.Load{Warmup: *warmup, Duration: *duration, Iterations: *iters}}
	if *quick {
		cfg.Load = bench.Load{WarmupIterations: 20, Iterations: 200}
	}
	cfg.Models = bench.SplitList(*models)
	cfg.Paths = bench.SplitList(*paths)
	var err error
	if cfg.Batches, err = intList("batches", *batches); err != nil {
		return err
	}
	if cfg.Concurrency, err = intList("concurrency", *concs); err != nil {
		return err
	}
	if len(cfg.Models) == 0 || len(cfg.Batches) == 0 || len(cfg.Concurrency) == 0 {
		return fmt.Errorf("-models, -batches and -concurrency must each name at least one value")
	}
	if *verbose {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		cfg.Progress = func(r bench.Result) {
			fmt.Fprintf(os.Stderr, "%-10s b=%-3d c=%-2d %-14s n=%-8d p50=%-10s p99=%s\n",
				r.Model, r.Batch, r.Conc, r.Path, r.Samples, r.P50, r.P99)
		}
	}
	root, err := bench.FindRepoRoot()
	if err != nil {
		return err
	}
	cfg.RepoRoot = root
	cmdline := *command
	if cmdline == "" {
		cmdline = strings.Join(os.Args, " ")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	date := time.Now()
	results, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	rep := bench.Report{Date: date, Command: cmdline, Machine: bench.DescribeMachine(root), Load: cfg.Load, Results: results}
	return bench.WriteReport(*out, rep.WriteMarkdown)
}

func intList(name, s string) ([]int, error) {
	var out []int
	for _, f := range bench.SplitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-%s: %q is not a positive integer", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}

type suiteFlags struct {
	models, concs, out, command, drivers, pin     string
	duration, warmup, openDur, extDur, queueDelay time.Duration
	iters, maxBatch, instances                    int
	openFrac                                      float64
	quick, verbose, noExt                         bool
}

func runSuite(f suiteFlags) error {
	root, err := bench.FindRepoRoot()
	if err != nil {
		return err
	}
	cfg := bench.SuiteConfig{
		Models:           bench.SplitList(f.models),
		Load:             bench.Load{Warmup: f.warmup, Duration: f.duration, Iterations: f.iters},
		OpenLoad:         bench.Load{Duration: f.openDur, Iterations: f.iters},
		OpenFraction:     f.openFrac,
		ExternalDuration: f.extDur,
		Batching:         registry.BatchingConfig{MaxBatchSize: f.maxBatch, MaxQueueDelay: registry.Duration(f.queueDelay)},
		Instances:        f.instances,
		Drivers:          bench.SplitList(f.drivers),
		RawBatches:       []int{f.maxBatch},
		RepoRoot:         root,
	}
	if f.pin != "" {
		server, client, _ := strings.Cut(f.pin, ":")
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.Pin = &bench.Pinning{ServerCPUs: server, ClientCPUs: client, Binary: filepath.Join(root, "bin", "nimbus"), Self: self}
		if fi, err := os.Stat(cfg.Pin.Binary); err != nil || fi.IsDir() {
			return fmt.Errorf("-pin runs %s as a child process: build it first (make build)", cfg.Pin.Binary)
		}
	}
	if f.quick {
		cfg.Load = bench.Load{WarmupIterations: 20, Iterations: 200}
		cfg.OpenLoad = bench.Load{Iterations: 100}
		cfg.ExternalDuration = time.Second
	}
	if cfg.Concurrency, err = intList("concurrency", f.concs); err != nil {
		return err
	}
	if len(cfg.Models) == 0 || len(cfg.Concurrency) == 0 {
		return fmt.Errorf("-models and -concurrency must each name at least one value")
	}
	for _, d := range cfg.Drivers {
		if !slices.Contains(bench.SuiteDrivers, d) {
			return fmt.Errorf("-drivers: unknown driver %q (known: %s)", d, strings.Join(bench.SuiteDrivers, ", "))
		}
	}
	if f.noExt {
		cfg.Tools = bench.Tools{NodeWhy: "skipped (-no-external)"}
		if cfg.Drivers == nil {
			cfg.Drivers = []string{bench.DriverClosed, bench.DriverOpen}
		}
	} else {
		cfg.Tools = bench.DetectTools(root)
	}
	fmt.Fprintf(os.Stderr, "nimbusbench: wrk %s, ghz %s, node peer %s\n", found(cfg.Tools.Wrk), found(cfg.Tools.Ghz), found(cfg.Tools.Node))
	if f.verbose {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	start := time.Now()
	cfg.Progress = func(c bench.Cell) {
		if f.verbose {
			fmt.Fprintf(os.Stderr, "%6.0fs %-10s %-6s %-11s batching=%-3s c=%-3d b=%-2d n=%-7d rows/s=%-9.0f p50=%-9s p99=%-9s batch=%.1f\n",
				time.Since(start).Seconds(), c.Model, c.Driver, c.Target, map[bool]string{false: "off", true: "on"}[c.Batching],
				c.Conc, c.Batch, c.Samples, c.RowsPerSec, c.P50.Round(time.Microsecond/10), c.P99.Round(time.Microsecond/10), c.MeanBatch)
		}
	}
	cmdline := f.command
	if cmdline == "" {
		cmdline = strings.Join(os.Args, " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	date := time.Now()
	res, err := bench.RunSuite(ctx, cfg)
	if err != nil {
		return err
	}
	rep := bench.SuiteReport{Date: date, Command: cmdline, Machine: bench.DescribeMachine(root), Config: cfg, Result: res, Commit: sourceCommit(root)}
	fmt.Fprintf(os.Stderr, "nimbusbench: suite took %s\n", time.Since(start).Round(time.Second))
	return bench.WriteReport(f.out, rep.WriteMarkdown)
}

// pinnedEnv marks a nimbusbench that already runs on the client CPUs.
const pinnedEnv = "NIMBUSBENCH_PINNED"

// pinSelf re-executes this process under taskset -c CLIENT (once): Go cannot
// pin all of its own threads after start, a child of taskset starts pinned.
func pinSelf(spec string) error {
	server, client, ok := strings.Cut(spec, ":")
	if !ok || server == "" || client == "" {
		return fmt.Errorf("-pin wants SERVER:CLIENT CPU lists, e.g. 0:1; got %q", spec)
	}
	if os.Getenv(pinnedEnv) != "" {
		return nil
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return fmt.Errorf("-pin needs taskset (apt-get install -y util-linux): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	argv := append([]string{taskset, "-c", client, self}, os.Args[1:]...)
	return syscall.Exec(taskset, argv, append(os.Environ(), pinnedEnv+"=1"))
}

func found(path string) string {
	if path == "" {
		return "not installed"
	}
	return path
}

// sourceCommit names the measured tree (`git describe --always --dirty`), or "".
func sourceCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
