package serving

import (
	"math"
	"time"
)

// The instance autoscaler follows Knative's KPA. Every ScaleEvery, Autoscale
// samples each autoscaled version's requests in flight (running or queued). The
// stable window (instances.stableWindow, default 1m) averages them into the
// count that load needs: ceil(average / targetConcurrency). A tenth of it is the
// panic window: when its average alone asks for twice the current instances, the
// version panics for a stable window — it scales to the panic figure at once and
// does not scale down — so a burst is met within a sample or two while a lull of
// a few seconds never drops instances. Counts stay within instances.min..max.

// panicThreshold is the ratio of wanted to current instances that starts panic
// mode (Knative's default 200%).
const panicThreshold = 2.0

// scaler is one version's load history.
type scaler struct {
	samples    []sample // oldest first, none older than the stable window
	panicUntil time.Time
}

type sample struct {
	at time.Time
	v  float64
}

// decision is what the autoscaler wants and why.
type decision struct {
	want          int
	stable, burst float64 // average concurrency over the stable and panic windows
	panicking     bool
}

func (s *scaler) observe(now time.Time, v float64, window time.Duration) {
	s.samples = append(s.samples, sample{now, v})
	cut := 0
	for cut < len(s.samples) && now.Sub(s.samples[cut].at) > window {
		cut++
	}
	if cut > 0 {
		s.samples = append(s.samples[:0], s.samples[cut:]...)
	}
}

func (s *scaler) average(now time.Time, window time.Duration) float64 {
	sum, n := 0.0, 0
	for i := len(s.samples) - 1; i >= 0 && now.Sub(s.samples[i].at) <= window; i-- {
		sum += s.samples[i].v
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

func (s *scaler) decide(now time.Time, current, lo, hi, target int, window time.Duration) decision {
	d := decision{stable: s.average(now, window), burst: s.average(now, window/10)}
	need := func(c float64) int { return int(math.Ceil(c / float64(max(1, target)))) }
	wantStable, wantBurst := need(d.stable), need(d.burst)
	if current > 0 && float64(wantBurst) >= panicThreshold*float64(current) {
		s.panicUntil = now.Add(window)
	}
	d.want = wantStable
	if now.Before(s.panicUntil) {
		d.panicking = true
		d.want = max(current, wantBurst, wantStable)
	}
	d.want = min(max(d.want, lo), hi)
	return d
}

// Autoscale samples every autoscaled resident version (instances.max above
// max(1, instances.min)) and resizes its instances. Start calls it every
// ScaleEvery; tests call it with a fake clock.
func (m *Manager) Autoscale() {
	m.scaleMu.Lock()
	defer m.scaleMu.Unlock()
	now := m.opts.Now()
	m.mu.RLock()
	insts := m.residentLocked()
	m.mu.RUnlock()
	for _, inst := range insts {
		lo, hi := inst.cfg.InstanceBounds()
		if lo == hi {
			continue
		}
		window := inst.cfg.StableWindow()
		inst.scale.observe(now, float64(inst.b.Active()), window)
		cur := inst.b.Instances()
		d := inst.scale.decide(now, cur, lo, hi, inst.cfg.TargetConcurrency(), window)
		if d.want == cur {
			continue
		}
		inst.b.SetInstances(d.want)
		m.metrics.Scaled(inst.key.ns, d.want > cur)
		m.log.Info("scaled instances", "namespace", inst.key.ns, "model", inst.key.model, "version", inst.key.version,
			"from", cur, "to", d.want, "stable_concurrency", round2(d.stable), "panic_concurrency", round2(d.burst), "panic", d.panicking)
	}
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
