package system

import (
	"context"
	"strconv"
	"time"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/delivery"
	"github.com/nimbus-ai/nimbus/internal/ratelimit"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/rollout"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/serving/router"
	"github.com/nimbus-ai/nimbus/spec"
	"github.com/nimbus-ai/nimbus/spec/source"
	"github.com/nimbus-ai/nimbus/tensor"
)

// gateway is what the OIP handlers serve: the model manager, with inference,
// metadata and readiness going through the router so a service name answers
// on /v2/models/{service}.
type gateway struct {
	*serving.Manager
	router *router.Router
}

func (g gateway) Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
	return g.router.Infer(ctx, req)
}

// ResolveInputs checks a request's target before its body is decoded: a
// service's inputs are those of the target it will be routed to, not known
// here.
func (g gateway) ResolveInputs(ctx context.Context, ns, model, version string) ([]tensor.TensorSpec, bool, error) {
	if version == "" && g.router.Serves(ns, model) {
		return nil, false, nil
	}
	return g.Manager.ResolveInputs(ctx, ns, model, version)
}

func (g gateway) ModelMetadata(ctx context.Context, ns, model, version string) (*serving.ModelMetadata, error) {
	return g.router.ModelMetadata(ctx, ns, model, version)
}

func (g gateway) ModelReady(ctx context.Context, ns, model, version string) (bool, error) {
	return g.router.ModelReady(ctx, ns, model, version)
}

// The engine serves the management API's declarative routes.
var _ mgmt.Resources = (*apply.Engine)(nil)

// fetcher adapts source.Fetcher to apply.Fetcher (the two packages each name
// the types they need).
type fetcher struct{ f *source.Fetcher }

// NewFetcher hands f to an apply.Engine.
func NewFetcher(f *source.Fetcher) apply.Fetcher { return fetcher{f} }

func (f fetcher) Fetch(ctx context.Context, a apply.Artifact, dst apply.BlobPutter) (registry.BlobInfo, error) {
	return f.f.Fetch(ctx, sourceArtifact(a), dst)
}

func (f fetcher) Check(a apply.Artifact) error { return f.f.Check(sourceArtifact(a)) }

func sourceArtifact(a apply.Artifact) source.Artifact {
	return source.Artifact{URI: a.URI, SHA256: a.SHA256, TokenFrom: a.TokenFrom}
}

// routes hands applied InferenceServices to the router.
type routes struct{ r *router.Router }

var _ apply.Routes = routes{}

// routerConfig converts a service spec into the router's table. The spec was
// validated, so targets parse. A rollout's route replaces the one target
// with the stable version and the canary at the route's weights, and the
// shadow with the canary fed from the stable version.
func routerConfig(generation int64, s spec.ServiceSpec, route *rollout.Route) router.Config {
	cfg := router.Config{Generation: generation, Timeout: s.Timeout.D()}
	cfg.StickyByRequestID = s.Routing != nil && s.Routing.StickyBy == spec.StickyByRequestID
	if rl := s.RateLimit; rl != nil {
		cfg.RateLimit = &ratelimit.Limit{RequestsPerSecond: rl.RequestsPerSecond, Burst: rl.Burst}
	}
	if route != nil {
		stable := router.Target{Model: route.Model, Ref: strconv.FormatInt(route.Stable, 10), Weight: 100 - route.CanaryWeight}
		cfg.Targets = []router.Target{stable}
		if route.CanaryWeight > 0 {
			canary := router.Target{Model: route.Model, Ref: strconv.FormatInt(route.Canary, 10), Weight: route.CanaryWeight}
			cfg.Targets = append(cfg.Targets, canary)
			if route.ShadowPercent > 0 {
				cfg.Shadow = &router.Shadow{Model: canary.Model, Ref: canary.Ref, Percent: route.ShadowPercent,
					From: stable.String(), Tolerance: route.Tolerance}
			}
		}
		if cfg.Shadow == nil && s.Shadow != nil {
			cfg.Shadow = shadowOf(s.Shadow)
		}
		return cfg
	}
	for _, t := range s.Traffic {
		model, ref, _ := spec.ParseTarget(t.Model)
		w := 100
		if t.Weight != nil {
			w = *t.Weight
		}
		cfg.Targets = append(cfg.Targets, router.Target{Model: model, Ref: ref, Weight: w})
	}
	if s.Shadow != nil {
		cfg.Shadow = shadowOf(s.Shadow)
	}
	return cfg
}

func shadowOf(sh *spec.ShadowTarget) *router.Shadow {
	model, ref, _ := spec.ParseTarget(sh.Model)
	pct := 100
	if sh.Percent != nil {
		pct = *sh.Percent
	}
	return &router.Shadow{Model: model, Ref: ref, Percent: pct}
}

func (r routes) SetService(ns, name string, generation int64, s spec.ServiceSpec, route *rollout.Route) {
	r.r.Set(ns, name, routerConfig(generation, s, route))
}

// windows reads the router's measurement windows as a rollout's two
// versions.
type windows struct{ r *router.Router }

var _ delivery.Windows = windows{}

func (w windows) OpenWindow(ns, name string, now time.Time) bool {
	return w.r.OpenWindow(ns, name, now)
}
func (w windows) CloseWindow(ns, name string) { w.r.CloseWindow(ns, name) }

// ReadWindow is false unless the router serves both versions (the route a
// rollout just set may not be installed yet).
func (w windows) ReadWindow(ns, name, stable, canary string) (rollout.Window, bool) {
	win, ok := w.r.ReadWindow(ns, name)
	if !ok {
		return rollout.Window{}, false
	}
	s, okS := win.Targets[stable]
	c, okC := win.Targets[canary]
	if !okS || !okC {
		return rollout.Window{}, false
	}
	out := rollout.Window{
		Stable: rollout.Sample{Requests: s.Requests, Errors: s.Errors, Latency: s.Latency},
		Canary: rollout.Sample{Requests: c.Requests, Errors: c.Errors, Latency: c.Latency},
	}
	if win.Shadow != nil && win.ShadowTarget == canary {
		out.Canary.Compared, out.Canary.Mismatches = win.Shadow.Compared, win.Shadow.Mismatches
	}
	return out, true
}

func (r routes) DeleteService(ns, name string) { r.r.Delete(ns, name) }

// observer gives resource status the live view: residency from the manager,
// counters from the router.
type observer struct {
	m *serving.Manager
	r *router.Router
}

var _ apply.Observer = observer{}

func (o observer) VersionState(ctx context.Context, ns, model string, version int64) (string, string) {
	rep, err := o.m.Status(ctx, ns, model)
	if err != nil {
		return "", ""
	}
	for _, v := range rep.Versions {
		if v.Model == model && v.Version == version {
			return v.State, v.Reason
		}
	}
	return "", ""
}

func (o observer) ServiceStats(ns, name string) (apply.ServiceStats, bool) {
	st, ok := o.r.Stats(ns, name)
	if !ok {
		return apply.ServiceStats{}, false
	}
	out := apply.ServiceStats{Generation: st.Generation}
	for _, t := range st.Targets {
		out.Targets = append(out.Targets, apply.TargetStats{Target: t.Target, Requests: t.Requests, Errors: t.Errors, Latency: t.TotalLatency})
	}
	if sh := st.Shadow; sh != nil {
		out.Shadow = &spec.ShadowStatus{Sent: sh.Sent, Errors: sh.Errors, Dropped: sh.Dropped,
			Compared: sh.Compared, ExactMatch: sh.ExactMatch, MaxAbsDiff: sh.MaxAbsDiff}
	}
	return out, true
}

// rolloutCommands serves the management API's rollout commands.
type rolloutCommands struct{ c *delivery.Controller }

func (r rolloutCommands) Command(ctx context.Context, ns, name, command, actor string) error {
	kind, err := delivery.ParseCommand(command)
	if err != nil {
		return err
	}
	return r.c.Command(ctx, ns, name, kind, actor)
}
