package analysis

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

// subBits is how many low bits of a float64 are dropped to name its bucket:
// the 52-bit mantissa keeps its top 7, so every power of two is cut into 128
// equal sub-buckets and a bucket is at most 1/128 (0.78%) of its lower edge
// wide. Naming buckets by the bits of the value itself (HDR-style
// log-linear) costs one shift, no logarithm, and puts every edge on an
// exactly representable float, so an edge never rounds to the wrong side of
// a sample.
const subBits = 52 - 7

// Histogram counts positive values (latencies in seconds, or anything
// positive) in log-linear buckets whose edges are within 0.79% of every value
// they hold, across the range given to NewHistogram. Record is safe for
// concurrent use, lock-free and allocation-free; analysis reads a Snapshot.
//
// Values outside the range are clamped into two end buckets, never dropped,
// and those buckets report honest edges: one holds everything below the
// range (zero and negatives included, taken as 0), with edges [0, low); the
// other everything above it, with edges [high, +Inf]. So a p99 that lands
// above the range has an upper bound of +Inf — it cannot pass — rather than
// pretending to be the range's top. NaN is not a measurement and is not
// counted.
type Histogram struct {
	layout
	counts []atomic.Uint64 // [0] below the range, [1..n] the range, [n+1] above it
}

// layout is how values map to buckets; two histograms with equal layouts
// can be merged.
type layout struct {
	base uint64  // the bucket key (bits >> subBits) of the first in-range bucket
	n    int     // in-range buckets
	low  float64 // the first in-range bucket's lower edge (≤ the min asked for)
	high float64 // the last in-range bucket's upper edge (> the max asked for)
}

// NewHistogram returns a histogram that resolves values in [min, max] to
// within 0.79% (its range is widened to whole buckets: [low, high) with
// low ≤ min, high > max). The cost is 128 counters of 8 bytes per power of
// two spanned: 1e-6 to 1e3 seconds is 30 of them, 31 KB. min must be a
// positive normal float and max a finite value above it; anything else is a
// programming error, and NewHistogram panics.
func NewHistogram(min, max float64) *Histogram {
	if !(min >= 0x1p-1022) || !(max > min) || math.IsInf(max, 1) {
		panic(fmt.Sprintf("analysis: NewHistogram(%v, %v): want 0 < min < max < +Inf, min a normal float", min, max))
	}
	base := math.Float64bits(min) >> subBits
	last := math.Float64bits(max) >> subBits
	l := layout{
		base: base,
		n:    int(last - base + 1),
		low:  math.Float64frombits(base << subBits),
		high: math.Float64frombits((last + 1) << subBits),
	}
	return &Histogram{layout: l, counts: make([]atomic.Uint64, l.n+2)}
}

// Record counts one value. It is a single atomic add: safe from any number of
// goroutines, and it never allocates.
func (h *Histogram) Record(v float64) {
	i := 0 // below the range, or NaN
	if v >= h.low {
		// Positive, so the bits order like the values; keys past the
		// range (and +Inf) clamp into the last bucket.
		k := math.Float64bits(v)>>subBits - h.base
		i = int(min(k, uint64(h.n))) + 1
	} else if v != v {
		return
	}
	h.counts[i].Add(1)
}

// Count returns how many values have been recorded (since the last reset).
// It sums the buckets, so it is O(buckets); analysis should count a Snapshot.
func (h *Histogram) Count() int64 {
	var t uint64
	for i := range h.counts {
		t += h.counts[i].Load()
	}
	return int64(t)
}

// Snapshot returns an immutable copy of the counts for analysis. Records that
// run concurrently with it are either in it or not, each bucket read
// atomically; its Count is the sum of what it holds, so it is consistent with
// itself.
func (h *Histogram) Snapshot() *Snapshot { return h.snapshot(false) }

// SnapshotAndReset returns the counts since the last reset and zeroes them,
// for the step windows of a rollout: each bucket is swapped with zero
// atomically, so a value recorded concurrently lands in this window or the
// next one, never in both and never in neither.
func (h *Histogram) SnapshotAndReset() *Snapshot { return h.snapshot(true) }

// Reset zeroes the counts, discarding them (a new step with no use for the
// last one's data).
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
}

func (h *Histogram) snapshot(reset bool) *Snapshot {
	s := &Snapshot{layout: h.layout, counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		c := h.counts[i].Load()
		if reset && c != 0 {
			// Swap only the buckets that hold something: most are
			// empty, and a plain load leaves their cache lines shared
			// with the writers. A record that lands after a zero load
			// stays for the next window.
			c = h.counts[i].Swap(0)
		}
		s.counts[i] = c
		s.total += c
	}
	return s
}

// Snapshot is an immutable set of histogram counts. Its methods read order
// statistics at bucket resolution: ValueAtRank rounds the r-th smallest
// value up to its bucket's upper edge (never below the true value: safe for
// an upper bound), LowerValueAtRank down to the lower edge (safe for a lower
// bound). The zero Snapshot, and a nil *Snapshot, are empty.
type Snapshot struct {
	layout
	counts []uint64
	total  uint64
}

// ErrLayout is returned when merging snapshots of histograms built with
// different ranges: their buckets do not line up.
var ErrLayout = errors.New("analysis: histograms have different ranges")

// Count returns the number of values in the snapshot.
func (s *Snapshot) Count() int64 {
	if s == nil {
		return 0
	}
	return int64(s.total)
}

// Merge returns a new snapshot holding the values of both (the replicas of
// one version, say); neither input changes. Both must come from histograms
// with the same range (ErrLayout otherwise); an empty snapshot merges with
// anything.
func (s *Snapshot) Merge(o *Snapshot) (*Snapshot, error) {
	switch {
	case o == nil || o.counts == nil:
		return s.clone(), nil
	case s == nil || s.counts == nil:
		return o.clone(), nil
	case s.layout != o.layout:
		return nil, fmt.Errorf("%w: [%g, %g) and [%g, %g)", ErrLayout, s.low, s.high, o.low, o.high)
	}
	m := s.clone()
	for i, c := range o.counts {
		m.counts[i] += c
	}
	m.total += o.total
	return m, nil
}

func (s *Snapshot) clone() *Snapshot {
	if s == nil {
		return &Snapshot{}
	}
	c := *s
	c.counts = append([]uint64(nil), s.counts...)
	return &c
}

// ValueAtRank returns the upper edge of the bucket holding the r-th smallest
// value (1-based): an upper bound on that value, within 0.79% of it inside
// the range, +Inf above it. Ranks outside [1, Count] follow the convention
// of order-statistic intervals, X_(0) = −Inf and X_(n+1) = +Inf.
func (s *Snapshot) ValueAtRank(r int64) float64 {
	i, ok := s.bucketOfRank(r)
	if !ok {
		return outOfRank(r)
	}
	switch i {
	case 0:
		return s.low
	case s.n + 1:
		return math.Inf(1)
	}
	return math.Float64frombits((s.base + uint64(i)) << subBits) // the next bucket's lower edge
}

// LowerValueAtRank returns the lower edge of the bucket holding the r-th
// smallest value: a lower bound on it, 0 below the range. Ranks outside
// [1, Count] give −Inf and +Inf, as for ValueAtRank.
func (s *Snapshot) LowerValueAtRank(r int64) float64 {
	i, ok := s.bucketOfRank(r)
	if !ok {
		return outOfRank(r)
	}
	switch i {
	case 0:
		return 0
	case s.n + 1:
		return s.high
	}
	return math.Float64frombits((s.base + uint64(i-1)) << subBits)
}

func outOfRank(r int64) float64 {
	if r < 1 {
		return math.Inf(-1)
	}
	return math.Inf(1)
}

// bucketOfRank finds the bucket holding the r-th smallest value, scanning
// from the nearer end (a p99 is found from the top in a few buckets).
func (s *Snapshot) bucketOfRank(r int64) (int, bool) {
	n := s.Count()
	if r < 1 || r > n {
		return 0, false
	}
	if r <= n/2 {
		var cum uint64
		for i, c := range s.counts {
			cum += c
			if cum >= uint64(r) {
				return i, true
			}
		}
	}
	// The r-th smallest is the (n−r+1)-th largest.
	want, cum := uint64(n-r+1), uint64(0)
	for i := len(s.counts) - 1; i >= 0; i-- {
		cum += s.counts[i]
		if cum >= want {
			return i, true
		}
	}
	return 0, false // unreachable: the counts sum to n
}
