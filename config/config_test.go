package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad config fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(f + ".err")
			if err != nil {
				t.Fatalf("missing expected error file: %v", err)
			}
			c := Default()
			err = c.LoadFile(f)
			if err == nil {
				err = c.Validate()
			}
			if err == nil {
				t.Fatalf("expected an error")
			}
			if got := strings.TrimSpace(err.Error()); got != strings.TrimSpace(string(want)) {
				t.Errorf("error mismatch\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	c := Default()
	if err := c.LoadFile("testdata/good.yaml"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NIMBUS_HTTP_ADDR": "127.0.0.1:7000", "NIMBUS_SHUTDOWN_TIMEOUT": "2s"}
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/nimbus" || c.HTTPAddr != "127.0.0.1:7000" || c.GRPCAddr != "" ||
		c.LogFormat != "json" || c.ShutdownTimeout != 2*time.Second || c.MaxBodyBytes != 64<<20 {
		t.Errorf("unexpected config: %+v", c)
	}
}

func TestEnvErrors(t *testing.T) {
	c := Default()
	env := map[string]string{"NIMBUS_MAX_BODY_BYTES": "lots", "NIMBUS_BLOB_GC_GRACE": "1 hour"}
	err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, want := range []string{`NIMBUS_MAX_BODY_BYTES="lots": not an integer`, `NIMBUS_BLOB_GC_GRACE="1 hour": not a duration`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadFile(empty); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func TestConnectionsFromYAML(t *testing.T) {
	c := Default()
	err := c.loadYAML("nimbus.yaml", []byte(`connections:
  - name: nats-main
    namespace: payments
    nats: {url: "nats://127.0.0.1:4222", auth: {tokenFrom: {env: NIMBUS_SECRET_NATS}}}
  - name: bus
    kafka: {brokers: ["127.0.0.1:9092"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Connections) != 2 || c.Connections[0].Name != "nats-main" || c.Connections[0].Namespace != "payments" ||
		c.Connections[1].Namespace != "" || c.Connections[1].Bus["kafka"] == nil || len(c.Connections[0].Bus) != 1 {
		t.Errorf("connections = %+v", c.Connections)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	c.Connections = append(c.Connections, Connection{Name: "nats-main", Namespace: "payments", Bus: map[string]any{"nats": nil}})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "connections[2].name: connection nats-main is declared twice in namespace payments") {
		t.Errorf("twice: %v", err)
	}
}
