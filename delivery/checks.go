package delivery

import (
	"math"

	"github.com/nimbus-ai/nimbus/analysis"
	"github.com/nimbus-ai/nimbus/rollout"
	"github.com/nimbus-ai/nimbus/spec"
)

// checks converts the analysis of a window for the status: infinite bounds
// (ones the samples cannot give yet) become nil.
func checks(cs []rollout.Check, plan rollout.Plan) []spec.RolloutCheck {
	bound := map[string]float64{}
	for _, m := range plan.Metrics {
		bound[m.Name] = m.Max
		if m.Name == rollout.LatencyP99 {
			bound[m.Name] = m.MaxRatioToStable
		}
	}
	out := make([]spec.RolloutCheck, 0, len(cs))
	for _, c := range cs {
		rc := spec.RolloutCheck{Metric: c.Metric, Verdict: c.Verdict.String(), Value: finite(c.Canary.Estimate),
			Lower: bounded(c.Canary.Lo), Upper: bounded(c.Canary.Hi), Samples: c.Canary.N, Max: bound[c.Metric], Note: c.Note}
		if c.Metric == rollout.LatencyP99 {
			rc.Stable = &spec.RolloutInterval{Value: finite(c.Stable.Estimate), Lower: bounded(c.Stable.Lo), Upper: bounded(c.Stable.Hi), Samples: c.Stable.N}
		}
		if c.Verdict == analysis.Wait && rc.Note == "" {
			rc.Note = "the interval still spans the bound"
		}
		out = append(out, rc)
	}
	return out
}

func bounded(x float64) *float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return nil
	}
	return &x
}

func finite(x float64) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0
	}
	return x
}
