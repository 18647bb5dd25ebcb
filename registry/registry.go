package registry

import (
	"context"
	"io"
	"log/slog"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
)

// Registry combines metadata, artifacts and format inspectors into the registry's
// operations. Handlers and the serving layer use it; nothing else touches Store.
type Registry struct {
	store      Store
	blobs      BlobStore
	inspectors map[string]runtime.Inspector // by format
	log        *slog.Logger
}

// New builds a Registry. inspectors maps a format name ("onnx") to its Inspector.
func New(store Store, blobs BlobStore, inspectors map[string]runtime.Inspector, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	return &Registry{store: store, blobs: blobs, inspectors: inspectors, log: log}
}

// Store returns the underlying metadata store.
func (r *Registry) Store() Store { return r.store }

// Blobs returns the underlying artifact store.
func (r *Registry) Blobs() BlobStore { return r.blobs }

// CreateVersionRequest declares a new version from an already stored blob.
type CreateVersionRequest struct {
	Namespace   string            `json:"-"`
	Model       string            `json:"-"`
	Version     int64             `json:"version,omitempty"` // 0: next number
	Format      string            `json:"format,omitempty"`  // default "onnx"
	SHA256      string            `json:"sha256"`
	Description string            `json:"description,omitempty"`
	Source      string            `json:"source,omitempty"`
	Lineage     map[string]string `json:"lineage,omitempty"`
	Aliases     []string          `json:"aliases,omitempty"` // set after creation
	Serving     *ServingConfig    `json:"serving,omitempty"`
}

// PutBlob stores artifact bytes (see BlobStore.Put).
func (r *Registry) PutBlob(ctx context.Context, body io.Reader, want string) (BlobInfo, error) {
	return BlobInfo{}, errs.New(errs.Unimplemented, "not implemented")
}

// CreateVersion validates names, verifies the blob exists and matches, inspects it
// with the format's Inspector (recording the signature; an invalid artifact is
// InvalidArgument and creates nothing), creates the version and sets aliases.
func (r *Registry) CreateVersion(ctx context.Context, req CreateVersionRequest) (Version, error) {
	return Version{}, errs.New(errs.Unimplemented, "not implemented")
}

// Resolve maps a version reference to a version: "" means the champion alias if set,
// else the latest version; digits mean that version; anything else is an alias name.
func (r *Registry) Resolve(ctx context.Context, ns, model, ref string) (Version, error) {
	return Version{}, errs.New(errs.Unimplemented, "not implemented")
}

// DeleteVersion deletes a version; refused (Conflict, naming the aliases) while an
// alias references it, unless force. Unreferenced blobs are collected afterwards.
func (r *Registry) DeleteVersion(ctx context.Context, ns, model string, version int64, force bool) error {
	return errs.New(errs.Unimplemented, "not implemented")
}

// DeleteModel deletes a model with all versions; refused while any alias exists unless force.
func (r *Registry) DeleteModel(ctx context.Context, ns, model string, force bool) error {
	return errs.New(errs.Unimplemented, "not implemented")
}

// GC deletes blobs no version references, skipping blobs younger than the grace
// period (an upload may be about to create a version). It returns what it removed.
func (r *Registry) GC(ctx context.Context) ([]BlobInfo, error) {
	return nil, errs.New(errs.Unimplemented, "not implemented")
}

// GetModel returns a model with its aliases.
func (r *Registry) GetModel(ctx context.Context, ns, name string) (Model, error) {
	return Model{}, errs.New(errs.Unimplemented, "not implemented")
}

// ListModels pages through a namespace's models by name.
func (r *Registry) ListModels(ctx context.Context, ns string, opt ListOptions) (ModelPage, error) {
	return ModelPage{}, errs.New(errs.Unimplemented, "not implemented")
}

// GetVersion returns one version by number.
func (r *Registry) GetVersion(ctx context.Context, ns, model string, version int64) (Version, error) {
	return Version{}, errs.New(errs.Unimplemented, "not implemented")
}

// ListVersions returns a model's versions, oldest first.
func (r *Registry) ListVersions(ctx context.Context, ns, model string) ([]Version, error) {
	return nil, errs.New(errs.Unimplemented, "not implemented")
}

// SetAlias points alias at version (validated: not all digits, DNS-label-like).
func (r *Registry) SetAlias(ctx context.Context, ns, model, alias string, version int64) error {
	return errs.New(errs.Unimplemented, "not implemented")
}

// DeleteAlias removes an alias.
func (r *Registry) DeleteAlias(ctx context.Context, ns, model, alias string) error {
	return errs.New(errs.Unimplemented, "not implemented")
}

// SetModelServing replaces a model's serving settings (validated).
func (r *Registry) SetModelServing(ctx context.Context, ns, model string, s ServingConfig) (Model, error) {
	return Model{}, errs.New(errs.Unimplemented, "not implemented")
}

// SetVersionServing sets (or with nil clears) a version's serving override.
func (r *Registry) SetVersionServing(ctx context.Context, ns, model string, version int64, s *ServingConfig) error {
	return errs.New(errs.Unimplemented, "not implemented")
}

// UpdateModel changes a model's description and labels.
func (r *Registry) UpdateModel(ctx context.Context, m Model) (Model, error) {
	return Model{}, errs.New(errs.Unimplemented, "not implemented")
}
