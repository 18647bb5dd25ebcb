package sqlite

import (
	"context"
	"errors"
	"testing"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/storetest"
	"github.com/nimbus-ai/nimbus/spec"
)

// TestAtomicSpansResourcesAndAudit: registry rows, resources and audit events
// written under one Atomic commit together or not at all.
func TestAtomicSpansResourcesAndAudit(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()
	write := func(ctx context.Context, name string) error {
		if _, err := s.CreateVersion(ctx, registry.Version{Namespace: "default", Model: name, Format: "onnx", SHA256: storetest.Digest(1)}); err != nil {
			return err
		}
		if _, err := s.PutResource(ctx, testResource("default", name), 0); err != nil {
			return err
		}
		_, err := s.AppendEvent(ctx, testEvent("default", name))
		return err
	}
	boom := errors.New("boom")
	if err := s.Atomic(ctx, func(ctx context.Context) error {
		if err := write(ctx, "dropped"); err != nil {
			return err
		}
		if evs, err := s.ListEvents(ctx, audit.Query{}); err != nil || len(evs) != 1 {
			t.Errorf("events inside the transaction: %+v, %v", evs, err)
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Atomic = %v", err)
	}
	if err := s.Atomic(ctx, func(ctx context.Context) error { return write(ctx, "kept") }); err != nil {
		t.Fatal(err)
	}

	if _, err := s.GetModel(ctx, "default", "dropped"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("model of the rolled back transaction: %v", err)
	}
	if _, err := s.GetResource(ctx, spec.KindModel, "default", "dropped"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("resource of the rolled back transaction: %v", err)
	}
	evs, err := s.ListEvents(ctx, audit.Query{})
	if err != nil || len(evs) != 1 || evs[0].Name != "kept" {
		t.Errorf("events = %+v, %v; want only kept's", evs, err)
	}
	if _, err := s.GetResource(ctx, spec.KindModel, "default", "kept"); err != nil {
		t.Errorf("resource of the committed transaction: %v", err)
	}
}
