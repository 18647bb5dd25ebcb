// Command serverlessbench runs Nimbus's serverless benchmarks (issue 4) against a
// real `nimbus server` child process: cold start (time to first response of a
// never-loaded version, beside raw ONNX Runtime's session create + first Run),
// density (10,000 models, Zipf traffic, a memory budget for ~5% of them) and
// memory return (RSS after 1,000 load/infer/unload cycles). It prints a markdown
// report. bench/serverless.sh (make bench-serverless) builds and runs it; see
// docs/BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nimbus-ai/nimbus/bench"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "serverlessbench:", err)
		os.Exit(1)
	}
}

func run() error {
	def := bench.DefaultServerlessConfig(false)
	var (
		binary  = flag.String("nimbus", "", "nimbus binary to run as the server (default bin/nimbus under the repository root)")
		only    = flag.String("only", "", "comma-separated benchmarks to run (default all: "+strings.Join(bench.ServerlessBenchmarks, ",")+")")
		quick   = flag.Bool("quick", false, "smoke run: 10 cold samples, 40 density models with a budget for 4 (2 s), 20 memory cycles")
		out     = flag.String("out", "", "also write the markdown report to this file")
		command = flag.String("command", "", "command line to record in the report (default: this process's)")
		verbose = flag.Bool("v", false, "copy the servers' logs to stderr")

		coldSamples = flag.Int("cold-samples", def.Cold.Samples, "cold start: fresh variants timed per model")
		coldModels  = flag.String("cold-models", strings.Join(def.Cold.Models, ","), "cold start: test models (testdata/models/NAME.onnx)")
		bigHidden   = flag.Int("cold-big-hidden", def.Cold.Generated[0].Hidden, "cold start: hidden width of the generated 256→H→256 MLP (4096: 8.4 MB; 0: none)")

		dModels   = flag.Int("density-models", def.Density.Models, "density: registered models")
		dResident = flag.Int("density-resident", def.Density.Resident, "density: models the memory budget holds")
		dConc     = flag.Int("concurrency", def.Density.Concurrency, "density: closed-loop workers")
		dDur      = flag.Duration("duration", def.Density.Duration, "density: measured traffic")
		dWarm     = flag.Duration("warmup", def.Density.Warmup, "density: traffic before measuring")
		dS        = flag.Float64("zipf-s", def.Density.ZipfS, "density: Zipf exponent s (> 1)")
		dV        = flag.Float64("zipf-v", def.Density.ZipfV, "density: Zipf offset v (≥ 1)")
		dSeed     = flag.Uint64("seed", def.Density.Seed, "density: seed of the popularity order and the draws")
		dPush     = flag.Int("push-workers", def.Density.PushWorkers, "density: concurrent pushes")
		dBudget   = flag.String("density-budget", "", `density: pass this --memory-budget as is instead of calibrating one for -density-resident models (e.g. "64MiB")`)

		mCycles = flag.Int("memory-cycles", def.Memory.Cycles, "memory return: load/infer/unload cycles")
		mModel  = flag.String("memory-model", def.Memory.Model, "memory return: test model")
	)
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })

	root, err := bench.FindRepoRoot()
	if err != nil {
		return err
	}
	cfg := bench.DefaultServerlessConfig(*quick)
	// Explicit flags win over -quick's sizes.
	intFlag := func(name string, dst *int, v int) {
		if set[name] {
			*dst = v
		}
	}
	intFlag("cold-samples", &cfg.Cold.Samples, *coldSamples)
	intFlag("density-models", &cfg.Density.Models, *dModels)
	intFlag("density-resident", &cfg.Density.Resident, *dResident)
	intFlag("concurrency", &cfg.Density.Concurrency, *dConc)
	intFlag("push-workers", &cfg.Density.PushWorkers, *dPush)
	intFlag("memory-cycles", &cfg.Memory.Cycles, *mCycles)
	if set["duration"] {
		cfg.Density.Duration = *dDur
	}
	if set["warmup"] {
		cfg.Density.Warmup = *dWarm
	}
	cfg.Density.ZipfS, cfg.Density.ZipfV, cfg.Density.Seed, cfg.Density.Budget = *dS, *dV, *dSeed, *dBudget
	cfg.Memory.Model = *mModel
	cfg.Cold.Models = bench.SplitList(*coldModels)
	cfg.Cold.Generated = nil
	if *bigHidden > 0 {
		spec := bench.BigMLP
		spec.Hidden = *bigHidden
		cfg.Cold.Generated = []bench.MLPSpec{spec}
	}
	cfg.Benchmarks = bench.SplitList(*only)
	cfg.RepoRoot = root
	cfg.Binary = *binary
	if cfg.Binary == "" {
		cfg.Binary = filepath.Join(root, "bin", "nimbus")
	}
	cfg.Progress = os.Stderr
	if *verbose {
		cfg.ServerLog = os.Stderr
	}
	cmdline := *command
	if cmdline == "" {
		cmdline = strings.Join(os.Args, " ")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	res, err := bench.RunServerless(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "serverlessbench: took %s\n", time.Since(start).Round(time.Second))
	rep := bench.ServerlessReport{Date: start, Command: cmdline, Machine: bench.DescribeMachine(root), Config: cfg, Result: res}
	return bench.WriteReport(*out, rep.WriteMarkdown)
}
