// Package telemetry owns Nimbus's Prometheus metrics (prefix nimbus_) and logging
// setup. Each server builds one Metrics on its own registry, so tests never share
// global state.
package telemetry

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// latencyBuckets are the request latency histograms' buckets, 50 µs to 10 s.
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics are the server's Prometheus collectors.
type Metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	loadSeconds  *prometheus.HistogramVec
	loadFailures *prometheus.CounterVec
	loadedModels prometheus.Gauge
	loadedBytes  prometheus.Gauge
	inferRows    *prometheus.CounterVec
	inFlight     *prometheus.GaugeVec
	coldStarts   *prometheus.CounterVec
	idleUnloads  *prometheus.CounterVec
	evictions    *prometheus.CounterVec
	scaled       *prometheus.CounterVec
	coldWait     *prometheus.HistogramVec
	memBudget    prometheus.Gauge
	memUsed      prometheus.Gauge
	version      *versionCollectors
	service      *serviceCollectors // InferenceServices: service.go
	git          *gitCollectors     // GitSources: gitops.go
	triggers     *triggerCollectors // Triggers: triggers.go
	rollout      *rolloutCollectors // rollouts: rollouts.go
}

// NewMetrics registers every collector on a fresh registry (plus Go and process collectors).
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_requests_total",
			Help: "Inference requests by namespace, model, version, protocol (rest|grpc) and status code.",
		}, []string{"namespace", "model", "version", "protocol", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_request_duration_seconds",
			Help:    "Inference request latency from decoded request to encoded response.",
			Buckets: latencyBuckets,
		}, []string{"namespace", "model", "version", "protocol"}),
		loadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_model_load_duration_seconds",
			Help:    "Time to verify and load a model version (by namespace: per-model labels would grow with the registry).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"namespace"}),
		loadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_model_load_failures_total",
			Help: "Model loads that failed (the log names the model and the reason).",
		}, []string{"namespace"}),
		loadedModels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nimbus_models_loaded",
			Help: "Model versions currently loaded in memory.",
		}),
		loadedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nimbus_models_loaded_artifact_bytes",
			Help: "Artifact bytes of the model versions currently loaded.",
		}),
		inferRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_inference_rows_total",
			Help: "Rows (first-dimension elements) inferred.",
		}, []string{"namespace", "model", "version"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_requests_in_flight",
			Help: "Requests being handled now, by protocol (rest, grpc, mgmt).",
		}, []string{"protocol"}),
	}
	m.coldStarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nimbus_cold_starts_total",
		Help: "Loads started by a request for a version that was not resident.",
	}, []string{"namespace"})
	m.idleUnloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nimbus_idle_unloads_total",
		Help: "Versions unloaded after their idleTimeout without traffic (scale to zero).",
	}, []string{"namespace"})
	m.evictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nimbus_evictions_total",
		Help: "Idle versions unloaded to make room under the memory budget.",
	}, []string{"namespace"})
	m.scaled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nimbus_instance_scale_total",
		Help: "Autoscaler decisions that changed a version's instance count, by direction (up, down).",
	}, []string{"namespace", "direction"})
	m.coldWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nimbus_cold_start_wait_seconds",
		Help:    "Time requests waited for their version to load (cold requests only).",
		Buckets: []float64{.001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .15, .25, .5, 1, 2.5, 5, 10},
	}, []string{"namespace"})
	m.memBudget = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nimbus_memory_budget_bytes",
		Help: "What resident model versions may cost together (0: unlimited).",
	})
	m.memUsed = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nimbus_memory_used_bytes",
		Help: "What resident and loading model versions cost, as measured at their first load.",
	})
	reg.MustRegister(m.coldStarts, m.idleUnloads, m.evictions, m.scaled, m.coldWait, m.memBudget, m.memUsed)
	m.version = newVersionCollectors(reg)
	m.service = newServiceCollectors(reg)
	m.git = newGitCollectors(reg)
	m.triggers = newTriggerCollectors(reg)
	m.rollout = newRolloutCollectors(reg)
	m.version.perVersion = append(m.version.perVersion, m.requests, m.latency, m.inferRows)
	reg.MustRegister(m.inFlight, m.requests, m.latency, m.loadSeconds, m.loadFailures, m.loadedModels, m.loadedBytes, m.inferRows)
	return m
}

// Registry exposes the Prometheus registry for extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest records one inference request. code is the HTTP status for REST and
// the gRPC code name for gRPC. version is the version that answered ("" if none).
//
// The model and namespace labels come from the client; when no version answered
// (unknown model, rejected request) they are replaced by "" so a client cannot
// create unbounded series by inventing names.
func (m *Metrics) ObserveRequest(ns, model, version, protocol, code string, d time.Duration) {
	if m == nil {
		return
	}
	if version == "" {
		ns, model = "", ""
	}
	m.requests.WithLabelValues(ns, model, version, protocol, code).Inc()
	m.latency.WithLabelValues(ns, model, version, protocol).Observe(d.Seconds())
}

// ObserveRows counts inferred rows.
func (m *Metrics) ObserveRows(ns, model, version string, rows int64) {
	if m == nil {
		return
	}
	m.inferRows.WithLabelValues(ns, model, version).Add(float64(rows))
}

// ObserveLoad records a model load and its outcome.
func (m *Metrics) ObserveLoad(ns, model string, d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.loadFailures.WithLabelValues(ns).Inc()
		return
	}
	m.loadSeconds.WithLabelValues(ns).Observe(d.Seconds())
}

// SetLoaded sets the resident model gauges.
func (m *Metrics) SetLoaded(models int, bytes int64) {
	if m == nil {
		return
	}
	m.loadedModels.Set(float64(models))
	m.loadedBytes.Set(float64(bytes))
}

// Track counts one request in flight for protocol until the returned func is called.
func (m *Metrics) Track(protocol string) (done func()) {
	if m == nil {
		return func() {}
	}
	g := m.inFlight.WithLabelValues(protocol)
	g.Inc()
	return g.Dec
}

// InFlight returns the current in-flight count for protocol.
func (m *Metrics) InFlight(protocol string) float64 {
	if m == nil {
		return 0
	}
	var out dto.Metric
	if err := m.inFlight.WithLabelValues(protocol).Write(&out); err != nil {
		return 0
	}
	return out.GetGauge().GetValue()
}

// ColdStart counts a load started by a request.
func (m *Metrics) ColdStart(ns string) {
	if m != nil {
		m.coldStarts.WithLabelValues(ns).Inc()
	}
}

// IdleUnload counts a version unloaded for idleness.
func (m *Metrics) IdleUnload(ns string) {
	if m != nil {
		m.idleUnloads.WithLabelValues(ns).Inc()
	}
}

// Evicted counts a version evicted for the memory budget.
func (m *Metrics) Evicted(ns string) {
	if m != nil {
		m.evictions.WithLabelValues(ns).Inc()
	}
}

// Scaled counts an autoscaler decision; up tells the direction.
func (m *Metrics) Scaled(ns string, up bool) {
	if m == nil {
		return
	}
	dir := "down"
	if up {
		dir = "up"
	}
	m.scaled.WithLabelValues(ns, dir).Inc()
}

// ObserveColdWait records how long a cold request waited for its load.
func (m *Metrics) ObserveColdWait(ns string, d time.Duration) {
	if m != nil {
		m.coldWait.WithLabelValues(ns).Observe(d.Seconds())
	}
}

// SetMemory sets the memory budget gauges.
func (m *Metrics) SetMemory(budget, used int64) {
	if m != nil {
		m.memBudget.Set(float64(budget))
		m.memUsed.Set(float64(used))
	}
}
