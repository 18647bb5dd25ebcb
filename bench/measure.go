package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Load says how long one cell runs. Iterations, when positive, fixes the number of
// measured calls per worker and Duration is ignored; the same holds for
// WarmupIterations and Warmup.
type Load struct {
	Warmup           time.Duration
	Duration         time.Duration
	WarmupIterations int
	Iterations       int
}

// sample is what one closed-loop cell measured.
type sample struct {
	lat     []time.Duration // every call's latency, sorted after measure returns
	elapsed time.Duration   // wall time from the first call's start to the last call's end
}

// op is one call of the system under test. worker is the caller's index (0..conc-1),
// so an op can keep per-worker buffers without locking.
type op func(ctx context.Context, worker int) error

// measure drives fn closed-loop from conc goroutines: each calls fn again as soon
// as the previous call returns. It warms up first, then records every call's
// latency into a slice allocated before the measured phase.
func measure(ctx context.Context, conc int, load Load, fn op) (sample, error) {
	return measureMarked(ctx, conc, load, fn, nil)
}

// measureMarked is measure with mark, when non-nil, called once between the
// warm-up (every call of it returned) and the measured phase: where a cell
// reads the counters it is billed from, so that they exclude the warm-up.
func measureMarked(ctx context.Context, conc int, load Load, fn op, mark func()) (sample, error) {
	warm, err := runPhase(ctx, conc, load.WarmupIterations, load.Warmup, nil, fn)
	if err != nil {
		return sample{}, fmt.Errorf("warm-up: %w", err)
	}
	if mark != nil {
		mark()
	}
	// Size each worker's slice from the warm-up rate so that appends never
	// allocate in the measured phase (30% headroom; an overrun still works).
	per := load.Iterations
	if per <= 0 {
		rate := float64(len(warm.lat)) / max(warm.elapsed.Seconds(), 1e-9) / float64(conc)
		per = int(math.Ceil(rate*load.Duration.Seconds()*1.3)) + 1024
	}
	bufs := make([][]time.Duration, conc)
	for i := range bufs {
		bufs[i] = make([]time.Duration, 0, per)
	}
	s, err := runPhase(ctx, conc, load.Iterations, load.Duration, bufs, fn)
	if err != nil {
		return sample{}, err
	}
	slices.Sort(s.lat)
	return s, nil
}

// runPhase runs conc closed-loop workers for iters calls each, or until d has
// passed since the common start when iters is 0. bufs, when non-nil, receives
// the latencies (one slice per worker); else they are counted only.
func runPhase(ctx context.Context, conc, iters int, d time.Duration, bufs [][]time.Duration, fn op) (sample, error) {
	if bufs == nil {
		bufs = make([][]time.Duration, conc)
		for i := range bufs {
			bufs[i] = make([]time.Duration, 0, max(iters, 1024))
		}
	}
	var (
		wg   sync.WaitGroup
		ends = make([]time.Time, conc)
		gate = make(chan struct{})
	)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for w := range conc {
		wg.Go(func() {
			lat := bufs[w]
			<-gate
			start := time.Now()
			deadline := start.Add(d)
			t0 := start
			for i := 0; iters <= 0 || i < iters; i++ {
				if err := fn(ctx, w); err != nil {
					cancel(err) // the first error wins; the others stop
					break
				}
				t1 := time.Now()
				lat = append(lat, t1.Sub(t0))
				t0 = t1
				if (iters <= 0 && !t1.Before(deadline)) || ctx.Err() != nil {
					break
				}
			}
			bufs[w] = lat
			ends[w] = t0
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return sample{}, err
	}
	var last time.Time
	n := 0
	for w := range conc {
		if ends[w].After(last) {
			last = ends[w]
		}
		n += len(bufs[w])
	}
	all := make([]time.Duration, 0, n)
	for _, b := range bufs {
		all = append(all, b...)
	}
	return sample{lat: all, elapsed: last.Sub(start)}, nil
}

// percentile is the nearest-rank percentile of sorted latencies (p in (0,100]).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// measureOpen drives fn open-loop: calls are due at a fixed rate (req/s) from
// the start. One pacer goroutine releases each call when it is due, and conc
// workers send them in order; a call is timed from its release, so one that waits
// for a free worker is charged for that wait (no coordinated omission). The pacer
// sleeps with nanosleep(2) (Go's timers overshoot by ~1 ms on Linux; nanosleep by
// ~0.1 ms), and a call released late is timed from when it was released, so the
// generator's own lateness is not billed to the server. With load.Iterations > 0
// it sends conc×Iterations calls, else rate×load.Duration.
func measureOpen(ctx context.Context, conc int, rate float64, load Load, fn op) (sample, error) {
	if rate <= 0 {
		return sample{}, fmt.Errorf("open loop needs a positive rate, got %v", rate)
	}
	n := conc * load.Iterations
	if n <= 0 {
		n = max(int(rate*load.Duration.Seconds()), 1)
	}
	interval := float64(time.Second) / rate
	lat := make([]time.Duration, n)
	released := make([]time.Time, n)
	queue := make(chan int, n)
	var (
		wg   sync.WaitGroup
		ends = make([]time.Time, conc)
	)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	wg.Go(func() {
		defer close(queue)
		for i := range n {
			due := start.Add(time.Duration(float64(i) * interval))
			if d := time.Until(due); d > 0 {
				ts := syscall.NsecToTimespec(int64(d))
				syscall.Nanosleep(&ts, nil)
			}
			if ctx.Err() != nil {
				return
			}
			released[i] = due
			if now := time.Now(); now.After(due) {
				released[i] = now
			}
			queue <- i
		}
	})
	for w := range conc {
		wg.Go(func() {
			for i := range queue {
				if ctx.Err() != nil {
					continue
				}
				if err := fn(ctx, w); err != nil {
					cancel(err) // the first error wins; the others stop
					continue
				}
				end := time.Now()
				lat[i] = end.Sub(released[i])
				ends[w] = end
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return sample{}, err
	}
	var last time.Time
	for _, t := range ends {
		if t.After(last) {
			last = t
		}
	}
	slices.Sort(lat)
	return sample{lat: lat, elapsed: last.Sub(start)}, nil
}
