// Command nimbusbench measures Nimbus's serving core against raw ONNX Runtime and
// bare net/http and grpc-go servers in one run, and prints a markdown table.
// bench/run.sh (make bench) builds and runs it; see docs/BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nimbus-ai/nimbus/bench"
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
	)
	flag.Parse()

	cfg := bench.Config{Load: bench.Load{Warmup: *warmup, Duration: *duration, Iterations: *iters}}
	if *quick {
		cfg.Load = bench.Load{WarmupIterations: 20, Iterations: 200}
	}
	cfg.Models = splitList(*models)
	cfg.Paths = splitList(*paths)
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
	date := time.Now()
	results, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	rep := bench.Report{Date: date, Command: cmdline, Machine: bench.DescribeMachine(root), Load: cfg.Load, Results: results}
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	return rep.WriteMarkdown(w)
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(name, s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-%s: %q is not a positive integer", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}
