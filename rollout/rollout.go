// Package rollout decides a canary rollout step by step: given the plan (the
// canary weights of each step, how long a step lasts, what analysis it needs),
// the rollout's state and what was measured in the current step's window, Next
// says whether to wait, move to the next step, promote or roll back, and why,
// with every metric's verdict and confidence interval (package analysis).
//
// It is pure: no clock, no store, no router. The controller that runs
// rollouts reads the window from the router, calls Next, applies the weights
// and stores the state it returns, so a restart resumes from the recorded
// step and window and the decisions are tested exhaustively on fixed inputs.
package rollout

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/analysis"
)

// Metric names.
const (
	ErrorRate          = "errorRate"
	LatencyP99         = "latencyP99"
	ShadowMismatchRate = "shadowMismatchRate"
)

// Metric is one analysis gate: a rate that must stay below Max, or the p99
// latency that must stay below MaxRatioToStable × the stable version's.
type Metric struct {
	Name             string
	Max              float64
	MaxRatioToStable float64
}

// Plan is a validated rollout spec.
type Plan struct {
	// Steps are the canary's weights, each in 1..99, increasing.
	Steps []int
	// Interval is the least time a step lasts.
	Interval time.Duration
	// MinSamples is the least number of requests per version per step
	// before any metric can pass or fail.
	MinSamples int64
	Confidence float64
	Metrics    []Metric
	// MaxFailures is how many failed analyses a rollout survives; one more
	// rolls it back.
	MaxFailures int
	// ProgressDeadline bounds the whole rollout: past it, a rollout that
	// still waits (too little traffic) fails.
	ProgressDeadline time.Duration
}

// ErrInvalid marks a plan that cannot run.
var ErrInvalid = errors.New("invalid rollout")

// Problem is one thing wrong with a plan: the field (as a rollout spec
// names it, like "analysis.metrics[1].max") and what is wrong.
type Problem struct{ Field, Message string }

// Validate checks p; its errors name the field.
func (p Plan) Validate() error {
	problems := p.Problems()
	if len(problems) == 0 {
		return nil
	}
	msgs := make([]string, len(problems))
	for i, pr := range problems {
		msgs[i] = pr.Field + ": " + pr.Message
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(msgs, "; "))
}

// Problems lists what is wrong with p (none: it can run).
func (p Plan) Problems() []Problem {
	var problems []Problem
	bad := func(field, format string, args ...any) {
		problems = append(problems, Problem{field, fmt.Sprintf(format, args...)})
	}
	if len(p.Steps) == 0 {
		bad("steps", "at least one canary weight, like [5, 25, 50]")
	}
	for i, w := range p.Steps {
		switch {
		case w < 1 || w > 99:
			bad(fmt.Sprintf("steps[%d]", i), "%d is not a canary weight in 1..99 (the canary takes 100%% when the last step passes)", w)
		case i > 0 && w <= p.Steps[i-1]:
			bad(fmt.Sprintf("steps[%d]", i), "%d does not increase on %d", w, p.Steps[i-1])
		}
	}
	if p.Interval < time.Second {
		bad("interval", "at least 1s, got %v", p.Interval)
	}
	if p.MinSamples < 1 {
		bad("analysis.minSamples", "at least 1, got %d", p.MinSamples)
	}
	if !(p.Confidence > 0 && p.Confidence < 1) {
		bad("analysis.confidence", "in (0, 1), like 0.95, got %v", p.Confidence)
	}
	if len(p.Metrics) == 0 {
		bad("analysis.metrics", "at least one")
	}
	seen := map[string]bool{}
	for i, m := range p.Metrics {
		f := fmt.Sprintf("analysis.metrics[%d]", i)
		if seen[m.Name] {
			bad(f+".name", "%q is listed twice", m.Name)
		}
		seen[m.Name] = true
		switch m.Name {
		case ErrorRate, ShadowMismatchRate:
			if !(m.Max >= 0 && m.Max < 1) {
				bad(f+".max", "a rate in [0, 1), got %v", m.Max)
			}
			if m.MaxRatioToStable != 0 {
				bad(f+".maxRatioToStable", "applies to %s only; %s takes max", LatencyP99, m.Name)
			}
		case LatencyP99:
			if !(m.MaxRatioToStable >= 1) {
				bad(f+".maxRatioToStable", "at least 1, got %v", m.MaxRatioToStable)
			}
			if m.Max != 0 {
				bad(f+".max", "%s is compared with the stable version: use maxRatioToStable", LatencyP99)
			}
		default:
			bad(f+".name", "%q is not one of %s, %s, %s", m.Name, ErrorRate, LatencyP99, ShadowMismatchRate)
		}
	}
	if p.MaxFailures < 0 {
		bad("analysis.maxFailures", "not negative, got %d", p.MaxFailures)
	}
	if least := time.Duration(len(p.Steps)) * p.Interval; p.ProgressDeadline <= 0 || p.ProgressDeadline < least {
		bad("progressDeadline", "%v is shorter than %d steps of %v", p.ProgressDeadline, len(p.Steps), p.Interval)
	}
	return problems
}

// Has reports whether p gates on metric name.
func (p Plan) Has(name string) bool {
	for _, m := range p.Metrics {
		if m.Name == name {
			return true
		}
	}
	return false
}

// Phase of a rollout.
type Phase string

// Phases.
const (
	Progressing Phase = "Progressing"
	Succeeded   Phase = "Succeeded"
	Failed      Phase = "Failed"
)

// State is what a rollout has done so far; the controller stores it.
type State struct {
	Phase Phase
	// Step is the index in Plan.Steps of the step in progress.
	Step int
	// Started is when the rollout began; StepStarted when the current step
	// (and its measurement window) began.
	Started, StepStarted time.Time
	// Failures counts failed analyses so far.
	Failures int
	// Reason says why the rollout failed (the metric, its value and
	// interval), or why it waits.
	Reason string
}

// Start is the state of a rollout beginning at now, at its first step.
func Start(now time.Time) State {
	return State{Phase: Progressing, Started: now, StepStarted: now}
}

// Sample is what one version answered in a step's window.
type Sample struct {
	Requests, Errors int64
	// Latency of the requests, seconds; nil when none was recorded.
	Latency *analysis.Snapshot
	// Compared and Mismatches count shadow comparisons with the stable
	// version's answers (canary only).
	Compared, Mismatches int64
}

// Window is the current step's measurements.
type Window struct {
	Canary, Stable Sample
}

// Check is one metric's verdict in a window.
type Check struct {
	Metric  string
	Verdict analysis.Verdict
	// Canary is the canary's interval; Stable the stable version's, for a
	// ratio to stable.
	Canary, Stable analysis.Interval
	// Note says why it waits ("12 of 200 requests"), "" otherwise.
	Note string
}

// Decision is what to do now.
type Decision struct {
	State State
	// CanaryWeight is the canary's share of the traffic (0 after a
	// rollback, 100 once promoted).
	CanaryWeight int
	// NewWindow says the measurements must restart (a new step began).
	NewWindow bool
	Checks    []Check
}

// Next decides from the window of the current step at now. A finished
// rollout stays as it is.
func Next(p Plan, s State, w Window, now time.Time) (Decision, error) {
	switch s.Phase {
	case Succeeded:
		return Decision{State: s, CanaryWeight: 100}, nil
	case Failed:
		return Decision{State: s, CanaryWeight: 0}, nil
	}
	if s.Step < 0 || s.Step >= len(p.Steps) {
		return Decision{}, fmt.Errorf("rollout: step %d of %d: %w", s.Step, len(p.Steps), ErrInvalid)
	}
	checks, err := evaluate(p, w)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{State: s, CanaryWeight: p.Steps[s.Step], Checks: checks}
	var failed, waiting []string
	for _, c := range checks {
		switch c.Verdict {
		case analysis.Fail:
			failed = append(failed, fmt.Sprintf("%s %s", c.Metric, describe(c)))
		case analysis.Wait:
			waiting = append(waiting, c.Metric+" "+c.Note)
		}
	}
	stepDone := len(waiting) == 0 && now.Sub(s.StepStarted) >= p.Interval
	switch {
	case len(failed) > 0:
		d.State.Failures++
		if d.State.Failures > p.MaxFailures {
			d.State.Phase, d.CanaryWeight = Failed, 0
			d.State.Reason = fmt.Sprintf("step %d (%d%%) failed: %s", s.Step+1, p.Steps[s.Step], strings.Join(failed, "; "))
			return d, nil
		}
		// A failure the plan tolerates: measure this step again.
		d.State.StepStarted, d.NewWindow = now, true
		d.State.Reason = fmt.Sprintf("analysis failed %d of %d allowed times: %s", d.State.Failures, p.MaxFailures, strings.Join(failed, "; "))
		return d, nil
	case stepDone:
		// Below.
	case now.Sub(s.Started) >= p.ProgressDeadline:
		d.State.Phase, d.CanaryWeight = Failed, 0
		d.State.Reason = fmt.Sprintf("progress deadline %v passed at step %d (%d%%): %s", p.ProgressDeadline, s.Step+1, p.Steps[s.Step],
			orNone(strings.Join(waiting, "; "), "step not finished"))
		return d, nil
	case len(waiting) > 0:
		d.State.Reason = "waiting: " + strings.Join(waiting, "; ")
		return d, nil
	default:
		d.State.Reason = fmt.Sprintf("step %d (%d%%) passes; it ends after %v", s.Step+1, p.Steps[s.Step], p.Interval)
		return d, nil
	}
	// Every metric passed and the step lasted its interval.
	if s.Step == len(p.Steps)-1 {
		d.State.Phase, d.CanaryWeight, d.State.Reason = Succeeded, 100, "every step passed; promoted"
		return d, nil
	}
	d.State.Step++
	d.State.StepStarted, d.NewWindow = now, true
	d.CanaryWeight = p.Steps[d.State.Step]
	d.State.Reason = fmt.Sprintf("step %d passed; step %d (%d%%) began", s.Step+1, d.State.Step+1, d.CanaryWeight)
	return d, nil
}

// evaluate runs every metric of p on w.
func evaluate(p Plan, w Window) ([]Check, error) {
	var out []Check
	for _, m := range p.Metrics {
		c := Check{Metric: m.Name}
		var err error
		switch m.Name {
		case ErrorRate:
			c.Verdict, c.Canary, err = analysis.RateVerdict(w.Canary.Errors, w.Canary.Requests, m.Max, p.Confidence, p.MinSamples)
			if c.Verdict == analysis.Wait && w.Canary.Requests < p.MinSamples {
				c.Note = fmt.Sprintf("(%d of %d requests)", w.Canary.Requests, p.MinSamples)
			}
		case ShadowMismatchRate:
			c.Verdict, c.Canary, err = analysis.RateVerdict(w.Canary.Mismatches, w.Canary.Compared, m.Max, p.Confidence, p.MinSamples)
			if c.Verdict == analysis.Wait && w.Canary.Compared < p.MinSamples {
				c.Note = fmt.Sprintf("(%d of %d comparisons)", w.Canary.Compared, p.MinSamples)
			}
		case LatencyP99:
			if w.Canary.Latency == nil || w.Stable.Latency == nil {
				c.Note = "(no latency measured yet)"
				break
			}
			c.Verdict, c.Canary, c.Stable, err = analysis.RatioVerdict(w.Canary.Latency, w.Stable.Latency, 0.99, m.MaxRatioToStable, p.Confidence, p.MinSamples)
			if c.Verdict == analysis.Wait {
				c.Note = latencyNote(c, p.MinSamples, m.MaxRatioToStable)
			}
		default:
			err = fmt.Errorf("metric %q: %w", m.Name, ErrInvalid)
		}
		if err != nil {
			return nil, fmt.Errorf("rollout: %s: %w", m.Name, err)
		}
		if c.Verdict == analysis.Wait && c.Note == "" {
			c.Note = "(the interval still spans the bound)"
		}
		out = append(out, c)
	}
	return out, nil
}

// latencyNote says why a p99 ratio waits: too few requests, a p99 the
// canary's samples cannot bound from above yet, or intervals that overlap.
func latencyNote(c Check, minSamples int64, ratio float64) string {
	switch {
	case c.Canary.N < minSamples || c.Stable.N < minSamples:
		return fmt.Sprintf("(canary %d, stable %d of %d requests)", c.Canary.N, c.Stable.N, minSamples)
	case math.IsInf(c.Canary.Hi, 1) || math.IsInf(c.Stable.Lo, -1):
		return fmt.Sprintf("(%d canary and %d stable requests bound no p99 yet at this confidence)", c.Canary.N, c.Stable.N)
	}
	return fmt.Sprintf("(the canary's p99 interval [%.3g, %.3g] s overlaps %g × the stable one [%.3g, %.3g] s)",
		c.Canary.Lo, c.Canary.Hi, ratio, c.Stable.Lo, c.Stable.Hi)
}

func describe(c Check) string {
	if c.Metric == LatencyP99 {
		return fmt.Sprintf("canary p99 %s vs stable %s", c.Canary, c.Stable)
	}
	return c.Canary.String()
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// Route is what a service serves while a rollout moves its target: the
// stable version takes 100−CanaryWeight of the target's traffic, the canary
// the rest, and ShadowPercent of the stable version's answered requests are
// mirrored to the canary (0: none), their answers compared within Tolerance.
// A zero CanaryWeight serves the stable version alone.
type Route struct {
	Model          string
	Stable, Canary int64
	CanaryWeight   int
	ShadowPercent  int
	Tolerance      float64
}
