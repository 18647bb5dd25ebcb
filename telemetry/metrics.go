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
	version      *versionCollectors
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
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
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
	reg.MustRegister(m.coldStarts, m.idleUnloads)
	m.version = newVersionCollectors(reg)
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
