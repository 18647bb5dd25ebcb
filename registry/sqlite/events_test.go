package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

func testEvent(ns, name string) audit.Event {
	return audit.Event{
		Actor: audit.LocalActor, Source: audit.SourceCLI, Action: audit.ActionCreate,
		Kind: spec.KindModel, Namespace: ns, Name: name, Generation: 1,
		Summary: "created " + name, Diff: "+name: " + name + "\n",
	}
}

func eventIDs(es []audit.Event) []int64 {
	ids := []int64{}
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

func TestAppendEvent(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()

	before := time.Now().Add(-time.Second)
	e, err := s.AppendEvent(ctx, testEvent("default", "fraud"))
	if err != nil {
		t.Fatal(err)
	}
	if e.ID <= 0 || e.Time.Before(before) || e.Time.Location() != time.UTC {
		t.Errorf("appended = %+v: want an ID and the current time (UTC)", e)
	}
	at := time.Date(2025, 6, 1, 12, 0, 0, 123, time.FixedZone("X", 3600))
	given := testEvent("default", "fraud")
	given.Time = at
	given.ID = 999 // ignored: the store assigns IDs
	e2, err := s.AppendEvent(ctx, given)
	if err != nil {
		t.Fatal(err)
	}
	if e2.ID <= e.ID || e2.ID == 999 || !e2.Time.Equal(at) {
		t.Errorf("second = %+v, want a higher ID than %d and time %v", e2, e.ID, at)
	}

	got, err := s.ListEvents(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != e || got[1] != e2 {
		t.Errorf("ListEvents = %+v\nwant %+v and %+v", got, e, e2)
	}

	_, err = s.AppendEvent(ctx, audit.Event{Kind: spec.KindModel})
	if !errors.Is(err, errs.ErrInvalid) {
		t.Errorf("AppendEvent(no action) = %v, want InvalidArgument", err)
	}
}

func TestListEventsFilters(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()

	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []int64
	for i, key := range [][3]string{
		{spec.KindModel, "default", "fraud"},
		{spec.KindModel, "staging", "fraud"},
		{spec.KindInferenceService, "default", "fraud"},
		{spec.KindModel, "default", "churn"},
		{spec.KindModel, "default", "fraud"},
	} {
		ev := testEvent(key[1], key[2])
		ev.Kind = key[0]
		ev.Time = t0.Add(time.Duration(i) * time.Hour)
		e, err := s.AppendEvent(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}

	for _, tc := range []struct {
		name string
		q    audit.Query
		want []int64
	}{
		{"all", audit.Query{}, ids},
		{"namespace", audit.Query{Namespace: "default"}, []int64{ids[0], ids[2], ids[3], ids[4]}},
		{"kind", audit.Query{Kind: spec.KindInferenceService}, []int64{ids[2]}},
		{"one resource", audit.Query{Namespace: "default", Kind: spec.KindModel, Name: "fraud"}, []int64{ids[0], ids[4]}},
		{"name in every namespace", audit.Query{Name: "fraud", Kind: spec.KindModel}, []int64{ids[0], ids[1], ids[4]}},
		{"since", audit.Query{Since: t0.Add(3 * time.Hour)}, []int64{ids[3], ids[4]}},
		{"since is inclusive", audit.Query{Since: t0.Add(4 * time.Hour)}, []int64{ids[4]}},
		{"after", audit.Query{After: ids[2]}, []int64{ids[3], ids[4]}},
		{"after the last", audit.Query{After: ids[4]}, []int64{}},
		{"limit", audit.Query{Limit: 2}, ids[:2]},
		{"nothing matches", audit.Query{Namespace: "nowhere"}, []int64{}},
		// Latest: the newest Limit that match, still oldest first.
		{"latest", audit.Query{Limit: 2, Latest: true}, ids[3:]},
		{"latest, all fit", audit.Query{Limit: 10, Latest: true}, ids},
		{"latest of one resource", audit.Query{Namespace: "default", Kind: spec.KindModel, Name: "fraud", Limit: 1, Latest: true}, []int64{ids[4]}},
		{"latest in a namespace", audit.Query{Namespace: "default", Limit: 3, Latest: true}, []int64{ids[2], ids[3], ids[4]}},
		{"latest of a kind", audit.Query{Kind: spec.KindModel, Limit: 3, Latest: true}, []int64{ids[1], ids[3], ids[4]}},
		{"latest since", audit.Query{Since: t0.Add(2 * time.Hour), Limit: 2, Latest: true}, []int64{ids[3], ids[4]}},
		{"latest after", audit.Query{After: ids[0], Namespace: "default", Limit: 2, Latest: true}, []int64{ids[3], ids[4]}},
		{"latest, nothing matches", audit.Query{Namespace: "nowhere", Latest: true}, []int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListEvents(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(eventIDs(got)) != fmt.Sprint(tc.want) {
				t.Errorf("ListEvents(%+v) = %v, want %v", tc.q, eventIDs(got), tc.want)
			}
			if got == nil {
				t.Error("ListEvents returned nil, want an empty slice")
			}
		})
	}

	// Paging with After visits each event once, in order.
	var walked []int64
	q := audit.Query{Namespace: "default", Limit: 3}
	for {
		page, err := s.ListEvents(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		walked = append(walked, eventIDs(page)...)
		q.After = page[len(page)-1].ID
	}
	if want := []int64{ids[0], ids[2], ids[3], ids[4]}; fmt.Sprint(walked) != fmt.Sprint(want) {
		t.Errorf("paged = %v, want %v", walked, want)
	}

	if _, err := s.ListEvents(ctx, audit.Query{Limit: -1}); !errors.Is(err, errs.ErrInvalid) {
		t.Errorf("ListEvents(limit -1) = %v, want InvalidArgument", err)
	}
}

func TestListEventsLimits(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()

	// One transaction: AppendEvent would fsync once per event.
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const n = audit.MaxLimit + 5
	for i := range n {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_events (time, action, kind, namespace, name)
VALUES (?, 'create', 'Model', 'default', ?)`, i, fmt.Sprintf("m%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ limit, want int }{
		{0, audit.DefaultLimit}, {10, 10}, {audit.MaxLimit, audit.MaxLimit}, {audit.MaxLimit + 1, audit.MaxLimit},
	} {
		got, err := s.ListEvents(ctx, audit.Query{Limit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want || got[0].Name != "m0000" {
			t.Errorf("ListEvents(limit %d) = %d events from %q, want %d from the oldest", tc.limit, len(got), got[0].Name, tc.want)
		}

		got, err = s.ListEvents(ctx, audit.Query{Limit: tc.limit, Latest: true})
		if err != nil {
			t.Fatal(err)
		}
		first := fmt.Sprintf("m%04d", n-tc.want)
		if len(got) != tc.want || got[0].Name != first || got[len(got)-1].Name != fmt.Sprintf("m%04d", n-1) {
			t.Errorf("ListEvents(limit %d, latest) = %d events from %q, want %d from %q to the newest", tc.limit, len(got), got[0].Name, tc.want, first)
		}
	}
}

// TestAuditAppendOnly checks the database itself refuses to rewrite history,
// whatever code holds a connection.
func TestAuditAppendOnly(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()
	e, err := s.AppendEvent(ctx, testEvent("default", "fraud"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE audit_events SET actor = 'mallory' WHERE id = ?`,
		`DELETE FROM audit_events WHERE id = ?`,
		`INSERT OR REPLACE INTO audit_events (id, time, action) VALUES (?, 0, 'create')`,
		`INSERT INTO audit_events (id, time, action) VALUES (?, 0, 'create') ON CONFLICT (id) DO UPDATE SET actor = 'mallory'`,
	} {
		_, err := s.w.ExecContext(ctx, q, e.ID)
		if err == nil || !strings.Contains(err.Error(), "audit log is append-only") {
			t.Errorf("%s: err = %v, want 'audit log is append-only'", q, err)
		}
	}
	got, err := s.ListEvents(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != e {
		t.Errorf("events after tampering = %+v, want [%+v]", got, e)
	}
}
