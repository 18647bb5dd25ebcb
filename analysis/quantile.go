package analysis

import (
	"fmt"
	"math"
)

// QuantileInterval is the distribution-free confidence interval for the
// p-quantile of the values in s: the order statistics QuantileRanks names,
// read conservatively from the buckets (Lo rounded down, Hi rounded up, so
// quantisation only widens it). A bound the sample is too small for is −Inf
// or +Inf and ok is false; ok is true only when both bounds exist. Estimate
// is the sample quantile X_(⌈np⌉), rounded up to its bucket (NaN when s is
// empty). It always lies in [Lo, Hi]: l ≤ ⌈np⌉ ≤ u whenever c > 0.
func QuantileInterval(s *Snapshot, p, confidence float64) (Interval, bool) {
	n := s.Count()
	l, u, ok := QuantileRanks(n, p, confidence)
	iv := Interval{Lo: s.LowerValueAtRank(l), Hi: s.ValueAtRank(u), N: n, Estimate: math.NaN()}
	if n > 0 && checkQuantile(p) == nil {
		r := int64(math.Ceil(float64(n) * p))
		iv.Estimate = s.ValueAtRank(min(max(r, 1), n))
	}
	return iv, ok
}

// RatioVerdict judges a canary's p-quantile (p = 0.99 for p99 latency)
// against maxRatio times the stable version's, interval against interval:
//
//   - either version has fewer than minSamples values: Wait;
//   - canary.Hi ≤ maxRatio × stable.Lo: Pass — even the canary's worst
//     plausible quantile is within the ratio of the stable's best plausible;
//   - canary.Lo > maxRatio × stable.Hi: Fail — even the canary's best
//     plausible quantile is beyond the ratio of the stable's worst;
//   - otherwise Wait.
//
// A wrong Pass needs the canary's quantile above canary.Hi or the stable's
// below stable.Lo, each of probability at most α/2 (see QuantileRanks), so it
// happens with probability at most α = 1−confidence; a wrong Fail likewise.
// Comparing with the stable's point estimate instead would let the stable
// version's own noise decide the verdict. Bounds the samples cannot give are
// infinite and never pass or fail anything, which makes one-sided evidence
// usable: a canary too small for an upper bound on its p99 can still fail on
// its lower bound, and never passes.
//
// Both intervals are returned in every case (canary first), for the status a
// human reads.
func RatioVerdict(canary, stable *Snapshot, p, maxRatio, confidence float64, minSamples int64) (Verdict, Interval, Interval, error) {
	switch {
	case canary == nil || stable == nil:
		return Wait, Interval{}, Interval{}, fmt.Errorf("analysis: RatioVerdict: nil snapshot (canary %t, stable %t): %w", canary == nil, stable == nil, ErrInvalid)
	case !(maxRatio > 0) || math.IsInf(maxRatio, 1):
		return Wait, Interval{}, Interval{}, fmt.Errorf("analysis: RatioVerdict: maxRatio %v is not a positive finite number (e.g. 1.2): %w", maxRatio, ErrInvalid)
	}
	for _, err := range []error{checkQuantile(p), checkConfidence(confidence), checkMinSamples(minSamples)} {
		if err != nil {
			return Wait, Interval{}, Interval{}, fmt.Errorf("analysis: RatioVerdict: %w", err)
		}
	}
	c, _ := QuantileInterval(canary, p, confidence)
	s, _ := QuantileInterval(stable, p, confidence)
	switch {
	case c.N < minSamples || s.N < minSamples:
		return Wait, c, s, nil
	case c.Hi <= maxRatio*s.Lo:
		return Pass, c, s, nil
	case c.Lo > maxRatio*s.Hi:
		return Fail, c, s, nil
	}
	return Wait, c, s, nil
}
