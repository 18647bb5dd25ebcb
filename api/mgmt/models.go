package mgmt

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// NamespaceList is the body of GET /api/v1/namespaces.
type NamespaceList struct {
	Items []string `json:"items"`
}

// ModelPatch is the body of PATCH .../models/{model}. Nil fields stay unchanged;
// Labels replaces the whole label set.
type ModelPatch = registry.ModelPatch

// AliasRequest is the body of PUT .../aliases/{alias}.
type AliasRequest struct {
	Version int64 `json:"version"`
}

// GCResult is the body of POST /api/v1/gc.
type GCResult struct {
	Removed []registry.BlobInfo `json:"removed"`
}

func (a *api) listNamespaces(w http.ResponseWriter, r *http.Request) error {
	ns, err := a.reg.Store().ListNamespaces(r.Context())
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	if ns == nil {
		ns = []string{}
	}
	ns = readable(r, ns, func(n string) string { return n })
	writeJSON(w, http.StatusOK, NamespaceList{Items: ns})
	return nil
}

func (a *api) listModels(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	opt := registry.ListOptions{After: q.Get("after"), Prefix: q.Get("prefix")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return errs.New(errs.InvalidArgument, "limit=%q is not a non-negative number", s).WithField("limit")
		}
		opt.Limit = min(n, registry.MaxPageSize)
	}
	page, err := a.reg.ListModels(r.Context(), r.PathValue("ns"), opt)
	if err != nil {
		return fmt.Errorf("list models: %w", err)
	}
	if page.Items == nil {
		page.Items = []registry.Model{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (a *api) getModel(w http.ResponseWriter, r *http.Request) error {
	m, err := a.reg.GetModel(r.Context(), r.PathValue("ns"), r.PathValue("model"))
	if err != nil {
		return fmt.Errorf("get model: %w", err)
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *api) patchModel(w http.ResponseWriter, r *http.Request) error {
	var p ModelPatch
	if err := a.decodeJSON(w, r, &p); err != nil {
		return err
	}
	// The registry merges the patch into the model inside its transaction.
	m, err := a.reg.PatchModel(r.Context(), r.PathValue("ns"), r.PathValue("model"), p)
	if err != nil {
		return fmt.Errorf("update model: %w", err)
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *api) deleteModel(w http.ResponseWriter, r *http.Request) error {
	force, err := boolQuery(r, "force")
	if err != nil {
		return err
	}
	// The registry refuses a delete that takes a target away from an
	// InferenceService (the resource layer's delete guard).
	if err := a.reg.DeleteModel(r.Context(), r.PathValue("ns"), r.PathValue("model"), force); err != nil {
		return fmt.Errorf("delete model: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) getServing(w http.ResponseWriter, r *http.Request) error {
	m, err := a.reg.GetModel(r.Context(), r.PathValue("ns"), r.PathValue("model"))
	if err != nil {
		return fmt.Errorf("get serving settings: %w", err)
	}
	writeJSON(w, http.StatusOK, m.Serving)
	return nil
}

func (a *api) putServing(w http.ResponseWriter, r *http.Request) error {
	var s registry.ServingConfig
	if err := a.decodeJSON(w, r, &s); err != nil {
		return err
	}
	m, err := a.reg.SetModelServing(r.Context(), r.PathValue("ns"), r.PathValue("model"), s)
	if err != nil {
		return fmt.Errorf("set serving settings: %w", err)
	}
	writeJSON(w, http.StatusOK, m.Serving)
	return nil
}

func (a *api) listVersions(w http.ResponseWriter, r *http.Request) error {
	vs, err := a.reg.ListVersions(r.Context(), r.PathValue("ns"), r.PathValue("model"))
	if err != nil {
		return fmt.Errorf("list versions: %w", err)
	}
	if vs == nil {
		vs = []registry.Version{}
	}
	writeJSON(w, http.StatusOK, struct {
		Items []registry.Version `json:"items"`
	}{vs})
	return nil
}

func (a *api) createVersion(w http.ResponseWriter, r *http.Request) error {
	var req registry.CreateVersionRequest
	if err := a.decodeJSON(w, r, &req); err != nil {
		return err
	}
	req.Namespace, req.Model = r.PathValue("ns"), r.PathValue("model")
	v, err := a.reg.CreateVersion(r.Context(), req)
	if err != nil {
		return fmt.Errorf("create version: %w", err)
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/namespaces/%s/models/%s/versions/%d", v.Namespace, v.Model, v.Version))
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// getVersion accepts a number or an alias, as Resolve does.
func (a *api) getVersion(w http.ResponseWriter, r *http.Request) error {
	return a.writeVersion(w, r, r.PathValue("ns"), r.PathValue("model"), r.PathValue("version"))
}

// writeVersion answers with the version ref resolves to.
func (a *api) writeVersion(w http.ResponseWriter, r *http.Request, ns, model, ref string) error {
	v, err := a.reg.Resolve(r.Context(), ns, model, ref)
	if err != nil {
		return fmt.Errorf("get version: %w", err)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *api) deleteVersion(w http.ResponseWriter, r *http.Request) error {
	ver, err := versionParam(r)
	if err != nil {
		return err
	}
	force, err := boolQuery(r, "force")
	if err != nil {
		return err
	}
	if err := a.reg.DeleteVersion(r.Context(), r.PathValue("ns"), r.PathValue("model"), ver, force); err != nil {
		return fmt.Errorf("delete version: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) putVersionServing(w http.ResponseWriter, r *http.Request) error {
	ver, err := versionParam(r)
	if err != nil {
		return err
	}
	var s registry.ServingConfig
	if err := a.decodeJSON(w, r, &s); err != nil {
		return err
	}
	return a.setVersionServing(w, r, ver, &s)
}

func (a *api) deleteVersionServing(w http.ResponseWriter, r *http.Request) error {
	ver, err := versionParam(r)
	if err != nil {
		return err
	}
	return a.setVersionServing(w, r, ver, nil)
}

// setVersionServing applies the override and answers with the updated version.
func (a *api) setVersionServing(w http.ResponseWriter, r *http.Request, ver int64, s *registry.ServingConfig) error {
	ns, model := r.PathValue("ns"), r.PathValue("model")
	if err := a.reg.SetVersionServing(r.Context(), ns, model, ver, s); err != nil {
		return fmt.Errorf("set version serving settings: %w", err)
	}
	return a.writeVersion(w, r, ns, model, strconv.FormatInt(ver, 10))
}

// getArtifact serves a version's bytes; http.ServeContent handles Range and
// conditional requests against the content-addressed ETag.
func (a *api) getArtifact(w http.ResponseWriter, r *http.Request) error {
	v, err := a.reg.Resolve(r.Context(), r.PathValue("ns"), r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		return fmt.Errorf("get artifact: %w", err)
	}
	f, info, err := a.reg.Blobs().Open(r.Context(), v.SHA256)
	if err != nil {
		return fmt.Errorf("open artifact %s: %w", v.SHA256, err)
	}
	defer f.Close()
	w.Header().Set("ETag", `"sha256:`+v.SHA256+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%d.%s"`, v.Model, v.Version, v.Format))
	http.ServeContent(w, r, "", info.ModTime, f)
	return nil
}

func (a *api) setAlias(w http.ResponseWriter, r *http.Request) error {
	var req AliasRequest
	if err := a.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Version <= 0 {
		return errs.New(errs.InvalidArgument, "version must be a positive number").WithField("version")
	}
	ns, model := r.PathValue("ns"), r.PathValue("model")
	if err := a.reg.SetAlias(r.Context(), ns, model, r.PathValue("alias"), req.Version); err != nil {
		return fmt.Errorf("set alias: %w", err)
	}
	m, err := a.reg.GetModel(r.Context(), ns, model)
	if err != nil {
		return fmt.Errorf("get model: %w", err)
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *api) deleteAlias(w http.ResponseWriter, r *http.Request) error {
	if err := a.reg.DeleteAlias(r.Context(), r.PathValue("ns"), r.PathValue("model"), r.PathValue("alias")); err != nil {
		return fmt.Errorf("delete alias: %w", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *api) gc(w http.ResponseWriter, r *http.Request) error {
	removed, err := a.reg.GC(r.Context())
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if removed == nil {
		removed = []registry.BlobInfo{}
	}
	a.log.InfoContext(r.Context(), "blobs collected", "count", len(removed))
	writeJSON(w, http.StatusOK, GCResult{Removed: removed})
	return nil
}
