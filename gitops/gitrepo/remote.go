package gitrepo

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/plumbing/transport/server"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Remote is a repository to fetch.
type Remote struct {
	// URL is https://host/path, http://host/path (whether plain HTTP may be
	// used, and to which addresses, is the caller's egress rule), or a local
	// repository as file:///abs/path or /abs/path. Credentials, a query or a
	// fragment in the URL are refused: pass a token in Token.
	URL string
	// Token, if set, is sent to an http(s) remote as basic auth, user name
	// "x-access-token" and the token as password, which GitHub, GitLab,
	// Gitea and Bitbucket all accept for access tokens. It is never logged
	// or put in an error.
	Token string
}

// String is the URL as messages show it (no user info, query or fragment);
// the token is never shown.
func (r Remote) String() string {
	if strings.HasPrefix(r.URL, "/") {
		return r.URL
	}
	if host, path, ok := scpLike(r.URL); ok {
		return host + ":" + path
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return redactRaw(r.URL)
	}
	return showURL(u)
}

// GoString keeps %#v from printing the token.
func (r Remote) GoString() string { return fmt.Sprintf("gitrepo.Remote{URL: %q}", r.String()) }

// tokenUser is the basic-auth user name sent with a token.
const tokenUser = "x-access-token"

// remote is a Remote checked and ready to fetch from.
type remote struct {
	shown   string // the URL as errors and logs show it
	key     string // names the mirror: the canonical URL or resolved path
	tr      transport.Transport
	ep      *transport.Endpoint
	auth    transport.AuthMethod
	src     storer.Storer // a local remote's own storage; nil for http(s)
	secrets []string      // scrubbed from causes
}

// mirrorName is the mirror's directory name: a hash of the key, so any URL
// maps to a safe, fixed-length name.
func (r *remote) mirrorName() string {
	sum := sha256.Sum256([]byte(r.key))
	return hex.EncodeToString(sum[:16])
}

// scrub hides the token in err's text.
func (r *remote) scrub(err error) error {
	if err == nil || len(r.secrets) == 0 {
		return err
	}
	return &scrubbed{err: err, secrets: r.secrets}
}

// resolve checks rr and picks its transport.
func (c *Cache) resolve(rr Remote) (*remote, error) {
	raw := strings.TrimSpace(rr.URL)
	switch {
	case raw == "":
		return nil, newError(ErrInvalidRemote, nil, "remote: a URL is required")
	case strings.HasPrefix(raw, "/"):
		return c.localRemote(raw, raw, rr)
	}
	if host, path, ok := scpLike(raw); ok {
		return nil, newError(ErrInvalidRemote, nil, "remote %s:%s: SSH remotes are not supported; use https://, http://, file:///absolute/path or /absolute/path", host, path)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, newError(ErrInvalidRemote, nil, "remote %s: not a valid URL", redactRaw(raw))
	}
	shown := showURL(u)
	switch u.Scheme {
	case "file", "http", "https":
	case "":
		return nil, newError(ErrInvalidRemote, nil, "remote %s: use https://, http://, file:///absolute/path or /absolute/path", shown)
	default:
		return nil, newError(ErrInvalidRemote, nil, "remote %s: scheme %q is not supported; use https://, http://, file:///absolute/path or /absolute/path", shown, u.Scheme)
	}
	if u.User != nil {
		return nil, newError(ErrInvalidRemote, nil, "remote %s: credentials in the URL are not accepted; give the token separately", shown)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, newError(ErrInvalidRemote, nil, "remote %s: a git URL has no query or fragment", shown)
	}
	switch u.Scheme {
	case "file":
		if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") {
			return nil, newError(ErrInvalidRemote, nil, "remote %s: a file:// URL must name an absolute local path (file:///srv/git/repo)", shown)
		}
		return c.localRemote(u.Path, shown, rr)
	default:
		return c.httpRemote(u, shown, rr)
	}
}

// scpLike recognizes git's SSH shorthand, [user@]host:path, and returns it
// without the user (and whatever else came before the last "@" in front of
// the path).
func scpLike(raw string) (host, path string, ok bool) {
	if strings.Contains(raw, "://") {
		return "", "", false
	}
	head := raw
	if i := strings.IndexByte(raw, '/'); i >= 0 {
		head = raw[:i]
	}
	if !strings.Contains(head, ":") {
		return "", "", false
	}
	rest := raw
	if i := strings.LastIndex(head, "@"); i >= 0 {
		rest = raw[i+1:]
	}
	host, path, _ = strings.Cut(rest, ":")
	return host, path, host != ""
}

// httpRemote checks an http(s) URL; the mirror is named by the URL with the
// host in lower case.
func (c *Cache) httpRemote(u *url.URL, shown string, rr Remote) (*remote, error) {
	if c.http == nil {
		return nil, newError(ErrInvalidRemote, nil, "remote %s: http(s) remotes are disabled on this server (no HTTP client configured)", shown)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, newError(ErrInvalidRemote, nil, "remote %s: no host", shown)
	}
	canon := &url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host), Path: u.Path}
	ep, err := transport.NewEndpoint(canon.String())
	if err != nil {
		return nil, newError(ErrInvalidRemote, err, "remote %s: not a valid git URL", shown)
	}
	r := &remote{shown: shown, key: canon.String(), tr: c.http, ep: ep}
	if rr.Token != "" {
		r.auth = &githttp.BasicAuth{Username: tokenUser, Password: rr.Token}
		r.secrets = tokenForms(tokenUser, rr.Token)
	}
	return r, nil
}

// localRemote checks that p resolves, after symlinks, inside the source dir,
// and opens the repository there. It is served by go-git's own upload-pack
// in this process, reading through a file system bound to the repository's
// directory, so neither a git binary nor a symlink inside the repository
// (objects/ pointing elsewhere, say) is involved.
func (c *Cache) localRemote(p, shown string, rr Remote) (*remote, error) {
	if c.localRoot == "" {
		return nil, newError(ErrInvalidRemote, nil, "remote %s: local remotes are disabled on this server (no source dir configured)", shown)
	}
	if rr.Token != "" {
		return nil, newError(ErrInvalidRemote, nil, "remote %s: a token is only sent to http(s) remotes", shown)
	}
	p = filepath.Clean(p)
	outside := func() error {
		return newError(ErrOutsideRoot, nil, "local path %s is outside the source dir %s", p, c.localRootShown)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		// Say "outside" rather than "not found" for a path that could never
		// be read, so the answer tells nothing about the rest of the disk.
		if !within(c.localRoot, p) && !within(c.localRootShown, p) {
			return nil, outside()
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, newError(ErrRepoNotFound, nil, "fetch %s: repository not found", shown)
		}
		return nil, newError(ErrUnavailable, err, "fetch %s: the repository could not be read", shown)
	}
	if !within(c.localRoot, real) {
		return nil, outside()
	}
	rel, err := filepath.Rel(c.localRoot, real)
	if err != nil {
		return nil, outside()
	}
	gitDir, err := findGitDir(real)
	if err != nil {
		return nil, newError(ErrRepoNotFound, err, "fetch %s: repository not found", shown)
	}
	gitRel := filepath.Join(rel, gitDir)
	bound, err := osfs.New(c.localRoot, osfs.WithBoundOS()).Chroot(gitRel)
	if err != nil {
		return nil, newError(ErrUnavailable, err, "fetch %s: the repository could not be read", shown)
	}
	src := filesystem.NewStorageWithOptions(bound, cache.NewObjectLRU(8*cache.MiByte), filesystem.Options{})
	ep, err := transport.NewEndpoint(filepath.Join(real, gitDir))
	if err != nil {
		return nil, newError(ErrInvalidRemote, err, "remote %s: not a valid path", shown)
	}
	tr := server.NewClient(server.MapLoader{ep.String(): src})
	return &remote{shown: shown, key: "file://" + filepath.ToSlash(real), tr: tr, ep: ep, src: src}, nil
}

// findGitDir says where dir's git directory is, relative to it: ".git" for
// a working tree, "." for a bare repository. A .git file (a linked worktree
// or a submodule's checkout, pointing elsewhere) is refused: where it points
// has not been checked against the source dir.
func findGitDir(dir string) (string, error) {
	st, err := os.Lstat(filepath.Join(dir, ".git"))
	switch {
	case err == nil && st.IsDir():
		return ".git", nil
	case err == nil:
		return "", fmt.Errorf("%s/.git is not a directory (linked worktrees and submodule checkouts are not supported)", dir)
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	for _, name := range []string{"HEAD", "objects", "refs"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("%s is neither a working tree nor a bare repository: %w", dir, err)
		}
	}
	return ".", nil
}

// within reports whether p is root or lies under it (both clean and absolute).
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && filepath.IsLocal(rel)
}

// showURL is u without user info, query or fragment.
func showURL(u *url.URL) string {
	c := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, Opaque: u.Opaque}
	return c.String()
}

// redactRaw shows a URL that did not parse: everything between the scheme
// and the last '@' is dropped, in case it held credentials.
func redactRaw(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return fmt.Sprintf("%q", raw)
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	return fmt.Sprintf("%q", scheme+"://"+rest)
}

// errorBodyLimit bounds the body of an HTTP error response: go-git reads it
// whole into the error, and a server could send gigabytes.
const errorBodyLimit = 64 << 10

type limitErrorBodies struct{ rt http.RoundTripper }

func (l limitErrorBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err == nil && resp.StatusCode >= 300 && resp.Body != nil {
		resp.Body = limitedBody{io.LimitReader(resp.Body, errorBodyLimit), resp.Body}
	}
	return resp, err
}

type limitedBody struct {
	io.Reader
	io.Closer
}
