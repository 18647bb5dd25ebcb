package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// maxHavesPerRef is how many commits of each local ref's history a fetch
// offers the server as already had. go-git's negotiation is a single round
// (wants, haves, done), so the tips alone would not do after a force-push:
// the server no longer knows them, but does know their ancestors. (go-git's
// own Remote.Fetch offers 100.)
const maxHavesPerRef = 32

// target is what a ref resolves to in the remote's advertisement.
type target struct {
	name plumbing.ReferenceName // "" for a commit given by hash
	hash plumbing.Hash          // a commit, or an annotated tag to peel
}

// sync fetches into g what resolving ref needs, moves g's refs to the
// remote's, and returns a Snapshot of the commit ref names. Errors about the
// remote are *Error; errors about g itself are *localError (a full fetch
// into a new generation may cure them).
func (m *mirror) sync(ctx context.Context, rem *remote, g *generation, ref string) (*Snapshot, error) {
	if g.damaged.Load() {
		return nil, local(errors.New("a snapshot found the mirror unreadable"))
	}
	sess, err := rem.tr.NewUploadPackSession(rem.ep, rem.auth)
	if err != nil {
		return nil, rem.remoteError(ctx, err)
	}
	defer sess.Close()
	adv, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		if errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return nil, newError(ErrRefNotFound, nil, "ref %q not found in %s: the repository has no commits", refShown(ref), rem.shown)
		}
		return nil, rem.remoteError(ctx, err)
	}
	refs, err := adv.AllReferences()
	if err != nil {
		return nil, rem.remoteError(ctx, err)
	}
	tgt, err := resolveRef(rem, refs, ref)
	if err != nil {
		return nil, err
	}

	var wants []plumbing.Hash
	switch {
	case g.has(tgt.hash):
	case tgt.name != "":
		wants = []plumbing.Hash{tgt.hash}
	default:
		// A commit by hash: servers only hand out what their refs reach
		// (uploadpack.allowReachableSHA1InWant is off by default), so ask
		// for every branch and tag and look for it among them.
		for name, r := range refs {
			if (name.IsBranch() || name.IsTag()) && r.Type() == plumbing.HashReference && !g.has(r.Hash()) && !slices.Contains(wants, r.Hash()) {
				wants = append(wants, r.Hash())
			}
		}
	}
	if len(wants) > 0 {
		if err := m.fetchPack(ctx, rem, sess, adv, g, wants); err != nil {
			return nil, err
		}
	}
	if err := updateRefs(g, refs); err != nil {
		return nil, local(err)
	}

	commit, err := peel(g.sto, tgt.hash)
	if err != nil {
		if tgt.name == "" && errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, newError(ErrRefNotFound, nil, "commit %s not found in %s", tgt.hash, rem.shown)
		}
		if errors.Is(err, errNotCommit) {
			return nil, newError(ErrRefNotFound, nil, "ref %q in %s does not point to a commit", refShown(ref), rem.shown)
		}
		return nil, local(fmt.Errorf("reading commit %s: %w", tgt.hash, err))
	}
	if !g.verified[commit.Hash] {
		// The mirror said it had these objects; make sure, once per commit,
		// that it really has the whole tree, so a Snapshot never meets a
		// hole and a damaged mirror is replaced now rather than read.
		if err := verifyTree(g.sto, commit.TreeHash); err != nil {
			return nil, local(fmt.Errorf("commit %s: %w", commit.Hash, err))
		}
		g.verified[commit.Hash] = true
	}
	m.log.Debug("fetched", "url", rem.shown, "ref", refShown(ref), "commit", commit.Hash.String(), "objects", len(wants) > 0)
	return m.snapshot(rem, g, &commitTree{hash: commit.Hash, tree: commit.TreeHash}, tgt.name), nil
}

// refShown is how a ref appears in messages ("" is the default branch).
func refShown(ref string) string {
	if ref == "" {
		return "HEAD"
	}
	return ref
}

// resolveRef finds ref in the remote's refs.
func resolveRef(rem *remote, refs memory.ReferenceStorage, ref string) (target, error) {
	notFound := func() error {
		return newError(ErrRefNotFound, nil, "ref %q not found in %s", refShown(ref), rem.shown)
	}
	lookup := func(name plumbing.ReferenceName) (target, bool) {
		r, ok := refs[name]
		if !ok || r.Type() != plumbing.HashReference {
			return target{}, false
		}
		return target{name: name, hash: r.Hash()}, true
	}
	switch {
	case ref == "":
		head, ok := refs[plumbing.HEAD]
		if !ok {
			return target{}, newError(ErrRefNotFound, nil, "ref \"HEAD\" not found in %s: the remote has no default branch", rem.shown)
		}
		if head.Type() == plumbing.SymbolicReference {
			if t, ok := lookup(head.Target()); ok {
				return t, nil
			}
			return target{}, newError(ErrRefNotFound, nil, "ref \"HEAD\" not found in %s: its default branch %s has no commits", rem.shown, head.Target().Short())
		}
		return target{name: plumbing.HEAD, hash: head.Hash()}, nil
	case isCommitHash(ref):
		return target{hash: plumbing.NewHash(ref)}, nil
	case strings.HasPrefix(ref, "refs/"):
		if t, ok := lookup(plumbing.ReferenceName(ref)); ok {
			return t, nil
		}
		return target{}, notFound()
	}
	branch, isBranch := lookup(plumbing.NewBranchReferenceName(ref))
	tag, isTag := lookup(plumbing.NewTagReferenceName(ref))
	switch {
	case isBranch && isTag:
		return target{}, newError(ErrRefNotFound, nil, "ref %q is ambiguous in %s: it is both a branch and a tag; write refs/heads/%s or refs/tags/%s", ref, rem.shown, ref, ref)
	case isBranch:
		return branch, nil
	case isTag:
		return tag, nil
	}
	return target{}, notFound()
}

// isCommitHash reports whether s is a full SHA-1 object name in lower case.
func isCommitHash(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// fetchPack asks the remote for wants and stores the pack it sends in g.
func (m *mirror) fetchPack(ctx context.Context, rem *remote, sess transport.UploadPackSession, adv *packp.AdvRefs, g *generation, wants []plumbing.Hash) error {
	req := packp.NewUploadPackRequestFromCapabilities(adv.Capabilities)
	if adv.Capabilities.Supports(capability.NoProgress) {
		if err := req.Capabilities.Set(capability.NoProgress); err != nil {
			return local(err)
		}
	}
	req.Wants = wants
	keep := func(plumbing.Hash) bool { return true }
	if rem.src != nil {
		// go-git's upload-pack fails on a have it does not know (git's
		// ignores it): offer a local remote only what it has.
		keep = func(h plumbing.Hash) bool { return rem.src.HasEncodedObject(h) == nil }
	}
	req.Haves = haves(g, keep)

	resp, err := sess.UploadPack(ctx, req)
	if errors.Is(err, transport.ErrEmptyUploadPackRequest) {
		return nil
	}
	if err != nil {
		return rem.remoteError(ctx, err)
	}
	defer resp.Close()
	var r io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		r = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		r = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	if err := packfile.UpdateObjectStorage(g.sto, r); err != nil {
		if ctx.Err() != nil || isNetworkError(err) {
			return rem.remoteError(ctx, err)
		}
		return local(fmt.Errorf("storing the pack: %w", err))
	}
	return nil
}

// isNetworkError reports whether err is the connection failing, not the
// data: retrying a full fetch would not help.
func isNetworkError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// haves lists the commits g's refs reach, up to maxHavesPerRef per ref,
// that keep accepts.
func haves(g *generation, keep func(plumbing.Hash) bool) []plumbing.Hash {
	seen := map[plumbing.Hash]bool{}
	var out []plumbing.Hash
	names := make([]plumbing.ReferenceName, 0, len(g.refs))
	for name := range g.refs {
		names = append(names, name)
	}
	slices.Sort(names) // the same request for the same mirror
	for _, name := range names {
		c, err := peel(g.sto, g.refs[name])
		if err != nil || seen[c.Hash] {
			continue
		}
		n := 0
		// Errors end the walk early; offering fewer haves only costs bytes.
		_ = object.NewCommitPreorderIter(c, seen, nil).ForEach(func(c *object.Commit) error {
			seen[c.Hash] = true
			if keep(c.Hash) {
				out = append(out, c.Hash)
			}
			if n++; n >= maxHavesPerRef {
				return storer.ErrStop
			}
			return nil
		})
	}
	return out
}

// updateRefs moves g's branches and tags to the remote's, for those whose
// objects g has (the others stay where they were, or absent), removes the
// ones the remote no longer has, and points HEAD where the remote's does.
// A ref name git would refuse is skipped: go-git writes a ref to the file
// its name spells, so refs/heads/../../config must never get that far.
func updateRefs(g *generation, refs memory.ReferenceStorage) error {
	for name, r := range refs {
		if !(name.IsBranch() || name.IsTag()) || r.Type() != plumbing.HashReference || name.Validate() != nil {
			continue
		}
		if h, ok := g.refs[name]; ok && h == r.Hash() || !g.has(r.Hash()) {
			continue
		}
		if err := g.setRef(name, r.Hash()); err != nil {
			return err
		}
	}
	for name := range g.refs {
		if _, ok := refs[name]; !ok {
			if err := g.removeRef(name); err != nil {
				return err
			}
		}
	}
	if head, ok := refs[plumbing.HEAD]; ok && head.Type() == plumbing.SymbolicReference && head.Target() != g.head &&
		head.Target().IsBranch() && head.Target().Validate() == nil {
		if err := g.sto.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, head.Target())); err != nil {
			return err
		}
		g.head = head.Target()
	}
	return nil
}

var errNotCommit = errors.New("not a commit")

// peel follows annotated tags from h to the commit they name.
func peel(sto storer.EncodedObjectStorer, h plumbing.Hash) (*object.Commit, error) {
	for range 16 {
		obj, err := sto.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			return object.DecodeCommit(sto, obj)
		case plumbing.TagObject:
			tag, err := object.DecodeTag(sto, obj)
			if err != nil {
				return nil, err
			}
			h = tag.Target
		default:
			return nil, errNotCommit
		}
	}
	return nil, fmt.Errorf("%w: tags nested too deep", errNotCommit)
}

// verifyTree checks that every tree and file the tree h reaches is in sto.
// Submodules are other repositories' commits and not looked for.
func verifyTree(sto storer.EncodedObjectStorer, h plumbing.Hash) error {
	stack := []plumbing.Hash{h}
	seen := map[plumbing.Hash]bool{}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		t, err := object.GetTree(sto, h)
		if err != nil {
			return fmt.Errorf("tree %s: %w", h, err)
		}
		for _, e := range t.Entries {
			switch e.Mode {
			case filemode.Dir:
				stack = append(stack, e.Hash)
			case filemode.Submodule:
			default:
				if !seen[e.Hash] {
					if err := sto.HasEncodedObject(e.Hash); err != nil {
						return fmt.Errorf("%s (%s): %w", e.Name, e.Hash, err)
					}
					seen[e.Hash] = true
				}
			}
		}
	}
	return nil
}

// remoteError classifies a failure of the remote or of reaching it.
func (r *remote) remoteError(ctx context.Context, err error) error {
	cause := r.scrub(err)
	switch {
	case ctx.Err() != nil:
		return newError(ctx.Err(), cause, "fetch %s: %v", r.shown, ctx.Err())
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return newError(ErrAuth, cause, "fetch %s: authentication required", r.shown)
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return newError(ErrAuth, cause, "fetch %s: authentication required: the credentials were refused", r.shown)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return newError(ErrRepoNotFound, cause, "fetch %s: repository not found", r.shown)
	}
	return newError(ErrUnavailable, cause, "fetch %s: the repository could not be fetched", r.shown)
}
