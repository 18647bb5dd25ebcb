package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/tensor"
)

// DefaultFormat is the artifact format of a version that names none.
const DefaultFormat = "onnx"

// DefaultGCGrace is how old an unreferenced blob must be before GC deletes it: an
// upload is referenced only when the client's create-version call follows it.
const DefaultGCGrace = 10 * time.Minute

// Registry combines metadata, artifacts and format inspectors into the registry's
// operations. Handlers and the serving layer use it; nothing else touches Store.
type Registry struct {
	store      Store
	blobs      BlobStore
	inspectors map[string]runtime.Inspector // by format
	log        *slog.Logger
	gcGrace    atomic.Int64 // time.Duration
	observers  []func(Change)
	guards     []DeleteGuard
	// holds says whether a rollout moves an alias's effective version (see
	// SetAliasHold); nil: none does, the effective version follows at once.
	holds AliasHold
	audit AuditLog

	// blobMu orders blob deletion against version creation: CreateVersion (and
	// an Atomic transaction, which may create versions) holds it shared from "the
	// blob exists" until the version referencing it is committed; anything that
	// deletes blobs (GC, collecting after a delete) holds it exclusively from "no
	// version references it" until the file is gone. Without it a push could see
	// its blob, lose it to a concurrent GC and record a version pointing at
	// nothing. Nothing waits for blobMu while holding the store's write
	// transaction, so the two cannot deadlock.
	blobMu sync.RWMutex
}

// New builds a Registry. inspectors maps a format name ("onnx") to its Inspector.
func New(store Store, blobs BlobStore, inspectors map[string]runtime.Inspector, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.Default()
	}
	r := &Registry{store: store, blobs: blobs, inspectors: inspectors, log: log}
	r.gcGrace.Store(int64(DefaultGCGrace))
	return r
}

// SetGCGrace sets how old an unreferenced blob must be before GC removes it
// (DefaultGCGrace unless set; negative means 0).
func (r *Registry) SetGCGrace(d time.Duration) { r.gcGrace.Store(int64(max(d, 0))) }

// GCGrace returns the current grace period.
func (r *Registry) GCGrace() time.Duration { return time.Duration(r.gcGrace.Load()) }

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
	info, err := r.blobs.Put(ctx, body, want)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("registry: put blob: %w", err)
	}
	return info, nil
}

// AdoptBlob stores the file at path as an artifact, moving rather than copying it
// (see BlobStore.Adopt).
func (r *Registry) AdoptBlob(ctx context.Context, path, want string) (BlobInfo, error) {
	info, err := r.blobs.Adopt(ctx, path, want)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("registry: adopt blob: %w", err)
	}
	return info, nil
}

// CreateVersion validates names, verifies the blob exists and matches, inspects it
// with the format's Inspector (recording the signature; an invalid artifact is
// InvalidArgument and creates nothing), creates the version and sets aliases.
//
// Verifying re-hashes the artifact, so a blob damaged on disk since upload is
// caught at push time rather than when a server first loads it.
func (r *Registry) CreateVersion(ctx context.Context, req CreateVersionRequest) (Version, error) {
	const op = "registry: create version: %w"
	ns, err := checkModelRef(req.Namespace, req.Model)
	if err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	if req.Version != 0 { // 0: the next number
		if err := ValidateVersion(req.Version); err != nil {
			return Version{}, fmt.Errorf(op, err)
		}
	}
	format := req.Format
	if format == "" {
		format = DefaultFormat
	}
	insp, ok := r.inspectors[format]
	if !ok {
		return Version{}, fmt.Errorf(op, errs.New(errs.InvalidArgument, "format %q: unknown; known formats: %s",
			format, joinList(slices.Sorted(maps.Keys(r.inspectors)))).WithField("format"))
	}
	if err := ValidateDigest(req.SHA256); err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	var aliases []string
	for _, a := range req.Aliases {
		if err := ValidateAlias(a); err != nil {
			return Version{}, fmt.Errorf(op, err)
		}
		if !slices.Contains(aliases, a) {
			aliases = append(aliases, a)
		}
	}
	if req.Serving != nil {
		if err := req.Serving.Validate(); err != nil {
			return Version{}, fmt.Errorf(op, err)
		}
	}

	if r.scopeOf(ctx) == nil { // else the enclosing Atomic holds it
		r.blobMu.RLock()
		defer r.blobMu.RUnlock()
	}
	info, err := r.blobs.Stat(ctx, req.SHA256)
	if errors.Is(err, errs.ErrNotFound) {
		return Version{}, fmt.Errorf(op, errs.New(errs.NotFound, "blob sha256:%s not found; upload it first", req.SHA256).WithField("sha256"))
	}
	if err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	if err := r.blobs.Verify(ctx, req.SHA256); err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	sig, err := r.inspect(ctx, insp, format, req.SHA256)
	if err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	// The version and its aliases are one transaction: a failed alias leaves
	// no version behind for the client to push again.
	var v Version
	err = r.atomic(ctx, func(ctx context.Context) error {
		var err error
		v, err = r.store.CreateVersion(ctx, Version{
			Namespace:   ns,
			Model:       req.Model,
			Version:     req.Version,
			Format:      format,
			SHA256:      req.SHA256,
			Size:        info.Size,
			Signature:   sig,
			Description: req.Description,
			Source:      req.Source,
			Lineage:     req.Lineage,
			Serving:     req.Serving,
			CreatedAt:   time.Now(),
		})
		if err != nil {
			return err
		}
		for _, a := range aliases {
			if err := r.store.SetAlias(ctx, ns, v.Model, a, v.Version); err != nil {
				return err
			}
		}
		r.changed(ctx, Change{Kind: VersionCreated, Namespace: ns, Model: v.Model, Version: v.Version})
		return r.record(ctx, modelEvent(audit.ActionCreate, ns, v.Model, "create version", req))
	})
	if err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	r.log.Info("version created", "namespace", ns, "model", v.Model, "version", v.Version, "sha256", v.SHA256)
	return v, nil
}

// Resolve maps a version reference to a version: "" means the champion alias if set,
// else the latest version; digits mean that version; anything else is an alias name.
// "Latest" is the highest existing version (Model.LatestVersion may name a deleted one).
func (r *Registry) Resolve(ctx context.Context, ns, model, ref string) (Version, error) {
	const op = "registry: resolve: %w"
	ns, err := checkModelRef(ns, model)
	if err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	if allDigits(ref) {
		n, err := ParseVersion(ref)
		if err != nil {
			return Version{}, fmt.Errorf(op, err)
		}
		v, err := r.store.GetVersion(ctx, ns, model, n)
		if err != nil {
			return Version{}, fmt.Errorf(op, err)
		}
		return v, nil
	}
	if ref != "" {
		if err := ValidateAlias(ref); err != nil {
			return Version{}, fmt.Errorf(op, err)
		}
	}
	m, err := r.store.GetModel(ctx, ns, model)
	if err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	alias := ref
	if alias == "" {
		alias = ChampionAlias
	}
	n, ok := m.EffectiveVersion(alias)
	switch {
	case ok:
	case ref == "":
		return r.latest(ctx, m)
	default:
		existing := "it has no aliases"
		if len(m.Aliases) > 0 {
			existing = "existing aliases: " + joinList(slices.Sorted(maps.Keys(m.Aliases)))
		}
		return Version{}, fmt.Errorf(op, errs.New(errs.NotFound, "model %s has no alias %q; %s", model, ref, existing).WithField("alias"))
	}
	v, err := r.store.GetVersion(ctx, ns, model, n)
	if err != nil {
		return Version{}, fmt.Errorf(op, err)
	}
	return v, nil
}

func (r *Registry) latest(ctx context.Context, m Model) (Version, error) {
	v, err := r.store.GetVersion(ctx, m.Namespace, m.Name, m.LatestVersion)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, errs.ErrNotFound) && m.LatestVersion != 0 {
		return Version{}, fmt.Errorf("registry: resolve: %w", err)
	}
	// The highest number was deleted; fall back to the highest that remains.
	vs, err := r.store.ListVersions(ctx, m.Namespace, m.Name)
	if err != nil {
		return Version{}, fmt.Errorf("registry: resolve: %w", err)
	}
	if len(vs) == 0 {
		return Version{}, fmt.Errorf("registry: resolve: %w", errs.New(errs.NotFound, "model %s has no versions", m.Name))
	}
	return vs[len(vs)-1], nil
}

// DeleteVersion deletes a version; refused (Conflict, naming the aliases) while an
// alias references it, unless force, and when a delete guard refuses. The store
// checks the aliases, and the guards run, in the same transaction as the delete.
// Unreferenced blobs past the GC grace are collected afterwards.
func (r *Registry) DeleteVersion(ctx context.Context, ns, model string, version int64, force bool) error {
	const op = "registry: delete version: %w"
	ns, err := checkModelRef(ns, model)
	if err != nil {
		return fmt.Errorf(op, err)
	}
	if err := ValidateVersion(version); err != nil {
		return fmt.Errorf(op, err)
	}
	err = r.atomic(ctx, func(ctx context.Context) error {
		v, err := r.store.GetVersion(ctx, ns, model, version)
		if err != nil {
			return err
		}
		// Listed in the delete's transaction, so the guards' view of what is
		// left holds until it commits.
		vs, err := r.store.ListVersions(ctx, ns, model)
		if err != nil {
			return err
		}
		intent := DeleteIntent{Namespace: ns, Model: model, Version: version, LastVersion: len(vs) == 1}
		if force { // the aliases pointing at it go too
			m, err := r.store.GetModel(ctx, ns, model)
			if err != nil {
				return err
			}
			intent.Aliases = aliasesOf(m, version)
		}
		if err := r.guard(ctx, intent); err != nil {
			return err
		}
		if err := r.store.DeleteVersion(ctx, ns, model, version, force); err != nil {
			return err
		}
		r.changed(ctx, Change{Kind: VersionDeleted, Namespace: ns, Model: model, Version: version})
		r.collectLater(ctx, v.SHA256)
		return r.record(ctx, modelEvent(audit.ActionDelete, ns, model, forced(fmt.Sprintf("delete version %d", version), force), nil))
	})
	if err != nil {
		return fmt.Errorf(op, err)
	}
	r.log.Info("version deleted", "namespace", ns, "model", model, "version", version, "force", force)
	return nil
}

// DeleteModel deletes a model with all versions; refused while any alias exists
// unless force, and when a delete guard refuses (in the delete's transaction).
func (r *Registry) DeleteModel(ctx context.Context, ns, model string, force bool) error {
	const op = "registry: delete model: %w"
	ns, err := checkModelRef(ns, model)
	if err != nil {
		return fmt.Errorf(op, err)
	}
	var n int
	err = r.atomic(ctx, func(ctx context.Context) error {
		// Listed in the delete's transaction: exactly the versions it removes.
		vs, err := r.store.ListVersions(ctx, ns, model)
		if err != nil {
			return err
		}
		m, err := r.store.GetModel(ctx, ns, model)
		if err != nil {
			return err
		}
		if err := r.guard(ctx, DeleteIntent{Namespace: ns, Model: model, WholeModel: true, Aliases: aliasesOf(m, 0)}); err != nil {
			return err
		}
		if err := r.store.DeleteModel(ctx, ns, model, force); err != nil {
			return err
		}
		n = len(vs)
		r.changed(ctx, Change{Kind: ModelDeleted, Namespace: ns, Model: model})
		for _, v := range vs {
			r.collectLater(ctx, v.SHA256)
		}
		return r.record(ctx, modelEvent(audit.ActionDelete, ns, model, forced("delete model", force), nil))
	})
	if err != nil {
		return fmt.Errorf(op, err)
	}
	r.log.Info("model deleted", "namespace", ns, "model", model, "versions", n)
	return nil
}

// collect deletes the given blobs if no version references them any more and
// they are older than the grace period, as GC does: the same bytes may have
// just been uploaded again for a version about to be created. A younger blob,
// or a failure, is left for a later GC: the metadata change already happened.
func (r *Registry) collect(ctx context.Context, shas ...string) {
	r.blobMu.Lock()
	defer r.blobMu.Unlock()
	cutoff := time.Now().Add(-r.GCGrace())
	for _, sha := range shas {
		n, err := r.store.BlobRefs(ctx, sha)
		if err != nil {
			r.log.Warn("blob left for GC", "sha256", sha, "err", err)
			continue
		}
		if n > 0 {
			continue
		}
		deleted, err := r.blobs.DeleteIfOlder(ctx, sha, cutoff)
		switch {
		case err != nil && !errors.Is(err, errs.ErrNotFound):
			r.log.Warn("blob left for GC", "sha256", sha, "err", err)
		case deleted:
			r.log.Info("blob deleted", "sha256", sha)
		case err == nil:
			r.log.Debug("blob left for GC: younger than the grace period", "sha256", sha)
		}
	}
}

// ArtifactCost returns the measured load cost of sha256 under runtime, if the
// store keeps costs (CostStore) and has one.
func (r *Registry) ArtifactCost(ctx context.Context, sha256, runtime string) (int64, bool, error) {
	cs, ok := r.store.(CostStore)
	if !ok {
		return 0, false, nil
	}
	c, found, err := cs.ArtifactCost(ctx, sha256, runtime)
	if err != nil {
		return 0, false, fmt.Errorf("registry: artifact cost: %w", err)
	}
	return c, found, nil
}

// SetArtifactCost records the measured load cost of sha256 under runtime
// (nothing, if the store keeps no costs).
func (r *Registry) SetArtifactCost(ctx context.Context, sha256, runtime string, cost int64) error {
	cs, ok := r.store.(CostStore)
	if !ok {
		return nil
	}
	if err := cs.SetArtifactCost(ctx, sha256, runtime, cost); err != nil {
		return fmt.Errorf("registry: set artifact cost: %w", err)
	}
	return nil
}

// GC deletes blobs no version references, skipping blobs younger than the grace
// period (an upload may be about to create a version). It returns what it removed.
func (r *Registry) GC(ctx context.Context) ([]BlobInfo, error) {
	r.blobMu.Lock()
	defer r.blobMu.Unlock()
	refs, err := r.store.ReferencedBlobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry: gc: %w", err)
	}
	all, err := r.blobs.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("registry: gc: %w", err)
	}
	cutoff := time.Now().Add(-r.GCGrace())
	removed := []BlobInfo{}
	for _, b := range all {
		if _, ok := refs[b.SHA256]; ok || b.ModTime.After(cutoff) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("registry: gc: %w", err)
		}
		// The listing may be stale by now: an upload of the same bytes since
		// refreshed the blob, and DeleteIfOlder checks again.
		deleted, err := r.blobs.DeleteIfOlder(ctx, b.SHA256, cutoff)
		if err != nil && !errors.Is(err, errs.ErrNotFound) {
			return removed, fmt.Errorf("registry: gc: %w", err)
		}
		if deleted {
			removed = append(removed, b)
			if cs, ok := r.store.(CostStore); ok {
				if err := cs.DeleteArtifactCosts(ctx, b.SHA256); err != nil {
					r.log.Warn("gc: forgetting the load costs of a collected blob", "sha256", b.SHA256, "err", err)
				}
			}
		}
	}
	if len(removed) > 0 {
		r.log.Info("gc removed blobs", "count", len(removed))
	}
	// Blob files are not transactional: the event follows the deletes.
	ev := audit.Event{Action: audit.ActionDelete, Kind: auditBlob, Summary: "collect unreferenced blobs"}
	if len(removed) > 0 {
		if b, err := json.Marshal(removed); err == nil {
			ev.Diff = string(b)
		}
	}
	if err := r.record(ctx, ev); err != nil {
		return removed, fmt.Errorf("registry: gc: %d blobs removed, but %w", len(removed), err)
	}
	return removed, nil
}

// GetModel returns a model with its aliases.
func (r *Registry) GetModel(ctx context.Context, ns, name string) (Model, error) {
	ns, err := checkModelRef(ns, name)
	if err != nil {
		return Model{}, fmt.Errorf("registry: get model: %w", err)
	}
	m, err := r.store.GetModel(ctx, ns, name)
	if err != nil {
		return Model{}, fmt.Errorf("registry: get model: %w", err)
	}
	return m, nil
}

// ListModels pages through a namespace's models by name.
func (r *Registry) ListModels(ctx context.Context, ns string, opt ListOptions) (ModelPage, error) {
	ns = namespaceOr(ns)
	if err := ValidateNamespace(ns); err != nil {
		return ModelPage{}, fmt.Errorf("registry: list models: %w", err)
	}
	if opt.Limit < 0 {
		return ModelPage{}, fmt.Errorf("registry: list models: %w",
			errs.New(errs.InvalidArgument, "limit %d: must not be negative", opt.Limit).WithField("limit"))
	}
	p, err := r.store.ListModels(ctx, ns, opt)
	if err != nil {
		return ModelPage{}, fmt.Errorf("registry: list models: %w", err)
	}
	return p, nil
}

// GetVersion returns one version by number.
func (r *Registry) GetVersion(ctx context.Context, ns, model string, version int64) (Version, error) {
	ns, err := checkModelRef(ns, model)
	if err == nil {
		err = ValidateVersion(version)
	}
	if err != nil {
		return Version{}, fmt.Errorf("registry: get version: %w", err)
	}
	v, err := r.store.GetVersion(ctx, ns, model, version)
	if err != nil {
		return Version{}, fmt.Errorf("registry: get version: %w", err)
	}
	return v, nil
}

// ListVersions returns a model's versions, oldest first.
func (r *Registry) ListVersions(ctx context.Context, ns, model string) ([]Version, error) {
	ns, err := checkModelRef(ns, model)
	if err != nil {
		return nil, fmt.Errorf("registry: list versions: %w", err)
	}
	vs, err := r.store.ListVersions(ctx, ns, model)
	if err != nil {
		return nil, fmt.Errorf("registry: list versions: %w", err)
	}
	return vs, nil
}

// SetAlias points alias at version (validated: not all digits, DNS-label-like).
func (r *Registry) SetAlias(ctx context.Context, ns, model, alias string, version int64) error {
	return r.moveAlias(ctx, ns, model, alias, version, aliasMove{op: "set alias", summary: "set alias ", logged: "alias set",
		set: func(ctx context.Context, ns string) func(context.Context, string, string, string, int64) error {
			if r.holds != nil && r.holds(ctx, ns, model, alias) {
				return r.store.SetAliasHeld // a rollout moves the effective version
			}
			return r.store.SetAlias
		}})
}

// aliasMove is what SetAlias and SetEffectiveAlias differ in.
type aliasMove struct {
	op, summary, logged string
	// set picks the store call, inside the transaction.
	set func(ctx context.Context, ns string) func(ctx context.Context, ns, model, alias string, version int64) error
}

// moveAlias validates, then moves alias in one transaction with its change
// notification and audit event.
func (r *Registry) moveAlias(ctx context.Context, ns, model, alias string, version int64, m aliasMove) error {
	ns, err := checkModelRef(ns, model)
	if err == nil {
		err = ValidateAlias(alias)
	}
	if err == nil {
		err = ValidateVersion(version)
	}
	if err == nil {
		err = r.atomic(ctx, func(ctx context.Context) error {
			if err := m.set(ctx, ns)(ctx, ns, model, alias, version); err != nil {
				return err
			}
			r.changed(ctx, Change{Kind: AliasChanged, Namespace: ns, Model: model, Version: version})
			return r.record(ctx, modelEvent(audit.ActionUpdate, ns, model, m.summary+alias, struct {
				Version int64 `json:"version"`
			}{version}))
		})
	}
	if err != nil {
		return fmt.Errorf("registry: %s: %w", m.op, err)
	}
	r.log.Info(m.logged, "namespace", ns, "model", model, "alias", alias, "version", version)
	return nil
}

// DeleteAlias removes an alias, unless a delete guard refuses (in the delete's
// transaction).
func (r *Registry) DeleteAlias(ctx context.Context, ns, model, alias string) error {
	ns, err := checkModelRef(ns, model)
	if err == nil {
		err = ValidateAlias(alias)
	}
	if err == nil {
		err = r.atomic(ctx, func(ctx context.Context) error {
			// Only an alias that exists is guarded: a missing one is NotFound.
			m, err := r.store.GetModel(ctx, ns, model)
			if err != nil {
				return err
			}
			if _, ok := m.Aliases[alias]; ok {
				if err := r.guard(ctx, DeleteIntent{Namespace: ns, Model: model, Aliases: []string{alias}}); err != nil {
					return err
				}
			}
			if err := r.store.DeleteAlias(ctx, ns, model, alias); err != nil {
				return err
			}
			r.changed(ctx, Change{Kind: AliasChanged, Namespace: ns, Model: model})
			return r.record(ctx, modelEvent(audit.ActionDelete, ns, model, "delete alias "+alias, nil))
		})
	}
	if err != nil {
		return fmt.Errorf("registry: delete alias: %w", err)
	}
	r.log.Info("alias deleted", "namespace", ns, "model", model, "alias", alias)
	return nil
}

// SetModelServing replaces a model's serving settings (validated).
func (r *Registry) SetModelServing(ctx context.Context, ns, model string, s ServingConfig) (Model, error) {
	ns, err := checkModelRef(ns, model)
	if err == nil {
		err = s.Validate()
	}
	if err != nil {
		return Model{}, fmt.Errorf("registry: set model serving: %w", err)
	}
	var m Model
	err = r.atomic(ctx, func(ctx context.Context) error {
		if s.BatchSize() > 1 || (s.Warmup != nil && len(s.Warmup.Inputs) > 0) {
			vs, err := r.store.ListVersions(ctx, ns, model)
			if err != nil {
				return err
			}
			for _, v := range vs {
				if s.BatchSize() > 1 && (v.Serving == nil || v.Serving.Batching == nil) { // else the version's own override decides
					if err := CheckBatchable(v.Signature); err != nil {
						return bad("serving.batching.maxBatchSize",
							"version %d cannot batch: %v; leave batching off for this model or override it on that version", v.Version, err)
					}
				}
				if v.Serving == nil || v.Serving.Warmup == nil {
					if err := CheckWarmupFits(s.Warmup, v.Signature); err != nil {
						return bad("serving.warmup.inputs", "version %d: %v; give that version its own warm-up", v.Version, err)
					}
				}
			}
		}
		var err error
		if m, err = r.updateModel(ctx, ns, model, func(m *Model) { m.Serving = s }); err != nil {
			return err
		}
		r.changed(ctx, Change{Kind: ServingChanged, Namespace: ns, Model: model})
		return r.record(ctx, modelEvent(audit.ActionUpdate, ns, model, "set serving settings", s))
	})
	if err != nil {
		return Model{}, fmt.Errorf("registry: set model serving: %w", err)
	}
	return m, nil
}

// SetVersionServing sets (or with nil clears) a version's serving override.
func (r *Registry) SetVersionServing(ctx context.Context, ns, model string, version int64, s *ServingConfig) error {
	ns, err := checkModelRef(ns, model)
	if err == nil {
		err = ValidateVersion(version)
	}
	if err == nil && s != nil {
		err = s.Validate()
	}
	if err == nil {
		err = r.atomic(ctx, func(ctx context.Context) error {
			if s != nil && (s.BatchSize() > 1 || (s.Warmup != nil && len(s.Warmup.Inputs) > 0)) {
				v, err := r.store.GetVersion(ctx, ns, model, version)
				if err != nil {
					return err
				}
				if s.BatchSize() > 1 {
					if err := CheckBatchable(v.Signature); err != nil {
						return bad("serving.batching.maxBatchSize", "version %d cannot batch: %v", version, err)
					}
				}
				if err := CheckWarmupFits(s.Warmup, v.Signature); err != nil {
					return bad("serving.warmup.inputs", "version %d: %v", version, err)
				}
			}
			if err := r.store.SetVersionServing(ctx, ns, model, version, s); err != nil {
				return err
			}
			r.changed(ctx, Change{Kind: ServingChanged, Namespace: ns, Model: model, Version: version})
			ev := modelEvent(audit.ActionUpdate, ns, model, fmt.Sprintf("set serving settings of version %d", version), s)
			if s == nil {
				ev = modelEvent(audit.ActionDelete, ns, model, fmt.Sprintf("clear serving settings of version %d", version), nil)
			}
			return r.record(ctx, ev)
		})
	}
	if err != nil {
		return fmt.Errorf("registry: set version serving: %w", err)
	}
	return nil
}

// ModelPatch changes a model's description and labels. Nil fields stay as they
// are; a non-nil Labels replaces the whole label set (an empty map clears it).
type ModelPatch struct {
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// PatchModel applies p to the model as it is when the change commits: the read
// and the write share one transaction, so concurrent patches of different
// fields never undo each other.
func (r *Registry) PatchModel(ctx context.Context, ns, name string, p ModelPatch) (Model, error) {
	ns, err := checkModelRef(ns, name)
	if err == nil {
		err = validateLabels(p.Labels)
	}
	if err != nil {
		return Model{}, fmt.Errorf("registry: update model: %w", err)
	}
	var out Model
	err = r.atomic(ctx, func(ctx context.Context) error {
		var err error
		out, err = r.updateModel(ctx, ns, name, func(cur *Model) {
			if p.Description != nil {
				cur.Description = *p.Description
			}
			if p.Labels != nil {
				cur.Labels = p.Labels
			}
		})
		if err != nil {
			return err
		}
		r.changed(ctx, Change{Kind: ModelUpdated, Namespace: ns, Model: name})
		return r.record(ctx, modelEvent(audit.ActionUpdate, ns, name, "update description and labels", p))
	})
	if err != nil {
		return Model{}, fmt.Errorf("registry: update model: %w", err)
	}
	return out, nil
}

// updateModel applies change to the stored model. Store.UpdateModel writes every
// mutable field, so the read and the write share one transaction: concurrent
// partial updates are serialized and never undo each other.
func (r *Registry) updateModel(ctx context.Context, ns, name string, change func(*Model)) (Model, error) {
	var out Model
	err := r.atomic(ctx, func(ctx context.Context) error {
		cur, err := r.store.GetModel(ctx, ns, name)
		if err != nil {
			return err
		}
		change(&cur)
		out, err = r.store.UpdateModel(ctx, cur)
		return err
	})
	return out, err
}

func validateLabels(labels map[string]string) error {
	for k := range labels {
		if k == "" || len(k) > 253 {
			return errs.New(errs.InvalidArgument, "labels: key %q must be 1 to 253 characters", k).WithField("labels")
		}
	}
	return nil
}

// ModelAliasConflict is the Conflict a Store returns when DeleteModel without
// force finds aliases (sorted) on the model.
func ModelAliasConflict(model string, aliases []string) error {
	return errs.New(errs.Conflict, "model %s has aliases %s; remove them or use --force", model, joinList(aliases))
}

// AliasConflict is the Conflict a Store returns when DeleteVersion without force
// finds aliases (sorted) pointing at the version.
func AliasConflict(model string, version int64, aliases []string) error {
	what, them := "alias", "the alias"
	if len(aliases) > 1 {
		what, them = "aliases", "the aliases"
	}
	return errs.New(errs.Conflict, "version %d of model %s is referenced by %s %s; remove %s or use --force",
		version, model, what, joinList(aliases), them)
}

// InspectBlob verifies a stored artifact and reads its signature with the
// format's Inspector, without creating a version: apply checks declared versions
// (batchable signatures, valid artifacts) before it changes anything.
func (r *Registry) InspectBlob(ctx context.Context, format, sha256 string) (tensor.Signature, error) {
	const op = "registry: inspect blob: %w"
	if format == "" {
		format = DefaultFormat
	}
	insp, ok := r.inspectors[format]
	if !ok {
		return tensor.Signature{}, fmt.Errorf(op, errs.New(errs.InvalidArgument, "format %q: unknown; known formats: %s",
			format, joinList(slices.Sorted(maps.Keys(r.inspectors)))).WithField("format"))
	}
	if err := ValidateDigest(sha256); err != nil {
		return tensor.Signature{}, fmt.Errorf(op, err)
	}
	r.blobMu.RLock()
	defer r.blobMu.RUnlock()
	if err := r.blobs.Verify(ctx, sha256); err != nil {
		return tensor.Signature{}, fmt.Errorf(op, err)
	}
	sig, err := r.inspect(ctx, insp, format, sha256)
	if err != nil {
		return tensor.Signature{}, fmt.Errorf(op, err)
	}
	return sig, nil
}

// inspect reads a stored artifact's signature with insp, which reads only what
// it needs of the blob (memory stays bounded whatever its size). An artifact
// the inspector refuses (a classified error) is InvalidArgument; a failure to
// read it is the server's.
func (r *Registry) inspect(ctx context.Context, insp runtime.Inspector, format, sha256 string) (tensor.Signature, error) {
	f, info, err := r.blobs.Open(ctx, sha256)
	if err != nil {
		return tensor.Signature{}, err
	}
	defer f.Close()
	ra, ok := f.(io.ReaderAt)
	if !ok {
		return tensor.Signature{}, errors.New("the blob store cannot read at offsets (its Open must return an io.ReaderAt)")
	}
	sig, err := insp.Inspect(ra, info.Size)
	if _, refused := errors.AsType[*errs.Error](err); refused {
		return tensor.Signature{}, errs.Wrap(errs.InvalidArgument, err, "artifact is not a valid %s model", format)
	}
	if err != nil {
		return tensor.Signature{}, fmt.Errorf("inspect sha256:%s: %w", sha256, err)
	}
	return sig, nil
}
