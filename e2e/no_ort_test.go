package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/internal/cli"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// TestMain lets this test binary act as the nimbus binary in a child process:
// ONNX Runtime's environment is process-wide, so "no library" needs a fresh process.
func TestMain(m *testing.M) {
	if os.Getenv("NIMBUS_E2E_CHILD") == "server" {
		os.Exit(cli.Run(context.Background(), []string{"server", "--http-addr", "127.0.0.1:0", "--grpc-addr", "",
			"--data-dir", os.Getenv("NIMBUS_E2E_DATA"), "--cli-config", "none"}, os.Stdout, os.Stderr, os.Getenv))
	}
	code := m.Run()
	if code == 0 {
		// Every server the tests started has stopped: none of its goroutines
		// may be left (the run group, the controllers, the manager's tracker).
		if err := goleak.Find(goleak.IgnoreCurrent()); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func TestServerRunsWithoutONNXRuntime(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	dataDir := t.TempDir()
	cmd.Env = append(os.Environ(), "NIMBUS_E2E_CHILD=server", "NIMBUS_E2E_DATA="+dataDir,
		"NIMBUS_ORT_LIB=/nonexistent/libonnxruntime.so.1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addrRe := regexp.MustCompile(`msg="nimbus serving" http=http://(127\.0\.0\.1:\d+)`)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatal("server without ONNX Runtime did not start")
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &testutil.Server{URL: url, Token: strings.TrimSpace(string(tok))}
	// The registry works without the runtime: push reads the signature in pure Go.
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m")
	st, _, body := do(t, "POST", url+"/v2/models/m/infer", "application/json",
		[]byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`), "Authorization", "Bearer "+srv.Token)
	t.Logf("answer: %d %s", st, body)
	if st != 503 || !strings.Contains(string(body), "make setup") || !strings.Contains(string(body), "NIMBUS_ORT_LIB") {
		t.Fatalf("infer without ONNX Runtime: %d %s", st, body)
	}
}
