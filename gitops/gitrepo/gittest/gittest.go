// Package gittest makes real git repositories for tests: a working tree in a
// temporary directory driven by the git CLI, and a smart-HTTP server for it
// that runs git's own git-http-backend behind a token check. Tests of
// gitops/gitrepo and of the GitOps controller use it so that what they fetch
// is what git itself wrote and served, not what go-git thinks git would do.
//
// Every git command runs with a clean environment (HOME in the test's
// temporary directory, GIT_CONFIG_NOSYSTEM=1) and its settings given with -c,
// so the machine's global or system git configuration cannot change a test.
// A test that uses this package fails with a clear message where git is not
// installed.
package gittest

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// settings are passed to every git command with -c: a fixed identity, main
// as the default branch, no signing, no background gc (it would repack while
// a test looks at objects), no CRLF conversion.
var settings = []string{
	"user.name=Nimbus Test",
	"user.email=test@nimbus.invalid",
	"init.defaultBranch=main",
	"commit.gpgSign=false",
	"tag.gpgSign=false",
	"gc.auto=0",
	"gc.autoDetach=false",
	"core.autocrlf=false",
	"core.symlinks=true",
	"advice.detachedHead=false",
}

// Repo is a non-bare git repository in a test's temporary directory.
type Repo struct {
	t    testing.TB
	dir  string
	home string
}

// NewRepo runs git init in a new temporary directory (removed when the test
// ends) with main as the default branch. The repository has no commits yet.
func NewRepo(t testing.TB) *Repo {
	t.Helper()
	gitPath(t)
	root := t.TempDir()
	r := &Repo{t: t, dir: filepath.Join(root, "repo"), home: filepath.Join(root, "home")}
	for _, d := range []string{r.dir, r.home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("gittest: %v", err)
		}
	}
	r.Git("init", "--quiet")
	return r
}

// gitPath fails the test unless a git binary is on PATH.
func gitPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("gittest: these tests need the git command line tool, which is not installed (or not on PATH): %v", err)
	}
	return p
}

// Dir is the repository's working tree (its .git directory is inside it).
func (r *Repo) Dir() string { return r.dir }

// env is the whole environment of a git command: nothing inherited but PATH,
// so GIT_DIR and friends in the test's own environment cannot leak in.
func (r *Repo) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + r.home,
		"XDG_CONFIG_HOME=" + filepath.Join(r.home, ".config"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
		"TZ=UTC",
	}
}

// Git runs git with args in the repository and returns its standard output,
// trimmed. The test fails if git fails.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	full := make([]string, 0, 2*len(settings)+len(args))
	for _, s := range settings {
		full = append(full, "-c", s)
	}
	full = append(full, args...)
	cmd := exec.Command(gitPath(r.t), full...)
	cmd.Dir = r.dir
	cmd.Env = r.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("gittest: git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// path turns a slash-separated repository path into a file name in the
// working tree, refusing one that would leave it.
func (r *Repo) path(p string) string {
	r.t.Helper()
	if !filepath.IsLocal(filepath.FromSlash(p)) {
		r.t.Fatalf("gittest: %q is not a relative path inside the repository", p)
	}
	return filepath.Join(r.dir, filepath.FromSlash(p))
}

// Write writes content to path (slash-separated, relative to the repository
// root; parent directories are made) and stages it.
func (r *Repo) Write(path, content string) {
	r.t.Helper()
	name := r.path(path)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
	r.Git("add", "--", path)
}

// Symlink makes path a symbolic link to target (which need not exist) and
// stages it: git stores the link itself, not what it points to.
func (r *Repo) Symlink(path, target string) {
	r.t.Helper()
	name := r.path(path)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
	if err := os.Symlink(target, name); err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
	r.Git("add", "--", path)
}

// Remove deletes path (a file or a directory) from the working tree and the
// index.
func (r *Repo) Remove(path string) {
	r.t.Helper()
	r.path(path)
	r.Git("rm", "-r", "--quiet", "--", path)
}

// Commit commits what is staged (an empty commit if nothing is) and returns
// the new commit's full hash.
func (r *Repo) Commit(msg string) string {
	r.t.Helper()
	r.Git("commit", "--quiet", "--allow-empty", "-m", msg)
	return r.RevParse("HEAD")
}

// RevParse returns the full hash rev names.
func (r *Repo) RevParse(rev string) string {
	r.t.Helper()
	return r.Git("rev-parse", "--verify", "--end-of-options", rev+"^{commit}")
}

// HasObject reports whether the repository still has the object h (after a
// Prune, say).
func (r *Repo) HasObject(h string) bool {
	r.t.Helper()
	cmd := exec.Command(gitPath(r.t), "cat-file", "-e", "--end-of-options", h)
	cmd.Dir = r.dir
	cmd.Env = r.env()
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		r.t.Fatalf("gittest: git cat-file: %v", err)
	}
	return err == nil
}

// Branch creates branch name at HEAD without switching to it.
func (r *Repo) Branch(name string) {
	r.t.Helper()
	r.Git("branch", "--", name)
}

// Checkout switches the working tree to rev (a branch, a tag or a commit).
func (r *Repo) Checkout(rev string) {
	r.t.Helper()
	r.Git("checkout", "--quiet", rev, "--")
}

// Tag creates the lightweight tag name at HEAD.
func (r *Repo) Tag(name string) {
	r.t.Helper()
	r.Git("tag", "--", name)
}

// TagAnnotated creates the annotated tag name at HEAD: a tag object that
// points to the commit, which fetchers must peel.
func (r *Repo) TagAnnotated(name, msg string) {
	r.t.Helper()
	r.Git("tag", "-a", "-m", msg, "--", name)
}

// ResetHard moves the current branch to rev and makes the working tree match,
// the first half of rewriting history before a force-push.
func (r *Repo) ResetHard(rev string) {
	r.t.Helper()
	r.Git("reset", "--quiet", "--hard", rev)
}

// Prune deletes every object no branch or tag reaches (reflogs expired first,
// since they would keep them), as a server does some time after a
// force-push: a fetcher can then no longer get the old history from it.
func (r *Repo) Prune() {
	r.t.Helper()
	r.Git("reflog", "expire", "--expire=now", "--all")
	r.Git("gc", "--quiet", "--prune=now")
}

// ServeHTTP serves the repository over git's smart HTTP protocol, with the
// real git-http-backend run through net/http/cgi, on a plain-HTTP loopback
// server that closes when the test ends. It returns the repository's URL.
//
// With a token, every request must carry it as the basic-auth password (any
// user name, as git hosts accept "x-access-token"); one that does not is
// answered 401 with a WWW-Authenticate challenge. An empty token serves
// everyone.
func (r *Repo) ServeHTTP(t testing.TB, token string) string {
	t.Helper()
	srv := httptest.NewServer(r.handler(t, token))
	t.Cleanup(srv.Close)
	return srv.URL + "/" + filepath.Base(r.dir)
}

// ServeHTTPS is ServeHTTP over TLS. It also returns a client that trusts the
// server's certificate (and nothing else), which closes its idle connections
// when the test ends.
func (r *Repo) ServeHTTPS(t testing.TB, token string) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewTLSServer(r.handler(t, token))
	t.Cleanup(srv.Close) // also closes the idle connections of srv.Client()
	return srv.URL + "/" + filepath.Base(r.dir), srv.Client()
}

func (r *Repo) handler(t testing.TB, token string) http.Handler {
	t.Helper()
	backend := filepath.Join(r.Git("--exec-path"), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("gittest: git's smart-HTTP server is missing (git-http-backend, from git --exec-path): %v", err)
	}
	stderr := &testLog{t: t}
	t.Cleanup(stderr.close)
	env := append(r.env(),
		"GIT_PROJECT_ROOT="+filepath.Dir(r.dir),
		"GIT_HTTP_EXPORT_ALL=1",
	)
	// git http-backend reads no -c flags; GIT_CONFIG_* hands it the same
	// settings the CLI gets.
	env = append(env, configEnv()...)
	cgiHandler := &cgi.Handler{Path: backend, Dir: r.dir, Env: env, Stderr: stderr}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if token != "" {
			_, pw, ok := req.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="gittest"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		cgiHandler.ServeHTTP(w, req)
	})
}

// configEnv is settings as GIT_CONFIG_COUNT/KEY/VALUE variables.
func configEnv() []string {
	env := []string{"GIT_CONFIG_COUNT=" + strconv.Itoa(len(settings))}
	for i, s := range settings {
		k, v, _ := strings.Cut(s, "=")
		env = append(env, "GIT_CONFIG_KEY_"+strconv.Itoa(i)+"="+k, "GIT_CONFIG_VALUE_"+strconv.Itoa(i)+"="+v)
	}
	return env
}

// testLog sends git-http-backend's complaints to the test log until the test
// ends (logging after that panics).
type testLog struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.t.Logf("git-http-backend: %s", bytes.TrimSpace(p))
	}
	return len(p), nil
}

func (l *testLog) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}
