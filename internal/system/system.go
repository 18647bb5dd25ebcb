// Package system is the struct of Nimbus's subsystems, wired by hand, and the run
// group that starts them and stops them in order: a failed start closes what
// already started, and shutdown drains in-flight requests before closing models
// and the store.
package system

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"

	"github.com/nimbus-ai/nimbus/api/grpcapi"
	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/delivery"
	"github.com/nimbus-ai/nimbus/egress"
	"github.com/nimbus-ai/nimbus/gitops"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/limits"
	"github.com/nimbus-ai/nimbus/internal/ratelimit"
	"github.com/nimbus-ai/nimbus/internal/run"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/blob"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/secrets"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/serving/router"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/trigger/controller"
)

// System holds every subsystem of one server process.
type System struct {
	Config   config.Config
	Log      *slog.Logger
	Metrics  *telemetry.Metrics
	Store    registry.Store
	Blobs    *blob.FS
	Registry *registry.Registry
	Manager  *serving.Manager
	Runtime  *onnx.Runtime
	// Router routes InferenceServices; Resources applies declarative resources.
	Router    *router.Router
	Resources *apply.Engine
	// Rollouts runs the progressive rollouts of InferenceServices.
	Rollouts *delivery.Controller
	// Auth verifies and manages tokens (nil with auth off); Guard attaches
	// identities to requests either way.
	Auth  *auth.Authenticator
	Guard *auth.Guard
	// OIP and Mgmt are the REST APIs, kept for their route tables.
	OIP  *oip.Handler
	Mgmt *mgmt.Handler
	// Inflight is the budget of bytes REST bodies and gRPC messages in flight
	// hold together (maxInflightBytes).
	Inflight *limits.Budget
	// GitOps syncs GitSources.
	GitOps *gitops.Controller
	// Triggers runs the Triggers: events from brokers scored by services.
	Triggers *controller.Controller

	// egress is the rule for connections made on a caller's behalf, secrets
	// resolves secret references, fetcher fetches declared artifacts.
	egress  *egress.Policy
	secrets *secrets.Resolver
	fetcher apply.Fetcher

	httpLn  net.Listener
	grpcLn  net.Listener
	httpSrv *http.Server
	grpcSrv *grpc.Server
	grpcAPI *grpcapi.Server
	// grpcHealth turns NOT_SERVING when shutdown starts, so balancers stop sending.
	grpcHealth *health.Server
	tlsConfig  *tls.Config
	// REST requests' contexts derive from requests; cancelRequests ends them
	// (with errShutdown as the cause) once the drain deadline has passed.
	requests       context.Context
	cancelRequests context.CancelCauseFunc
}

// errShutdown is why requests still running at the drain deadline are cancelled.
var errShutdown = errs.New(errs.Unavailable, "server is shutting down")

// shutdownGrace is how long requests cancelled at the drain deadline get to
// answer before their connections are closed, and then how long closing the
// models may take before Run returns without waiting for them.
const shutdownGrace = time.Second

// New opens the data dir and binds the listeners. On error, whatever was opened
// is closed again.
func New(ctx context.Context, cfg config.Config, version string, log *slog.Logger) (*System, error) {
	return newSystem(ctx, cfg, version, log, hooks{})
}

// hooks are what tests change in a system.
type hooks struct {
	// wrapRuntime, if set, wraps the ONNX runtime the manager loads models
	// with (tests hold model runs with it).
	wrapRuntime func(runtime.Runtime) runtime.Runtime
	// clock, if set, is the resource controllers' and the rollouts' clock.
	clock reconcile.Clock
}

// newSystem is New with test hooks.
func newSystem(ctx context.Context, cfg config.Config, version string, log *slog.Logger, h hooks) (_ *System, err error) {
	wrapRuntime := h.wrapRuntime
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	s := &System{Config: cfg, Log: log, Metrics: telemetry.NewMetrics()}
	s.requests, s.cancelRequests = context.WithCancelCause(context.Background())
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	// The data dir holds the bootstrap admin token and token hashes: owner only.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "nimbus.db"))
	if err != nil {
		return nil, fmt.Errorf("open metadata store: %w", err)
	}
	s.Store = db
	if err := s.setupAuth(db); err != nil {
		return nil, err
	}
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	if s.Blobs, err = blob.NewFS(filepath.Join(cfg.DataDir, "blobs")); err != nil {
		return nil, fmt.Errorf("open artifact store: %w", err)
	}
	s.Runtime = onnx.New(cfg.ORTLib, log.With("component", "onnxruntime"))
	s.Registry = registry.New(s.Store, s.Blobs, map[string]runtime.Inspector{"onnx": onnx.Inspector{}}, log.With("component", "registry"))
	s.Registry.SetGCGrace(cfg.BlobGCGrace)
	s.Registry.SetAuditLog(db) // events share each change's transaction
	budget, err := cfg.MemoryBudgetBytes()
	if err != nil {
		return nil, err
	}
	var rt runtime.Runtime = s.Runtime
	if wrapRuntime != nil {
		rt = wrapRuntime(rt)
	}
	s.Manager = serving.NewManager(s.Registry, s.Blobs, serving.Options{
		Runtimes: []runtime.Runtime{rt}, Metrics: s.Metrics, Logger: log, Version: version,
		MemoryBudget: budget,
	})
	log.Info("memory budget for loaded models", "budget", cfg.MemoryBudget, "bytes", budget)
	s.Registry.OnChange(func(c registry.Change) {
		switch c.Kind {
		case registry.VersionDeleted, registry.ServingChanged:
			// Drop the loaded copy; a serving change reloads with the new settings on next use.
			s.Manager.Forget(c.Namespace, c.Model, c.Version, false)
		case registry.ModelDeleted:
			// (Its resource row went in the delete's transaction: spec's delete guard.)
			s.Manager.Forget(c.Namespace, c.Model, 0, true)
		default:
			s.Manager.Invalidate(c.Namespace, c.Model)
		}
		// The services whose rollout routes to the model look again.
		if s.Rollouts != nil {
			s.Rollouts.ModelChanged(c.Namespace, c.Model)
		}
		// A model changed by hand (an alias moved, a version deleted) may
		// be one a GitSource owns: its sources look again (drift).
		if s.GitOps != nil {
			s.GitOps.NamespaceChanged(c.Namespace)
		}
		// Triggers of the namespace look again (their service's signature,
		// or whether it exists).
		if s.Triggers != nil {
			s.Triggers.NamespaceChanged(c.Namespace)
		}
	})

	// Bind before the fetcher is built: the default egress rule depends on
	// where the server listens.
	if err := s.listen(); err != nil {
		return nil, err
	}
	fetch, err := s.newFetcher()
	if err != nil {
		return nil, err
	}
	s.fetcher = fetch

	serviceLimit, err := ratelimit.Parse(cfg.RateLimitPerService)
	if err != nil {
		return nil, err
	}
	s.Router = router.New(s.Manager, router.Options{Metrics: s.Metrics, Logger: log.With("component", "router"),
		DefaultRateLimit: serviceLimit})
	var now func() time.Time
	if h.clock != nil {
		now = h.clock.Now
	}
	s.Rollouts = delivery.New(delivery.Options{Registry: s.Registry, Services: db, Windows: windows{s.Router}, Audit: db,
		Logger: log, Now: now, Metrics: s.Metrics})
	s.Registry.SetAliasHold(s.Rollouts.Hold)
	s.setupTriggers(h)
	s.Resources = apply.NewEngine(apply.Options{
		Registry: s.Registry, Resources: db, Audit: db, Routes: routes{s.Router}, Rollouts: s.Rollouts, Clock: h.clock, Now: now,
		Fetcher:  fetch,
		Observer: observer{s.Manager, s.Router}, Logger: log, Triggers: s.Triggers,
		OnChange: func(kind, ns, name, managedBy string) {
			if s.GitOps != nil {
				s.GitOps.Changed(kind, ns, name, managedBy)
			}
			s.Triggers.Changed(kind, ns, name)
		},
	})
	s.Rollouts.SetEnqueue(s.Resources.EnqueueService)
	if err := s.setupGitOps(); err != nil {
		return nil, err
	}
	if err := s.applyServerConnections(ctx); err != nil {
		return nil, err
	}
	if err := s.applyServerGitSource(ctx); err != nil {
		return nil, err
	}
	gw := gateway{Manager: s.Manager, router: s.Router}

	mux := http.NewServeMux()
	if s.Inflight, err = inflightBudget(cfg, log); err != nil {
		return nil, err
	}
	s.OIP = oip.NewHandler(gw, oip.Options{MaxBodyBytes: cfg.MaxBodyBytes, Metrics: s.Metrics, Logger: log.With("component", "oip"), Budget: s.Inflight})
	oipHandler := s.tracked("rest", s.OIP)
	mux.Handle("/v2/", oipHandler)
	mux.Handle("/v2", oipHandler)
	mux.Handle("/ns/", oipHandler)
	mopts := mgmt.Options{
		UploadDir: filepath.Join(cfg.DataDir, "uploads"), MaxBlobBytes: cfg.MaxBlobBytes, Logger: log,
		Residency: s.Manager, Resources: s.Resources, Audit: db, GitSync: s.GitOps, Locks: s.Resources,
		Rollouts: rolloutCommands{s.Rollouts},
	}
	if s.Auth != nil {
		mopts.Tokens = s.Auth
	}
	s.Mgmt = mgmt.NewHandler(s.Registry, mopts)
	mux.Handle("/api/v1/", s.tracked("mgmt", s.Mgmt))
	metrics := s.Metrics.Handler()
	if cfg.MetricsAuth != "off" {
		metrics = guardedRoute(MetricsRule, metrics)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	if s.httpSrv, err = newHTTPServer(cfg, recoverer(s.webGuard(s.Guard.HTTP(mux)), log), s.requests, log); err != nil {
		return nil, err
	}
	s.httpSrv.TLSConfig = s.tlsConfig
	if cfg.GRPCAddr != "" {
		s.grpcHealth = health.NewServer()
		rules := grpcapi.AccessRules()
		gopts := grpcapi.Options{MaxMessageBytes: int(cfg.MaxBodyBytes), Metrics: s.Metrics, Logger: log, Health: s.grpcHealth, Budget: s.Inflight,
			Authorize: []grpc.UnaryServerInterceptor{s.Guard.UnaryInterceptor(rules)}}
		sopts := []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(
				func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
					done := s.Metrics.Track("grpc")
					defer done()
					return next(ctx, req)
				}),
			grpc.ChainStreamInterceptor(s.Guard.StreamInterceptor(rules)),
		}
		if s.tlsConfig != nil {
			sopts = append(sopts, grpc.Creds(credentials.NewTLS(s.tlsConfig)))
		}
		s.grpcSrv = grpcapi.NewGRPCServer(gopts, sopts...)
		s.grpcAPI = grpcapi.New(gw, gopts)
		s.grpcAPI.Register(s.grpcSrv)
	}
	if err := s.checkExposure(); err != nil {
		return nil, err
	}
	if err := s.bootstrap(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// MetricsRule is what /metrics needs unless metricsAuth is off: a reader of
// every namespace (a viewer token with scope *), as Prometheus scrapes with a
// bearer token.
var MetricsRule = auth.NeedsCluster(auth.PermRead)

// HTTPAddr is the bound REST address (useful with port 0).
func (s *System) HTTPAddr() string { return s.httpLn.Addr().String() }

// GRPCAddr is the bound gRPC address, or "" when gRPC is off.
func (s *System) GRPCAddr() string {
	if s.grpcLn == nil {
		return ""
	}
	return s.grpcLn.Addr().String()
}

// Run serves until ctx ends, then shuts down. Its parts run under one run
// group, started in this order and stopped in reverse: the model manager's
// background work (scale to zero, autoscaling), the tokens' last-used writer,
// the resource controllers (the router's; serving waits for their first
// pass), then the REST and gRPC servers. Stopping the servers drains them:
// stop accepting, let in-flight requests finish until the ShutdownTimeout
// deadline, then cancel what is left (running requests and batches answer 503
// / UNAVAILABLE "server is shutting down") and close the remaining
// connections after shutdownGrace. Then models and the store are closed. Run
// returns within ShutdownTimeout plus about 2×shutdownGrace.
func (s *System) Run(ctx context.Context) error {
	g := run.NewGroup(s.Log)
	g.Add("models", run.Func(func(ctx context.Context) error {
		return s.Manager.Start(ctx)
	}))
	if s.Auth != nil {
		g.Add("tokens", s.Auth)
	}
	g.Add("resources", s.Resources)
	// Not a Readier: serving never waits for a git host (what was synced
	// is in the registry, and the router's controller serves it).
	g.Add("gitops", run.Func(s.GitOps.Start))
	// Stopped before the models and after the servers: what triggers hold
	// in flight is scored and published, or left for redelivery.
	g.Add("triggers", run.Func(s.Triggers.Start))
	g.Add("api", run.Func(s.serve))
	runErr := g.Run(ctx)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		s.closeAll()
	}()
	select {
	case <-closed:
		s.Log.Info("stopped")
	case <-time.After(shutdownGrace):
		// A model run that ignores cancellation must not hold the process.
		s.Log.Error("stopped without closing every model: runs still in progress after the shutdown deadline")
	}
	return runErr
}

// serve runs the REST and gRPC servers until ctx ends or one fails, then
// drains both.
func (s *System) serve(ctx context.Context) error {
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		serve := func() error { return s.httpSrv.Serve(s.httpLn) }
		if s.tlsConfig != nil {
			serve = func() error { return s.httpSrv.ServeTLS(s.httpLn, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	}()
	if s.grpcSrv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.grpcSrv.Serve(s.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("grpc server: %w", err)
			}
		}()
	}
	s.Log.Info("nimbus serving", "http", s.URL(), "grpc", s.GRPCAddr(), "data_dir", s.Config.DataDir,
		"auth", s.Config.Auth, "tls", s.tlsConfig != nil)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.Log.Info("shutting down", "timeout", s.Config.ShutdownTimeout)
	s.drain(time.Now().Add(s.Config.ShutdownTimeout))
	wg.Wait()
	return err
}

// drain stops accepting and waits until deadline for REST and gRPC requests to
// finish. Past it, the requests left are cancelled (REST contexts, batches and
// loads), get shutdownGrace to answer, and then their connections are closed.
func (s *System) drain(deadline time.Time) {
	if s.grpcHealth != nil {
		s.grpcHealth.Shutdown()
	}
	dctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.httpSrv.Shutdown(dctx) }()
	grpcDone := make(chan struct{})
	if s.grpcSrv != nil {
		go func() { s.grpcSrv.GracefulStop(); close(grpcDone) }()
	} else {
		close(grpcDone)
	}
	httpErr := <-httpDone // at the deadline at the latest
	grpcDrained := false
	select {
	case <-grpcDone:
		grpcDrained = true
	case <-dctx.Done():
	}
	if httpErr == nil && grpcDrained {
		return
	}
	s.Log.Warn("shutdown deadline passed: cancelling the requests still in flight", "timeout", s.Config.ShutdownTimeout)
	s.cancelRequests(errShutdown)
	s.Manager.Abort()
	gctx, gcancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer gcancel()
	if httpErr != nil {
		if err := s.httpSrv.Shutdown(gctx); err != nil {
			s.Log.Warn("closing REST connections still open after the shutdown deadline", "err", err)
			s.httpSrv.Close()
		}
	}
	select {
	case <-grpcDone:
	case <-gctx.Done():
		s.Log.Warn("closing gRPC connections still open after the shutdown deadline")
		s.grpcSrv.Stop()
		<-grpcDone
	}
}

func (s *System) closeAll() {
	// After Run the servers have closed them already; after a failed New nobody
	// has, and the ports must not stay taken. A second Close is harmless.
	for _, ln := range []net.Listener{s.httpLn, s.grpcLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if s.Router != nil {
		s.Router.Close() // shadow copies finish before their models close
	}
	if s.Manager != nil {
		s.Manager.Close()
	}
	if s.Store != nil {
		if err := s.Store.Close(); err != nil {
			s.Log.Warn("closing store", "err", err)
		}
	}
	s.cancelRequests(errShutdown) // releases the context; no request is left
}

// inflightBudget resolves maxInflightBytes: it must leave room for a request of
// the largest size (a percentage is only known at start).
func inflightBudget(cfg config.Config, log *slog.Logger) (*limits.Budget, error) {
	n, err := cfg.MaxInflightBytesValue()
	if err != nil {
		return nil, err
	}
	if n != 0 && n < cfg.MaxBodyBytes {
		return nil, fmt.Errorf("maxInflightBytes %q is %d bytes, less than maxBodyBytes (%d): no request of the largest size could be served",
			cfg.MaxInflightBytes, n, cfg.MaxBodyBytes)
	}
	log.Info("budget for request bytes in flight", "maxInflightBytes", cfg.MaxInflightBytes, "bytes", n)
	return limits.NewBudget(n), nil
}

// newHTTPServer builds the REST server: header, body and response deadlines
// (readTimeout, writeTimeout, minTransferRate: see limits.Timeouts), an idle
// timeout, and requests' contexts derived from base, so that a shutdown past
// its deadline can cancel them.
func newHTTPServer(cfg config.Config, h http.Handler, base context.Context, log *slog.Logger) (*http.Server, error) {
	rate, err := cfg.MinTransferRateBytes()
	if err != nil {
		return nil, fmt.Errorf("minTransferRate: %w", err)
	}
	t := limits.Timeouts{Read: cfg.ReadTimeout, Write: cfg.WriteTimeout, MinRate: rate}
	return &http.Server{
		Handler:           t.Handler(h),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return base },
	}, nil
}

// tracked counts requests in flight per protocol.
func (s *System) tracked(protocol string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := s.Metrics.Track(protocol)
		defer done()
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a handler panic into a 500 and a log line instead of a dead connection.
func recoverer(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
				http.Error(w, `{"error": "internal error"}`, http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
