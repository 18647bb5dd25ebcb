package analysis

import (
	"errors"
	"math"
	"math/big"
	"testing"
)

// Wilson score intervals at 95% as published by Newcombe (1998), "Two-sided
// confidence intervals for the single proportion", Statistics in Medicine
// 17, Table II, method 3 — 81/263, 15/148, 0/20, 1/29 — and a few more worked
// from the closed form lo, hi = (2k + z² ∓ z√(z² + 4k(n−k)/n)) / 2(n + z²),
// z = 1.959964, z² = 3.841459:
//
//	0/20:   hi = z²/(20 + z²) = 3.841459/23.841459 = 0.1611
//	1/3:    √(3.841459 + 8/3) = 2.551104; (2 + 3.841459 ∓ 5.000072)/13.682918
//	        = 0.0615, 0.7923
//	0/1000: hi = 3.841459/1003.841459 = 0.0038
//	30/1000: √(3.841459 + 116.4) = 10.965466; (63.841459 ∓ 21.491923)/2007.682918
//	        = 0.0211, 0.0425
//	3/3:    lo = 3/(3 + z²) = 0.4385 (symmetric to 0/3), hi = 1
func TestWilsonPublished(t *testing.T) {
	for _, tc := range []struct {
		k, n   int64
		c      float64
		lo, hi float64
	}{
		{81, 263, 0.95, 0.2553, 0.3662},
		{15, 148, 0.95, 0.0624, 0.1605},
		{0, 20, 0.95, 0, 0.1611},
		{1, 29, 0.95, 0.0061, 0.1718},
		{1, 3, 0.95, 0.0615, 0.7923},
		{0, 1000, 0.95, 0, 0.0038},
		{30, 1000, 0.95, 0.0211, 0.0425},
		{5, 10, 0.95, 0.2366, 0.7634},
		{3, 3, 0.95, 0.4385, 1},
		{10, 10, 0.95, 0.7225, 1},
		{0, 20, 0.99, 0, 0.2491},
		{1, 3, 0.99, 0.0404, 0.8558},
		{0, 0, 0.95, 0, 1},
	} {
		lo, hi, err := Wilson(tc.k, tc.n, tc.c)
		if err != nil {
			t.Fatalf("Wilson(%d, %d, %v): %v", tc.k, tc.n, tc.c, err)
		}
		if math.Abs(lo-tc.lo) > 5e-5 || math.Abs(hi-tc.hi) > 5e-5 {
			t.Errorf("Wilson(%d, %d, %v) = [%.4f, %.4f], want [%.4f, %.4f]", tc.k, tc.n, tc.c, lo, hi, tc.lo, tc.hi)
		}
	}
}

// Both bounds against the textbook form evaluated in 256-bit arithmetic, from
// one event in 2⁶² trials to a near-certain rate.
func TestWilsonPrecision(t *testing.T) {
	z, _ := Z(0.95)
	for _, tc := range []struct{ k, n int64 }{
		{1, 1_000_000_000}, // lo ≈ 1.765e-10: the Poisson score bound 0.1765/n
		{1, 1 << 62},
		{3, 10_000_000},
		{999_999, 1_000_000},
		{500, 1000},
	} {
		lo, hi, err := Wilson(tc.k, tc.n, 0.95)
		if err != nil {
			t.Fatal(err)
		}
		wlo, whi := wilsonBig(tc.k, tc.n, z)
		if math.Abs(lo-wlo) > 1e-14*wlo || math.Abs(hi-whi) > 1e-14*whi {
			t.Errorf("Wilson(%d, %d) = [%.17g, %.17g], want [%.17g, %.17g]", tc.k, tc.n, lo, hi, wlo, whi)
		}
	}
}

func wilsonBig(k, n int64, z float64) (lo, hi float64) {
	const prec = 256
	f := func(x float64) *big.Float { return new(big.Float).SetPrec(prec).SetFloat64(x) }
	i := func(x int64) *big.Float { return new(big.Float).SetPrec(prec).SetInt64(x) }
	kb, nb, zb := i(k), i(n), f(z)
	z2 := new(big.Float).Mul(zb, zb)
	// s = √(z² + 4k(n−k)/n)
	s := new(big.Float).Mul(i(4), kb)
	s.Mul(s, i(n-k)).Quo(s, nb).Add(s, z2).Sqrt(s)
	s.Mul(s, zb)
	base := new(big.Float).Mul(i(2), kb)
	base.Add(base, z2)
	den := new(big.Float).Add(nb, z2)
	den.Mul(den, i(2))
	l := new(big.Float).Sub(base, s)
	h := new(big.Float).Add(base, s)
	lo, _ = l.Quo(l, den).Float64()
	hi, _ = h.Quo(h, den).Float64()
	return lo, hi
}

// The verdict examples of the issue, at max = 1% and 95%.
func TestRateVerdict(t *testing.T) {
	for _, tc := range []struct {
		name       string
		k, n       int64
		minSamples int64
		want       Verdict
	}{
		// The interval alone says fail here: [0.0615, 0.7923] lies above
		// 1%. One error in three requests is nonetheless not a failure of
		// the canary but of too early a look, and minSamples is what says
		// so.
		{"1 of 3, gated", 1, 3, 200, Wait},
		{"1 of 3, ungated", 1, 3, 0, Fail},
		// 0 of 20 is no pass: the upper bound 0.1611 is far above 1%.
		{"0 of 20", 0, 20, 0, Wait},
		{"0 of 20, gated", 0, 20, 200, Wait},
		// 0 of 1,000: upper bound 0.0038 < 1%.
		{"0 of 1000", 0, 1000, 200, Pass},
		// 30 of 1,000: lower bound 0.0211 > 1%.
		{"30 of 1000", 30, 1000, 200, Fail},
		// 10 of 1,000 is exactly the budget: [0.0054, 0.0183] straddles it.
		{"10 of 1000", 10, 1000, 200, Wait},
		// Nothing seen, nothing known.
		{"0 of 0", 0, 0, 0, Wait},
		// The gate applies to passes as much as to failures.
		{"0 of 1000, gate 2000", 0, 1000, 2000, Wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, iv, err := RateVerdict(tc.k, tc.n, 0.01, 0.95, tc.minSamples)
			if err != nil {
				t.Fatal(err)
			}
			if v != tc.want {
				t.Errorf("RateVerdict(%d, %d) = %v (interval %v), want %v", tc.k, tc.n, v, iv, tc.want)
			}
			lo, hi, _ := Wilson(tc.k, tc.n, 0.95)
			if iv.Lo != lo || iv.Hi != hi || iv.N != tc.n {
				t.Errorf("interval %v, want [%v, %v] n=%d", iv, lo, hi, tc.n)
			}
			if tc.n > 0 && iv.Estimate != float64(tc.k)/float64(tc.n) {
				t.Errorf("estimate %v, want %v", iv.Estimate, float64(tc.k)/float64(tc.n))
			}
		})
	}
}

func TestRateVerdictInvalid(t *testing.T) {
	for _, tc := range []struct {
		name       string
		k, n       int64
		max, c     float64
		minSamples int64
	}{
		{"negative n", 0, -1, 0.01, 0.95, 0},
		{"negative k", -1, 10, 0.01, 0.95, 0},
		{"k > n", 11, 10, 0.01, 0.95, 0},
		{"confidence 1", 0, 10, 0.01, 1, 0},
		{"confidence 0", 0, 10, 0.01, 0, 0},
		{"confidence NaN", 0, 10, 0.01, math.NaN(), 0},
		{"confidence in percent", 0, 10, 0.01, 95, 0},
		{"max above 1", 0, 10, 1.5, 0.95, 0},
		{"max negative", 0, 10, -0.01, 0.95, 0},
		{"max NaN", 0, 10, math.NaN(), 0.95, 0},
		{"negative minSamples", 0, 10, 0.01, 0.95, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _, err := RateVerdict(tc.k, tc.n, tc.max, tc.c, tc.minSamples)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error = %v, want ErrInvalid", err)
			}
			if v != Wait {
				t.Errorf("verdict %v alongside an error, want wait", v)
			}
		})
	}
	if _, _, err := Wilson(4, 3, 0.95); !errors.Is(err, ErrInvalid) {
		t.Errorf("Wilson(4, 3): %v, want ErrInvalid", err)
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Wait: "wait", Pass: "pass", Fail: "fail", Verdict(7): "Verdict(7)"} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(v), got, want)
		}
	}
	var zero Verdict
	if zero != Wait {
		t.Errorf("the zero Verdict is %v, want wait", zero)
	}
}
