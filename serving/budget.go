package serving

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/residency"
	"github.com/nimbus-ai/nimbus/runtime"
)

// The memory budget: what each version costs (measured at the first load of
// its artifact, or of a variant), whether it fits, and which idle versions
// are evicted, least recently used first, to make room.
//
// Locks: Manager.mu guards the charges (Manager.used, instance.cost and
// instance.detached); costBook has its own, never held together with
// Manager.mu. costBook.measure is taken before a load starts and held through
// it: exclusively for a first load, which measures the allocator's growth
// alone, shared for every other.

// CostMemory keeps measured load costs across restarts, per artifact and
// runtime (registry.Registry does, in its store). It is optional: a registry
// without it has each artifact measured again after a restart.
type CostMemory interface {
	ArtifactCost(ctx context.Context, sha256, runtime string) (cost int64, ok bool, err error)
	SetArtifactCost(ctx context.Context, sha256, runtime string, cost int64) error
}

// runtimeKey names what a cost was measured under: the format and the
// runtime library's version ("" when the runtime does not say, or is not
// set up: such costs are not kept).
func runtimeKey(rt runtime.Runtime) string {
	if in, ok := rt.(interface{ Init() error }); ok {
		if in.Init() != nil {
			return ""
		}
	}
	if vr, ok := rt.(interface{ Version() string }); ok {
		if v := vr.Version(); v != "" {
			return rt.Format() + " " + v
		}
	}
	return ""
}

// storedCost looks up a cost measured for v's artifact before this process
// (costBook has none): it is then charged without a measurement, which runs
// alone and walks the allocator's free lists.
func (m *Manager) storedCost(ctx context.Context, rt runtime.Runtime, v registry.Version) (int64, bool) {
	cm, ok := m.reg.(CostMemory)
	if !ok {
		return 0, false
	}
	key := runtimeKey(rt)
	if key == "" {
		return 0, false
	}
	cost, found, err := cm.ArtifactCost(ctx, v.SHA256, key)
	if err != nil {
		m.log.Warn("reading a stored load cost; measuring instead", "model", v.Model, "version", v.Version, "err", err)
		return 0, false
	}
	if !found {
		return 0, false
	}
	m.costs.store(v, cost)
	return cost, true
}

// rememberCost stores a cost just measured, for later processes.
func (m *Manager) rememberCost(ctx context.Context, rt runtime.Runtime, v registry.Version, cost int64) {
	cm, ok := m.reg.(CostMemory)
	key := runtimeKey(rt)
	if !ok || key == "" {
		return
	}
	if err := cm.SetArtifactCost(ctx, v.SHA256, key, cost); err != nil {
		m.log.Warn("storing a measured load cost", "model", v.Model, "version", v.Version, "err", err)
	}
}

// costBook remembers what artifacts cost once measured, for the life of the
// process.
type costBook struct {
	mu    sync.Mutex
	costs map[string]int64 // artifact sha256 -> measured cost
	// variants maps what variants share (size and signature, variantKey) to
	// the cost measured for one of them.
	variants map[string]int64
	// measure serializes first loads (exclusive) against every other load
	// (shared): an allocator delta taken while another load runs would count both.
	measure sync.RWMutex
}

func newCostBook() costBook {
	return costBook{costs: map[string]int64{}, variants: map[string]int64{}}
}

// lookup returns v's measured cost, or a variant's. A variant of a measured
// artifact — the same size and signature (a fine-tuned copy, a model per
// tenant) — costs what it cost: it is not measured again. Measuring is not
// free: it runs alone and walks the allocator's free lists, which takes
// milliseconds on a heap that has loaded and freed many sessions.
func (c *costBook) lookup(v registry.Version) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cost, ok := c.costs[v.SHA256]; ok {
		return cost, true
	}
	cost, ok := c.variants[variantKey(v)]
	return cost, ok
}

func (c *costBook) store(v registry.Version, cost int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.costs[v.SHA256] = cost
	c.variants[variantKey(v)] = cost
}

// loadOverhead is charged on top of the artifact size until a first load has
// measured what an artifact really costs (a session's fixed part: 60–120 KiB
// measured for the test models).
const loadOverhead = 128 << 10

// costOf returns what loading v costs: measured at an earlier load of the same
// artifact, or estimated from its size.
func (m *Manager) costOf(v registry.Version) (cost int64, measured bool) {
	if c, ok := m.costs.lookup(v); ok {
		return c, true
	}
	return v.Size + loadOverhead, false
}

// variantKey is what variants of one model share: the artifact's size and its
// signature.
func variantKey(v registry.Version) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", v.Format, v.Size)
	for _, t := range v.Signature.Inputs {
		fmt.Fprintf(&b, "|i %s %s %v", t.Name, t.DataType, t.Shape)
	}
	for _, t := range v.Signature.Outputs {
		fmt.Fprintf(&b, "|o %s %s %v", t.Name, t.DataType, t.Shape)
	}
	return b.String()
}

// fits refuses a version that could not fit even with everything else evicted —
// a clear error instead of an eviction storm. Before its cost is measured, only
// the artifact's own size is certain.
func (m *Manager) fits(v registry.Version, cost int64, measured bool) error {
	b := m.opts.MemoryBudget
	how := "measured when it loaded"
	if !measured {
		cost, how = v.Size, "its artifact alone"
	}
	if b <= 0 || cost <= b {
		return nil
	}
	return errs.New(errs.FailedPrecondition, "model %s version %d needs %s (%s), more than the whole memory budget of %s; raise --memory-budget",
		v.Model, v.Version, config.FormatBytes(cost), how, config.FormatBytes(b))
}

// reserve charges need bytes to inst, evicting least recently used idle versions
// until they fit. Versions with requests running or queued are never evicted:
// while only those hold the budget, it waits (up to RoomWait) for one to finish.
func (m *Manager) reserve(inst *instance, need int64) error {
	budget := m.opts.MemoryBudget
	if budget > 0 {
		need = min(need, budget) // an estimate above the budget is settled once measured
	}
	deadline := time.Now().Add(m.opts.RoomWait)
	pause := 500 * time.Microsecond
	for {
		m.mu.Lock()
		if inst.detached {
			m.mu.Unlock()
			return errs.New(errs.Unavailable, "the version was released while it loaded")
		}
		if budget <= 0 || m.used+need <= budget {
			inst.cost = need
			m.used += need
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		// Listing and sorting the candidates only reads: requests keep going
		// meanwhile (this runs on every retry while the budget is held).
		m.mu.RLock()
		victims := m.evictableLocked(inst)
		used := m.used
		m.mu.RUnlock()
		evicted := false
		for _, vi := range victims {
			if m.evict(vi, inst.key) {
				evicted = true
				if m.hasRoom(need) {
					break
				}
			}
		}
		if evicted {
			continue
		}
		if time.Now().After(deadline) {
			return &errs.Error{Kind: errs.Unavailable, RetryAfter: time.Second, Message: fmt.Sprintf(
				"memory budget full: %s of %s is held by versions serving requests; model %s version %d needs %s",
				config.FormatBytes(used), config.FormatBytes(budget), inst.key.model, inst.key.version, config.FormatBytes(need))}
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
}

func (m *Manager) hasRoom(need int64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.used+need <= m.opts.MemoryBudget
}

// evictableLocked lists resident versions that may be evicted, least recently
// used first: not except, and not kept warm by instances.min >= 1. m.mu is held
// (shared is enough).
func (m *Manager) evictableLocked(except *instance) []*instance {
	var out []*instance
	for _, inst := range m.residentLocked() {
		if inst != except && inst.cfg.IdleAfter() > 0 {
			out = append(out, inst)
		}
	}
	slices.SortFunc(out, func(a, b *instance) int { return cmp.Compare(a.lastUsed.Load(), b.lastUsed.Load()) })
	return out
}

// evict unloads vi to make room for the version for, if nothing runs or waits on it.
func (m *Manager) evict(vi *instance, forKey versionKey) bool {
	reason := fmt.Sprintf("evicted to make room for %s version %d under the memory budget", forKey.model, forKey.version)
	if !m.unloadIfUnused(vi, nil, residency.Evicted, reason) {
		return false
	}
	m.record(vi.key).update(func(r *recordData) { r.evictions++ })
	m.metrics.Evicted(vi.key.ns)
	m.log.Info("evicted version for the memory budget", "namespace", vi.key.ns, "model", vi.key.model, "version", vi.key.version,
		"for_model", forKey.model, "for_version", forKey.version)
	return true
}

// loadMeasured loads v and runs its warm-up. The first load of an artifact runs
// alone and measures the allocator's growth across it; later loads of the same
// artifact reuse that figure.
//
// fresh reports that this load measured the cost.
func (m *Manager) loadMeasured(ctx context.Context, rt runtime.Runtime, v registry.Version, data []byte, cfg registry.ServingConfig, known int64, measured bool) (_ runtime.Model, _ int64, fresh bool, _ error) {
	if in, ok := rt.(interface{ Init() error }); ok {
		// The runtime's one-time setup is not the model's cost.
		if err := in.Init(); err != nil {
			return nil, 0, false, err
		}
	}
	opts := runtime.Options{IntraOpThreads: cfg.Threads, InterOpThreads: cfg.InterOpThreads}
	path := m.blobs.Path(v.SHA256)
	open := func() (runtime.Model, error) {
		var model runtime.Model
		var err error
		if bl, ok := rt.(runtime.BytesLoader); ok && data != nil {
			model, err = bl.LoadBytes(ctx, data, opts) // read and verified once, by load
		} else {
			model, err = rt.Load(ctx, path, opts)
		}
		if err != nil {
			return nil, err
		}
		if err := warmUp(ctx, model, cfg, m.log.With("model", v.Model, "version", v.Version)); err != nil {
			model.Close()
			return nil, err
		}
		return model, nil
	}
	if measured {
		m.costs.measure.RLock()
		defer m.costs.measure.RUnlock()
		model, err := open()
		return model, known, false, err
	}
	m.costs.measure.Lock()
	defer m.costs.measure.Unlock()
	if known, measured = m.costs.lookup(v); measured { // a load of the same artifact (or a variant) measured it while this one waited
		model, err := open()
		return model, known, false, err
	}
	before, ok := m.opts.Memory.InUse()
	model, err := open()
	if err != nil {
		return nil, 0, false, err
	}
	cost := v.Size
	if after, _ := m.opts.Memory.InUse(); ok && after-before > cost {
		cost = after - before
	}
	m.costs.store(v, cost)
	return model, cost, true, nil
}

// settleCost replaces inst's estimated charge with its measured cost and, if the
// estimate was low, evicts idle versions until the budget holds again.
func (m *Manager) settleCost(inst *instance, cost int64) {
	m.mu.Lock()
	if !inst.detached {
		m.used += cost - inst.cost
		inst.cost = cost
	}
	over := m.opts.MemoryBudget > 0 && m.used > m.opts.MemoryBudget
	m.mu.Unlock()
	if !over {
		return
	}
	m.mu.RLock()
	victims := m.evictableLocked(inst)
	m.mu.RUnlock()
	for _, vi := range victims {
		if m.hasRoom(0) {
			break
		}
		m.evict(vi, inst.key)
	}
}
