// Package run is the home of Nimbus's long-running parts: a Group that starts
// components in order and stops them in reverse order, and a Tracker for the
// goroutines a component starts on its own.
//
// A component's Start blocks until its context ends (then it returns nil) or
// it fails. The Group gives every component its own context, so that it can
// stop them one at a time, last started first: the API servers drain before
// the controllers behind them stop, and those before the model manager.
// A component that fails while starting, or later, stops the whole group.
package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Component is a long-running part of the server.
type Component interface {
	// Start runs until ctx ends and then returns nil, or returns the error
	// that stopped it. It must return soon after ctx ends.
	Start(ctx context.Context) error
}

// Func adapts a function to Component.
type Func func(ctx context.Context) error

// Start calls f.
func (f Func) Start(ctx context.Context) error { return f(ctx) }

// Readier is implemented by a component whose start takes time (a controller's
// first pass, a listener's bind): the Group starts the next component only once
// Ready's channel is closed. A component without it is ready as soon as its
// Start is running.
type Readier interface {
	Ready() <-chan struct{}
}

// Group runs components. Build it with Add, then call Run once.
type Group struct {
	log     *slog.Logger
	members []member
	// slowStop is when a component that has not stopped yet is logged.
	slowStop time.Duration
}

type member struct {
	name string
	c    Component
}

// NewGroup returns an empty Group logging to log (nil: discard).
func NewGroup(log *slog.Logger) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Group{log: log, slowStop: 5 * time.Second}
}

// Add appends a component; components start in the order they were added.
func (g *Group) Add(name string, c Component) {
	g.members = append(g.members, member{name, c})
}

// ErrStoppedEarly is the cause when a component's Start returned nil before
// the group was stopping: a long-running part that ends by itself is a fault.
var ErrStoppedEarly = errors.New("stopped before the server was stopping")

// started is a component while it runs.
type started struct {
	member
	cancel context.CancelFunc
	done   chan error // receives Start's result, then is closed
	result error
	exited bool
}

// Run starts every component in order, each once the previous is ready, and
// serves until ctx ends or a component fails. Then it stops the started
// components in reverse order, each waited for before the next is told to
// stop, and returns the first failure (nil when ctx ended and all stopped
// cleanly). Values of ctx reach the components; its cancellation reaches them
// only through the ordered stop.
func (g *Group) Run(ctx context.Context) error {
	base := context.WithoutCancel(ctx)
	var running []*started
	exits := make(chan *started, len(g.members))
	var first error
	fail := func(err error) {
		if first == nil {
			first = err
		}
	}
	for _, m := range g.members {
		if ctx.Err() != nil {
			break
		}
		cctx, cancel := context.WithCancel(base)
		s := &started{member: m, cancel: cancel, done: make(chan error, 1)}
		running = append(running, s)
		go func() {
			err := safeStart(cctx, m)
			s.done <- err
			close(s.done)
			exits <- s
		}()
		if err := g.waitReady(ctx, s, exits); err != nil {
			fail(err)
			break
		}
	}
	if first == nil && ctx.Err() == nil {
		g.log.Debug("all components started", "count", len(running))
		select {
		case <-ctx.Done():
		case s := <-exits:
			fail(exitError(s))
		}
	}
	for i := len(running) - 1; i >= 0; i-- {
		if err := g.stop(running[i]); err != nil {
			fail(err)
		}
	}
	return first
}

// waitReady waits until s is ready, fails, or ctx ends (nil: go on).
func (g *Group) waitReady(ctx context.Context, s *started, exits <-chan *started) error {
	var ready <-chan struct{}
	if r, ok := s.c.(Readier); ok {
		ready = r.Ready()
	} else {
		return nil
	}
	for {
		select {
		case <-ready:
			return nil
		case <-ctx.Done():
			return nil
		case e := <-exits:
			if err := exitError(e); err != nil {
				if e == s {
					return fmt.Errorf("start %s: %w", s.name, errors.Unwrap(err))
				}
				return err
			}
		}
	}
}

// exitError is why an exited component stops the group, and records its exit.
func exitError(s *started) error {
	s.exited = true
	s.result = <-s.done
	if s.result == nil {
		return fmt.Errorf("%s: %w", s.name, ErrStoppedEarly)
	}
	return fmt.Errorf("%s: %w", s.name, s.result)
}

// stop cancels s and waits for its Start to return.
func (g *Group) stop(s *started) error {
	s.cancel()
	if s.exited {
		return nil // its exit was reported already
	}
	t := time.NewTimer(g.slowStop)
	defer t.Stop()
	for {
		select {
		case err, ok := <-s.done:
			s.exited = true
			if ok && err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			return nil
		case <-t.C:
			g.log.Warn("component still stopping", "component", s.name, "waited", g.slowStop)
		}
	}
}

// safeStart runs Start, turning a panic into an error so that one faulty
// component stops the group in order instead of killing the process without
// draining.
func safeStart(ctx context.Context, m member) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return m.c.Start(ctx)
}
