package gitrepo

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Layout of a mirror's directory: the generation directories (bare
// repositories, g-*), a file naming the current one, and the URL it mirrors
// (for whoever looks at the disk).
const (
	currentFile = "current"
	urlFile     = "url"
	genPrefix   = "g-"
)

// mirror is one remote's directory. lock serializes Fetches of the remote;
// everything after it is guarded by lock.
type mirror struct {
	dir  string
	log  *slog.Logger
	lock chan struct{}

	loaded bool
	gen    *generation // nil: nothing fetched yet
}

// acquire takes m's lock, or gives up when ctx ends.
func (m *mirror) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case m.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *mirror) release() { <-m.lock }

// generation is one bare repository of a mirror: replaced as a whole by a
// full re-fetch, never changed except by adding objects and moving refs.
type generation struct {
	dir string

	// mu is held for reading by every Snapshot read in dir and for writing
	// by retire: dir is deleted only when no read is in progress in it, and
	// every read after that sees retired.
	mu      sync.RWMutex
	retired bool
	// damaged is set by a Snapshot that found the mirror unreadable (Fetch
	// had checked the tree was whole, so it was damaged since): the next
	// Fetch replaces the generation instead of trusting it.
	damaged atomic.Bool

	// The rest is the fetcher's, under the mirror's lock.
	sto      *filesystem.Storage
	refs     map[plumbing.ReferenceName]plumbing.Hash // refs/heads/* and refs/tags/*
	head     plumbing.ReferenceName                   // what HEAD points to
	verified map[plumbing.Hash]bool                   // commits whose whole tree is here
	readers  map[plumbing.Hash]*reader                // for Snapshots of these commits
}

// maxReaders bounds the readers a generation keeps for reuse: a no-op Fetch
// hands back a reader whose indexes and caches are already warm.
const maxReaders = 8

// largeObject is the size from which a Snapshot streams a file from its pack
// instead of reading it into memory first.
const largeObject = 1 << 20

// openStorage opens the fetcher's view of a generation: nothing cached that
// its own writes could make stale.
func openStorage(dir string) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(dir, osfs.WithBoundOS()), cache.NewObjectLRU(32*cache.MiByte),
		filesystem.Options{LargeObjectThreshold: largeObject})
}

// openReaderStorage opens a Snapshot's view of a generation. A Snapshot only
// reads objects that were there when it was made, so it may cache what the
// directory holds (ExclusiveAccess: no failed open of a loose object before
// each packed one) and keep its packs open (a few descriptors, closed when
// the generation is retired, or when the reader is collected).
func openReaderStorage(dir string) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(dir, osfs.WithBoundOS()), cache.NewObjectLRU(8*cache.MiByte),
		filesystem.Options{LargeObjectThreshold: largeObject, ExclusiveAccess: true, MaxOpenDescriptors: 4})
}

// openGeneration opens the repository in dir and reads its refs.
func openGeneration(dir string) (*generation, error) {
	g := &generation{dir: dir, sto: openStorage(dir)}
	g.reset()
	iter, err := g.sto.IterReferences()
	if err != nil {
		return nil, err
	}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		switch {
		case r.Name() == plumbing.HEAD && r.Type() == plumbing.SymbolicReference:
			g.head = r.Target()
		case r.Type() == plumbing.HashReference && (r.Name().IsBranch() || r.Name().IsTag()):
			g.refs[r.Name()] = r.Hash()
		}
		return nil
	})
	return g, err
}

func (g *generation) reset() {
	g.refs = map[plumbing.ReferenceName]plumbing.Hash{}
	g.verified = map[plumbing.Hash]bool{}
	g.readers = map[plumbing.Hash]*reader{}
}

// has reports whether the object h is in g.
func (g *generation) has(h plumbing.Hash) bool { return g.sto.HasEncodedObject(h) == nil }

// setRef points name at h, on disk and in g.refs.
func (g *generation) setRef(name plumbing.ReferenceName, h plumbing.Hash) error {
	if err := g.sto.SetReference(plumbing.NewHashReference(name, h)); err != nil {
		return err
	}
	g.refs[name] = h
	return nil
}

func (g *generation) removeRef(name plumbing.ReferenceName) error {
	if err := g.sto.RemoveReference(name); err != nil {
		return err
	}
	delete(g.refs, name)
	return nil
}

// retire makes every later read of g fail with ErrSnapshotGone, waits for
// the reads in progress, and deletes g's directory.
func (g *generation) retire() error {
	g.mu.Lock()
	g.retired = true
	for _, rd := range g.readers {
		_ = rd.sto.Close() // only open pack files to close: nothing to lose
	}
	g.mu.Unlock()
	return os.RemoveAll(g.dir)
}

// load opens the current generation left by an earlier process, if any, and
// removes the leftovers of generations retired or abandoned half-made.
func (m *mirror) load() error {
	m.loaded = true
	name, err := os.ReadFile(filepath.Join(m.dir, currentFile))
	if errors.Is(err, os.ErrNotExist) {
		return m.removeStale("")
	}
	if err != nil {
		return err
	}
	cur := strings.TrimSpace(string(name))
	if !strings.HasPrefix(cur, genPrefix) || filepath.Base(cur) != cur {
		return m.removeStale("")
	}
	if err := m.removeStale(cur); err != nil {
		return err
	}
	g, err := openGeneration(filepath.Join(m.dir, cur))
	if err != nil {
		return err
	}
	m.gen = g
	return nil
}

// removeStale deletes every generation directory but keep.
func (m *mirror) removeStale(keep string) error {
	entries, err := os.ReadDir(m.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, genPrefix) && n != keep || n == currentFile+".tmp" {
			errs = append(errs, os.RemoveAll(filepath.Join(m.dir, n)))
		}
	}
	return errors.Join(errs...)
}

// create makes a new, empty generation (not yet current).
func (m *mirror) create(shown string) (*generation, error) {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, err
	}
	// Only for people looking at the disk; a failure to write it is no
	// reason not to fetch.
	_ = os.WriteFile(filepath.Join(m.dir, urlFile), []byte(shown+"\n"), 0o600)
	dir, err := os.MkdirTemp(m.dir, genPrefix)
	if err != nil {
		return nil, err
	}
	g := &generation{dir: dir, sto: openStorage(dir)}
	g.reset()
	if err := initBare(g.sto); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return g, nil
}

// initBare makes sto an empty bare repository that the git CLI also
// recognizes (for whoever inspects a mirror by hand).
func initBare(sto *filesystem.Storage) error {
	if err := sto.Init(); err != nil {
		return err
	}
	cfg := config.NewConfig()
	cfg.Core.IsBare = true
	if err := sto.SetConfig(cfg); err != nil {
		return err
	}
	return sto.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.Main))
}

// swap makes g the current generation: the current file is replaced by a
// rename, so a crash leaves either the old or the new one named, each
// complete (a half-written generation is never named).
func (m *mirror) swap(g *generation) error {
	tmp := filepath.Join(m.dir, currentFile+".tmp")
	if err := os.WriteFile(tmp, []byte(filepath.Base(g.dir)+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, currentFile)); err != nil {
		return err
	}
	old := m.gen
	m.gen = g
	if old != nil {
		if err := old.retire(); err != nil {
			// The new generation is in place; the old directory is removed
			// by the next process that loads this mirror.
			m.log.Warn("removing a replaced mirror failed", "dir", old.dir, "err", err)
		}
	}
	return nil
}

// fetch brings m up to date and resolves ref: incrementally in the current
// generation, or, when there is none or it proves unusable, in a new one.
func (m *mirror) fetch(ctx context.Context, rem *remote, ref string) (*Snapshot, error) {
	if !m.loaded {
		if err := m.load(); err != nil {
			// Whatever is on disk, a fresh fetch replaces it.
			m.log.Warn("mirror unreadable; fetching it afresh", "url", rem.shown, "err", err)
		}
	}
	if m.gen != nil {
		snap, err := m.sync(ctx, rem, m.gen, ref)
		var le *localError
		if err == nil || !errors.As(err, &le) || ctx.Err() != nil {
			return snap, public(ctx, rem, err)
		}
		m.log.Warn("mirror unusable; fetching the repository afresh", "url", rem.shown, "err", err)
	}
	g, err := m.create(rem.shown)
	if err != nil {
		return nil, newError(ErrUnavailable, err, "fetch %s: the mirror could not be made", rem.shown)
	}
	snap, err := m.sync(ctx, rem, g, ref)
	if err == nil {
		err = local(m.swap(g))
	}
	if err != nil {
		_ = g.retire() // a failed fetch's directory; load clears it if this fails
		return nil, public(ctx, rem, err)
	}
	m.log.Info("mirror fetched in full", "url", rem.shown, "commit", snap.Commit)
	return snap, nil
}

// public turns what sync returned into the *Error Fetch returns.
func public(ctx context.Context, rem *remote, err error) error {
	var e *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case ctx.Err() != nil:
		return newError(ctx.Err(), rem.scrub(err), "fetch %s: %v", rem.shown, ctx.Err())
	}
	return newError(ErrUnavailable, rem.scrub(err), "fetch %s: the mirror could not be updated", rem.shown)
}

// snapshot returns a Snapshot of commit in g, reusing g's reader for it.
func (m *mirror) snapshot(rem *remote, g *generation, commit *commitTree, name plumbing.ReferenceName) *Snapshot {
	rd := g.readers[commit.hash]
	if rd == nil {
		if len(g.readers) >= maxReaders {
			clear(g.readers)
		}
		rd = &reader{gen: g, sto: openReaderStorage(g.dir), tree: commit.tree}
		g.readers[commit.hash] = rd
	}
	return &Snapshot{Commit: commit.hash.String(), Ref: string(name), URL: rem.shown, r: rd}
}

// commitTree is a commit and its root tree: what a Snapshot needs of it.
type commitTree struct {
	hash, tree plumbing.Hash
}
