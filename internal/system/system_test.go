package system

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/config"
)

// TestFailedStartReleasesWhatItOpened: when the gRPC port is taken, New fails with
// a clear error and frees the HTTP port it had already bound.
func TestFailedStartReleasesWhatItOpened(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := free.Addr().String()
	free.Close()

	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = httpAddr
	cfg.GRPCAddr = taken.Addr().String()
	_, err = New(context.Background(), cfg, "test", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "listen on grpc address") {
		t.Fatalf("New with a taken gRPC port: %v", err)
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatalf("the HTTP port stayed taken after the failed start: %v", err)
	}
	ln.Close()
}

func TestInvalidConfigIsRefusedBeforeAnythingOpens(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir() + "/never-created"
	cfg.HTTPAddr = "nonsense"
	_, err := New(context.Background(), cfg, "test", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), `httpAddr: "nonsense" is not HOST:PORT`) {
		t.Fatalf("invalid config: %v", err)
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Errorf("an invalid config created the data dir: %v", err)
	}
}
