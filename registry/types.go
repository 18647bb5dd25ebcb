// Package registry keeps models, their immutable versions, aliases, signatures,
// lineage and serving settings, and the content-addressed artifacts versions point
// to. Metadata sits behind the Store interface (sqlite now, postgres later); artifact
// bytes behind BlobStore. Registry combines them into the operations the API offers.
package registry

import (
	"context"
	"io"
	"time"

	"github.com/nimbus-ai/nimbus/tensor"
)

// DefaultNamespace is used wherever a namespace is not given.
const DefaultNamespace = "default"

// ChampionAlias is the alias served by /v2/models/{m} when no version is named.
const ChampionAlias = "champion"

// Model is a registered model: a name in a namespace owning versions and aliases.
type Model struct {
	Namespace   string            `json:"namespace"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Aliases are the declared versions (an apply, `alias set`).
	Aliases map[string]int64 `json:"aliases,omitempty"`
	// Effective holds the aliases whose effective version (what serving
	// resolves) differs from the declared one: a rollout has not moved them
	// yet. An alias missing here serves its declared version.
	Effective     map[string]int64 `json:"effectiveAliases,omitempty"`
	Serving       ServingConfig    `json:"serving"`
	LatestVersion int64            `json:"latestVersion"`
	CreatedAt     time.Time        `json:"createdAt"`
	UpdatedAt     time.Time        `json:"updatedAt"`
}

// EffectiveVersion is the version alias serves: its effective version when
// a rollout holds it, else its declared one.
func (m Model) EffectiveVersion(alias string) (int64, bool) {
	if v, ok := m.Effective[alias]; ok {
		return v, true
	}
	v, ok := m.Aliases[alias]
	return v, ok
}

// EffectiveAliases is every alias with the version it serves.
func (m Model) EffectiveAliases() map[string]int64 {
	if len(m.Effective) == 0 {
		return m.Aliases
	}
	out := make(map[string]int64, len(m.Aliases))
	for a := range m.Aliases {
		out[a], _ = m.EffectiveVersion(a)
	}
	return out
}

// Version is an immutable model version pointing to a content-addressed artifact.
// Only Serving (the per-version override) may change after creation.
type Version struct {
	Namespace   string           `json:"namespace"`
	Model       string           `json:"model"`
	Version     int64            `json:"version"`
	Format      string           `json:"format"`
	SHA256      string           `json:"sha256"`
	Size        int64            `json:"size"`
	Signature   tensor.Signature `json:"signature"`
	Description string           `json:"description,omitempty"`
	// Source is where the bytes came from: "push", or a URI.
	Source string `json:"source,omitempty"`
	// Lineage records provenance: run id, commit, dataset, etc.
	Lineage   map[string]string `json:"lineage,omitempty"`
	Serving   *ServingConfig    `json:"serving,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
}

// ListOptions pages through names in order. After is the last name of the previous page.
type ListOptions struct {
	Limit  int    // 0 means DefaultPageSize; capped at MaxPageSize
	After  string // exclusive cursor (a model name)
	Prefix string // only names with this prefix
}

// Page sizes for ListModels.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// ModelPage is one page of models; Next is "" on the last page.
type ModelPage struct {
	Items []Model `json:"items"`
	Next  string  `json:"next,omitempty"`
}

// Store persists registry metadata. Implementations must be safe for concurrent use
// and return errs kinds: NotFound, AlreadyExists, Conflict, InvalidArgument.
// Every key carries the namespace.
type Store interface {
	// CreateVersion records a new version. If v.Version is 0 the next number
	// (latest+1) is assigned atomically. The model row is created if missing.
	// A duplicate version number is AlreadyExists.
	CreateVersion(ctx context.Context, v Version) (Version, error)
	GetVersion(ctx context.Context, ns, model string, version int64) (Version, error)
	ListVersions(ctx context.Context, ns, model string) ([]Version, error)
	// DeleteVersion removes a version and any alias pointing to it. Unless force,
	// it is refused (Conflict, see AliasConflict) when an alias points to the
	// version; the check and the delete are one transaction, so an alias set
	// concurrently is never dropped silently.
	DeleteVersion(ctx context.Context, ns, model string, version int64, force bool) error
	SetVersionServing(ctx context.Context, ns, model string, version int64, s *ServingConfig) error

	GetModel(ctx context.Context, ns, name string) (Model, error)
	ListModels(ctx context.Context, ns string, opt ListOptions) (ModelPage, error)
	// UpdateModel changes Description, Labels and Serving of an existing model.
	UpdateModel(ctx context.Context, m Model) (Model, error)
	// DeleteModel removes a model, its versions and aliases. Without force, a
	// model with aliases is refused (Conflict) in the same transaction.
	DeleteModel(ctx context.Context, ns, name string, force bool) error
	ListNamespaces(ctx context.Context) ([]string, error)

	// SetAlias points alias at an existing version (NotFound otherwise); its
	// effective version follows at once.
	SetAlias(ctx context.Context, ns, model, alias string, version int64) error
	// SetAliasHeld is SetAlias with the effective version kept where it is
	// (the declared one if it had none): a rollout will move it. A new alias
	// has no effective version to keep and serves the declared one.
	SetAliasHeld(ctx context.Context, ns, model, alias string, version int64) error
	// SetEffectiveAlias sets an existing alias's effective version (NotFound
	// when the alias or the version does not exist); the declared version
	// stays. Setting it to the declared version clears it.
	SetEffectiveAlias(ctx context.Context, ns, model, alias string, version int64) error
	DeleteAlias(ctx context.Context, ns, model, alias string) error

	// BlobRefs counts versions (in any namespace) whose artifact is sha256.
	BlobRefs(ctx context.Context, sha256 string) (int, error)
	// ReferencedBlobs returns every sha256 some version points to.
	ReferencedBlobs(ctx context.Context) (map[string]struct{}, error)

	// Atomic runs fn in one write transaction. Every call of the store made with
	// the ctx fn receives joins it (reads see its writes), and so does every other
	// store sharing the database (the resources and the audit log): all of it
	// commits when fn returns nil, none of it when fn fails or panics. A call
	// that fails inside it undoes only its own writes (a savepoint), as does a
	// nested Atomic. Atomic transactions are serializable: they behave as if run
	// one at a time (SQLite has one writer; PostgreSQL would take a
	// transaction-scoped lock), so a check made inside one still holds when it
	// commits. The ctx is for one goroutine at a time.
	Atomic(ctx context.Context, fn func(ctx context.Context) error) error

	Close() error
}

// CostStore is a Store that also remembers what loading an artifact costs in
// memory, per runtime (format and library version), so that the serving layer
// measures each artifact once, not once per process. Optional: without it
// costs are measured again after a restart.
type CostStore interface {
	ArtifactCost(ctx context.Context, sha256, runtime string) (cost int64, ok bool, err error)
	SetArtifactCost(ctx context.Context, sha256, runtime string, cost int64) error
	DeleteArtifactCosts(ctx context.Context, sha256 string) error
}

// BlobInfo describes a stored artifact.
type BlobInfo struct {
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
}

// BlobStore keeps artifact bytes addressed by their sha256 (lowercase hex).
type BlobStore interface {
	// Put streams r to a temp file, hashing as it goes, then renames it into place.
	// If want is non-empty and the digest differs, nothing is kept (InvalidArgument).
	// A failed or cut write leaves nothing behind.
	Put(ctx context.Context, r io.Reader, want string) (BlobInfo, error)
	// Adopt stores the file at path as Put would, but moves it instead of copying
	// its bytes (a staged upload is already on disk). On success path is gone; on a
	// digest mismatch (InvalidArgument) or an early failure it is left in place.
	Adopt(ctx context.Context, path, want string) (BlobInfo, error)
	// Open returns the artifact for reading (NotFound if absent).
	Open(ctx context.Context, sha256 string) (io.ReadSeekCloser, BlobInfo, error)
	// Path returns the local file path of the artifact (for runtimes that load files).
	Path(sha256 string) string
	// Verify re-hashes the artifact; a mismatch is a FailedPrecondition "corrupt" error.
	Verify(ctx context.Context, sha256 string) error
	Stat(ctx context.Context, sha256 string) (BlobInfo, error)
	Delete(ctx context.Context, sha256 string) error
	// DeleteIfOlder removes the artifact unless it was stored or refreshed (by a
	// Put or Adopt of the same bytes) at or after cutoff, and reports whether it
	// did (NotFound if absent). A Put of the same bytes racing with it either
	// refreshes the blob before the check, which keeps it, or stores it anew.
	DeleteIfOlder(ctx context.Context, sha256 string, cutoff time.Time) (bool, error)
	List(ctx context.Context) ([]BlobInfo, error)
}
