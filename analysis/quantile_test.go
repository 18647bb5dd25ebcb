package analysis

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// evenly returns n samples of Exp(mean) at the evenly spaced probabilities
// (i−½)/n: a deterministic sample whose order statistics are known, in order.
func evenly(n int, mean float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = -mean * math.Log1p(-(float64(i)+0.5)/float64(n))
	}
	return xs
}

func snapshotOf(xs []float64) *Snapshot {
	h := NewHistogram(1e-6, 1e3)
	for _, x := range xs {
		h.Record(x)
	}
	return h.Snapshot()
}

func TestQuantileInterval(t *testing.T) {
	xs := evenly(1000, 0.1)
	iv, ok := QuantileInterval(snapshotOf(xs), 0.99, 0.95)
	// Ranks 983 and 997 (TestQuantileRanksPublished), widened to buckets.
	if !ok || iv.N != 1000 {
		t.Fatalf("QuantileInterval = %v, %t; want n=1000, ok", iv, ok)
	}
	if lo := xs[983-1]; iv.Lo > lo || iv.Lo < lo/(1+maxRelErr) {
		t.Errorf("Lo = %v, want X_(983) = %v rounded down to its bucket", iv.Lo, lo)
	}
	if hi := xs[997-1]; iv.Hi < hi || iv.Hi > hi*(1+maxRelErr) {
		t.Errorf("Hi = %v, want X_(997) = %v rounded up to its bucket", iv.Hi, hi)
	}
	if est := xs[990-1]; iv.Estimate < est || iv.Estimate > est*(1+maxRelErr) {
		t.Errorf("Estimate = %v, want X_(990) = %v rounded up", iv.Estimate, est)
	}

	// 100 samples bound p99 from below only.
	iv, ok = QuantileInterval(snapshotOf(evenly(100, 0.1)), 0.99, 0.95)
	if ok || !math.IsInf(iv.Hi, 1) || math.IsInf(iv.Lo, 0) || !(iv.Lo <= iv.Estimate) {
		t.Errorf("100 samples: %v, %t; want a finite Lo, Hi = +Inf, not ok", iv, ok)
	}
	// Nothing at all.
	iv, ok = QuantileInterval(NewHistogram(1, 2).Snapshot(), 0.99, 0.95)
	if ok || iv.N != 0 || !math.IsInf(iv.Lo, -1) || !math.IsInf(iv.Hi, 1) || !math.IsNaN(iv.Estimate) {
		t.Errorf("empty: %v, %t; want (−Inf, +Inf), no estimate", iv, ok)
	}
}

func TestRatioVerdict(t *testing.T) {
	const mean = 0.1 // 100 ms
	stable := snapshotOf(evenly(10_000, mean))
	for _, tc := range []struct {
		name       string
		canary     *Snapshot
		stable     *Snapshot
		minSamples int64
		want       Verdict
	}{
		// p99 of 10,000 samples is known to within about ±4.5%, so the
		// same latency passes a 1.2 ratio: 0.482 ≤ 1.2 × 0.442.
		{"same latency", snapshotOf(evenly(10_000, mean)), stable, 1000, Pass},
		// Twice as slow fails: 0.884 > 1.2 × 0.482.
		{"twice as slow", snapshotOf(evenly(10_000, 2*mean)), stable, 1000, Fail},
		// 15% slower is within the noise on either side of 1.2: wait.
		{"15% slower", snapshotOf(evenly(10_000, 1.15*mean)), stable, 1000, Wait},
		// Faster passes.
		{"faster", snapshotOf(evenly(10_000, 0.5*mean)), stable, 1000, Pass},
		// 100 canary samples have no upper bound on p99 (n < 368), so
		// they cannot pass…
		{"few samples, same latency", snapshotOf(evenly(100, mean)), stable, 0, Wait},
		// …but a lower bound: three times slower fails on it alone.
		{"few samples, three times as slow", snapshotOf(evenly(100, 3*mean)), stable, 0, Fail},
		// Unless minSamples says 100 samples are too few to judge at all.
		{"few samples, gated", snapshotOf(evenly(100, 3*mean)), stable, 200, Wait},
		// The gate holds the stable version to it too.
		{"stable gated", snapshotOf(evenly(10_000, 2*mean)), snapshotOf(evenly(100, mean)), 200, Wait},
		// A stable version with no upper bound on its own p99 cannot make
		// the canary fail, however slow.
		{"stable too small to fail against", snapshotOf(evenly(10_000, 2*mean)), snapshotOf(evenly(100, mean)), 0, Wait},
		{"nothing yet", NewHistogram(1e-6, 1e3).Snapshot(), NewHistogram(1e-6, 1e3).Snapshot(), 0, Wait},
		// Above the histogram's range the upper bound is +Inf: no pass.
		{"beyond the range", snapshotOf(slices.Repeat([]float64{5000}, 1000)), snapshotOf(slices.Repeat([]float64{5000}, 1000)), 0, Wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, c, s, err := RatioVerdict(tc.canary, tc.stable, 0.99, 1.2, 0.95, tc.minSamples)
			if err != nil {
				t.Fatal(err)
			}
			if v != tc.want {
				t.Errorf("verdict %v (canary %v, stable %v), want %v", v, c, s, tc.want)
			}
			if c.N != tc.canary.Count() || s.N != tc.stable.Count() {
				t.Errorf("intervals from %d and %d samples, want %d and %d", c.N, s.N, tc.canary.Count(), tc.stable.Count())
			}
		})
	}
}

func TestRatioVerdictInvalid(t *testing.T) {
	s := snapshotOf(evenly(10, 1))
	for _, tc := range []struct {
		name           string
		canary, stable *Snapshot
		p, ratio, c    float64
		minSamples     int64
	}{
		{"nil canary", nil, s, 0.99, 1.2, 0.95, 0},
		{"nil stable", s, nil, 0.99, 1.2, 0.95, 0},
		{"p 1", s, s, 1, 1.2, 0.95, 0},
		{"p 99", s, s, 99, 1.2, 0.95, 0},
		{"ratio 0", s, s, 0.99, 0, 0.95, 0},
		{"ratio negative", s, s, 0.99, -1, 0.95, 0},
		{"ratio infinite", s, s, 0.99, math.Inf(1), 0.95, 0},
		{"ratio NaN", s, s, 0.99, math.NaN(), 0.95, 0},
		{"confidence 1", s, s, 0.99, 1.2, 1, 0},
		{"minSamples negative", s, s, 0.99, 1.2, 0.95, -5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _, _, err := RatioVerdict(tc.canary, tc.stable, tc.p, tc.ratio, tc.c, tc.minSamples)
			if !errors.Is(err, ErrInvalid) || v != Wait {
				t.Errorf("RatioVerdict = %v, %v; want wait, ErrInvalid", v, err)
			}
		})
	}
}

// The promise of the interval, by simulation: over 2,000 seeded trials of
// 1,000 samples, [X_(983), X_(997)] covers the true p99 about as often as the
// exact binomial sum says it must (0.9761 ≥ 0.95), for a light and a heavy
// tail alike — the interval does not know the distribution. Read from the
// histogram it covers whenever the exact order statistics do (quantisation
// only widens). 100 samples give a lower bound alone, which must hold with
// probability P(B ≥ 97) (≥ 0.975).
func TestQuantileIntervalCoverage(t *testing.T) {
	const trials, p, c = 2000, 0.99, 0.95
	dists := []struct {
		name string
		draw func(*rand.Rand) float64
		p99  float64
	}{
		{"exponential", func(r *rand.Rand) float64 { return r.ExpFloat64() / 10 }, math.Log(100) / 10},
		{"lognormal", func(r *rand.Rand) float64 { return 0.05 * math.Exp(1.5*r.NormFloat64()) }, 0.05 * math.Exp(1.5*normalQuantile(p))},
	}
	for _, d := range dists {
		for _, n := range []int64{1000, 100} {
			r := rand.New(rand.NewPCG(42, uint64(n)))
			l, u, ok := QuantileRanks(n, p, c)
			cdf := binomialCDFBig(n, p)
			// P(X_(l) ≤ ξ ≤ X_(u)) = P(l ≤ B ≤ u−1), X_(n+1) = +∞.
			want := 1 - mustFloat(cdfAt(cdf, l-1))
			if u <= n {
				want -= 1 - mustFloat(cdf[u-1])
			}
			if (n == 1000) != ok {
				t.Fatalf("QuantileRanks(%d) ok = %t", n, ok)
			}
			var exact, hist int
			// A narrow range keeps the 8,000 snapshots cheap; the low end
			// clamps, which the upper quantiles never see.
			h := NewHistogram(1e-3, 1e2)
			for range trials {
				// X_(l) ≤ ξ exactly when at least l samples are ≤ ξ, and
				// ξ ≤ X_(u) when fewer than u are below it: no sort needed.
				var atOrBelow, below int64
				for range n {
					x := d.draw(r)
					h.Record(x)
					if x <= d.p99 {
						atOrBelow++
					}
					if x < d.p99 {
						below++
					}
				}
				in := atOrBelow >= l && below < u
				iv, _ := QuantileInterval(h.SnapshotAndReset(), p, c)
				inHist := iv.Lo <= d.p99 && d.p99 <= iv.Hi
				if in {
					exact++
				}
				if inHist {
					hist++
				}
				if in && !inHist {
					t.Fatalf("%s n=%d: the histogram's %v misses a p99 the order statistics cover", d.name, n, iv)
				}
			}
			got := float64(exact) / trials
			slack := 4 * math.Sqrt(want*(1-want)/trials) // four standard errors
			t.Logf("%s n=%d ranks %d, %d: covered %.4f (histogram %.4f), exact sum %.4f", d.name, n, l, u, got, float64(hist)/trials, want)
			if math.Abs(got-want) > slack || got < 0.93 {
				t.Errorf("%s n=%d: covered in %.4f of trials, the binomial says %.4f ± %.4f", d.name, n, got, want, slack)
			}
			if hg := float64(hist) / trials; hg > got+0.02 {
				t.Errorf("%s n=%d: the histogram covers in %.4f, the samples in %.4f: quantisation widens too much", d.name, n, hg, got)
			}
		}
	}
}

func mustFloat(f *big.Float) float64 {
	x, _ := f.Float64()
	return x
}
