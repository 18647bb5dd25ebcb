// Package reconcile is a small level-triggered controller runtime in the
// spirit of controller-runtime: a Controller takes keys from a de-duplicating
// work queue and calls its Reconciler, which reads the desired and the live
// state of that one object and makes them match. A Reconcile is idempotent: it
// may run any number of times for the same state, and a missed event is
// repaired by the next pass (the controller lists every key at start and on
// each resync), so correctness never depends on seeing every change.
//
// Failures are retried with per-key exponential backoff; a Terminal error is
// not retried (the next change or resync will try again). Time comes from an
// injectable Clock, so tests step it instead of sleeping.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Key names one object: a controller reconciles one key at a time.
type Key struct {
	Namespace string
	Kind      string
	Name      string
}

func (k Key) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

// Result says when to look at a key again after a successful pass.
type Result struct {
	// RequeueAfter, when positive, reconciles the key again after that long
	// (a poll interval, a rollout step).
	RequeueAfter time.Duration
}

// Reconciler makes the live state of one object match its desired state.
type Reconciler interface {
	Reconcile(ctx context.Context, key Key) (Result, error)
}

// Func adapts a function to Reconciler.
type Func func(ctx context.Context, key Key) (Result, error)

// Reconcile calls f.
func (f Func) Reconcile(ctx context.Context, key Key) (Result, error) { return f(ctx, key) }

// terminal marks an error that retrying will not fix.
type terminal struct{ err error }

func (t terminal) Error() string { return t.err.Error() }
func (t terminal) Unwrap() error { return t.err }

// Terminal wraps err so that the controller does not retry the key: the
// object is wrong, not the world (a bad commit, an invalid spec). A later
// change or resync reconciles it again.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return terminal{err}
}

// IsTerminal reports whether err was marked Terminal.
func IsTerminal(err error) bool {
	var t terminal
	return errors.As(err, &t)
}

// ErrStopped answers a Sync on a controller that is not running.
var ErrStopped = errors.New("controller stopped")

// Options configure a Controller.
type Options struct {
	// List returns every key the controller owns. It runs at start (the
	// controller is Ready once each has been reconciled once) and on every
	// Resync. Nil: only enqueued keys are reconciled.
	List func(ctx context.Context) ([]Key, error)
	// Resync lists and reconciles every key again this often (0: never).
	Resync time.Duration
	// Workers reconcile different keys at once (default 1).
	Workers int
	// BaseDelay and MaxDelay bound the retry backoff of a failing key
	// (defaults 100ms and 5 minutes): BaseDelay × 2^(failures−1).
	BaseDelay, MaxDelay time.Duration
	Clock               Clock
	Logger              *slog.Logger
	// Observe, when set, is told the outcome of every pass (for metrics).
	Observe func(key Key, took time.Duration, err error)
}

// Controller runs a Reconciler over a work queue. Enqueue and Sync may be
// called before Start; keys wait for it.
type Controller struct {
	name string
	r    Reconciler
	opts Options
	q    *queue
	log  *slog.Logger

	mu       sync.Mutex
	failures map[Key]int
	started  bool

	ready     chan struct{}
	readyOnce sync.Once
	stopped   chan struct{}
}

// New returns a Controller named name (for logs) around r.
func New(name string, r Reconciler, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = 100 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 5 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Controller{
		name: name, r: r, opts: opts, q: newQueue(opts.Clock),
		log:      opts.Logger.With("controller", name),
		failures: map[Key]int{}, ready: make(chan struct{}), stopped: make(chan struct{}),
	}
}

// Enqueue asks for a pass over each key (de-duplicated with passes not yet
// started).
func (c *Controller) Enqueue(keys ...Key) { c.q.add(keys...) }

// EnqueueAfter asks for a pass over key once d has passed on the clock.
func (c *Controller) EnqueueAfter(key Key, d time.Duration) { c.q.addAfter(key, d) }

// Sync asks for a pass over key and waits for one that started after the
// call, returning its error: a caller that just changed key's desired state
// (an apply) returns once the live state matches it. ctx bounds the wait,
// not the pass.
func (c *Controller) Sync(ctx context.Context, key Key) error {
	ch, ok := c.q.addWaiter(key)
	if !ok {
		return fmt.Errorf("%s: %w", c.name, ErrStopped)
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stopped:
		return fmt.Errorf("%s: %w", c.name, ErrStopped)
	}
}

// Ready is closed once every key of the first List has been reconciled once
// (successfully or not): a server serves only after its routes are in place.
func (c *Controller) Ready() <-chan struct{} { return c.ready }

// Len is the number of keys waiting for a worker (for metrics and tests).
func (c *Controller) Len() int { return c.q.len() }

// Start runs the workers until ctx ends; it may be called once.
func (c *Controller) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return fmt.Errorf("%s: started twice", c.name)
	}
	c.started = true
	c.mu.Unlock()

	var wg sync.WaitGroup
	defer func() {
		c.q.close(fmt.Errorf("%s: %w", c.name, ErrStopped))
		close(c.stopped)
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.q.runDelays()
	}()
	for range c.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx)
		}()
	}
	var initial []Key
	if c.opts.List != nil {
		keys, err := c.opts.List(ctx)
		if err != nil {
			return fmt.Errorf("%s: first list: %w", c.name, err)
		}
		initial = keys
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.awaitFirstPass(ctx, initial)
	}()
	if c.opts.Resync <= 0 {
		<-ctx.Done()
		return nil
	}
	for {
		t := c.opts.Clock.NewTimer(c.opts.Resync)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
			if err := c.resync(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("resync: list failed", "err", err)
			}
		}
	}
}

// resync enqueues every key the controller owns.
func (c *Controller) resync(ctx context.Context) error {
	if c.opts.List == nil {
		return nil
	}
	keys, err := c.opts.List(ctx)
	if err != nil {
		return err
	}
	c.Enqueue(keys...)
	return nil
}

// awaitFirstPass queues the keys of the first list and closes ready once each
// has had a pass.
func (c *Controller) awaitFirstPass(ctx context.Context, keys []Key) {
	defer c.readyOnce.Do(func() { close(c.ready) })
	var chans []<-chan error
	for _, k := range keys {
		ch, ok := c.q.addWaiter(k)
		if !ok {
			return
		}
		chans = append(chans, ch)
	}
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
	c.log.Debug("first pass done", "keys", len(keys))
}

func (c *Controller) work(ctx context.Context) {
	for {
		k, ok := c.q.get()
		if !ok {
			return
		}
		err := c.reconcile(ctx, k)
		c.q.done(k, err)
	}
}

// reconcile runs one pass over k and schedules the next one.
func (c *Controller) reconcile(ctx context.Context, k Key) (err error) {
	start := c.opts.Clock.Now()
	var res Result
	func() {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("reconcile %s: panic: %v", k, v)
			}
		}()
		res, err = c.r.Reconcile(ctx, k)
	}()
	if c.opts.Observe != nil {
		c.opts.Observe(k, c.opts.Clock.Now().Sub(start), err)
	}
	switch {
	case err == nil:
		c.forget(k)
		if res.RequeueAfter > 0 {
			c.q.addAfter(k, res.RequeueAfter)
		}
	case ctx.Err() != nil:
		// Stopping: the next start lists every key again.
	case IsTerminal(err):
		c.forget(k)
		c.log.Warn("reconcile failed; not retried until the object changes", "key", k.String(), "err", err)
		if res.RequeueAfter > 0 {
			c.q.addAfter(k, res.RequeueAfter)
		}
	default:
		d := c.backoff(k)
		c.log.Warn("reconcile failed; retrying", "key", k.String(), "err", err, "retry_in", d)
		c.q.addAfter(k, d)
	}
	return err
}

// backoff counts a failure of k and returns how long to wait before retrying.
func (c *Controller) backoff(k Key) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures[k]++
	n := c.failures[k]
	d := float64(c.opts.BaseDelay) * math.Pow(2, float64(n-1))
	if d > float64(c.opts.MaxDelay) {
		return c.opts.MaxDelay
	}
	return time.Duration(d)
}

// forget resets k's backoff.
func (c *Controller) forget(k Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.failures, k)
}
