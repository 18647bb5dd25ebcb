package analysis

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// maxRelErr is the promise: a bucket is at most 1/128 of its lower edge wide.
const maxRelErr = 1.0 / 128

// Every value across 1e-6..1e3 s is read back, by rank, within the bucket
// bound: ValueAtRank never below it and at most 0.79% above, LowerValueAtRank
// never above it and at most 0.79% below — including exact powers of two
// (bucket edges) and their float neighbours.
func TestHistogramRelativeError(t *testing.T) {
	h := NewHistogram(1e-6, 1e3)
	var vs []float64
	for e := -6.0; e <= 3; e += 0.0137 {
		vs = append(vs, math.Pow(10, e))
	}
	for e := -19; e <= 9; e++ {
		x := math.Ldexp(1, e)
		vs = append(vs, x, math.Nextafter(x, 0), math.Nextafter(x, 2*x), x*(1+1.0/128), x*(1+127.0/128))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		vs = append(vs, math.Pow(10, -6+9*r.Float64()))
	}
	vs = append(vs, 1e-6, 1e3)
	vs = slices.DeleteFunc(vs, func(v float64) bool { return v < 1e-6 || v > 1e3 })
	for _, v := range vs {
		h.Record(v)
	}
	slices.Sort(vs)
	s := h.Snapshot()
	if s.Count() != int64(len(vs)) {
		t.Fatalf("Count = %d, want %d", s.Count(), len(vs))
	}
	for i, v := range vs {
		r := int64(i + 1)
		hi, lo := s.ValueAtRank(r), s.LowerValueAtRank(r)
		if hi < v || hi > v*(1+maxRelErr) {
			t.Errorf("ValueAtRank(%d) = %.17g for %.17g: relative error %.3g", r, hi, v, hi/v-1)
		}
		if lo > v || lo < v/(1+maxRelErr) {
			t.Errorf("LowerValueAtRank(%d) = %.17g for %.17g: relative error %.3g", r, lo, v, 1-lo/v)
		}
	}
}

// Values outside the range land in the end buckets, which report what is
// honestly known of them: below the range, [0, low); above, [high, +Inf).
// NaN is not counted; +Inf is above the range.
func TestHistogramClamping(t *testing.T) {
	h := NewHistogram(0.001, 10)
	for _, v := range []float64{-1, 0, math.Copysign(0, -1), 1e-9, math.Inf(-1), math.NaN(), 0.5, 11, 1e9, math.Inf(1)} {
		h.Record(v)
	}
	s := h.Snapshot()
	if s.Count() != 9 {
		t.Fatalf("Count = %d, want 9 (NaN is not counted)", s.Count())
	}
	low, high := s.ValueAtRank(1), s.LowerValueAtRank(9)
	if !(low <= 0.001 && low > 0.001*(1-maxRelErr)) || !(high > 10 && high < 10*(1+maxRelErr)) {
		t.Fatalf("range edges %v, %v: want just below 0.001 and just above 10", low, high)
	}
	for r := int64(1); r <= 5; r++ {
		if lo, hi := s.LowerValueAtRank(r), s.ValueAtRank(r); lo != 0 || hi != low {
			t.Errorf("rank %d (below the range): [%v, %v], want [0, %v]", r, lo, hi, low)
		}
	}
	if hi := s.ValueAtRank(6); math.Abs(hi-0.5) > 0.5*maxRelErr {
		t.Errorf("rank 6 = %v, want about 0.5", hi)
	}
	for r := int64(7); r <= 9; r++ {
		if lo, hi := s.LowerValueAtRank(r), s.ValueAtRank(r); lo != high || !math.IsInf(hi, 1) {
			t.Errorf("rank %d (above the range): [%v, %v], want [%v, +Inf]", r, lo, hi, high)
		}
	}
	// The order-statistic convention outside [1, n].
	if !math.IsInf(s.ValueAtRank(0), -1) || !math.IsInf(s.LowerValueAtRank(0), -1) ||
		!math.IsInf(s.ValueAtRank(10), 1) || !math.IsInf(s.LowerValueAtRank(10), 1) {
		t.Errorf("ranks 0 and n+1 must read −Inf and +Inf")
	}
}

func TestNewHistogramPanics(t *testing.T) {
	for _, tc := range []struct{ min, max float64 }{
		{0, 1}, {-1, 1}, {1, 1}, {2, 1}, {1e-310, 1}, {1, math.Inf(1)}, {math.NaN(), 1}, {1, math.NaN()},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewHistogram(%v, %v) did not panic", tc.min, tc.max)
				}
			}()
			NewHistogram(tc.min, tc.max)
		}()
	}
}

// A snapshot is a copy: later records and resets do not reach it, and Merge
// changes neither input.
func TestSnapshotImmutable(t *testing.T) {
	h := NewHistogram(1e-3, 10)
	h.Record(1)
	s := h.Snapshot()
	h.Record(2)
	h.Record(3)
	if s.Count() != 1 || s.ValueAtRank(1) > 1*(1+maxRelErr) {
		t.Fatalf("snapshot changed after Record: count %d, rank 1 = %v", s.Count(), s.ValueAtRank(1))
	}
	h.Reset()
	if s.Count() != 1 || h.Count() != 0 {
		t.Fatalf("after Reset: snapshot %d, histogram %d; want 1, 0", s.Count(), h.Count())
	}
	h.Record(5)
	o := h.Snapshot()
	m, err := s.Merge(o)
	if err != nil {
		t.Fatal(err)
	}
	if m.Count() != 2 || s.Count() != 1 || o.Count() != 1 {
		t.Fatalf("Merge: merged %d, inputs %d and %d; want 2, 1, 1", m.Count(), s.Count(), o.Count())
	}
	if v := m.ValueAtRank(2); v < 5 || v > 5*(1+maxRelErr) {
		t.Errorf("merged rank 2 = %v, want about 5", v)
	}
	if v := s.ValueAtRank(2); !math.IsInf(v, 1) {
		t.Errorf("Merge changed its receiver: rank 2 = %v", v)
	}
}

// Merging the snapshots of two histograms is the same as recording into one;
// histograms of different ranges do not merge; empty snapshots merge with
// anything.
func TestSnapshotMerge(t *testing.T) {
	a, b, all := NewHistogram(1e-4, 100), NewHistogram(1e-4, 100), NewHistogram(1e-4, 100)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 5000 {
		v := r.ExpFloat64() / 10
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
		all.Record(v)
	}
	m, err := a.Snapshot().Merge(b.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	want := all.Snapshot()
	if m.Count() != want.Count() || !slices.Equal(m.counts, want.counts) {
		t.Fatalf("merged snapshot differs from recording into one histogram")
	}
	if _, err := m.Merge(NewHistogram(1e-4, 1000).Snapshot()); !errors.Is(err, ErrLayout) {
		t.Errorf("merging different ranges: %v, want ErrLayout", err)
	}
	for _, e := range []*Snapshot{nil, {}} {
		if got, err := m.Merge(e); err != nil || !slices.Equal(got.counts, m.counts) {
			t.Errorf("Merge(empty %v) = %v, %v", e, got, err)
		}
		if got, err := e.Merge(m); err != nil || !slices.Equal(got.counts, m.counts) {
			t.Errorf("empty %v .Merge = %v, %v", e, got, err)
		}
	}
	var zero *Snapshot
	if zero.Count() != 0 || !math.IsInf(zero.ValueAtRank(1), 1) {
		t.Errorf("a nil snapshot must read as empty")
	}
}

// Concurrent Records, Snapshots and SnapshotAndResets (run under -race): no
// record is lost or counted twice across the step windows.
func TestHistogramConcurrent(t *testing.T) {
	const writers, each = 8, 20_000
	h := NewHistogram(1e-6, 1e3)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 0))
			for range each {
				h.Record(r.ExpFloat64() / 100)
			}
		})
	}
	stop := make(chan struct{})
	var windows int64
	var done sync.WaitGroup
	done.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = h.Snapshot().Count()
			windows += h.SnapshotAndReset().Count()
		}
	})
	wg.Wait()
	close(stop)
	done.Wait()
	if got := windows + h.SnapshotAndReset().Count(); got != writers*each {
		t.Errorf("windows hold %d records, want %d", got, writers*each)
	}
	if h.Count() != 0 {
		t.Errorf("Count after the last reset = %d, want 0", h.Count())
	}
}
