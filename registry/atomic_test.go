package registry_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// changeLog records what a Registry announces.
type changeLog struct {
	mu  sync.Mutex
	got []registry.Change
}

func (l *changeLog) add(c registry.Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, c)
}

func (l *changeLog) take() []registry.Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.got
	l.got = nil
	return out
}

// TestAtomicDefersNotifications: changes made in an Atomic are announced once
// it commits, and never when it fails; a failed nested Atomic drops its own.
func TestAtomicDefersNotifications(t *testing.T) {
	e := newEnv(t)
	var log changeLog
	e.reg.OnChange(log.add)
	ctx := context.Background()
	sha := e.put(t, "model bytes")
	boom := errors.New("boom")

	err := e.reg.Atomic(ctx, func(ctx context.Context) error {
		if _, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "fraud", SHA256: sha}); err != nil {
			return err
		}
		if got := log.take(); len(got) != 0 {
			t.Errorf("announced before commit: %+v", got)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Atomic = %v", err)
	}
	if got := log.take(); len(got) != 0 {
		t.Errorf("announced a rolled back change: %+v", got)
	}
	if _, err := e.reg.GetModel(ctx, "", "fraud"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("model of the rolled back transaction: %v", err)
	}

	err = e.reg.Atomic(ctx, func(ctx context.Context) error {
		if _, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "fraud", SHA256: sha}); err != nil {
			return err
		}
		inner := e.reg.Atomic(ctx, func(ctx context.Context) error {
			if err := e.reg.SetAlias(ctx, "", "fraud", "champion", 1); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(inner, boom) {
			t.Errorf("nested Atomic = %v", inner)
		}
		return e.reg.SetAlias(ctx, "", "fraud", "challenger", 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []registry.Change{
		{Kind: registry.VersionCreated, Namespace: "default", Model: "fraud", Version: 1},
		{Kind: registry.AliasChanged, Namespace: "default", Model: "fraud", Version: 1},
	}
	if got := log.take(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("announced %+v, want %+v", got, want)
	}
	m, err := e.reg.GetModel(ctx, "", "fraud")
	if err != nil || len(m.Aliases) != 1 || m.Aliases["challenger"] != 1 {
		t.Errorf("model = %+v, %v; want only the outer alias", m, err)
	}
}

// TestAtomicPanicReleasesLocks: a callback that panics rolls its transaction
// back and releases the blob lock before the panic goes on, so later
// transactions, deletes and GC (which takes the blob lock exclusively) still
// run. Before, the shared blob lock stayed held and every blob deletion after
// the panic waited forever.
func TestAtomicPanicReleasesLocks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sha := e.put(t, "model bytes")
	boom := errors.New("boom")
	func() {
		defer func() {
			if p := recover(); p != boom {
				t.Fatalf("recovered %v, want the callback's panic", p)
			}
		}()
		_ = e.reg.Atomic(ctx, func(ctx context.Context) error {
			if _, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "fraud", SHA256: sha}); err != nil {
				return err
			}
			panic(boom)
		})
	}()
	if _, err := e.reg.GetModel(ctx, "", "fraud"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("model of the panicked transaction: %v", err)
	}

	done := make(chan error, 1)
	go func() {
		done <- func() error {
			err := e.reg.Atomic(ctx, func(ctx context.Context) error {
				_, err := e.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: "fraud", SHA256: sha})
				return err
			})
			if err != nil {
				return err
			}
			if err := e.reg.DeleteVersion(ctx, "", "fraud", 1, false); err != nil {
				return err
			}
			_, err = e.reg.GC(ctx)
			return err
		}()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Atomic, DeleteVersion and GC after a panicked Atomic did not finish within 10s: a lock was left held")
	}
}
