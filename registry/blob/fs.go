// Package blob stores model artifacts on the local file system, addressed by their
// sha256: the registry.BlobStore used by a single node. Writes are atomic (temp
// file, fsync, rename, fsync the directory) so a crash never leaves a blob whose
// name does not match its bytes.
package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// FS is a registry.BlobStore rooted at a directory:
//
//	dir/sha256/<first 2 hex>/<64 hex>   artifacts
//	dir/tmp/                            uploads in progress
type FS struct {
	dir string
}

var _ registry.BlobStore = (*FS)(nil)

// NewFS opens (creating if needed) a blob store at dir and removes temp files left
// by uploads that a crash interrupted. Only one FS may use a directory at a time.
func NewFS(dir string) (*FS, error) {
	f := &FS{dir: dir}
	for _, d := range []string{f.blobRoot(), f.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("blob: create %s: %w", d, err)
		}
	}
	entries, err := os.ReadDir(f.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("blob: read %s: %w", f.tmpDir(), err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(f.tmpDir(), e.Name())); err != nil {
			return nil, fmt.Errorf("blob: remove stale upload: %w", err)
		}
	}
	return f, nil
}

func (f *FS) blobRoot() string { return filepath.Join(f.dir, "sha256") }
func (f *FS) tmpDir() string   { return filepath.Join(f.dir, "tmp") }
func (f *FS) path(sha string) string {
	return filepath.Join(f.blobRoot(), sha[:2], sha)
}

// Path returns where the artifact lives, or "" for a malformed digest (so a
// digest can never name a path outside the store).
func (f *FS) Path(sha256 string) string {
	if registry.ValidateDigest(sha256) != nil {
		return ""
	}
	return f.path(sha256)
}

// Put streams r into a temp file while hashing it, then moves it into place.
// Storing bytes that are already present succeeds and refreshes the blob's
// modification time, so GC's grace period covers a re-upload that is about to be
// referenced by a new version.
func (f *FS) Put(ctx context.Context, r io.Reader, want string) (registry.BlobInfo, error) {
	if want != "" {
		if err := registry.ValidateDigest(want); err != nil {
			return registry.BlobInfo{}, err
		}
	}
	tmp, err := f.newTemp()
	if err != nil {
		return registry.BlobInfo{}, err
	}
	tmpName := tmp.Name()
	defer func() {
		// Once placed, the temp name is gone and both calls fail harmlessly.
		tmp.Close()
		os.Remove(tmpName)
	}()

	h := sha256.New()
	size, err := io.Copy(io.MultiWriter(tmp, h), ctxReader{ctx: ctx, r: r})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return registry.BlobInfo{}, fmt.Errorf("blob: put: %w", ctxErr)
		}
		return registry.BlobInfo{}, fmt.Errorf("blob: put: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: put: sync: %w", err)
	}
	// Stat before the rename: once in place the file may be deleted by a
	// concurrent GC at any moment (the registry orders that, not this store).
	st, err := tmp.Stat()
	if err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: put: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: put: close: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if want != "" && sum != want {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
			"uploaded bytes hash to sha256:%s, not the expected sha256:%s", sum, want).WithField("sha256")
	}

	return f.place(tmpName, sum, size, st.ModTime())
}

// place moves the synced file src, whose bytes hash to sum, into the store. If the
// blob is already there src is left alone and the blob's mtime refreshed.
func (f *FS) place(src, sum string, size int64, modTime time.Time) (registry.BlobInfo, error) {
	dst := f.path(sum)
	now := time.Now()
	switch err := os.Chtimes(dst, now, now); {
	case err == nil:
		return registry.BlobInfo{SHA256: sum, Size: size, ModTime: now}, nil
	case !errors.Is(err, fs.ErrNotExist):
		return registry.BlobInfo{}, fmt.Errorf("blob: put: touch existing %s: %w", sum, err)
	}
	shard := filepath.Dir(dst)
	if err := os.MkdirAll(shard, 0o755); err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: put: %w", err)
	}
	if err := os.Rename(src, dst); err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: put: rename into place: %w", err)
	}
	// The rename is durable only once the directory entry is; the shard directory
	// may itself be new, so sync its parent too.
	for _, d := range []string{shard, f.blobRoot()} {
		if err := syncDir(d); err != nil {
			return registry.BlobInfo{SHA256: sum, Size: size, ModTime: modTime}, fmt.Errorf("blob: put: %w", err)
		}
	}
	return registry.BlobInfo{SHA256: sum, Size: size, ModTime: modTime}, nil
}

// Adopt stores the file at path, which the caller hands over, without copying it:
// the bytes are hashed in place and the file is renamed into the store. On
// success path no longer exists. If the digest differs from want (InvalidArgument)
// or anything fails before the move, path is left as it was. When path is on
// another file system than the store, its bytes are copied as Put does.
func (f *FS) Adopt(ctx context.Context, path, want string) (registry.BlobInfo, error) {
	if want != "" {
		if err := registry.ValidateDigest(want); err != nil {
			return registry.BlobInfo{}, err
		}
	}
	file, err := os.Open(path)
	if err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: adopt: %w", err)
	}
	defer file.Close()
	sum, err := hashReader(ctx, file)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return registry.BlobInfo{}, fmt.Errorf("blob: adopt: read: %w", err)
	}
	if want != "" && sum != want {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument,
			"uploaded bytes hash to sha256:%s, not the expected sha256:%s", sum, want).WithField("sha256")
	}
	if err := file.Sync(); err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: adopt: sync: %w", err)
	}
	st, err := file.Stat()
	if err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: adopt: %w", err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // as Put creates blobs
		return registry.BlobInfo{}, fmt.Errorf("blob: adopt: %w", err)
	}
	// A staged upload may be old; GC's grace period must count from now, as
	// for a blob Put just wrote.
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: adopt: %w", err)
	}
	info, err := f.place(path, sum, st.Size(), now)
	if errors.Is(err, syscall.EXDEV) {
		if _, err := file.Seek(0, io.SeekStart); err != nil {
			return registry.BlobInfo{}, fmt.Errorf("blob: adopt: %w", err)
		}
		info, err = f.Put(ctx, file, sum)
		if err != nil {
			return registry.BlobInfo{}, err
		}
	} else if err != nil {
		return registry.BlobInfo{}, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return info, fmt.Errorf("blob: adopt: remove %s: %w", path, err)
	}
	return info, nil
}

func (f *FS) newTemp() (*os.File, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("blob: put: %w", err)
	}
	name := filepath.Join(f.tmpDir(), "upload-"+hex.EncodeToString(b[:]))
	tmp, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("blob: put: create temp file: %w", err)
	}
	return tmp, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ctxReader stops a copy when ctx ends, so a cancelled upload stops reading.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func errNotFound(sha string) error {
	return errs.New(errs.NotFound, "blob sha256:%s not found", sha)
}

// Open returns the artifact for reading.
func (f *FS) Open(ctx context.Context, sha256 string) (io.ReadSeekCloser, registry.BlobInfo, error) {
	if err := registry.ValidateDigest(sha256); err != nil {
		return nil, registry.BlobInfo{}, err
	}
	file, err := os.Open(f.path(sha256))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, registry.BlobInfo{}, errNotFound(sha256)
	}
	if err != nil {
		return nil, registry.BlobInfo{}, fmt.Errorf("blob: open %s: %w", sha256, err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, registry.BlobInfo{}, fmt.Errorf("blob: open %s: %w", sha256, err)
	}
	return file, registry.BlobInfo{SHA256: sha256, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Verify re-hashes the artifact. A mismatch means the file was damaged after it
// was stored (disk fault, manual edit): FailedPrecondition, since retrying cannot help.
func (f *FS) Verify(ctx context.Context, sha256 string) error {
	r, _, err := f.Open(ctx, sha256)
	if err != nil {
		return err
	}
	defer r.Close()
	got, err := hashReader(ctx, r)
	if err != nil {
		return fmt.Errorf("blob: verify %s: %w", sha256, err)
	}
	if got != sha256 {
		return errs.New(errs.FailedPrecondition,
			"artifact sha256:%s is corrupt (sha mismatch: its bytes hash to %s); delete it and upload it again", sha256, got)
	}
	return nil
}

// ReadVerified reads the artifact whole, hashing it as it reads: its bytes,
// or FailedPrecondition when they do not hash to sha256 (as Verify). A load
// hands them to the runtime, so the file is read once.
func (f *FS) ReadVerified(ctx context.Context, sha256 string) ([]byte, error) {
	r, info, err := f.Open(ctx, sha256)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	h := newHash()
	buf := bytes.NewBuffer(make([]byte, 0, info.Size+bytes.MinRead))
	if _, err := io.Copy(io.MultiWriter(buf, h), ctxReader{ctx: ctx, r: r}); err != nil {
		return nil, fmt.Errorf("blob: read %s: %w", sha256, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha256 {
		return nil, errs.New(errs.FailedPrecondition,
			"artifact sha256:%s is corrupt (sha mismatch: its bytes hash to %s); delete it and upload it again", sha256, got)
	}
	return buf.Bytes(), nil
}

// newHash is a SHA-256 hash (the parameters named sha256 hide the package).
func newHash() hash.Hash { return sha256.New() }

func hashReader(ctx context.Context, r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx: ctx, r: r}); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Stat describes a stored artifact.
func (f *FS) Stat(ctx context.Context, sha256 string) (registry.BlobInfo, error) {
	if err := registry.ValidateDigest(sha256); err != nil {
		return registry.BlobInfo{}, err
	}
	st, err := os.Stat(f.path(sha256))
	if errors.Is(err, fs.ErrNotExist) {
		return registry.BlobInfo{}, errNotFound(sha256)
	}
	if err != nil {
		return registry.BlobInfo{}, fmt.Errorf("blob: stat %s: %w", sha256, err)
	}
	return registry.BlobInfo{SHA256: sha256, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Delete removes an artifact (NotFound if absent).
func (f *FS) Delete(ctx context.Context, sha256 string) error {
	if err := registry.ValidateDigest(sha256); err != nil {
		return err
	}
	err := os.Remove(f.path(sha256))
	if errors.Is(err, fs.ErrNotExist) {
		return errNotFound(sha256)
	}
	if err != nil {
		return fmt.Errorf("blob: delete %s: %w", sha256, err)
	}
	return nil
}

// DeleteIfOlder removes the artifact unless its mtime is at or after cutoff.
// Checking the mtime and then removing the file would lose a blob that a Put
// refreshed in between, so the blob is first moved aside (atomically) and
// checked there: a Put that refreshed it before the move shows in its mtime
// and the blob is moved back; one that comes after the move finds no blob and
// places its own bytes. Either way the bytes a Put returned for stay. (A crash
// while the blob is aside loses it with the temp files NewFS removes: it was
// unreferenced, and its next upload stores it again.)
func (f *FS) DeleteIfOlder(ctx context.Context, sha256 string, cutoff time.Time) (bool, error) {
	if err := registry.ValidateDigest(sha256); err != nil {
		return false, err
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return false, fmt.Errorf("blob: delete %s: %w", sha256, err)
	}
	dst := f.path(sha256)
	aside := filepath.Join(f.tmpDir(), "delete-"+hex.EncodeToString(b[:]))
	if err := os.Rename(dst, aside); errors.Is(err, fs.ErrNotExist) {
		return false, errNotFound(sha256)
	} else if err != nil {
		return false, fmt.Errorf("blob: delete %s: %w", sha256, err)
	}
	st, err := os.Stat(aside)
	if err == nil && !st.ModTime().Before(cutoff) {
		// Still fresh: put it back, unless a Put placed the same bytes meanwhile.
		if err := os.Link(aside, dst); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("blob: keep %s: %w", sha256, err)
		}
		if err := os.Remove(aside); err != nil {
			return false, fmt.Errorf("blob: keep %s: %w", sha256, err)
		}
		return false, nil
	}
	if err := os.Remove(aside); err != nil {
		return false, fmt.Errorf("blob: delete %s: %w", sha256, err)
	}
	return true, nil
}

// List returns every stored artifact, skipping files whose names are not digests.
func (f *FS) List(ctx context.Context) ([]registry.BlobInfo, error) {
	shards, err := os.ReadDir(f.blobRoot())
	if err != nil {
		return nil, fmt.Errorf("blob: list: %w", err)
	}
	out := []registry.BlobInfo{}
	for _, shard := range shards {
		if !shard.IsDir() {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("blob: list: %w", err)
		}
		entries, err := os.ReadDir(filepath.Join(f.blobRoot(), shard.Name()))
		if err != nil {
			return nil, fmt.Errorf("blob: list: %w", err)
		}
		for _, e := range entries {
			name := e.Name()
			if !e.Type().IsRegular() || registry.ValidateDigest(name) != nil || name[:2] != shard.Name() {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			if err != nil {
				return nil, fmt.Errorf("blob: list: %w", err)
			}
			out = append(out, registry.BlobInfo{SHA256: name, Size: info.Size(), ModTime: info.ModTime()})
		}
	}
	return out, nil
}
