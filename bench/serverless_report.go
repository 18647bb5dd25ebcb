package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Goals of issue 4 the report checks.
const (
	GoalColdP50       = 50 * time.Millisecond  // cold start p50, per model
	GoalDensityColdP9 = 100 * time.Millisecond // density: cold-request p99
	GoalMemoryRatio   = 1.10                   // RSS after N cycles ÷ after the first
)

// ServerlessReport is what a serverless run writes.
type ServerlessReport struct {
	Date    time.Time
	Command string
	Machine Machine
	Config  ServerlessConfig
	Result  ServerlessResult
}

// WriteMarkdown writes the report as a markdown document.
func (r ServerlessReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# Nimbus serverless benchmarks (issue 4)\n\n")
	fmt.Fprintf(&b, "- date: %s\n", r.Date.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "- command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- machine: %s, %d CPUs (GOMAXPROCS %d), %s\n", m.CPU, m.NumCPU, m.GOMAXPROCS, m.OS)
	fmt.Fprintf(&b, "- software: %s, ONNX Runtime %s; server `%s` (%s) as a child process on 127.0.0.1, gRPC off\n",
		m.GoVersion, m.ORTVersion, r.Config.Binary, orDash(r.Result.NimbusVersion))
	b.WriteString("- the benchmark client, the server and the in-process references share the same cores\n\n")
	b.WriteString(r.goals())
	if len(r.Result.Cold) > 0 {
		b.WriteString(r.cold())
	}
	if r.Result.Density != nil {
		b.WriteString(r.density())
	}
	if r.Result.Memory != nil {
		b.WriteString(r.memory())
	}
	if len(r.Result.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Result.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r ServerlessReport) goals() string {
	var b strings.Builder
	b.WriteString("## Goals\n\n| goal | measured | status |\n| --- | --- | --- |\n")
	for _, c := range r.Result.Cold {
		fmt.Fprintf(&b, "| cold start p50 ≤ %s, %s | %s ms (raw ONNX Runtime %s ms, ×%s) | %s |\n", ms0(GoalColdP50), c.Model,
			msIf(c.Cold, c.Cold.P50), msIf(c.Raw, c.Raw.P50), durRatio(c.Cold.P50, c.Raw.P50), metMissed(c.Cold.N > 0 && c.Cold.P50 <= GoalColdP50))
	}
	if d := r.Result.Density; d != nil {
		fmt.Fprintf(&b, "| density: cold-request p99 ≤ %s | %s ms (%d cold requests) | %s |\n", ms0(GoalDensityColdP9),
			msIf(d.Cold, d.Cold.P99), d.Cold.N, metMissed(d.Cold.N > 0 && d.Cold.P99 <= GoalDensityColdP9))
		fmt.Fprintf(&b, "| density: no errors | %d non-200 of %d | %s |\n", d.Errors, d.Requests, metMissed(d.Errors == 0))
	}
	if mr := r.Result.Memory; mr != nil {
		s := mr.Server
		fmt.Fprintf(&b, "| memory: RSS after %d cycles ≤ %.2f × after the first | %s → %s MiB (×%.3f) | %s |\n", mr.Cycles, GoalMemoryRatio,
			mib(s.First().RSS), mib(s.Last().RSS), s.Ratio(), metMissed(s.Ratio() > 0 && s.Ratio() <= GoalMemoryRatio))
	}
	b.WriteString("\n")
	return b.String()
}

func (r ServerlessReport) cold() string {
	var b strings.Builder
	c := r.Config.Cold
	b.WriteString("## Cold start\n\n")
	fmt.Fprintf(&b, "Per model: %d fresh variants timed (after one untimed warm-up variant), each a separate model never loaded before. "+
		"Per variant: its first request (cold: send to last byte, client side), a second request right after (warm), then "+
		"`POST /v2/repository/models/M/unload`; and, in the bench process, `runtime/onnx` Load (session create) + first Run of "+
		"another fresh variant file. Requests carry one row; every answer is checked against the base model's outputs. "+
		"Server: `--memory-budget 0`.\n\n", c.Samples)
	b.WriteString("| model | size | what | n | p50 ms | p90 ms | p99 ms | max ms |\n| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, x := range r.Result.Cold {
		for _, row := range []struct {
			what string
			d    Dist
		}{
			{"Nimbus cold: first request", x.Cold},
			{"Nimbus cold: server wait (`Nimbus-Cold-Start`)", x.ServerWait},
			{"Nimbus warm: second request", x.Warm},
			{"raw ONNX Runtime: session create", x.RawLoad},
			{"raw ONNX Runtime: session create + first Run", x.Raw},
		} {
			if row.d.N == 0 {
				fmt.Fprintf(&b, "| %s | %s MB | %s | 0 | — | — | — | — |\n", x.Model, mb(int64(x.Bytes)), row.what)
				continue
			}
			fmt.Fprintf(&b, "| %s | %s MB | %s | %d | %s | %s | %s | %s |\n", x.Model, mb(int64(x.Bytes)), row.what, row.d.N,
				ms(row.d.P50), ms(row.d.P90), ms(row.d.P99), ms(row.d.Max))
		}
	}
	b.WriteString("\n| model | Nimbus cold p50 ÷ raw ORT p50 | p90 ÷ p90 | p99 ÷ p99 | Nimbus-Cold-Start on cold / warm requests |\n| --- | ---: | ---: | ---: | --- |\n")
	for _, x := range r.Result.Cold {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d of %d / %d of %d |\n", x.Model, durRatio(x.Cold.P50, x.Raw.P50), durRatio(x.Cold.P90, x.Raw.P90),
			durRatio(x.Cold.P99, x.Raw.P99), x.HeaderOnCold, x.Cold.N, x.HeaderOnWarm, x.Warm.N)
	}
	b.WriteString("\n")
	return b.String()
}

func (r ServerlessReport) density() string {
	var b strings.Builder
	d := r.Result.Density
	c := d.Config
	b.WriteString("## Density\n\n")
	budget := fmt.Sprintf("Budget = %d × the cost of one loaded variant (`memoryBytes` in the status API of an unlimited server) + what that "+
		"status counted as used besides it; the server is then restarted on the same data dir with `--memory-budget %d`.", c.Resident, d.Budget)
	if c.Budget != "" {
		budget = fmt.Sprintf("Budget given: the server is restarted on the same data dir with `--memory-budget %s` (no calibration).", c.Budget)
	}
	fmt.Fprintf(&b, "%d models (variants of `testdata/models/mlp.onnx`, distinct `doc_string`), pushed %d at a time. %s "+
		"Traffic: %d closed-loop workers, each drawing popularity ranks from `rand.NewZipf(rand.New(rand.NewPCG(%d, worker+1)), s=%g, v=%g, imax=%d)`, "+
		"rank r → model `perm[r]` with `perm = rand.New(rand.NewPCG(%d, 0)).Perm(%d)`; one-row requests; %s of warm-up "+
		"(not measured), then %s measured.\n\n",
		c.Models, c.PushWorkers, budget, c.Concurrency, c.Seed, c.ZipfS, c.ZipfV, c.Models-1, c.Seed, c.Models, c.Warmup, c.Duration)
	b.WriteString("| metric | value |\n| --- | ---: |\n")
	row := func(k, format string, args ...any) { fmt.Fprintf(&b, "| %s | %s |\n", k, fmt.Sprintf(format, args...)) }
	row("push time", "%s (%.0f models/s)", d.PushTime.Round(time.Millisecond), float64(c.Models)/max(d.PushTime.Seconds(), 1e-9))
	if c.Budget == "" {
		row("cost of one model (memoryBytes)", "%d B", d.Cost)
		row("other used at calibration", "%d B", d.Other)
		row("budget", "%d B (%s MiB) = %d models", d.Budget, mib(d.Budget), c.Resident)
	} else {
		row("budget", "`%s` (given)", c.Budget)
	}
	row("warm-up", "%d requests, %d cold", d.WarmupRequests, d.WarmupCold)
	row("requests (measured)", "%d in %s", d.Requests, d.Elapsed.Round(time.Millisecond))
	row("requests/s", "%.0f", d.ReqPerSec())
	row("hit ratio (1 − `Nimbus-Cold-Start` answers ÷ 200 answers)", "%.4f (%d cold)", d.HitRatio(), d.ColdHeader)
	if d.MetricsFound {
		row("hit ratio from `nimbus_cold_starts_total`", "%.4f (%.0f cold starts)", d.MetricHitRatio(), d.MetricColdStarts)
	} else {
		row("hit ratio from `nimbus_cold_starts_total`", "— (metric absent)")
	}
	row(fmt.Sprintf("reference: share of traffic on the %d most popular models", c.Resident), "%.4f", d.StaticBest)
	row("distinct models requested", "%d", d.Distinct)
	row("latency, all requests: p50 / p99", "%s / %s ms", msIf(d.All, d.All.P50), msIf(d.All, d.All.P99))
	row("latency, hits: p50 / p99", "%s / %s ms", msIf(d.Hit, d.Hit.P50), msIf(d.Hit, d.Hit.P99))
	row("latency, cold requests: p50 / p99", "%s / %s ms", msIf(d.Cold, d.Cold.P50), msIf(d.Cold, d.Cold.P99))
	row("server wait on cold requests (`Nimbus-Cold-Start`): p50 / p99", "%s / %s ms", msIf(d.ServerWait, d.ServerWait.P50), msIf(d.ServerWait, d.ServerWait.P99))
	if d.LoadMean > 0 {
		row("mean load (`nimbus_model_load_duration_seconds`)", "%s ms", ms(d.LoadMean))
	}
	row("evictions (`nimbus_evictions_total`)", "%.0f", d.MetricEvictions)
	row("idle unloads (`nimbus_idle_unloads_total`)", "%.0f", d.MetricIdleOuts)
	row("errors (non-200)", "%d", d.Errors)
	row("server peak RSS (VmHWM, since restart)", "%s MiB", mib(d.PeakRSS))
	row("server highest sampled RSS while measuring (every 200 ms)", "%s MiB", mib(d.MaxSampledRSS))
	row("server RSS at the end (VmRSS)", "%s MiB", mib(d.EndRSS))
	if d.EndStatusErr == "" {
		em := d.EndMemory
		row("status at the end: used / budget, resident", "%s / %s MiB, %d versions", mib(em.UsedBytes), mib(em.BudgetBytes), em.Resident)
	} else {
		row("status at the end", "%s", d.EndStatusErr)
	}
	b.WriteString("\n")
	for _, e := range d.ErrorLog {
		fmt.Fprintf(&b, "- error: `%s`\n", e)
	}
	if len(d.ErrorLog) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

func (r ServerlessReport) memory() string {
	var b strings.Builder
	mr := r.Result.Memory
	b.WriteString("## Memory return\n\n")
	fmt.Fprintf(&b, "%d cycles of `%s`. Server: `POST /v2/repository/models/M/load`, one inference, `POST …/unload`; VmRSS of the "+
		"server process after the cycle, once settled (from %s after the unload, every %s until two reads agree within %.0f%%). In-process: `runtime/onnx` Load, Run, Close in the bench process, its VmRSS after "+
		"`debug.FreeOSMemory()` (Go garbage returned, so what remains is ONNX Runtime's and the C allocator's); the second "+
		"in-process loop also calls `malloc_trim(0)` after each Close.\n\n", mr.Cycles, mr.Model, serverTrimDelay, settlePoll, 100*settleTol)
	b.WriteString("| loop | RSS before MiB | after cycle 1 MiB | after last cycle MiB | last ÷ first | VmHWM MiB | cycle p50 ms |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	series := []MemSeries{mr.Server, mr.InProcess, mr.InProcessTrim}
	for _, s := range series {
		if s.Skipped != "" {
			fmt.Fprintf(&b, "| %s | — | — | — | — | — | %s |\n", s.What, s.Skipped)
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.3f | %s | %s |\n", s.What, mib(s.Before), mib(s.First().RSS),
			mib(s.Last().RSS), s.Ratio(), mib(s.Last().HWM), ms(s.Cycle.P50))
	}
	b.WriteString("\n| after cycle | server RSS MiB | in-process RSS MiB | in-process + malloc_trim RSS MiB |\n| ---: | ---: | ---: | ---: |\n")
	for i, p := range mr.Server.Points {
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", p.Cycle, mib(p.RSS), mib(mr.InProcess.at(i).RSS), mib(mr.InProcessTrim.at(i).RSS))
	}
	b.WriteString("\n")
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// msIf is ms(v), or "—" when dist has no samples.
func msIf(dist Dist, v time.Duration) string {
	if dist.N == 0 {
		return "—"
	}
	return ms(v)
}

func ms0(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
func mib(n int64) string {
	if n == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", float64(n)/(1<<20))
}
func mb(n int64) string { return fmt.Sprintf("%.2f", float64(n)/1e6) }

func durRatio(a, b time.Duration) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func metMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
