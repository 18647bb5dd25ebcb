package limits

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

func TestBudget(t *testing.T) {
	b := NewBudget(100)
	if err := b.Reserve(60); err != nil {
		t.Fatal(err)
	}
	err := b.Reserve(50)
	if errs.KindOf(err) != errs.ResourceExhausted || errs.RetryAfterOf(err) != time.Second || !strings.Contains(err.Error(), "maxInflightBytes") {
		t.Fatalf("over the budget: %v (retry after %s)", err, errs.RetryAfterOf(err))
	}
	if err := b.Reserve(101); errs.KindOf(err) != errs.TooLarge {
		t.Fatalf("more than the whole budget: %v, want TooLarge", err)
	}
	b.Release(60)
	if err := b.Reserve(100); err != nil {
		t.Fatalf("the whole budget once free: %v", err)
	}
	b.Release(100)
	if b.Used() != 0 {
		t.Fatalf("used = %d after every release", b.Used())
	}
	var unlimited *Budget
	if err := unlimited.Reserve(1 << 40); err != nil {
		t.Fatal(err)
	}
	if err := NewBudget(0).Reserve(1 << 40); err != nil {
		t.Fatal(err)
	}
}

// TestBudgetNeverOvercommits: concurrent reservers never hold more than the
// limit together.
func TestBudgetNeverOvercommits(t *testing.T) {
	b := NewBudget(1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := int64(0)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if b.Reserve(300) != nil {
					continue
				}
				mu.Lock()
				peak = max(peak, b.Used())
				mu.Unlock()
				b.Release(300)
			}
		}()
	}
	wg.Wait()
	if peak > 1000 || b.Used() != 0 {
		t.Fatalf("peak %d, left %d; limit 1000", peak, b.Used())
	}
}
