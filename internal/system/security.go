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
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/cliconfig"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
)

// AdminTokenFile is where the bootstrap admin token is written, in the data dir.
const AdminTokenFile = "admin.token"

// setupAuth builds the authenticator (nil with auth off).
func (s *System) setupAuth(db *sqlite.Store) error {
	if s.Config.Auth == "off" {
		s.Guard = auth.NewGuard(nil)
		return nil
	}
	limit, err := auth.ParseLimit(s.Config.RateLimitPerToken)
	if err != nil {
		return err
	}
	s.Auth = auth.New(auth.Options{Store: db, DefaultLimit: limit, Logger: s.Log})
	s.Guard = auth.NewGuard(s.Auth)
	return nil
}

// checkExposure refuses auth=off unless every listener is on loopback, and
// warns about plain text on other addresses. It runs once the listeners are
// bound, so "localhost" and port 0 are what they turned out to be.
func (s *System) checkExposure() error {
	addrs := []string{s.HTTPAddr(), s.GRPCAddr()}
	loopback := auth.LoopbackOnly(addrs...)
	if s.Config.Auth == "off" {
		if !loopback {
			return fmt.Errorf("auth=off is refused on a non-loopback address (%s): every caller would be an admin; "+
				"keep auth on and give callers tokens (nimbus tokens create)", strings.Join(nonEmpty(addrs), ", "))
		}
		s.Log.Warn("AUTH IS OFF: every caller is an admin of every namespace. For experiments on this machine only; " +
			"restart without --auth=off before anyone else can reach it")
	}
	if !loopback && s.tlsConfig == nil {
		s.Log.Warn("serving plain text on a non-loopback address: tokens cross the network readable; set --tls-cert and --tls-key",
			"http", s.HTTPAddr(), "grpc", s.GRPCAddr())
	}
	return nil
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// bootstrap makes the first admin token on a fresh data dir, writes it to
// DATA/admin.token (0600) and, while the server listens on loopback only, adds
// a context for this server to the CLI config file, so the CLI on this machine
// works with no setup (as kind writes a kubeconfig).
func (s *System) bootstrap(ctx context.Context) error {
	if s.Auth == nil {
		return nil
	}
	tok, err := s.Auth.Bootstrap(ctx)
	if err != nil || tok == "" {
		return err
	}
	path := filepath.Join(s.Config.DataDir, AdminTokenFile)
	if err := writeSecretFile(path, tok); err != nil {
		return err
	}
	s.Log.Info("created the bootstrap admin token; keep it safe (nimbus server reset-admin-token makes a new one)", "file", path)
	if !auth.LoopbackOnly(s.HTTPAddr(), s.GRPCAddr()) || s.Config.CLIConfig == "none" {
		s.Log.Info("use it with: nimbus login --server " + s.URL() + " --token \"$(cat " + path + ")\"")
		return nil
	}
	cfgPath := s.Config.CLIConfig
	if cfgPath == "" {
		cfgPath = cliconfig.Path(os.Getenv)
	}
	name := contextName(s.HTTPAddr())
	err = cliconfig.Update(cfgPath, func(f *cliconfig.File) error {
		c, _ := f.Get(name)
		c.Name, c.Server, c.Token = name, s.URL(), tok
		if s.tlsConfig != nil {
			c.CertificateAuthority = s.Config.TLSCert // a self-signed certificate is its own CA
		}
		f.Set(c)
		f.CurrentContext = name
		return nil
	})
	if err != nil {
		// The token exists and is in admin.token; the CLI just needs a login.
		s.Log.Warn("could not add a CLI context for this server", "file", cfgPath, "err", err)
		return nil
	}
	s.Log.Info("the CLI on this machine now talks to this server", "context", name, "file", cfgPath)
	return nil
}

// contextName names the CLI context of a local server: "local" on the default
// address, "local-PORT" on others.
func contextName(addr string) string {
	if addr == config.Default().HTTPAddr {
		return "local"
	}
	_, port, _ := net.SplitHostPort(addr)
	return "local-" + port
}

// URL is the server's REST base URL.
func (s *System) URL() string {
	scheme := "http"
	if s.tlsConfig != nil {
		scheme = "https"
	}
	return scheme + "://" + s.HTTPAddr()
}

// writeSecretFile writes data to path atomically, readable by the owner only.
func writeSecretFile(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".admin-token-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(data + "\n")
		if err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ResetAdminToken revokes the bootstrap admin token(s) of the data dir and
// writes a new one to DATA/admin.token; it works while a server runs on the
// same data dir (which stops accepting the old token within auth.CacheTTL).
// It returns the file's path.
func ResetAdminToken(ctx context.Context, dataDir string) (string, error) {
	dbPath := filepath.Join(dataDir, "nimbus.db")
	if _, err := os.Stat(dbPath); err != nil {
		return "", fmt.Errorf("no Nimbus data dir at %s: %w", dataDir, err)
	}
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		return "", err
	}
	defer db.Close()
	tok, err := auth.New(auth.Options{Store: db}).ResetAdmin(ctx)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dataDir, AdminTokenFile)
	return path, writeSecretFile(path, tok)
}

// webGuard puts the browser protections (Host and Origin checks, CORS for the
// configured origins) in front of h, answering refusals in the format of the
// API the path belongs to.
func (s *System) webGuard(h http.Handler) http.Handler {
	return auth.Web(auth.WebOptions{
		AllowedOrigins: s.Config.CORSAllowedOrigins,
		AllowedHosts:   s.Config.AllowedHosts,
		LoopbackOnly:   auth.IsLoopbackAddr(s.Config.HTTPAddr),
		Refuse: func(w http.ResponseWriter, r *http.Request, status int, msg string) {
			kind := errs.PermissionDenied
			if status != kind.HTTPStatus() {
				kind = errs.InvalidArgument
			}
			writeAPIError(w, r, errs.New(kind, "%s", msg))
		},
	}, h)
}

// writeAPIError answers err in the format of the API r's path belongs to.
func writeAPIError(w http.ResponseWriter, r *http.Request, err error) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		mgmt.WriteError(w, err)
		return
	}
	oip.WriteError(w, r, err)
}

// guardedRoute serves h to callers rule lets through (routes of the system's
// own: /metrics).
func guardedRoute(rule auth.Rule, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := auth.Authorize(r.Context(), rule, ""); err != nil {
			writeAPIError(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// certReloader serves the certificate in the configured files, re-reading them
// when either changes (checked at most once a second), so a renewed certificate
// is served without a restart. A renewal that does not load keeps the old one.
type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	modCert, modKey   time.Time
	checked           time.Time
	log               *slog.Logger
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) load() error {
	cs, err1 := os.Stat(c.certFile)
	ks, err2 := os.Stat(c.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.modCert, c.modKey = &cert, cs.ModTime(), ks.ModTime()
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Second {
		c.checked = now
		if changed(c.certFile, c.modCert) || changed(c.keyFile, c.modKey) {
			old := c.cert
			if err := c.load(); err != nil {
				c.cert = old
				c.log.Warn("renewed TLS certificate not loaded; serving the previous one", "err", err)
			} else {
				c.log.Info("TLS certificate reloaded", "file", c.certFile)
			}
		}
	}
	return c.cert, nil
}

func changed(path string, mod time.Time) bool {
	st, err := os.Stat(path)
	return err == nil && !st.ModTime().Equal(mod)
}

// setupTLS prepares the TLS config both listeners share (nil without TLS).
func (s *System) setupTLS() error {
	if s.Config.TLSCert == "" {
		return nil
	}
	r, err := newCertReloader(s.Config.TLSCert, s.Config.TLSKey, s.Log.With("component", "tls"))
	if err != nil {
		return err
	}
	s.tlsConfig = &tls.Config{GetCertificate: r.get, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	return nil
}

// Route is one REST route the server answers and what a caller needs for it.
type Route struct {
	Method, Pattern string
	Rule            auth.Rule
}

// Routes lists every REST route the server registers: the OIP API, the
// management API and the server's own (/metrics, /healthz). The access matrix
// test walks it, so a route added anywhere is tested for every role.
func (s *System) Routes() []Route {
	var out []Route
	for _, r := range s.OIP.Routes() {
		out = append(out, Route{r.Method, r.Pattern, r.Rule})
	}
	for _, r := range s.Mgmt.Routes() {
		out = append(out, Route{r.Method, r.Pattern, r.Rule})
	}
	metrics := MetricsRule
	if s.Config.MetricsAuth == "off" {
		metrics = auth.Open
	}
	return append(out, Route{"GET", "/metrics", metrics}, Route{"GET", "/healthz", auth.Open})
}

// GRPCServices is what the gRPC server serves (nil without gRPC).
func (s *System) GRPCServices() map[string]grpc.ServiceInfo {
	if s.grpcSrv == nil {
		return nil
	}
	return s.grpcSrv.GetServiceInfo()
}
