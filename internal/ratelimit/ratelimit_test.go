package ratelimit

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

func TestLimiter(t *testing.T) {
	lim := NewLimiter(Limit{RequestsPerSecond: 2, Burst: 3}, "token t")
	now := time.Unix(1000, 0)
	for i := range 3 {
		if err := lim.Allow(now); err != nil {
			t.Fatalf("request %d of the burst: %v", i, err)
		}
	}
	err := lim.Allow(now)
	if errs.KindOf(err) != errs.ResourceExhausted || errs.RetryAfterOf(err) != 500*time.Millisecond {
		t.Fatalf("over the burst: %v (retry after %v)", err, errs.RetryAfterOf(err))
	}
	if !strings.Contains(errs.PublicMessage(err), "rate limit of token t exceeded") {
		t.Errorf("message = %q", errs.PublicMessage(err))
	}
	if err := lim.Allow(now.Add(500 * time.Millisecond)); err != nil {
		t.Fatalf("after the refill of one: %v", err)
	}
	if err := lim.Allow(now.Add(500 * time.Millisecond)); err == nil {
		t.Fatal("a second request at the same instant passed")
	}
	// A long pause fills the bucket to its burst, no more.
	later := now.Add(time.Hour)
	for i := range 3 {
		if err := lim.Allow(later); err != nil {
			t.Fatalf("after a pause, request %d: %v", i, err)
		}
	}
	if lim.Allow(later) == nil {
		t.Fatal("the bucket held more than its burst")
	}
	// A clock going backwards neither refills nor panics.
	if lim.Allow(now) == nil {
		t.Fatal("time going back refilled the bucket")
	}
	var none *Limiter = NewLimiter(Limit{}, "x")
	if none != nil || none.Allow(now) != nil {
		t.Fatal("an unlimited limiter refuses")
	}
	if l, err := Parse("50:200"); err != nil || l.RequestsPerSecond != 50 || l.Burst != 200 {
		t.Errorf("ParseLimit = %+v, %v", l, err)
	}
	if l, _ := Parse("0.5"); l.EffectiveBurst() != 1 {
		t.Errorf("default burst of 0.5/s = %d", l.EffectiveBurst())
	}
	if _, err := Parse("fast"); err == nil {
		t.Error("Parse(fast) accepted")
	}
	if err := (Limit{RequestsPerSecond: 2e9}).Validate(); !errors.Is(err, errs.ErrInvalid) {
		t.Errorf("Validate(2e9) = %v", err)
	}
}
