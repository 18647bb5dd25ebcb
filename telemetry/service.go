package telemetry

import (
	"strconv"
	"sync/atomic"
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
			Buckets: latencyBuckets,
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

// TargetSeries are the series of one traffic target of a service, resolved
// when its routing table is built, so a routed request does no label lookup.
// A nil *TargetSeries records nothing.
type TargetSeries struct {
	vecs     *serviceCollectors
	labels   prometheus.Labels
	requests *prometheus.CounterVec // curried: version, code
	latency  prometheus.Observer
	ok       atomic.Pointer[versionCounter] // code 200 of the last version that answered
	detached atomic.Bool
}

type versionCounter struct {
	version string
	c       prometheus.Counter
}

// ServiceTarget resolves the series of target (as configured, "model@ref").
func (m *Metrics) ServiceTarget(ns, service, target string) *TargetSeries {
	if m == nil {
		return nil
	}
	l := prometheus.Labels{"namespace": ns, "service": service, "target": target}
	return &TargetSeries{
		vecs: m.service, labels: l,
		requests: m.service.requests.MustCurryWith(l),
		latency:  m.service.latency.With(l),
	}
}

// Detach removes the target's series (its service or the target is gone);
// requests still finishing on it record nothing more.
func (s *TargetSeries) Detach() {
	if s == nil {
		return
	}
	s.detached.Store(true)
	s.vecs.requests.DeletePartialMatch(s.labels)
	s.vecs.latency.DeletePartialMatch(s.labels)
}

// Observe records one request to the target: the version that answered ("" if
// none did) and the HTTP status code.
func (s *TargetSeries) Observe(version string, code int, d time.Duration) {
	if s == nil || s.detached.Load() {
		return
	}
	s.latency.Observe(d.Seconds())
	if code != 200 {
		s.requests.WithLabelValues(version, strconv.Itoa(code)).Inc()
		return
	}
	vc := s.ok.Load()
	if vc == nil || vc.version != version {
		vc = &versionCounter{version, s.requests.WithLabelValues(version, "200")}
		s.ok.Store(vc)
	}
	vc.c.Inc()
}

// ShadowSeries are the series of a service's shadow target, resolved when the
// routing table is built. A nil *ShadowSeries records nothing.
type ShadowSeries struct {
	vecs              *serviceCollectors
	labels            prometheus.Labels
	results           map[string]prometheus.Counter // by ShadowOK, ShadowError, ShadowDropped
	matched, mismatch prometheus.Counter
	maxAbsDiff        prometheus.Observer
}

// ServiceShadow resolves the series of a service's shadow target.
func (m *Metrics) ServiceShadow(ns, service, target string) *ShadowSeries {
	if m == nil {
		return nil
	}
	l := prometheus.Labels{"namespace": ns, "service": service, "target": target}
	shadows, comparisons := m.service.shadows.MustCurryWith(l), m.service.comparisons.MustCurryWith(l)
	return &ShadowSeries{
		vecs: m.service, labels: l,
		results: map[string]prometheus.Counter{
			ShadowOK:      shadows.WithLabelValues(ShadowOK),
			ShadowError:   shadows.WithLabelValues(ShadowError),
			ShadowDropped: shadows.WithLabelValues(ShadowDropped),
		},
		matched:    comparisons.WithLabelValues("true"),
		mismatch:   comparisons.WithLabelValues("false"),
		maxAbsDiff: m.service.maxAbsDiff.With(l),
	}
}

// Result counts one shadow copy with its result (ShadowOK, ShadowError or
// ShadowDropped).
func (s *ShadowSeries) Result(result string) {
	if s != nil {
		s.results[result].Inc()
	}
}

// Compared records one comparison of a shadow answer with the primary's.
func (s *ShadowSeries) Compared(match bool, maxAbsDiff float64) {
	if s == nil {
		return
	}
	if match {
		s.matched.Inc()
	} else {
		s.mismatch.Inc()
	}
	s.maxAbsDiff.Observe(maxAbsDiff)
}

// Detach removes the shadow's series. Its counters were resolved up front, so a
// copy still finishing records into series no longer exported.
func (s *ShadowSeries) Detach() {
	if s == nil {
		return
	}
	s.vecs.shadows.DeletePartialMatch(s.labels)
	s.vecs.comparisons.DeletePartialMatch(s.labels)
	s.vecs.maxAbsDiff.DeletePartialMatch(s.labels)
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
