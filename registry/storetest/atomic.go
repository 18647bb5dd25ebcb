package storetest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

var errInjected = errors.New("injected failure")

// testAtomicCommits: what an Atomic call writes is visible inside it (reads see
// the transaction) and after it.
func testAtomicCommits(t *testing.T, s registry.Store) {
	ctx := context.Background()
	err := s.Atomic(ctx, func(ctx context.Context) error {
		v, err := s.CreateVersion(ctx, newVersion(ns, "fraud", 0, Digest(1)))
		if err != nil {
			return err
		}
		if err := s.SetAlias(ctx, ns, "fraud", "champion", v.Version); err != nil {
			return err
		}
		m, err := s.GetModel(ctx, ns, "fraud")
		if err != nil || m.Aliases["champion"] != 1 || m.LatestVersion != 1 {
			t.Errorf("inside the transaction: %+v, %v", m, err)
		}
		if n, err := s.BlobRefs(ctx, Digest(1)); err != nil || n != 1 {
			t.Errorf("BlobRefs inside the transaction = %d, %v", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Atomic: %v", err)
	}
	m, err := s.GetModel(ctx, ns, "fraud")
	if err != nil || m.Aliases["champion"] != 1 {
		t.Errorf("after commit: %+v, %v", m, err)
	}
}

// testAtomicRollsBack: an error or a panic leaves nothing of the transaction,
// not even a consumed version number.
func testAtomicRollsBack(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	change := func(ctx context.Context) {
		if _, err := s.CreateVersion(ctx, newVersion(ns, "fraud", 0, Digest(2))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateVersion(ctx, newVersion(ns, "other", 0, Digest(3))); err != nil {
			t.Fatal(err)
		}
		if err := s.SetAlias(ctx, ns, "fraud", "champion", 2); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteVersion(ctx, ns, "fraud", 1, false); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Atomic(ctx, func(ctx context.Context) error {
		change(ctx)
		return errInjected
	})
	if !errors.Is(err, errInjected) {
		t.Fatalf("Atomic = %v, want fn's error", err)
	}
	func() {
		defer func() {
			if p := recover(); p != errInjected {
				t.Errorf("recovered %v, want the panic to pass through", p)
			}
		}()
		_ = s.Atomic(ctx, func(ctx context.Context) error {
			change(ctx)
			panic(errInjected)
		})
	}()
	m, err := s.GetModel(ctx, ns, "fraud")
	if err != nil || m.LatestVersion != 1 || len(m.Aliases) != 0 {
		t.Errorf("model after rollback = %+v, %v", m, err)
	}
	if vs, err := s.ListVersions(ctx, ns, "fraud"); err != nil || len(vs) != 1 || vs[0].Version != 1 {
		t.Errorf("versions after rollback = %+v, %v", vs, err)
	}
	_, err = s.GetModel(ctx, ns, "other")
	wantKind(t, "model created in a rolled back transaction", err, errs.ErrNotFound)
	// The store still works, and numbering continues where it was.
	if v := mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(4))); v.Version != 2 {
		t.Errorf("next version = %d, want 2", v.Version)
	}
}

// testAtomicSavepoints: a failing call or nested Atomic undoes only its own
// writes; the caller may go on and commit the rest.
func testAtomicSavepoints(t *testing.T, s registry.Store) {
	ctx := context.Background()
	err := s.Atomic(ctx, func(ctx context.Context) error {
		if _, err := s.CreateVersion(ctx, newVersion(ns, "kept", 0, Digest(1))); err != nil {
			return err
		}
		wantKind(t, "alias to a missing version", s.SetAlias(ctx, ns, "kept", "champion", 9), errs.ErrNotFound)
		// A duplicate number fails after the model row was touched.
		_, err := s.CreateVersion(ctx, newVersion(ns, "kept", 1, Digest(2)))
		wantKind(t, "duplicate version", err, errs.ErrAlreadyExists)
		inner := s.Atomic(ctx, func(ctx context.Context) error {
			if _, err := s.CreateVersion(ctx, newVersion(ns, "dropped", 0, Digest(3))); err != nil {
				return err
			}
			return errInjected
		})
		if !errors.Is(inner, errInjected) {
			t.Errorf("nested Atomic = %v", inner)
		}
		return s.Atomic(ctx, func(ctx context.Context) error {
			return s.SetAlias(ctx, ns, "kept", "champion", 1)
		})
	})
	if err != nil {
		t.Fatalf("Atomic: %v", err)
	}
	m, err := s.GetModel(ctx, ns, "kept")
	if err != nil || m.LatestVersion != 1 || m.Aliases["champion"] != 1 {
		t.Errorf("kept = %+v, %v", m, err)
	}
	_, err = s.GetModel(ctx, ns, "dropped")
	wantKind(t, "model of a failed nested Atomic", err, errs.ErrNotFound)
}

// testAtomicSavepointPanics: a nested Atomic whose callback panics undoes its
// own writes before the panic goes on, so a caller that recovers it commits
// only the rest, and the store still works.
func testAtomicSavepointPanics(t *testing.T, s registry.Store) {
	ctx := context.Background()
	err := s.Atomic(ctx, func(ctx context.Context) error {
		if _, err := s.CreateVersion(ctx, newVersion(ns, "kept", 0, Digest(1))); err != nil {
			return err
		}
		func() {
			defer func() {
				if p := recover(); p != errInjected {
					t.Errorf("recovered %v, want the nested callback's panic", p)
				}
			}()
			_ = s.Atomic(ctx, func(ctx context.Context) error {
				if _, err := s.CreateVersion(ctx, newVersion(ns, "dropped", 0, Digest(2))); err != nil {
					return err
				}
				panic(errInjected)
			})
		}()
		return s.SetAlias(ctx, ns, "kept", "champion", 1)
	})
	if err != nil {
		t.Fatalf("Atomic: %v", err)
	}
	m, err := s.GetModel(ctx, ns, "kept")
	if err != nil || m.Aliases["champion"] != 1 {
		t.Errorf("kept = %+v, %v", m, err)
	}
	_, err = s.GetModel(ctx, ns, "dropped")
	wantKind(t, "model of a panicked nested Atomic", err, errs.ErrNotFound)
	if v := mustCreate(t, s, newVersion(ns, "kept", 0, Digest(3))); v.Version != 2 {
		t.Errorf("next version = %d, want 2", v.Version)
	}
}

// testAtomicSerializable: read-modify-write transactions run as if one at a
// time, so concurrent increments are never lost.
func testAtomicSerializable(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "counter", 0, Digest(1)))
	const workers, each = 4, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := s.Atomic(ctx, func(ctx context.Context) error {
					m, err := s.GetModel(ctx, ns, "counter")
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(m.Description)
					m.Description = strconv.Itoa(n + 1)
					_, err = s.UpdateModel(ctx, m)
					return err
				})
				if err != nil {
					t.Errorf("Atomic: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	m, err := s.GetModel(ctx, ns, "counter")
	if err != nil || m.Description != strconv.Itoa(workers*each) {
		t.Errorf("counter = %q, %v; want %d", m.Description, err, workers*each)
	}
}
