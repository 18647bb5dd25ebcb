// Package gitrepo is the git layer of GitOps: it keeps a local mirror of each
// remote repository a GitSource names, brings it up to date, resolves a
// branch, tag or commit, and reads files from that commit's tree. The GitOps
// controller calls Fetch on every sync and reads the declarations (and model
// artifacts committed beside them) through the Snapshot it gets back.
//
// # Git without git
//
// Only go-git is used; no git binary runs. Fetch speaks the upload-pack
// protocol through go-git's transport sessions itself instead of calling
// go-git's Remote.Fetch, for two reasons. Remote.Fetch takes its transports
// from a process-wide table (client.InstallProtocol), so the only way to give
// it an http.Client is global; here every http(s) request goes through
// Options.HTTPClient, wrapped in a go-git HTTP transport that belongs to the
// Cache, and nothing global is installed or read. And go-git's file://
// transport runs the git-upload-pack binary; a local remote is served instead
// by go-git's own upload-pack, in this process, reading the repository through
// a file system bound to its directory.
//
// # Mirrors
//
// Options.Dir holds one bare repository per remote, named by a hash of the
// URL (credentials are never part of a URL here) or of the resolved local
// path. Fetch is incremental: it tells the server the commits it has and
// receives only what is new, and a branch that moved backwards or was
// force-pushed is simply moved (git servers ignore the commits they no
// longer have). When the mirror itself is found unusable (a pack that does
// not decode, a missing object, a crash half-way through an earlier fetch),
// Fetch fetches everything afresh into a new directory and swaps it in
// atomically (a "current" file renamed over the old one), then deletes the
// old one.
//
// Every Fetch asks the remote for its refs, even when the mirror already has
// the commit: mirrors are shared by everyone who names the same URL, and this
// is what checks the caller's own token (a no-op Fetch is that one round
// trip). A commit named by its hash is served from the mirror if it is there,
// even if no ref upstream reaches it any more.
//
// # Snapshots
//
// A Snapshot reads one commit's tree straight from the mirror's object store;
// nothing is checked out on disk. It is safe for concurrent use and stays
// readable while later Fetches update the mirror, since an incremental fetch
// only adds objects. After a full re-fetch has replaced the mirror, its reads
// fail with ErrSnapshotGone (never a wrong or partial file: the old directory
// is deleted only once no read is in progress in it); fetch again. Walk
// reports regular files only: symbolic links and submodules in the tree are
// skipped, never followed, and Open refuses them.
//
// # Concurrency
//
// Fetches of one remote are serialized by a lock per mirror (waiting for it
// respects ctx); different remotes are fetched in parallel. A Cache assumes
// it alone uses Options.Dir: two processes must not share one.
package gitrepo

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// Options for a Cache.
type Options struct {
	// Dir is where the mirrors live (made if missing). Required.
	Dir string
	// HTTPClient carries every request to an http(s) remote: the caller
	// passes one whose dialer obeys the egress rule, and whose TLS config
	// trusts what it should. Nil refuses http(s) remotes. Its Timeout, if
	// any, bounds each request; a Fetch is bounded by its ctx.
	HTTPClient *http.Client
	// LocalRoot is the directory local remotes (file:///abs/path, /abs/path)
	// must resolve into, after symlinks. Empty refuses every local remote.
	LocalRoot string
	// Logger receives the cache's own events (a mirror made, a full
	// re-fetch); nil discards them.
	Logger *slog.Logger
}

// Cache is a set of mirrors. It is safe for concurrent use.
type Cache struct {
	dir            string
	http           transport.Transport // nil: http(s) refused
	localRoot      string              // resolved; "" refuses local remotes
	localRootShown string              // as configured, for messages
	log            *slog.Logger

	mu      sync.Mutex
	mirrors map[string]*mirror
}

// New returns a Cache keeping its mirrors in opts.Dir.
func New(opts Options) (*Cache, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("gitrepo: a directory for the mirrors is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("gitrepo: mirror dir %s: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("gitrepo: mirror dir: %w", err)
	}
	c := &Cache{dir: dir, log: opts.Logger, mirrors: map[string]*mirror{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "gitrepo")
	if opts.LocalRoot != "" {
		shown, err := filepath.Abs(opts.LocalRoot)
		if err != nil {
			return nil, fmt.Errorf("gitrepo: source dir %s: %w", opts.LocalRoot, err)
		}
		real, err := filepath.EvalSymlinks(shown)
		if err != nil {
			return nil, fmt.Errorf("gitrepo: source dir: %w", err)
		}
		if st, err := os.Stat(real); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("gitrepo: source dir %s is not a directory", shown)
		}
		c.localRoot, c.localRootShown = real, shown
	}
	if opts.HTTPClient != nil {
		hc := *opts.HTTPClient
		rt := hc.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		hc.Transport = limitErrorBodies{rt}
		// Redirects: go-git's default, as git's (http.followRedirects=initial),
		// and credentials are dropped when one leaves the origin. Each hop
		// still dials through the caller's client, so egress sees it.
		c.http = githttp.NewClient(&hc)
	}
	return c, nil
}

// maxRefLen bounds a ref name (git's own limit is the file system's).
const maxRefLen = 1024

// Fetch brings the mirror of r up to date and resolves ref in it: a branch
// name, a tag name, a full ref name (refs/heads/x, refs/tags/x), a full
// 40-hex commit hash, or "" for the remote's default branch (its HEAD). A
// name that is both a branch and a tag is refused as ambiguous; an
// annotated tag is peeled to its commit.
//
// Errors are *Error; see the Err* kinds. When ctx ends first (a stalled
// server included), the error matches ctx's error; the mirror is left as it
// was.
func (c *Cache) Fetch(ctx context.Context, r Remote, ref string) (*Snapshot, error) {
	rem, err := c.resolve(r)
	if err != nil {
		return nil, err
	}
	if !validRef(ref) {
		return nil, newError(ErrRefNotFound, nil, "ref %q is not a valid git ref name", truncate(ref, 64))
	}
	m := c.mirror(rem.mirrorName())
	if err := m.acquire(ctx); err != nil {
		return nil, newError(err, nil, "fetch %s: %v", rem.shown, err)
	}
	defer m.release()
	return m.fetch(ctx, rem, ref)
}

// validRef reports whether ref could name a branch, tag or commit: git's
// rules for ref names (no "..", no control characters, no leading "." in a
// component, ...), applied to the name as given or under refs/heads/.
func validRef(ref string) bool {
	switch {
	case ref == "" || isCommitHash(ref):
		return true
	case len(ref) > maxRefLen || strings.ContainsFunc(ref, unicode.IsControl):
		return false
	case strings.HasPrefix(ref, "refs/"):
		return plumbing.ReferenceName(ref).Validate() == nil
	}
	return plumbing.NewBranchReferenceName(ref).Validate() == nil
}

// truncate shortens s to at most n bytes (on a rune boundary), marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// mirror returns the mirror named name, made on first use.
func (c *Cache) mirror(name string) *mirror {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.mirrors[name]
	if m == nil {
		m = &mirror{dir: filepath.Join(c.dir, name), log: c.log, lock: make(chan struct{}, 1)}
		c.mirrors[name] = m
	}
	return m
}
