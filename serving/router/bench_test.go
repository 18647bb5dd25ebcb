package router

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/telemetry"
)

// BenchmarkRoute measures the cost of choosing a target, which every request to
// a service pays: a counter and a slice index without a key, one hash of the key
// plus a hash mix and a logarithm per target with one.
func BenchmarkRoute(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i*7919)
	}
	for _, tc := range []struct {
		name    string
		weights []int
	}{
		{"2targets", []int{90, 10}},
		{"3targets", []int{33, 33, 34}},
	} {
		tab := newTable(Config{Targets: targetsOf(tc.weights)}, nil, nil, "default", "svc")
		b.Run("keyless/"+tc.name, func(b *testing.B) {
			for b.Loop() {
				_ = tab.pick("")
			}
		})
		b.Run("keyless-parallel/"+tc.name, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = tab.pick("")
				}
			})
		})
		b.Run("keyed/"+tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				_ = tab.pick(keys[i&1023])
				i++
			}
		})
	}
	// The whole router around a backend that answers at once: lookup, pick,
	// request copy, stats and metrics (what a server records).
	fb := fakeFor(2)
	r := New(fb, Options{Metrics: telemetry.NewMetrics()})
	defer r.Close()
	r.Set("default", "svc", Config{Targets: targetsOf([]int{90, 10})})
	req := request("svc")
	b.Run("infer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Infer(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("infer-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Infer(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkRolloutWindow is what a rollout adds to the request path: the
// same infer as BenchmarkRoute's, with a measurement window open (two
// counters and a histogram bucket per request), and with the rollout's
// shadow mirroring the stable target's answers to the canary; and what an
// analysis tick costs to read the window (a snapshot of each histogram).
func BenchmarkRolloutWindow(b *testing.B) {
	fb := fakeFor(2)
	r := New(fb, Options{Metrics: telemetry.NewMetrics()})
	defer r.Close()
	cfg := Config{Targets: targetsOf([]int{90, 10})}
	req := request("svc")
	infer := func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Infer(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	r.Set("default", "svc", cfg)
	b.Run("infer-parallel/closed", infer)
	r.OpenWindow("default", "svc", time.Time{})
	b.Run("infer-parallel/open", infer)
	shadowed := cfg
	shadowed.Shadow = &Shadow{Model: "m1", Ref: "2", Percent: 100, From: "m0@1"}
	r.Set("default", "svc", shadowed)
	b.Run("infer-parallel/open+shadow", infer)
	r.shadows.Wait()
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			if _, ok := r.ReadWindow("default", "svc"); !ok {
				b.Fatal("no window")
			}
		}
	})
}
