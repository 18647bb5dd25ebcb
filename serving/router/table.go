package router

import (
	"math"
	"sync/atomic"

	"github.com/nimbus-ai/nimbus/internal/ratelimit"
	"github.com/nimbus-ai/nimbus/telemetry"
)

// maxSchedule bounds the keyless schedule. Weights whose gcd-reduced sum is
// larger are scaled down to it, which keeps each share within 1/maxSchedule.
const maxSchedule = 10_000

// table is an immutable routing table (apart from its counters) built by Set.
type table struct {
	cfg    Config
	routes []*route // as configured
	live   []*route // weight > 0
	// seq is the keyless schedule: target i appears weight_i times (gcd-reduced),
	// interleaved by smooth weighted round-robin so that a burst of requests is
	// spread as evenly as the weights allow. Requests take seq[next % len].
	seq    []*route
	next   atomic.Uint64
	shadow *shadowRoute // nil: no shadow (one at 0% mirrors nothing but still reports)
	// limiter is the service's rate limit (nil: none), kept across tables
	// while the limit stays the same.
	limiter *ratelimit.Limiter
}

// route is one target of a table.
type route struct {
	model, ref string
	name       string // "model@ref" as configured
	weight     int
	invWeight  float64
	seed       uint64 // hash of name: the target's identity for rendezvous hashing
	stats      *targetStats
	series     *telemetry.TargetSeries
	// answered caches "model@version" for the version that answered last, so a
	// routed answer names its target without building a string each time.
	answered atomic.Pointer[[2]string] // {version, target}
}

// targetOf is "model@version" for the version that answered.
func (rt *route) targetOf(version string) string {
	if version == "" {
		return rt.name
	}
	if a := rt.answered.Load(); a != nil && a[0] == version {
		return a[1]
	}
	a := &[2]string{version, rt.model + "@" + version}
	rt.answered.Store(a)
	return a[1]
}

// shadowRoute is the shadow of a table.
type shadowRoute struct {
	model, ref string
	name       string
	percent    int
	from       *route // nil: mirrors every target's answers
	tolerance  float64
	stats      *shadowStats
	series     *telemetry.ShadowSeries
	n          atomic.Uint64 // answered requests seen: picks the mirrored ones
}

// newTable builds the table of cfg for service ns/name (with the router's
// rate limit, see newTable).
func (r *Router) newTable(cfg Config, prev *table, ns, name string) *table {
	t := newTable(cfg, prev, r.metrics, ns, name)
	limit := r.defaultLimit
	if cfg.RateLimit != nil {
		limit = *cfg.RateLimit
	}
	// The bucket carries over while the limit is the same, so a weight change
	// does not refill it.
	if prev != nil && prev.limiter.Is(limit) {
		t.limiter = prev.limiter
	} else {
		t.limiter = ratelimit.NewLimiter(limit, "inference service "+ns+"/"+name)
	}
	return t
}

// newTable builds the table of cfg for service ns/name. Targets and shadow that
// keep their name from prev keep their counters and metric series; those of
// prev that are gone lose their series.
func newTable(cfg Config, prev *table, m *telemetry.Metrics, ns, name string) *table {
	cfg = cfg.clone()
	t := &table{cfg: cfg}
	kept := map[string]bool{}
	for _, tg := range cfg.Targets {
		rt := &route{model: tg.Model, ref: tg.Ref, name: tg.String(), weight: max(tg.Weight, 0)}
		rt.seed = hashString(rt.name)
		if prev != nil {
			for _, p := range prev.routes {
				if p.name == rt.name {
					rt.stats, rt.series = p.stats, p.series
					kept[p.name] = true
					break
				}
			}
		}
		if rt.stats == nil {
			rt.stats = &targetStats{}
			rt.series = m.ServiceTarget(ns, name, rt.name)
		}
		t.routes = append(t.routes, rt)
		if rt.weight > 0 {
			rt.invWeight = 1 / float64(rt.weight)
			t.live = append(t.live, rt)
		}
	}
	t.seq = schedule(t.live)
	if s := cfg.Shadow; s != nil {
		sr := &shadowRoute{model: s.Model, ref: s.Ref, name: s.String(), percent: min(max(s.Percent, 0), 100), tolerance: s.Tolerance}
		if s.From != "" {
			// A From that names no target mirrors nothing: never a
			// comparison of the canary with itself.
			sr.from = &route{}
			for _, rt := range t.routes {
				if rt.name == s.From {
					sr.from = rt
				}
			}
		}
		if prev != nil && prev.shadow != nil && prev.shadow.name == sr.name {
			sr.stats, sr.series = prev.shadow.stats, prev.shadow.series
		} else {
			sr.stats, sr.series = &shadowStats{}, m.ServiceShadow(ns, name, sr.name)
		}
		t.shadow = sr
	}
	if prev != nil {
		for _, p := range prev.routes {
			if !kept[p.name] {
				p.series.Detach()
			}
		}
		if p := prev.shadow; p != nil && (t.shadow == nil || t.shadow.name != p.name) {
			p.series.Detach()
		}
	}
	return t
}

// detach removes the metric series of every target and the shadow (the
// service is deleted).
func (t *table) detach() {
	for _, rt := range t.routes {
		rt.series.Detach()
	}
	if t.shadow != nil {
		t.shadow.series.Detach()
	}
}

// pick chooses the target of a request: by the schedule without a key, by
// rendezvous hashing with one. nil when no target takes traffic.
func (t *table) pick(key string) *route {
	switch {
	case len(t.live) == 0:
		return nil
	case len(t.live) == 1:
		return t.live[0]
	case key == "":
		return t.seq[(t.next.Add(1)-1)%uint64(len(t.seq))]
	}
	return t.rendezvous(key)
}

// rendezvous is weighted rendezvous hashing: each target draws an exponential
// variable -ln(u)/weight from a hash of (key, target) and the smallest draw wins
// (equivalently the largest weight/-ln(u)). Target i wins with probability
// weight_i/Σweight, a key's choice depends only on the key and the targets'
// names and weights (no seeds: stable across processes), and changing one weight
// moves only the keys whose winner changes.
func (t *table) rendezvous(key string) *route {
	hk := hashString(key)
	var best *route
	bestScore := math.Inf(1)
	for _, rt := range t.live {
		u := unitInterval(mix64(hk ^ rt.seed))
		if s := -math.Log(u) * rt.invWeight; s < bestScore {
			best, bestScore = rt, s
		}
	}
	return best
}

// heaviest is the target with the largest weight (the first of equals); nil
// when there are no targets.
func (t *table) heaviest() *route {
	var best *route
	for _, rt := range t.routes {
		if best == nil || rt.weight > best.weight {
			best = rt
		}
	}
	return best
}

// selected reports whether the next answered request is mirrored: exactly
// percent of every 100 consecutive ones, spread evenly.
func (s *shadowRoute) selected() bool {
	k := (s.n.Add(1) - 1) % 100
	p := uint64(s.percent)
	return (k+1)*p/100 > k*p/100
}

// schedule lays the live targets out by smooth weighted round-robin: each step
// every target gains its weight, the one with the most credit is chosen and pays
// the total back. Over one cycle target i is chosen exactly w_i times.
func schedule(live []*route) []*route {
	if len(live) == 0 {
		return nil
	}
	w := make([]int, len(live))
	g := 0
	for i, rt := range live {
		w[i] = rt.weight
		g = gcd(g, w[i])
	}
	total := 0
	for i := range w {
		w[i] /= g
		total += w[i]
	}
	if total > maxSchedule {
		w, total = scaleWeights(w, total, maxSchedule)
	}
	seq := make([]*route, 0, total)
	credit := make([]int, len(w))
	for range total {
		best := -1
		for i := range w {
			credit[i] += w[i]
			if best < 0 || credit[i] > credit[best] {
				best = i
			}
		}
		credit[best] -= total
		seq = append(seq, live[best])
	}
	return seq
}

// scaleWeights scales w (summing to total) to sum to n by largest remainder,
// keeping every positive weight at least 1.
func scaleWeights(w []int, total, n int) ([]int, int) {
	out := make([]int, len(w))
	rem := make([]float64, len(w))
	sum := 0
	for i, x := range w {
		exact := float64(x) * float64(n) / float64(total)
		out[i] = max(int(exact), 1)
		rem[i] = exact - float64(int(exact))
		sum += out[i]
	}
	for sum < n {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		out[best]++
		rem[best] = -1
		sum++
	}
	return out, sum
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// hashString is 64-bit FNV-1a: fixed constants, so the same everywhere.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is the splitmix64 finalizer: FNV-1a alone mixes its last bytes poorly.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// unitInterval maps h to (0,1), never 0 (ln 0 is -Inf) nor 1.
func unitInterval(h uint64) float64 {
	return (float64(h>>11) + 0.5) * 0x1p-53
}
