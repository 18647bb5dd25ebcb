package gitrepo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Snapshot is one commit of a remote, read from the mirror without a
// checkout. Paths are slash-separated and relative to the repository root.
// A Snapshot is safe for concurrent use; see the package doc for how long it
// stays readable.
type Snapshot struct {
	Commit string // the commit's full hash, 40 hex digits
	Ref    string // the ref Fetch resolved ("refs/heads/main", "refs/tags/v1", "HEAD" when detached); "" for a commit given by hash
	URL    string // the remote, as errors show it

	r *reader
}

// reader reads one commit's tree in one generation. go-git's storage is not
// safe for concurrent use (its indexes and pack handles are plain maps), so
// each reader has its own, behind mu.
type reader struct {
	gen  *generation
	tree plumbing.Hash

	mu  sync.Mutex
	sto *filesystem.Storage
}

// do runs f with the storage, unless the generation has been retired.
func (s *Snapshot) do(f func(sto *filesystem.Storage) error) error {
	g := s.r.gen
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.retired {
		return s.gone()
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return f(s.r.sto)
}

func (s *Snapshot) gone() error {
	return newError(ErrSnapshotGone, nil, "snapshot %s of %s is gone: the mirror was fetched afresh since (history rewritten upstream, or the mirror was damaged); fetch again", s.short(), s.URL)
}

func (s *Snapshot) short() string { return s.Commit[:min(12, len(s.Commit))] }

// checkPath validates a path given to Open, ReadFile or (dir) Walk.
func (s *Snapshot) checkPath(op, p string, dir bool) (string, error) {
	q := p
	if dir {
		switch {
		case q == "":
			q = "."
		case len(q) > 1:
			q = strings.TrimSuffix(q, "/") // "deploy/" is the dir deploy; "/" is absolute
		}
	}
	if !fs.ValidPath(q) || (!dir && q == ".") || strings.ContainsRune(q, '\\') {
		return "", newError(ErrInvalidPath, nil, "%s %q: not a valid path; give a slash-separated path relative to the repository root, without . or .. elements", op, p)
	}
	return q, nil
}

// fileEntry is one file Walk reports.
type fileEntry struct {
	path string
	size int64
}

// Walk calls fn for every regular file (executable ones included) under
// dir, recursively, in lexical order of path; dir "" (or ".") is the
// repository root. Symbolic links and submodules are skipped, never
// followed; so are entries whose names could not be a path element (".",
// "..", containing "/"), which only a hand-crafted tree has. The tree is
// listed first and fn called afterwards, so fn may call the Snapshot's other
// methods. An error from fn stops the walk and is returned as it is. A dir
// that does not exist is an error matching fs.ErrNotExist.
func (s *Snapshot) Walk(dir string, fn func(path string, size int64) error) error {
	d, err := s.checkPath("walk", dir, true)
	if err != nil {
		return err
	}
	var files []fileEntry
	err = s.do(func(sto *filesystem.Storage) error {
		start, err := s.subtree(sto, d)
		if err != nil {
			return err
		}
		prefix := ""
		if d != "." {
			prefix = d + "/"
		}
		files, err = s.list(sto, start, prefix)
		return err
	})
	if err != nil {
		return err
	}
	// Git orders a tree's entries as if directory names ended in "/", which
	// a depth-first listing turns into lexical order of the full paths; sort
	// anyway, so a malformed tree cannot break the promise.
	slices.SortFunc(files, func(a, b fileEntry) int { return strings.Compare(a.path, b.path) })
	for _, f := range files {
		if err := fn(f.path, f.size); err != nil {
			return err
		}
	}
	return nil
}

// subtree finds the tree at dir ("." is the root).
func (s *Snapshot) subtree(sto *filesystem.Storage, dir string) (plumbing.Hash, error) {
	if dir == "." {
		return s.r.tree, nil
	}
	e, err := s.find(sto, dir)
	if err != nil {
		return plumbing.ZeroHash, s.readError("walk", dir, err)
	}
	if e.Mode != filemode.Dir {
		return plumbing.ZeroHash, newError(ErrNotRegular, nil, "walk %s in %s@%s: not a directory", dir, s.URL, s.short())
	}
	return e.Hash, nil
}

// list returns the regular files under the tree h, their paths prefixed.
func (s *Snapshot) list(sto *filesystem.Storage, h plumbing.Hash, prefix string) ([]fileEntry, error) {
	t, err := object.GetTree(sto, h)
	if err != nil {
		return nil, s.readError("walk", strings.TrimSuffix(prefix, "/"), err)
	}
	var out []fileEntry
	for _, e := range t.Entries {
		if !validName(e.Name) {
			continue
		}
		p := prefix + e.Name
		switch e.Mode {
		case filemode.Dir:
			sub, err := s.list(sto, e.Hash, p+"/")
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			size, err := sto.EncodedObjectSize(e.Hash)
			if err != nil {
				return nil, s.readError("walk", p, err)
			}
			out = append(out, fileEntry{path: p, size: size})
		}
	}
	return out, nil
}

func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\x00")
}

// find looks p up in the commit's tree, one directory at a time: a symbolic
// link on the way is not a directory, so it is never followed.
func (s *Snapshot) find(sto *filesystem.Storage, p string) (object.TreeEntry, error) {
	h := s.r.tree
	parts := strings.Split(p, "/")
	for i, name := range parts {
		t, err := object.GetTree(sto, h)
		if err != nil {
			return object.TreeEntry{}, err
		}
		var e *object.TreeEntry
		for j := range t.Entries {
			if t.Entries[j].Name == name {
				e = &t.Entries[j]
				break
			}
		}
		switch {
		case e == nil:
			return object.TreeEntry{}, fs.ErrNotExist
		case i == len(parts)-1:
			return *e, nil
		case e.Mode != filemode.Dir:
			return object.TreeEntry{}, fs.ErrNotExist
		}
		h = e.Hash
	}
	return object.TreeEntry{}, fs.ErrNotExist
}

// readError is the *Error for a failed read of p.
func (s *Snapshot) readError(op, p string, err error) error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, fs.ErrNotExist):
		return newError(fs.ErrNotExist, nil, "%s %s in %s@%s: no such file or directory", op, p, s.URL, s.short())
	}
	// A missing object here is a damaged mirror: Fetch checked the whole
	// tree was there.
	s.r.gen.damaged.Store(true)
	return newError(ErrUnavailable, err, "%s %s in %s@%s: the mirror could not be read", op, p, s.URL, s.short())
}

// Open returns the content of the regular file at p and its size. A path
// that does not exist is an error matching fs.ErrNotExist; a directory, a
// symbolic link or a submodule is ErrNotRegular. Small files are read into
// memory at once; larger ones stream from the mirror (close the reader).
func (s *Snapshot) Open(p string) (io.ReadCloser, int64, error) {
	q, err := s.checkPath("open", p, false)
	if err != nil {
		return nil, 0, err
	}
	var rc io.ReadCloser
	var size int64
	err = s.do(func(sto *filesystem.Storage) error {
		e, err := s.find(sto, q)
		if err != nil {
			return s.readError("open", q, err)
		}
		switch e.Mode {
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
		case filemode.Dir:
			return newError(ErrNotRegular, nil, "open %s in %s@%s: is a directory", q, s.URL, s.short())
		case filemode.Symlink:
			return newError(ErrNotRegular, nil, "open %s in %s@%s: is a symbolic link (links in the repository are not followed)", q, s.URL, s.short())
		default:
			return newError(ErrNotRegular, nil, "open %s in %s@%s: is not a regular file (mode %s)", q, s.URL, s.short(), e.Mode)
		}
		obj, err := sto.EncodedObject(plumbing.BlobObject, e.Hash)
		if err != nil {
			return s.readError("open", q, err)
		}
		size = obj.Size()
		r, err := obj.Reader()
		if err != nil {
			return s.readError("open", q, err)
		}
		if size > largeObject {
			rc = &lockedReader{s: s, r: r, path: q}
			return nil
		}
		defer r.Close()
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return s.readError("open", q, err)
		}
		rc = io.NopCloser(bytes.NewReader(buf))
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return rc, size, nil
}

// lockedReader streams a large file: each read holds the Snapshot's locks,
// so it cannot race the storage or meet a retired mirror half-way.
type lockedReader struct {
	s    *Snapshot
	r    io.ReadCloser
	path string
}

func (l *lockedReader) Read(p []byte) (int, error) {
	var n int
	err := l.s.do(func(*filesystem.Storage) error {
		var err error
		n, err = l.r.Read(p)
		return err
	})
	if err != nil && err != io.EOF {
		var e *Error
		if !errors.As(err, &e) {
			err = l.s.readError("read", l.path, err)
		}
	}
	return n, err
}

func (l *lockedReader) Close() error {
	l.s.r.mu.Lock()
	defer l.s.r.mu.Unlock()
	return l.r.Close()
}

// ReadFile returns the content of the regular file at p, refusing one
// larger than max bytes with an error matching ErrTooLarge (before reading
// it). Other errors are Open's.
func (s *Snapshot) ReadFile(p string, max int64) ([]byte, error) {
	rc, size, err := s.Open(p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > max {
		return nil, newError(ErrTooLarge, nil, "read %s in %s@%s: %d bytes, more than the limit of %d", p, s.URL, s.short(), size, max)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(rc, buf); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, s.readError("read", p, fmt.Errorf("%w (size %d)", err, size))
	}
	return buf, nil
}
