package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gitCollectors are the metrics of GitSource syncs. Labels are GitSource
// names, which operators declare.
type gitCollectors struct {
	syncs    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// lastGood holds the time of each source's last good sync; the age gauge
	// is computed from it when scraped, so it grows while syncs fail.
	mu       sync.Mutex
	lastGood map[[2]string]time.Time
	age      *prometheus.Desc
	now      func() time.Time
}

func newGitCollectors(reg *prometheus.Registry) *gitCollectors {
	c := &gitCollectors{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_gitsource_syncs_total",
			Help: "GitSource passes by result: synced (a commit applied), unchanged, drift (live differs, selfHeal off), healed, failed (nothing changed).",
		}, []string{"namespace", "gitsource", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_gitsource_sync_duration_seconds",
			Help:    "Duration of one GitSource pass: fetch, render, and apply or compare.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1ms … 33s
		}, []string{"namespace", "gitsource"}),
		lastGood: map[[2]string]time.Time{},
		age: prometheus.NewDesc("nimbus_gitsource_last_sync_age_seconds",
			"Seconds since a pass last left the GitSource Synced: a commit applied, or found in sync (alert when it exceeds a few intervals).",
			[]string{"namespace", "gitsource"}, nil),
		now: time.Now,
	}
	reg.MustRegister(c.syncs, c.duration, c)
	return c
}

func (c *gitCollectors) Describe(ch chan<- *prometheus.Desc) { ch <- c.age }

func (c *gitCollectors) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for k, t := range c.lastGood {
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, now.Sub(t).Seconds(), k[0], k[1])
	}
}

// GitSync records one GitSource pass.
func (m *Metrics) GitSync(ns, name, result string, took time.Duration) {
	m.git.syncs.WithLabelValues(ns, name, result).Inc()
	m.git.duration.WithLabelValues(ns, name).Observe(took.Seconds())
}

// GitSynced records when a GitSource last synced in full; an earlier time
// than the one recorded (the last applied commit, reported by a failed pass)
// changes nothing.
func (m *Metrics) GitSynced(ns, name string, at time.Time) {
	m.git.mu.Lock()
	defer m.git.mu.Unlock()
	k := [2]string{ns, name}
	if at.After(m.git.lastGood[k]) {
		m.git.lastGood[k] = at
	}
}

// GitForget drops a deleted GitSource's series.
func (m *Metrics) GitForget(ns, name string) {
	m.git.mu.Lock()
	delete(m.git.lastGood, [2]string{ns, name})
	m.git.mu.Unlock()
	m.git.syncs.DeletePartialMatch(prometheus.Labels{"namespace": ns, "gitsource": name})
	m.git.duration.DeleteLabelValues(ns, name)
}
