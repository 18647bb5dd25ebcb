package serving

import (
	"cmp"
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/memstat"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/residency"
	"github.com/nimbus-ai/nimbus/runtime"
)

// record is one version's residency history, kept across loads and unloads.
type record struct {
	mu sync.Mutex
	d  recordData
}

type recordData struct {
	// state and reason say why the version is not resident ("" while it is, or
	// before its first load).
	state, reason                             string
	lastUsed                                  time.Time // as of the last unload
	loadDuration                              time.Duration
	loads, coldStarts, evictions, idleUnloads int64
}

func (m *Manager) record(k versionKey) *record {
	if r, ok := m.records.Load(k); ok {
		return r.(*record)
	}
	r, _ := m.records.LoadOrStore(k, &record{})
	return r.(*record)
}

func (r *record) update(f func(*recordData)) {
	r.mu.Lock()
	f(&r.d)
	r.mu.Unlock()
}

func (m *Manager) recordData(k versionKey) recordData {
	r, ok := m.records.Load(k)
	if !ok {
		return recordData{}
	}
	rec := r.(*record)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.d
}

// DefaultMemory is the meter a Manager uses unless Options.Memory says otherwise.
func DefaultMemory() MemoryMeter { return nativeMemory{} }

// nativeMemory measures the C allocator ONNX Runtime allocates from.
type nativeMemory struct{}

func (nativeMemory) InUse() (int64, bool) { return memstat.NativeInUse() }

// Trim returns the C allocator's free memory to the system and, at most every
// goReleaseEvery, the Go heap's free pages (the artifact bytes read for loads),
// which takes a full collection; between those Go's scavenger returns them
// gradually.
func (nativeMemory) Trim() {
	memstat.Trim()
	if now := time.Now().UnixNano(); now-lastGoRelease.Load() >= int64(goReleaseEvery) {
		lastGoRelease.Store(now)
		debug.FreeOSMemory()
	}
}

const goReleaseEvery = 30 * time.Second

var lastGoRelease atomic.Int64

func (nativeMemory) RSS() int64 { return memstat.RSS() }

// loadOverhead is charged on top of the artifact size until a first load has
// measured what an artifact really costs (a session's fixed part: 60–120 KiB
// measured for the test models).
const loadOverhead = 128 << 10

// costOf returns what loading v costs: measured at an earlier load of the same
// artifact, or estimated from its size.
func (m *Manager) costOf(v registry.Version) (cost int64, measured bool) {
	m.costMu.Lock()
	c, ok := m.costs[v.SHA256]
	if !ok {
		// A variant of a measured artifact — the same size and signature
		// (a fine-tuned copy, a model per tenant) — costs what it cost: it is
		// not measured again. Measuring is not free: it runs alone and walks
		// the allocator's free lists, which takes milliseconds on a heap that
		// has loaded and freed many sessions.
		c, ok = m.shapeCosts[variantKey(v)]
	}
	m.costMu.Unlock()
	if ok {
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
func (m *Manager) loadMeasured(ctx context.Context, rt runtime.Runtime, v registry.Version, data []byte, cfg registry.ServingConfig, known int64, measured bool) (runtime.Model, int64, error) {
	if in, ok := rt.(interface{ Init() error }); ok {
		// The runtime's one-time setup is not the model's cost.
		if err := in.Init(); err != nil {
			return nil, 0, err
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
		m.measure.RLock()
		defer m.measure.RUnlock()
		model, err := open()
		return model, known, err
	}
	m.measure.Lock()
	defer m.measure.Unlock()
	m.costMu.Lock()
	known, measured = m.costs[v.SHA256]
	if !measured {
		known, measured = m.shapeCosts[variantKey(v)]
	}
	m.costMu.Unlock()
	if measured { // a load of the same artifact (or a variant) measured it while this one waited
		model, err := open()
		return model, known, err
	}
	before, ok := m.opts.Memory.InUse()
	model, err := open()
	if err != nil {
		return nil, 0, err
	}
	cost := v.Size
	if after, _ := m.opts.Memory.InUse(); ok && after-before > cost {
		cost = after - before
	}
	m.costMu.Lock()
	m.costs[v.SHA256] = cost
	m.shapeCosts[variantKey(v)] = cost
	m.costMu.Unlock()
	return model, cost, nil
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

// trimEvery spaces the trims: a trim walks the whole C heap and collects the Go
// heap, and under eviction churn (hundreds of unloads a second) trimming after
// each would take a core. Memory comes back within trimEvery of an unload.
const trimEvery = time.Second

// trimSoon has the allocator return freed memory to the system, in the
// background, at most every trimEvery; unloads in between share one trim. Not
// while shutting down: the process returns everything when it exits.
func (m *Manager) trimSoon() {
	m.mu.RLock()
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return
	}
	m.trimPending.Store(true)
	if !m.trimming.CompareAndSwap(false, true) {
		return // the running trimmer will see trimPending
	}
	started := m.bg.Go(func(ctx context.Context) {
		t := time.NewTimer(trimEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-ctx.Done():
				m.trimming.Store(false)
				return // closing: the process returns everything when it exits
			}
			t.Reset(trimEvery)
			m.trimPending.Store(false)
			m.opts.Memory.Trim()
			if m.trimPending.Load() {
				continue
			}
			m.trimming.Store(false)
			// An unload between the check and the store found trimming set and left
			// its trim to us: take it back unless another trimmer started.
			if !m.trimPending.Load() || !m.trimming.CompareAndSwap(false, true) {
				return
			}
		}
	})
	if !started {
		m.trimming.Store(false)
	}
}

// Status reports the residency of every version of model (every model in the
// namespace when model is "") and the memory budget.
func (m *Manager) Status(ctx context.Context, ns, model string) (residency.Report, error) {
	var models []registry.Model
	if model != "" {
		mod, err := m.reg.GetModel(ctx, ns, model)
		if err != nil {
			return residency.Report{}, err
		}
		models = append(models, mod)
	} else {
		opt := registry.ListOptions{Limit: registry.MaxPageSize}
		for {
			page, err := m.reg.ListModels(ctx, ns, opt)
			if err != nil {
				return residency.Report{}, err
			}
			models = append(models, page.Items...)
			if page.Next == "" {
				break
			}
			opt.After = page.Next
		}
	}
	rep := residency.Report{Versions: []residency.VersionStatus{}}
	for _, mod := range models {
		vs, err := m.reg.ListVersions(ctx, ns, mod.Name)
		if err != nil {
			return residency.Report{}, err
		}
		aliases := map[int64][]string{}
		for a, n := range mod.EffectiveAliases() {
			aliases[n] = append(aliases[n], a)
		}
		for _, v := range vs {
			slices.Sort(aliases[v.Version])
			rep.Versions = append(rep.Versions, m.versionStatus(v, mod.Serving.Merge(v.Serving), aliases[v.Version]))
		}
	}
	rep.Memory = m.memoryStatus()
	return rep, nil
}

func (m *Manager) versionStatus(v registry.Version, cfg registry.ServingConfig, aliases []string) residency.VersionStatus {
	k := versionKey{v.Namespace, v.Model, v.Version}
	lo, hi := cfg.InstanceBounds()
	st := residency.VersionStatus{
		Namespace: v.Namespace, Model: v.Model, Version: v.Version, Aliases: aliases,
		MinInstances: lo, MaxInstances: hi, TargetConcurrency: cfg.TargetConcurrency(),
	}
	r := m.recordData(k)
	st.LastUsed, st.LoadDuration = r.lastUsed, r.loadDuration
	st.Loads, st.ColdStarts, st.Evictions, st.IdleUnloads = r.loads, r.coldStarts, r.evictions, r.idleUnloads
	if cost, measured := m.costOf(v); measured {
		st.MemoryBytes = cost
	}
	m.mu.RLock()
	inst, resident := m.loaded[k]
	unloaded := m.unloaded[modelKey{v.Namespace, v.Model}]
	var charged int64
	if resident {
		charged = inst.cost
	}
	m.mu.RUnlock()
	switch {
	case unloaded:
		st.State, st.Reason = residency.Unloaded, fmt.Sprintf("unloaded through the repository API; POST /v2/repository/models/%s/load serves it again", v.Model)
	case resident:
		select {
		case <-inst.ready:
			if inst.err != nil {
				st.State, st.Reason = residency.Failed, errs.PublicMessage(inst.err)
				break
			}
			st.State = residency.Ready
			st.MemoryBytes = charged
			st.Instances = inst.b.instanceCount()
			st.InFlight = int(inst.b.active.Load())
			st.LoadedAt = inst.loadedAt
			st.LastUsed = time.Unix(0, inst.lastUsed.Load())
		default:
			st.State = residency.Loading
		}
	case r.state != "":
		st.State, st.Reason = r.state, r.reason
	default:
		st.State, st.Reason = residency.Idle, "not loaded yet; loads on first request"
	}
	return st
}

// memoryStatus sums up the budget. Resident counts the versions in memory,
// loading ones included; a failed load stays in m.loaded (so that its error is
// the answer until a retry is due) but holds no memory, so it is not counted.
func (m *Manager) memoryStatus() residency.Memory {
	m.mu.RLock()
	mem := residency.Memory{BudgetBytes: m.opts.MemoryBudget, UsedBytes: m.used}
	for _, inst := range m.loaded {
		select {
		case <-inst.ready:
			if inst.err != nil {
				continue
			}
		default:
		}
		mem.Resident++
	}
	m.mu.RUnlock()
	mem.ProcessRSSBytes = m.opts.Memory.RSS()
	return mem
}
