package mgmt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// uploads stages resumable blob uploads as files under dir/<namespace>/<id>.
// The file is the whole state: its size is the upload's offset and its mtime
// the last activity, so sessions survive a server restart and expire ttl after
// their last chunk. One request at a time may work on an upload.
type uploads struct {
	dir string
	ttl time.Duration
	max int64
	now func() time.Time

	mu   sync.Mutex
	busy map[string]bool // dir-relative path → a request holds it
}

func newUploads(dir string, ttl time.Duration, max int64) *uploads {
	return &uploads{dir: dir, ttl: ttl, max: max, now: time.Now, busy: map[string]bool{}}
}

var uploadIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// offsetError reports where an upload really is when a chunk names another offset.
type offsetError struct {
	offset int64
	err    *errs.Error
}

func (e *offsetError) Error() string { return e.err.Error() }
func (e *offsetError) Unwrap() error { return e.err }

func (u *uploads) rel(ns, id string) (string, error) {
	// The registry's rule, so uploads take every namespace a push does; it
	// also makes ns a safe path element (no '/', never "." or "..").
	if err := registry.ValidateNamespace(ns); err != nil {
		return "", err
	}
	if id != "" && !uploadIDRE.MatchString(id) {
		return "", errs.New(errs.NotFound, "upload %q not found", id)
	}
	return filepath.Join(ns, id), nil
}

func (u *uploads) acquire(rel string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.busy[rel] {
		return errs.New(errs.Conflict, "upload %s is busy with another request", filepath.Base(rel))
	}
	u.busy[rel] = true
	return nil
}

func (u *uploads) release(rel string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.busy, rel)
}

// hold validates the names, takes the upload for this request and returns its
// dir-relative path and current size; release must be called unless err != nil.
func (u *uploads) hold(ns, id string) (rel string, size int64, release func(), err error) {
	if rel, err = u.rel(ns, id); err != nil {
		return "", 0, nil, err
	}
	if err := u.acquire(rel); err != nil {
		return "", 0, nil, err
	}
	if size, err = u.stat(rel); err != nil {
		u.release(rel)
		return "", 0, nil, err
	}
	return rel, size, func() { u.release(rel) }, nil
}

// start creates an empty upload and returns its id. Expired uploads are swept first.
func (u *uploads) start(ns string) (string, error) {
	if _, err := u.rel(ns, ""); err != nil {
		return "", err
	}
	if _, err := u.sweep(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(u.dir, ns), 0o700); err != nil {
		return "", fmt.Errorf("create upload dir: %w", err)
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand docs)
	id := hex.EncodeToString(b[:])
	f, err := os.OpenFile(filepath.Join(u.dir, ns, id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("create upload: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("create upload: %w", err)
	}
	return id, nil
}

// stat returns the upload's offset; an expired upload is removed and NotFound.
func (u *uploads) stat(rel string) (int64, error) {
	path := filepath.Join(u.dir, rel)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errs.New(errs.NotFound, "upload %s not found (finished, canceled or expired)", filepath.Base(rel))
	}
	if err != nil {
		return 0, fmt.Errorf("stat upload: %w", err)
	}
	if u.expired(fi) {
		_ = os.Remove(path)
		return 0, errs.New(errs.NotFound, "upload %s expired", filepath.Base(rel))
	}
	return fi.Size(), nil
}

func (u *uploads) expired(fi fs.FileInfo) bool {
	return u.now().Sub(fi.ModTime()) > u.ttl
}

// offset reports how many bytes the upload holds.
func (u *uploads) offset(ns, id string) (int64, error) {
	rel, err := u.rel(ns, id)
	if err != nil {
		return 0, err
	}
	return u.stat(rel)
}

// append writes r at offset, which must equal the current size. Bytes that
// arrived before a cut connection are kept: the client resumes from the new
// offset. It returns the offset after the write.
func (u *uploads) append(ns, id string, offset int64, r io.Reader) (int64, error) {
	rel, size, release, err := u.hold(ns, id)
	if err != nil {
		return 0, err
	}
	defer release()
	if offset != size {
		return 0, &offsetError{offset: size, err: errs.New(errs.Conflict, "upload offset is %d, not %d", size, offset).WithField("Upload-Offset")}
	}
	f, err := os.OpenFile(filepath.Join(u.dir, rel), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return 0, fmt.Errorf("open upload: %w", err)
	}
	body := &readErrRecorder{r: io.LimitReader(r, u.max-size+1)}
	n, copyErr := io.Copy(f, body)
	if copyErr != nil && body.err != nil {
		copyErr = errs.Wrap(errs.InvalidArgument, copyErr, "upload interrupted at offset %d; resume from there", size+n)
	}
	if size+n > u.max {
		copyErr = errs.New(errs.TooLarge, "blob is larger than %d bytes", u.max)
		if err := f.Truncate(size); err != nil {
			copyErr = fmt.Errorf("truncate oversized upload: %w", err)
		}
		n = 0
	}
	if err := f.Close(); err != nil && copyErr == nil {
		copyErr = fmt.Errorf("write upload: %w", err)
	}
	if copyErr != nil {
		return size + n, fmt.Errorf("append to upload at offset %d: %w", size+n, copyErr)
	}
	return size + n, nil
}

// finish hands the staged file to store, which may move it away. On success, or
// when store rejects the bytes (InvalidArgument, e.g. a digest mismatch), the
// upload is removed; other failures keep it so the client may retry.
func (u *uploads) finish(ns, id string, store func(path string) error) error {
	rel, _, release, err := u.hold(ns, id)
	if err != nil {
		return err
	}
	defer release()
	path := filepath.Join(u.dir, rel)
	err = store(path)
	if err == nil || errs.KindOf(err) == errs.InvalidArgument {
		if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			return fmt.Errorf("remove finished upload: %w", rmErr)
		}
	}
	return err
}

// cancel discards an upload.
func (u *uploads) cancel(ns, id string) error {
	rel, _, release, err := u.hold(ns, id)
	if err != nil {
		return err
	}
	defer release()
	if err := os.Remove(filepath.Join(u.dir, rel)); err != nil {
		return fmt.Errorf("cancel upload: %w", err)
	}
	return nil
}

// sweep removes expired uploads that no request holds and reports how many.
func (u *uploads) sweep() (int, error) {
	nss, err := os.ReadDir(u.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sweep uploads: %w", err)
	}
	removed := 0
	for _, nsEnt := range nss {
		if !nsEnt.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(u.dir, nsEnt.Name()))
		if err != nil {
			return removed, fmt.Errorf("sweep uploads: %w", err)
		}
		for _, e := range ents {
			fi, err := e.Info()
			if err != nil || !u.expired(fi) {
				continue
			}
			rel := filepath.Join(nsEnt.Name(), e.Name())
			if u.acquire(rel) != nil {
				continue
			}
			if os.Remove(filepath.Join(u.dir, rel)) == nil {
				removed++
			}
			u.release(rel)
		}
	}
	return removed, nil
}

// readErrRecorder remembers a read error so a cut request body can be told
// apart from a failing disk.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (e *readErrRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
