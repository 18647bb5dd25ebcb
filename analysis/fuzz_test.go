package analysis

import (
	"math"
	"testing"
)

// FuzzWilson: for every valid input the interval is a sub-interval of [0, 1]
// holding the estimate k/n, with no NaN; for every invalid one, an error.
func FuzzWilson(f *testing.F) {
	for _, s := range []struct {
		k, n int64
		c    float64
	}{{0, 20, 0.95}, {1, 3, 0.95}, {81, 263, 0.99}, {0, 0, 0.5}, {7, 7, 0.999999}, {1, 1 << 62, 0.95}, {1 << 61, 1 << 62, 1e-9}, {3, 2, 0.95}, {0, 1, 1}} {
		f.Add(s.k, s.n, s.c)
	}
	f.Fuzz(func(t *testing.T, k, n int64, c float64) {
		lo, hi, err := Wilson(k, n, c)
		valid := n >= 0 && k >= 0 && k <= n && c > 0 && c < 1
		if !valid {
			if err == nil {
				t.Fatalf("Wilson(%d, %d, %v) = [%v, %v], want an error", k, n, c, lo, hi)
			}
			return
		}
		if err != nil {
			t.Fatalf("Wilson(%d, %d, %v): %v", k, n, c, err)
		}
		if math.IsNaN(lo) || math.IsNaN(hi) {
			t.Fatalf("Wilson(%d, %d, %v) = [%v, %v]: NaN", k, n, c, lo, hi)
		}
		est := 0.0
		if n > 0 {
			est = float64(k) / float64(n)
		}
		if !(0 <= lo && lo <= est && est <= hi && hi <= 1) {
			t.Fatalf("Wilson(%d, %d, %v) = [%v, %v], want 0 ≤ lo ≤ %v ≤ hi ≤ 1", k, n, c, lo, hi, est)
		}
		if n > 0 && k == 0 && lo != 0 || k == n && hi != 1 {
			t.Fatalf("Wilson(%d, %d, %v) = [%v, %v]: a bound at the edge must be exact", k, n, c, lo, hi)
		}
	})
}

// FuzzQuantileRanks: ranks stay in [0, n+1], ordered, ok exactly when both
// bounds exist, and bracket the sample quantile's rank ⌈np⌉.
func FuzzQuantileRanks(f *testing.F) {
	for _, s := range []struct {
		n    int64
		p, c float64
	}{{20, 0.5, 0.95}, {1000, 0.99, 0.95}, {367, 0.99, 0.95}, {1, 1e-9, 0.999}, {5, 0.5, 0.95}, {1 << 20, 0.999, 0.5}} {
		f.Add(s.n, s.p, s.c)
	}
	f.Fuzz(func(t *testing.T, n int64, p, c float64) {
		n %= 1 << 22 // keep the walk (O(√n)) fast
		l, u, ok := QuantileRanks(n, p, c)
		if n <= 0 {
			if ok || l != 0 || u != 1 {
				t.Fatalf("QuantileRanks(%d) = %d, %d, %t; want 0, 1, false", n, l, u, ok)
			}
			return
		}
		if !(p > 0 && p < 1 && c > 0 && c < 1) {
			if ok || l != 0 || u != n+1 {
				t.Fatalf("QuantileRanks(%d, %v, %v) = %d, %d, %t; want no bounds", n, p, c, l, u, ok)
			}
			return
		}
		if l < 0 || l >= u || u > n+1 || ok != (l >= 1 && u <= n) {
			t.Fatalf("QuantileRanks(%d, %v, %v) = %d, %d, %t", n, p, c, l, u, ok)
		}
		if r := int64(math.Ceil(float64(n) * p)); l > r || u < r {
			t.Fatalf("QuantileRanks(%d, %v, %v) = %d, %d: misses rank %d", n, p, c, l, u, r)
		}
	})
}
