package router

import (
	"context"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
)

// TestMeasurementWindows: an open window counts each target's requests,
// errors and latencies apart from the running counters, survives a weight
// change, gives a target a later Set adds a window of its own, restarts when
// opened again, counts shadow mismatches, and is gone once closed.
func TestMeasurementWindows(t *testing.T) {
	f := newFake()
	f.models["stable"] = echo("1")
	f.models["canary"] = func(_ context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
		return nil, errs.New(errs.Internal, "canary broke")
	}
	f.models["other"] = echo("1")
	r := newRouter(t, f, Options{})
	cfg := func(ws ...int) Config {
		c := Config{Generation: 1, Targets: []Target{{Model: "stable", Weight: ws[0]}, {Model: "canary", Weight: ws[1]}}}
		if len(ws) > 2 {
			c.Targets = append(c.Targets, Target{Model: "other", Weight: ws[2]})
		}
		return c
	}
	r.Set("default", "svc", cfg(50, 50))
	send := func(n int) {
		for range n {
			r.Infer(context.Background(), request("svc"))
		}
	}
	send(10) // before the window: not counted in it
	if _, ok := r.ReadWindow("default", "svc"); ok {
		t.Fatal("a window before OpenWindow")
	}
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	if !r.OpenWindow("default", "svc", t0) || r.OpenWindow("default", "nope", t0) {
		t.Fatal("OpenWindow")
	}
	send(20)
	w, ok := r.ReadWindow("default", "svc")
	if !ok || !w.Opened.Equal(t0) {
		t.Fatalf("ReadWindow: %+v %v", w, ok)
	}
	st, ca := w.Targets["stable"], w.Targets["canary"]
	if st.Requests != 10 || st.Errors != 0 || ca.Requests != 10 || ca.Errors != 10 || st.Latency.Count() != 10 || ca.Latency.Count() != 10 {
		t.Fatalf("window after 20 requests: stable %+v canary %+v", st, ca)
	}
	// A weight change keeps the window; a new target gets one.
	r.Set("default", "svc", cfg(50, 25, 25))
	send(4)
	w, _ = r.ReadWindow("default", "svc")
	if w.Targets["stable"].Requests != 12 || w.Targets["canary"].Requests != 11 || w.Targets["other"].Requests != 1 {
		t.Fatalf("after a Set: %+v", w.Targets)
	}
	stats, _ := r.Stats("default", "svc")
	if stats.Targets[0].Requests != 17 {
		t.Fatalf("running counters: %+v", stats.Targets[0])
	}
	// Opening again restarts it.
	r.OpenWindow("default", "svc", t0.Add(time.Minute))
	w, _ = r.ReadWindow("default", "svc")
	if w.Targets["stable"].Requests != 0 || !w.Opened.Equal(t0.Add(time.Minute)) {
		t.Fatalf("restarted window: %+v", w)
	}
	// Shadow comparisons: a shadow that answers differently is a mismatch.
	f.models["shadowed"] = scaled("1", 2, 0)
	c := Config{Generation: 2, Targets: []Target{{Model: "stable", Weight: 100}}, Shadow: &Shadow{Model: "shadowed", Percent: 100}}
	r.Set("default", "svc", c)
	r.OpenWindow("default", "svc", t0)
	send(5)
	r.shadows.Wait()
	w, _ = r.ReadWindow("default", "svc")
	if w.Shadow == nil || w.ShadowTarget != "shadowed" || w.Shadow.Compared != 5 || w.Shadow.Mismatches != 5 {
		t.Fatalf("shadow window: %+v %q", w.Shadow, w.ShadowTarget)
	}
	r.CloseWindow("default", "svc")
	if _, ok := r.ReadWindow("default", "svc"); ok {
		t.Fatal("a window after CloseWindow")
	}
	send(1)
	stats, _ = r.Stats("default", "svc")
	if stats.Targets[0].Requests == 0 {
		t.Fatal("closing the window stopped the running counters")
	}
}

// TestRolloutShadow: a shadow with From mirrors only the requests that
// target answered (never the canary's own, which would compare it with
// itself); a window counts an answer within Tolerance as a match and a
// shadow error as a mismatch; a From naming no target mirrors nothing.
func TestRolloutShadow(t *testing.T) {
	f := newFake()
	f.models["m"] = scaled("1", 1, 0)
	r := newRouter(t, f, Options{})
	set := func(shadowModel string, tol float64, from string) {
		r.Set("default", "svc", Config{Generation: 1,
			Targets: []Target{{Model: "m", Ref: "1", Weight: 50}, {Model: "m", Ref: "2", Weight: 50}},
			Shadow:  &Shadow{Model: shadowModel, Percent: 100, From: from, Tolerance: tol}})
		r.OpenWindow("default", "svc", time.Time{})
	}
	read := func() WindowSample {
		for range 20 {
			if _, err := r.Infer(context.Background(), request("svc")); err != nil {
				t.Fatal(err)
			}
		}
		r.shadows.Wait()
		w, _ := r.ReadWindow("default", "svc")
		return *w.Shadow
	}
	f.models["close"] = scaled("2", 1, 0.001) // off by 1e-3
	set("close", 0.01, "m@1")
	if s := read(); s.Compared != 10 || s.Mismatches != 0 {
		t.Fatalf("within tolerance, from m@1 only: %+v; want 10 compared (half the requests), none mismatched", s)
	}
	set("close", 0, "m@1")
	if s := read(); s.Compared != 10 || s.Mismatches != 10 {
		t.Fatalf("exact: %+v; want 10 mismatches", s)
	}
	f.models["broken"] = func(context.Context, *serving.InferRequest) (*serving.InferResponse, error) {
		return nil, errs.New(errs.Internal, "broken")
	}
	set("broken", 1, "m@1")
	if s := read(); s.Compared != 10 || s.Mismatches != 10 {
		t.Fatalf("shadow errors: %+v; want each counted as a mismatch", s)
	}
	set("close", 0.01, "m@9")
	if s := read(); s.Compared != 0 {
		t.Fatalf("From naming no target: %+v; want nothing mirrored", s)
	}
}
