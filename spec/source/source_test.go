package source

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/egress"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/blob"
	"github.com/nimbus-ai/nimbus/secrets"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// blobs adapts a real blob store to BlobPutter, as the registry does.
type blobs struct{ *blob.FS }

func (b blobs) PutBlob(ctx context.Context, body io.Reader, want string) (registry.BlobInfo, error) {
	return b.Put(ctx, body, want)
}

func newBlobs(t *testing.T) blobs {
	t.Helper()
	fs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return blobs{fs}
}

// stored returns the digests in the blob store.
func (b blobs) stored(t *testing.T) []string {
	t.Helper()
	infos, err := b.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.SHA256)
	}
	return out
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeFile(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
}

// checkErr fails unless err has kind want and a message containing every part.
func checkErr(t *testing.T, err error, want errs.Kind, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", want)
	}
	if got := errs.KindOf(err); got != want {
		t.Errorf("err = %v (%s), want kind %s", err, got, want)
	}
	for _, p := range parts {
		if !strings.Contains(errs.PublicMessage(err), p) {
			t.Errorf("err = %q, want it to contain %q", errs.PublicMessage(err), p)
		}
	}
}

// checkLogged fails unless the cause (for the log) says part and the caller's
// message does not.
func checkLogged(t *testing.T, err error, part string) {
	t.Helper()
	if !strings.Contains(err.Error(), part) || strings.Contains(errs.PublicMessage(err), part) {
		t.Errorf("err = %q, public %q: want only the cause to contain %q", err, errs.PublicMessage(err), part)
	}
}

var model = []byte("pretend this is an ONNX graph")

func TestFetchFile(t *testing.T) {
	allowed := t.TempDir()
	outside := t.TempDir()
	writeFile(t, filepath.Join(allowed, "fraud", "v3.onnx"), model)
	writeFile(t, filepath.Join(outside, "secret.onnx"), model)
	symlink(t, filepath.Join(allowed, "fraud", "v3.onnx"), filepath.Join(allowed, "inside-link.onnx"))
	symlink(t, filepath.Join(outside, "secret.onnx"), filepath.Join(allowed, "escape.onnx"))
	symlink(t, outside, filepath.Join(allowed, "escape-dir"))
	// A named pipe would block the open forever; mkfifo(1) keeps the test portable.
	haveFIFO := exec.Command("mkfifo", filepath.Join(allowed, "pipe")).Run() == nil
	// The allowed directory itself may be reached through a symlink.
	allowedLink := filepath.Join(t.TempDir(), "models")
	symlink(t, allowed, allowedLink)

	ctx := context.Background()
	sum := digest(model)
	for _, tc := range []struct {
		name string
		dir  string // AllowedDir; allowed if empty
		uri  string
		kind errs.Kind // Internal: success
		msg  string
	}{
		{name: "file", uri: "file://" + allowed + "/fraud/v3.onnx"},
		{name: "localhost host", uri: "file://localhost" + allowed + "/fraud/v3.onnx"},
		{name: "symlink inside", uri: "file://" + allowed + "/inside-link.onnx"},
		{name: "allowed dir through a symlink", dir: allowedLink, uri: "file://" + allowed + "/fraud/v3.onnx"},
		{name: "path through the allowed dir's symlink", dir: allowed, uri: "file://" + allowedLink + "/fraud/v3.onnx"},
		{name: "dot dot inside", uri: "file://" + allowed + "/fraud/../fraud/v3.onnx"},
		{name: "outside", uri: "file://" + outside + "/secret.onnx", kind: errs.InvalidArgument, msg: "outside the source directory"},
		{name: "dot dot out", uri: "file://" + allowed + "/../" + filepath.Base(outside) + "/secret.onnx", kind: errs.InvalidArgument, msg: "outside the source directory"},
		{name: "symlink out", uri: "file://" + allowed + "/escape.onnx", kind: errs.InvalidArgument, msg: "outside the source directory"},
		{name: "symlinked dir out", uri: "file://" + allowed + "/escape-dir/secret.onnx", kind: errs.InvalidArgument, msg: "outside the source directory"},
		{name: "missing outside says outside", uri: "file://" + outside + "/nope.onnx", kind: errs.InvalidArgument, msg: "outside the source directory"},
		{name: "etc passwd", uri: "file:///etc/passwd", kind: errs.InvalidArgument, msg: "outside the source directory"},
		{name: "missing", uri: "file://" + allowed + "/fraud/v4.onnx", kind: errs.NotFound, msg: "no such file"},
		{name: "directory", uri: "file://" + allowed + "/fraud", kind: errs.InvalidArgument, msg: "is a directory"},
		{name: "fifo", uri: "file://" + allowed + "/pipe", kind: errs.InvalidArgument, msg: "not a regular file"},
		{name: "allowed dir itself", uri: "file://" + allowed, kind: errs.InvalidArgument, msg: "is a directory"},
		{name: "relative", uri: "file://fraud/v3.onnx", kind: errs.InvalidArgument, msg: "absolute path"},
		{name: "opaque", uri: "file:fraud/v3.onnx", kind: errs.InvalidArgument, msg: "absolute path"},
		{name: "missing allowed dir", dir: filepath.Join(allowed, "nope"), uri: "file://" + allowed + "/fraud/v3.onnx", kind: errs.FailedPrecondition, msg: "--source-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "fifo" && !haveFIFO {
				t.Skip("mkfifo unavailable")
			}
			dir := tc.dir
			if dir == "" {
				dir = allowed
			}
			b := newBlobs(t)
			info, err := New(Options{AllowedDir: dir}).Fetch(ctx, Artifact{URI: tc.uri, SHA256: sum}, b)
			if tc.kind == errs.Internal {
				if err != nil {
					t.Fatalf("Fetch(%s) = %v", tc.uri, err)
				}
				if info.SHA256 != sum || info.Size != int64(len(model)) {
					t.Errorf("info = %+v", info)
				}
				if got := b.stored(t); len(got) != 1 || got[0] != sum {
					t.Errorf("stored = %v, want [%s]", got, sum)
				}
				return
			}
			checkErr(t, err, tc.kind, tc.msg, "source file:")
			if got := b.stored(t); len(got) != 0 {
				t.Errorf("stored = %v, want nothing", got)
			}
		})
	}
}

func TestFetchFileDisabled(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "m.onnx"), model)
	_, err := New(Options{}).Fetch(context.Background(), Artifact{URI: "file://" + dir + "/m.onnx", SHA256: digest(model)}, newBlobs(t))
	checkErr(t, err, errs.FailedPrecondition, "file:// sources are disabled", "--source-dir", "NIMBUS_SOURCE_DIR")
}

func TestFetchRefusedURIs(t *testing.T) {
	sum := digest(model)
	for _, tc := range []struct{ uri, sha, msg string }{
		{"http://example.com/m.onnx", sum, "plain http:// is not allowed; use https://"},
		{"HTTP://example.com/m.onnx", sum, "plain http:// is not allowed"},
		{"s3://models/fraud.onnx", sum, "s3:// sources are not supported yet"},
		{"ftp://example.com/m.onnx", sum, `scheme "ftp" is not supported`},
		{"/models/m.onnx", sum, "no scheme"},
		{"https://%zz", sum, "not a valid URI"},
		{"https:///m.onnx", sum, "no host"},
		{"https://example.com/m.onnx", "", "sha256 is required"},
		{"https://example.com/m.onnx", strings.ToUpper(sum), "must be 64 lowercase hex characters"},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			b := newBlobs(t)
			_, err := New(Options{AllowedDir: t.TempDir()}).Fetch(context.Background(), Artifact{URI: tc.uri, SHA256: tc.sha}, b)
			checkErr(t, err, errs.InvalidArgument, tc.msg)
		})
	}
}

// tlsOf trusts srv's certificate.
func tlsOf(srv *httptest.Server) *tls.Config {
	return srv.Client().Transport.(*http.Transport).TLSClientConfig
}

// loopback lets a fetcher reach the test servers on 127.0.0.1.
var loopback = egress.New(egress.Loopback...)

// checkUnavailable fails unless err is the one answer every failed https
// fetch gives (the URI, "could not be fetched") and its cause, for the log,
// contains every part.
func checkUnavailable(t *testing.T, err error, uri string, cause ...string) {
	t.Helper()
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind != errs.Unavailable {
		t.Fatalf("err = %v, want an Unavailable *errs.Error", err)
	}
	if want := "source " + uri + " could not be fetched"; e.Message != want {
		t.Errorf("public message %q, want %q", e.Message, want)
	}
	if e.Err == nil {
		t.Fatalf("no cause for the log")
	}
	for _, c := range cause {
		if !strings.Contains(e.Err.Error(), c) {
			t.Errorf("cause %q, want it to contain %q", e.Err, c)
		}
	}
}

// TestFetchHTTPS: what a server does shows in the cause only; the caller
// gets one message for all of it.
func TestFetchHTTPS(t *testing.T) {
	var plainHits atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		w.Write(model)
	}))
	defer plain.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("/model.onnx", func(w http.ResponseWriter, r *http.Request) { w.Write(model) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/model.onnx", http.StatusFound)
	})
	mux.HandleFunc("/downgrade", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/model.onnx", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "oops", http.StatusInternalServerError)
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	f := New(Options{TLS: tlsOf(srv), Egress: loopback})
	ctx := context.Background()
	sum := digest(model)
	for _, tc := range []struct {
		name, path string
		cause      string // "": success
	}{
		{name: "ok", path: "/model.onnx"},
		{name: "https redirect", path: "/redirect"},
		{name: "redirect to http", path: "/downgrade", cause: "redirected to " + plain.URL + "/model.onnx: only https:// redirects are followed"},
		{name: "redirect loop", path: "/loop", cause: "stopped after 5 redirects"},
		{name: "404", path: "/missing.onnx", cause: "server answered 404 Not Found"},
		{name: "500", path: "/broken", cause: "server answered 500 Internal Server Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlobs(t)
			uri := srv.URL + tc.path
			info, err := f.Fetch(ctx, Artifact{URI: uri, SHA256: sum}, b)
			if tc.cause == "" {
				if err != nil || info.SHA256 != sum {
					t.Fatalf("Fetch(%s) = %+v, %v", uri, info, err)
				}
				return
			}
			checkUnavailable(t, err, uri, tc.cause)
			if got := b.stored(t); len(got) != 0 {
				t.Errorf("stored = %v, want nothing", got)
			}
		})
	}
	if n := plainHits.Load(); n != 0 {
		t.Errorf("the plain http server was hit %d times", n)
	}
}

func TestFetchHTTPSUntrusted(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(model) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	// Without the test server's roots, its certificate is not trusted.
	_, err := New(Options{Egress: loopback}).Fetch(context.Background(), Artifact{URI: srv.URL + "/model.onnx", SHA256: digest(model)}, newBlobs(t))
	checkUnavailable(t, err, srv.URL+"/model.onnx", "certificate")
}

// modelServer is an https server on 127.0.0.1 serving model, counting the
// connections it accepts.
func modelServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(model) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// TestFetchEgress: a source on 127.0.0.1 is refused at dial time, by address
// and by a name resolving to it, unless loopback is allowed; the refusal looks
// to the caller like any other failed fetch.
func TestFetchEgress(t *testing.T) {
	srv, conns := modelServer(t)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	byName := "https://localhost:" + port + "/model.onnx"
	roots := tlsOf(srv).Clone()
	roots.ServerName = "example.com" // the name in httptest's certificate

	for _, uri := range []string{srv.URL + "/model.onnx", byName} {
		t.Run(uri, func(t *testing.T) {
			before := conns.Load()
			b := newBlobs(t)
			_, err := New(Options{TLS: roots}).Fetch(context.Background(), Artifact{URI: uri, SHA256: digest(model)}, b)
			checkUnavailable(t, err, uri, "egress:", "loopback")
			if !errors.Is(err, egress.ErrRefused) {
				t.Errorf("err = %v, want egress.ErrRefused in its chain", err)
			}
			if n := conns.Load() - before; n != 0 {
				t.Errorf("the server saw %d connections", n)
			}
			if got := b.stored(t); len(got) != 0 {
				t.Errorf("stored %v", got)
			}
			if _, err := New(Options{TLS: roots, Egress: loopback}).Fetch(context.Background(), Artifact{URI: uri, SHA256: digest(model)}, b); err != nil {
				t.Fatalf("with loopback allowed: %v", err)
			}
		})
	}
}

func TestFetchMismatchStoresNothing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "m.onnx"), model)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(model) }))
	defer srv.Close()

	declared := digest([]byte("something else"))
	f := New(Options{AllowedDir: dir, TLS: tlsOf(srv), Egress: loopback})
	mismatch := "sha256 mismatch: declared " + declared + ", fetched " + digest(model)
	t.Run("file", func(t *testing.T) {
		b := newBlobs(t)
		uri := "file://" + dir + "/m.onnx"
		_, err := f.Fetch(context.Background(), Artifact{URI: uri, SHA256: declared}, b)
		checkErr(t, err, errs.InvalidArgument, "source "+uri+": "+mismatch)
		if errs.FieldOf(err) != "sha256" {
			t.Errorf("field = %q, want sha256", errs.FieldOf(err))
		}
		if got := b.stored(t); len(got) != 0 {
			t.Errorf("stored = %v, want nothing", got)
		}
	})
	t.Run("https", func(t *testing.T) {
		// The fetched digest of what an https server answered stays in the log.
		b := newBlobs(t)
		_, err := f.Fetch(context.Background(), Artifact{URI: srv.URL + "/m.onnx", SHA256: declared}, b)
		checkUnavailable(t, err, srv.URL+"/m.onnx", mismatch)
		if got := b.stored(t); len(got) != 0 {
			t.Errorf("stored = %v, want nothing", got)
		}
	})
}

func TestFetchTooLarge(t *testing.T) {
	const limit = 16
	exact := []byte(strings.Repeat("x", limit))
	big := []byte(strings.Repeat("x", limit+1))

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "exact"), exact)
	writeFile(t, filepath.Join(dir, "big"), big)
	mux := http.NewServeMux()
	mux.HandleFunc("/exact", func(w http.ResponseWriter, r *http.Request) { w.Write(exact) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	// No Content-Length: only counting the body can tell.
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for _, c := range big {
			w.Write([]byte{c})
			w.(http.Flusher).Flush()
		}
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	f := New(Options{AllowedDir: dir, TLS: tlsOf(srv), Egress: loopback, MaxBytes: limit})
	for _, tc := range []struct {
		uri  string
		body []byte
		ok   bool
	}{
		{"file://" + dir + "/exact", exact, true},
		{"file://" + dir + "/big", big, false},
		{srv.URL + "/exact", exact, true},
		{srv.URL + "/big", big, false},
		{srv.URL + "/chunked", big, false},
	} {
		t.Run(tc.uri, func(t *testing.T) {
			b := newBlobs(t)
			_, err := f.Fetch(context.Background(), Artifact{URI: tc.uri, SHA256: digest(tc.body)}, b)
			switch {
			case tc.ok:
				if err != nil {
					t.Fatalf("Fetch = %v", err)
				}
				return
			case strings.HasPrefix(tc.uri, "file:"):
				checkErr(t, err, errs.TooLarge, "source "+tc.uri+": larger than the limit of 16 bytes")
			default:
				checkUnavailable(t, err, tc.uri, "larger than the limit")
			}
			if got := b.stored(t); len(got) != 0 {
				t.Errorf("stored = %v, want nothing", got)
			}
		})
	}
}

func TestFetchStalledServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(model[:4])
		w.(http.Flusher).Flush()
		<-r.Context().Done() // then nothing more until the client gives up
	}))
	defer srv.Close()

	start := time.Now()
	_, err := New(Options{TLS: tlsOf(srv), Egress: loopback, Timeout: 100 * time.Millisecond}).
		Fetch(context.Background(), Artifact{URI: srv.URL + "/m.onnx", SHA256: digest(model)}, newBlobs(t))
	checkUnavailable(t, err, srv.URL+"/m.onnx", "server sent nothing for 100ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

// TestFetchDeadline: a server that keeps trickling bytes never trips the stall
// timer, so the fetch's own deadline is what ends it.
func TestFetchDeadline(t *testing.T) {
	ended := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(ended)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				w.Write([]byte{'x'})
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer srv.Close()

	const deadline = 300 * time.Millisecond
	start := time.Now()
	b := newBlobs(t)
	// Without a deadline of its own the fetch would go on; the test gives up
	// after a while instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := New(Options{TLS: tlsOf(srv), Egress: loopback, Timeout: 10 * time.Second, Deadline: deadline}).
		Fetch(ctx, Artifact{URI: srv.URL + "/m.onnx", SHA256: digest(model)}, b)
	took := time.Since(start)
	checkUnavailable(t, err, srv.URL+"/m.onnx", "took longer than its deadline of 300ms")
	if took < deadline {
		t.Errorf("ended after %v, before the deadline", took)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's request never ended")
	}
	if got := b.stored(t); len(got) != 0 {
		t.Errorf("stored %v", got)
	}
}

func TestFetchHidesCredentials(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	uri := strings.Replace(srv.URL, "https://", "https://alice:hunter2@", 1) + "/m.onnx?X-Amz-Signature=topsecret"
	_, err := New(Options{TLS: tlsOf(srv), Egress: loopback}).Fetch(context.Background(), Artifact{URI: uri, SHA256: digest(model)}, newBlobs(t))
	checkErr(t, err, errs.Unavailable, "alice@", "/m.onnx?…")
	for _, secret := range []string{"hunter2", "topsecret"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("err = %q, leaks %q", err, secret)
		}
	}
}

func TestFetchCanceled(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(model[:4])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := New(Options{TLS: tlsOf(srv), Egress: loopback}).Fetch(ctx, Artifact{URI: srv.URL + "/m.onnx", SHA256: digest(model)}, newBlobs(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

type envSecrets map[string]string

func (e envSecrets) resolver(t *testing.T) *secrets.Resolver {
	t.Helper()
	r, err := secrets.NewResolver(secrets.Options{LookupEnv: func(k string) (string, bool) { v, ok := e[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFetchBearer: the token goes to the source's own host, and to nothing a
// redirect points elsewhere; a bad reference is said precisely, without the
// value.
func TestFetchBearer(t *testing.T) {
	const token = "tok-3f9a-never-shown"
	var elsewhereAuth atomic.Value
	elsewhere := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhereAuth.Store(r.Header.Get("Authorization"))
		w.Write(model)
	}))
	defer elsewhere.Close()
	var sawAuth atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/m.onnx", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		sawAuth.Add(1)
		w.Write(model)
	})
	mux.HandleFunc("/same-host", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/m.onnx", http.StatusFound) })
	mux.HandleFunc("/other-host", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/m.onnx", http.StatusFound)
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	// One pool trusting both servers (httptest uses one certificate).
	f := New(Options{TLS: tlsOf(srv), Egress: loopback, Secrets: envSecrets{"NIMBUS_SECRET_TOKEN": token, "NIMBUS_SECRET_WRONG": "nope"}.resolver(t)})
	ref := &secrets.Ref{Env: "NIMBUS_SECRET_TOKEN"}
	ctx := context.Background()
	sum := digest(model)

	for _, path := range []string{"/m.onnx", "/same-host"} {
		if _, err := f.Fetch(ctx, Artifact{URI: srv.URL + path, SHA256: sum, TokenFrom: ref}, newBlobs(t)); err != nil {
			t.Fatalf("%s with the token: %v", path, err)
		}
	}
	if sawAuth.Load() != 2 {
		t.Errorf("the server saw the token %d times, want 2", sawAuth.Load())
	}
	if _, err := f.Fetch(ctx, Artifact{URI: srv.URL + "/other-host", SHA256: sum, TokenFrom: ref}, newBlobs(t)); err != nil {
		t.Fatalf("redirect elsewhere: %v", err)
	}
	if got, _ := elsewhereAuth.Load().(string); got != "" {
		t.Errorf("the other host got Authorization %q", got)
	}
	_, err := f.Fetch(ctx, Artifact{URI: srv.URL + "/m.onnx", SHA256: sum, TokenFrom: &secrets.Ref{Env: "NIMBUS_SECRET_WRONG"}}, newBlobs(t))
	checkUnavailable(t, err, srv.URL+"/m.onnx", "401 Unauthorized")
	_, err = f.Fetch(ctx, Artifact{URI: srv.URL + "/m.onnx", SHA256: sum}, newBlobs(t))
	checkUnavailable(t, err, srv.URL+"/m.onnx", "401 Unauthorized")

	for _, tc := range []struct {
		f     *Fetcher
		a     Artifact
		kind  errs.Kind
		msg   string
		field string
	}{
		{f, Artifact{URI: srv.URL + "/m.onnx", SHA256: sum, TokenFrom: &secrets.Ref{Env: "NIMBUS_SECRET_UNSET"}},
			errs.FailedPrecondition, "auth.tokenFrom: secret env NIMBUS_SECRET_UNSET: the variable is not set on the server", "auth.tokenFrom"},
		{f, Artifact{URI: srv.URL + "/m.onnx", SHA256: sum, TokenFrom: &secrets.Ref{Env: "HOME"}},
			errs.InvalidArgument, "secrets come only from environment variables named NIMBUS_SECRET_", "auth.tokenFrom.env"},
		{f, Artifact{URI: srv.URL + "/m.onnx", SHA256: sum, TokenFrom: &secrets.Ref{File: "token"}},
			errs.FailedPrecondition, "file secrets are disabled on this server", "auth.tokenFrom"},
		{New(Options{}), Artifact{URI: srv.URL + "/m.onnx", SHA256: sum, TokenFrom: ref},
			errs.FailedPrecondition, "this server resolves no secrets", "auth.tokenFrom"},
		{f, Artifact{URI: strings.Replace(srv.URL, "https://", "https://u:p@", 1) + "/m.onnx", SHA256: sum, TokenFrom: ref},
			errs.InvalidArgument, "not both", "auth"},
		{f, Artifact{URI: "file:///m.onnx", SHA256: sum, TokenFrom: ref},
			errs.InvalidArgument, "auth is for https:// sources only", "auth"},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			for _, err := range []error{tc.f.Check(tc.a), func() error { _, err := tc.f.Fetch(ctx, tc.a, newBlobs(t)); return err }()} {
				checkErr(t, err, tc.kind, tc.msg)
				if errs.FieldOf(err) != tc.field {
					t.Errorf("field %q, want %q", errs.FieldOf(err), tc.field)
				}
				if strings.Contains(err.Error(), token) {
					t.Errorf("leaks the token: %v", err)
				}
			}
		})
	}
}

// TestFetchSendsNoReferer: following a redirect sends no Referer, so the
// source URI (a presigned URL's query is a credential) does not reach the host
// it redirects to, on the same host or another. Go's http.Client sets one on
// every redirect it follows.
func TestFetchSendsNoReferer(t *testing.T) {
	var referers []string
	var mu sync.Mutex
	record := func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		referers = append(referers, r.Header.Get("Referer"))
	}
	elsewhere := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Write(model)
	}))
	defer elsewhere.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/m.onnx", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Write(model)
	})
	mux.HandleFunc("/same-host", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/m.onnx", http.StatusFound) })
	mux.HandleFunc("/other-host", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/m.onnx", http.StatusFound)
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	f := New(Options{TLS: tlsOf(srv), Egress: loopback}) // httptest uses one certificate for both
	for _, path := range []string{"/same-host", "/other-host"} {
		uri := srv.URL + path + "?X-Amz-Signature=secret-signature"
		if _, err := f.Fetch(context.Background(), Artifact{URI: uri, SHA256: digest(model)}, newBlobs(t)); err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(referers) != 2 || referers[0] != "" || referers[1] != "" {
		t.Errorf("redirect targets got Referer %q, want none", referers)
	}
}

// TestCheckConnectsToNothing: Check, what a dry run uses, opens a file:// source
// without reading it and never connects to an https:// one.
func TestCheckConnectsToNothing(t *testing.T) {
	srv, conns := modelServer(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "m.onnx"), model)
	f := New(Options{AllowedDir: dir, TLS: tlsOf(srv), Egress: loopback})
	sum := digest(model)
	if err := f.Check(Artifact{URI: srv.URL + "/m.onnx", SHA256: sum}); err != nil {
		t.Errorf("Check(https) = %v", err)
	}
	if err := f.Check(Artifact{URI: "file://" + dir + "/m.onnx", SHA256: sum}); err != nil {
		t.Errorf("Check(file) = %v", err)
	}
	checkErr(t, f.Check(Artifact{URI: "file://" + dir + "/nope.onnx", SHA256: sum}), errs.NotFound, "no such file")
	checkErr(t, f.Check(Artifact{URI: "file:///etc/passwd", SHA256: sum}), errs.InvalidArgument, "outside the source directory")
	checkErr(t, f.Check(Artifact{URI: "http://example.com/m.onnx", SHA256: sum}), errs.InvalidArgument, "plain http://")
	checkErr(t, f.Check(Artifact{URI: srv.URL + "/m.onnx"}), errs.InvalidArgument, "sha256 is required")
	if n := conns.Load(); n != 0 {
		t.Errorf("Check connected %d times", n)
	}
}
