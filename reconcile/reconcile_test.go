package reconcile_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/reconcile"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func key(name string) reconcile.Key {
	return reconcile.Key{Namespace: "default", Kind: "Thing", Name: name}
}

// recorder is a Reconciler that records its passes and answers from a script.
type recorder struct {
	mu      sync.Mutex
	passes  []string
	active  map[reconcile.Key]int
	overlap bool
	// answer, when set, decides a pass's outcome.
	answer func(k reconcile.Key, n int) (reconcile.Result, error)
	// hold, when set, blocks each pass until it receives.
	hold chan struct{}
	seen chan reconcile.Key
}

func newRecorder() *recorder {
	return &recorder{active: map[reconcile.Key]int{}, seen: make(chan reconcile.Key, 100)}
}

func (r *recorder) Reconcile(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
	r.mu.Lock()
	r.active[k]++
	if r.active[k] > 1 {
		r.overlap = true
	}
	r.passes = append(r.passes, k.Name)
	n := 0
	for _, p := range r.passes {
		if p == k.Name {
			n++
		}
	}
	r.mu.Unlock()
	r.seen <- k
	if r.hold != nil {
		select {
		case <-r.hold:
		case <-ctx.Done():
			r.mu.Lock()
			r.active[k]--
			r.mu.Unlock()
			return reconcile.Result{}, ctx.Err()
		}
	}
	defer func() {
		r.mu.Lock()
		r.active[k]--
		r.mu.Unlock()
	}()
	if r.answer != nil {
		return r.answer(k, n)
	}
	return reconcile.Result{}, nil
}

func (r *recorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.passes {
		if p == name {
			n++
		}
	}
	return n
}

// start runs c until the test ends.
func start(t *testing.T, c *reconcile.Controller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
}

func TestSyncWaitsForAPassAfterTheCall(t *testing.T) {
	r := newRecorder()
	c := reconcile.New("test", r, reconcile.Options{})
	start(t, c)
	for i := 1; i <= 3; i++ {
		if err := c.Sync(context.Background(), key("a")); err != nil {
			t.Fatal(err)
		}
		if got := r.count("a"); got != i {
			t.Fatalf("after Sync %d: %d passes", i, got)
		}
	}
}

func TestSyncReturnsThePassError(t *testing.T) {
	r := newRecorder()
	bad := errors.New("spec is wrong")
	r.answer = func(reconcile.Key, int) (reconcile.Result, error) { return reconcile.Result{}, reconcile.Terminal(bad) }
	c := reconcile.New("test", r, reconcile.Options{})
	start(t, c)
	if err := c.Sync(context.Background(), key("a")); !errors.Is(err, bad) || !reconcile.IsTerminal(err) {
		t.Fatalf("Sync = %v", err)
	}
}

func TestKeysAreDeduplicatedAndNeverProcessedTwiceAtOnce(t *testing.T) {
	r := newRecorder()
	r.hold = make(chan struct{})
	c := reconcile.New("test", r, reconcile.Options{Workers: 4})
	start(t, c)
	c.Enqueue(key("a"))
	<-r.seen // a's first pass is running and held
	for range 10 {
		c.Enqueue(key("a")) // while in process: one more pass after, not ten
	}
	c.Enqueue(key("b"), key("b"), key("b"))
	<-r.seen // b runs on another worker meanwhile
	r.hold <- struct{}{}
	r.hold <- struct{}{}
	<-r.seen // a's second pass
	close(r.hold)
	// One Sync per key flushes what is left: a third pass of a, a second of b.
	if err := c.Sync(context.Background(), key("a")); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(context.Background(), key("b")); err != nil {
		t.Fatal(err)
	}
	if a, b := r.count("a"), r.count("b"); a != 3 || b != 2 {
		t.Fatalf("passes a=%d b=%d, want 3 and 2 (dedup)", a, b)
	}
	if r.overlap {
		t.Fatal("one key was reconciled by two workers at once")
	}
}

func TestFailuresBackOffExponentially(t *testing.T) {
	clock := reconcile.NewFakeClock(t0)
	r := newRecorder()
	r.answer = func(k reconcile.Key, n int) (reconcile.Result, error) {
		if n <= 4 {
			return reconcile.Result{}, errors.New("store is busy")
		}
		return reconcile.Result{}, nil
	}
	c := reconcile.New("test", r, reconcile.Options{Clock: clock, BaseDelay: time.Second, MaxDelay: 5 * time.Second})
	start(t, c)
	c.Enqueue(key("a"))
	<-r.seen
	// Retries after 1s, 2s, 4s, then 5s (the cap).
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second} {
		next := waitTimer(t, clock)
		if got := next.Sub(clock.Now()); got != d {
			t.Fatalf("retry in %v, want %v", got, d)
		}
		clock.Step(d - time.Millisecond)
		select {
		case <-r.seen:
			t.Fatalf("retried before %v", d)
		default:
		}
		clock.Step(time.Millisecond)
		<-r.seen
	}
	if err := c.Sync(context.Background(), key("a")); err != nil {
		t.Fatalf("sixth pass: %v", err)
	}
}

func TestTerminalErrorsAreNotRetried(t *testing.T) {
	clock := reconcile.NewFakeClock(t0)
	r := newRecorder()
	r.answer = func(reconcile.Key, int) (reconcile.Result, error) {
		return reconcile.Result{}, reconcile.Terminal(errors.New("unknown field"))
	}
	c := reconcile.New("test", r, reconcile.Options{Clock: clock})
	start(t, c)
	_ = c.Sync(context.Background(), key("a"))
	if _, ok := clock.NextDeadline(); ok {
		t.Fatal("a terminal failure scheduled a retry")
	}
}

func TestRequeueAfter(t *testing.T) {
	clock := reconcile.NewFakeClock(t0)
	r := newRecorder()
	r.answer = func(reconcile.Key, int) (reconcile.Result, error) {
		return reconcile.Result{RequeueAfter: time.Minute}, nil
	}
	c := reconcile.New("test", r, reconcile.Options{Clock: clock})
	start(t, c)
	c.Enqueue(key("poll"))
	<-r.seen
	for range 3 {
		next := waitTimer(t, clock)
		if d := next.Sub(clock.Now()); d != time.Minute {
			t.Fatalf("requeued in %v, want 1m", d)
		}
		clock.Step(time.Minute)
		<-r.seen
	}
}

func TestReadyAfterFirstListAndResync(t *testing.T) {
	clock := reconcile.NewFakeClock(t0)
	r := newRecorder()
	r.hold = make(chan struct{})
	var lists int
	var mu sync.Mutex
	c := reconcile.New("test", r, reconcile.Options{Clock: clock, Resync: 10 * time.Minute,
		List: func(context.Context) ([]reconcile.Key, error) {
			mu.Lock()
			lists++
			mu.Unlock()
			return []reconcile.Key{key("x"), key("y")}, nil
		}})
	start(t, c)
	<-r.seen
	select {
	case <-c.Ready():
		t.Fatal("ready before the first pass over every listed key")
	default:
	}
	r.hold <- struct{}{}
	<-r.seen
	r.hold <- struct{}{}
	<-c.Ready()
	close(r.hold)
	if r.count("x") != 1 || r.count("y") != 1 {
		t.Fatalf("first pass: x=%d y=%d", r.count("x"), r.count("y"))
	}
	waitTimer(t, clock)
	clock.Step(10 * time.Minute)
	<-r.seen
	<-r.seen
	mu.Lock()
	defer mu.Unlock()
	if lists != 2 {
		t.Fatalf("%d lists, want 2 (start and one resync)", lists)
	}
}

func TestFailedFirstListFailsStart(t *testing.T) {
	c := reconcile.New("test", newRecorder(), reconcile.Options{
		List: func(context.Context) ([]reconcile.Key, error) { return nil, errors.New("store closed") }})
	err := c.Start(context.Background())
	if err == nil || err.Error() != "test: first list: store closed" {
		t.Fatalf("Start = %v", err)
	}
	if err := c.Sync(context.Background(), key("a")); !errors.Is(err, reconcile.ErrStopped) {
		t.Fatalf("Sync after stop = %v, want ErrStopped", err)
	}
}

func TestPanicIsAnError(t *testing.T) {
	r := newRecorder()
	r.answer = func(reconcile.Key, int) (reconcile.Result, error) { panic("nil map") }
	c := reconcile.New("test", r, reconcile.Options{Clock: reconcile.NewFakeClock(t0)})
	start(t, c)
	err := c.Sync(context.Background(), key("a"))
	if err == nil || err.Error() != "reconcile Thing default/a: panic: nil map" {
		t.Fatalf("Sync = %v", err)
	}
}

func TestSyncBeforeStartWaitsAndStopFailsWaiters(t *testing.T) {
	r := newRecorder()
	r.hold = make(chan struct{})
	c := reconcile.New("test", r, reconcile.Options{})
	got := make(chan error, 1)
	go func() { got <- c.Sync(context.Background(), key("a")) }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Start(ctx) }()
	<-r.seen // the Sync's key was taken once the controller started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-got; err == nil {
		t.Fatal("Sync of a pass cut short by the stop returned nil")
	}
}

// waitTimer waits until the controller has set a timer on clock and returns
// its deadline.
func waitTimer(t *testing.T, clock *reconcile.FakeClock) time.Time {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		added := clock.TimerAdded()
		if next, ok := clock.NextDeadline(); ok {
			return next
		}
		select {
		case <-added:
		case <-time.After(time.Until(deadline)):
			t.Fatal("no timer set within 5s")
		}
	}
}
