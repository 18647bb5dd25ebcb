package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TriggerLevel is a running trigger's levels at scrape time.
type TriggerLevel struct {
	Namespace, Name string
	// InFlight are the events fetched and not yet settled; Lag those
	// waiting at the broker (-1: the broker does not say).
	InFlight, Lag int64
}

// triggerCollectors are the metrics of Triggers. Labels are Trigger names,
// which deployers declare.
type triggerCollectors struct {
	events  *prometheus.CounterVec
	errors  *prometheus.CounterVec
	latency *prometheus.HistogramVec
	// levels, when set, reports the running triggers' gauges when scraped.
	mu       sync.Mutex
	levels   func() []TriggerLevel
	inFlight *prometheus.Desc
	lag      *prometheus.Desc
}

func newTriggerCollectors(reg *prometheus.Registry) *triggerCollectors {
	c := &triggerCollectors{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_trigger_events_total",
			Help: "Events a trigger settled, by outcome: result (published and acknowledged), dead_letter, retried (given back: the service could not take it), abandoned (left for redelivery at stop).",
		}, []string{"namespace", "trigger", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_trigger_broker_errors_total",
			Help: "Failed fetches (endpoint source) and publishes (sink, deadLetter) of a trigger: a broker outage, retried with backoff.",
		}, []string{"namespace", "trigger", "endpoint"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_trigger_latency_seconds",
			Help:    "From an event's receipt to its acknowledgement, its result or dead-letter record published.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18), // 0.5ms … 65s
		}, []string{"namespace", "trigger"}),
		inFlight: prometheus.NewDesc("nimbus_trigger_in_flight", "Events a trigger fetched and has not settled yet.", []string{"namespace", "trigger"}, nil),
		lag: prometheus.NewDesc("nimbus_trigger_lag", "Events waiting at the broker for a trigger (NATS JetStream, Redis Streams, Kafka; absent where the broker does not say: MQTT).",
			[]string{"namespace", "trigger"}, nil),
	}
	reg.MustRegister(c.events, c.errors, c.latency, c)
	return c
}

func (c *triggerCollectors) Describe(ch chan<- *prometheus.Desc) { ch <- c.inFlight; ch <- c.lag }

func (c *triggerCollectors) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	levels := c.levels
	c.mu.Unlock()
	if levels == nil {
		return
	}
	for _, l := range levels() {
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(l.InFlight), l.Namespace, l.Name)
		if l.Lag >= 0 {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(l.Lag), l.Namespace, l.Name)
		}
	}
}

// SetTriggerLevels installs what reports the triggers' gauges at scrape time.
func (m *Metrics) SetTriggerLevels(f func() []TriggerLevel) {
	m.triggers.mu.Lock()
	m.triggers.levels = f
	m.triggers.mu.Unlock()
}

// ObserveTrigger records one settled event; latency counts for results and
// dead letters.
func (m *Metrics) ObserveTrigger(ns, name, outcome string, latency time.Duration) {
	m.triggers.events.WithLabelValues(ns, name, outcome).Inc()
	if outcome == "result" || outcome == "dead_letter" {
		m.triggers.latency.WithLabelValues(ns, name).Observe(latency.Seconds())
	}
}

// TriggerBrokerError counts one failed fetch or publish of a trigger.
func (m *Metrics) TriggerBrokerError(ns, name, endpoint string) {
	m.triggers.errors.WithLabelValues(ns, name, endpoint).Inc()
}

// ForgetTrigger drops a deleted Trigger's series.
func (m *Metrics) ForgetTrigger(ns, name string) {
	m.triggers.events.DeletePartialMatch(prometheus.Labels{"namespace": ns, "trigger": name})
	m.triggers.errors.DeletePartialMatch(prometheus.Labels{"namespace": ns, "trigger": name})
	m.triggers.latency.DeleteLabelValues(ns, name)
}
