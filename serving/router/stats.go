package router

import (
	"math"
	"sync/atomic"
	"time"
)

// ServiceStats are the counters of one service since it was created (a target or
// shadow keeps its counters across Set while its name stays).
type ServiceStats struct {
	Generation int64
	Targets    []TargetStats // as configured
	Shadow     *ShadowStats  // nil: no shadow configured
}

// TargetStats count the primary requests of one target.
type TargetStats struct {
	Target       string // "model@ref" as configured
	Weight       int
	Requests     int64 // answered or failed
	Errors       int64
	TotalLatency time.Duration
}

// ShadowStats count the shadow copies of a service and their comparisons.
type ShadowStats struct {
	Target  string // "model@ref" as configured
	Percent int
	Sent    int64 // copies sent (they answered or failed)
	Errors  int64 // copies that failed, timed out or panicked
	Dropped int64 // copies not sent: the shadow pool was full
	// Compared counts answers compared with the primary's; ExactMatch those equal
	// in output names, datatypes, shapes and bytes.
	Compared   int64
	ExactMatch int64
	// MaxAbsDiff is the largest absolute difference seen between numeric outputs
	// of equal shape (finite values only).
	MaxAbsDiff float64
}

// Stats returns the counters of service ns/name.
func (r *Router) Stats(ns, name string) (ServiceStats, bool) {
	tab := r.table(namespaceOr(ns), name)
	if tab == nil {
		return ServiceStats{}, false
	}
	out := ServiceStats{Generation: tab.cfg.Generation, Targets: make([]TargetStats, 0, len(tab.routes))}
	for _, rt := range tab.routes {
		out.Targets = append(out.Targets, TargetStats{
			Target: rt.name, Weight: rt.weight,
			Requests: rt.stats.requests.Load(), Errors: rt.stats.errors.Load(),
			TotalLatency: time.Duration(rt.stats.latency.Load()),
		})
	}
	if s := tab.shadow; s != nil {
		st := s.stats
		out.Shadow = &ShadowStats{
			Target: s.name, Percent: s.percent,
			Sent: st.sent.Load(), Errors: st.errors.Load(), Dropped: st.dropped.Load(),
			Compared: st.compared.Load(), ExactMatch: st.exact.Load(),
			MaxAbsDiff: math.Float64frombits(st.maxDiff.Load()),
		}
	}
	return out, true
}

type targetStats struct {
	requests, errors, latency atomic.Int64
	// window counts the open measurement window (nil: none open).
	window atomic.Pointer[targetWindow]
}

func (s *targetStats) record(d time.Duration, err error) {
	s.requests.Add(1)
	s.latency.Add(int64(d))
	if err != nil {
		s.errors.Add(1)
	}
	if w := s.window.Load(); w != nil {
		w.record(d, err)
	}
}

type shadowStats struct {
	sent, errors, dropped, compared, exact atomic.Int64
	maxDiff                                atomic.Uint64 // float64 bits; diffs are >= 0, so bits order like values
	window                                 atomic.Pointer[shadowWindow]
}

// recordComparison counts one compared answer; match says whether it counts
// as a match in a measurement window (exact, or within the tolerance).
func (s *shadowStats) recordComparison(exact bool, diff float64, match bool) {
	s.compared.Add(1)
	if exact {
		s.exact.Add(1)
	}
	if w := s.window.Load(); w != nil {
		w.compared.Add(1)
		if !match {
			w.mismatches.Add(1)
		}
	}
	bits := math.Float64bits(diff)
	for {
		cur := s.maxDiff.Load()
		if bits <= cur || s.maxDiff.CompareAndSwap(cur, bits) {
			return
		}
	}
}
