// Package source fetches the artifact a declared model version points to
// (source.uri and source.sha256 in a Model resource) into the registry's blob
// store. It is the only place where applying a file makes the server read a
// path or URL someone else named, so it is strict: file:// only inside one
// configured directory, https:// only (redirects included) and only to
// addresses the egress rule allows, a size cap, a stall timer and an overall
// deadline, and the bytes must hash to the declared digest or nothing is
// stored.
//
// What an https server did (refused by egress, connection refused, TLS error,
// status, a digest mismatch) is the cause of the error Fetch returns, for the
// server's log; the error's own message, all a caller sees, is the same for
// every such failure, so applying a Model cannot be used to probe the network
// the server sits in.
package source

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/egress"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/secrets"
)

// Defaults for Options.
const (
	DefaultMaxBytes int64 = 4 << 30
	DefaultTimeout        = 30 * time.Second
	DefaultDeadline       = 10 * time.Minute
	// MaxRedirects is how many redirects one fetch follows.
	MaxRedirects = 5
)

// Options configure a Fetcher.
type Options struct {
	// AllowedDir is the directory file:// sources must resolve into (after
	// following symlinks). Empty refuses every file:// source.
	AllowedDir string
	// Egress decides which addresses https fetches may connect to, checked on
	// every dial after DNS; nil allows public addresses only. No proxy from
	// the environment is used.
	Egress *egress.Policy
	// TLS configures https (nil: the system's roots); tests trust their
	// servers' certificates through it.
	TLS *tls.Config
	// Secrets resolves the token an https source names in its auth; nil
	// refuses sources with auth.
	Secrets SecretResolver
	// MaxBytes caps an artifact's size (default DefaultMaxBytes).
	MaxBytes int64
	// Timeout is how long an https fetch may wait for the server: to connect
	// and answer, and then between two reads of the body (default
	// DefaultTimeout).
	Timeout time.Duration
	// Deadline bounds one whole fetch, however steadily the server trickles
	// bytes (default DefaultDeadline).
	Deadline time.Duration
}

// SecretResolver is what the fetcher needs from *secrets.Resolver.
type SecretResolver interface {
	Resolve(ref secrets.Ref) (secrets.Secret, error)
}

var _ SecretResolver = (*secrets.Resolver)(nil)

// Artifact is one declared artifact: where it is, the sha256 its bytes must
// have, and where the bearer token for an https server is (nil: none).
type Artifact struct {
	URI       string
	SHA256    string
	TokenFrom *secrets.Ref
}

// BlobPutter is what the fetcher needs from the registry.
type BlobPutter interface {
	PutBlob(ctx context.Context, body io.Reader, want string) (registry.BlobInfo, error)
}

var _ BlobPutter = (*registry.Registry)(nil)

// Fetcher fetches sources. It is safe for concurrent use.
type Fetcher struct {
	allowedDir string
	client     *http.Client
	secrets    SecretResolver
	maxBytes   int64
	timeout    time.Duration
	deadline   time.Duration
}

// New returns a Fetcher with opts, defaults filled in.
func New(opts Options) *Fetcher {
	f := &Fetcher{allowedDir: opts.AllowedDir, secrets: opts.Secrets, maxBytes: opts.MaxBytes,
		timeout: opts.Timeout, deadline: opts.Deadline}
	if f.maxBytes <= 0 {
		f.maxBytes = DefaultMaxBytes
	}
	if f.timeout <= 0 {
		f.timeout = DefaultTimeout
	}
	if f.deadline <= 0 {
		f.deadline = DefaultDeadline
	}
	tr := opts.Egress.Transport(opts.TLS)
	// Fetches are few and large: no idle connections (and their goroutines)
	// kept between them.
	tr.DisableKeepAlives = true
	f.client = &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirected to %s: only https:// redirects are followed", showURL(req.URL))
		}
		if len(via) >= MaxRedirects {
			return fmt.Errorf("stopped after %d redirects", MaxRedirects)
		}
		egress.DropReferer(req) // the source URI may carry a presigned URL's signature
		return nil
	}}
	return f
}

// Fetch stores the artifact in dst, which checks it hashes to a.SHA256.
//
// Errors name the URI (without credentials or query). What the caller got
// wrong, and what only depends on the local file system under the source
// directory, is said precisely, with errs kinds: InvalidArgument for a refused
// URI, a file outside the directory or a digest mismatch of a file, NotFound,
// TooLarge, FailedPrecondition when file:// sources or secrets are not
// configured or a token reference cannot be resolved. Every failure of an
// https fetch after that (egress, DNS, connect, TLS, status, redirects,
// stalls, the deadline, size, digest) is one Unavailable error, "source … could
// not be fetched", whose cause says what happened, for the log. When ctx ends
// first, the error wraps ctx's error instead.
func (f *Fetcher) Fetch(ctx context.Context, a Artifact, dst BlobPutter) (registry.BlobInfo, error) {
	u, shown, err := f.parse(a)
	if err != nil {
		return registry.BlobInfo{}, err
	}
	parent := ctx
	ctx, cancel := context.WithTimeoutCause(ctx, f.deadline, errDeadline)
	defer cancel()
	if u.Scheme == "file" {
		file, err := f.openFile(u, shown)
		if err != nil {
			return registry.BlobInfo{}, err
		}
		defer file.Close()
		info, err := f.store(ctx, file, a.SHA256, dst, nil)
		switch {
		case err == nil:
			return info, nil
		case parent.Err() != nil:
			return registry.BlobInfo{}, fmt.Errorf("source %s: %w", shown, parent.Err())
		case errors.Is(context.Cause(ctx), errDeadline):
			return registry.BlobInfo{}, errs.New(errs.DeadlineExceeded, "source %s: reading took longer than %s", shown, f.deadline)
		}
		return registry.BlobInfo{}, f.fileError(shown, err)
	}
	tok, err := f.token(a, shown)
	if err != nil {
		return registry.BlobInfo{}, err
	}
	info, err := f.download(ctx, u, a.SHA256, tok, dst)
	switch {
	case err == nil:
		return info, nil
	case parent.Err() != nil:
		// The caller went away (or ran out of time): that is the answer,
		// not whatever the cut-short fetch looked like.
		return registry.BlobInfo{}, fmt.Errorf("source %s: %w", shown, parent.Err())
	}
	return registry.BlobInfo{}, errs.Wrap(errs.Unavailable, err, "source %s could not be fetched", shown)
}

// Check does what Fetch does before it reads or connects: the URI, the digest,
// for file:// the path (opened, not read), for https:// the token reference
// (resolved, not sent). A dry run checks a new artifact with it.
func (f *Fetcher) Check(a Artifact) error {
	u, shown, err := f.parse(a)
	if err != nil {
		return err
	}
	if u.Scheme == "file" {
		file, err := f.openFile(u, shown)
		if err != nil {
			return err
		}
		return file.Close()
	}
	_, err = f.token(a, shown)
	return err
}

// parse checks a's URI and digest and returns the URI and how to show it.
func (f *Fetcher) parse(a Artifact) (*url.URL, string, error) {
	u, err := url.Parse(a.URI)
	if err != nil {
		return nil, "", errs.New(errs.InvalidArgument, "source %q: not a valid URI", a.URI)
	}
	shown := showURL(u)
	if a.SHA256 == "" {
		return nil, "", errs.New(errs.InvalidArgument, "source %s: sha256 is required", shown).WithField("sha256")
	}
	if registry.ValidateDigest(a.SHA256) != nil {
		return nil, "", errs.New(errs.InvalidArgument,
			"source %s: sha256 %q must be 64 lowercase hex characters", shown, a.SHA256).WithField("sha256")
	}
	switch u.Scheme {
	case "file":
		if a.TokenFrom != nil {
			return nil, "", errs.New(errs.InvalidArgument, "source %s: auth is for https:// sources only", shown).WithField("auth")
		}
		return u, shown, nil
	case "https":
		if u.Host == "" {
			return nil, "", errs.New(errs.InvalidArgument, "source %s: no host", shown)
		}
		if a.TokenFrom != nil && u.User != nil {
			return nil, "", errs.New(errs.InvalidArgument, "source %s: give user info in the URI or auth.tokenFrom, not both", shown).WithField("auth")
		}
		return u, shown, nil
	case "http":
		return nil, "", errs.New(errs.InvalidArgument, "source %s: plain http:// is not allowed; use https://", shown)
	case "s3":
		return nil, "", errs.New(errs.InvalidArgument,
			"source %s: s3:// sources are not supported yet; use https:// (e.g. a presigned URL) or file://", shown)
	case "":
		return nil, "", errs.New(errs.InvalidArgument, "source %q: no scheme; use file:///absolute/path or https://", a.URI)
	default:
		return nil, "", errs.New(errs.InvalidArgument, "source %s: scheme %q is not supported; use file:// or https://", shown, u.Scheme)
	}
}

// token resolves a's token reference; the zero Secret when it names none.
func (f *Fetcher) token(a Artifact, shown string) (secrets.Secret, error) {
	if a.TokenFrom == nil {
		return secrets.Secret{}, nil
	}
	if f.secrets == nil {
		return secrets.Secret{}, errs.New(errs.FailedPrecondition, "source %s: this server resolves no secrets", shown).WithField("auth.tokenFrom")
	}
	tok, err := f.secrets.Resolve(*a.TokenFrom)
	if err != nil {
		// The resolver's own message names the reference, never a value; its
		// cause (a path error) stays out of the answer.
		msg := err.Error()
		var e *errs.Error
		if errors.As(err, &e) {
			msg = e.Message
		}
		field := "auth.tokenFrom"
		if sub := errs.FieldOf(err); sub != "" {
			field += "." + sub
		}
		return secrets.Secret{}, errs.Wrap(errs.KindOf(err), err, "source %s: auth.tokenFrom: %s", shown, msg).WithField(field)
	}
	return tok, nil
}

// openFile opens a file:// source after checking it lies in the source
// directory and is a regular file within the size limit.
func (f *Fetcher) openFile(u *url.URL, shown string) (*os.File, error) {
	if f.allowedDir == "" {
		return nil, errs.New(errs.FailedPrecondition,
			"source %s: file:// sources are disabled on this server; start it with --source-dir (or NIMBUS_SOURCE_DIR) naming the directory they may be read from", shown)
	}
	if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
		return nil, errs.New(errs.InvalidArgument,
			"source %s: a file:// source must name an absolute path (file:///dir/model.onnx)", shown)
	}
	dir, root, err := resolveDir(f.allowedDir)
	if err != nil {
		return nil, errs.Wrap(errs.FailedPrecondition, err, "source %s: source directory %s (--source-dir) is unusable", shown, f.allowedDir)
	}
	outside := func() error {
		return errs.New(errs.InvalidArgument, "source %s: outside the source directory %s (--source-dir)", shown, f.allowedDir)
	}
	p := filepath.Clean(u.Path)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		// Say "outside" rather than "not found" for paths that could never be
		// read, so the answer reveals nothing about the rest of the file system.
		if !within(root, p) && !within(dir, p) {
			return nil, outside()
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errs.New(errs.NotFound, "source %s: no such file", shown)
		}
		return nil, fmt.Errorf("source %s: %w", shown, err)
	}
	if !within(root, real) {
		return nil, outside()
	}
	rel, err := filepath.Rel(root, real)
	if err != nil {
		return nil, outside()
	}
	// Refuse a directory or a device before opening it: opening a FIFO blocks.
	if st, err := os.Stat(real); err == nil {
		if err := f.checkFile(st, shown); err != nil {
			return nil, err
		}
	}
	// The checks above give clear messages; opening through os.Root is what
	// enforces the boundary, even if a path component is swapped for a symlink
	// after them.
	file, err := os.OpenInRoot(root, rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errs.New(errs.NotFound, "source %s: no such file", shown)
		}
		return nil, errs.Wrap(errs.InvalidArgument, err, "source %s: cannot open", shown)
	}
	st, err := file.Stat()
	if err != nil {
		err = fmt.Errorf("source %s: %w", shown, err)
	} else {
		err = f.checkFile(st, shown)
	}
	if err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}

// fileError classifies what store reported for a file:// source: the caller
// may read those files anyway, so the answer says what went wrong.
func (f *Fetcher) fileError(shown string, err error) error {
	var mm *mismatchError
	switch {
	case errors.Is(err, errTooBig):
		return f.tooLarge(shown)
	case errors.As(err, &mm):
		return errs.New(errs.InvalidArgument, "source %s: sha256 mismatch: declared %s, fetched %s", shown, mm.want, mm.got).WithField("sha256")
	}
	return fmt.Errorf("source %s: %w", shown, err)
}

func (f *Fetcher) checkFile(st fs.FileInfo, shown string) error {
	switch {
	case st.IsDir():
		return errs.New(errs.InvalidArgument, "source %s: is a directory, not a file", shown)
	case !st.Mode().IsRegular():
		return errs.New(errs.InvalidArgument, "source %s: not a regular file", shown)
	case st.Size() > f.maxBytes:
		return f.tooLarge(shown)
	}
	return nil
}

// download fetches an https artifact into dst. Its errors are for the log:
// Fetch gives the caller one message for all of them.
func (f *Fetcher) download(ctx context.Context, u *url.URL, want string, tok secrets.Secret, dst BlobPutter) (registry.BlobInfo, error) {
	// The watchdog cancels the request when the server goes quiet for longer
	// than f.timeout: before answering, or between two reads of the body.
	dl := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wd := time.AfterFunc(f.timeout, func() { cancel(errStalled) })
	defer wd.Stop()
	why := func(err error) error {
		switch {
		case errors.Is(context.Cause(ctx), errStalled):
			return fmt.Errorf("server sent nothing for %s: %w", f.timeout, err)
		case errors.Is(context.Cause(dl), errDeadline):
			return fmt.Errorf("the fetch took longer than its deadline of %s: %w", f.deadline, err)
		}
		return err
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return registry.BlobInfo{}, err
	}
	// The digest is of the bytes as published: no transparent decompression.
	req.Header.Set("Accept-Encoding", "identity")
	client := f.client
	if !tok.IsZero() {
		c := *f.client
		c.Transport = &bearer{next: f.client.Transport, host: hostKey(u), token: tok}
		client = &c
	}
	resp, err := client.Do(req)
	if err != nil {
		// url.Error repeats the full URL, query included; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return registry.BlobInfo{}, why(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return registry.BlobInfo{}, fmt.Errorf("server answered %s, want 200 OK", resp.Status)
	}
	if resp.ContentLength > f.maxBytes {
		return registry.BlobInfo{}, fmt.Errorf("%w: Content-Length %d, limit %d", errTooBig, resp.ContentLength, f.maxBytes)
	}
	info, err := f.store(ctx, resp.Body, want, dst, wd)
	if err != nil {
		return registry.BlobInfo{}, why(err)
	}
	return info, nil
}

// bearer adds the source's token to requests for the source's own host (a
// redirect elsewhere goes without it) over https only.
type bearer struct {
	next  http.RoundTripper
	host  string
	token secrets.Secret
}

func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" || hostKey(req.URL) != b.host {
		return b.next.RoundTrip(req)
	}
	r := req.Clone(req.Context()) // a RoundTripper must not change its request
	r.Header.Set("Authorization", "Bearer "+b.token.Reveal())
	return b.next.RoundTrip(r)
}

// hostKey is host:port of an https URL, lowercased, with the default port.
func hostKey(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

var (
	errStalled  = errors.New("source server stalled")
	errDeadline = errors.New("source fetch deadline")
	// errTooBig is what the counting reader returns past the size limit.
	errTooBig = errors.New("source larger than the limit")
)

// mismatchError is a body that hashed to something else than declared.
type mismatchError struct{ want, got string }

func (e *mismatchError) Error() string {
	return fmt.Sprintf("sha256 mismatch: declared %s, fetched %s", e.want, e.got)
}

func (f *Fetcher) tooLarge(shown string) error {
	return errs.New(errs.TooLarge, "source %s: larger than the limit of %d bytes", shown, f.maxBytes)
}

// store streams r into dst, which checks the digest. The bytes are hashed here
// too, so a mismatch can be reported with both digests. Errors are plain:
// errTooBig, *mismatchError, ctx's error, or what reading or dst reported.
func (f *Fetcher) store(ctx context.Context, r io.Reader, want string, dst BlobPutter, wd *time.Timer) (registry.BlobInfo, error) {
	cr := &countingReader{r: r, h: sha256.New(), max: f.maxBytes, wd: wd}
	if wd != nil {
		cr.idle = f.timeout
	}
	info, err := dst.PutBlob(ctx, cr, want)
	switch {
	case errors.Is(err, errTooBig) || (err != nil && cr.n > cr.max):
		return registry.BlobInfo{}, fmt.Errorf("%w: more than %d bytes", errTooBig, f.maxBytes)
	case err != nil && ctx.Err() != nil:
		// Cancelled mid-body: a body cut short can also end in a clean EOF,
		// whose digest then "mismatches"; the cancellation is the reason.
		return registry.BlobInfo{}, fmt.Errorf("reading the body: %w", context.Cause(ctx))
	case err != nil && cr.eof:
		if got := hex.EncodeToString(cr.h.Sum(nil)); got != want {
			return registry.BlobInfo{}, &mismatchError{want: want, got: got}
		}
		return registry.BlobInfo{}, fmt.Errorf("storing: %w", err)
	case err != nil && cr.err != nil:
		return registry.BlobInfo{}, fmt.Errorf("reading the body: %w", cr.err)
	case err != nil:
		return registry.BlobInfo{}, fmt.Errorf("storing: %w", err)
	case info.SHA256 != want:
		// dst did not check the digest; the blob is stored but must not be used.
		return registry.BlobInfo{}, fmt.Errorf("stored as sha256 %s, declared %s", info.SHA256, want)
	}
	return info, nil
}

// countingReader hashes what it passes on, refuses more than max bytes, records
// how the underlying reader ended, and feeds the stall watchdog.
type countingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	max  int64
	wd   *time.Timer
	idle time.Duration
	eof  bool
	err  error
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, errTooBig
	}
	// Read at most one byte past the limit: enough to tell "exactly max" from "more".
	if rest := c.max - c.n + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return 0, errTooBig
	}
	c.h.Write(p[:n])
	if n > 0 && c.wd != nil {
		c.wd.Reset(c.idle)
	}
	switch {
	case err == io.EOF:
		c.eof = true
	case err != nil && c.err == nil:
		c.err = err
	}
	return n, err
}

// within reports whether path is dir or below it (both clean and absolute).
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// resolveDir returns dir made absolute, and that with symlinks resolved.
func resolveDir(dir string) (abs, real string, err error) {
	if abs, err = filepath.Abs(dir); err != nil {
		return "", "", err
	}
	if real, err = filepath.EvalSymlinks(abs); err != nil {
		return "", "", err
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", "", err
	}
	if !st.IsDir() {
		return "", "", fmt.Errorf("%s is not a directory", real)
	}
	return abs, real, nil
}

// showURL is u for messages and logs: no password, no query (a presigned URL's
// query is a credential).
func showURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		c.User = url.User(c.User.Username())
	}
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" || c.ForceQuery {
		c.RawQuery, c.ForceQuery = "", false
		return c.String() + "?…"
	}
	return c.String()
}
