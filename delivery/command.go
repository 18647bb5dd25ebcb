package delivery

import (
	"context"
	"fmt"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// CommandKind is what a person asks of a rollout.
type CommandKind string

// Commands.
const (
	// Promote ends a rollout in progress as if every step had passed.
	Promote CommandKind = "promote"
	// Abort rolls a rollout in progress back, as a failed analysis would.
	Abort CommandKind = "abort"
	// Retry starts a failed rollout over with the same declared version.
	Retry CommandKind = "retry"
)

// ParseCommand checks a command's name.
func ParseCommand(s string) (CommandKind, error) {
	switch k := CommandKind(s); k {
	case Promote, Abort, Retry:
		return k, nil
	}
	return "", errs.New(errs.InvalidArgument, "unknown rollout command %q: use promote, abort or retry", s)
}

// command is a pending request; the next pass over the service carries it
// out, so the controller stays the one writer of the rollout's state.
type command struct {
	kind  CommandKind
	actor string
	// err says why the command did not apply (set during the pass).
	err  error
	done chan error
}

// fail records why the command does not apply (the first reason wins).
func (c *command) fail(err error) {
	if c != nil && c.err == nil {
		c.err = err
	}
}

// notApplicable records that the rollout is in phase, where only retry of
// a failed rollout means anything (and is handled before).
func (c *command) notApplicable(phase string) {
	if c == nil {
		return
	}
	switch {
	case c.kind == Retry:
		c.fail(errs.New(errs.FailedPrecondition, "the rollout is %s: only a failed rollout can be retried", phase))
	default:
		c.fail(errs.New(errs.FailedPrecondition, "the rollout is %s, not in progress: nothing to %s", phase, c.kind))
	}
}

func (c *command) finish(err error) {
	if c != nil {
		c.done <- err
	}
}

func (c *Controller) takeCommand(k svcKey) *command {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := c.pending[k]
	delete(c.pending, k)
	return cmd
}

// Command carries out kind on service ns/name's rollout in the next pass
// over the service and waits for it. actor is recorded in the audit log.
// A command that does not apply (promote with no rollout in progress, retry
// of one that did not fail) is FailedPrecondition.
func (c *Controller) Command(ctx context.Context, ns, name string, kind CommandKind, actor string) error {
	k := svcKey{ns, name}
	cmd := &command{kind: kind, actor: actor, done: make(chan error, 1)}
	c.mu.Lock()
	if c.pending[k] != nil {
		c.mu.Unlock()
		return errs.New(errs.Conflict, "another rollout command for %s/%s is in progress; try again", ns, name)
	}
	c.pending[k] = cmd
	c.mu.Unlock()
	c.opts.Enqueue(ns, name)
	select {
	case err := <-cmd.done:
		if err != nil {
			return fmt.Errorf("rollout %s of %s/%s: %w", kind, ns, name, err)
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		if c.pending[k] == cmd {
			delete(c.pending, k)
		}
		c.mu.Unlock()
		return fmt.Errorf("rollout %s of %s/%s: %w", kind, ns, name, ctx.Err())
	}
}
