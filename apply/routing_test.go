package apply_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/spec"
)

// newRouterEngine is a second engine over env's store, as a restarted server
// builds one, with its own router and clock.
func newRouterEngine(t *testing.T, e *env, clock reconcile.Clock) (*apply.Engine, *routes) {
	t.Helper()
	r := &routes{}
	eng := apply.NewEngine(apply.Options{Registry: e.reg, Resources: e.store, Audit: e.store, Routes: r,
		Fetcher: e.src, Logger: slog.New(slog.DiscardHandler), Clock: clock, Resync: time.Minute})
	startEngine(t, eng)
	return eng, r
}

func (r *routes) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// TestRouterIsRestoredBeforeReady: a restarted server routes every stored
// service before it is ready to serve (the router's controller's first pass
// replaces the one-shot restore), and the status recorded before the restart
// is still there.
func TestRouterIsRestoredBeforeReady(t *testing.T) {
	e := newEnv(t)
	u1, s1 := e.src.add("a")
	u2, s2 := e.src.add("b")
	e.mustApply(t, modelDoc("m", map[int64][2]string{1: {u1, s1}, 2: {u2, s2}}, "champion: 1, challenger: 2", "")+
		"---\n"+serviceDoc("svc", "m", 90)+"---\n"+serviceDoc("other", "m", 50))
	if got := e.routes.list(); !slices.Equal(got, []string{"set default/other 1", "set default/svc 1"}) &&
		!slices.Equal(got, []string{"set default/svc 1", "set default/other 1"}) {
		t.Fatalf("router calls after apply: %q", got)
	}
	ctx := context.Background()
	before, err := e.store.GetResource(ctx, spec.KindInferenceService, "default", "svc")
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.store.GetStatus(ctx, spec.KindInferenceService, "default", "svc")
	if err != nil {
		t.Fatalf("no status recorded by the apply's pass: %v", err)
	}
	ready, ok := st.Condition(spec.ConditionReady)
	if !ok || ready.Status != spec.ConditionTrue || ready.Reason != "Routed" || st.ObservedGeneration != 1 || ready.LastTransitionTime == nil {
		t.Fatalf("status = %+v", st)
	}
	// The status write did not touch the resource.
	if before.ResourceVersion != 1 || before.Generation != 1 {
		t.Fatalf("resource after its status was written: resourceVersion %d generation %d, want 1 and 1",
			before.ResourceVersion, before.Generation)
	}

	_, r2 := newRouterEngine(t, e, reconcile.NewFakeClock(time.Now()))
	got := r2.list()
	slices.Sort(got)
	if !slices.Equal(got, []string{"set default/other 1", "set default/svc 1"}) {
		t.Fatalf("restarted router calls before ready: %q", got)
	}
	// A pass with nothing new writes nothing.
	st2, err := e.store.GetStatus(ctx, spec.KindInferenceService, "default", "svc")
	if err != nil {
		t.Fatal(err)
	}
	if !st2.UpdatedAt.Equal(st.UpdatedAt) {
		t.Fatalf("a no-op pass rewrote the status (%v, was %v)", st2.UpdatedAt, st.UpdatedAt)
	}
}

// TestRouterRepairsWhatAnEventMissed: the controller is level-triggered. A
// second engine over the same store (its router hears of no apply made
// through the first) catches up on its next resync: a changed service is
// routed at its new generation, a deleted one is dropped.
func TestRouterRepairsWhatAnEventMissed(t *testing.T) {
	e := newEnv(t)
	u1, s1 := e.src.add("a")
	u2, s2 := e.src.add("b")
	e.mustApply(t, modelDoc("m", map[int64][2]string{1: {u1, s1}, 2: {u2, s2}}, "champion: 1, challenger: 2", "")+
		"---\n"+serviceDoc("svc", "m", 90)+"---\n"+serviceDoc("gone", "m", 90))
	clock := reconcile.NewFakeClock(time.Now())
	_, r2 := newRouterEngine(t, e, clock)
	e.mustApply(t, serviceDoc("svc", "m", 80))
	if _, err := e.engine.Delete(context.Background(), spec.DeleteRequest{Kind: spec.KindInferenceService, Namespace: "default", Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	if got := r2.list(); slices.Contains(got, "set default/svc 2") || slices.Contains(got, "delete default/gone") {
		t.Fatalf("the second router heard of the changes before its resync: %q", got)
	}
	waitTimerAt(t, clock)
	clock.Step(time.Minute)
	testutil.Eventually(t, 5*time.Second, func() bool {
		got := r2.list()
		return slices.Contains(got, "set default/svc 2") && slices.Contains(got, "delete default/gone")
	}, "the resync did not repair the router")
}

// waitTimerAt waits until a timer is pending on clock (the resync's).
func waitTimerAt(t *testing.T, clock *reconcile.FakeClock) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() bool { _, ok := clock.NextDeadline(); return ok }, "no resync timer")
}
