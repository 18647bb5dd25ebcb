package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/system"
	"github.com/nimbus-ai/nimbus/telemetry"
)

// newServerCommand builds `nimbus server`: defaults, then the optional YAML file,
// then NIMBUS_* variables, then flags that were set explicitly.
func newServerCommand() *cobra.Command {
	def := config.Default()
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Nimbus server: registry, OIP v2 REST and gRPC, management API, metrics",
		Long: `Run the Nimbus server on the embedded default: a SQLite registry and a
content-addressed artifact store under --data-dir, OIP v2 REST and the management
API on --http-addr, OIP v2 gRPC on --grpc-addr, Prometheus metrics on /metrics.

Settings come from defaults, then --config FILE (YAML), then NIMBUS_* environment
variables, then flags.`,
		Example: `  nimbus server
  nimbus server --data-dir /var/lib/nimbus --http-addr 0.0.0.0:8080 --grpc-addr 0.0.0.0:8081
  NIMBUS_LOG_FORMAT=json nimbus server --config nimbus.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgFile == "" {
				cfgFile = os.Getenv("NIMBUS_CONFIG")
			}
			cfg, err := serverConfig(cmd.Flags(), cfgFile, os.LookupEnv)
			if err != nil {
				return err
			}
			log, err := telemetry.NewLogger(cmd.ErrOrStderr(), cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				return err
			}
			sys, err := system.New(cmd.Context(), cfg, Version, log)
			if err != nil {
				return err
			}
			return sys.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "YAML config file (env NIMBUS_CONFIG)")
	f.String("data-dir", def.DataDir, "data directory for the registry and artifacts (env NIMBUS_DATA_DIR)")
	f.String("http-addr", def.HTTPAddr, "REST, management API and /metrics address (env NIMBUS_HTTP_ADDR)")
	f.String("grpc-addr", def.GRPCAddr, `gRPC address; "" disables gRPC (env NIMBUS_GRPC_ADDR)`)
	f.Int64("max-body-bytes", def.MaxBodyBytes, "largest REST body and gRPC message (env NIMBUS_MAX_BODY_BYTES)")
	f.String("ort-lib", "", "path to libonnxruntime.so (env NIMBUS_ORT_LIB; default: search .deps/onnxruntime)")
	f.String("log-format", def.LogFormat, "log format: text or json (env NIMBUS_LOG_FORMAT)")
	f.String("log-level", def.LogLevel, "log level: debug, info, warn, error (env NIMBUS_LOG_LEVEL)")
	f.String("memory-budget", def.MemoryBudget, `what loaded models may cost together: "2GiB", "50%" of machine memory, or "0" for unlimited (env NIMBUS_MEMORY_BUDGET)`)
	f.String("source-dir", "", "directory that file:// sources of applied Model versions may be read from (env NIMBUS_SOURCE_DIR; default: none, file:// refused)")
	f.Duration("shutdown-timeout", def.ShutdownTimeout, "how long in-flight requests may drain on shutdown (env NIMBUS_SHUTDOWN_TIMEOUT)")
	f.String("auth", def.Auth, `"on": every endpoint but health needs a token; "off": every caller is an admin (loopback only, for experiments) (env NIMBUS_AUTH)`)
	f.String("metrics-auth", def.MetricsAuth, `"on": /metrics needs a viewer token with scope *; "off": open (env NIMBUS_METRICS_AUTH)`)
	f.String("tls-cert", "", "PEM certificate (chain) to serve REST and gRPC over TLS; re-read when it changes (env NIMBUS_TLS_CERT)")
	f.String("tls-key", "", "PEM private key of --tls-cert (env NIMBUS_TLS_KEY)")
	f.StringSlice("cors-allowed-origins", nil, "origins whose browser pages may call the REST API, e.g. https://ui.example.com (env NIMBUS_CORS_ALLOWED_ORIGINS)")
	f.StringSlice("allowed-hosts", nil, "Host names answered besides loopback ones (DNS rebinding protection), e.g. nimbus.internal (env NIMBUS_ALLOWED_HOSTS)")
	f.String("rate-limit-per-token", "", `requests per second each token may make, "RPS" or "RPS:BURST" (env NIMBUS_RATE_LIMIT_PER_TOKEN; default: none)`)
	f.String("rate-limit-per-service", "", `inference requests per second per InferenceService, "RPS" or "RPS:BURST"; a service's spec.rateLimit wins (env NIMBUS_RATE_LIMIT_PER_SERVICE; default: none)`)
	f.String("cli-config", "", `CLI config file the server adds a context to when it makes its bootstrap token on loopback ("none": never) (env NIMBUS_CLI_CONFIG; default ~/.config/nimbus/config.yaml)`)
	f.String("egress-allow", "", `CIDR[,CIDR...] of loopback/private/link-local ranges the server may connect to on a caller's behalf (artifact fetches), or "none"; public addresses always may (env NIMBUS_EGRESS_ALLOW; default: loopback while every listener is on loopback, else none)`)
	f.Duration("source-fetch-timeout", def.SourceFetchTimeout, "how long one artifact fetch may take from start to end (env NIMBUS_SOURCE_FETCH_TIMEOUT)")
	f.String("secrets-dir", "", "directory that {file: NAME} secret references are read from (env NIMBUS_SECRETS_DIR; default: none, file secrets refused)")
	f.String("git-url", "", `a git repository to sync, as a GitSource named "server" in the default namespace: https://..., file:///path or /path (under --source-dir) (env NIMBUS_GIT_URL)`)
	f.String("git-ref", "", "branch, tag or commit of --git-url (env NIMBUS_GIT_REF; default: the remote's default branch)")
	f.String("git-path", "", "folder of --git-url whose YAML files declare the resources (env NIMBUS_GIT_PATH; default: the whole repository)")
	f.Duration("read-timeout", def.ReadTimeout, "time a request body may take, plus 1s per --min-transfer-rate bytes; 0: none (env NIMBUS_READ_TIMEOUT)")
	f.Duration("write-timeout", def.WriteTimeout, "time a response may take from its first byte, plus 1s per --min-transfer-rate bytes; 0: none (env NIMBUS_WRITE_TIMEOUT)")
	f.String("min-transfer-rate", def.MinTransferRate, `rate per second that earns a body or response more time, e.g. "64KiB"; "0": fixed timeouts (env NIMBUS_MIN_TRANSFER_RATE)`)
	f.String("max-inflight-bytes", def.MaxInflightBytes, `bytes requests in flight may hold together: "1GiB", "10%" of memory, or "0" for unlimited; past it 429 (env NIMBUS_MAX_INFLIGHT_BYTES)`)
	cmd.AddCommand(resetAdminTokenCommand())
	return cmd
}

func resetAdminTokenCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "reset-admin-token",
		Short: "Revoke the bootstrap admin token and write a new one to DATA_DIR/admin.token",
		Long: `Run on the server's machine by whoever can read the data dir: revokes the
bootstrap admin token (the running server stops taking it within a second) and
writes a new one to <data-dir>/admin.token (mode 0600). Other tokens keep working.`,
		Example: `  nimbus server reset-admin-token --data-dir ./nimbus-data
  nimbus login --server http://127.0.0.1:8080 --token "$(cat nimbus-data/admin.token)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("data-dir") {
				if v := os.Getenv("NIMBUS_DATA_DIR"); v != "" {
					dataDir = v
				}
			}
			path, err := system.ResetAdminToken(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new admin token written to %s; the old bootstrap token is revoked\n", path)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", config.Default().DataDir, "the server's data directory (env NIMBUS_DATA_DIR)")
	return cmd
}

// serverConfig layers the settings: defaults, then the YAML file (if any), then
// NIMBUS_* variables, then the flags that were set explicitly; then validates.
func serverConfig(f *pflag.FlagSet, cfgFile string, lookup func(string) (string, bool)) (config.Config, error) {
	cfg := config.Default()
	if cfgFile != "" {
		if err := cfg.LoadFile(cfgFile); err != nil {
			return cfg, err
		}
	}
	if err := cfg.LoadEnv(lookup); err != nil {
		return cfg, err
	}
	// The flags' types are fixed by newServerCommand, so the getters cannot fail.
	str := func(name string, dst *string) {
		if f.Changed(name) {
			*dst, _ = f.GetString(name)
		}
	}
	str("data-dir", &cfg.DataDir)
	str("http-addr", &cfg.HTTPAddr)
	str("grpc-addr", &cfg.GRPCAddr)
	str("ort-lib", &cfg.ORTLib)
	str("log-format", &cfg.LogFormat)
	str("log-level", &cfg.LogLevel)
	str("memory-budget", &cfg.MemoryBudget)
	str("source-dir", &cfg.SourceDir)
	str("min-transfer-rate", &cfg.MinTransferRate)
	str("max-inflight-bytes", &cfg.MaxInflightBytes)
	if f.Changed("max-body-bytes") {
		cfg.MaxBodyBytes, _ = f.GetInt64("max-body-bytes")
	}
	if f.Changed("shutdown-timeout") {
		cfg.ShutdownTimeout, _ = f.GetDuration("shutdown-timeout")
	}
	str("auth", &cfg.Auth)
	str("metrics-auth", &cfg.MetricsAuth)
	str("tls-cert", &cfg.TLSCert)
	str("tls-key", &cfg.TLSKey)
	str("rate-limit-per-token", &cfg.RateLimitPerToken)
	str("rate-limit-per-service", &cfg.RateLimitPerService)
	str("cli-config", &cfg.CLIConfig)
	list := func(name string, dst *[]string) {
		if f.Changed(name) {
			*dst, _ = f.GetStringSlice(name)
		}
	}
	list("cors-allowed-origins", &cfg.CORSAllowedOrigins)
	list("allowed-hosts", &cfg.AllowedHosts)

	if f.Changed("egress-allow") {
		v, _ := f.GetString("egress-allow")
		cfg.EgressAllow = config.SplitList(v)
	}
	if f.Changed("source-fetch-timeout") {
		cfg.SourceFetchTimeout, _ = f.GetDuration("source-fetch-timeout")
	}
	str("secrets-dir", &cfg.SecretsDir)
	str("git-url", &cfg.GitURL)
	str("git-ref", &cfg.GitRef)
	str("git-path", &cfg.GitPath)
	if f.Changed("read-timeout") {
		cfg.ReadTimeout, _ = f.GetDuration("read-timeout")
	}
	if f.Changed("write-timeout") {
		cfg.WriteTimeout, _ = f.GetDuration("write-timeout")
	}
	return cfg, cfg.Validate()
}
