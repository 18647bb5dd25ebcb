package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// versionCollectors are the per-version serving metrics. Their series exist only
// while a version is resident (VersionMetrics.Delete on unload), which bounds label
// cardinality by the resident set, not by the number of registered models.
type versionCollectors struct {
	queueDepth *prometheus.GaugeVec
	queueWait  *prometheus.HistogramVec
	batchSize  *prometheus.HistogramVec
	rejected   *prometheus.CounterVec
	timedOut   *prometheus.CounterVec
	instances  *prometheus.GaugeVec
	// Request series are labelled per version too; they are deleted with the rest.
	perVersion []interface {
		DeletePartialMatch(prometheus.Labels) int
	}
}

func newVersionCollectors(reg *prometheus.Registry) *versionCollectors {
	labels := []string{"namespace", "model", "version"}
	v := &versionCollectors{
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_queue_depth",
			Help: "Requests waiting for an execution instance.",
		}, labels),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_queue_wait_seconds",
			Help:    "Time requests spent queued before their runtime call started.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, labels),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_batch_size",
			Help:    "Rows per runtime call (1 when batching is off or the model was idle).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}, labels),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_requests_rejected_total",
			Help: "Requests shed because the queue was full (429 / RESOURCE_EXHAUSTED).",
		}, labels),
		timedOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_requests_timed_out_total",
			Help: "Requests whose deadline passed or whose client went away while queued; they never ran.",
		}, labels),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_instances",
			Help: "Execution instances of a resident version (the autoscaler moves it between instances.min and max).",
		}, labels),
	}
	reg.MustRegister(v.queueDepth, v.queueWait, v.batchSize, v.rejected, v.timedOut, v.instances)
	return v
}

// VersionMetrics records serving metrics for one resident version. A nil
// *VersionMetrics records nothing.
type VersionMetrics struct {
	c          *versionCollectors
	labels     prometheus.Labels
	queueDepth prometheus.Gauge
	queueWait  prometheus.Observer
	batchSize  prometheus.Observer
	rejected   prometheus.Counter
	timedOut   prometheus.Counter
	instances  prometheus.Gauge
}

// ForVersion returns the metrics of one version; call Delete when it unloads.
func (m *Metrics) ForVersion(ns, model, version string) *VersionMetrics {
	if m == nil {
		return nil
	}
	l := prometheus.Labels{"namespace": ns, "model": model, "version": version}
	c := m.version
	return &VersionMetrics{
		c: c, labels: l,
		queueDepth: c.queueDepth.With(l), queueWait: c.queueWait.With(l), batchSize: c.batchSize.With(l),
		rejected: c.rejected.With(l), timedOut: c.timedOut.With(l), instances: c.instances.With(l),
	}
}

// SetQueueDepth sets the number of queued requests.
func (v *VersionMetrics) SetQueueDepth(n int) {
	if v != nil {
		v.queueDepth.Set(float64(n))
	}
}

// ObserveQueueWait records one request's time in the queue.
func (v *VersionMetrics) ObserveQueueWait(d time.Duration) {
	if v != nil {
		v.queueWait.Observe(d.Seconds())
	}
}

// ObserveBatch records the rows of one runtime call.
func (v *VersionMetrics) ObserveBatch(rows int64) {
	if v != nil {
		v.batchSize.Observe(float64(rows))
	}
}

// SetInstances sets the number of execution instances.
func (v *VersionMetrics) SetInstances(n int) {
	if v != nil {
		v.instances.Set(float64(n))
	}
}

// Rejected counts a request shed for a full queue.
func (v *VersionMetrics) Rejected() {
	if v != nil {
		v.rejected.Inc()
	}
}

// TimedOut counts a request dropped from the queue by its deadline or cancellation.
func (v *VersionMetrics) TimedOut() {
	if v != nil {
		v.timedOut.Inc()
	}
}

// Delete removes the version's series (it is no longer resident).
func (v *VersionMetrics) Delete() {
	if v == nil {
		return
	}
	v.c.queueDepth.Delete(v.labels)
	v.c.queueWait.Delete(v.labels)
	v.c.batchSize.Delete(v.labels)
	v.c.rejected.Delete(v.labels)
	v.c.timedOut.Delete(v.labels)
	v.c.instances.Delete(v.labels)
	for _, vec := range v.c.perVersion {
		vec.DeletePartialMatch(v.labels)
	}
}
