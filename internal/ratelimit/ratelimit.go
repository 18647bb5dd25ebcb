// Package ratelimit is a token bucket safe for concurrent use: the per-token
// limits of auth and the per-service limits of the router share it.
package ratelimit

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/errs"
)

// Limit is a token bucket: RequestsPerSecond refill, Burst capacity. The zero
// Limit means unlimited.
type Limit struct {
	RequestsPerSecond float64 `json:"requestsPerSecond" yaml:"requestsPerSecond"`
	// Burst is how many requests may come at once; 0 means max(1, RequestsPerSecond).
	Burst int `json:"burst,omitempty" yaml:"burst,omitempty"`
}

// Unlimited reports whether l limits nothing.
func (l Limit) Unlimited() bool { return l.RequestsPerSecond <= 0 }

// EffectiveBurst is Burst, or its default when 0.
func (l Limit) EffectiveBurst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return max(1, int(math.Ceil(l.RequestsPerSecond)))
}

func (l Limit) String() string {
	if l.Unlimited() {
		return "unlimited"
	}
	return strconv.FormatFloat(l.RequestsPerSecond, 'g', -1, 64) + "/s:" + strconv.Itoa(l.EffectiveBurst())
}

// Parse reads "RPS" or "RPS:BURST" ("100", "50:200"; "" or "0": unlimited).
func Parse(s string) (Limit, error) {
	rps, burst, err := config.ParseRate(s)
	return Limit{RequestsPerSecond: rps, Burst: burst}, err
}

// Validate bounds a limit to values a bucket can hold.
func (l Limit) Validate() error {
	if l.RequestsPerSecond < 0 || l.RequestsPerSecond > 1e9 || math.IsNaN(l.RequestsPerSecond) || l.Burst < 0 || l.Burst > 1e9 {
		return errs.New(errs.InvalidArgument, "rate limit %g/s burst %d: want 0 to 1e9 requests per second and a burst of 0 to 1e9", l.RequestsPerSecond, l.Burst).WithField("rateLimit")
	}
	return nil
}

// Limiter is a token bucket that is safe for concurrent use. A nil *Limiter
// allows everything.
type Limiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
	what   string // for the refusal message: "token ci", "service payments/fraud"
}

// NewLimiter returns a bucket for l, full; nil when l is unlimited.
func NewLimiter(l Limit, what string) *Limiter {
	if l.Unlimited() {
		return nil
	}
	b := float64(l.EffectiveBurst())
	return &Limiter{rate: l.RequestsPerSecond, burst: b, tokens: b, what: what}
}

// Is reports whether lim enforces l (nil: l is unlimited), so a bucket can be
// kept across reconfigurations that leave its limit alone.
func (lim *Limiter) Is(l Limit) bool {
	if lim == nil {
		return l.Unlimited()
	}
	return lim.rate == l.RequestsPerSecond && lim.burst == float64(l.EffectiveBurst())
}

// Allow takes one token at now, or returns a ResourceExhausted error that says
// when one will be there (Retry-After).
func (lim *Limiter) Allow(now time.Time) error {
	if lim == nil {
		return nil
	}
	lim.mu.Lock()
	if !lim.last.IsZero() {
		if dt := now.Sub(lim.last).Seconds(); dt > 0 {
			lim.tokens = min(lim.burst, lim.tokens+dt*lim.rate)
		}
	}
	if now.After(lim.last) {
		lim.last = now
	}
	if lim.tokens >= 1 {
		lim.tokens--
		lim.mu.Unlock()
		return nil
	}
	wait := time.Duration((1 - lim.tokens) / lim.rate * float64(time.Second))
	lim.mu.Unlock()
	e := errs.New(errs.ResourceExhausted, "rate limit of %s exceeded (%s requests per second, burst %d); retry in %s",
		lim.what, strconv.FormatFloat(lim.rate, 'g', -1, 64), int(lim.burst), wait.Round(time.Millisecond))
	e.RetryAfter = max(wait, time.Millisecond)
	return e
}
