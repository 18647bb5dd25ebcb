package gitrepo_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/egress"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo/gittest"
)

func TestHTTPAuthentication(t *testing.T) {
	e := newEnv(t, "http")
	e.repo.Write("a", "a")
	e.repo.Commit("one")
	for _, tc := range []struct{ name, token string }{
		{"no token", ""},
		{"wrong token", "not-" + token},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.cache.Fetch(context.Background(), gitrepo.Remote{URL: e.remote.URL, Token: tc.token}, "main")
			wantErr(t, err, gitrepo.ErrAuth, "fetch "+e.remote.URL+": authentication required")
		})
	}
	// The mirror another caller filled is no way around it: every Fetch asks
	// the server, with the caller's own token.
	e.fetch(t, "main")
	_, err := e.cache.Fetch(context.Background(), gitrepo.Remote{URL: e.remote.URL}, "main")
	wantErr(t, err, gitrepo.ErrAuth, "fetch "+e.remote.URL+": authentication required")
}

func TestRepositoryNotFound(t *testing.T) {
	t.Run("http", func(t *testing.T) {
		e := newEnv(t, "http")
		u := strings.TrimSuffix(e.remote.URL, "/repo") + "/nope.git"
		_, err := e.cache.Fetch(context.Background(), gitrepo.Remote{URL: u, Token: token}, "main")
		wantErr(t, err, gitrepo.ErrRepoNotFound, "fetch "+u+": repository not found")
	})
	t.Run("local", func(t *testing.T) {
		e := newEnv(t, "path")
		root := filepath.Dir(e.repo.Dir())
		for _, p := range []string{filepath.Join(root, "nope"), filepath.Join(root, "home")} { // missing; not a repository
			_, err := e.cache.Fetch(context.Background(), gitrepo.Remote{URL: p}, "main")
			wantErr(t, err, gitrepo.ErrRepoNotFound, "fetch "+p+": repository not found")
		}
	})
}

func TestLocalRemoteOutsideTheSourceDir(t *testing.T) {
	e := newEnv(t, "path")
	e.repo.Write("a", "a")
	e.repo.Commit("one")
	root := filepath.Dir(e.repo.Dir())

	// Another repository, outside the source dir, and a symlink to it from
	// inside; also a working tree whose .git is a symlink out of it.
	other := gittest.NewRepo(t)
	other.Write("secret", "s")
	other.Commit("outside")
	link := filepath.Join(root, "link")
	if err := os.Symlink(other.Dir(), link); err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(root, "inner")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other.Dir(), ".git"), filepath.Join(inner, ".git")); err != nil {
		t.Fatal(err)
	}

	outside := func(p string) string { return "local path " + p + " is outside the source dir " + root }
	for _, tc := range []struct{ url, path string }{
		{other.Dir(), other.Dir()},
		{"file://" + other.Dir(), other.Dir()},
		{link, link},
		{"file://" + link, link},
		{root + "/../" + filepath.Base(filepath.Dir(other.Dir())) + "/repo", other.Dir()},
		{"/etc", "/etc"},
		{"/does/not/exist", "/does/not/exist"},
	} {
		_, err := e.cache.Fetch(context.Background(), gitrepo.Remote{URL: tc.url}, "main")
		wantErr(t, err, gitrepo.ErrOutsideRoot, outside(tc.path))
	}
	// A working tree whose .git is a symlink is refused before anything is
	// read (where it leads was not checked).
	_, err := e.cache.Fetch(context.Background(), gitrepo.Remote{URL: inner}, "main")
	wantErr(t, err, gitrepo.ErrRepoNotFound, "fetch "+inner+": repository not found")

	// A bare repository inside whose objects directory is a symlink to the
	// outside repository's, and whose main names the outside commit: the
	// objects are read through a file system bound to the repository, so the
	// link does not lead out and the outside commit is not found.
	bare := filepath.Join(root, "bare.git")
	e.repo.Git("clone", "--quiet", "--bare", ".", bare)
	if err := os.RemoveAll(filepath.Join(bare, "objects")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other.Dir(), ".git", "objects"), filepath.Join(bare, "objects")); err != nil {
		t.Fatal(err)
	}
	secret := other.RevParse("HEAD")
	if err := os.WriteFile(filepath.Join(bare, "refs", "heads", "main"), []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := e.cache.Fetch(context.Background(), gitrepo.Remote{URL: bare}, "main")
	if err == nil {
		b, rerr := s.ReadFile("secret", 100)
		t.Fatalf("fetched %s through a symlinked objects dir: secret = %q, %v", s.Commit, b, rerr)
	}
	if errors.Is(err, gitrepo.ErrOutsideRoot) || !errors.Is(err, gitrepo.ErrUnavailable) {
		t.Errorf("symlinked objects dir: %v, want ErrUnavailable", err)
	}
}

func TestRemoteURLs(t *testing.T) {
	c := newCache(t, gitrepo.Options{Dir: t.TempDir(), LocalRoot: t.TempDir(), HTTPClient: loopbackClient(t, nil)})
	for _, tc := range []struct{ url, msg string }{
		{"", "remote: a URL is required"},
		{"ssh://git@example.com/repo.git", `remote ssh://example.com/repo.git: scheme "ssh" is not supported; use https://, http://, file:///absolute/path or /absolute/path`},
		{"ssh://example.com/repo.git", `remote ssh://example.com/repo.git: scheme "ssh" is not supported; use https://, http://, file:///absolute/path or /absolute/path`},
		{"git@example.com:org/repo.git", `remote example.com:org/repo.git: SSH remotes are not supported; use https://, http://, file:///absolute/path or /absolute/path`},
		{"https://x-access-token:" + token + "@example.com/repo.git", "remote https://example.com/repo.git: credentials in the URL are not accepted; give the token separately"},
		{"https://example.com/repo.git?access_token=" + token, "remote https://example.com/repo.git: a git URL has no query or fragment"},
		{"https:///repo.git", "remote https:///repo.git: no host"},
		{"relative/repo", "remote relative/repo: use https://, http://, file:///absolute/path or /absolute/path"},
		{"file://host/srv/repo", "remote file://host/srv/repo: a file:// URL must name an absolute local path (file:///srv/git/repo)"},
		{"https://ex ample.com/" + token, `remote "https://ex ample.com/tok-5e3c1c2f0b-planted": not a valid URL`},
	} {
		_, err := c.Fetch(context.Background(), gitrepo.Remote{URL: tc.url}, "main")
		if strings.Contains(tc.msg, token) {
			// Only where the URL cannot be parsed, so there is no telling
			// what is a credential: shown quoted, as given, minus user info.
			if err == nil || err.Error() != tc.msg || !errors.Is(err, gitrepo.ErrInvalidRemote) {
				t.Errorf("Fetch(%q): %v, want %q", tc.url, err, tc.msg)
			}
			continue
		}
		wantErr(t, err, gitrepo.ErrInvalidRemote, tc.msg)
	}

	// A token only goes to http(s) remotes.
	_, err := c.Fetch(context.Background(), gitrepo.Remote{URL: "/srv/repo", Token: token}, "main")
	wantErr(t, err, gitrepo.ErrInvalidRemote, "remote /srv/repo: a token is only sent to http(s) remotes")

	// Kinds of remote the server was not configured for.
	bare := newCache(t, gitrepo.Options{Dir: t.TempDir()})
	_, err = bare.Fetch(context.Background(), gitrepo.Remote{URL: "https://example.com/r.git"}, "main")
	wantErr(t, err, gitrepo.ErrInvalidRemote, "remote https://example.com/r.git: http(s) remotes are disabled on this server (no HTTP client configured)")
	_, err = bare.Fetch(context.Background(), gitrepo.Remote{URL: "/srv/repo"}, "main")
	wantErr(t, err, gitrepo.ErrInvalidRemote, "remote /srv/repo: local remotes are disabled on this server (no source dir configured)")

	for _, r := range []gitrepo.Remote{
		{URL: "https://example.com/r.git", Token: token},
		{URL: "https://x:" + token + "@example.com/r.git?t=" + token},
		{URL: "https://x:" + token + "@ex ample.com/r.git"},
		{URL: "x:" + token + "@example.com:org/r.git"},
	} {
		if s := fmt.Sprintf("%v %+v %#v %s", r, r, r, r); strings.Contains(s, token) {
			t.Errorf("a Remote prints its token: %s", s)
		}
	}
}

// TestTokenNeverShown plants a token with servers that echo what they got
// (the Authorization header, the decoded password) in their answers, and
// scans every error and the whole log for it.
func TestTokenNeverShown(t *testing.T) {
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_, pw, _ := r.BasicAuth()
			w.WriteHeader(status)
			fmt.Fprintf(w, "you sent Authorization: %s (password %s) to %s", r.Header.Get("Authorization"), pw, r.URL)
		}
	}
	logs := &syncBuffer{}
	c := newCache(t, gitrepo.Options{Dir: t.TempDir(), HTTPClient: loopbackClient(t, nil),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusInternalServerError, http.StatusOK} {
		srv := httptest.NewServer(echo(status))
		_, err := c.Fetch(context.Background(), gitrepo.Remote{URL: srv.URL + "/repo.git", Token: token}, "main")
		srv.Close()
		if err == nil {
			t.Fatalf("status %d: no error", status)
		}
		var e *gitrepo.Error
		if !errors.As(err, &e) {
			t.Fatalf("status %d: %T is not an *Error", status, err)
		}
		// go-git puts the body of a 401, 403 or 404 in its error.
		if status < 500 && status != http.StatusOK && (e.Cause == nil || !strings.Contains(e.Cause.Error(), "[redacted]")) {
			t.Errorf("status %d: the cause does not show the echoed token as redacted: %v", status, e.Cause)
		}
		checkNoToken(t, fmt.Sprintf("status %d error", status), fmt.Sprintf("%v | %+v | %v", err, e.LogValue(), e.Cause))
		slog.New(slog.NewTextHandler(logs, nil)).Error("fetch failed", "err", err)
	}
	checkNoToken(t, "logs", logs.String())
	if !strings.Contains(logs.String(), "cause=") {
		t.Errorf("logging an *Error does not show its cause:\n%s", logs)
	}
}

// TestStalledServer: a server that accepts and never answers holds a Fetch
// only until its ctx ends, and a Fetch waiting for that one's lock gives up
// at its own deadline.
func TestStalledServer(t *testing.T) {
	entered := make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	defer srv.Close()
	c := newCache(t, gitrepo.Options{Dir: t.TempDir(), HTTPClient: loopbackClient(t, nil)})
	rem := gitrepo.Remote{URL: srv.URL + "/repo.git", Token: token}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Fetch(ctx, rem, "main")
	wantErr(t, err, context.DeadlineExceeded, "fetch "+rem.URL+": context deadline exceeded")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Fetch returned %s after its deadline", d)
	}

	// One Fetch stalls holding the mirror's lock; a second one's deadline
	// passes while it waits; cancelling the first frees it.
	first, cancelFirst := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Fetch(first, rem, "main")
		done <- err
	}()
	<-entered // from the first Fetch above
	<-entered
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = c.Fetch(ctx2, rem, "main")
	wantErr(t, err, context.DeadlineExceeded, "fetch "+rem.URL+": context deadline exceeded")
	cancelFirst()
	wantErr(t, <-done, context.Canceled, "fetch "+rem.URL+": context canceled")
}

// TestEgress: every request goes through Options.HTTPClient, so a client
// whose dialer obeys the egress rule keeps Fetch to what the rule allows.
func TestEgress(t *testing.T) {
	repo := gittest.NewRepo(t)
	repo.Write("a", "a")
	repo.Commit("one")
	u := repo.ServeHTTP(t, token)

	// The default rule refuses loopback: the answer says only that the
	// repository could not be fetched; the cause, for the log, says why.
	strict := egress.New().Transport(nil)
	t.Cleanup(strict.CloseIdleConnections)
	c := newCache(t, gitrepo.Options{Dir: t.TempDir(), HTTPClient: &http.Client{Transport: strict}})
	_, err := c.Fetch(context.Background(), gitrepo.Remote{URL: u, Token: token}, "main")
	wantErr(t, err, gitrepo.ErrUnavailable, "fetch "+u+": the repository could not be fetched")
	if !errors.Is(cause(err), egress.ErrRefused) {
		t.Errorf("cause %v is not the egress refusal", cause(err))
	}

	// Allowed, and every request seen by the caller's client.
	var n atomic.Int32
	client := loopbackClient(t, func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n.Add(1)
			return rt.RoundTrip(r)
		})
	})
	c = newCache(t, gitrepo.Options{Dir: t.TempDir(), HTTPClient: client})
	if _, err := c.Fetch(context.Background(), gitrepo.Remote{URL: u, Token: token}, "main"); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 2 { // the ref advertisement, then upload-pack
		t.Errorf("the client saw %d requests, want 2", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
