package spec

import (
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/secrets"
)

// KindGitSource is the kind of a GitSource.
const KindGitSource = "GitSource"

// GitSource syncs the resources declared under a folder of a git repository:
// every pass fetches the ref, renders every resource under path, and applies
// all of them or none through the same engine as `nimbus apply`.
type GitSource struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata ObjectMeta       `json:"metadata" yaml:"metadata"`
	Spec     GitSourceSpec    `json:"spec" yaml:"spec"`
	Status   *GitSourceStatus `json:"status,omitempty" yaml:"status,omitempty"`
}

// GetKind implements Object.
func (*GitSource) GetKind() string { return KindGitSource }

// GetMeta implements Object.
func (g *GitSource) GetMeta() *ObjectMeta { return &g.Metadata }

// GitSource defaults.
const (
	DefaultGitInterval = 60 * time.Second
	// MinGitInterval keeps a typo from polling a remote many times a second.
	MinGitInterval = time.Second
)

// GitSourceSpec is what a GitSource declares.
type GitSourceSpec struct {
	// URL is the repository: https://host/repo.git (its host must pass the
	// server's egress rule), file:///path or /path (under --source-dir).
	URL string `json:"url" yaml:"url"`
	// Ref is a branch, a tag or a full commit hash ("" = the remote's
	// default branch).
	Ref string `json:"ref,omitempty" yaml:"ref,omitempty"`
	// Path is the folder inside the repository whose YAML files (recursively)
	// declare the resources ("" = the whole repository).
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
	// Interval is how often the remote is polled (default 60s).
	Interval *registry.Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	// Prune deletes resources this source owns that the repository no longer
	// declares (default true).
	Prune *bool `json:"prune,omitempty" yaml:"prune,omitempty"`
	// SelfHeal reverts changes made through the API or CLI to resources this
	// source owns on the next pass (default false: they show as drift).
	SelfHeal *bool `json:"selfHeal,omitempty" yaml:"selfHeal,omitempty"`
	// LockImperative refuses API and CLI changes to resources this source owns
	// (default false).
	LockImperative *bool `json:"lockImperative,omitempty" yaml:"lockImperative,omitempty"`
	// AllowEmpty lets a render that finds no resources prune everything the
	// source owns (default false: such a render fails, as Argo CD does).
	AllowEmpty *bool `json:"allowEmpty,omitempty" yaml:"allowEmpty,omitempty"`
	// TargetNamespaces are the namespaces besides its own the source may write
	// into.
	TargetNamespaces []string `json:"targetNamespaces,omitempty" yaml:"targetNamespaces,omitempty"`
	// Auth authenticates to an https:// remote with a token (sent as HTTP basic
	// auth, as git hosts accept).
	Auth *SourceAuth `json:"auth,omitempty" yaml:"auth,omitempty"`
	// Webhook lets a git host trigger a sync with a signed request.
	Webhook *GitWebhook `json:"webhook,omitempty" yaml:"webhook,omitempty"`
}

// GitWebhook names the HMAC-SHA256 secret a git host signs its push events
// with (the X-Hub-Signature-256 header).
type GitWebhook struct {
	SecretFrom secrets.Ref `json:"secretFrom" yaml:"secretFrom"`
}

// IntervalOrDefault is the poll interval.
func (s GitSourceSpec) IntervalOrDefault() time.Duration {
	if s.Interval == nil {
		return DefaultGitInterval
	}
	return s.Interval.D()
}

// Flag is the value of an optional boolean, def when unset.
func Flag(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// Sync states of a GitSource and of each resource it declares.
const (
	SyncSynced    = "Synced"
	SyncOutOfSync = "OutOfSync"
	SyncFailed    = "Failed"
	SyncPruned    = "Pruned"
	SyncConflict  = "Conflict"
)

// GitSourceStatus is written by the server.
type GitSourceStatus struct {
	ObservedGeneration int64       `json:"observedGeneration,omitempty" yaml:"observedGeneration,omitempty"`
	Conditions         []Condition `json:"conditions,omitempty" yaml:"conditions,omitempty"`
	GitSyncStatus      `json:",inline" yaml:",inline"`
}

// GitSyncStatus is a GitSource's own status fields (stored as the status's
// details).
type GitSyncStatus struct {
	// Sync is Synced, OutOfSync (live differs from the repo) or Failed.
	Sync string `json:"sync,omitempty" yaml:"sync,omitempty"`
	// SyncedCommit is the last commit applied in full.
	SyncedCommit string `json:"syncedCommit,omitempty" yaml:"syncedCommit,omitempty"`
	// SyncedGeneration is the GitSource's generation SyncedCommit was
	// applied with (observedGeneration also moves on a failed pass).
	SyncedGeneration int64 `json:"syncedGeneration,omitempty" yaml:"syncedGeneration,omitempty"`
	// LastAttemptedCommit is the last commit a sync was tried with.
	LastAttemptedCommit string     `json:"lastAttemptedCommit,omitempty" yaml:"lastAttemptedCommit,omitempty"`
	LastSyncTime        *time.Time `json:"lastSyncTime,omitempty" yaml:"lastSyncTime,omitempty"`
	LastAttemptTime     *time.Time `json:"lastAttemptTime,omitempty" yaml:"lastAttemptTime,omitempty"`
	// Reason is why the last pass failed (FetchFailed, SyncFailed,
	// EmptyRender, IdentityInvalid...), "" when it did not.
	Reason string `json:"reason,omitempty" yaml:"reason,omitempty"`
	// Message says what the last pass did or why it failed.
	Message string `json:"message,omitempty" yaml:"message,omitempty"`
	// Errors are the problems of the last attempted commit, with file, line
	// and field.
	Errors []FieldError `json:"errors,omitempty" yaml:"errors,omitempty"`
	// Resources are the declared resources and how each compares with what
	// is live.
	Resources []SyncedResource `json:"resources,omitempty" yaml:"resources,omitempty"`
	// AppliedBy is the identity that last applied this GitSource: every sync
	// is authorized as it.
	AppliedBy string `json:"appliedBy,omitempty" yaml:"appliedBy,omitempty"`
}

// SyncedResource is one resource a GitSource declares (or pruned).
type SyncedResource struct {
	Kind      string `json:"kind" yaml:"kind"`
	Namespace string `json:"namespace" yaml:"namespace"`
	Name      string `json:"name" yaml:"name"`
	// State is Synced, OutOfSync, Pruned or Conflict.
	State string `json:"state" yaml:"state"`
	// Diff is what differs, live against the repository, when OutOfSync.
	Diff    string `json:"diff,omitempty" yaml:"diff,omitempty"`
	Message string `json:"message,omitempty" yaml:"message,omitempty"`
}

// OwnerRef names the GitSource that owns what an apply writes.
type OwnerRef struct {
	Namespace, Name string
}

// ManagedBy is the metadata.managedBy a resource in namespace ns owned by o
// carries: "gitsource/NAME" in the source's own namespace,
// "gitsource/NS/NAME" in another (a name alone would be ambiguous there).
func ManagedBy(o OwnerRef, ns string) string {
	if ns == o.Namespace {
		return "gitsource/" + o.Name
	}
	return "gitsource/" + o.Namespace + "/" + o.Name
}

// OwnerOf parses a metadata.managedBy value written in namespace ns (ok
// false: not a GitSource's).
func OwnerOf(managedBy, ns string) (OwnerRef, bool) {
	rest, ok := strings.CutPrefix(managedBy, "gitsource/")
	if !ok || rest == "" {
		return OwnerRef{}, false
	}
	if sns, name, two := strings.Cut(rest, "/"); two {
		return OwnerRef{Namespace: sns, Name: name}, name != ""
	}
	return OwnerRef{Namespace: ns, Name: rest}, true
}
