package run_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/internal/run"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// journal records what components did, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.events...)
}

// part is a component that records its start and stop; failStart makes it
// fail before it is ready, ready (when set) is closed once it started.
type part struct {
	name      string
	j         *journal
	failStart error
	ready     chan struct{}
}

func (p *part) Start(ctx context.Context) error {
	p.j.add("start " + p.name)
	if p.failStart != nil {
		return p.failStart
	}
	if p.ready != nil {
		close(p.ready)
	}
	<-ctx.Done()
	p.j.add("stop " + p.name)
	return nil
}

type readyPart struct{ *part }

func (p readyPart) Ready() <-chan struct{} { return p.ready }

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("events %q, want %q", got, want)
		}
	}
}

func TestGroupStartsInOrderAndStopsInReverse(t *testing.T) {
	j := &journal{}
	g := run.NewGroup(nil)
	for _, n := range []string{"a", "b", "c"} {
		g.Add(n, readyPart{&part{name: n, j: j, ready: make(chan struct{})}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	waitFor(t, func() bool { return len(j.get()) == 3 })
	equal(t, j.get(), []string{"start a", "start b", "start c"})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	equal(t, j.get(), []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"})
}

func TestGroupFailedStartStopsWhatStarted(t *testing.T) {
	j := &journal{}
	boom := errors.New("port taken")
	g := run.NewGroup(nil)
	g.Add("a", readyPart{&part{name: "a", j: j, ready: make(chan struct{})}})
	g.Add("b", readyPart{&part{name: "b", j: j, ready: make(chan struct{})}})
	g.Add("c", readyPart{&part{name: "c", j: j, failStart: boom, ready: make(chan struct{})}})
	g.Add("d", readyPart{&part{name: "d", j: j, ready: make(chan struct{})}})
	err := g.Run(context.Background())
	if !errors.Is(err, boom) || err.Error() != "start c: port taken" {
		t.Fatalf("Run = %v, want start c: port taken", err)
	}
	equal(t, j.get(), []string{"start a", "start b", "start c", "stop b", "stop a"})
}

func TestGroupFailureLaterStopsAll(t *testing.T) {
	j := &journal{}
	fail := make(chan error)
	g := run.NewGroup(nil)
	g.Add("a", readyPart{&part{name: "a", j: j, ready: make(chan struct{})}})
	g.Add("flaky", run.Func(func(ctx context.Context) error {
		select {
		case err := <-fail:
			return err
		case <-ctx.Done():
			return nil
		}
	}))
	g.Add("c", readyPart{&part{name: "c", j: j, ready: make(chan struct{})}})
	done := make(chan error)
	go func() { done <- g.Run(context.Background()) }()
	waitFor(t, func() bool { return len(j.get()) == 2 })
	fail <- errors.New("lost the broker")
	err := <-done
	if err == nil || err.Error() != "flaky: lost the broker" {
		t.Fatalf("Run = %v", err)
	}
	equal(t, j.get(), []string{"start a", "start c", "stop c", "stop a"})
}

func TestGroupEarlyCleanExitIsAFault(t *testing.T) {
	g := run.NewGroup(nil)
	j := &journal{}
	g.Add("a", &part{name: "a", j: j})
	g.Add("quitter", run.Func(func(context.Context) error { return nil }))
	err := g.Run(context.Background())
	if !errors.Is(err, run.ErrStoppedEarly) {
		t.Fatalf("Run = %v, want ErrStoppedEarly", err)
	}
	equal(t, j.get(), []string{"start a", "stop a"})
}

func TestGroupPanicStopsInOrder(t *testing.T) {
	j := &journal{}
	g := run.NewGroup(nil)
	g.Add("a", &part{name: "a", j: j})
	g.Add("bad", run.Func(func(context.Context) error { panic("nil map") }))
	err := g.Run(context.Background())
	if err == nil || err.Error() != "bad: panic: nil map" {
		t.Fatalf("Run = %v", err)
	}
	equal(t, j.get(), []string{"start a", "stop a"})
}

func TestGroupWaitsForReadyBeforeNext(t *testing.T) {
	j := &journal{}
	release := make(chan struct{})
	ready := make(chan struct{})
	g := run.NewGroup(nil)
	g.Add("slow", readyFunc{ready: ready, f: func(ctx context.Context) error {
		j.add("start slow")
		<-release
		j.add("ready slow")
		close(ready)
		<-ctx.Done()
		return nil
	}})
	g.Add("next", &part{name: "next", j: j})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	waitFor(t, func() bool { return len(j.get()) == 1 })
	close(release)
	waitFor(t, func() bool { return len(j.get()) == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	equal(t, j.get(), []string{"start slow", "ready slow", "start next", "stop next"})
}

func TestGroupCancelledWhileWaitingForReady(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	g := run.NewGroup(nil)
	g.Add("never-ready", readyFunc{ready: make(chan struct{}), f: func(c context.Context) error {
		close(started)
		<-c.Done()
		return c.Err() // context.Canceled is a clean stop
	}})
	g.Add("unstarted", run.Func(func(context.Context) error { t.Error("started after cancel"); return nil }))
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

type readyFunc struct {
	ready chan struct{}
	f     func(context.Context) error
}

func (r readyFunc) Start(ctx context.Context) error { return r.f(ctx) }
func (r readyFunc) Ready() <-chan struct{}          { return r.ready }

func TestTrackerRefusesAfterCloseAndCancels(t *testing.T) {
	tr := run.NewTracker()
	running := make(chan struct{})
	var stopped bool
	if !tr.Go(func(ctx context.Context) {
		close(running)
		<-ctx.Done()
		stopped = true
	}) {
		t.Fatal("Go refused on an open tracker")
	}
	<-running
	tr.Close()
	if !stopped {
		t.Fatal("Close returned before the goroutine did")
	}
	if tr.Go(func(context.Context) { t.Error("ran after Close") }) {
		t.Fatal("Go accepted after Close")
	}
	tr.Close() // a second Close is harmless
}

func TestTrackerDrainLetsWorkFinish(t *testing.T) {
	tr := run.NewTracker()
	release := make(chan struct{})
	var cancelled bool
	tr.Go(func(ctx context.Context) {
		<-release
		cancelled = ctx.Err() != nil
	})
	go close(release)
	tr.Drain(false)
	if cancelled {
		t.Fatal("Drain(false) cancelled the work's context")
	}
	if !tr.Closed() {
		t.Fatal("not closed after Drain")
	}
}

// waitFor polls cond until it holds (NATS's checkFor): the components run in
// their own goroutines.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
