// Package mgmttest provides an in-memory stand-in for the registry that the
// management API, the client and the CLI test against. It keeps the documented
// behaviour of *registry.Registry that callers rely on (error kinds, paging,
// alias checks, digest verification), nothing more.
package mgmttest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Registry is an in-memory registry. The zero value is not usable; call New.
type Registry struct {
	// Signature is recorded on every created version.
	Signature tensor.Signature
	// Now stamps creation times.
	Now func() time.Time

	mu       sync.Mutex
	models   map[string]*registry.Model // ns/name
	versions map[string][]registry.Version
	blobs    map[string][]byte
}

// New returns an empty registry whose versions get sig and whose clock is fixed.
func New(sig tensor.Signature) *Registry {
	return &Registry{
		Signature: sig,
		Now:       func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) },
		models:    map[string]*registry.Model{},
		versions:  map[string][]registry.Version{},
		blobs:     map[string][]byte{},
	}
}

var _ mgmt.Registry = (*Registry)(nil)

func key(ns, name string) string { return ns + "/" + name }

func (f *Registry) model(ns, name string) (*registry.Model, error) {
	m, ok := f.models[key(ns, name)]
	if !ok {
		return nil, errs.New(errs.NotFound, "model %q not found in namespace %q", name, ns)
	}
	return m, nil
}

func (f *Registry) version(ns, model string, v int64) (*registry.Version, error) {
	vs := f.versions[key(ns, model)]
	for i := range vs {
		if vs[i].Version == v {
			return &vs[i], nil
		}
	}
	return nil, errs.New(errs.NotFound, "version %d of model %q not found", v, model)
}

// GetModel implements mgmt.Registry.
func (f *Registry) GetModel(_ context.Context, ns, name string) (registry.Model, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.model(ns, name)
	if err != nil {
		return registry.Model{}, err
	}
	return *m, nil
}

// ListModels implements mgmt.Registry.
func (f *Registry) ListModels(_ context.Context, ns string, opt registry.ListOptions) (registry.ModelPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	limit := opt.Limit
	if limit == 0 {
		limit = registry.DefaultPageSize
	}
	var names []string
	for _, m := range f.models {
		if m.Namespace == ns && strings.HasPrefix(m.Name, opt.Prefix) && m.Name > opt.After {
			names = append(names, m.Name)
		}
	}
	sort.Strings(names)
	page := registry.ModelPage{Items: []registry.Model{}}
	for i, n := range names {
		if i == limit {
			page.Next = page.Items[limit-1].Name
			break
		}
		page.Items = append(page.Items, *f.models[key(ns, n)])
	}
	return page, nil
}

// PatchModel implements mgmt.Registry.
func (f *Registry) PatchModel(_ context.Context, ns, name string, p registry.ModelPatch) (registry.Model, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.model(ns, name)
	if err != nil {
		return registry.Model{}, err
	}
	if p.Description != nil {
		m.Description = *p.Description
	}
	if p.Labels != nil {
		m.Labels = p.Labels
	}
	m.UpdatedAt = f.Now()
	return *m, nil
}

// DeleteModel implements mgmt.Registry.
func (f *Registry) DeleteModel(_ context.Context, ns, name string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.model(ns, name)
	if err != nil {
		return err
	}
	if len(m.Aliases) > 0 && !force {
		return errs.New(errs.Conflict, "model %q has aliases; use force", name)
	}
	delete(f.models, key(ns, name))
	delete(f.versions, key(ns, name))
	return nil
}

// SetModelServing implements mgmt.Registry.
func (f *Registry) SetModelServing(_ context.Context, ns, name string, s registry.ServingConfig) (registry.Model, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.Threads < 0 || s.InterOpThreads < 0 {
		return registry.Model{}, errs.New(errs.InvalidArgument, "threads must not be negative").WithField("threads")
	}
	if err := s.Validate(); err != nil {
		return registry.Model{}, err
	}
	m, err := f.model(ns, name)
	if err != nil {
		return registry.Model{}, err
	}
	if s.BatchSize() > 1 {
		for _, v := range f.versions[key(ns, name)] {
			if v.Serving != nil && v.Serving.Batching != nil {
				continue // the version's own override decides for it
			}
			if err := registry.CheckBatchable(v.Signature); err != nil {
				return registry.Model{}, cannotBatch(v.Version, err,
					"; leave batching off for this model or override it on that version")
			}
		}
	}
	for _, v := range f.versions[key(ns, name)] {
		if v.Serving == nil || v.Serving.Warmup == nil {
			if err := registry.CheckWarmupFits(s.Warmup, v.Signature); err != nil {
				return registry.Model{}, errs.New(errs.InvalidArgument, "serving.warmup.inputs: version %d: %v; give that version its own warm-up", v.Version, err).WithField("serving.warmup.inputs")
			}
		}
	}
	m.Serving = s
	return *m, nil
}

// cannotBatch is the registry's error for batching a version whose signature
// cannot be batched.
func cannotBatch(v int64, err error, hint string) error {
	const field = "serving.batching.maxBatchSize"
	return errs.New(errs.InvalidArgument, "%s: version %d cannot batch: %v%s", field, v, err, hint).WithField(field)
}

// CreateVersion implements mgmt.Registry.
func (f *Registry) CreateVersion(_ context.Context, req registry.CreateVersionRequest) (registry.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := registry.ValidateModelName(req.Model); err != nil {
		return registry.Version{}, err
	}
	blob, ok := f.blobs[req.SHA256]
	if !ok {
		return registry.Version{}, errs.New(errs.InvalidArgument, "blob %q not found; upload it first", req.SHA256).WithField("sha256")
	}
	k := key(req.Namespace, req.Model)
	m, ok := f.models[k]
	if !ok {
		m = &registry.Model{Namespace: req.Namespace, Name: req.Model, CreatedAt: f.Now()}
		f.models[k] = m
	}
	v := req.Version
	if v == 0 {
		v = m.LatestVersion + 1
	} else if _, err := f.version(req.Namespace, req.Model, v); err == nil {
		return registry.Version{}, errs.New(errs.AlreadyExists, "version %d of model %q already exists", v, req.Model)
	}
	format := req.Format
	if format == "" {
		format = "onnx"
	}
	ver := registry.Version{
		Namespace: req.Namespace, Model: req.Model, Version: v, Format: format,
		SHA256: req.SHA256, Size: int64(len(blob)), Signature: f.Signature,
		Description: req.Description, Source: req.Source, Lineage: req.Lineage,
		Serving: req.Serving, CreatedAt: f.Now(),
	}
	f.versions[k] = append(f.versions[k], ver)
	m.LatestVersion = max(m.LatestVersion, v)
	m.UpdatedAt = f.Now()
	for _, a := range req.Aliases {
		if m.Aliases == nil {
			m.Aliases = map[string]int64{}
		}
		m.Aliases[a] = v
	}
	return ver, nil
}

// Resolve implements mgmt.Registry.
func (f *Registry) Resolve(_ context.Context, ns, model, ref string) (registry.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.model(ns, model)
	if err != nil {
		return registry.Version{}, err
	}
	var v int64
	switch n, perr := strconv.ParseInt(ref, 10, 64); {
	case ref == "":
		v = m.LatestVersion
		if c, ok := m.Aliases[registry.ChampionAlias]; ok {
			v = c
		}
	case perr == nil:
		v = n
	default:
		a, ok := m.Aliases[ref]
		if !ok {
			return registry.Version{}, errs.New(errs.NotFound, "alias %q of model %q not found", ref, model)
		}
		v = a
	}
	p, err := f.version(ns, model, v)
	if err != nil {
		return registry.Version{}, err
	}
	return *p, nil
}

// ListVersions implements mgmt.Registry.
func (f *Registry) ListVersions(_ context.Context, ns, model string) ([]registry.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.model(ns, model); err != nil {
		return nil, err
	}
	return slices.Clone(f.versions[key(ns, model)]), nil
}

// DeleteVersion implements mgmt.Registry.
func (f *Registry) DeleteVersion(_ context.Context, ns, model string, v int64, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.model(ns, model)
	if err != nil {
		return err
	}
	if _, err := f.version(ns, model, v); err != nil {
		return err
	}
	for a, av := range m.Aliases {
		if av == v {
			if !force {
				return errs.New(errs.Conflict, "version %d is referenced by alias %q", v, a)
			}
			delete(m.Aliases, a)
		}
	}
	k := key(ns, model)
	f.versions[k] = slices.DeleteFunc(f.versions[k], func(x registry.Version) bool { return x.Version == v })
	return nil
}

// SetVersionServing implements mgmt.Registry.
func (f *Registry) SetVersionServing(_ context.Context, ns, model string, v int64, s *registry.ServingConfig) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s != nil {
		if err := s.Validate(); err != nil {
			return err
		}
	}
	p, err := f.version(ns, model, v)
	if err != nil {
		return err
	}
	if s != nil && s.BatchSize() > 1 {
		if err := registry.CheckBatchable(p.Signature); err != nil {
			return cannotBatch(v, err, "")
		}
	}
	p.Serving = s
	return nil
}

// SetAlias implements mgmt.Registry.
func (f *Registry) SetAlias(_ context.Context, ns, model, alias string, v int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := registry.ValidateAlias(alias); err != nil {
		return err
	}
	m, err := f.model(ns, model)
	if err != nil {
		return err
	}
	if _, err := f.version(ns, model, v); err != nil {
		return err
	}
	if m.Aliases == nil {
		m.Aliases = map[string]int64{}
	}
	m.Aliases[alias] = v
	return nil
}

// DeleteAlias implements mgmt.Registry.
func (f *Registry) DeleteAlias(_ context.Context, ns, model, alias string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.model(ns, model)
	if err != nil {
		return err
	}
	if _, ok := m.Aliases[alias]; !ok {
		return errs.New(errs.NotFound, "alias %q of model %q not found", alias, model)
	}
	delete(m.Aliases, alias)
	return nil
}

// PutBlob implements mgmt.Registry.
func (f *Registry) PutBlob(_ context.Context, body io.Reader, want string) (registry.BlobInfo, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return registry.BlobInfo{}, errs.Wrap(errs.Internal, err, "read blob")
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	if want != "" && want != got {
		return registry.BlobInfo{}, errs.New(errs.InvalidArgument, "digest mismatch: want %s, got %s", want, got).WithField("sha256")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[got] = b
	return registry.BlobInfo{SHA256: got, Size: int64(len(b)), ModTime: f.Now()}, nil
}

// AdoptBlob implements mgmt.Registry: it stores the file's bytes and, as the
// real store does, removes the file on success.
func (f *Registry) AdoptBlob(ctx context.Context, path, want string) (registry.BlobInfo, error) {
	file, err := os.Open(path)
	if err != nil {
		return registry.BlobInfo{}, errs.Wrap(errs.Internal, err, "open staged blob")
	}
	info, err := f.PutBlob(ctx, file, want)
	file.Close()
	if err != nil {
		return registry.BlobInfo{}, err
	}
	if err := os.Remove(path); err != nil {
		return registry.BlobInfo{}, errs.Wrap(errs.Internal, err, "remove staged blob")
	}
	return info, nil
}

// GC implements mgmt.Registry.
func (f *Registry) GC(context.Context) ([]registry.BlobInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	used := map[string]bool{}
	for _, vs := range f.versions {
		for _, v := range vs {
			used[v.SHA256] = true
		}
	}
	var removed []registry.BlobInfo
	for sha, b := range f.blobs {
		if !used[sha] {
			removed = append(removed, registry.BlobInfo{SHA256: sha, Size: int64(len(b)), ModTime: f.Now()})
			delete(f.blobs, sha)
		}
	}
	sort.Slice(removed, func(i, j int) bool { return removed[i].SHA256 < removed[j].SHA256 })
	return removed, nil
}

// HasBlob reports whether a blob with this digest is stored.
func (f *Registry) HasBlob(sha string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.blobs[sha]
	return ok
}

// Store implements mgmt.Registry; only ListNamespaces works.
func (f *Registry) Store() registry.Store { return store{f: f} }

// Blobs implements mgmt.Registry; only Open works.
func (f *Registry) Blobs() registry.BlobStore { return blobStore{f: f} }

type store struct {
	registry.Store // nil: other methods panic
	f              *Registry
}

func (s store) ListNamespaces(context.Context) ([]string, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, m := range s.f.models {
		if !seen[m.Namespace] {
			seen[m.Namespace] = true
			out = append(out, m.Namespace)
		}
	}
	sort.Strings(out)
	return out, nil
}

type blobStore struct {
	registry.BlobStore // nil: other methods panic
	f                  *Registry
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func (b blobStore) Open(_ context.Context, sha string) (io.ReadSeekCloser, registry.BlobInfo, error) {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	data, ok := b.f.blobs[sha]
	if !ok {
		return nil, registry.BlobInfo{}, errs.New(errs.NotFound, "blob %s not found", sha)
	}
	return nopCloser{bytes.NewReader(data)}, registry.BlobInfo{SHA256: sha, Size: int64(len(data)), ModTime: b.f.Now()}, nil
}
