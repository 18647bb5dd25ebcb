package analysis

import (
	"math"
	"math/big"
	"testing"
)

// Distribution-free confidence intervals for the median as tabulated (e.g.
// Conover, Practical Nonparametric Statistics, table A3; Hollander & Wolfe),
// and for p99, with the exact binomial sums worked here:
//
//	n = 20, median, 95%: P(B ≤ 5) = 0.0207 ≤ 0.025 < P(B ≤ 6) = 0.0577, so
//	  l = 6 and, by symmetry, u = 15 (coverage 0.9586).
//	n = 100, median, 95%: P(B ≤ 39) = 0.0176 ≤ 0.025 < P(B ≤ 40) = 0.0284:
//	  ranks 40 and 61 (coverage 0.9648).
//	n = 1000, p99, 95%: the samples above ξ_.99 are Binomial(1000, 0.01);
//	  P(≥ 18 above) = 0.0144 ≤ 0.025 < P(≥ 17 above) = 0.0255, so the lower
//	  rank is 1000 − 18 + 1 = 983; P(≤ 3 above) = 0.0101 ≤ 0.025 <
//	  P(≤ 4 above) = 0.0287, so u = 1000 − 3 = 997 (coverage 0.9761).
//	n = 368, p99, 95%: the largest sample is an upper bound once
//	  0.99ⁿ ≤ 0.025, first at n = 368 (0.99³⁶⁷ = 0.02502).
func TestQuantileRanksPublished(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		p, c float64
		l, u int64
		ok   bool
	}{
		{20, 0.5, 0.95, 6, 15, true},
		{100, 0.5, 0.95, 40, 61, true},
		{10, 0.5, 0.95, 2, 9, true},
		{6, 0.5, 0.95, 1, 6, true},
		{5, 0.5, 0.95, 0, 6, false}, // 2·0.5⁵ = 0.0625 > 0.05: neither bound
		{1000, 0.99, 0.95, 983, 997, true},
		{367, 0.99, 0.95, 359, 368, false}, // a lower bound only
		{368, 0.99, 0.95, 360, 368, true},
		{299, 0.99, 0.90, 293, 299, true}, // 0.99²⁹⁹ = 0.0495 ≤ 0.05
		{298, 0.99, 0.90, 292, 299, false},
		{1, 0.99, 0.95, 1, 2, false}, // 0.01 ≤ 0.025: X_(1) bounds p99 from below
		{0, 0.5, 0.95, 0, 1, false},
	} {
		l, u, ok := QuantileRanks(tc.n, tc.p, tc.c)
		if l != tc.l || u != tc.u || ok != tc.ok {
			t.Errorf("QuantileRanks(%d, %v, %v) = %d, %d, %t; want %d, %d, %t", tc.n, tc.p, tc.c, l, u, ok, tc.l, tc.u, tc.ok)
		}
	}
}

// The log-space walk against a straightforward oracle: every binomial term in
// 256-bit floating point from P(B = 0) = (1−p)ⁿ up, summed from the bottom,
// for n up to 10⁵ and for the float64 p itself (so both answer the same
// question). Ranks are a discrete answer, so they must agree exactly.
func TestQuantileRanksOracle(t *testing.T) {
	ns := []int64{1, 2, 3, 7, 19, 20, 50, 99, 100, 101, 298, 299, 367, 368, 1000, 4321}
	if !testing.Short() {
		ns = append(ns, 10_000, 100_000)
	}
	for _, n := range ns {
		for _, p := range []float64{0.5, 0.9, 0.95, 0.99, 0.999, 0.01} {
			if n == 100_000 && p != 0.99 && p != 0.5 {
				continue // the oracle is slow; these two cover the shapes
			}
			cdf := binomialCDFBig(n, p)
			for _, c := range []float64{0.5, 0.8, 0.9, 0.95, 0.99, 0.999} {
				wl, wu := oracleRanks(cdf, n, c)
				l, u, ok := QuantileRanks(n, p, c)
				if l != wl || u != wu || ok != (wl >= 1 && wu <= n) {
					t.Errorf("QuantileRanks(%d, %v, %v) = %d, %d, %t; the exact sums say %d, %d", n, p, c, l, u, ok, wl, wu)
				}
				// Whatever exists must deliver its coverage.
				if ok {
					cov := new(big.Float).Sub(cdf[u-1], cdfAt(cdf, l-1))
					if f, _ := cov.Float64(); f < c {
						t.Errorf("n=%d p=%v c=%v: ranks %d, %d cover with probability %v < %v", n, p, c, l, u, f, c)
					}
				}
			}
		}
	}
}

// binomialCDFBig returns P(B ≤ k) for k = 0..n, B ~ Binomial(n, p), in 256-bit
// floating point.
func binomialCDFBig(n int64, p float64) []*big.Float {
	const prec = 256
	nf := func() *big.Float { return new(big.Float).SetPrec(prec) }
	pb := nf().SetFloat64(p)
	qb := nf().Sub(nf().SetInt64(1), pb)
	// term = qⁿ by squaring.
	term := nf().SetInt64(1)
	for b, e := nf().Set(qb), n; e > 0; e >>= 1 {
		if e&1 == 1 {
			term.Mul(term, b)
		}
		b.Mul(b, b)
	}
	ratio := nf().Quo(pb, qb)
	cdf := make([]*big.Float, n+1)
	sum := nf()
	for k := int64(0); k <= n; k++ {
		sum.Add(sum, term)
		cdf[k] = nf().Set(sum)
		// P(k+1) = P(k) · (n−k)/(k+1) · p/q
		term.Mul(term, nf().SetInt64(n-k))
		term.Quo(term, nf().SetInt64(k+1))
		term.Mul(term, ratio)
	}
	return cdf
}

func cdfAt(cdf []*big.Float, k int64) *big.Float {
	if k < 0 {
		return new(big.Float)
	}
	return cdf[k]
}

// oracleRanks applies the definition literally: l−1 the largest k with
// P(B ≤ k) ≤ α/2, u the smallest with P(B ≥ u) = 1 − P(B ≤ u−1) ≤ α/2.
func oracleRanks(cdf []*big.Float, n int64, c float64) (l, u int64) {
	half := new(big.Float).SetPrec(256).SetFloat64((1 - c) / 2)
	for k := int64(0); k <= n && cdf[k].Cmp(half) <= 0; k++ {
		l = k + 1
	}
	one := new(big.Float).SetPrec(256).SetInt64(1)
	u = n + 1
	for v := n; v >= 1; v-- {
		if new(big.Float).Sub(one, cdf[v-1]).Cmp(half) > 0 {
			break
		}
		u = v
	}
	return l, u
}

// Beyond the oracle's reach: at n = 10⁷ the ranks for the median are
// symmetric (u = n+1−l exactly, since Binomial(n, ½) is), and the ranks for
// p99 sit where the normal approximation puts them, np ± z·√(np(1−p)), to
// within a rank or two (the skew of Binomial(10⁷, 0.01) moves them by less).
func TestQuantileRanksLarge(t *testing.T) {
	const n = 10_000_000
	l, u, ok := QuantileRanks(n, 0.5, 0.95)
	if !ok || u != n+1-l {
		t.Errorf("median of 1e7: ranks %d, %d (ok %t), want symmetric about (n+1)/2", l, u, ok)
	}
	z, _ := Z(0.95)
	for _, p := range []float64{0.5, 0.99} {
		l, u, ok := QuantileRanks(n, p, 0.95)
		sd := math.Sqrt(n * p * (1 - p))
		// The normal approximation to P(B < l) ≤ α/2 gives l ≈ np − z·sd + ½.
		wl, wu := n*p-z*sd+0.5, n*p+z*sd+0.5
		if !ok || math.Abs(float64(l)-wl) > 3 || math.Abs(float64(u)-wu) > 3 {
			t.Errorf("QuantileRanks(1e7, %v) = %d, %d (ok %t), normal approximation %.1f, %.1f", p, l, u, ok, wl, wu)
		}
	}
}

// Invariants over a spread of arguments: ranks are in range, ordered, and
// bracket the sample quantile ⌈np⌉, so a point estimate lies inside.
func TestQuantileRanksInvariants(t *testing.T) {
	for _, n := range []int64{1, 2, 5, 10, 33, 100, 1000, 12345, 1_000_000} {
		for _, p := range []float64{1e-6, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1 - 1e-9} {
			for _, c := range []float64{0.01, 0.5, 0.95, 0.999999} {
				l, u, ok := QuantileRanks(n, p, c)
				r := int64(math.Ceil(float64(n) * p))
				if l < 0 || l > n || u < 1 || u > n+1 || l >= u || ok != (l >= 1 && u <= n) {
					t.Errorf("QuantileRanks(%d, %v, %v) = %d, %d, %t: out of range", n, p, c, l, u, ok)
				}
				if l > r || u < r {
					t.Errorf("QuantileRanks(%d, %v, %v) = %d, %d: misses the sample quantile's rank %d", n, p, c, l, u, r)
				}
			}
		}
	}
	for _, tc := range []struct{ p, c float64 }{{0, 0.95}, {1, 0.95}, {math.NaN(), 0.95}, {0.5, 1}, {0.5, -1}} {
		if l, u, ok := QuantileRanks(100, tc.p, tc.c); ok || l != 0 || u != 101 {
			t.Errorf("QuantileRanks(100, %v, %v) = %d, %d, %t; want no bounds", tc.p, tc.c, l, u, ok)
		}
	}
}
