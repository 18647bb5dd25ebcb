// Package config holds the server's typed configuration: defaults, loading from an
// optional YAML file, NIMBUS_* environment variables and flags (in rising order of
// precedence), and validation at load with messages that name the setting.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nimbus-ai/nimbus/egress"
)

// Config is the server configuration.
type Config struct {
	// DataDir holds the metadata database and the artifact store.
	DataDir string `yaml:"dataDir"`
	// HTTPAddr serves OIP REST, the management API and /metrics.
	HTTPAddr string `yaml:"httpAddr"`
	// GRPCAddr serves OIP gRPC, health and reflection. Empty disables gRPC.
	GRPCAddr string `yaml:"grpcAddr"`
	// MaxBodyBytes limits REST request bodies and gRPC messages alike.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// MaxBlobBytes limits one uploaded artifact.
	MaxBlobBytes int64 `yaml:"maxBlobBytes"`
	// ORTLib is the path of libonnxruntime.so; empty means search (see runtime/onnx).
	ORTLib string `yaml:"ortLib"`
	// LogFormat is text or json; LogLevel is debug, info, warn or error.
	LogFormat string `yaml:"logFormat"`
	LogLevel  string `yaml:"logLevel"`
	// ShutdownTimeout bounds how long in-flight requests may drain on shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
	// BlobGCGrace protects freshly uploaded, not yet referenced artifacts from GC.
	BlobGCGrace time.Duration `yaml:"blobGCGrace"`
	// MemoryBudget bounds what loaded model versions may cost together: a size
	// ("2GiB", "512MB"), a percentage of the machine's memory ("50%", the cgroup
	// limit where one is set), or "0" for unlimited. Past it, least recently used
	// idle versions are evicted.
	MemoryBudget string `yaml:"memoryBudget"`
	// SourceDir is the one directory file:// sources of declared Model versions
	// may be read from (symlinks resolved); empty refuses file:// sources.
	SourceDir string `yaml:"sourceDir"`

	// Security: see docs/SECURITY.md.

	// Auth is "on" (every endpoint but health needs a token; the default) or
	// "off" (every caller is an admin: for experiments, refused unless every
	// listener is on loopback).
	Auth string `yaml:"auth"`
	// MetricsAuth is "on" (/metrics needs a viewer token with scope *, as
	// Prometheus sends with bearer_token_file) or "off" (open).
	MetricsAuth string `yaml:"metricsAuth"`
	// TLSCert and TLSKey are PEM files; set both to serve REST and gRPC over
	// TLS (re-read when they change, for rotation without a restart).
	TLSCert string `yaml:"tlsCert"`
	TLSKey  string `yaml:"tlsKey"`
	// CORSAllowedOrigins may call the REST API from a browser page on another
	// origin ("https://ui.example.com"); no other origin gets CORS headers.
	CORSAllowedOrigins []string `yaml:"corsAllowedOrigins"`
	// AllowedHosts are Host names answered besides loopback ones while the
	// server listens on loopback only (DNS rebinding protection); on other
	// addresses, when set, the only Host names answered.
	AllowedHosts []string `yaml:"allowedHosts"`
	// RateLimitPerToken and RateLimitPerService are token buckets, "RPS" or
	// "RPS:BURST" ("" or "0": none): every token's requests, and each
	// InferenceService's inference requests (a service's spec.rateLimit wins).
	RateLimitPerToken   string `yaml:"rateLimitPerToken"`
	RateLimitPerService string `yaml:"rateLimitPerService"`
	// CLIConfig is the CLI config file the server adds a context to (server
	// URL and bootstrap token) when it makes its bootstrap token while
	// listening on loopback only: "" is the CLI's default
	// (~/.config/nimbus/config.yaml), "none" writes nothing.
	CLIConfig string `yaml:"cliConfig"`

	// Egress, fetches and secrets (connections made on a caller's behalf).

	// EgressAllow lists the special-purpose ranges (loopback, private,
	// link-local, ULA, CGNAT, …; CIDRs or addresses) that connections made on
	// a caller's behalf may reach; public addresses always may. Unset: loopback
	// while every listener of the server is on loopback, nothing otherwise.
	// Empty (or "none"): nothing.
	EgressAllow []string `yaml:"egressAllow"`
	// SourceFetchTimeout bounds one artifact fetch from its start to its last
	// byte, however steadily the server trickles.
	SourceFetchTimeout time.Duration `yaml:"sourceFetchTimeout"`
	// SecretsDir is the one directory {file: NAME} secret references are read
	// from; empty refuses them.
	SecretsDir string `yaml:"secretsDir"`
	// GitURL, GitRef and GitPath declare the one-repo case: the server applies
	// a GitSource named "server" in the default namespace that syncs them,
	// as itself (an admin of every namespace).
	GitURL  string `yaml:"gitURL"`
	GitRef  string `yaml:"gitRef"`
	GitPath string `yaml:"gitPath"`
	// Connections are broker Connections the server declares at start (as
	// itself, an admin): each is applied as a kind: Connection in its
	// namespace, so deployers' Triggers name it and never a raw address.
	// The file wins over changes made through the API at every start; a
	// connection removed from the file stays until deleted (nimbus delete
	// connection NAME). Not settable from the environment.
	Connections []Connection `yaml:"connections"`
	// ReadTimeout is the time a REST request body may take to arrive, plus one
	// second per MinTransferRate bytes received (so large uploads on slow links
	// still arrive); 0 means no body deadline.
	ReadTimeout time.Duration `yaml:"readTimeout"`
	// WriteTimeout is the same for a response, from its first byte; 0 means no
	// write deadline.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// MinTransferRate is the rate, per second ("64KiB"), that earns a body or
	// response more time past ReadTimeout / WriteTimeout; "0" makes them fixed.
	MinTransferRate string `yaml:"minTransferRate"`
	// MaxInflightBytes bounds the bytes requests in flight hold together (REST
	// bodies and gRPC messages, and what decoding them allocates): a size
	// ("1GiB"), a percentage of the machine's memory ("10%"), or "0" for
	// unlimited. Requests past it get 429 / RESOURCE_EXHAUSTED with Retry-After.
	MaxInflightBytes string `yaml:"maxInflightBytes"`
}

// Connection is one entry of connections: a name, a namespace (default
// "default") and exactly one bus as in a Connection's spec, e.g.
// nats: {url: "nats://127.0.0.1:4222", auth: {tokenFrom: {env: NIMBUS_SECRET_NATS}}}.
// The bus is checked as a Connection's spec is, when the server applies it.
type Connection struct {
	Name      string         `yaml:"name"`
	Namespace string         `yaml:"namespace,omitempty"`
	Bus       map[string]any `yaml:",inline"`
}

// Default returns the embedded default configuration.
func Default() Config {
	return Config{
		DataDir:         "./nimbus-data",
		HTTPAddr:        "127.0.0.1:8080",
		GRPCAddr:        "127.0.0.1:8081",
		MaxBodyBytes:    64 << 20,
		MaxBlobBytes:    4 << 30,
		LogFormat:       "text",
		LogLevel:        "info",
		ShutdownTimeout: 30 * time.Second,
		BlobGCGrace:     10 * time.Minute,
		MemoryBudget:    "50%",
		Auth:            "on",
		MetricsAuth:     "on",

		SourceFetchTimeout: 10 * time.Minute,

		// Request-path limits (internal/limits).
		ReadTimeout:      30 * time.Second,
		WriteTimeout:     30 * time.Second,
		MinTransferRate:  "64KiB",
		MaxInflightBytes: "1GiB",
	}
}

// LoadFile applies a YAML file on top of c. Unknown keys are errors that name file and line.
func (c *Config) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return c.loadYAML(path, data)
}

func (c *Config) loadYAML(name string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file changes nothing
		}
		return yamlError(name, err)
	}
	return nil
}

// yamlError rewrites yaml.v3's "line N: msg" errors as "file:N: msg", one per line.
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]error, 0, len(te.Errors))
		for _, e := range te.Errors {
			msgs = append(msgs, errors.New(fileLine(name, e)))
		}
		return errors.Join(msgs...)
	}
	return errors.New(fileLine(name, strings.TrimPrefix(err.Error(), "yaml: ")))
}

func fileLine(name, msg string) string {
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			return name + ":" + n + ": " + after
		}
	}
	return name + ": " + msg
}

// Env names each setting's environment variable.
var Env = map[string]string{
	"dataDir":         "NIMBUS_DATA_DIR",
	"httpAddr":        "NIMBUS_HTTP_ADDR",
	"grpcAddr":        "NIMBUS_GRPC_ADDR",
	"maxBodyBytes":    "NIMBUS_MAX_BODY_BYTES",
	"maxBlobBytes":    "NIMBUS_MAX_BLOB_BYTES",
	"ortLib":          "NIMBUS_ORT_LIB",
	"logFormat":       "NIMBUS_LOG_FORMAT",
	"logLevel":        "NIMBUS_LOG_LEVEL",
	"shutdownTimeout": "NIMBUS_SHUTDOWN_TIMEOUT",
	"blobGCGrace":     "NIMBUS_BLOB_GC_GRACE",
	"memoryBudget":    "NIMBUS_MEMORY_BUDGET",
	"sourceDir":       "NIMBUS_SOURCE_DIR",

	"auth":                "NIMBUS_AUTH",
	"metricsAuth":         "NIMBUS_METRICS_AUTH",
	"tlsCert":             "NIMBUS_TLS_CERT",
	"tlsKey":              "NIMBUS_TLS_KEY",
	"corsAllowedOrigins":  "NIMBUS_CORS_ALLOWED_ORIGINS",
	"allowedHosts":        "NIMBUS_ALLOWED_HOSTS",
	"rateLimitPerToken":   "NIMBUS_RATE_LIMIT_PER_TOKEN",
	"rateLimitPerService": "NIMBUS_RATE_LIMIT_PER_SERVICE",
	"cliConfig":           "NIMBUS_CLI_CONFIG",
	"egressAllow":         "NIMBUS_EGRESS_ALLOW",
	"sourceFetchTimeout":  "NIMBUS_SOURCE_FETCH_TIMEOUT",
	"gitURL":              "NIMBUS_GIT_URL",
	"gitRef":              "NIMBUS_GIT_REF",
	"gitPath":             "NIMBUS_GIT_PATH",
	"secretsDir":          "NIMBUS_SECRETS_DIR",
	// Request-path limits (internal/limits).
	"readTimeout":      "NIMBUS_READ_TIMEOUT",
	"writeTimeout":     "NIMBUS_WRITE_TIMEOUT",
	"minTransferRate":  "NIMBUS_MIN_TRANSFER_RATE",
	"maxInflightBytes": "NIMBUS_MAX_INFLIGHT_BYTES",
}

// LoadEnv applies NIMBUS_* variables found through lookup (os.LookupEnv in production).
func (c *Config) LoadEnv(lookup func(string) (string, bool)) error {
	var errList []error
	str := func(key string, dst *string) {
		if v, ok := lookup(Env[key]); ok {
			*dst = v
		}
	}
	i64 := func(key string, dst *int64) {
		if v, ok := lookup(Env[key]); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				errList = append(errList, fmt.Errorf("%s=%q: not an integer", Env[key], v))
				return
			}
			*dst = n
		}
	}
	dur := func(key string, dst *time.Duration) {
		if v, ok := lookup(Env[key]); ok {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				errList = append(errList, fmt.Errorf("%s=%q: not a duration (e.g. 30s)", Env[key], v))
				return
			}
			*dst = d
		}
	}
	str("dataDir", &c.DataDir)
	str("httpAddr", &c.HTTPAddr)
	str("grpcAddr", &c.GRPCAddr)
	i64("maxBodyBytes", &c.MaxBodyBytes)
	i64("maxBlobBytes", &c.MaxBlobBytes)
	str("ortLib", &c.ORTLib)
	str("logFormat", &c.LogFormat)
	str("logLevel", &c.LogLevel)
	dur("shutdownTimeout", &c.ShutdownTimeout)
	dur("blobGCGrace", &c.BlobGCGrace)
	str("memoryBudget", &c.MemoryBudget)
	str("sourceDir", &c.SourceDir)
	list := func(key string, dst *[]string) {
		if v, ok := lookup(Env[key]); ok {
			*dst = SplitList(v)
		}
	}
	str("auth", &c.Auth)
	str("metricsAuth", &c.MetricsAuth)
	str("tlsCert", &c.TLSCert)
	str("tlsKey", &c.TLSKey)
	list("corsAllowedOrigins", &c.CORSAllowedOrigins)
	list("allowedHosts", &c.AllowedHosts)
	str("rateLimitPerToken", &c.RateLimitPerToken)
	str("rateLimitPerService", &c.RateLimitPerService)
	str("cliConfig", &c.CLIConfig)

	if v, ok := lookup(Env["egressAllow"]); ok {
		c.EgressAllow = SplitList(v)
	}
	dur("sourceFetchTimeout", &c.SourceFetchTimeout)
	str("secretsDir", &c.SecretsDir)
	str("gitURL", &c.GitURL)
	str("gitRef", &c.GitRef)
	str("gitPath", &c.GitPath)
	dur("readTimeout", &c.ReadTimeout)
	dur("writeTimeout", &c.WriteTimeout)
	str("minTransferRate", &c.MinTransferRate)
	str("maxInflightBytes", &c.MaxInflightBytes)
	return errors.Join(errList...)
}

// SplitList splits a comma-separated setting; the result is never nil, so
// "set to nothing" stays apart from "unset".
func SplitList(s string) []string {
	out := []string{}
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// Validate reports every invalid setting at once.
func (c *Config) Validate() error {
	var errList []error
	bad := func(field, format string, args ...any) {
		errList = append(errList, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("dataDir", "must not be empty")
	}
	if err := checkAddr(c.HTTPAddr); err != nil {
		bad("httpAddr", "%v", err)
	}
	if c.GRPCAddr != "" {
		if err := checkAddr(c.GRPCAddr); err != nil {
			bad("grpcAddr", "%v", err)
		}
	}
	if c.MaxBodyBytes < 1024 {
		bad("maxBodyBytes", "must be at least 1024, got %d", c.MaxBodyBytes)
	}
	if c.MaxBlobBytes < 1 {
		bad("maxBlobBytes", "must be positive, got %d", c.MaxBlobBytes)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("logFormat", "must be text or json, got %q", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("logLevel", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdownTimeout", "must be positive, got %s", c.ShutdownTimeout)
	}
	if c.BlobGCGrace < 0 {
		bad("blobGCGrace", "must not be negative, got %s", c.BlobGCGrace)
	}
	if _, err := ParseBytes(c.MemoryBudget, 1<<40); err != nil { // syntax only: the machine is read at start
		bad("memoryBudget", "%v", err)
	}
	c.validateSecurity(bad)

	if _, err := egress.ParseAllow(c.EgressAllow...); err != nil {
		bad("egressAllow", "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if c.SourceFetchTimeout <= 0 {
		bad("sourceFetchTimeout", "must be positive, got %s", c.SourceFetchTimeout)
	}
	if c.ReadTimeout < 0 {
		bad("readTimeout", "must not be negative (0 disables it), got %s", c.ReadTimeout)
	}
	if c.WriteTimeout < 0 {
		bad("writeTimeout", "must not be negative (0 disables it), got %s", c.WriteTimeout)
	}
	if strings.HasSuffix(strings.TrimSpace(c.MinTransferRate), "%") {
		bad("minTransferRate", "%q: a rate is a size per second (e.g. 64KiB), not a percentage", c.MinTransferRate)
	} else if _, err := ParseBytes(c.MinTransferRate, 0); err != nil {
		bad("minTransferRate", "%v", err)
	}
	seen := map[string]bool{}
	for i, cn := range c.Connections {
		field := fmt.Sprintf("connections[%d]", i)
		ns := cn.Namespace
		if ns == "" {
			ns = "default"
		}
		switch {
		case cn.Name == "":
			bad(field+".name", "required")
		case seen[ns+"/"+cn.Name]:
			bad(field+".name", "connection %s is declared twice in namespace %s", cn.Name, ns)
		}
		seen[ns+"/"+cn.Name] = true
		if len(cn.Bus) != 1 {
			bad(field, "name exactly one bus: nats, mqtt, redis or kafka (with its url or brokers)")
		}
	}
	if n, err := ParseBytes(c.MaxInflightBytes, 1<<40); err != nil { // syntax; a percentage is checked at start
		bad("maxInflightBytes", "%v", err)
	} else if n != 0 && n < c.MaxBodyBytes && !strings.HasSuffix(strings.TrimSpace(c.MaxInflightBytes), "%") {
		bad("maxInflightBytes", "%s is less than maxBodyBytes (%d): no request of the largest size could be served; raise it or write 0 for unlimited",
			c.MaxInflightBytes, c.MaxBodyBytes)
	}
	return errors.Join(errList...)
}

// validateSecurity checks the security settings. Whether auth may be off
// depends on the addresses actually bound, so the server checks that at start.
func (c *Config) validateSecurity(bad func(field, format string, args ...any)) {
	for field, v := range map[string]string{"auth": c.Auth, "metricsAuth": c.MetricsAuth} {
		if v != "on" && v != "off" {
			bad(field, "must be on or off, got %q", v)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tlsCert", "tlsCert and tlsKey go together: set both or neither")
	}
	for _, o := range c.CORSAllowedOrigins {
		if err := checkOrigin(o); err != nil {
			bad("corsAllowedOrigins", "%v", err)
		}
	}
	for _, h := range c.AllowedHosts {
		if h == "" || strings.ContainsAny(h, " /:@") && !strings.HasPrefix(h, "[") {
			bad("allowedHosts", "%q: want a host name or IP address without port", h)
		}
	}
	for field, v := range map[string]string{"rateLimitPerToken": c.RateLimitPerToken, "rateLimitPerService": c.RateLimitPerService} {
		if _, _, err := ParseRate(v); err != nil {
			bad(field, "%v", err)
		}
	}
}

// checkOrigin accepts a browser origin: scheme://host[:port], nothing more.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want an origin such as https://ui.example.com[:port]", o)
	}
	return nil
}

// ParseRate reads a rate limit "RPS" or "RPS:BURST" ("" and "0" mean none)
// into requests per second and burst (0: the default, max(1, RPS)).
func ParseRate(s string) (rps float64, burst int, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, nil
	}
	r, b, hasBurst := strings.Cut(s, ":")
	rps, err = strconv.ParseFloat(strings.TrimSuffix(r, "/s"), 64)
	if err != nil || rps < 0 || rps > 1e9 || rps != rps {
		return 0, 0, fmt.Errorf("rate limit %q: want requests per second, optionally :burst (e.g. 100 or 50:200)", s)
	}
	if hasBurst {
		if burst, err = strconv.Atoi(b); err != nil || burst < 1 || burst > 1e9 {
			return 0, 0, fmt.Errorf("rate limit %q: burst must be a whole number from 1 to 1e9", s)
		}
	}
	return rps, burst, nil
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT", addr)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q has an invalid host", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q has an invalid port", addr)
	}
	return nil
}
