package system

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/spec"
)

// The config file's connections are Connections of their namespaces, applied
// as the server at start; a bad one fails the start naming its entry and
// field, and nothing of it is stored.
func TestConfigConnections(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.GRPCAddr, cfg.CLIConfig = "127.0.0.1:0", "", "none"
	cfg.Connections = []config.Connection{
		{Name: "nats-main", Namespace: "payments", Bus: map[string]any{"nats": map[string]any{
			"url": "nats://127.0.0.1:4222", "auth": map[string]any{"tokenFrom": map[string]any{"env": "NIMBUS_SECRET_NATS"}}}}},
		{Name: "cache", Bus: map[string]any{"redis": map[string]any{"url": "redis://127.0.0.1:6379"}}},
	}
	ctx := context.Background()
	s, err := New(ctx, cfg, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Resources.Get(ctx, spec.KindConnection, "payments", "nats-main")
	if err != nil {
		t.Fatal(err)
	}
	c := obj.(*spec.Connection)
	if c.Spec.NATS == nil || c.Spec.NATS.URL != "nats://127.0.0.1:4222" || c.Spec.NATS.Auth.TokenFrom.Env != "NIMBUS_SECRET_NATS" {
		t.Errorf("connection %+v", c.Spec)
	}
	if _, err := s.Resources.Get(ctx, spec.KindConnection, "default", "cache"); err != nil {
		t.Errorf("default namespace: %v", err)
	}
	s.closeAll()

	// Restarted with a bad entry: refused, naming it; the good ones stay as
	// they were.
	cfg.Connections[1].Bus = map[string]any{"redis": map[string]any{"url": "http://127.0.0.1:6379"}}
	_, err = New(ctx, cfg, "test", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "config connections[1]") || !strings.Contains(err.Error(), `spec.redis.url: "http://127.0.0.1:6379" is not a redis or rediss URL`) {
		t.Fatalf("bad connection: %v", err)
	}
	cfg.Connections = []config.Connection{{Name: "x", Bus: map[string]any{}}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "connections[0]: name exactly one bus") {
		t.Errorf("validate: %v", err)
	}
}
