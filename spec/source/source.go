// Package source fetches the artifact a declared model version points to
// (source.uri and source.sha256 in a Model resource) into the registry's blob
// store. It is the only place where applying a file makes the server read a
// path or URL someone else named, so it is strict: file:// only inside one
// configured directory, https:// only (redirects included), a size cap, and the
// bytes must hash to the declared digest or nothing is stored.
package source

import (
	"context"
	"crypto/sha256"
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

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// Defaults for Options.
const (
	DefaultMaxBytes int64 = 4 << 30
	DefaultTimeout        = 30 * time.Second
	// MaxRedirects is how many redirects one fetch follows.
	MaxRedirects = 5
)

// Options configure a Fetcher.
type Options struct {
	// AllowedDir is the directory file:// sources must resolve into (after
	// following symlinks). Empty refuses every file:// source.
	AllowedDir string
	// HTTPClient fetches https:// sources (default: http.DefaultTransport).
	// The Fetcher uses a copy whose CheckRedirect also refuses redirects to
	// anything but https:// and stops after MaxRedirects.
	HTTPClient *http.Client
	// MaxBytes caps an artifact's size (default DefaultMaxBytes).
	MaxBytes int64
	// Timeout is how long an https fetch may wait for the server: to connect
	// and answer, and then between two reads of the body (default
	// DefaultTimeout). It is not a cap on the whole download, which for a
	// multi-gigabyte artifact could rightly take longer; ctx bounds that.
	Timeout time.Duration
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
	maxBytes   int64
	timeout    time.Duration
}

// New returns a Fetcher with opts, defaults filled in.
func New(opts Options) *Fetcher {
	f := &Fetcher{allowedDir: opts.AllowedDir, maxBytes: opts.MaxBytes, timeout: opts.Timeout}
	if f.maxBytes <= 0 {
		f.maxBytes = DefaultMaxBytes
	}
	if f.timeout <= 0 {
		f.timeout = DefaultTimeout
	}
	var c http.Client
	if opts.HTTPClient != nil {
		c = *opts.HTTPClient // a copy: the caller's client keeps its own policy
	}
	callerCheck := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return &redirectError{fmt.Sprintf("redirected to %s: only https:// redirects are followed", showURL(req.URL))}
		}
		if len(via) >= MaxRedirects {
			return &redirectError{fmt.Sprintf("stopped after %d redirects", MaxRedirects)}
		}
		if callerCheck != nil {
			return callerCheck(req, via)
		}
		return nil
	}
	f.client = &c
	return f
}

type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// Fetch stores the artifact at uri in dst, which checks it hashes to sha256.
// Errors name the URI (without credentials or query) and carry errs kinds:
// InvalidArgument for a refused URI, a redirect elsewhere or a digest
// mismatch, NotFound, TooLarge, Unavailable when the server fails, and
// FailedPrecondition when file:// sources are not configured.
func (f *Fetcher) Fetch(ctx context.Context, uri, sha256 string, dst BlobPutter) (registry.BlobInfo, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument, "source %q: not a valid URI", uri)
	}
	shown := showURL(u)
	if sha256 == "" {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument, "source %s: sha256 is required", shown).WithField("sha256")
	}
	if registry.ValidateDigest(sha256) != nil {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
			"source %s: sha256 %q must be 64 lowercase hex characters", shown, sha256).WithField("sha256")
	}
	switch u.Scheme {
	case "file":
		return f.fetchFile(ctx, u, shown, sha256, dst)
	case "https":
		return f.fetchHTTPS(ctx, u, shown, sha256, dst)
	case "http":
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
			"source %s: plain http:// is not allowed; use https://", shown)
	case "s3":
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
			"source %s: s3:// sources are not supported yet; use https:// (e.g. a presigned URL) or file://", shown)
	case "":
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
			"source %q: no scheme; use file:///absolute/path or https://", uri)
	default:
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
			"source %s: scheme %q is not supported; use file:// or https://", shown, u.Scheme)
	}
}

func (f *Fetcher) fetchFile(ctx context.Context, u *url.URL, shown, want string, dst BlobPutter) (registry.BlobInfo, error) {
	if f.allowedDir == "" {
		return registry.BlobInfo{}, errs.New(errs.FailedPrecondition,
			"source %s: file:// sources are disabled on this server; start it with --source-dir (or NIMBUS_SOURCE_DIR) naming the directory they may be read from", shown)
	}
	if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
			"source %s: a file:// source must name an absolute path (file:///dir/model.onnx)", shown)
	}
	dir, root, err := resolveDir(f.allowedDir)
	if err != nil {
		return registry.BlobInfo{}, errs.Wrap(errs.FailedPrecondition, err, "source %s: source directory %s (--source-dir) is unusable", shown, f.allowedDir)
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
			return registry.BlobInfo{}, outside()
		}
		if errors.Is(err, fs.ErrNotExist) {
			return registry.BlobInfo{}, errs.New(errs.NotFound, "source %s: no such file", shown)
		}
		return registry.BlobInfo{}, fmt.Errorf("source %s: %w", shown, err)
	}
	if !within(root, real) {
		return registry.BlobInfo{}, outside()
	}
	rel, err := filepath.Rel(root, real)
	if err != nil {
		return registry.BlobInfo{}, outside()
	}
	// Refuse a directory or a device before opening it: opening a FIFO blocks.
	if st, err := os.Stat(real); err == nil {
		if err := f.checkFile(st, shown); err != nil {
			return registry.BlobInfo{}, err
		}
	}
	// The checks above give clear messages; opening through os.Root is what
	// enforces the boundary, even if a path component is swapped for a symlink
	// after them.
	file, err := os.OpenInRoot(root, rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return registry.BlobInfo{}, errs.New(errs.NotFound, "source %s: no such file", shown)
		}
		return registry.BlobInfo{}, errs.Wrap(errs.InvalidArgument, err, "source %s: cannot open", shown)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return registry.BlobInfo{}, fmt.Errorf("source %s: %w", shown, err)
	}
	if err := f.checkFile(st, shown); err != nil {
		return registry.BlobInfo{}, err
	}
	return f.store(ctx, file, shown, want, dst, nil)
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

func (f *Fetcher) fetchHTTPS(ctx context.Context, u *url.URL, shown, want string, dst BlobPutter) (registry.BlobInfo, error) {
	if u.Host == "" {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument, "source %s: no host", shown)
	}
	// The watchdog cancels the request when the server goes quiet for longer
	// than f.timeout: before answering, or between two reads of the body.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	wd := time.AfterFunc(f.timeout, func() { cancel(errStalled) })
	defer wd.Stop()
	stalled := func() error {
		if errors.Is(context.Cause(ctx), errStalled) {
			return errs.New(errs.Unavailable, "source %s: server sent nothing for %s", shown, f.timeout)
		}
		return nil
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return registry.BlobInfo{}, errs.Wrap(errs.InvalidArgument, err, "source %s", shown)
	}
	// The digest is of the bytes as published: no transparent decompression.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := f.client.Do(req)
	if err != nil {
		var re *redirectError
		if errors.As(err, &re) {
			return registry.BlobInfo{}, errs.New(errs.InvalidArgument, "source %s: %s", shown, re.msg)
		}
		if e := stalled(); e != nil {
			return registry.BlobInfo{}, e
		}
		if ctx.Err() != nil {
			return registry.BlobInfo{}, fmt.Errorf("source %s: %w", shown, context.Cause(ctx))
		}
		// url.Error repeats the full URL, query included; keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return registry.BlobInfo{}, errs.Wrap(errs.Unavailable, err, "source %s", shown)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return registry.BlobInfo{}, errs.New(errs.NotFound, "source %s: server answered %s", shown, resp.Status)
	default:
		return registry.BlobInfo{}, errs.New(errs.Unavailable, "source %s: server answered %s, want 200 OK", shown, resp.Status)
	}
	if resp.ContentLength > f.maxBytes {
		return registry.BlobInfo{}, f.tooLarge(shown)
	}
	info, err := f.store(ctx, resp.Body, shown, want, dst, wd)
	if err != nil {
		if e := stalled(); e != nil {
			return registry.BlobInfo{}, e
		}
	}
	return info, err
}

var errStalled = errors.New("source server stalled")

// errTooBig is what the counting reader returns past the size limit.
var errTooBig = errors.New("source larger than the limit")

func (f *Fetcher) tooLarge(shown string) error {
	return errs.New(errs.TooLarge, "source %s: larger than the limit of %d bytes", shown, f.maxBytes)
}

// store streams r into dst, which checks the digest. The bytes are hashed here
// too, so a mismatch can be reported with both digests in the source's words.
func (f *Fetcher) store(ctx context.Context, r io.Reader, shown, want string, dst BlobPutter, wd *time.Timer) (registry.BlobInfo, error) {
	cr := &countingReader{r: r, h: sha256.New(), max: f.maxBytes, wd: wd}
	if wd != nil {
		cr.idle = f.timeout
	}
	info, err := dst.PutBlob(ctx, cr, want)
	switch {
	case errors.Is(err, errTooBig) || (err != nil && cr.n > cr.max):
		return registry.BlobInfo{}, f.tooLarge(shown)
	case err != nil && ctx.Err() != nil:
		// Cancelled mid-body: a body cut short can also end in a clean EOF,
		// whose digest then "mismatches"; the cancellation is the reason.
		return registry.BlobInfo{}, fmt.Errorf("source %s: %w", shown, ctx.Err())
	case err != nil && cr.eof:
		if got := hex.EncodeToString(cr.h.Sum(nil)); got != want {
			return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
				"source %s: sha256 mismatch: declared %s, fetched %s", shown, want, got).WithField("sha256")
		}
		return registry.BlobInfo{}, fmt.Errorf("source %s: %w", shown, err)
	case err != nil && cr.err != nil && ctx.Err() == nil:
		return registry.BlobInfo{}, errs.Wrap(errs.Unavailable, cr.err, "source %s: reading", shown)
	case err != nil:
		return registry.BlobInfo{}, fmt.Errorf("source %s: %w", shown, err)
	case info.SHA256 != want:
		// dst did not check the digest; the blob is stored but must not be used.
		return registry.BlobInfo{}, errs.New(errs.Internal, "source %s: stored as sha256 %s, declared %s", shown, info.SHA256, want)
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
