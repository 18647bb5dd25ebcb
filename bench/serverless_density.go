package bench

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/residency"
)

// DensityResult is the density benchmark.
type DensityResult struct {
	Config DensityConfig

	// Push: every variant uploaded and registered (PushWorkers at a time).
	PushTime time.Duration

	// Calibration, on an unlimited server: one variant loaded, its measured cost
	// (status API memoryBytes) and what the status counted as used beyond it.
	Cost, Other int64
	// Budget = Resident × Cost + Other, passed as --memory-budget to the
	// server restarted on the same data dir.
	Budget int64

	// Warm-up traffic (not measured): requests and cold ones among them.
	WarmupRequests, WarmupCold int

	// Measured traffic.
	Requests int
	Errors   int      // answers other than 200
	ErrorLog []string // the first few
	Elapsed  time.Duration
	// ColdHeader counts answers with Nimbus-Cold-Start.
	ColdHeader int
	// Distinct is how many models the measured traffic touched.
	Distinct int
	// All is every request's latency; Cold those with the header; Hit the
	// others; ServerWait the header's values.
	All, Cold, Hit, ServerWait Dist

	// Metric deltas over the measured traffic. MetricsFound is false when
	// /metrics lacked nimbus_cold_starts_total.
	MetricsFound                                      bool
	MetricColdStarts, MetricEvictions, MetricIdleOuts float64
	// LoadMean is nimbus_model_load_duration_seconds' sum ÷ count over the
	// measured traffic (0 if absent).
	LoadMean time.Duration

	// StaticBest is the hit ratio a cache holding exactly the Resident most
	// popular models would have under this Zipf distribution: a reference, not
	// a bound for LRU (which adapts to the sampled traffic).
	StaticBest float64

	// Server memory: VmHWM (peak since its start, the warm-up included), the
	// highest VmRSS sampled every 200 ms while measuring, VmRSS and the status
	// API's memory summary at the end.
	PeakRSS, MaxSampledRSS, EndRSS int64
	EndMemory                      residency.Memory
	EndStatusErr                   string
}

// ReqPerSec is measured requests over measured time.
func (r DensityResult) ReqPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// HitRatio is 1 − cold answers ÷ answers, from the Nimbus-Cold-Start header,
// over the 200 answers: only those are classified cold or hit, so an errored
// request counts as neither.
func (r DensityResult) HitRatio() float64 {
	ok := r.Requests - r.Errors
	if ok <= 0 {
		return 0
	}
	return 1 - float64(r.ColdHeader)/float64(ok)
}

// MetricHitRatio is the same from nimbus_cold_starts_total, which counts loads
// started by a request: requests that joined a load already under way are cold
// by the header but not counted again here. It divides by every request, since
// a request whose load failed was counted by the metric too.
func (r DensityResult) MetricHitRatio() float64 {
	if r.Requests == 0 {
		return 0
	}
	return 1 - r.MetricColdStarts/float64(r.Requests)
}

func densityModel(i int) string { return fmt.Sprintf("d-%05d", i) }

// runDensity pushes Models variants of mlp.onnx, calibrates the budget on an
// unlimited server, restarts the server on the same data dir with the budget,
// and drives Zipf traffic closed-loop.
func (e *slEnv) runDensity(ctx context.Context) (_ DensityResult, err error) {
	c := e.cfg.Density
	res := DensityResult{Config: c}
	if c.Models < 2 || c.Resident < 1 || c.Concurrency < 1 || c.PushWorkers < 1 || c.ZipfS <= 1 || c.ZipfV < 1 {
		return res, fmt.Errorf("bad density settings %+v (want models ≥ 2, resident ≥ 1, workers ≥ 1, s > 1, v ≥ 1)", c)
	}
	base, err := os.ReadFile(filepath.Join(e.cfg.RepoRoot, "testdata", "models", "mlp.onnx"))
	if err != nil {
		return res, err
	}
	dir := filepath.Join(e.work, "density")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	p, err := e.newProbe(ctx, filepath.Join(dir, "base.onnx"), base)
	if err != nil {
		return res, err
	}
	dataDir := filepath.Join(dir, "data")

	// 1. Push and calibrate on an unlimited server.
	srv, err := e.startServer(ctx, dataDir, "0")
	if err != nil {
		return res, err
	}
	a := newAPI(srv, max(c.PushWorkers, c.Concurrency))
	if err := e.pushDensity(ctx, a, base, &res); err != nil {
		a.close()
		srv.Stop()
		return res, err
	}
	if c.Budget == "" {
		err = e.calibrate(ctx, a, p, &res)
	}
	a.close()
	e.stopServer(srv, "density (unlimited server, push and calibration)", &err)
	if err != nil {
		return res, err
	}
	budget := c.Budget
	if budget == "" {
		res.Budget = int64(c.Resident)*res.Cost + res.Other
		budget = strconv.FormatInt(res.Budget, 10)
		e.progress("density: one model costs %d bytes (+%d other); budget %d bytes = %d models", res.Cost, res.Other, res.Budget, c.Resident)
	}

	// 2. The same data dir under the budget.
	srv, err = e.startServer(ctx, dataDir, budget)
	if err != nil {
		return res, err
	}
	defer e.stopServer(srv, "density (server under the budget)", &err)
	a = newAPI(srv, c.Concurrency)
	defer a.close()

	perm := rand.New(rand.NewPCG(c.Seed, 0)).Perm(c.Models) // popularity rank → model
	names := make([]string, c.Models)
	for i := range names {
		names[i] = densityModel(i)
	}
	res.StaticBest = zipfTopShare(c.ZipfS, c.ZipfV, c.Models, c.Resident)

	if c.Warmup > 0 {
		w, err := e.densityTraffic(ctx, a, p.body, names, perm, c.Warmup, 1_000)
		if err != nil {
			return res, fmt.Errorf("warm-up: %w:\n%s", err, srv.Logs())
		}
		res.WarmupRequests, res.WarmupCold = w.requests, len(w.cold)
		e.progress("density: warm-up %d requests, %d cold", w.requests, len(w.cold))
	}

	before, err := a.metrics(ctx)
	if err != nil {
		return res, err
	}
	var (
		samplerWG  sync.WaitGroup
		maxRSS     atomic.Int64
		stopSample = make(chan struct{})
	)
	samplerWG.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := srv.Mem(); err == nil && m.RSS > maxRSS.Load() {
				maxRSS.Store(m.RSS)
			}
			select {
			case <-stopSample:
				return
			case <-t.C:
			}
		}
	})
	t, err := e.densityTraffic(ctx, a, p.body, names, perm, c.Duration, 2_000_000)
	close(stopSample)
	samplerWG.Wait()
	if err != nil {
		return res, fmt.Errorf("measured traffic: %w:\n%s", err, srv.Logs())
	}
	after, err := a.metrics(ctx)
	if err != nil {
		return res, err
	}

	res.Requests, res.Errors, res.ErrorLog, res.Elapsed = t.requests, t.errors, t.errorLog, t.elapsed
	res.ColdHeader, res.Distinct = len(t.cold), t.distinct
	res.All, res.Cold, res.Hit, res.ServerWait = distOf(t.all), distOf(t.cold), distOf(t.hit), distOf(t.wait)
	res.MaxSampledRSS = maxRSS.Load()
	delta := func(name string, match ...string) (float64, bool) {
		a, ok := after.sum(name, match...)
		b, _ := before.sum(name, match...)
		return a - b, ok
	}
	ns := `namespace="default"`
	res.MetricColdStarts, res.MetricsFound = delta("nimbus_cold_starts_total", ns)
	res.MetricEvictions, _ = delta("nimbus_evictions_total", ns)
	res.MetricIdleOuts, _ = delta("nimbus_idle_unloads_total")
	if sum, ok := delta("nimbus_model_load_duration_seconds_sum"); ok {
		if n, _ := delta("nimbus_model_load_duration_seconds_count"); n > 0 {
			res.LoadMean = time.Duration(sum / n * float64(time.Second))
		}
	}
	if m, err := srv.Mem(); err == nil {
		res.PeakRSS, res.EndRSS = m.HWM, m.RSS
	}
	if st, err := a.status(ctx); err == nil {
		res.EndMemory = st.Memory
	} else {
		res.EndStatusErr = err.Error()
	}
	e.progress("density: %d requests in %s (%.0f/s), hit ratio %.3f, %d errors", res.Requests,
		res.Elapsed.Round(time.Millisecond), res.ReqPerSec(), res.HitRatio(), res.Errors)
	return res, nil
}

// pushDensity pushes the variants PushWorkers at a time, printing progress.
func (e *slEnv) pushDensity(ctx context.Context, a *api, base []byte, res *DensityResult) error {
	n := e.cfg.Density.Models
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
	)
	start := time.Now()
	for range e.cfg.Density.PushWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := a.push(ctx, densityModel(i), Variant(base, i)); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		})
	}
	ticker := time.NewTicker(2 * time.Second)
	stopped := make(chan struct{})
	var tw sync.WaitGroup
	tw.Go(func() {
		defer ticker.Stop()
		for {
			select {
			case <-stopped:
				return
			case <-ticker.C:
				d := done.Load()
				e.progress("density: pushed %d/%d (%.0f/s)", d, n, float64(d)/time.Since(start).Seconds())
			}
		}
	})
	wg.Wait()
	close(stopped)
	tw.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	res.PushTime = time.Since(start)
	e.progress("density: pushed %d models in %s (%.0f/s)", n, res.PushTime.Round(time.Millisecond), float64(n)/res.PushTime.Seconds())
	return nil
}

// calibrate loads the first variant and reads its measured cost from the status API.
func (e *slEnv) calibrate(ctx context.Context, a *api, p *probe, res *DensityResult) error {
	name := densityModel(0)
	r, err := a.infer(ctx, name, p.body, nil)
	if err != nil {
		return err
	}
	if r.status != 200 {
		return fmt.Errorf("%s: HTTP %d: %.300s", name, r.status, r.body)
	}
	if err := p.check(r.body); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	// The cost is measured during the load; allow the report a moment to show it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := a.status(ctx)
		if err != nil {
			return err
		}
		for _, v := range st.Versions {
			if v.Model == name && v.MemoryBytes > 0 {
				res.Cost = v.MemoryBytes
				res.Other = max(st.Memory.UsedBytes-v.MemoryBytes, 0)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the status API reports no memoryBytes for %s after it served a request", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// traffic is what densityTraffic saw.
type traffic struct {
	requests, errors int
	errorLog         []string
	elapsed          time.Duration
	distinct         int
	all, hit, cold   []time.Duration
	wait             []time.Duration
}

// densityTraffic runs Concurrency closed-loop workers for d. Worker w draws
// popularity ranks from its own Zipf(s, v) source (seeded Seed, w+1) and asks
// the model perm[rank]. A transport error stops the run; an HTTP error is
// counted. capHint sizes the latency slices.
func (e *slEnv) densityTraffic(ctx context.Context, a *api, body []byte, names []string, perm []int, d time.Duration, capHint int) (traffic, error) {
	c := e.cfg.Density
	type local struct {
		traffic
		seen []bool
		end  time.Time
	}
	locals := make([]local, c.Concurrency)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range c.Concurrency {
		wg.Go(func() {
			l := &locals[w]
			l.seen = make([]bool, len(names))
			per := capHint / c.Concurrency
			l.all, l.hit = make([]time.Duration, 0, per), make([]time.Duration, 0, per)
			z := rand.NewZipf(rand.New(rand.NewPCG(c.Seed, uint64(w)+1)), c.ZipfS, c.ZipfV, uint64(len(names)-1))
			var buf bytes.Buffer
			for ctx.Err() == nil && time.Now().Before(deadline) {
				m := perm[z.Uint64()]
				t0 := time.Now()
				r, err := a.infer(ctx, names[m], body, &buf)
				lat := time.Since(t0)
				if err != nil {
					if ctx.Err() == nil {
						cancel(fmt.Errorf("%s: %w", names[m], err))
					}
					return
				}
				l.requests++
				l.seen[m] = true
				l.all = append(l.all, lat)
				if r.status != 200 {
					l.errors++
					if len(l.errorLog) < 5 {
						l.errorLog = append(l.errorLog, fmt.Sprintf("%s: HTTP %d: %.200s", names[m], r.status, r.body))
					}
					continue
				}
				if r.cold {
					l.cold = append(l.cold, lat)
					l.wait = append(l.wait, r.wait)
				} else {
					l.hit = append(l.hit, lat)
				}
			}
			l.end = time.Now()
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return traffic{}, err
	}
	var t traffic
	seen := make([]bool, len(names))
	var last time.Time
	for _, l := range locals {
		t.requests += l.requests
		t.errors += l.errors
		t.errorLog = append(t.errorLog, l.errorLog...)
		t.all, t.hit, t.cold, t.wait = append(t.all, l.all...), append(t.hit, l.hit...), append(t.cold, l.cold...), append(t.wait, l.wait...)
		for i, s := range l.seen {
			seen[i] = seen[i] || s
		}
		if l.end.After(last) {
			last = l.end
		}
	}
	t.errorLog = t.errorLog[:min(len(t.errorLog), 5)]
	for _, s := range seen {
		if s {
			t.distinct++
		}
	}
	t.elapsed = last.Sub(start)
	return t, nil
}

// zipfTopShare is the probability mass of the top k of n ranks under the
// distribution rand.Zipf draws from: P(rank) ∝ (v + rank)^−s, rank in [0, n).
func zipfTopShare(s, v float64, n, k int) float64 {
	var top, all float64
	for r := range n {
		p := math.Pow(v+float64(r), -s)
		all += p
		if r < k {
			top += p
		}
	}
	if all == 0 {
		return 0
	}
	return top / all
}
