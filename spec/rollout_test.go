package spec

import (
	"strings"
	"testing"
	"time"
)

func checkRollout(t *testing.T, doc string) []FieldError {
	t.Helper()
	docs, fes := Decode("svc.yaml", []byte(doc))
	if len(fes) > 0 {
		return fes
	}
	var out []FieldError
	for _, d := range docs {
		Default(d.Object, "")
		out = append(out, Validate(d)...)
	}
	return out
}

const rolloutHead = `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud}
spec:
  traffic: [{model: fraud-detector@champion}]
  rollout:
`

// TestRolloutValidation: each mistake in a rollout is named by its field
// path and line.
func TestRolloutValidation(t *testing.T) {
	for _, c := range []struct{ name, rollout, want string }{
		{"weight 100", "    steps: [50, 100]\n", "svc.yaml:7: spec.rollout.steps[1]: 100 is not a canary weight in 1..99"},
		{"decreasing", "    steps: [50, 20]\n", "spec.rollout.steps[1]: 20 does not increase on 50"},
		{"no steps", "    steps: []\n", "spec.rollout.steps: at least one canary weight"},
		{"short interval", "    steps: [10]\n    interval: 100ms\n", "spec.rollout.interval: at least 1s"},
		{"deadline", "    steps: [10, 20]\n    interval: 1m\n    progressDeadline: 1m\n", "spec.rollout.progressDeadline: 1m0s is shorter than 2 steps of 1m0s"},
		{"confidence", "    steps: [10]\n    analysis: {confidence: 1.5}\n", "spec.rollout.analysis.confidence: in (0, 1)"},
		{"metric", "    steps: [10]\n    analysis: {metrics: [{name: p50}]}\n", `spec.rollout.analysis.metrics[0].name: "p50" is not one of errorRate, latencyP99, shadowMismatchRate`},
		{"rate bound", "    steps: [10]\n    analysis: {metrics: [{name: errorRate, max: 2}]}\n", "spec.rollout.analysis.metrics[0].max: a rate in [0, 1)"},
		{"ratio", "    steps: [10]\n    analysis: {metrics: [{name: latencyP99, max: 0.2}]}\n", "spec.rollout.analysis.metrics[0].maxRatioToStable: at least 1"},
		{"twice", "    steps: [10]\n    analysis: {metrics: [{name: errorRate, max: 0.1}, {name: errorRate, max: 0.2}]}\n", `metrics[1].name: "errorRate" is listed twice`},
		{"shadow 0", "    steps: [10]\n    analysis: {shadowPercent: 0, metrics: [{name: shadowMismatchRate, max: 0.1}]}\n", "spec.rollout.analysis.shadowPercent: is 0, so shadowMismatchRate could never be measured"},
		{"unknown", "    steps: [10]\n    stepz: [1]\n", `spec.rollout.stepz: unknown field "stepz"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			fes := checkRollout(t, rolloutHead+c.rollout)
			var got []string
			for _, fe := range fes {
				got = append(got, fe.String())
			}
			if !strings.Contains(strings.Join(got, "\n"), c.want) {
				t.Fatalf("errors:\n%s\nwant one containing %q", strings.Join(got, "\n"), c.want)
			}
		})
	}
	two := `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud}
spec:
  traffic: [{model: a, weight: 50}, {model: b, weight: 50}]
  rollout: {steps: [10]}
`
	if fes := checkRollout(t, two); len(fes) != 1 || !strings.Contains(fes[0].Message, "a rollout moves one target") {
		t.Fatalf("two targets: %+v", fes)
	}
}

// TestRolloutDefaults: what a rollout leaves out is filled in, and the
// plan the controller runs is the defaulted one.
func TestRolloutDefaults(t *testing.T) {
	docs, fes := Decode("svc.yaml", []byte(rolloutHead+"    steps: [5, 25, 50]\n"))
	if len(fes) > 0 {
		t.Fatal(fes)
	}
	s := docs[0].Object.(*InferenceService)
	Default(s, "")
	r := s.Spec.Rollout
	if r.Interval.D() != time.Minute || r.ProgressDeadline.D() != 30*time.Minute || r.Analysis.MinSamples != 200 ||
		r.Analysis.Confidence != 0.95 || *r.Analysis.MaxFailures != 0 || *r.Analysis.ShadowPercent != 100 ||
		len(r.Analysis.Metrics) != 1 || r.Analysis.Metrics[0] != (RolloutMetric{Name: "errorRate", Max: 0.01}) {
		t.Fatalf("defaults: %+v %+v", r, r.Analysis)
	}
	if p := r.Plan(); p.Validate() != nil || len(p.Steps) != 3 || p.Interval != time.Minute {
		t.Fatalf("plan %+v: %v", p, p.Validate())
	}
	// Long steps stretch the default deadline to twice their sum.
	long := RolloutSpec{Steps: []int{10, 20, 30}, Interval: 20 * 60e9}
	defaultRollout(&long)
	if long.ProgressDeadline.D() != 2*time.Hour {
		t.Fatalf("deadline for 3 steps of 20m: %v, want 2h", long.ProgressDeadline)
	}
}
