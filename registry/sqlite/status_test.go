package sqlite

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// TestStatusApartFromSpec: a status write never touches the resource's
// resourceVersion or generation, is refused for a resource that does not
// exist, survives reopening the store, and goes with its resource.
func TestStatusApartFromSpec(t *testing.T) {
	path := t.TempDir() + "/nimbus.db"
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	err = s.PutStatus(ctx, spec.KindModel, "default", "fraud", spec.Status{ObservedGeneration: 1})
	wantErr(t, "PutStatus(missing)", err, errs.ErrNotFound, "Model default/fraud not found")

	r := testResource("default", "fraud")
	r.ManagedBy = "gitsource/platform"
	created, err := s.PutResource(ctx, r, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	st := spec.Status{ObservedGeneration: 1, Details: json.RawMessage(`{"syncedCommit":"abc"}`),
		Conditions: spec.SetCondition(nil, spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionTrue, Reason: "Synced"}, now)}
	for range 3 {
		if err := s.PutStatus(ctx, spec.KindModel, "default", "fraud", st); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetResource(ctx, spec.KindModel, "default", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != created.ResourceVersion || got.Generation != created.Generation || got.ManagedBy != "gitsource/platform" {
		t.Fatalf("after status writes: resourceVersion %d generation %d managedBy %q, want %d %d gitsource/platform",
			got.ResourceVersion, got.Generation, got.ManagedBy, created.ResourceVersion, created.Generation)
	}
	s.Close()

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	back, err := s.GetStatus(ctx, spec.KindModel, "default", "fraud")
	if err != nil {
		t.Fatalf("status after reopening: %v", err)
	}
	c, ok := back.Condition(spec.ConditionReady)
	if back.ObservedGeneration != 1 || string(back.Details) != `{"syncedCommit":"abc"}` || !ok || c.Reason != "Synced" ||
		c.LastTransitionTime == nil || !c.LastTransitionTime.Equal(now) {
		t.Fatalf("status after reopening: %+v", back)
	}
	if err := s.DeleteResource(ctx, spec.KindModel, "default", "fraud", 0); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetStatus(ctx, spec.KindModel, "default", "fraud")
	wantErr(t, "GetStatus(deleted)", err, errs.ErrNotFound, "no status recorded")
}

// TestSetConditionKeepsTransitionTime: a condition whose status did not
// change keeps when it last changed.
func TestSetConditionKeepsTransitionTime(t *testing.T) {
	t1, t2 := time.Unix(100, 0).UTC(), time.Unix(200, 0).UTC()
	c := spec.SetCondition(nil, spec.Condition{Type: "Ready", Status: "True", Reason: "A"}, t1)
	c = spec.SetCondition(c, spec.Condition{Type: "Ready", Status: "True", Reason: "B"}, t2)
	if len(c) != 1 || !c[0].LastTransitionTime.Equal(t1) || c[0].Reason != "B" {
		t.Fatalf("same status: %+v", c)
	}
	c = spec.SetCondition(c, spec.Condition{Type: "Ready", Status: "False", Reason: "C"}, t2)
	if !c[0].LastTransitionTime.Equal(t2) {
		t.Fatalf("changed status kept the old transition time: %+v", c)
	}
}
