// Package storetest is the conformance suite every registry.Store implementation
// must pass (SQLite now, PostgreSQL later): the behaviour the registry relies on,
// including error kinds, so implementations cannot drift apart.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Run runs the suite. newStore must return an empty store; the suite closes it.
func Run(t *testing.T, newStore func(t *testing.T) registry.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s registry.Store)
	}{
		{"CreateVersionAssignsNumbers", testCreateVersionAssignsNumbers},
		{"EffectiveAliases", testEffectiveAliases},
		{"CreateVersionRoundTrip", testCreateVersionRoundTrip},
		{"CreateVersionExplicitNumbers", testCreateVersionExplicit},
		{"VersionNumbersNotReused", testNumbersNotReused},
		{"ConcurrentCreateVersion", testConcurrentCreate},
		{"NotFound", testNotFound},
		{"ListVersions", testListVersions},
		{"DeleteVersionDeletesAliases", testDeleteVersionDeletesAliases},
		{"DeleteVersionRefusedWhileAliased", testDeleteVersionRefusedWhileAliased},
		{"SetVersionServing", testSetVersionServing},
		{"Aliases", testAliases},
		{"UpdateModel", testUpdateModel},
		{"DeleteModel", testDeleteModel},
		{"NamespaceIsolation", testNamespaceIsolation},
		{"ListNamespaces", testListNamespaces},
		{"ListModelsPagination", testPagination},
		{"ListModelsPrefix", testPrefix},
		{"ListModelsAliases", testListModelsAliases},
		{"BlobRefs", testBlobRefs},
		{"AtomicCommits", testAtomicCommits},
		{"AtomicRollsBack", testAtomicRollsBack},
		{"AtomicSavepoints", testAtomicSavepoints},
		{"AtomicSavepointPanics", testAtomicSavepointPanics},
		{"AtomicSerializable", testAtomicSerializable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// Digest returns a valid, distinct sha256 hex string for n (test data only).
func Digest(n int) string { return fmt.Sprintf("%064x", n+1) }

var testSig = tensor.Signature{
	Inputs:  []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}}},
	Outputs: []tensor.TensorSpec{{Name: "y", DataType: tensor.Int64, Shape: []int64{-1}}},
}

func newVersion(ns, model string, n int64, sha string) registry.Version {
	return registry.Version{Namespace: ns, Model: model, Version: n, Format: "onnx", SHA256: sha, Size: 42, Signature: testSig, Source: "push"}
}

func mustCreate(t *testing.T, s registry.Store, v registry.Version) registry.Version {
	t.Helper()
	got, err := s.CreateVersion(context.Background(), v)
	if err != nil {
		t.Fatalf("CreateVersion(%s/%s v%d): %v", v.Namespace, v.Model, v.Version, err)
	}
	return got
}

func wantKind(t *testing.T, what string, err error, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Errorf("%s: got error %v (kind %v), want kind %v", what, err, errs.KindOf(err), errs.KindOf(sentinel))
	}
}

const ns = registry.DefaultNamespace

func testCreateVersionAssignsNumbers(t *testing.T, s registry.Store) {
	ctx := context.Background()
	for want := int64(1); want <= 3; want++ {
		v := mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(int(want))))
		if v.Version != want {
			t.Errorf("version = %d, want %d", v.Version, want)
		}
	}
	m, err := s.GetModel(ctx, ns, "fraud")
	if err != nil {
		t.Fatalf("GetModel: %v", err)
	}
	if m.LatestVersion != 3 || m.Namespace != ns || m.Name != "fraud" {
		t.Errorf("model = %+v, want fraud with latest 3", m)
	}
	if m.CreatedAt.IsZero() || m.UpdatedAt.Before(m.CreatedAt) {
		t.Errorf("timestamps: created %v updated %v", m.CreatedAt, m.UpdatedAt)
	}
}

func testCreateVersionRoundTrip(t *testing.T, s registry.Store) {
	ctx := context.Background()
	in := newVersion(ns, "fraud", 0, Digest(1))
	in.Description = "first"
	in.Source = "s3://bucket/fraud.onnx"
	in.Lineage = map[string]string{"run": "abc", "commit": "deadbeef"}
	in.Serving = &registry.ServingConfig{Threads: 2}
	in.CreatedAt = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	created := mustCreate(t, s, in)
	got, err := s.GetVersion(ctx, ns, "fraud", created.Version)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	in.Version = 1
	if !got.CreatedAt.Equal(in.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, in.CreatedAt)
	}
	got.CreatedAt, in.CreatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("GetVersion =\n%+v\nwant\n%+v", got, in)
	}
	created.CreatedAt = time.Time{}
	if !reflect.DeepEqual(created, in) {
		t.Errorf("CreateVersion returned\n%+v\nwant\n%+v", created, in)
	}

	// A zero CreatedAt is filled in.
	v2 := mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(2)))
	if v2.CreatedAt.IsZero() {
		t.Error("CreatedAt not set by CreateVersion")
	}
}

func testCreateVersionExplicit(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 5, Digest(1)))
	tests := []struct {
		name    string
		version int64
		want    error // nil: success
		wantNum int64
	}{
		{"duplicate", 5, errs.ErrAlreadyExists, 0},
		{"below latest", 3, errs.ErrConflict, 0},
		{"auto after explicit", 0, nil, 6},
		{"gap above latest", 10, nil, 10},
		{"negative", -1, errs.ErrInvalid, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.CreateVersion(ctx, newVersion(ns, "fraud", tc.version, Digest(2)))
			if tc.want != nil {
				wantKind(t, "CreateVersion", err, tc.want)
				return
			}
			if err != nil || v.Version != tc.wantNum {
				t.Errorf("CreateVersion = %d, %v; want %d", v.Version, err, tc.wantNum)
			}
		})
	}
}

func testNumbersNotReused(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(2)))
	if err := s.DeleteVersion(ctx, ns, "fraud", 2, false); err != nil {
		t.Fatalf("DeleteVersion: %v", err)
	}
	v := mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(3)))
	if v.Version != 3 {
		t.Errorf("after deleting v2 the next version is %d, want 3 (numbers are never reused)", v.Version)
	}
	m, err := s.GetModel(ctx, ns, "fraud")
	if err != nil || m.LatestVersion != 3 {
		t.Errorf("LatestVersion = %d, %v; want 3", m.LatestVersion, err)
	}
	if err := s.DeleteVersion(ctx, ns, "fraud", 3, false); err != nil {
		t.Fatalf("DeleteVersion: %v", err)
	}
	if m, _ := s.GetModel(ctx, ns, "fraud"); m.LatestVersion != 3 {
		t.Errorf("LatestVersion after deleting the highest = %d, want 3 (highest ever assigned)", m.LatestVersion)
	}
}

func testConcurrentCreate(t *testing.T, s registry.Store) {
	const n = 50
	ctx := context.Background()
	var wg sync.WaitGroup
	nums := make([]int64, n)
	errc := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.CreateVersion(ctx, newVersion(ns, "fraud", 0, Digest(i)))
			nums[i], errc[i] = v.Version, err
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i := range n {
		if errc[i] != nil {
			t.Fatalf("concurrent CreateVersion %d: %v", i, errc[i])
		}
		if seen[nums[i]] {
			t.Errorf("version %d assigned twice", nums[i])
		}
		seen[nums[i]] = true
	}
	vs, err := s.ListVersions(ctx, ns, "fraud")
	if err != nil {
		t.Fatalf("ListVersions: %v", err)
	}
	if len(vs) != n || vs[0].Version != 1 || vs[n-1].Version != n {
		t.Errorf("got %d versions (%d..%d), want 1..%d", len(vs), vs[0].Version, vs[len(vs)-1].Version, n)
	}
}

func testNotFound(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	tests := []struct {
		name string
		call func() error
	}{
		{"GetModel", func() error { _, err := s.GetModel(ctx, ns, "nope"); return err }},
		{"GetVersion missing model", func() error { _, err := s.GetVersion(ctx, ns, "nope", 1); return err }},
		{"GetVersion missing version", func() error { _, err := s.GetVersion(ctx, ns, "fraud", 9); return err }},
		{"ListVersions", func() error { _, err := s.ListVersions(ctx, ns, "nope"); return err }},
		{"DeleteVersion missing model", func() error { return s.DeleteVersion(ctx, ns, "nope", 1, false) }},
		{"DeleteVersion missing version", func() error { return s.DeleteVersion(ctx, ns, "fraud", 9, false) }},
		{"SetVersionServing", func() error { return s.SetVersionServing(ctx, ns, "fraud", 9, nil) }},
		{"UpdateModel", func() error { _, err := s.UpdateModel(ctx, registry.Model{Namespace: ns, Name: "nope"}); return err }},
		{"DeleteModel", func() error { return s.DeleteModel(ctx, ns, "nope", true) }},
		{"SetAlias missing version", func() error { return s.SetAlias(ctx, ns, "fraud", "champion", 9) }},
		{"SetAlias missing model", func() error { return s.SetAlias(ctx, ns, "nope", "champion", 1) }},
		{"DeleteAlias", func() error { return s.DeleteAlias(ctx, ns, "fraud", "champion") }},
		{"other namespace", func() error { _, err := s.GetModel(ctx, "team-b", "fraud"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantKind(t, tc.name, tc.call(), errs.ErrNotFound) })
	}
}

func testListVersions(t *testing.T, s registry.Store) {
	ctx := context.Background()
	for i := range 3 {
		mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(i)))
	}
	vs, err := s.ListVersions(ctx, ns, "fraud")
	if err != nil {
		t.Fatalf("ListVersions: %v", err)
	}
	var got []int64
	for _, v := range vs {
		got = append(got, v.Version)
		if v.Signature.Inputs[0].Name != "x" {
			t.Errorf("version %d signature not loaded: %+v", v.Version, v.Signature)
		}
	}
	if !reflect.DeepEqual(got, []int64{1, 2, 3}) {
		t.Errorf("versions = %v, want [1 2 3]", got)
	}
	// A model whose versions were all deleted still exists, with no versions.
	for i := int64(1); i <= 3; i++ {
		if err := s.DeleteVersion(ctx, ns, "fraud", i, false); err != nil {
			t.Fatal(err)
		}
	}
	vs, err = s.ListVersions(ctx, ns, "fraud")
	if err != nil || len(vs) != 0 {
		t.Errorf("ListVersions after deleting all = %v, %v; want empty", vs, err)
	}
}

func testDeleteVersionDeletesAliases(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(2)))
	for alias, v := range map[string]int64{"champion": 1, "shadow": 1, "challenger": 2} {
		if err := s.SetAlias(ctx, ns, "fraud", alias, v); err != nil {
			t.Fatalf("SetAlias %s: %v", alias, err)
		}
	}
	if err := s.DeleteVersion(ctx, ns, "fraud", 1, true); err != nil {
		t.Fatalf("DeleteVersion: %v", err)
	}
	m, err := s.GetModel(ctx, ns, "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"challenger": 2}; !reflect.DeepEqual(m.Aliases, want) {
		t.Errorf("aliases after deleting v1 = %v, want %v", m.Aliases, want)
	}
	if _, err := s.GetVersion(ctx, ns, "fraud", 1); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("GetVersion of deleted version: %v, want NotFound", err)
	}
}

// testDeleteVersionRefusedWhileAliased: without force the store itself refuses,
// in the delete's transaction, so an alias set after a caller's own check is
// never deleted silently.
func testDeleteVersionRefusedWhileAliased(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(2)))
	if err := s.DeleteVersion(ctx, ns, "fraud", 2, false); err != nil {
		t.Fatalf("DeleteVersion of an unaliased version: %v", err)
	}
	for _, alias := range []string{"shadow", "champion"} {
		if err := s.SetAlias(ctx, ns, "fraud", alias, 1); err != nil {
			t.Fatalf("SetAlias %s: %v", alias, err)
		}
	}
	err := s.DeleteVersion(ctx, ns, "fraud", 1, false)
	if !errors.Is(err, errs.ErrConflict) {
		t.Fatalf("DeleteVersion of an aliased version = %v, want Conflict", err)
	}
	if want := "referenced by aliases champion, shadow"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if _, err := s.GetVersion(ctx, ns, "fraud", 1); err != nil {
		t.Errorf("refused delete removed the version: %v", err)
	}
	m, err := s.GetModel(ctx, ns, "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int64{"champion": 1, "shadow": 1}; !reflect.DeepEqual(m.Aliases, want) {
		t.Errorf("aliases after refused delete = %v, want %v", m.Aliases, want)
	}
}

func testSetVersionServing(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	tests := []struct {
		name string
		set  *registry.ServingConfig
	}{
		{"set", &registry.ServingConfig{Threads: 4, InterOpThreads: 2}},
		{"replace", &registry.ServingConfig{Threads: 1}},
		{"clear", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetVersionServing(ctx, ns, "fraud", 1, tc.set); err != nil {
				t.Fatalf("SetVersionServing: %v", err)
			}
			v, err := s.GetVersion(ctx, ns, "fraud", 1)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(v.Serving, tc.set) {
				t.Errorf("Serving = %+v, want %+v", v.Serving, tc.set)
			}
		})
	}
}

func testAliases(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(2)))
	steps := []struct {
		name string
		do   func() error
		want map[string]int64
	}{
		{"set", func() error { return s.SetAlias(ctx, ns, "fraud", "champion", 1) }, map[string]int64{"champion": 1}},
		{"second", func() error { return s.SetAlias(ctx, ns, "fraud", "staging", 2) }, map[string]int64{"champion": 1, "staging": 2}},
		{"move", func() error { return s.SetAlias(ctx, ns, "fraud", "champion", 2) }, map[string]int64{"champion": 2, "staging": 2}},
		{"delete", func() error { return s.DeleteAlias(ctx, ns, "fraud", "staging") }, map[string]int64{"champion": 2}},
		{"delete last", func() error { return s.DeleteAlias(ctx, ns, "fraud", "champion") }, nil},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		m, err := s.GetModel(ctx, ns, "fraud")
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Aliases) != len(st.want) || (len(st.want) > 0 && !reflect.DeepEqual(m.Aliases, st.want)) {
			t.Errorf("%s: aliases = %v, want %v", st.name, m.Aliases, st.want)
		}
	}
}

// testEffectiveAliases: an alias's declared version moves at once; a held one
// keeps serving its old version until SetEffectiveAlias moves it; a version
// an alias serves cannot be deleted without force, and with force the alias
// falls back to its declared version.
func testEffectiveAliases(t *testing.T, s registry.Store) {
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(i)))
	}
	type state struct{ declared, effective map[string]int64 }
	check := func(step string, want state) {
		t.Helper()
		m, err := s.GetModel(ctx, ns, "fraud")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m.Aliases, want.declared) || !reflect.DeepEqual(m.Effective, want.effective) {
			t.Fatalf("%s: declared %v effective %v, want %v %v", step, m.Aliases, m.Effective, want.declared, want.effective)
		}
		page, err := s.ListModels(ctx, ns, registry.ListOptions{Limit: 10})
		if err != nil || len(page.Items) != 1 || !reflect.DeepEqual(page.Items[0].Effective, want.effective) {
			t.Fatalf("%s: listed %+v (%v), want effective %v", step, page.Items, err, want.effective)
		}
	}
	mustOK := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustOK(s.SetAliasHeld(ctx, ns, "fraud", "champion", 1)) // new: nothing to hold
	check("new held alias", state{map[string]int64{"champion": 1}, nil})
	mustOK(s.SetAliasHeld(ctx, ns, "fraud", "champion", 2))
	check("held move", state{map[string]int64{"champion": 2}, map[string]int64{"champion": 1}})
	mustOK(s.SetAliasHeld(ctx, ns, "fraud", "champion", 3)) // still serving 1, not 2
	check("second held move", state{map[string]int64{"champion": 3}, map[string]int64{"champion": 1}})
	if err := s.DeleteVersion(ctx, ns, "fraud", 1, false); !errors.Is(err, errs.ErrConflict) {
		t.Fatalf("delete of the version an alias serves = %v, want Conflict", err)
	}
	mustOK(s.SetEffectiveAlias(ctx, ns, "fraud", "champion", 2))
	check("effective moved", state{map[string]int64{"champion": 3}, map[string]int64{"champion": 2}})
	mustOK(s.SetEffectiveAlias(ctx, ns, "fraud", "champion", 3))
	check("effective reached declared", state{map[string]int64{"champion": 3}, nil})
	mustOK(s.SetAliasHeld(ctx, ns, "fraud", "champion", 1))
	check("held back", state{map[string]int64{"champion": 1}, map[string]int64{"champion": 3}})
	mustOK(s.DeleteVersion(ctx, ns, "fraud", 3, true))
	check("served version deleted by force", state{map[string]int64{"champion": 1}, nil})
	mustOK(s.SetAliasHeld(ctx, ns, "fraud", "champion", 2))
	mustOK(s.SetAlias(ctx, ns, "fraud", "champion", 2)) // a plain set ends the hold
	check("plain set", state{map[string]int64{"champion": 2}, nil})
	if err := s.SetEffectiveAlias(ctx, ns, "fraud", "nope", 2); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("effective of a missing alias = %v", err)
	}
	if err := s.SetEffectiveAlias(ctx, ns, "fraud", "champion", 9); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("effective to a missing version = %v", err)
	}
}

func testUpdateModel(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	if err := s.SetAlias(ctx, ns, "fraud", "champion", 1); err != nil {
		t.Fatal(err)
	}
	before, err := s.GetModel(ctx, ns, "fraud")
	if err != nil {
		t.Fatal(err)
	}
	upd := before
	upd.Description = "detects fraud"
	upd.Labels = map[string]string{"team": "risk"}
	upd.Serving = registry.ServingConfig{Threads: 3}
	upd.LatestVersion = 99 // ignored: only description, labels and serving change
	got, err := s.UpdateModel(ctx, upd)
	if err != nil {
		t.Fatalf("UpdateModel: %v", err)
	}
	again, err := s.GetModel(ctx, ns, "fraud")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []registry.Model{got, again} {
		if m.Description != "detects fraud" || m.Labels["team"] != "risk" || m.Serving.Threads != 3 {
			t.Errorf("model after update = %+v", m)
		}
		if m.LatestVersion != 1 || m.Aliases["champion"] != 1 || !m.CreatedAt.Equal(before.CreatedAt) {
			t.Errorf("UpdateModel changed more than it should: %+v", m)
		}
	}
}

func testDeleteModel(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(1)))
	mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(2)))
	mustCreate(t, s, newVersion(ns, "other", 0, Digest(3)))
	if err := s.SetAlias(ctx, ns, "fraud", "champion", 2); err != nil {
		t.Fatal(err)
	}
	// Without force the aliases refuse it, checked in the delete's own
	// transaction, and nothing is removed.
	if err := s.DeleteModel(ctx, ns, "fraud", false); !errors.Is(err, errs.ErrConflict) ||
		!strings.Contains(errs.PublicMessage(err), "model fraud has aliases champion") {
		t.Fatalf("DeleteModel of an aliased model without force: %v, want Conflict naming the alias", err)
	}
	if _, err := s.GetVersion(ctx, ns, "fraud", 2); err != nil {
		t.Fatalf("a refused delete removed a version: %v", err)
	}
	if err := s.DeleteModel(ctx, ns, "fraud", true); err != nil {
		t.Fatalf("DeleteModel: %v", err)
	}
	if _, err := s.GetModel(ctx, ns, "fraud"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("GetModel after delete: %v, want NotFound", err)
	}
	if _, err := s.GetVersion(ctx, ns, "fraud", 1); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("GetVersion after delete: %v, want NotFound", err)
	}
	if n, err := s.BlobRefs(ctx, Digest(1)); err != nil || n != 0 {
		t.Errorf("BlobRefs after delete = %d, %v; want 0", n, err)
	}
	if _, err := s.GetModel(ctx, ns, "other"); err != nil {
		t.Errorf("other model affected: %v", err)
	}
	// The name is free again; a new model starts over.
	if v := mustCreate(t, s, newVersion(ns, "fraud", 0, Digest(4))); v.Version != 1 {
		t.Errorf("recreated model's first version = %d, want 1", v.Version)
	}
}

func testNamespaceIsolation(t *testing.T, s registry.Store) {
	ctx := context.Background()
	mustCreate(t, s, newVersion("team-a", "fraud", 0, Digest(1)))
	mustCreate(t, s, newVersion("team-a", "fraud", 0, Digest(2)))
	b := mustCreate(t, s, newVersion("team-b", "fraud", 0, Digest(3)))
	if b.Version != 1 {
		t.Errorf("team-b/fraud first version = %d, want 1 (counters are per namespace)", b.Version)
	}
	if err := s.SetAlias(ctx, "team-a", "fraud", "champion", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAlias(ctx, "team-b", "fraud", "champion", 2); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("alias to version that only exists in team-a: %v, want NotFound", err)
	}
	mb, err := s.GetModel(ctx, "team-b", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if len(mb.Aliases) != 0 || mb.LatestVersion != 1 {
		t.Errorf("team-b/fraud = %+v, leaked from team-a", mb)
	}
	if err := s.DeleteModel(ctx, "team-b", "fraud", true); err != nil {
		t.Fatal(err)
	}
	ma, err := s.GetModel(ctx, "team-a", "fraud")
	if err != nil || ma.LatestVersion != 2 || ma.Aliases["champion"] != 2 {
		t.Errorf("team-a/fraud after deleting team-b/fraud = %+v, %v", ma, err)
	}
	page, err := s.ListModels(ctx, "team-b", registry.ListOptions{})
	if err != nil || len(page.Items) != 0 {
		t.Errorf("ListModels(team-b) = %+v, %v; want empty", page, err)
	}
}

func testListNamespaces(t *testing.T, s registry.Store) {
	ctx := context.Background()
	got, err := s.ListNamespaces(ctx)
	if err != nil || len(got) != 0 {
		t.Errorf("ListNamespaces on empty store = %v, %v", got, err)
	}
	for i, n := range []string{"zeta", "alpha", "zeta", "default"} {
		mustCreate(t, s, newVersion(n, fmt.Sprintf("m%d", i), 0, Digest(i)))
	}
	got, err = s.ListNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alpha", "default", "zeta"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListNamespaces = %v, want %v", got, want)
	}
}

func seedModels(t *testing.T, s registry.Store, names ...string) {
	t.Helper()
	for i, n := range names {
		mustCreate(t, s, newVersion(ns, n, 0, Digest(i)))
	}
}

func pageNames(p registry.ModelPage) []string {
	out := []string{}
	for _, m := range p.Items {
		out = append(out, m.Name)
	}
	return out
}

func testPagination(t *testing.T, s registry.Store) {
	ctx := context.Background()
	var all []string
	for i := range 25 {
		all = append(all, fmt.Sprintf("model-%02d", i))
	}
	// Insert out of order: pages must follow name order, not insertion order.
	shuffled := append([]string(nil), all...)
	sort.Slice(shuffled, func(i, j int) bool { return shuffled[i][len(shuffled[i])-1] < shuffled[j][len(shuffled[j])-1] })
	seedModels(t, s, shuffled...)
	mustCreate(t, s, newVersion("elsewhere", "model-aa", 0, Digest(99)))

	tests := []struct {
		name     string
		opt      registry.ListOptions
		want     []string
		wantNext string
	}{
		{"first page", registry.ListOptions{Limit: 10}, all[:10], all[9]},
		{"middle page", registry.ListOptions{Limit: 10, After: all[9]}, all[10:20], all[19]},
		{"last page", registry.ListOptions{Limit: 10, After: all[19]}, all[20:], ""},
		{"exact fit has no next", registry.ListOptions{Limit: 5, After: all[19]}, all[20:], ""},
		{"default limit", registry.ListOptions{}, all, ""},
		{"after unknown name", registry.ListOptions{Limit: 3, After: "model-05x"}, all[6:9], all[8]},
		{"after the end", registry.ListOptions{After: "zzz"}, []string{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.ListModels(ctx, ns, tc.opt)
			if err != nil {
				t.Fatalf("ListModels: %v", err)
			}
			if got := pageNames(p); !reflect.DeepEqual(got, tc.want) || p.Next != tc.wantNext {
				t.Errorf("ListModels(%+v) = %v next %q; want %v next %q", tc.opt, got, p.Next, tc.want, tc.wantNext)
			}
		})
	}

	// Following Next visits every model once.
	var walked []string
	opt := registry.ListOptions{Limit: 7}
	for range 10 {
		p, err := s.ListModels(ctx, ns, opt)
		if err != nil {
			t.Fatal(err)
		}
		walked = append(walked, pageNames(p)...)
		if p.Next == "" {
			break
		}
		opt.After = p.Next
	}
	if !reflect.DeepEqual(walked, all) {
		t.Errorf("walking pages = %v, want %v", walked, all)
	}
	if _, err := s.ListModels(ctx, ns, registry.ListOptions{Limit: -1}); !errors.Is(err, errs.ErrInvalid) {
		t.Errorf("negative limit: %v, want InvalidArgument", err)
	}
}

func testPrefix(t *testing.T, s registry.Store) {
	ctx := context.Background()
	seedModels(t, s, "churn", "fraud", "fraud-v2", "fraud.eu", "fraudster", "frauc", "fraue", "xgb")
	tests := []struct {
		opt      registry.ListOptions
		want     []string
		wantNext string
	}{
		{registry.ListOptions{Prefix: "fraud"}, []string{"fraud", "fraud-v2", "fraud.eu", "fraudster"}, ""},
		{registry.ListOptions{Prefix: "fraud", Limit: 2}, []string{"fraud", "fraud-v2"}, "fraud-v2"},
		{registry.ListOptions{Prefix: "fraud", After: "fraud-v2"}, []string{"fraud.eu", "fraudster"}, ""},
		{registry.ListOptions{Prefix: "fraud", After: "a"}, []string{"fraud", "fraud-v2", "fraud.eu", "fraudster"}, ""},
		{registry.ListOptions{Prefix: "nope"}, []string{}, ""},
		{registry.ListOptions{Prefix: "x"}, []string{"xgb"}, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%+v", tc.opt), func(t *testing.T) {
			p, err := s.ListModels(ctx, ns, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got := pageNames(p); !reflect.DeepEqual(got, tc.want) || p.Next != tc.wantNext {
				t.Errorf("got %v next %q; want %v next %q", got, p.Next, tc.want, tc.wantNext)
			}
		})
	}
}

func testListModelsAliases(t *testing.T, s registry.Store) {
	ctx := context.Background()
	seedModels(t, s, "a", "b", "c", "d")
	for _, m := range []string{"a", "c", "d"} {
		if err := s.SetAlias(ctx, ns, m, "champion", 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetAlias(ctx, ns, "c", "staging", 1); err != nil {
		t.Fatal(err)
	}
	p, err := s.ListModels(ctx, ns, registry.ListOptions{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int64{
		"a": {"champion": 1},
		"b": nil,
		"c": {"champion": 1, "staging": 1},
	}
	if len(p.Items) != 3 {
		t.Fatalf("got %d items", len(p.Items))
	}
	for _, m := range p.Items {
		if len(m.Aliases) != len(want[m.Name]) || (len(m.Aliases) > 0 && !reflect.DeepEqual(m.Aliases, want[m.Name])) {
			t.Errorf("%s aliases = %v, want %v", m.Name, m.Aliases, want[m.Name])
		}
		if m.LatestVersion != 1 {
			t.Errorf("%s LatestVersion = %d", m.Name, m.LatestVersion)
		}
	}
}

func testBlobRefs(t *testing.T, s registry.Store) {
	ctx := context.Background()
	shared, only := Digest(1), Digest(2)
	mustCreate(t, s, newVersion("team-a", "fraud", 0, shared))
	mustCreate(t, s, newVersion("team-b", "fraud", 0, shared))
	mustCreate(t, s, newVersion("team-a", "fraud", 0, only))
	tests := []struct {
		sha  string
		want int
	}{{shared, 2}, {only, 1}, {Digest(3), 0}}
	for _, tc := range tests {
		if n, err := s.BlobRefs(ctx, tc.sha); err != nil || n != tc.want {
			t.Errorf("BlobRefs(%s) = %d, %v; want %d", tc.sha[len(tc.sha)-4:], n, err, tc.want)
		}
	}
	refs, err := s.ReferencedBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]struct{}{shared: {}, only: {}}; !reflect.DeepEqual(refs, want) {
		t.Errorf("ReferencedBlobs = %v, want %v", keys(refs), keys(want))
	}
	if err := s.DeleteVersion(ctx, "team-a", "fraud", 1, false); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.BlobRefs(ctx, shared); n != 1 {
		t.Errorf("BlobRefs(shared) after deleting one = %d, want 1", n)
	}
	if err := s.DeleteModel(ctx, "team-a", "fraud", true); err != nil {
		t.Fatal(err)
	}
	refs, err = s.ReferencedBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]struct{}{shared: {}}; !reflect.DeepEqual(refs, want) {
		t.Errorf("ReferencedBlobs after delete = %v, want %v", keys(refs), keys(want))
	}
}

func keys(m map[string]struct{}) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
