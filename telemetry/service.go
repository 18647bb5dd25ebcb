package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Shadow request results, the result label of nimbus_shadow_requests_total.
const (
	ShadowOK      = "ok"
	ShadowError   = "error"
	ShadowDropped = "dropped" // the shadow pool was full: the copy was never sent
)

// serviceCollectors are the metrics of InferenceServices (serving/router). Their
// labels are operator-defined names (services and their configured targets), not
// client input, so cardinality follows the declared resources.
type serviceCollectors struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	shadows     *prometheus.CounterVec
	comparisons *prometheus.CounterVec
	maxAbsDiff  *prometheus.HistogramVec
}

func newServiceCollectors(reg *prometheus.Registry) *serviceCollectors {
	c := &serviceCollectors{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_service_requests_total",
			Help: "Requests routed by an InferenceService, by configured target (model@ref), the version that answered and HTTP status code.",
		}, []string{"namespace", "service", "target", "version", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_service_request_duration_seconds",
			Help:    "Latency of requests routed by an InferenceService, measured around the target's inference.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"namespace", "service", "target"}),
		shadows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_shadow_requests_total",
			Help: "Shadow copies of InferenceService requests by result (ok, error, dropped when the shadow pool was full).",
		}, []string{"namespace", "service", "target", "result"}),
		comparisons: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_shadow_comparisons_total",
			Help: "Shadow answers compared with the primary's; match is true when names, datatypes, shapes and bytes are identical.",
		}, []string{"namespace", "service", "target", "match"}),
		maxAbsDiff: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_shadow_max_abs_diff",
			Help:    "Largest absolute difference between shadow and primary numeric outputs, one observation per comparison.",
			Buckets: append([]float64{0}, prometheus.ExponentialBuckets(1e-9, 10, 13)...), // 0, 1e-9 … 1e3
		}, []string{"namespace", "service", "target"}),
	}
	reg.MustRegister(c.requests, c.latency, c.shadows, c.comparisons, c.maxAbsDiff)
	return c
}

// ObserveServiceRequest records one request routed by an InferenceService. target
// is the configured target ("model@ref"), version the version that answered (""
// when none did) and code the HTTP status.
func (m *Metrics) ObserveServiceRequest(ns, service, target, version, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.service.requests.WithLabelValues(ns, service, target, version, code).Inc()
	m.service.latency.WithLabelValues(ns, service, target).Observe(d.Seconds())
}

// ShadowRequest counts one shadow copy with its result (ShadowOK, ShadowError or
// ShadowDropped).
func (m *Metrics) ShadowRequest(ns, service, target, result string) {
	if m != nil {
		m.service.shadows.WithLabelValues(ns, service, target, result).Inc()
	}
}

// ObserveShadowComparison records one comparison of a shadow answer with the primary's.
func (m *Metrics) ObserveShadowComparison(ns, service, target string, match bool, maxAbsDiff float64) {
	if m == nil {
		return
	}
	label := "false"
	if match {
		label = "true"
	}
	m.service.comparisons.WithLabelValues(ns, service, target, label).Inc()
	m.service.maxAbsDiff.WithLabelValues(ns, service, target).Observe(maxAbsDiff)
}

// DeleteService removes every series of a deleted InferenceService.
func (m *Metrics) DeleteService(ns, service string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"namespace": ns, "service": service}
	m.service.requests.DeletePartialMatch(l)
	m.service.latency.DeletePartialMatch(l)
	m.service.shadows.DeletePartialMatch(l)
	m.service.comparisons.DeletePartialMatch(l)
	m.service.maxAbsDiff.DeletePartialMatch(l)
}
