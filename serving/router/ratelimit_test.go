package router

import (
	"context"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/ratelimit"
)

// TestServiceRateLimit: a service's bucket refuses with ResourceExhausted and a
// retry hint once spent; a weight change keeps the bucket (no refill by
// re-applying), a new limit gets a new one, and the server's default applies to
// services without their own. Refill is 1 per 1000 s, so nothing refills
// during the test.
func TestServiceRateLimit(t *testing.T) {
	b := fakeFor(2)
	r := newRouter(t, b, Options{DefaultRateLimit: ratelimit.Limit{RequestsPerSecond: 0.001, Burst: 1}})
	slow := &ratelimit.Limit{RequestsPerSecond: 0.001, Burst: 2}
	r.Set("default", "svc", Config{Targets: targetsOf([]int{100, 0}), RateLimit: slow})
	infer := func(name string) error {
		_, err := r.Infer(context.Background(), request(name))
		return err
	}
	for i := range 2 {
		if err := infer("svc"); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	err := infer("svc")
	if errs.KindOf(err) != errs.ResourceExhausted || errs.RetryAfterOf(err) <= 0 {
		t.Fatalf("over the limit: %v (retry after %v)", err, errs.RetryAfterOf(err))
	}
	if b.count("m0@1") != 2 {
		t.Errorf("refused requests reached the backend: %d calls", b.count("m0@1"))
	}
	// New weights, same limit: still spent.
	r.Set("default", "svc", Config{Targets: targetsOf([]int{50, 50}), RateLimit: slow})
	if err := infer("svc"); errs.KindOf(err) != errs.ResourceExhausted {
		t.Fatalf("after a weight change the bucket refilled: %v", err)
	}
	// A new limit starts a new bucket.
	r.Set("default", "svc", Config{Targets: targetsOf([]int{50, 50}), RateLimit: &ratelimit.Limit{RequestsPerSecond: 0.001, Burst: 3}})
	if err := infer("svc"); err != nil {
		t.Fatalf("after a new limit: %v", err)
	}
	// The default bounds services without a limit of their own; direct model
	// calls (not a service) are not limited here.
	r.Set("default", "other", Config{Targets: targetsOf([]int{100})})
	if err := infer("other"); err != nil {
		t.Fatal(err)
	}
	if err := infer("other"); errs.KindOf(err) != errs.ResourceExhausted {
		t.Fatalf("default limit: %v", err)
	}
	for range 3 {
		if err := infer("m0"); err != nil {
			t.Fatalf("a model, not a service: %v", err)
		}
	}
	// Unlimited explicitly, despite the default.
	r.Set("default", "free", Config{Targets: targetsOf([]int{100}), RateLimit: &ratelimit.Limit{}})
	for range 5 {
		if err := infer("free"); err != nil {
			t.Fatalf("unlimited service: %v", err)
		}
	}
}
