package router

import (
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/analysis"
)

// Latency histograms of measurement windows cover 1 µs to 100 s (values
// outside are counted in the end buckets).
const (
	windowMinLatency = 1e-6
	windowMaxLatency = 100
)

// WindowSample is what one target (or the shadow) answered since its
// service's measurement window opened: what a rollout's analysis reads.
type WindowSample struct {
	Requests, Errors int64
	// Latency holds the requests' latencies in seconds.
	Latency *analysis.Snapshot
	// Compared and Mismatches count the shadow's answers compared with the
	// primary's (the shadow's sample only).
	Compared, Mismatches int64
}

// Window is a service's measurements since its window opened.
type Window struct {
	Opened  time.Time
	Targets map[string]WindowSample // by target, "model@ref" as configured
	// Shadow is nil without a shadow.
	Shadow       *WindowSample
	ShadowTarget string
}

// targetWindow counts one target's requests in the open window. It exists
// only while a window is open (a histogram is about 31 KB: a thousand
// services do not each hold one).
type targetWindow struct {
	requests, errors atomic.Int64
	latency          *analysis.Histogram
}

func newTargetWindow() *targetWindow {
	return &targetWindow{latency: analysis.NewHistogram(windowMinLatency, windowMaxLatency)}
}

func (w *targetWindow) record(d time.Duration, err error) {
	w.requests.Add(1)
	if err != nil {
		w.errors.Add(1)
	}
	w.latency.Record(d.Seconds())
}

type shadowWindow struct{ compared, mismatches atomic.Int64 }

// windowState is a service's open window.
type windowState struct {
	opened time.Time
}

// OpenWindow opens (or restarts) the measurement window of service ns/name:
// from now on each target's requests, errors and latencies, and the shadow's
// comparisons, are counted apart from the running counters, and targets a
// later Set adds are counted too, until CloseWindow. It reports false when
// there is no such service.
func (r *Router) OpenWindow(ns, name string, now time.Time) bool {
	ns = namespaceOr(ns)
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.services.Load(svcKey{ns, name})
	if !ok {
		return false
	}
	svc := v.(*service)
	svc.window.Store(&windowState{opened: now})
	openWindows(svc.tab.Load(), true)
	return true
}

// CloseWindow stops counting service ns/name's window and frees it.
func (r *Router) CloseWindow(ns, name string) {
	ns = namespaceOr(ns)
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.services.Load(svcKey{ns, name})
	if !ok {
		return
	}
	svc := v.(*service)
	svc.window.Store(nil)
	tab := svc.tab.Load()
	for _, rt := range tab.routes {
		rt.stats.window.Store(nil)
	}
	if tab.shadow != nil {
		tab.shadow.stats.window.Store(nil)
	}
}

// ReadWindow returns service ns/name's window (ok false: no such service or
// no window open).
func (r *Router) ReadWindow(ns, name string) (Window, bool) {
	v, ok := r.services.Load(svcKey{namespaceOr(ns), name})
	if !ok {
		return Window{}, false
	}
	svc := v.(*service)
	ws := svc.window.Load()
	if ws == nil {
		return Window{}, false
	}
	tab := svc.tab.Load()
	out := Window{Opened: ws.opened, Targets: make(map[string]WindowSample, len(tab.routes))}
	for _, rt := range tab.routes {
		s := WindowSample{}
		if w := rt.stats.window.Load(); w != nil {
			s.Requests, s.Errors, s.Latency = w.requests.Load(), w.errors.Load(), w.latency.Snapshot()
		}
		out.Targets[rt.name] = s
	}
	if sh := tab.shadow; sh != nil {
		s := &WindowSample{}
		if w := sh.stats.window.Load(); w != nil {
			s.Compared, s.Mismatches = w.compared.Load(), w.mismatches.Load()
		}
		out.Shadow, out.ShadowTarget = s, sh.name
	}
	return out, true
}

// openWindows gives every target and the shadow of tab a fresh window
// (restart) or one where they have none (a table a Set made while open).
func openWindows(tab *table, restart bool) {
	for _, rt := range tab.routes {
		if restart || rt.stats.window.Load() == nil {
			rt.stats.window.Store(newTargetWindow())
		}
	}
	if sh := tab.shadow; sh != nil && (restart || sh.stats.window.Load() == nil) {
		sh.stats.window.Store(&shadowWindow{})
	}
}
