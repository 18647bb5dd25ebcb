package system

import (
	"context"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/internal/ratelimit"
	"github.com/nimbus-ai/nimbus/registry"
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

// RouterConfig converts a service spec into the router's table. The spec was
// validated, so targets parse.
func RouterConfig(generation int64, s spec.ServiceSpec) router.Config {
	cfg := router.Config{Generation: generation, Timeout: s.Timeout.D()}
	for _, t := range s.Traffic {
		model, ref, _ := spec.ParseTarget(t.Model)
		w := 100
		if t.Weight != nil {
			w = *t.Weight
		}
		cfg.Targets = append(cfg.Targets, router.Target{Model: model, Ref: ref, Weight: w})
	}
	if s.Shadow != nil {
		model, ref, _ := spec.ParseTarget(s.Shadow.Model)
		pct := 100
		if s.Shadow.Percent != nil {
			pct = *s.Shadow.Percent
		}
		cfg.Shadow = &router.Shadow{Model: model, Ref: ref, Percent: pct}
	}
	cfg.StickyByRequestID = s.Routing != nil && s.Routing.StickyBy == spec.StickyByRequestID
	if rl := s.RateLimit; rl != nil {
		cfg.RateLimit = &ratelimit.Limit{RequestsPerSecond: rl.RequestsPerSecond, Burst: rl.Burst}
	}
	return cfg
}

func (r routes) SetService(ns, name string, generation int64, s spec.ServiceSpec) {
	r.r.Set(ns, name, RouterConfig(generation, s))
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
