package mgmt

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// Resources is what the declarative routes need from *apply.Engine.
type Resources interface {
	Apply(ctx context.Context, req spec.Request) (*spec.Response, error)
	DeleteFiles(ctx context.Context, req spec.Request) (*spec.Response, error)
	Delete(ctx context.Context, dr spec.DeleteRequest) (spec.Result, error)
	Get(ctx context.Context, kind, ns, name string) (spec.Object, error)
	List(ctx context.Context, kind, ns string) ([]spec.Object, error)
}

// HeaderChangeSource says through what a change arrives (cli, api, gitops); it
// is recorded in the audit log.
const HeaderChangeSource = "Nimbus-Change-Source"

// MaxApplyBytes limits one apply or delete body.
const MaxApplyBytes = 16 << 20

type itemsBody[T any] struct {
	Items []T `json:"items"`
}

type errorsBody struct {
	Errors spec.Errors `json:"errors"`
}

// actor is who makes a request, as its token's identity names it ("local"
// when auth is off).
func actor(r *http.Request) string { return auth.FromContext(r.Context()).Actor() }

// appliedBy is the caller's token id (what a GitSource it applies syncs
// as), or "local" with auth off.
func appliedBy(r *http.Request) string {
	id := auth.FromContext(r.Context())
	if id == nil {
		return ""
	}
	if id.TokenID == "" {
		return id.Name
	}
	return id.TokenID
}

// source is the change source a request names; anything unknown is "api". A
// caller can never claim a server-internal source (the GitOps controller's):
// those are set by the server's own code, not by a header.
func source(r *http.Request) string {
	switch s := strings.ToLower(r.Header.Get(HeaderChangeSource)); s {
	case audit.SourceCLI, "ui":
		return s
	}
	return audit.SourceAPI
}

// withResources answers 503 where declarative resources are off, and hands
// h the engine otherwise.
func (a *api) withResources(h func(w http.ResponseWriter, r *http.Request, res Resources) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.opts.Resources == nil {
			return errs.New(errs.Unavailable, "declarative resources are not enabled on this server")
		}
		return h(w, r, a.opts.Resources)
	}
}

// readApply reads an apply or delete body: JSON {"files": [...]} or raw YAML
// (Content-Type application/yaml, a single file named "request").
func (a *api) readApply(w http.ResponseWriter, r *http.Request) (spec.Request, error) {
	var req spec.Request
	ct := r.Header.Get("Content-Type")
	if strings.Contains(ct, "yaml") {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxApplyBytes))
		if err != nil {
			return req, err
		}
		req.Files = []spec.File{{Name: "request", Content: string(b)}}
	} else {
		if err := decodeJSONMax(w, r, &req, MaxApplyBytes); err != nil {
			return req, err
		}
	}
	q := r.URL.Query()
	if ns := q.Get("namespace"); ns != "" {
		req.Namespace = ns
	}
	if q.Has("dryRun") {
		dry, err := boolQuery(r, "dryRun")
		if err != nil {
			return req, err
		}
		req.DryRun = dry
	}
	req.Actor, req.Source = actor(r), source(r)
	req.AppliedBy = appliedBy(r)
	// The route let any deployer in; each document's namespace is checked by
	// the engine before anything is planned.
	ctx := r.Context()
	req.Authorize = func(kind, ns string) error { return auth.CanNamespace(ctx, writePerm(kind), ns) }
	return req, nil
}

// writePerm is what writing a resource of kind takes: an admin of its
// namespace for an AdminOnly kind (a Connection), write otherwise.
func writePerm(kind string) auth.Perm {
	if spec.AdminOnly(kind) {
		return auth.PermAdmin
	}
	return auth.PermWrite
}

// writeApplyError answers spec.Errors as {"errors": [...]}; other errors go the
// usual way.
func writeApplyError(w http.ResponseWriter, err error) error {
	var fes spec.Errors
	if errors.As(err, &fes) {
		writeJSON(w, fes.Status(), errorsBody{Errors: fes})
		return nil
	}
	return err
}

// applyFiles serves apply and delete-by-files: the same body, the same
// all-or-nothing {"errors": [...]} answer. op is Resources.Apply or
// Resources.DeleteFiles.
func (a *api) applyFiles(op func(Resources, context.Context, spec.Request) (*spec.Response, error)) handlerFunc {
	return a.withResources(func(w http.ResponseWriter, r *http.Request, res Resources) error {
		req, err := a.readApply(w, r)
		if err != nil {
			return err
		}
		out, err := op(res, r.Context(), req)
		if err != nil {
			return writeApplyError(w, err)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

func (a *api) listResources(w http.ResponseWriter, r *http.Request, res Resources) error {
	kind, err := spec.NormalizeKind(r.PathValue("kind"))
	if err != nil {
		return err
	}
	ns := r.PathValue("ns")
	if ns == "" {
		ns = r.URL.Query().Get("namespace")
		if err := readableNamespace(r, ns); err != nil {
			return err
		}
	}
	items, err := res.List(r.Context(), kind, ns)
	if err != nil {
		return err
	}
	items = readable(r, items, func(o spec.Object) string { return o.GetMeta().Namespace })
	writeJSON(w, http.StatusOK, itemsBody[spec.Object]{Items: items})
	return nil
}

func (a *api) getResource(w http.ResponseWriter, r *http.Request, res Resources) error {
	kind, err := spec.NormalizeKind(r.PathValue("kind"))
	if err != nil {
		return err
	}
	obj, err := res.Get(r.Context(), kind, r.PathValue("ns"), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, obj)
	return nil
}

func (a *api) deleteResource(w http.ResponseWriter, r *http.Request, res Resources) error {
	kind, err := spec.NormalizeKind(r.PathValue("kind"))
	if err != nil {
		return err
	}
	if spec.AdminOnly(kind) {
		if err := auth.CanNamespace(r.Context(), auth.PermAdmin, r.PathValue("ns")); err != nil {
			return err
		}
	}
	dry, err := boolQuery(r, "dryRun")
	if err != nil {
		return err
	}
	out, err := res.Delete(r.Context(), spec.DeleteRequest{Kind: kind, Namespace: r.PathValue("ns"), Name: r.PathValue("name"),
		DryRun: dry, Actor: actor(r), Source: source(r)})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *api) listEvents(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Audit == nil {
		return errs.New(errs.Unavailable, "the audit log is not enabled on this server")
	}
	q := r.URL.Query()
	query := audit.Query{Namespace: r.PathValue("ns"), Name: q.Get("name")}
	if query.Namespace == "" {
		query.Namespace = q.Get("namespace")
		if err := readableNamespace(r, query.Namespace); err != nil {
			return err
		}
		if id := auth.FromContext(r.Context()); query.Namespace == "" && !id.InScope(auth.AllScopes) {
			query.Namespaces = id.Scopes // only what the token may read
		}
	}
	if k := q.Get("kind"); k != "" {
		kind, err := spec.NormalizeKind(k)
		if err != nil {
			kind = k // events also name other kinds (Blob, Version)
		}
		query.Kind = kind
	}
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return errs.New(errs.InvalidArgument, "after=%q: must be a non-negative event id", s).WithField("after")
		}
		query.After = n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > audit.MaxLimit {
			return errs.New(errs.InvalidArgument, "limit=%q: must be 0..%d", s, audit.MaxLimit).WithField("limit")
		}
		query.Limit = n
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return errs.New(errs.InvalidArgument, "since=%q: must be an RFC 3339 time like 2026-11-25T10:00:00Z", s).WithField("since")
		}
		query.Since = t
	}
	latest, err := boolQuery(r, "latest")
	if err != nil {
		return err
	}
	query.Latest = latest
	evs, err := a.opts.Audit.ListEvents(r.Context(), query)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []audit.Event{}
	}
	writeJSON(w, http.StatusOK, itemsBody[audit.Event]{Items: evs})
	return nil
}
