package cli

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/system"
	"github.com/nimbus-ai/nimbus/telemetry"
)

// newServerCommand builds `nimbus server`: defaults, then the optional YAML file,
// then NIMBUS_* variables, then flags that were set explicitly.
func newServerCommand() *cobra.Command {
	def := config.Default()
	var (
		cfgFile string
		flagCfg = def
	)
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
			cfg := config.Default()
			if cfgFile == "" {
				cfgFile = os.Getenv("NIMBUS_CONFIG")
			}
			if cfgFile != "" {
				if err := cfg.LoadFile(cfgFile); err != nil {
					return err
				}
			}
			if err := cfg.LoadEnv(os.LookupEnv); err != nil {
				return err
			}
			f := cmd.Flags()
			set := func(name string, apply func()) {
				if f.Changed(name) {
					apply()
				}
			}
			set("data-dir", func() { cfg.DataDir = flagCfg.DataDir })
			set("http-addr", func() { cfg.HTTPAddr = flagCfg.HTTPAddr })
			set("grpc-addr", func() { cfg.GRPCAddr = flagCfg.GRPCAddr })
			set("max-body-bytes", func() { cfg.MaxBodyBytes = flagCfg.MaxBodyBytes })
			set("ort-lib", func() { cfg.ORTLib = flagCfg.ORTLib })
			set("log-format", func() { cfg.LogFormat = flagCfg.LogFormat })
			set("log-level", func() { cfg.LogLevel = flagCfg.LogLevel })
			set("shutdown-timeout", func() { cfg.ShutdownTimeout = flagCfg.ShutdownTimeout })
			if err := cfg.Validate(); err != nil {
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
	f.StringVar(&flagCfg.DataDir, "data-dir", def.DataDir, "data directory for the registry and artifacts (env NIMBUS_DATA_DIR)")
	f.StringVar(&flagCfg.HTTPAddr, "http-addr", def.HTTPAddr, "REST, management API and /metrics address (env NIMBUS_HTTP_ADDR)")
	f.StringVar(&flagCfg.GRPCAddr, "grpc-addr", def.GRPCAddr, `gRPC address; "" disables gRPC (env NIMBUS_GRPC_ADDR)`)
	f.Int64Var(&flagCfg.MaxBodyBytes, "max-body-bytes", def.MaxBodyBytes, "largest REST body and gRPC message (env NIMBUS_MAX_BODY_BYTES)")
	f.StringVar(&flagCfg.ORTLib, "ort-lib", "", "path to libonnxruntime.so (env NIMBUS_ORT_LIB; default: search .deps/onnxruntime)")
	f.StringVar(&flagCfg.LogFormat, "log-format", def.LogFormat, "log format: text or json (env NIMBUS_LOG_FORMAT)")
	f.StringVar(&flagCfg.LogLevel, "log-level", def.LogLevel, "log level: debug, info, warn, error (env NIMBUS_LOG_LEVEL)")
	f.DurationVar(&flagCfg.ShutdownTimeout, "shutdown-timeout", def.ShutdownTimeout, "how long in-flight requests may drain on shutdown (env NIMBUS_SHUTDOWN_TIMEOUT)")
	return cmd
}
