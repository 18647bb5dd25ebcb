package run

import (
	"context"
	"sync"
)

// Tracker starts and tracks the goroutines a component runs on its own
// (background loads, trims, copies): Close refuses new ones, cancels the
// context they were given and waits for them, so that none outlives its owner.
// The zero value is not usable; use NewTracker.
type Tracker struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// NewTracker returns an open Tracker.
func NewTracker() *Tracker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Tracker{ctx: ctx, cancel: cancel}
}

// Go runs f in a new goroutine with a context that ends at Close, and reports
// true; after Close it runs nothing and reports false.
func (t *Tracker) Go(f func(ctx context.Context)) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f(t.ctx)
	}()
	return true
}

// Closed reports whether Close was called.
func (t *Tracker) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Close refuses new goroutines, cancels their context and waits for the
// running ones to return. It may be called more than once.
func (t *Tracker) Close() {
	t.Drain(true)
}

// Drain refuses new goroutines and waits for the running ones; cancel says
// whether their context is cancelled first (false lets them finish their
// work). It may be called more than once.
func (t *Tracker) Drain(cancel bool) {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	if cancel {
		t.cancel()
	}
	t.wg.Wait()
	t.cancel()
}
