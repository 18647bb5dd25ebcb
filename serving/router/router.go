// Package router routes the traffic of InferenceServices: a request to a service
// goes to one of its weighted targets (a fixed interleaved schedule without a
// routing key, weighted rendezvous hashing with one), and a share of answered
// requests is mirrored to a shadow target whose answers are compared with the
// primary's, off the request path. The router sits in front of a Backend (the
// model manager) and passes requests that name no service straight through.
//
// The router knows nothing of the declarative resources: the caller converts an
// InferenceService into a Config and calls Set, Delete as resources change.
package router

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/ratelimit"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
)

// Backend runs model versions; *serving.Manager is one.
type Backend interface {
	Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error)
	ModelMetadata(ctx context.Context, ns, model, version string) (*serving.ModelMetadata, error)
	ModelReady(ctx context.Context, ns, model, version string) (bool, error)
}

var _ Backend = (*serving.Manager)(nil)
var _ Backend = (*Router)(nil)

// Target is one weighted destination of a service.
type Target struct {
	Model string
	// Ref is "" (champion alias, else latest), an alias, or a version number.
	Ref string
	// Weight is relative to the other targets' (usually percent); 0 takes no traffic.
	Weight int
}

// String is the target as configured: "model@ref", or "model" when Ref is "".
func (t Target) String() string { return targetName(t.Model, t.Ref) }

// Shadow mirrors a share of a service's answered requests to another model.
type Shadow struct {
	Model   string
	Ref     string
	Percent int // 0..100
	// From, when set, mirrors only requests answered by the target of that
	// name ("model@ref"): a rollout mirrors the stable version's traffic to
	// the canary.
	From string
	// Tolerance is the largest absolute difference a measurement window
	// still counts as a match (0: exact answers only).
	Tolerance float64
}

// String is the shadow target as configured: "model@ref", or "model".
func (s Shadow) String() string { return targetName(s.Model, s.Ref) }

// Config is the routing table of one service.
type Config struct {
	Targets []Target
	Shadow  *Shadow // nil: no shadow
	// Timeout bounds each primary request (and each shadow copy); 0: none here.
	Timeout time.Duration
	// StickyByRequestID makes the request ID the routing key when it is set.
	StickyByRequestID bool
	// Generation is the resource generation the table was built from (reported by Stats).
	Generation int64
	// RateLimit bounds the service's requests; nil takes Options.DefaultRateLimit.
	RateLimit *ratelimit.Limit
}

func (c Config) clone() Config {
	c.Targets = append([]Target(nil), c.Targets...)
	if c.Shadow != nil {
		s := *c.Shadow
		c.Shadow = &s
	}
	if c.RateLimit != nil {
		l := *c.RateLimit
		c.RateLimit = &l
	}
	return c
}

// Options configure a Router.
type Options struct {
	Metrics *telemetry.Metrics // nil: no metrics
	Logger  *slog.Logger       // nil: discard
	// MaxShadowInFlight bounds concurrent shadow copies; when all are busy a copy
	// is dropped (and counted), never queued. Default 64.
	MaxShadowInFlight int
	// ShadowTimeout bounds a shadow copy when its service has no Timeout. Default 30s.
	ShadowTimeout time.Duration
	// DefaultRateLimit bounds each service that sets no RateLimit of its own
	// (the zero Limit: none).
	DefaultRateLimit ratelimit.Limit
}

// Router routes requests to InferenceServices and forwards the rest to its Backend.
// It is safe for concurrent use.
type Router struct {
	backend       Backend
	metrics       *telemetry.Metrics
	log           *slog.Logger
	shadowTimeout time.Duration
	defaultLimit  ratelimit.Limit
	// stop ends when Close starts: shadow copies still running are cancelled,
	// so a copy stuck in a full queue cannot hold shutdown for its timeout.
	stop        context.Context
	stopShadows context.CancelFunc

	mu sync.Mutex // serializes Set and Delete
	// services maps svcKey to *service. Requests read it without locks; a
	// sync.Map (keys written once, read many times) rather than a
	// copy-on-write map, so that routing N new services costs O(N), not
	// O(N²) (a GitSource creating 1,000 services).
	services sync.Map

	// shadowMu orders starting a shadow (check closed, shadows.Add) against Close
	// (set closed, shadows.Wait), as WaitGroup requires.
	shadowMu   sync.RWMutex
	closed     bool
	shadows    sync.WaitGroup
	shadowSlot chan struct{} // semaphore of MaxShadowInFlight
}

type svcKey struct{ ns, name string }

// service holds the current table of one service; Set swaps it atomically, so a
// request finishes on the table it picked.
type service struct {
	tab atomic.Pointer[table]
	// window is the open measurement window (nil: none), see OpenWindow.
	window atomic.Pointer[windowState]
}

// New returns a Router in front of b.
func New(b Backend, opts Options) *Router {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxShadowInFlight <= 0 {
		opts.MaxShadowInFlight = 64
	}
	if opts.ShadowTimeout <= 0 {
		opts.ShadowTimeout = 30 * time.Second
	}
	r := &Router{
		backend:       b,
		metrics:       opts.Metrics,
		log:           opts.Logger.With("component", "router"),
		shadowTimeout: opts.ShadowTimeout,
		defaultLimit:  opts.DefaultRateLimit,
		shadowSlot:    make(chan struct{}, opts.MaxShadowInFlight),
	}
	r.stop, r.stopShadows = context.WithCancel(context.Background())
	return r
}

// Set installs or replaces the routing table of service ns/name. Counters of
// targets that stay in the table carry over. Requests already routed finish on
// the table they picked.
func (r *Router) Set(ns, name string, cfg Config) {
	ns = namespaceOr(ns)
	r.mu.Lock()
	defer r.mu.Unlock()
	k := svcKey{ns, name}
	if v, ok := r.services.Load(k); ok {
		svc := v.(*service)
		tab := r.newTable(cfg, svc.tab.Load(), ns, name)
		if svc.window.Load() != nil {
			openWindows(tab, false) // new targets are counted from now
		}
		svc.tab.Store(tab)
		return
	}
	svc := &service{}
	svc.tab.Store(r.newTable(cfg, nil, ns, name))
	r.services.Store(k, svc)
}

// Delete removes service ns/name and its metric series (requests still
// finishing on it record into none); a missing one is a no-op.
func (r *Router) Delete(ns, name string) {
	ns = namespaceOr(ns)
	r.mu.Lock()
	defer r.mu.Unlock()
	k := svcKey{ns, name}
	v, ok := r.services.LoadAndDelete(k)
	if !ok {
		return
	}
	v.(*service).tab.Load().detach()
	r.metrics.DeleteService(ns, name)
}

// lookup returns the configuration of service ns/name.
func (r *Router) lookup(ns, name string) (Config, bool) {
	tab := r.table(namespaceOr(ns), name)
	if tab == nil {
		return Config{}, false
	}
	return tab.cfg.clone(), true
}

func (r *Router) table(ns, name string) *table {
	v, ok := r.services.Load(svcKey{ns, name})
	if !ok {
		return nil
	}
	return v.(*service).tab.Load()
}

// Serves reports whether ns/name is a service: requests to it that name no
// version are routed (see Infer).
func (r *Router) Serves(ns, name string) bool { return r.table(namespaceOr(ns), name) != nil }

// Infer routes a request to a service — when (Namespace, Model) names one and no
// Version is given — or passes it to the backend. The answer of a service names
// the service in ModelName, the version that answered in ModelVersion and
// "model@version" in Target.
func (r *Router) Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
	if req.Version != "" {
		return r.backend.Infer(ctx, req)
	}
	ns := namespaceOr(req.Namespace)
	tab := r.table(ns, req.Model)
	if tab == nil {
		return r.backend.Infer(ctx, req)
	}
	name := req.Model
	if err := tab.limiter.Allow(time.Now()); err != nil {
		r.metrics.ObserveServiceRequest(ns, name, "", "", strconv.Itoa(errs.ResourceExhausted.HTTPStatus()), 0)
		return nil, err
	}
	rt := tab.pick(routingKey(req, tab.cfg.StickyByRequestID))
	if rt == nil {
		err := errs.New(errs.Unavailable, "inference service %s has no target with traffic (every weight is 0)", name)
		r.metrics.ObserveServiceRequest(ns, name, "", "", strconv.Itoa(errs.Unavailable.HTTPStatus()), 0)
		return nil, err
	}

	sub := *req
	sub.Namespace, sub.Model, sub.Version = ns, rt.model, rt.ref
	pctx := ctx
	if tab.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, tab.cfg.Timeout)
		defer cancel()
	}
	start := time.Now()
	resp, err := r.backend.Infer(pctx, &sub)
	if err == nil && resp == nil {
		err = errs.New(errs.Internal, "target %s returned no response", rt.name)
	}
	d := time.Since(start)
	rt.stats.record(d, err)
	if err != nil {
		rt.series.Observe("", errs.KindOf(err).HTTPStatus(), d)
		return nil, targetError(name, rt.name, err)
	}
	rt.series.Observe(resp.ModelVersion, http.StatusOK, d)

	// The backend's answer is this request's own: name the service in it.
	resp.ModelName = name
	resp.Target = rt.targetOf(resp.ModelVersion)
	if sh := tab.shadow; sh != nil && (sh.from == nil || sh.from == rt) && sh.selected() {
		r.mirror(ctx, ns, name, tab, req, resp.Outputs)
	}
	return resp, nil
}

// ModelMetadata answers for a service with the metadata of its highest-weight
// target under the service's name (Versions nil: a service has no versions), and
// passes other requests to the backend.
func (r *Router) ModelMetadata(ctx context.Context, ns, model, version string) (*serving.ModelMetadata, error) {
	ns = namespaceOr(ns)
	var tab *table
	if version == "" {
		tab = r.table(ns, model)
	}
	if tab == nil {
		return r.backend.ModelMetadata(ctx, ns, model, version)
	}
	rt := tab.heaviest()
	if rt == nil {
		return nil, errs.New(errs.Unavailable, "inference service %s has no targets", model)
	}
	md, err := r.backend.ModelMetadata(ctx, ns, rt.model, rt.ref)
	if err != nil {
		return nil, targetError(model, rt.name, err)
	}
	out := *md
	out.Name, out.Versions = model, nil
	return &out, nil
}

// ModelReady reports whether a service can serve — every target with traffic is
// ready; a target that does not exist is not ready — and passes other requests to
// the backend.
func (r *Router) ModelReady(ctx context.Context, ns, model, version string) (bool, error) {
	ns = namespaceOr(ns)
	var tab *table
	if version == "" {
		tab = r.table(ns, model)
	}
	if tab == nil {
		return r.backend.ModelReady(ctx, ns, model, version)
	}
	if len(tab.live) == 0 {
		return false, nil
	}
	for _, rt := range tab.live {
		ok, err := r.backend.ModelReady(ctx, ns, rt.model, rt.ref)
		if errs.KindOf(err) == errs.NotFound {
			return false, nil
		}
		if err != nil {
			return false, targetError(model, rt.name, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// Close stops mirroring (requests are still answered), cancels the shadow
// copies in flight and waits for them. It is idempotent.
func (r *Router) Close() {
	r.shadowMu.Lock()
	r.closed = true
	r.shadowMu.Unlock()
	r.stopShadows()
	r.shadows.Wait()
}

// targetError names the service target in a NotFound (the caller asked for a
// service, not for the model that is missing); other errors pass unchanged.
func targetError(service, target string, err error) error {
	if errs.KindOf(err) != errs.NotFound {
		return err
	}
	return errs.Wrap(errs.NotFound, err, "inference service %s: target %s", service, target).WithField(errs.FieldOf(err))
}

func routingKey(req *serving.InferRequest, byID bool) string {
	if byID && req.ID != "" {
		return req.ID
	}
	return req.RoutingKey
}

func namespaceOr(ns string) string {
	if ns == "" {
		return registry.DefaultNamespace
	}
	return ns
}

func targetName(model, ref string) string {
	if ref == "" {
		return model
	}
	return model + "@" + ref
}
