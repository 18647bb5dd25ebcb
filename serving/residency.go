package serving

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/memstat"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/residency"
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
			st.Instances = inst.b.Instances()
			st.InFlight = int(inst.b.Active())
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
