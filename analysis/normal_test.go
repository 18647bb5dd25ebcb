package analysis

import (
	"errors"
	"math"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Two-sided normal quantiles as tabulated (e.g. NIST/SEMATECH e-Handbook
// 1.3.6.7.1; Abramowitz & Stegun 26.2), to the 1e-9 the brief asks.
func TestZPublished(t *testing.T) {
	for _, tc := range []struct{ c, z float64 }{
		{0.50, 0.674489750},
		{0.80, 1.281551566},
		{0.90, 1.644853627},
		{0.95, 1.959963985},
		{0.98, 2.326347874},
		{0.99, 2.575829304},
		{0.999, 3.290526731},
		{0.9999, 3.890591886},
	} {
		z, err := Z(tc.c)
		if err != nil {
			t.Fatalf("Z(%v): %v", tc.c, err)
		}
		if math.Abs(z-tc.z) > 1e-9 {
			t.Errorf("Z(%v) = %.10f, want %.9f", tc.c, z, tc.z)
		}
	}
}

// AS 241 against the standard library, over all three branches of the
// algorithm: the centre (|p−½| ≤ 0.425), the near tails (down to p ≈ 1.4e-11)
// and the far tails. The check is a round trip through the normal CDF,
// Φ(x) = erfc(−x/√2)/2, which math.Erfc computes to full relative precision
// even deep in the tail (math.Erfcinv does not: it works on 1−2p). A
// transcription slip in any coefficient shows here far above 1e-14.
func TestNormalQuantileBranches(t *testing.T) {
	ps := []float64{0.5 + 1e-12, 0.3, 0.075, 0.0751, 0.925, 0.01, 1e-4, 1e-8, 1.3e-11, 1.5e-11, 1e-15, 1e-50, 1e-300}
	for i := 1; i < 1000; i++ {
		ps = append(ps, float64(i)/1000)
	}
	for e := -300.0; e < -1; e += 0.37 {
		ps = append(ps, math.Pow(10, e))
	}
	for _, p := range ps {
		x := normalQuantile(p)
		// Judge the smaller tail, where the CDF is computed without
		// cancellation; dΦ/Φ ≈ |x|·dx there, so allow for it.
		tail, back := p, math.Erfc(-x/math.Sqrt2)/2
		if p > 0.5 {
			tail, back = 1-p, math.Erfc(x/math.Sqrt2)/2
		}
		if tol := 2e-15 * math.Max(1, x*x); math.Abs(back-tail) > tol*tail {
			t.Errorf("normalQuantile(%g) = %.17g, whose tail area is %.17g (relative error %.2g)", p, x, back, math.Abs(back-tail)/tail)
		}
	}
	if got := normalQuantile(0.5); got != 0 {
		t.Errorf("normalQuantile(0.5) = %v, want 0", got)
	}
	// The symmetry Φ⁻¹(1−p) = −Φ⁻¹(p) holds bit for bit where 1−p is exact.
	for _, p := range []float64{0.25, 0.125, 0.0625, 1.0 / 1024} {
		if a, b := normalQuantile(1-p), -normalQuantile(p); a != b {
			t.Errorf("normalQuantile(1−%g) = %v, −normalQuantile(%g) = %v", p, a, p, b)
		}
	}
}

func TestZInvalid(t *testing.T) {
	for _, c := range []float64{0, 1, -0.5, 1.5, math.NaN(), math.Inf(1)} {
		if _, err := Z(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("Z(%v) error = %v, want ErrInvalid", c, err)
		}
	}
}
