// Package gitops syncs GitSources: a level-triggered controller that, for
// each GitSource, fetches its ref, renders every resource declared under its
// path, and applies all of them or none through the apply engine — as the
// identity that last applied the GitSource, writing only into the namespaces
// it may write into, owning what it writes (metadata.managedBy) and pruning
// only what it owns. Between commits it compares the live state with the
// repository (a dry run of the same apply): a change made through the API or
// CLI shows as OutOfSync with its diff, and is reverted when selfHeal is on.
//
// The git layer (gitops/gitrepo) and the engine are reached through the
// small interfaces below, so the controller is tested with real repositories
// and the real engine, and knows neither's internals.
package gitops

import (
	"context"
	"io"
	"time"

	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/spec"
)

// Remote is a repository and the token to reach it with ("" for none).
type Remote struct {
	URL   string
	Token string
}

// Snapshot is one commit of a repository, read from its tree.
type Snapshot interface {
	// Commit is the commit's full hash.
	Commit() string
	// Walk calls fn for every regular file under dir (slash-separated paths
	// relative to the repository's root), in lexical order.
	Walk(dir string, fn func(path string, size int64) error) error
	// Open opens a file of the commit (fs.ErrNotExist when absent).
	Open(path string) (io.ReadCloser, int64, error)
}

// Repos fetches repositories.
type Repos interface {
	// Fetch brings the remote up to date and resolves ref (a branch, a tag,
	// a full commit hash, or "" for the default branch). Its errors are
	// safe to show to the GitSource's owner.
	Fetch(ctx context.Context, r Remote, ref string) (Snapshot, error)
}

// Applier is the apply engine.
type Applier interface {
	Sync(ctx context.Context, req spec.Request, so apply.SyncOptions) (*spec.Response, error)
}

// Resources is the part of the resource store the controller reads and
// writes (the GitSources and their status).
type Resources interface {
	GetResource(ctx context.Context, kind, ns, name string) (spec.StoredResource, error)
	ListResources(ctx context.Context, kind, ns string) ([]spec.StoredResource, error)
	GetStatus(ctx context.Context, kind, ns, name string) (spec.Status, error)
	PutStatus(ctx context.Context, kind, ns, name string, st spec.Status) error
}

// Identities turns the recorded identity that last applied a GitSource back
// into the check of what it may write: authorize(ns) is nil when it may
// write into ns. An error says the identity is gone (a revoked or expired
// token): the source then syncs nothing.
type Identities interface {
	Authorizer(ctx context.Context, appliedBy string) (authorize func(kind, ns string) error, err error)
}

// Secrets resolves the token reference of an https remote.
type Secrets interface {
	Token(ref spec.SourceAuth) (string, error)
}

// Metrics records each sync.
type Metrics interface {
	GitSync(ns, name, result string, took time.Duration)
	// GitSynced records a good sync at at (the latest one reported counts).
	GitSynced(ns, name string, at time.Time)
	GitForget(ns, name string)
}

// SourceGitOps is the change source of every change a GitSource makes (the
// audit log's source); a caller cannot claim it.
const SourceGitOps = "gitops"

// Actor is the audit actor of a GitSource's changes.
func Actor(ns, name string) string { return "gitsource/" + ns + "/" + name }
