// Package analysis is the statistics behind automatic canary analysis: it
// turns what a step of a rollout observed (errors out of requests, latencies
// in a Histogram) into a Verdict — pass, fail or wait — read from a
// confidence interval, never from a point estimate. A canary that served
// three requests has told us almost nothing, and the verdict says so.
//
// Rates (errors, mismatches) use the Wilson score interval; latency
// quantiles use the distribution-free interval between two order statistics,
// whose ranks come from exact binomial sums. Each verdict is taken at a
// confidence c and reads one side of each interval it uses, so a Pass or a
// Fail that the data do not support comes with probability at most about
// α = 1−c per evaluation: α/2 for a rate (one side of one two-sided Wilson
// interval, whose coverage is close to nominal but not guaranteed — Brown,
// Cai & DasGupta 2001), at most α for a quantile ratio (one side of each of
// two intervals, each exact or conservative). Evaluations repeated step after
// step are separate looks and each spends that budget again; a caller who
// wants a bound over a whole rollout of m looks asks for 1−(1−c)/m
// (Bonferroni). minSamples gates every verdict: below it the answer is Wait,
// whatever the interval says.
//
// The package is a leaf: standard library only, no I/O, no clock, no state
// beyond the Histogram's counters.
package analysis

import (
	"errors"
	"fmt"
)

// ErrInvalid matches (errors.Is) every error the interval and verdict
// functions return: each is a caller's bad argument (a confidence outside
// (0, 1), k > n, …), never a property of the data. (Snapshot.Merge has its
// own, ErrLayout.)
var ErrInvalid = errors.New("invalid argument")

// Verdict is the outcome of one analysis. The zero Verdict is Wait, so a
// verdict that was never computed can neither promote nor roll back.
type Verdict int

const (
	// Wait: the data cannot tell yet (too few samples, or an interval that
	// straddles the threshold).
	Wait Verdict = iota
	// Pass: at the requested confidence the metric is within its bound.
	Pass
	// Fail: at the requested confidence the metric is outside its bound.
	Fail
)

func (v Verdict) String() string {
	switch v {
	case Wait:
		return "wait"
	case Pass:
		return "pass"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Interval is a confidence interval [Lo, Hi] for a rate or a quantile, the
// number of samples N it was computed from, and the point estimate (reported
// for humans; no verdict reads it). A quantile bound that N samples cannot
// give at the requested confidence is −Inf (Lo) or +Inf (Hi), so comparisons
// with it never pass or fail on it. (encoding/json refuses infinities: a
// status that shows an Interval maps them, to null say.)
type Interval struct {
	Lo, Hi   float64
	N        int64
	Estimate float64
}

func (i Interval) String() string {
	return fmt.Sprintf("%.4g [%.4g, %.4g] n=%d", i.Estimate, i.Lo, i.Hi, i.N)
}

func checkConfidence(c float64) error {
	// !(c > 0 && c < 1) also refuses NaN.
	if !(c > 0 && c < 1) {
		return fmt.Errorf("confidence %v is outside (0, 1) (e.g. 0.95): %w", c, ErrInvalid)
	}
	return nil
}

func checkQuantile(p float64) error {
	if !(p > 0 && p < 1) {
		return fmt.Errorf("quantile %v is outside (0, 1) (e.g. 0.99 for p99): %w", p, ErrInvalid)
	}
	return nil
}

func checkMinSamples(m int64) error {
	if m < 0 {
		return fmt.Errorf("minSamples %d is negative: %w", m, ErrInvalid)
	}
	return nil
}
