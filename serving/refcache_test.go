package serving

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// oneVersionRegistry holds model "m" with version 1 (and alias "champion"),
// resolving numbers as the registry does, and counts resolutions.
type oneVersionRegistry struct {
	Registry // the other methods are not used
	resolves atomic.Int32
}

func (r *oneVersionRegistry) Resolve(_ context.Context, ns, model, ref string) (registry.Version, error) {
	r.resolves.Add(1)
	v := registry.Version{Namespace: ns, Model: model, Version: 1}
	if ref == "" || ref == "champion" {
		return v, nil
	}
	if n, err := strconv.ParseInt(ref, 10, 64); err == nil && registry.IsVersionNumber(ref) && n == 1 {
		return v, nil
	}
	return registry.Version{}, errs.New(errs.NotFound, "model %s has no version %q", model, ref)
}

// TestRefCacheKeepsOneEntryPerVersion: however many ways callers spell a
// version number ("1", "01", "0001"…), the cache holds one entry for it and the
// registry is asked once; references that fail are not cached.
func TestRefCacheKeepsOneEntryPerVersion(t *testing.T) {
	reg := &oneVersionRegistry{}
	m := NewManager(reg, nil, Options{Logger: discardLog()})
	ctx := context.Background()
	for i := range 1000 {
		ref := strings.Repeat("0", i) + "1"
		v, err := m.resolve(ctx, "default", "m", ref)
		if err != nil || v.Version != 1 {
			t.Fatalf("ref %q: %v %+v", ref, err, v)
		}
	}
	for _, bad := range []string{"0", "000", "2", "02", "99999999999999999999999"} {
		if _, err := m.resolve(ctx, "default", "m", bad); err == nil {
			t.Fatalf("ref %q resolved", bad)
		}
	}
	if _, err := m.resolve(ctx, "default", "m", "champion"); err != nil {
		t.Fatal(err)
	}
	m.refs.mu.RLock()
	refs := len(m.refs.m[modelKey{"default", "m"}])
	m.refs.mu.RUnlock()
	if refs != 2 { // "1" and "champion"
		t.Errorf("the cache holds %d references of one model, want 2 (the version and the alias)", refs)
	}
	if n := reg.resolves.Load(); n != 1+5+1 {
		t.Errorf("registry resolutions = %d, want 7: one for the version, each failing ref, one for the alias", n)
	}
}

func TestCanonicalRef(t *testing.T) {
	for ref, want := range map[string]string{"": "", "champion": "champion", "1": "1", "007": "7", "10": "10", "0": "0", "000": "0", "v1": "v1"} {
		if got := canonicalRef(ref); got != want {
			t.Errorf("canonicalRef(%q) = %q, want %q", ref, got, want)
		}
	}
}

// movingAliasRegistry resolves "champion" of model "m" to the version it holds
// now; while pause is set, a resolution reads that version, reports it on read
// and waits for pause before answering — the window in which an invalidation
// can land between the cache's read of the registry and its store.
type movingAliasRegistry struct {
	Registry // the other methods are not used
	champion atomic.Int64
	pause    chan struct{} // nil: answer at once
	read     chan int64
}

func (r *movingAliasRegistry) Resolve(_ context.Context, ns, model, ref string) (registry.Version, error) {
	v := registry.Version{Namespace: ns, Model: model, Version: r.champion.Load()}
	if r.pause != nil {
		r.read <- v.Version
		<-r.pause
	}
	return v, nil
}

// TestRefCacheDropsAnswerReadBeforeInvalidate: a resolution that read the
// registry before an alias moved, and stores its answer after the change's
// invalidation, must not cache that answer — else the alias change never takes
// effect for this server.
func TestRefCacheDropsAnswerReadBeforeInvalidate(t *testing.T) {
	reg := &movingAliasRegistry{pause: make(chan struct{}), read: make(chan int64)}
	reg.champion.Store(1)
	m := NewManager(reg, nil, Options{Logger: discardLog()})
	ctx := context.Background()

	type answer struct {
		v   registry.Version
		err error
	}
	first := make(chan answer, 1)
	go func() {
		v, err := m.resolve(ctx, "default", "m", "champion")
		first <- answer{v, err}
	}()
	if got := <-reg.read; got != 1 {
		t.Fatalf("the first resolution read version %d, want 1", got)
	}
	// The alias moves while that resolution is between its read and its store.
	reg.champion.Store(2)
	m.Invalidate("default", "m")
	close(reg.pause)
	a := <-first
	if a.err != nil || a.v.Version != 1 {
		t.Fatalf("the first resolution answered %+v, %v; want version 1 (what it read)", a.v, a.err)
	}

	reg.pause = nil
	v, err := m.resolve(ctx, "default", "m", "champion")
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != 2 {
		t.Fatalf("after the alias moved to 2 and the cache was invalidated, champion resolves to %d: a stale answer was cached", v.Version)
	}
}

// TestResolveInputsWhileAReferenceMoves: the inputs of the version a reference
// names are known — except while the reference has moved away from the
// version that answered it so far, which may still answer (with its own
// signature); a version number is always known.
func TestResolveInputsWhileAReferenceMoves(t *testing.T) {
	reg := &movingAliasRegistry{}
	reg.champion.Store(1)
	m := NewManager(reg, nil, Options{Logger: discardLog()})
	ctx := context.Background()
	if _, known, err := m.ResolveInputs(ctx, "", "m", "champion"); err != nil || !known {
		t.Fatalf("champion before any move: known %v, %v", known, err)
	}
	m.lastServed.Store(refKey{"default", "m", "champion"}, versionKey{"default", "m", 1}) // version 1 answered it
	reg.champion.Store(2)
	m.Invalidate("default", "m")
	if _, known, err := m.ResolveInputs(ctx, "", "m", "champion"); err != nil || known {
		t.Fatalf("champion moved from 1 to 2: known %v, %v; want unknown (version 1 may still answer)", known, err)
	}
	if _, known, err := m.ResolveInputs(ctx, "", "m", "2"); err != nil || !known {
		t.Fatalf("version 2 by number: known %v, %v", known, err)
	}
}
