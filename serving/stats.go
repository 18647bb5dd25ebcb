package serving

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/telemetry"
)

// versionStats are Triton-style counters for one version, updated on every
// request without locks.
type versionStats struct {
	lastInference                      atomic.Int64 // unix nanos; 0: never
	inferenceCount                     atomic.Int64
	executionCount                     atomic.Int64
	success, fail, queue, computeInfer durationStat
}

type durationStat struct{ count, total atomic.Int64 }

func (d *durationStat) add(x time.Duration) {
	d.count.Add(1)
	d.total.Add(int64(x))
}

func (d *durationStat) get() Duration {
	return Duration{Count: d.count.Load(), Total: time.Duration(d.total.Load())}
}

func (s *versionStats) record(rows int64, at time.Time) {
	s.inferenceCount.Add(rows)
	s.lastInference.Store(at.UnixNano())
}

// recordExecution counts one runtime call (a batch counts once).
func (s *versionStats) recordExecution() { s.executionCount.Add(1) }

func (m *Manager) statsFor(k versionKey) *versionStats {
	if st, ok := m.stats.Load(k); ok {
		return st.(*versionStats)
	}
	st, _ := m.stats.LoadOrStore(k, &versionStats{})
	return st.(*versionStats)
}

// Stats returns statistics for one version, every version of a model (version ""),
// or every model of the namespace (model "").
func (m *Manager) Stats(ctx context.Context, ns, model, ref string) ([]ModelStats, error) {
	var filter func(versionKey) bool
	switch {
	case model == "":
		filter = func(k versionKey) bool { return k.ns == ns }
	case ref == "":
		if _, err := m.reg.GetModel(ctx, ns, model); err != nil {
			return nil, err
		}
		filter = func(k versionKey) bool { return k.ns == ns && k.model == model }
	default:
		v, err := m.resolve(ctx, ns, model, ref)
		if err != nil {
			return nil, err
		}
		filter = func(k versionKey) bool { return k == versionKey{ns, model, v.Version} }
	}
	var keys []versionKey
	m.stats.Range(func(k, _ any) bool {
		if filter(k.(versionKey)) {
			keys = append(keys, k.(versionKey))
		}
		return true
	})
	sortKeys(keys)
	out := make([]ModelStats, 0, len(keys))
	for _, k := range keys {
		st := m.statsFor(k)
		ms := ModelStats{
			Name: k.model, Version: strconv.FormatInt(k.version, 10),
			InferenceCount: st.inferenceCount.Load(), ExecutionCount: st.executionCount.Load(),
		}
		if n := st.lastInference.Load(); n != 0 {
			ms.LastInference = time.Unix(0, n)
		}
		ms.Success, ms.Fail, ms.Queue, ms.ComputeInfer = st.success.get(), st.fail.get(), st.queue.get(), st.computeInfer.get()
		out = append(out, ms)
	}
	return out, nil
}

func sortKeys(keys []versionKey) {
	slices.SortFunc(keys, func(a, b versionKey) int {
		if a.model != b.model {
			return strings.Compare(a.model, b.model)
		}
		return cmp.Compare(a.version, b.version)
	})
}

// versionObserver is what a version's batcher reports to: its metrics, and
// its statistics' execution count (a batch is one execution).
type versionObserver struct {
	*telemetry.VersionMetrics
	stats *versionStats
}

func (o versionObserver) ObserveBatch(rows int64) {
	o.VersionMetrics.ObserveBatch(rows)
	o.stats.recordExecution()
}
