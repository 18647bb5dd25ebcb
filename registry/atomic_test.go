package registry_test

import (
	"context"
	"errors"
	"sync"
	"testing"

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
