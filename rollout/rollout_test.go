package rollout_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/analysis"
	"github.com/nimbus-ai/nimbus/rollout"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func plan() rollout.Plan {
	return rollout.Plan{
		Steps: []int{5, 25, 50}, Interval: time.Minute, MinSamples: 200, Confidence: 0.95,
		Metrics: []rollout.Metric{
			{Name: rollout.ErrorRate, Max: 0.01},
			{Name: rollout.LatencyP99, MaxRatioToStable: 1.5},
		},
		MaxFailures: 0, ProgressDeadline: 30 * time.Minute,
	}
}

// latencies records n exponential latencies with the given mean (seconds),
// seeded so the test is the same every run.
func latencies(seed uint64, n int, mean float64) *analysis.Snapshot {
	h := analysis.NewHistogram(1e-6, 100)
	r := rand.New(rand.NewPCG(seed, 7))
	for range n {
		h.Record(r.ExpFloat64() * mean)
	}
	return h.Snapshot()
}

func window(n int64, errs int64, canaryMean, stableMean float64) rollout.Window {
	return rollout.Window{
		Canary: rollout.Sample{Requests: n, Errors: errs, Latency: latencies(1, int(n), canaryMean)},
		Stable: rollout.Sample{Requests: 10 * n, Latency: latencies(2, int(10*n), stableMean)},
	}
}

func next(t *testing.T, p rollout.Plan, s rollout.State, w rollout.Window, now time.Time) rollout.Decision {
	t.Helper()
	d, err := rollout.Next(p, s, w, now)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPromotesUnderGoodTraffic: with clean traffic each step passes once its
// interval is over (not before), and the last promotes to 100%.
func TestPromotesUnderGoodTraffic(t *testing.T) {
	p := plan()
	s := rollout.Start(t0)
	now := t0
	for step, weight := range p.Steps {
		w := window(2000, 0, 0.010, 0.010)
		d := next(t, p, s, w, now.Add(30*time.Second))
		if d.State.Step != step || d.CanaryWeight != weight || d.State.Phase != rollout.Progressing || d.NewWindow {
			t.Fatalf("step %d mid-interval: %+v", step, d)
		}
		now = now.Add(time.Minute)
		d = next(t, p, s, w, now)
		s = d.State
		if step < len(p.Steps)-1 {
			if s.Step != step+1 || d.CanaryWeight != p.Steps[step+1] || !d.NewWindow {
				t.Fatalf("after step %d: %+v", step, d)
			}
		} else if s.Phase != rollout.Succeeded || d.CanaryWeight != 100 {
			t.Fatalf("after the last step: %+v", d)
		}
	}
	if d := next(t, p, s, rollout.Window{}, now.Add(time.Hour)); d.State.Phase != rollout.Succeeded || d.CanaryWeight != 100 {
		t.Fatalf("a finished rollout changed: %+v", d)
	}
}

// TestWaitsWithoutTrafficThenFailsAtTheDeadline: too few requests is never
// a pass or a fail — until the progress deadline.
func TestWaitsWithoutTrafficThenFailsAtTheDeadline(t *testing.T) {
	p := plan()
	s := rollout.Start(t0)
	w := rollout.Window{Canary: rollout.Sample{Requests: 3, Errors: 1}, Stable: rollout.Sample{Requests: 30}}
	d := next(t, p, s, w, t0.Add(29*time.Minute))
	if d.State.Phase != rollout.Progressing || d.CanaryWeight != 5 || !strings.Contains(d.State.Reason, "3 of 200 requests") {
		t.Fatalf("1 error in 3 requests must wait, saying why: %+v", d)
	}
	d = next(t, p, s, w, t0.Add(30*time.Minute))
	if d.State.Phase != rollout.Failed || d.CanaryWeight != 0 || !strings.Contains(d.State.Reason, "progress deadline 30m0s") {
		t.Fatalf("at the deadline: %+v", d)
	}
}

// TestRollsBackOnErrors: 30 errors in 1,000 at a 1% limit fails at 95%
// (Wilson lower bound 0.021), at once, with the interval in the reason.
func TestRollsBackOnErrors(t *testing.T) {
	p := plan()
	d := next(t, p, rollout.Start(t0), window(1000, 30, 0.01, 0.01), t0.Add(10*time.Second))
	if d.State.Phase != rollout.Failed || d.CanaryWeight != 0 || !strings.Contains(d.State.Reason, "errorRate 0.03 [0.02") {
		t.Fatalf("high error rate: %+v", d)
	}
}

// TestRollsBackOnLatency: a canary three times slower than stable fails the
// p99 ratio of 1.5.
func TestRollsBackOnLatency(t *testing.T) {
	p := plan()
	d := next(t, p, rollout.Start(t0), window(2000, 0, 0.030, 0.010), t0.Add(10*time.Second))
	if d.State.Phase != rollout.Failed || !strings.Contains(d.State.Reason, "latencyP99") {
		t.Fatalf("slow canary: %+v", d)
	}
	// As slow as stable: passes.
	d = next(t, p, rollout.Start(t0), window(2000, 0, 0.010, 0.010), t0.Add(time.Minute))
	if d.State.Phase != rollout.Progressing || d.State.Step != 1 {
		t.Fatalf("canary as fast as stable: %+v", d)
	}
}

// TestToleratedFailuresRestartTheWindow: with maxFailures 1 the first failed
// analysis measures the step again; the second rolls back.
func TestToleratedFailuresRestartTheWindow(t *testing.T) {
	p := plan()
	p.MaxFailures = 1
	bad := window(1000, 30, 0.01, 0.01)
	d := next(t, p, rollout.Start(t0), bad, t0.Add(time.Minute))
	if d.State.Phase != rollout.Progressing || d.State.Failures != 1 || !d.NewWindow || !d.State.StepStarted.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first failure: %+v", d)
	}
	d = next(t, p, d.State, bad, t0.Add(2*time.Minute))
	if d.State.Phase != rollout.Failed {
		t.Fatalf("second failure: %+v", d)
	}
}

func TestValidate(t *testing.T) {
	if err := plan().Validate(); err != nil {
		t.Fatal(err)
	}
	p := plan()
	p.Steps = []int{50, 25, 100}
	p.Interval = 0
	p.Confidence = 1
	p.Metrics = append(p.Metrics, rollout.Metric{Name: "p50"})
	p.ProgressDeadline = time.Second
	err := p.Validate()
	if !errors.Is(err, rollout.ErrInvalid) {
		t.Fatalf("Validate = %v", err)
	}
	for _, want := range []string{"steps[1]: 25 does not increase on 50", "steps[2]: 100 is not a canary weight", "interval: at least 1s",
		"analysis.confidence", `analysis.metrics[2].name: "p50"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate lacks %q: %v", want, err)
		}
	}
	short := plan()
	short.ProgressDeadline = 2 * time.Minute
	if err := short.Validate(); err == nil || !strings.Contains(err.Error(), "progressDeadline: 2m0s is shorter than 3 steps of 1m0s") {
		t.Errorf("a deadline shorter than the steps: %v", err)
	}
	if _, err := rollout.Next(plan(), rollout.State{Phase: rollout.Progressing, Step: 7}, rollout.Window{}, t0); !errors.Is(err, rollout.ErrInvalid) {
		t.Fatalf("a state past the last step: %v", err)
	}
}

// BenchmarkNext is one analysis tick of a three-metric plan on a window of
// 2,000 canary and 20,000 stable requests (the latency intervals walk each
// histogram's buckets).
func BenchmarkNext(b *testing.B) {
	p := plan()
	p.Metrics = append(p.Metrics, rollout.Metric{Name: rollout.ShadowMismatchRate, Max: 0.02})
	w := window(2000, 3, 0.001, 0.001)
	w.Canary.Compared = 2000
	s := rollout.Start(t0)
	for b.Loop() {
		if _, err := rollout.Next(p, s, w, t0.Add(30*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
}
