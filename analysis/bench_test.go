package analysis

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkRecord: one value into a 1e-6..1e3 s histogram, from one
// goroutine and from all of them (RunParallel) — the serving path's cost.
func BenchmarkRecord(b *testing.B) {
	h := NewHistogram(1e-6, 1e3)
	vs := latencies(1024)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			h.Record(vs[i&1023])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				h.Record(vs[i&1023])
				i++
			}
		})
	})
}

// BenchmarkQuantileInterval: the p99 interval of 10⁶ samples, as a step's
// analysis reads it (ranks from the binomial sums plus two bucket scans).
func BenchmarkQuantileInterval(b *testing.B) {
	h := NewHistogram(1e-6, 1e3)
	for _, v := range latencies(1_000_000) {
		h.Record(v)
	}
	s := h.Snapshot()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := QuantileInterval(s, 0.99, 0.95); !ok {
			b.Fatal("no interval from 10⁶ samples")
		}
	}
}

// BenchmarkSnapshotAndReset: closing a step window on a 1e-6..1e3 s histogram.
func BenchmarkSnapshotAndReset(b *testing.B) {
	h := NewHistogram(1e-6, 1e3)
	vs := latencies(10_000)
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range vs[:100] {
			h.Record(v)
		}
		h.SnapshotAndReset()
	}
}

// latencies are exponential around 50 ms: a model server's typical shape.
func latencies(n int) []float64 {
	r := rand.New(rand.NewPCG(7, 7))
	vs := make([]float64, n)
	for i := range vs {
		vs[i] = 0.05 * r.ExpFloat64()
	}
	return vs
}
