package analysis

import (
	"fmt"
	"math"
)

// Wilson returns the Wilson score interval for k successes in n trials at
// confidence c (n == 0: [0, 1], nothing is known). Unlike the Wald interval
// p̂ ± z√(p̂(1−p̂)/n) it does not collapse to a point at k = 0 or k = n, which
// is exactly where a canary's error rate lives: 0 errors in 20 requests
// gives [0, 0.161] at 95%, not [0, 0].
func Wilson(k, n int64, confidence float64) (lo, hi float64, err error) {
	if err := checkCounts(k, n); err != nil {
		return 0, 0, fmt.Errorf("analysis: Wilson: %w", err)
	}
	z, err := zOf(confidence)
	if err != nil {
		return 0, 0, fmt.Errorf("analysis: Wilson: %w", err)
	}
	lo, hi = wilson(k, n, z)
	return lo, hi, nil
}

// wilson is the interval for valid arguments. The upper bound is the
// textbook (2k + z² + z√(z² + 4k(n−k)/n)) / 2(n + z²); the lower bound comes
// from lo·hi = k²/(n(n + z²)) rather than from the difference with the minus
// sign, so neither bound subtracts and lo is exactly 0 at k = 0.
func wilson(k, n int64, z float64) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	kf, nf, z2 := float64(k), float64(n), z*z
	s := math.Sqrt(z2 + 4*kf*(nf-kf)/nf)
	up := 2*kf + z2 + z*s
	hi = up / (2 * (nf + z2))
	lo = 2 * kf * kf / (nf * up)
	// Keep lo ≤ k/n ≤ hi and [0, 1] against the last rounding (k = n would
	// otherwise give hi = 1−ulp).
	p := kf / nf
	return math.Max(0, math.Min(lo, p)), math.Min(1, math.Max(hi, p))
}

func checkCounts(k, n int64) error {
	switch {
	case n < 0:
		return fmt.Errorf("trials n = %d is negative: %w", n, ErrInvalid)
	case k < 0:
		return fmt.Errorf("count k = %d is negative: %w", k, ErrInvalid)
	case k > n:
		return fmt.Errorf("count k = %d exceeds the %d trials: %w", k, n, ErrInvalid)
	}
	return nil
}

// RateVerdict judges a rate that must stay below max (errors out of
// requests, mismatches out of shadowed answers): k events in n trials.
//
//   - n < minSamples: Wait, whatever the interval says;
//   - the Wilson upper bound < max: Pass (the rate is below max at confidence);
//   - the Wilson lower bound > max: Fail (the rate is above max at confidence);
//   - otherwise Wait.
//
// The interval is returned in every case, for the status a human reads. The
// minSamples gate is not a formality: the interval is honest only about
// sampling noise, not about a canary that has not yet seen the traffic mix
// (1 error in 3 requests has lower bound 0.061 at 95%, above a 1% budget; it
// is the gate that keeps such a step from failing on its first requests).
func RateVerdict(k, n int64, max, confidence float64, minSamples int64) (Verdict, Interval, error) {
	if err := checkCounts(k, n); err != nil {
		return Wait, Interval{}, fmt.Errorf("analysis: RateVerdict: %w", err)
	}
	if !(max >= 0 && max <= 1) {
		return Wait, Interval{}, fmt.Errorf("analysis: RateVerdict: max %v is outside [0, 1]: %w", max, ErrInvalid)
	}
	if err := checkMinSamples(minSamples); err != nil {
		return Wait, Interval{}, fmt.Errorf("analysis: RateVerdict: %w", err)
	}
	z, err := zOf(confidence)
	if err != nil {
		return Wait, Interval{}, fmt.Errorf("analysis: RateVerdict: %w", err)
	}
	lo, hi := wilson(k, n, z)
	iv := Interval{Lo: lo, Hi: hi, N: n}
	if n > 0 {
		iv.Estimate = float64(k) / float64(n)
	}
	switch {
	case n < minSamples:
		return Wait, iv, nil
	case hi < max:
		return Pass, iv, nil
	case lo > max:
		return Fail, iv, nil
	}
	return Wait, iv, nil
}
