package cli

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServerConfigLayers: defaults, then the file, then NIMBUS_* variables, then
// flags given on the command line (and only those).
func TestServerConfigLayers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nimbus.yaml")
	os.WriteFile(file, []byte("dataDir: /from/file\nhttpAddr: 127.0.0.1:7001\ngrpcAddr: 127.0.0.1:7002\nlogFormat: json\n"), 0o644)
	env := map[string]string{"NIMBUS_HTTP_ADDR": "127.0.0.1:7101", "NIMBUS_SHUTDOWN_TIMEOUT": "3s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	cmd := newServerCommand()
	if err := cmd.ParseFlags([]string{"--grpc-addr", "", "--log-level", "debug", "--read-timeout", "5m", "--max-inflight-bytes", "2GiB"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := serverConfig(cmd.Flags(), file, lookup)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"dataDir (file)", cfg.DataDir, "/from/file"},
		{"httpAddr (env over file)", cfg.HTTPAddr, "127.0.0.1:7101"},
		{"grpcAddr (flag over file: disabled)", cfg.GRPCAddr, ""},
		{"logFormat (file)", cfg.LogFormat, "json"},
		{"logLevel (flag)", cfg.LogLevel, "debug"},
		{"shutdownTimeout (env)", cfg.ShutdownTimeout.String(), (3 * time.Second).String()},
		{"maxBodyBytes (default)", strconv.FormatInt(cfg.MaxBodyBytes, 10), strconv.Itoa(64 << 20)},
		{"readTimeout (flag)", cfg.ReadTimeout.String(), (5 * time.Minute).String()},
		{"writeTimeout (default)", cfg.WriteTimeout.String(), (30 * time.Second).String()},
		{"maxInflightBytes (flag)", cfg.MaxInflightBytes, "2GiB"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}

	// An invalid flag value is refused by validation, naming the setting.
	cmd = newServerCommand()
	cmd.ParseFlags([]string{"--http-addr", "nope"})
	if _, err := serverConfig(cmd.Flags(), "", lookup); err == nil || !strings.Contains(err.Error(), `httpAddr: "nope" is not HOST:PORT`) {
		t.Errorf("invalid flag: %v", err)
	}
}
