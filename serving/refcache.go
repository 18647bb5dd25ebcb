package serving

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// resolve maps (ns, model, ref) to a version, through a cache that the registry's
// change notifications invalidate. When the registry is unreachable, cached answers
// keep the data path serving.
func (m *Manager) resolve(ctx context.Context, ns, model, ref string) (registry.Version, error) {
	mk := modelKey{ns, model}
	key := canonicalRef(ref)
	if v, ok := m.refs.get(mk, key); ok {
		return v, nil
	}
	gen := m.refs.generation() // before the read: see refCache
	v, err := m.reg.Resolve(ctx, ns, model, ref)
	if err != nil {
		return registry.Version{}, err
	}
	m.refs.put(mk, key, v, gen)
	return v, nil
}

// ResolveInputs resolves a model reference before its request is decoded, so
// that a request for a model or version that does not exist is refused before
// its body is read, and returns the inputs the version expects (for
// CheckInput). known is false while an alias or the default reference moves to
// another version: the version that answered it so far may still answer, with
// its own signature (see acquireServing).
func (m *Manager) ResolveInputs(ctx context.Context, ns, model, ref string) (inputs []tensor.TensorSpec, known bool, _ error) {
	if ns == "" {
		ns = registry.DefaultNamespace
	}
	v, err := m.resolve(ctx, ns, model, ref)
	if err != nil {
		return nil, false, err
	}
	if !registry.IsVersionNumber(ref) {
		if p, ok := m.lastServed.Load(refKey{ns, model, ref}); ok && p.(versionKey).version != v.Version {
			return nil, false, nil
		}
	}
	return v.Signature.Inputs, true, nil
}

// canonicalRef is the cache key of a reference: a version number without its
// leading zeros ("007" and "7" name the same version, as the registry parses
// them), anything else as written. It allocates nothing.
func canonicalRef(ref string) string {
	if !registry.IsVersionNumber(ref) {
		return ref
	}
	if t := strings.TrimLeft(ref, "0"); t != "" {
		return t
	}
	return "0" // not a version; the registry refuses it, so it is never cached
}

// Invalidate drops cached resolutions for a model; the registry calls it on every
// change. Where a reference that has been serving (an alias, or the default) now
// names another version, that version starts loading at once while the old one
// keeps answering (see acquireServing).
func (m *Manager) Invalidate(ns, model string) {
	m.refs.invalidate(modelKey{ns, model})
	m.lastServed.Range(func(k, p any) bool {
		if rk := k.(refKey); rk.ns == ns && rk.model == model {
			m.preload(rk, p.(versionKey))
		}
		return true
	})
}

// preload loads what rk resolves to now, if that moved away from prev and prev
// is still resident.
func (m *Manager) preload(rk refKey, prev versionKey) {
	m.mu.RLock()
	_, live := m.loaded[prev]
	live = live && !m.closed
	m.mu.RUnlock()
	if !live {
		return
	}
	m.bg.Go(func(ctx context.Context) {
		v, err := m.resolve(ctx, rk.ns, rk.model, rk.ref)
		if err != nil || v.Version == prev.version {
			return
		}
		if _, err := m.instanceFor(versionKey{v.Namespace, v.Model, v.Version}, v, false); err == nil {
			m.log.Info("reference moved; loading its new version while the old one serves",
				"namespace", rk.ns, "model", rk.model, "ref", rk.ref, "from", prev.version, "to", v.Version)
		}
	})
}

// refCache caches reference resolutions per model, so a change to a model drops
// its entries with one delete. Version numbers are cached under their canonical
// spelling (canonicalRef), so a model has at most one entry per version, alias
// and the default: what the registry holds bounds it, not what callers write.
//
// A resolution reads the registry outside the cache's lock, so an invalidation
// can land between that read and the store of its answer: gen counts
// invalidations, a resolution notes it before reading (generation), and put
// stores the answer only if no invalidation happened since — otherwise the
// answer may predate the change and is returned to its caller but not cached.
type refCache struct {
	mu  sync.RWMutex
	m   map[modelKey]map[string]registry.Version // ref -> version
	gen atomic.Uint64                            // bumped by invalidate (written under mu)
}

func (c *refCache) get(mk modelKey, ref string) (registry.Version, bool) {
	c.mu.RLock()
	v, ok := c.m[mk][ref]
	c.mu.RUnlock()
	return v, ok
}

// generation is the invalidation count to pass to put for an answer read from
// the registry after this call.
func (c *refCache) generation() uint64 { return c.gen.Load() }

// put caches v unless an invalidation happened since generation gen was read.
func (c *refCache) put(mk modelKey, ref string, v registry.Version, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return // the registry changed during the read: v may be stale
	}
	refs, ok := c.m[mk]
	if !ok {
		if len(c.m) >= 100_000 {
			clear(c.m) // bound memory; entries refill on demand
		}
		refs = map[string]registry.Version{}
		c.m[mk] = refs
	}
	refs[ref] = v
}

func (c *refCache) invalidate(mk modelKey) {
	c.mu.Lock()
	c.gen.Add(1)
	delete(c.m, mk)
	c.mu.Unlock()
}
