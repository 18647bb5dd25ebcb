package gitrepo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/nimbus-ai/nimbus/egress"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo/gittest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "tok-5e3c1c2f0b-planted"

// env is a cache and a repository it can fetch, over one transport.
type env struct {
	repo   *gittest.Repo
	cache  *gitrepo.Cache
	remote gitrepo.Remote
	logs   *syncBuffer
	dir    string // the cache's mirrors
}

// transports are the ways a test can reach its repository.
var transports = []string{"path", "file", "http", "https"}

func newEnv(t *testing.T, transport string) *env {
	t.Helper()
	e := &env{repo: gittest.NewRepo(t), logs: &syncBuffer{}, dir: t.TempDir()}
	opts := gitrepo.Options{Dir: e.dir, Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	switch transport {
	case "path":
		opts.LocalRoot = filepath.Dir(e.repo.Dir())
		e.remote = gitrepo.Remote{URL: e.repo.Dir()}
	case "file":
		opts.LocalRoot = filepath.Dir(e.repo.Dir())
		e.remote = gitrepo.Remote{URL: "file://" + e.repo.Dir()}
	case "http":
		opts.HTTPClient = loopbackClient(t, nil)
		e.remote = gitrepo.Remote{URL: e.repo.ServeHTTP(t, token), Token: token}
	case "https":
		u, client := e.repo.ServeHTTPS(t, token)
		opts.HTTPClient = client
		e.remote = gitrepo.Remote{URL: u, Token: token}
	default:
		t.Fatalf("unknown transport %q", transport)
	}
	e.cache = newCache(t, opts)
	t.Cleanup(func() { checkNoToken(t, "logs", e.logs.String()) })
	return e
}

func newCache(t testing.TB, opts gitrepo.Options) *gitrepo.Cache {
	t.Helper()
	c, err := gitrepo.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loopbackClient dials through the egress rule with loopback allowed, as
// the server's client does with --egress-allow, and keeps no connections
// past the test.
func loopbackClient(t testing.TB, wrap func(http.RoundTripper) http.RoundTripper) *http.Client {
	tr := egress.New(netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")).Transport(nil)
	t.Cleanup(tr.CloseIdleConnections)
	var rt http.RoundTripper = tr
	if wrap != nil {
		rt = wrap(tr)
	}
	return &http.Client{Transport: rt}
}

func (e *env) fetch(t *testing.T, ref string) *gitrepo.Snapshot {
	t.Helper()
	s, err := e.cache.Fetch(context.Background(), e.remote, ref)
	if err != nil {
		t.Fatalf("Fetch(%q): %v (cause: %v)", ref, err, cause(err))
	}
	return s
}

func cause(err error) error {
	var e *gitrepo.Error
	if errors.As(err, &e) {
		return e.Cause
	}
	return nil
}

// files reads every file of s.
func files(t *testing.T, s *gitrepo.Snapshot) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := s.Walk("", func(p string, size int64) error {
		b, err := s.ReadFile(p, 1<<30)
		if err != nil {
			return err
		}
		if int64(len(b)) != size {
			t.Errorf("%s: Walk said %d bytes, ReadFile read %d", p, size, len(b))
		}
		got[p] = string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return got
}

func wantErr(t *testing.T, err, kind error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Errorf("error %q (cause %v) is not %v", err, cause(err), kind)
	}
	if msg != "" && err.Error() != msg {
		t.Errorf("error:\n got %q\nwant %q", err, msg)
	}
	checkNoToken(t, "error", fmt.Sprintf("%v %+v %#v %v", err, err, err, cause(err)))
}

func checkNoToken(t *testing.T, what, s string) {
	t.Helper()
	for _, secret := range []string{token, "dG9r"} { // "dG9r": base64 of "tok", as in a basic-auth header
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the token (%q):\n%s", what, secret, s)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestFetchEveryTransport(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			e.repo.Write("deploy/model.yaml", "kind: Model\n")
			e.repo.Write("README.md", "hello\n")
			e.repo.Write("deploy/nested/svc.yaml", "kind: InferenceService\n")
			c1 := e.repo.Commit("first")

			s := e.fetch(t, "main")
			if s.Commit != c1 || s.Ref != "refs/heads/main" {
				t.Errorf("snapshot %s %s, want %s refs/heads/main", s.Commit, s.Ref, c1)
			}
			want := map[string]string{"README.md": "hello\n", "deploy/model.yaml": "kind: Model\n", "deploy/nested/svc.yaml": "kind: InferenceService\n"}
			if diff := cmp.Diff(want, files(t, s)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}

			// A new commit is seen by the next Fetch; a deleted file is gone
			// from it; the earlier snapshot still reads its own commit.
			e.repo.Write("deploy/model.yaml", "kind: Model\nv: 2\n")
			e.repo.Remove("README.md")
			c2 := e.repo.Commit("second")
			s2 := e.fetch(t, "")
			if s2.Commit != c2 || s2.Ref != "refs/heads/main" {
				t.Errorf("second snapshot %s %s, want %s refs/heads/main", s2.Commit, s2.Ref, c2)
			}
			want2 := map[string]string{"deploy/model.yaml": "kind: Model\nv: 2\n", "deploy/nested/svc.yaml": "kind: InferenceService\n"}
			if diff := cmp.Diff(want2, files(t, s2)); diff != "" {
				t.Errorf("files after the second commit (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, files(t, s)); diff != "" {
				t.Errorf("the first snapshot changed (-want +got):\n%s", diff)
			}

			// Nothing new upstream: the same commit, nothing fetched.
			if s3 := e.fetch(t, "main"); s3.Commit != c2 {
				t.Errorf("no-op fetch: %s, want %s", s3.Commit, c2)
			}
		})
	}
}

func TestHistoryRewritten(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			e.repo.Write("a.yaml", "a: 1\n")
			c1 := e.repo.Commit("one")
			e.repo.Write("b.yaml", "b: 1\n")
			c2 := e.repo.Commit("two")
			if s := e.fetch(t, "main"); s.Commit != c2 {
				t.Fatalf("fetched %s, want %s", s.Commit, c2)
			}

			// The branch moves backwards: the mirror has the commit already.
			e.repo.ResetHard(c1)
			s := e.fetch(t, "main")
			if s.Commit != c1 {
				t.Fatalf("after the branch moved back: %s, want %s", s.Commit, c1)
			}
			if diff := cmp.Diff(map[string]string{"a.yaml": "a: 1\n"}, files(t, s)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}

			// A force-push: a new commit on the old base, and the old tip
			// pruned from the server, so it is no help to the negotiation.
			e.repo.Write("c.yaml", "c: 1\n")
			c3 := e.repo.Commit("three, rewritten")
			e.repo.Prune()
			if e.repo.HasObject(c2) {
				t.Fatalf("the rewritten commit %s survived the prune", c2)
			}
			s = e.fetch(t, "main")
			if s.Commit != c3 {
				t.Fatalf("after the force-push: %s, want %s", s.Commit, c3)
			}
			if diff := cmp.Diff(map[string]string{"a.yaml": "a: 1\n", "c.yaml": "c: 1\n"}, files(t, s)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNoGitBinary: with no git on PATH (only the test server's
// git-http-backend, started with its own PATH, still has one), every
// transport still fetches: the fetching side is go-git alone.
func TestNoGitBinary(t *testing.T) {
	envs := map[string]*env{}
	for _, tr := range transports {
		envs[tr] = newEnv(t, tr)
		envs[tr].repo.Write("a", tr)
		envs[tr].repo.Commit("one")
	}
	t.Setenv("PATH", t.TempDir())
	for tr, e := range envs {
		if b, err := e.fetch(t, "main").ReadFile("a", 10); err != nil || string(b) != tr {
			t.Errorf("%s: a = %q, %v", tr, b, err)
		}
	}
}
