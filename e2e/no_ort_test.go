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

// childServer starts this test binary as `nimbus server` on a fresh data
// dir with env added, and returns it with its stderr lines as they come.
func childServer(t *testing.T, env ...string) (srv *testutil.Server, lines <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	dataDir := t.TempDir()
	cmd.Env = append(append(os.Environ(), "NIMBUS_E2E_CHILD=server", "NIMBUS_E2E_DATA="+dataDir), env...)
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
	out := make(chan string, 1024)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
			select {
			case out <- sc.Text():
			default: // nobody reads: drop
			}
		}
	}()
	var url string
	select {
	case a := <-addr:
		url = "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatal("the server process did not start")
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return &testutil.Server{URL: url, Token: strings.TrimSpace(string(tok))}, out
}

// The ONNX Runtime library and environment are set up right after the
// server starts, before any request (a fresh process: the environment is
// process-wide), so the first request after a restart pays only its own
// model's load.
func TestONNXRuntimeIsReadyBeforeTheFirstRequest(t *testing.T) {
	_, lines := childServer(t)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the server exited before ONNX Runtime was initialized")
			}
			if strings.Contains(l, `msg="ONNX Runtime initialized"`) {
				return
			}
		case <-deadline:
			t.Fatal("ONNX Runtime was not initialized within 20s of the start, with no request made")
		}
	}
}

func TestServerRunsWithoutONNXRuntime(t *testing.T) {
	srv, _ := childServer(t, "NIMBUS_ORT_LIB=/nonexistent/libonnxruntime.so.1")
	url := srv.URL
	// The registry works without the runtime: push reads the signature in pure Go.
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m")
	st, _, body := do(t, "POST", url+"/v2/models/m/infer", "application/json",
		[]byte(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`), "Authorization", "Bearer "+srv.Token)
	t.Logf("answer: %d %s", st, body)
	if st != 503 || !strings.Contains(string(body), "make setup") || !strings.Contains(string(body), "NIMBUS_ORT_LIB") {
		t.Fatalf("infer without ONNX Runtime: %d %s", st, body)
	}
}
