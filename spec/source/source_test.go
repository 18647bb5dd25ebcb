package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/blob"
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
			info, err := New(Options{AllowedDir: dir}).Fetch(ctx, tc.uri, sum, b)
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
	_, err := New(Options{}).Fetch(context.Background(), "file://"+dir+"/m.onnx", digest(model), newBlobs(t))
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
			_, err := New(Options{AllowedDir: t.TempDir()}).Fetch(context.Background(), tc.uri, tc.sha, b)
			checkErr(t, err, errs.InvalidArgument, tc.msg)
		})
	}
}

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

	client := srv.Client()
	f := New(Options{HTTPClient: client})
	ctx := context.Background()
	sum := digest(model)
	for _, tc := range []struct {
		name, path string
		kind       errs.Kind // Internal: success
		msg        string
	}{
		{name: "ok", path: "/model.onnx"},
		{name: "https redirect", path: "/redirect"},
		{name: "redirect to http", path: "/downgrade", kind: errs.InvalidArgument, msg: "redirected to " + plain.URL + "/model.onnx: only https:// redirects are followed"},
		{name: "redirect loop", path: "/loop", kind: errs.InvalidArgument, msg: "stopped after 5 redirects"},
		{name: "404", path: "/missing.onnx", kind: errs.NotFound, msg: "server answered 404 Not Found"},
		{name: "500", path: "/broken", kind: errs.Unavailable, msg: "server answered 500 Internal Server Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBlobs(t)
			uri := srv.URL + tc.path
			info, err := f.Fetch(ctx, uri, sum, b)
			if tc.kind == errs.Internal {
				if err != nil || info.SHA256 != sum {
					t.Fatalf("Fetch(%s) = %+v, %v", uri, info, err)
				}
				return
			}
			checkErr(t, err, tc.kind, tc.msg, "source "+uri)
			if got := b.stored(t); len(got) != 0 {
				t.Errorf("stored = %v, want nothing", got)
			}
		})
	}
	if n := plainHits.Load(); n != 0 {
		t.Errorf("the plain http server was hit %d times", n)
	}
	if client.CheckRedirect != nil {
		t.Error("New changed the caller's client")
	}
}

func TestFetchHTTPSUntrusted(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(model) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	// Without the test server's client, its certificate is not trusted.
	_, err := New(Options{}).Fetch(context.Background(), srv.URL+"/model.onnx", digest(model), newBlobs(t))
	checkErr(t, err, errs.Unavailable, "source "+srv.URL+"/model.onnx")
	checkLogged(t, err, "certificate")
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

func TestFetchHTTPSCallerRedirectPolicy(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/model.onnx", func(w http.ResponseWriter, r *http.Request) { w.Write(model) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/model.onnx", http.StatusFound)
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	// The caller's own policy still applies, after ours.
	client := *srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return errors.New("caller says no") }
	_, err := New(Options{HTTPClient: &client}).Fetch(context.Background(), srv.URL+"/redirect", digest(model), newBlobs(t))
	checkErr(t, err, errs.Unavailable, "source "+srv.URL+"/redirect")
	checkLogged(t, err, "caller says no")
}

func TestFetchMismatchStoresNothing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "m.onnx"), model)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(model) }))
	defer srv.Close()

	declared := digest([]byte("something else"))
	f := New(Options{AllowedDir: dir, HTTPClient: srv.Client()})
	for _, uri := range []string{"file://" + dir + "/m.onnx", srv.URL + "/m.onnx"} {
		t.Run(uri, func(t *testing.T) {
			b := newBlobs(t)
			_, err := f.Fetch(context.Background(), uri, declared, b)
			checkErr(t, err, errs.InvalidArgument, "source "+uri+": sha256 mismatch: declared "+declared+", fetched "+digest(model))
			if errs.FieldOf(err) != "sha256" {
				t.Errorf("field = %q, want sha256", errs.FieldOf(err))
			}
			if got := b.stored(t); len(got) != 0 {
				t.Errorf("stored = %v, want nothing", got)
			}
		})
	}
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

	f := New(Options{AllowedDir: dir, HTTPClient: srv.Client(), MaxBytes: limit})
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
			_, err := f.Fetch(context.Background(), tc.uri, digest(tc.body), b)
			if tc.ok {
				if err != nil {
					t.Fatalf("Fetch = %v", err)
				}
				return
			}
			checkErr(t, err, errs.TooLarge, "source "+tc.uri+": larger than the limit of 16 bytes")
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
	_, err := New(Options{HTTPClient: srv.Client(), Timeout: 100 * time.Millisecond}).
		Fetch(context.Background(), srv.URL+"/m.onnx", digest(model), newBlobs(t))
	checkErr(t, err, errs.Unavailable, "server sent nothing for 100ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
}

func TestFetchHidesCredentials(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	uri := strings.Replace(srv.URL, "https://", "https://alice:hunter2@", 1) + "/m.onnx?X-Amz-Signature=topsecret"
	_, err := New(Options{HTTPClient: srv.Client()}).Fetch(context.Background(), uri, digest(model), newBlobs(t))
	checkErr(t, err, errs.NotFound, "alice@", "/m.onnx?…")
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
	_, err := New(Options{HTTPClient: srv.Client()}).Fetch(ctx, srv.URL+"/m.onnx", digest(model), newBlobs(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}
