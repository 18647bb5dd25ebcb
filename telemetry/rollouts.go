package telemetry

import "github.com/prometheus/client_golang/prometheus"

// rolloutCollectors are the metrics of progressive rollouts, by service.
type rolloutCollectors struct {
	weight   *prometheus.GaugeVec
	versions *prometheus.GaugeVec
	events   *prometheus.CounterVec
}

func newRolloutCollectors(reg *prometheus.Registry) *rolloutCollectors {
	c := &rolloutCollectors{
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_rollout_canary_weight",
			Help: "The canary's share of a service's traffic in percent (0 when no rollout is in progress).",
		}, []string{"namespace", "service"}),
		versions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_rollout_version",
			Help: "The versions of a service's rollout: role stable (what serves) and canary (being rolled out; 0 when none).",
		}, []string{"namespace", "service", "role"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_rollouts_total",
			Help: "Rollout transitions by event: started, step (a step passed), analysis_failed (tolerated), succeeded, failed (rolled back).",
		}, []string{"namespace", "service", "event"}),
	}
	reg.MustRegister(c.weight, c.versions, c.events)
	return c
}

// RolloutState records where service ns/name's rollout stands.
func (m *Metrics) RolloutState(ns, name string, stable, canary int64, weight int) {
	if m == nil {
		return
	}
	m.rollout.weight.WithLabelValues(ns, name).Set(float64(weight))
	m.rollout.versions.WithLabelValues(ns, name, "stable").Set(float64(stable))
	m.rollout.versions.WithLabelValues(ns, name, "canary").Set(float64(canary))
}

// RolloutEvent counts one rollout transition.
func (m *Metrics) RolloutEvent(ns, name, event string) {
	if m == nil {
		return
	}
	m.rollout.events.WithLabelValues(ns, name, event).Inc()
}

// RolloutForget drops a service's rollout series.
func (m *Metrics) RolloutForget(ns, name string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"namespace": ns, "service": name}
	m.rollout.weight.DeletePartialMatch(l)
	m.rollout.versions.DeletePartialMatch(l)
	m.rollout.events.DeletePartialMatch(l)
}
