package apply_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	"github.com/nimbus-ai/nimbus/rollout"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/spec"
)

// artifacts serves declared sources from memory: uri → bytes.
type artifacts map[string]string

func (a artifacts) Fetch(ctx context.Context, art apply.Artifact, dst apply.BlobPutter) (registry.BlobInfo, error) {
	b, ok := a[art.URI]
	if !ok {
		return registry.BlobInfo{}, errs.New(errs.NotFound, "no artifact at %s", art.URI)
	}
	return dst.PutBlob(ctx, strings.NewReader(b), art.SHA256)
}

func (a artifacts) Check(apply.Artifact) error { return nil }

func (a artifacts) add(name string) (uri, sum string) {
	content := "artifact " + name
	h := sha256.Sum256([]byte(content))
	uri, sum = "file:///models/"+name+".onnx", hex.EncodeToString(h[:])
	a[uri] = content
	return uri, sum
}

// routes records what the router was told.
type routes struct {
	mu    sync.Mutex
	calls []string
}

func (r *routes) SetService(ns, name string, gen int64, s spec.ServiceSpec, _ *rollout.Route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("set %s/%s %d", ns, name, gen))
}

func (r *routes) DeleteService(ns, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "delete "+ns+"/"+name)
}

func (r *routes) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

var errInjected = errors.New("injected store failure")

// failingStore is the SQLite store (registry, resources and audit log in one)
// that fails its Nth write, after the write landed: whatever the commit wrote
// before, and that write itself, must be rolled back.
type failingStore struct {
	*sqlite.Store
	mu     sync.Mutex
	writes int
	failAt int // 0: never
}

func (f *failingStore) wrote(err error) error {
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.writes == f.failAt {
		return errInjected
	}
	return nil
}

// failAfter makes the nth write from now fail (0: none).
func (f *failingStore) failAfter(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt = 0
	if n > 0 {
		f.failAt = f.writes + n
	}
}

func (f *failingStore) written() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func (f *failingStore) CreateVersion(ctx context.Context, v registry.Version) (registry.Version, error) {
	v, err := f.Store.CreateVersion(ctx, v)
	return v, f.wrote(err)
}

func (f *failingStore) DeleteVersion(ctx context.Context, ns, model string, version int64, force bool) error {
	return f.wrote(f.Store.DeleteVersion(ctx, ns, model, version, force))
}

func (f *failingStore) SetVersionServing(ctx context.Context, ns, model string, version int64, s *registry.ServingConfig) error {
	return f.wrote(f.Store.SetVersionServing(ctx, ns, model, version, s))
}

func (f *failingStore) UpdateModel(ctx context.Context, m registry.Model) (registry.Model, error) {
	m, err := f.Store.UpdateModel(ctx, m)
	return m, f.wrote(err)
}

func (f *failingStore) DeleteModel(ctx context.Context, ns, name string, force bool) error {
	return f.wrote(f.Store.DeleteModel(ctx, ns, name, force))
}

func (f *failingStore) SetAlias(ctx context.Context, ns, model, alias string, version int64) error {
	return f.wrote(f.Store.SetAlias(ctx, ns, model, alias, version))
}

func (f *failingStore) DeleteAlias(ctx context.Context, ns, model, alias string) error {
	return f.wrote(f.Store.DeleteAlias(ctx, ns, model, alias))
}

func (f *failingStore) PutResource(ctx context.Context, r spec.StoredResource, expect int64) (spec.StoredResource, error) {
	r, err := f.Store.PutResource(ctx, r, expect)
	return r, f.wrote(err)
}

func (f *failingStore) DeleteResource(ctx context.Context, kind, ns, name string, expect int64) error {
	return f.wrote(f.Store.DeleteResource(ctx, kind, ns, name, expect))
}

func (f *failingStore) AppendEvent(ctx context.Context, e audit.Event) (audit.Event, error) {
	e, err := f.Store.AppendEvent(ctx, e)
	return e, f.wrote(err)
}

// env is an apply engine over the real registry and SQLite, wired as
// internal/system wires it.
type env struct {
	reg    *registry.Registry
	store  *failingStore
	engine *apply.Engine
	routes *routes
	src    artifacts
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, blobs := testutil.Stores(t)
	store := &failingStore{Store: db}
	log := slog.New(slog.DiscardHandler)
	reg := registry.New(store, blobs, map[string]runtime.Inspector{"onnx": testutil.FixedInspector{}}, log)
	e := &env{reg: reg, store: store, routes: &routes{}, src: artifacts{}}
	e.engine = apply.NewEngine(apply.Options{Registry: reg, Resources: store, Audit: store, Routes: e.routes,
		Fetcher: e.src, Logger: log})
	startEngine(t, e.engine)
	return e
}

// startEngine runs the engine's controllers until the test ends.
func startEngine(t *testing.T, e *apply.Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine: %v", err)
		}
	})
	<-e.Ready()
}

func (e *env) apply(ctx context.Context, yaml string) (*spec.Response, error) {
	return e.engine.Apply(ctx, spec.Request{Files: []spec.File{{Name: "f.yaml", Content: yaml}}})
}

func (e *env) mustApply(t *testing.T, yaml string) {
	t.Helper()
	if _, err := e.apply(context.Background(), yaml); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// snapshot is everything an apply may change, as JSON.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var state struct {
		Models    []registry.Model
		Versions  [][]registry.Version
		Resources []spec.StoredResource
		Events    []audit.Event
		Routes    []string
	}
	for _, ns := range []string{"default"} {
		page, err := e.reg.ListModels(ctx, ns, registry.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		state.Models = page.Items
		for _, m := range page.Items {
			vs, err := e.reg.ListVersions(ctx, ns, m.Name)
			if err != nil {
				t.Fatal(err)
			}
			state.Versions = append(state.Versions, vs)
		}
	}
	for _, kind := range []string{spec.KindModel, spec.KindInferenceService} {
		rs, err := e.store.ListResources(ctx, kind, "")
		if err != nil {
			t.Fatal(err)
		}
		state.Resources = append(state.Resources, rs...)
	}
	evs, err := e.store.ListEvents(ctx, audit.Query{Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	state.Events = evs
	e.routes.mu.Lock()
	state.Routes = append([]string(nil), e.routes.calls...)
	e.routes.mu.Unlock()
	b, err := json.MarshalIndent(state, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func modelDoc(name string, versions map[int64][2]string, aliases, labels string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: nimbus.dev/v1\nkind: Model\nmetadata:\n  name: %s\n  labels: {%s}\nspec:\n  versions:\n", name, labels)
	for n := int64(1); n <= int64(len(versions)+8); n++ {
		if src, ok := versions[n]; ok {
			fmt.Fprintf(&b, "    - version: %d\n      source: {uri: %q, sha256: %s}\n", n, src[0], src[1])
		}
	}
	fmt.Fprintf(&b, "  aliases: {%s}\n  serving: {threads: 2}\n", aliases)
	return b.String()
}

func serviceDoc(name, model string, champion int) string {
	return fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: %s}
spec:
  traffic:
    - {model: %s@champion, weight: %d}
    - {model: %s@challenger, weight: %d}
`, name, model, champion, model, 100-champion)
}

// TestCommitIsOneTransaction fails the Nth write of an apply's commit, for
// every N: nothing of the apply may be visible afterwards — registry, resource
// rows, audit events, router (issue 10, defect 5: each step committed on its
// own, so a failure part way left half an apply). A delete by files likewise.
func TestCommitIsOneTransaction(t *testing.T) {
	srcs := artifacts{}
	v1, v2, v3 := [2]string{}, [2]string{}, [2]string{}
	v1[0], v1[1] = srcs.add("v1")
	v2[0], v2[1] = srcs.add("v2")
	v3[0], v3[1] = srcs.add("v3")
	first := modelDoc("m", map[int64][2]string{1: v1, 2: v2}, "champion: 1, challenger: 2", "team: risk") +
		"---\n" + serviceDoc("svc", "m", 90)
	second := modelDoc("m", map[int64][2]string{1: v1, 2: v2, 3: v3}, "champion: 3, challenger: 2", "team: fraud, tier: one") +
		"---\n" + serviceDoc("svc", "m", 50)
	files := spec.Request{Files: []spec.File{{Name: "f.yaml", Content: first}}}

	cases := []struct {
		name  string
		setup func(t *testing.T, e *env)
		run   func(e *env) error
	}{
		{"create", func(*testing.T, *env) {}, func(e *env) error {
			_, err := e.apply(context.Background(), first)
			return err
		}},
		{"update", func(t *testing.T, e *env) { e.mustApply(t, first) }, func(e *env) error {
			_, err := e.apply(context.Background(), second)
			return err
		}},
		{"delete by files", func(t *testing.T, e *env) { e.mustApply(t, first) }, func(e *env) error {
			_, err := e.engine.DeleteFiles(context.Background(), files)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			newCase := func() *env {
				e := newEnv(t)
				for k, v := range srcs {
					e.src[k] = v
				}
				tc.setup(t, e)
				return e
			}
			// A clean run counts the commit's writes.
			e := newCase()
			before := e.store.written()
			if err := tc.run(e); err != nil {
				t.Fatalf("without a failure: %v", err)
			}
			writes := e.store.written() - before
			if writes < 5 {
				t.Fatalf("the commit wrote %d times; the case is too small to test", writes)
			}
			for n := 1; n <= writes; n++ {
				e := newCase()
				want := e.snapshot(t)
				e.store.failAfter(n)
				err := tc.run(e)
				if !errors.Is(err, errInjected) {
					t.Fatalf("write %d of %d failed: got %v, want the injected error", n, writes, err)
				}
				e.store.failAfter(0)
				if got := e.snapshot(t); got != want {
					t.Fatalf("write %d of %d failed, and the state changed:\n%s\nwant:\n%s", n, writes, got, want)
				}
			}
		})
	}
}
