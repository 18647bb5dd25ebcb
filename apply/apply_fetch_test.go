package apply_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/egress"
	"github.com/nimbus-ai/nimbus/internal/system"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/blob"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	nruntime "github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/secrets"
	"github.com/nimbus-ai/nimbus/spec"
	"github.com/nimbus-ai/nimbus/spec/source"
)

// syncBuffer is a log sink the server's goroutines may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is an apply engine over a real registry (SQLite and a blob store in a
// temp dir), a real fetcher and the real management API, logging everything
// at debug level into logs.
type fetchEnv struct {
	engine *apply.Engine
	reg    *registry.Registry
	blobs  *blob.FS
	api    string // base URL of the management API
	logs   *syncBuffer
}

func newFetchEnv(t *testing.T, opts source.Options) *fetchEnv {
	t.Helper()
	dir := t.TempDir()
	logs := &syncBuffer{}
	lg := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store, err := sqlite.Open(context.Background(), filepath.Join(dir, "nimbus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := blob.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(store, blobs, map[string]nruntime.Inspector{"onnx": onnx.Inspector{}}, lg)
	if opts.AllowedDir == "" {
		opts.AllowedDir = filepath.Dir(testutil.Model("mlp"))
	}
	engine := apply.NewEngine(apply.Options{Registry: reg, Resources: store, Audit: store, Logger: lg,
		Fetcher: system.NewFetcher(source.New(opts))})
	srv := httptest.NewServer(auth.NewGuard(nil).HTTP(mgmt.NewHandler(reg, mgmt.Options{Logger: lg, UploadDir: filepath.Join(dir, "uploads"), Resources: engine, Audit: store})))
	t.Cleanup(srv.Close)
	return &fetchEnv{engine: engine, reg: reg, blobs: blobs, api: srv.URL, logs: logs}
}

// apply posts YAML to the management API and returns status and body.
func (e *fetchEnv) apply(t *testing.T, yaml string, dryRun bool) (int, string) {
	t.Helper()
	u := e.api + "/api/v1/apply"
	if dryRun {
		u += "?dryRun=true"
	}
	return e.call(t, http.MethodPost, u, "application/yaml", yaml)
}

func (e *fetchEnv) call(t *testing.T, method, url, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// stored is what the blob store holds.
func (e *fetchEnv) stored(t *testing.T) []string {
	t.Helper()
	infos, err := e.blobs.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.SHA256)
	}
	return out
}

// modelYAML declares model name with one version from uri.
func modelYAML(name, uri, sum, extra string) string {
	return fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: Model
metadata: {name: %s}
spec:
  versions:
    - version: 1
      format: onnx
      source:
        uri: %s
        sha256: %s
%s`, name, uri, sum, extra)
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mlpBytes(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(testutil.Model("mlp"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tlsServer starts an https server on 127.0.0.1 that counts its connections.
func tlsServer(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func rootsOf(srv *httptest.Server) source.Options {
	return source.Options{TLS: srv.Client().Transport.(*http.Transport).TLSClientConfig}
}

// closedPort is an address on 127.0.0.1 nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestApplySourceFailuresLookAlike: whether the egress rule refused the
// address, nothing listened, TLS failed, the server answered an error or a
// redirect to http, sent bytes of another digest, too many of them or stalled,
// the caller gets the same answer (the URI it gave aside); the log keeps what
// happened. Before, each answer said which, down to the sha256 of what an
// internal server returned.
func TestApplySourceFailuresLookAlike(t *testing.T) {
	model := mlpBytes(t)
	sum := digest(model)
	mux := http.NewServeMux()
	mux.HandleFunc("/m.onnx", func(w http.ResponseWriter, r *http.Request) { w.Write(model) })
	mux.HandleFunc("/other.onnx", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("internal secrets")) })
	mux.HandleFunc("/500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 500) })
	mux.HandleFunc("/to-http", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://10.0.0.1/admin", http.StatusFound)
	})
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Write(model[:8])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv, _ := tlsServer(t, mux)
	trusted := rootsOf(srv)
	with := func(o source.Options, f func(*source.Options)) source.Options { f(&o); return o }
	loop := egress.New(egress.Loopback...)

	for _, tc := range []struct {
		name string
		opts source.Options
		uri  string
		sum  string
		log  string // in the log's detail
	}{
		{"refused by egress", trusted, srv.URL + "/m.onnx", sum, "egress: 127.0.0.1 is loopback"},
		{"connection refused", with(trusted, func(o *source.Options) { o.Egress = loop }), "https://" + closedPort(t) + "/m.onnx", sum, "connection refused"},
		{"untrusted certificate", source.Options{Egress: loop}, srv.URL + "/m.onnx", sum, "certificate"},
		{"404", with(trusted, func(o *source.Options) { o.Egress = loop }), srv.URL + "/nope", sum, "server answered 404 Not Found"},
		{"500", with(trusted, func(o *source.Options) { o.Egress = loop }), srv.URL + "/500", sum, "server answered 500"},
		{"redirect to http", with(trusted, func(o *source.Options) { o.Egress = loop }), srv.URL + "/to-http", sum, "only https:// redirects"},
		{"digest of an internal answer", with(trusted, func(o *source.Options) { o.Egress = loop }), srv.URL + "/other.onnx", sum,
			"sha256 mismatch: declared " + sum + ", fetched " + digest([]byte("internal secrets"))},
		{"too large", with(trusted, func(o *source.Options) { o.Egress, o.MaxBytes = loop, 16 }), srv.URL + "/m.onnx", sum, "larger than the limit"},
		{"stalled", with(trusted, func(o *source.Options) { o.Egress, o.Timeout = loop, 100*time.Millisecond }), srv.URL + "/stall", sum, "server sent nothing for 100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFetchEnv(t, tc.opts)
			status, body := e.apply(t, modelYAML("m", tc.uri, tc.sum, ""), false)
			got := strings.ReplaceAll(body, tc.uri, "URI")
			want := `{"errors":[{"file":"request","line":9,"kind":"Model","name":"m","field":"spec.versions[0].source.uri",` +
				`"message":"source URI could not be fetched","code":"unavailable"}]}` + "\n"
			if status != http.StatusBadRequest || got != want {
				t.Errorf("answer %d %s\nwant 400 %s", status, got, want)
			}
			if logs := e.logs.String(); !strings.Contains(logs, tc.log) || !strings.Contains(logs, "source could not be fetched") {
				t.Errorf("the log lacks %q:\n%s", tc.log, logs)
			}
			if got := e.stored(t); len(got) != 0 {
				t.Errorf("stored %v", got)
			}
		})
	}
	// And what succeeds does.
	e := newFetchEnv(t, with(trusted, func(o *source.Options) { o.Egress = loop }))
	if status, body := e.apply(t, modelYAML("m", srv.URL+"/m.onnx", sum, ""), false); status != http.StatusOK ||
		!strings.Contains(body, `"action":"created"`) || !strings.Contains(body, `"fetch":["`+srv.URL+`/m.onnx"]`) {
		t.Fatalf("apply: %d %s", status, body)
	}
}

// TestDryRunFetchesNothing: a dry run (and so a diff) of a Model whose source
// is slow or unreachable answers at once, connects nowhere, stores no blob and
// says what a real apply would fetch. An artifact already in the blob store is
// still inspected. Before, a dry run fetched, stored and inspected.
func TestDryRunFetchesNothing(t *testing.T) {
	model := mlpBytes(t)
	sum := digest(model)
	slow, conns := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
	}))
	opts := rootsOf(slow)
	opts.Egress = egress.New(egress.Loopback...)
	e := newFetchEnv(t, opts)
	for _, uri := range []string{slow.URL + "/m.onnx", "https://" + closedPort(t) + "/m.onnx", "https://unreachable.invalid/m.onnx"} {
		start := time.Now()
		status, body := e.apply(t, modelYAML("m", uri, sum, ""), true)
		took := time.Since(start)
		if status != http.StatusOK || !strings.Contains(body, `"dryRun":true`) || !strings.Contains(body, `"action":"created"`) ||
			!strings.Contains(body, `"fetch":["`+uri+`"]`) {
			t.Errorf("dry run of %s: %d %s", uri, status, body)
		}
		t.Logf("dry run of %s answered in %v", uri, took)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("dry runs connected %d times", n)
	}
	if got := e.stored(t); len(got) != 0 {
		t.Errorf("dry runs stored %v", got)
	}

	// A blob already stored is inspected, not fetched: a batching setting the
	// artifact cannot take is refused on the dry run too.
	fixed, err := os.ReadFile(testutil.Model("fixed_batch"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.PutBlob(context.Background(), bytes.NewReader(fixed), digest(fixed)); err != nil {
		t.Fatal(err)
	}
	batching := "  serving: {batching: {maxBatchSize: 8}}\n"
	status, body := e.apply(t, modelYAML("f", slow.URL+"/f.onnx", digest(fixed), batching), true)
	if status != http.StatusBadRequest || !strings.Contains(body, "cannot batch") {
		t.Errorf("dry run over a stored artifact: %d %s", status, body)
	}
	status, body = e.apply(t, modelYAML("f", slow.URL+"/f.onnx", digest(fixed), ""), true)
	if status != http.StatusOK || strings.Contains(body, `"fetch"`) {
		t.Errorf("dry run over a stored artifact: %d %s, want nothing to fetch", status, body)
	}
	// A static problem is still found: a file:// source outside the directory.
	status, body = e.apply(t, modelYAML("g", "file:///etc/passwd", sum, ""), true)
	if status != http.StatusBadRequest || !strings.Contains(body, "outside the source directory") {
		t.Errorf("dry run of a file outside: %d %s", status, body)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("dry runs connected %d times", n)
	}
}

// TestSlowFetchBlocksNoDelete: while an apply fetches from a server that
// trickles a byte at a time (never quiet long enough for the stall timer), a
// delete of an unrelated resource completes; the fetch ends at its deadline.
// Before, the fetch ran under the apply lock, with no deadline.
func TestSlowFetchBlocksNoDelete(t *testing.T) {
	started := make(chan struct{})
	var once sync.Once
	trickle, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(started) })
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				w.Write([]byte{0})
				w.(http.Flusher).Flush()
			}
		}
	}))
	const deadline = 2 * time.Second
	opts := rootsOf(trickle)
	opts.Egress = egress.New(egress.Loopback...)
	opts.Timeout, opts.Deadline = time.Minute, deadline
	e := newFetchEnv(t, opts)
	// Should the fetch outlive its deadline, the test's end still stops it
	// (cleanups run last-registered first: before the servers close).
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	model := mlpBytes(t)
	if status, body := e.apply(t, modelYAML("other", "file://"+testutil.Model("mlp"), digest(model), ""), false); status != http.StatusOK {
		t.Fatalf("apply other: %d %s", status, body)
	}

	type result struct {
		err  error
		took time.Duration
	}
	applied := make(chan result, 1)
	start := time.Now()
	go func() {
		_, err := e.engine.Apply(ctx, spec.Request{Files: []spec.File{{Name: "slow.yaml", Content: modelYAML("slow", trickle.URL+"/m.onnx", digest(model), "")}}})
		applied <- result{err, time.Since(start)}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the apply never reached the trickling server")
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := e.engine.Delete(ctx, spec.DeleteRequest{Kind: spec.KindModel, Namespace: "default", Name: "other"})
		deleted <- err
	}()
	select {
	case err := <-deleted:
		if err != nil {
			t.Fatalf("delete: %v", err)
		}
		t.Logf("delete done %v after the apply started fetching", time.Since(start))
	case r := <-applied:
		t.Fatalf("the apply ended (%v after %v) before the delete could run", r.err, r.took)
	case <-time.After(10 * time.Second):
		t.Fatal("the delete waited for the fetch")
	}
	select {
	case r := <-applied:
		if r.err == nil || !strings.Contains(r.err.Error(), "could not be fetched") {
			t.Fatalf("apply = %v", r.err)
		}
		if r.took < deadline {
			t.Errorf("the fetch ended after %v, before its deadline", r.took)
		}
		t.Logf("the apply ended after %v (deadline %v)", r.took, deadline)
	case <-time.After(10 * deadline):
		t.Fatal("the fetch outlived its deadline")
	}
	if logs := e.logs.String(); !strings.Contains(logs, "took longer than its deadline of 2s") {
		t.Errorf("the log does not say the deadline ended it:\n%s", logs)
	}
	if _, err := e.reg.GetModel(ctx, "default", "other"); err == nil {
		t.Error("the deleted model is still there")
	}
}

// TestSecretsNeverLeak plants secrets in the environment and the secrets
// directory, applies Models whose sources authenticate with them (fetches that
// succeed, a wrong token, a refused address, a wrong digest) and Models with
// bad references, as real applies and dry runs, then reads every answer, the
// stored resources, the audit log and the debug log: no secret value anywhere.
func TestSecretsNeverLeak(t *testing.T) {
	const (
		envToken  = "env-token-7c1e4d-PLANTED"
		fileToken = "file-token-93ab02-PLANTED"
		wrong     = "wrong-token-55f0aa-PLANTED"
		outside   = "outside-token-0e7d31-PLANTED"
	)
	planted := []string{envToken, fileToken, wrong, outside}
	t.Setenv("NIMBUS_SECRET_MODELS", envToken)
	t.Setenv("NIMBUS_SECRET_WRONG", wrong)
	t.Setenv("NIMBUS_NOT_A_SECRET", outside)
	dir := t.TempDir()
	secretsDir := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(filepath.Join(secretsDir, "hub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secretsDir, "hub", "token"), []byte(fileToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "outside"), []byte(outside), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "outside"), filepath.Join(secretsDir, "escape")); err != nil {
		t.Fatal(err)
	}

	model := mlpBytes(t)
	sum := digest(model)
	var served atomic.Int32
	srv, _ := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer " + envToken, "Bearer " + fileToken:
			served.Add(1)
			w.Write(model)
		default:
			http.Error(w, "bad token: "+r.Header.Get("Authorization"), http.StatusUnauthorized)
		}
	}))
	res, err := newResolver(secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	opts := rootsOf(srv)
	opts.Egress, opts.Secrets = egress.New(egress.Loopback...), res
	e := newFetchEnv(t, opts)
	denied := rootsOf(srv)
	denied.Secrets = res
	eDenied := newFetchEnv(t, denied) // loopback refused by egress

	auth := func(ref string) string { return "        auth: {tokenFrom: " + ref + "}\n" }
	var bodies []string
	for i, tc := range []struct {
		e      *fetchEnv
		uri    string
		sum    string
		ref    string
		status int
		remote bool // the failure is the server's (or egress's) to tell
	}{
		{e, srv.URL + "/m.onnx", sum, "{env: NIMBUS_SECRET_MODELS}", 200, false},
		{e, srv.URL + "/m.onnx", sum, "{file: hub/token}", 200, false},
		{e, srv.URL + "/m.onnx", sum, "{env: NIMBUS_SECRET_WRONG}", 400, true},
		{eDenied, srv.URL + "/m.onnx", sum, "{env: NIMBUS_SECRET_MODELS}", 400, true},
		{e, srv.URL + "/m.onnx", digest([]byte("x")), "{file: hub/token}", 400, true},
		{e, srv.URL + "/m.onnx", sum, "{env: NIMBUS_NOT_A_SECRET}", 400, false},
		{e, srv.URL + "/m.onnx", sum, "{env: NIMBUS_SECRET_UNSET}", 400, false},
		{e, srv.URL + "/m.onnx", sum, "{file: escape}", 400, false},
		{e, srv.URL + "/m.onnx", sum, "{file: ../outside}", 400, false},
		{e, srv.URL + "/m.onnx", sum, "{file: missing}", 400, false},
		{e, srv.URL + "/m.onnx", sum, "{env: NIMBUS_SECRET_MODELS, file: hub/token}", 400, false},
		{e, "file://" + testutil.Model("mlp"), sum, "{env: NIMBUS_SECRET_MODELS}", 400, false},
	} {
		name := fmt.Sprintf("m%d", i)
		for _, dry := range []bool{true, false} {
			doc := strings.Replace(modelYAML(name, tc.uri, tc.sum, ""), "        sha256: "+tc.sum+"\n", "        sha256: "+tc.sum+"\n"+auth(tc.ref), 1)
			status, body := tc.e.apply(t, doc, dry)
			want := tc.status
			if dry && tc.remote {
				want = 200 // a dry run connects nowhere: what only the server can tell is not known yet
			}
			if status != want {
				t.Errorf("%s dry=%v: %d %s, want %d", tc.ref, dry, status, body, want)
			}
			bodies = append(bodies, body)
		}
	}
	// The two good tokens, and the good token with the wrong digest.
	if served.Load() != 3 {
		t.Errorf("the server served %d authenticated fetches, want 3", served.Load())
	}
	for _, path := range []string{"/api/v1/resources/models", "/api/v1/events", "/api/v1/namespaces/default/models"} {
		_, body := e.call(t, http.MethodGet, e.api+path, "", "")
		bodies = append(bodies, body)
	}
	bodies = append(bodies, e.logs.String(), eDenied.logs.String())
	if !strings.Contains(e.logs.String(), "401 Unauthorized") || !strings.Contains(eDenied.logs.String(), "egress:") {
		t.Errorf("the logs miss the failures' detail:\n%s\n%s", e.logs.String(), eDenied.logs.String())
	}
	for _, b := range bodies {
		for _, s := range planted {
			if strings.Contains(b, s) {
				t.Errorf("secret %q leaked in:\n%s", s, b)
			}
		}
	}
}

func newResolver(dir string) (*secrets.Resolver, error) {
	return secrets.NewResolver(secrets.Options{Dir: dir})
}
