package limits

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/errs"
)

// Budget is the bytes that requests in flight may hold together: their bodies
// or messages and what decoding them allocates. Reserve fails at once (no
// waiting: a busy server must not queue memory) when the bytes do not fit. A
// nil *Budget, or one with limit 0, is unlimited. It is safe for concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes; 0 means unlimited.
func NewBudget(limit int64) *Budget { return &Budget{limit: max(0, limit)} }

// Reserve takes n bytes of the budget. Past it the error is ResourceExhausted
// with a one-second retry hint (429 with Retry-After, RESOURCE_EXHAUSTED); a
// request that needs more than the whole budget is TooLarge, since no retry
// can succeed. On success the caller must Release n.
func (b *Budget) Reserve(n int64) error {
	if b == nil || b.limit == 0 || n <= 0 {
		return nil
	}
	if n > b.limit {
		return errs.New(errs.TooLarge, "the request needs %s in flight, more than the server's whole budget of %s (maxInflightBytes)",
			config.FormatBytes(n), config.FormatBytes(b.limit))
	}
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return &errs.Error{Kind: errs.ResourceExhausted, RetryAfter: time.Second,
				Message: fmt.Sprintf("the server is busy: requests in flight hold %s of its %s budget (maxInflightBytes); retry later",
					config.FormatBytes(used), config.FormatBytes(b.limit))}
		}
		if b.used.CompareAndSwap(used, used+n) {
			return nil
		}
	}
}

// Release returns n bytes taken with Reserve.
func (b *Budget) Release(n int64) {
	if b == nil || b.limit == 0 || n <= 0 {
		return
	}
	b.used.Add(-n)
}

// Used is the bytes reserved now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Limit is the budget in bytes; 0 means unlimited.
func (b *Budget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}

// Hold is one request's share of a Budget: what it has reserved so far, all
// returned by one Release. It is for one goroutine; the zero value (or a Hold
// of a nil Budget) reserves nothing and never fails.
type Hold struct {
	b *Budget
	n int64
}

// NewHold starts a request's share of b.
func (b *Budget) NewHold() Hold { return Hold{b: b} }

// Reserve takes n more bytes for this request (see Budget.Reserve); a request
// whose bytes together pass the whole budget is TooLarge.
func (h *Hold) Reserve(n int64) error {
	if h.b != nil && h.b.limit > 0 && h.n+n > h.b.limit {
		return h.b.Reserve(h.n + n) // the TooLarge answer, naming the total
	}
	if err := h.b.Reserve(n); err != nil {
		return err
	}
	if h.b != nil && h.b.limit > 0 && n > 0 {
		h.n += n
	}
	return nil
}

// Release returns everything this request reserved.
func (h *Hold) Release() {
	h.b.Release(h.n)
	h.n = 0
}

// Held is the bytes this request holds now.
func (h *Hold) Held() int64 { return h.n }
