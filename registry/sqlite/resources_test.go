package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

func testResource(ns, name string) spec.StoredResource {
	return spec.StoredResource{
		Kind:        spec.KindModel,
		Namespace:   ns,
		Name:        name,
		Labels:      map[string]string{"team": "risk"},
		Annotations: map[string]string{"note": "x"},
		Spec:        json.RawMessage(`{"description":"d"}`),
		Generation:  1,
	}
}

// wantErr fails unless err is of kind want and its message contains msg.
func wantErr(t *testing.T, what string, err error, want *errs.Error, msg string) {
	t.Helper()
	if !errors.Is(err, want) || !strings.Contains(err.Error(), msg) {
		t.Errorf("%s = %v, want %s error containing %q", what, err, want.Kind, msg)
	}
}

func TestResourceCRUD(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()

	_, err := s.GetResource(ctx, spec.KindModel, "default", "fraud")
	wantErr(t, "Get(missing)", err, errs.ErrNotFound, "Model default/fraud not found")

	before := time.Now().Add(-time.Second)
	created, err := s.PutResource(ctx, testResource("default", "fraud"), 0)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.ResourceVersion != 1 || created.CreatedAt.Before(before) || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Errorf("created = %+v", created)
	}
	got, err := s.GetResource(ctx, spec.KindModel, "default", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if !sameResource(got, created) {
		t.Errorf("Get = %+v\nwant %+v", got, created)
	}

	_, err = s.PutResource(ctx, testResource("default", "fraud"), 0)
	wantErr(t, "create again", err, errs.ErrConflict, "Model default/fraud already exists")

	upd := got
	upd.Spec = json.RawMessage(`{"description":"changed"}`)
	upd.Generation = 2
	upd.Labels = nil
	upd.CreatedAt = time.Time{} // the store keeps its own
	updated, err := s.PutResource(ctx, upd, got.ResourceVersion)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.ResourceVersion != 2 || !updated.CreatedAt.Equal(created.CreatedAt) || updated.UpdatedAt.Before(created.UpdatedAt) {
		t.Errorf("updated = %+v (created at %v)", updated, created.CreatedAt)
	}
	got, err = s.GetResource(ctx, spec.KindModel, "default", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if !sameResource(got, updated) || string(got.Spec) != `{"description":"changed"}` || got.Generation != 2 || got.Labels != nil {
		t.Errorf("Get after update = %+v\nwant %+v", got, updated)
	}

	_, err = s.PutResource(ctx, upd, 1)
	wantErr(t, "stale update", err, errs.ErrConflict,
		"Model default/fraud was changed (resourceVersion 1, now 2); get it again and retry")
	_, err = s.PutResource(ctx, testResource("default", "nope"), 3)
	wantErr(t, "update missing", err, errs.ErrNotFound, "Model default/nope not found")

	// The same name under another kind or namespace is another resource.
	other := testResource("default", "fraud")
	other.Kind = spec.KindInferenceService
	if _, err := s.PutResource(ctx, other, 0); err != nil {
		t.Errorf("create other kind: %v", err)
	}
	if _, err := s.PutResource(ctx, testResource("staging", "fraud"), 0); err != nil {
		t.Errorf("create other namespace: %v", err)
	}

	err = s.DeleteResource(ctx, spec.KindModel, "default", "fraud", 1)
	wantErr(t, "stale delete", err, errs.ErrConflict, "(resourceVersion 1, now 2)")
	if err := s.DeleteResource(ctx, spec.KindModel, "default", "fraud", 2); err != nil {
		t.Errorf("delete: %v", err)
	}
	err = s.DeleteResource(ctx, spec.KindModel, "default", "fraud", 0)
	wantErr(t, "delete again", err, errs.ErrNotFound, "Model default/fraud not found")
	err = s.DeleteResource(ctx, spec.KindModel, "default", "fraud", 2)
	wantErr(t, "delete again with version", err, errs.ErrNotFound, "Model default/fraud not found")
	// expect 0 deletes whatever version is stored.
	if err := s.DeleteResource(ctx, spec.KindModel, "staging", "fraud", 0); err != nil {
		t.Errorf("unconditional delete: %v", err)
	}
	if _, err := s.GetResource(ctx, spec.KindInferenceService, "default", "fraud"); err != nil {
		t.Errorf("other kind after delete: %v", err)
	}

	// A deleted resource can be created again, from version 1.
	again, err := s.PutResource(ctx, testResource("default", "fraud"), 0)
	if err != nil || again.ResourceVersion != 1 {
		t.Errorf("recreate = %d, %v", again.ResourceVersion, err)
	}
}

func sameResource(a, b spec.StoredResource) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestResourceInvalid(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		r      spec.StoredResource
		expect int64
		msg    string
	}{
		{"no kind", spec.StoredResource{Namespace: "default", Name: "a"}, 0, "must not be empty"},
		{"no namespace", spec.StoredResource{Kind: spec.KindModel, Name: "a"}, 0, "must not be empty"},
		{"no name", spec.StoredResource{Kind: spec.KindModel, Namespace: "default"}, 0, "must not be empty"},
		{"negative expect", testResource("default", "a"), -1, "must not be negative"},
		{"bad spec", spec.StoredResource{Kind: spec.KindModel, Namespace: "default", Name: "a", Spec: json.RawMessage(`{`)}, 0, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.PutResource(ctx, tc.r, tc.expect)
			wantErr(t, "Put", err, errs.ErrInvalid, tc.msg)
		})
	}
	_, err := s.ListResources(ctx, "", "default")
	wantErr(t, "List(no kind)", err, errs.ErrInvalid, "must not be empty")

	// An absent spec is stored as an empty object.
	r, err := s.PutResource(ctx, spec.StoredResource{Kind: spec.KindModel, Namespace: "default", Name: "empty"}, 0)
	if err != nil || string(r.Spec) != "{}" {
		t.Errorf("Put(no spec) = %s, %v", r.Spec, err)
	}
}

// TestResourceConcurrentPut races writers holding the same resourceVersion:
// exactly one may win each round.
func TestResourceConcurrentPut(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()
	const n = 20

	race := func(expect int64) (wins, conflicts int) {
		t.Helper()
		var (
			mu  sync.Mutex
			wg  sync.WaitGroup
			bad []error
		)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				r := testResource("default", "fraud")
				r.Generation = int64(i)
				<-start
				_, err := s.PutResource(ctx, r, expect)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, errs.ErrConflict):
					conflicts++
				default:
					bad = append(bad, err)
				}
			})
		}
		close(start)
		wg.Wait()
		for _, err := range bad {
			t.Errorf("PutResource: unexpected error %v", err)
		}
		return wins, conflicts
	}

	for _, expect := range []int64{0, 1, 2} {
		if wins, conflicts := race(expect); wins != 1 || conflicts != n-1 {
			t.Errorf("expect %d: %d wins, %d conflicts; want 1 and %d", expect, wins, conflicts, n-1)
		}
		r, err := s.GetResource(ctx, spec.KindModel, "default", "fraud")
		if err != nil || r.ResourceVersion != expect+1 {
			t.Errorf("after round %d: resourceVersion %d, %v", expect, r.ResourceVersion, err)
		}
	}
}

func TestListResources(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	ctx := context.Background()

	got, err := s.ListResources(ctx, spec.KindModel, "")
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("List(empty) = %#v, %v; want an empty, non-nil slice", got, err)
	}
	for _, key := range [][2]string{{"staging", "b"}, {"default", "c"}, {"staging", "a"}, {"default", "a"}, {"prod", "z"}} {
		if _, err := s.PutResource(ctx, testResource(key[0], key[1]), 0); err != nil {
			t.Fatal(err)
		}
	}
	svc := testResource("default", "b")
	svc.Kind = spec.KindInferenceService
	if _, err := s.PutResource(ctx, svc, 0); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		kind, ns string
		want     []string
	}{
		{spec.KindModel, "", []string{"default/a", "default/c", "prod/z", "staging/a", "staging/b"}},
		{spec.KindModel, "staging", []string{"staging/a", "staging/b"}},
		{spec.KindModel, "nowhere", nil},
		{spec.KindInferenceService, "", []string{"default/b"}},
	} {
		rs, err := s.ListResources(ctx, tc.kind, tc.ns)
		if err != nil {
			t.Fatalf("List(%s, %q): %v", tc.kind, tc.ns, err)
		}
		var keys []string
		for _, r := range rs {
			if r.Kind != tc.kind || r.Labels["team"] != "risk" || r.Annotations["note"] != "x" || r.ResourceVersion != 1 {
				t.Errorf("List(%s, %q) item = %+v", tc.kind, tc.ns, r)
			}
			keys = append(keys, r.Namespace+"/"+r.Name)
		}
		if strings.Join(keys, " ") != strings.Join(tc.want, " ") {
			t.Errorf("List(%s, %q) = %v, want %v", tc.kind, tc.ns, keys, tc.want)
		}
	}
}

// TestUpgradeFromSchema2 migrates a database written at schema version 2 (the
// last release before resources and the audit log) and checks its data stays
// and the new tables work. Migrations are never edited once released, so
// migrating to 2 here writes what that release wrote.
func TestUpgradeFromSchema2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	ctx := context.Background()
	db, err := sql.Open("sqlite", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO models (namespace, name, description, labels, serving, latest_version, created_at, updated_at)
VALUES ('default', 'fraud', 'v2 model', '{}', '{}', 0, 1, 1)`); err != nil {
		t.Fatal(err)
	}
	if v, err := currentVersion(ctx, db); err != nil || v != 2 {
		t.Fatalf("fixture schema version = %d, %v", v, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(schema 2 database): %v", err)
	}
	defer s.Close()
	if v, err := currentVersion(ctx, s.r); err != nil || v != SchemaVersion() || v < 3 {
		t.Errorf("schema version after upgrade = %d, %v; want %d (>= 3)", v, err, SchemaVersion())
	}
	if m, err := s.GetModel(ctx, "default", "fraud"); err != nil || m.Description != "v2 model" {
		t.Errorf("GetModel after upgrade = %+v, %v", m, err)
	}
	if _, err := s.PutResource(ctx, testResource("default", "fraud"), 0); err != nil {
		t.Errorf("PutResource after upgrade: %v", err)
	}
	if _, err := s.AppendEvent(ctx, testEvent("default", "fraud")); err != nil {
		t.Errorf("AppendEvent after upgrade: %v", err)
	}
}
