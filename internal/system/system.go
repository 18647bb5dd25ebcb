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
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/ratelimit"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/blob"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/serving/router"
	"github.com/nimbus-ai/nimbus/spec"
	"github.com/nimbus-ai/nimbus/telemetry"
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
	Resources *spec.Engine
	// Auth verifies and manages tokens (nil with auth off); Guard attaches
	// identities to requests either way.
	Auth  *auth.Authenticator
	Guard *auth.Guard
	// OIP and Mgmt are the REST APIs, kept for their route tables.
	OIP  *oip.Handler
	Mgmt *mgmt.Handler

	httpLn  net.Listener
	grpcLn  net.Listener
	httpSrv *http.Server
	grpcSrv *grpc.Server
	grpcAPI *grpcapi.Server
	// grpcHealth turns NOT_SERVING when shutdown starts, so balancers stop sending.
	grpcHealth *health.Server
	tlsConfig  *tls.Config
}

// New opens the data dir and binds the listeners. On error, whatever was opened
// is closed again.
func New(ctx context.Context, cfg config.Config, version string, log *slog.Logger) (_ *System, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	s := &System{Config: cfg, Log: log, Metrics: telemetry.NewMetrics()}
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
	s.Manager = serving.NewManager(s.Registry, s.Blobs, serving.Options{
		Runtimes: []runtime.Runtime{s.Runtime}, Metrics: s.Metrics, Logger: log, Version: version,
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

	serviceLimit, err := ratelimit.Parse(cfg.RateLimitPerService)
	if err != nil {
		return nil, err
	}
	s.Router = router.New(s.Manager, router.Options{Metrics: s.Metrics, Logger: log.With("component", "router"),
		DefaultRateLimit: serviceLimit})
	s.Resources = spec.NewEngine(spec.Options{
		Registry: s.Registry, Resources: db, Audit: db, Routes: routes{s.Router},
		Fetcher:  fetch,
		Observer: observer{s.Manager, s.Router}, Logger: log,
	})
	if err := s.Resources.Restore(ctx); err != nil {
		return nil, err
	}
	gw := gateway{Manager: s.Manager, router: s.Router}

	mux := http.NewServeMux()
	s.OIP = oip.NewHandler(gw, oip.Options{MaxBodyBytes: cfg.MaxBodyBytes, Metrics: s.Metrics, Logger: log.With("component", "oip")})
	oipHandler := s.tracked("rest", s.OIP)
	mux.Handle("/v2/", oipHandler)
	mux.Handle("/v2", oipHandler)
	mux.Handle("/ns/", oipHandler)
	mopts := mgmt.Options{
		UploadDir: filepath.Join(cfg.DataDir, "uploads"), MaxBlobBytes: cfg.MaxBlobBytes, Logger: log,
		Residency: s.Manager, Resources: s.Resources, Audit: db,
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
	s.httpSrv = &http.Server{
		Handler:           recoverer(s.webGuard(s.Guard.HTTP(mux)), log),
		TLSConfig:         s.tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.GRPCAddr != "" {
		s.grpcHealth = health.NewServer()
		gopts := grpcapi.Options{MaxMessageBytes: int(cfg.MaxBodyBytes), Metrics: s.Metrics, Logger: log, Health: s.grpcHealth}
		rules := grpcapi.AccessRules()
		sopts := []grpc.ServerOption{
			grpc.ChainUnaryInterceptor(
				func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
					done := s.Metrics.Track("grpc")
					defer done()
					return next(ctx, req)
				},
				s.Guard.UnaryInterceptor(rules)),
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

// Run serves until ctx ends, then shuts down gracefully: stop accepting, drain
// in-flight requests (bounded by ShutdownTimeout), close models and the store.
func (s *System) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	unloaderCtx, stopUnloader := context.WithCancel(ctx)
	defer stopUnloader()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Manager.Start(unloaderCtx) // scale to zero: unload idle versions
	}()
	if s.Auth != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Auth.Start(unloaderCtx) // last-used times of tokens
		}()
	}
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
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.Log.Info("shutting down", "timeout", s.Config.ShutdownTimeout)
	stopUnloader()
	sctx, cancel := context.WithTimeout(context.Background(), s.Config.ShutdownTimeout)
	defer cancel()
	if s.grpcHealth != nil {
		s.grpcHealth.Shutdown()
	}
	if err := s.httpSrv.Shutdown(sctx); err != nil {
		s.Log.Warn("http shutdown", "err", err)
	}
	if s.grpcSrv != nil {
		stopped := make(chan struct{})
		go func() { s.grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			s.grpcSrv.Stop()
			<-stopped
		}
	}
	wg.Wait()
	s.closeAll()
	s.Log.Info("stopped")
	return runErr
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
