// Package mgmt is the management REST API under /api/v1: namespaces, models,
// versions, aliases, serving settings, blobs (including resumable uploads) and
// garbage collection. Handlers are thin: decode, call the registry, encode. Every
// error leaves as {"error": {"code", "message", "field"}} with the status its
// errs.Kind carries.
package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// Registry is what the handlers need from *registry.Registry.
type Registry interface {
	GetModel(ctx context.Context, ns, name string) (registry.Model, error)
	ListModels(ctx context.Context, ns string, opt registry.ListOptions) (registry.ModelPage, error)
	PatchModel(ctx context.Context, ns, name string, p registry.ModelPatch) (registry.Model, error)
	DeleteModel(ctx context.Context, ns, model string, force bool) error
	SetModelServing(ctx context.Context, ns, model string, s registry.ServingConfig) (registry.Model, error)

	CreateVersion(ctx context.Context, req registry.CreateVersionRequest) (registry.Version, error)
	Resolve(ctx context.Context, ns, model, ref string) (registry.Version, error)
	ListVersions(ctx context.Context, ns, model string) ([]registry.Version, error)
	DeleteVersion(ctx context.Context, ns, model string, version int64, force bool) error
	SetVersionServing(ctx context.Context, ns, model string, version int64, s *registry.ServingConfig) error

	SetAlias(ctx context.Context, ns, model, alias string, version int64) error
	DeleteAlias(ctx context.Context, ns, model, alias string) error

	PutBlob(ctx context.Context, body io.Reader, want string) (registry.BlobInfo, error)
	AdoptBlob(ctx context.Context, path, want string) (registry.BlobInfo, error)
	GC(ctx context.Context) ([]registry.BlobInfo, error)

	// Store is used only for ListNamespaces, Blobs only to open artifacts:
	// Registry itself offers neither.
	Store() registry.Store
	Blobs() registry.BlobStore
}

var _ Registry = (*registry.Registry)(nil)

// Defaults for Options.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxBlobBytes = 4 << 30
	DefaultUploadTTL    = 24 * time.Hour
)

// Options configure the handler. Zero values take the defaults above.
type Options struct {
	Logger *slog.Logger
	// MaxBodyBytes limits JSON request bodies.
	MaxBodyBytes int64
	// MaxBlobBytes limits one blob, whether posted at once or uploaded in chunks.
	MaxBlobBytes int64
	// UploadDir holds staged resumable uploads; default $TMPDIR/nimbus-uploads.
	// Put it on the same filesystem as the blob store.
	UploadDir string
	// UploadTTL is how long an upload may sit idle before it is discarded.
	UploadTTL time.Duration
	// Residency answers the status routes; nil answers them with 503.
	Residency Residency
	// Resources serves apply, get and delete of declarative resources; nil
	// answers those routes with 503.
	Resources Resources
	// Audit serves the events routes and records blob uploads; nil does
	// neither. The registry and the resource engine record their own changes,
	// inside each change's transaction (registry.SetAuditLog).
	Audit audit.Log
	// Tokens serves the token routes; nil (auth off) answers them with 412.
	Tokens Tokens
	// GitSync serves "sync now" of GitSources; nil answers it with 503.
	GitSync GitSync
	// Rollouts serves rollout commands; nil answers them with 503.
	Rollouts Rollouts
	// Locks refuses changes to models a GitSource locks (lockImperative);
	// nil locks nothing.
	Locks Locks
}

// Locks says whether a resource may be changed outside git.
type Locks interface {
	CheckUnlocked(ctx context.Context, kind, ns, name string) error
}

// unlocked refuses h when the model of the path is locked by its GitSource.
func (a *api) unlocked(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if a.opts.Locks != nil {
			if err := a.opts.Locks.CheckUnlocked(r.Context(), spec.KindModel, r.PathValue("ns"), r.PathValue("model")); err != nil {
				return err
			}
		}
		return h(w, r)
	}
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxBlobBytes <= 0 {
		o.MaxBlobBytes = DefaultMaxBlobBytes
	}
	if o.UploadDir == "" {
		o.UploadDir = filepath.Join(os.TempDir(), "nimbus-uploads")
	}
	if o.UploadTTL <= 0 {
		o.UploadTTL = DefaultUploadTTL
	}
}

type api struct {
	reg     Registry
	opts    Options
	log     *slog.Logger
	uploads *uploads
}

// Handler is the management API: an http.Handler with its route table.
type Handler struct {
	http.Handler
	routes []Route
}

// Route is one registered route and what a caller needs for it.
type Route struct {
	Method, Pattern string
	Rule            auth.Rule
	// Signed routes also take, instead of a token, a request signed with a
	// secret of the resource (a git host's webhook).
	Signed bool
}

// Routes lists every route the handler serves (for the access matrix test and docs).
func (h *Handler) Routes() []Route { return h.routes }

// body says what a route's request body must be: a browser page may send a
// cross-site POST without asking (a CORS "simple request") only as text/plain,
// form data or no body, so every body is checked for the type its route takes.
type body uint8

const (
	noBody    body = iota // nothing is read
	jsonBody              // application/json
	blobBody              // application/octet-stream
	applyBody             // application/json or YAML
)

// NewHandler returns the management API. It serves paths under /api/v1/ and
// answers unknown paths and methods there with JSON errors. Every route checks
// the caller's identity (auth.FromContext, set by auth.Guard) against its rule
// before it reads anything.
func NewHandler(reg Registry, opts Options) *Handler {
	opts.setDefaults()
	a := &api{
		reg:     reg,
		opts:    opts,
		log:     opts.Logger.With("component", "mgmt"),
		uploads: newUploads(opts.UploadDir, opts.UploadTTL, opts.MaxBlobBytes),
	}
	mux := http.NewServeMux()
	const nsp = "/api/v1/namespaces/{ns}"
	const mp = nsp + "/models/{model}"
	const vp = mp + "/versions/{version}"
	var (
		read   = auth.Needs(auth.PermRead)
		write  = auth.Needs(auth.PermWrite)
		anyRd  = auth.NeedsAny(auth.PermRead)  // filtered by namespace
		anyWr  = auth.NeedsAny(auth.PermWrite) // each document's namespace checked
		tokens = auth.NeedsAny(auth.PermAdmin) // within the admin's scopes
	)
	routes := []struct {
		pattern string
		rule    auth.Rule
		body    body
		h       handlerFunc
	}{
		{"GET /api/v1/namespaces", anyRd, noBody, a.listNamespaces},
		{"POST /api/v1/gc", auth.NeedsCluster(auth.PermAdmin), noBody, a.gc},
		{"GET /api/v1/whoami", auth.Authenticated, noBody, a.whoami},
		{"GET /api/v1/tokens", tokens, noBody, a.withTokens(a.listTokens)},
		{"POST /api/v1/tokens", tokens, jsonBody, a.withTokens(a.createToken)},
		{"DELETE /api/v1/tokens/{id}", tokens, noBody, a.withTokens(a.revokeToken)},

		{"POST /api/v1/apply", anyWr, applyBody, a.applyFiles(Resources.Apply)},
		{"POST /api/v1/delete", anyWr, applyBody, a.applyFiles(Resources.DeleteFiles)},
		{"GET /api/v1/resources/{kind}", anyRd, noBody, a.withResources(a.listResources)},
		{"GET " + nsp + "/resources/{kind}", read, noBody, a.withResources(a.listResources)},
		{"GET " + nsp + "/resources/{kind}/{name}", read, noBody, a.withResources(a.getResource)},
		{"DELETE " + nsp + "/resources/{kind}/{name}", write, noBody, a.withResources(a.deleteResource)},
		{"POST " + nsp + "/resources/gitsources/{name}/sync", write, noBody, a.syncGitSource(write)},
		{"POST " + nsp + "/resources/inferenceservices/{name}/rollout/{command}", write, noBody, a.rolloutCommand},
		{"GET /api/v1/events", anyRd, noBody, a.listEvents},
		{"GET " + nsp + "/events", read, noBody, a.listEvents},

		{"GET " + nsp + "/models", read, noBody, a.listModels},
		{"GET " + nsp + "/status", read, noBody, a.status},
		{"GET " + mp, read, noBody, a.getModel},
		{"PATCH " + mp, write, jsonBody, a.unlocked(a.patchModel)},
		{"DELETE " + mp, write, noBody, a.unlocked(a.deleteModel)},
		{"GET " + mp + "/serving", read, noBody, a.getServing},
		{"PUT " + mp + "/serving", write, jsonBody, a.unlocked(a.putServing)},
		{"GET " + mp + "/status", read, noBody, a.status},

		{"GET " + mp + "/versions", read, noBody, a.listVersions},
		{"POST " + mp + "/versions", write, jsonBody, a.unlocked(a.createVersion)},
		{"GET " + vp, read, noBody, a.getVersion},
		{"DELETE " + vp, write, noBody, a.unlocked(a.deleteVersion)},
		{"PUT " + vp + "/serving", write, jsonBody, a.unlocked(a.putVersionServing)},
		{"DELETE " + vp + "/serving", write, noBody, a.unlocked(a.deleteVersionServing)},
		{"GET " + vp + "/artifact", read, noBody, a.getArtifact},

		{"PUT " + mp + "/aliases/{alias}", write, jsonBody, a.unlocked(a.setAlias)},
		{"DELETE " + mp + "/aliases/{alias}", write, noBody, a.unlocked(a.deleteAlias)},

		{"POST " + nsp + "/blobs", write, blobBody, a.postBlob},
		{"POST " + nsp + "/blobs/uploads", write, noBody, a.startUpload},
		{"GET " + nsp + "/blobs/uploads/{id}", write, noBody, a.uploadStatus},
		{"PATCH " + nsp + "/blobs/uploads/{id}", write, blobBody, a.uploadChunk},
		{"PUT " + nsp + "/blobs/uploads/{id}", write, noBody, a.finishUpload},
		{"DELETE " + nsp + "/blobs/uploads/{id}", write, noBody, a.cancelUpload},
	}
	// Signed routes check their rule in the handler: a git host's webhook
	// carries a signature instead of a token.
	signedRoutes := map[string]bool{"POST " + nsp + "/resources/gitsources/{name}/sync": true}
	h := &Handler{}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.pattern, " ")
		signed := signedRoutes[rt.pattern]
		h.routes = append(h.routes, Route{Method: method, Pattern: path, Rule: rt.rule, Signed: signed})
		if signed {
			mux.Handle(rt.pattern, a.wrap(rt.h))
			continue
		}
		mux.Handle(rt.pattern, a.wrap(guarded(rt.rule, rt.body, rt.h)))
	}
	h.Handler = jsonFallback(mux)
	return h
}

// guarded checks the caller's identity against rule (for the {ns} of the path)
// and the body's Content-Type before h reads anything.
func guarded(rule auth.Rule, b body, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := auth.Authorize(r.Context(), rule, r.PathValue("ns")); err != nil {
			return err
		}
		if err := checkBody(r, b); err != nil {
			return err
		}
		return h(w, r)
	}
}

// checkBody refuses a body whose Content-Type is not what the route takes.
func checkBody(r *http.Request, b body) error {
	if b == noBody || r.ContentLength == 0 {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	var ok bool
	var want string
	switch b {
	case jsonBody:
		ok, want = mt == "application/json", "application/json"
	case blobBody:
		ok, want = mt == "application/octet-stream" || mt == "application/offset+octet-stream", "application/octet-stream"
	case applyBody:
		ok, want = mt == "application/json" || isYAML(mt), "application/json or application/yaml"
	}
	if err != nil || !ok {
		return errs.New(errs.UnsupportedMediaType, "Content-Type %q: %s %s takes %s", ct, r.Method, r.URL.Path, want)
	}
	return nil
}

func isYAML(mt string) bool {
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
		return true
	}
	return false
}

// handlerFunc is a handler that leaves error reporting to wrap.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// wrap turns a handlerFunc into an http.Handler: errors become JSON bodies, and
// server-side failures are logged with their internal cause. The caller's
// actor and change source go into the context, for the audit log.
func (a *api) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(audit.WithOrigin(r.Context(), actor(r), source(r)))
		err := h(w, r)
		if err == nil {
			return
		}
		kind := errs.KindOf(err)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			kind = errs.TooLarge
			err = errs.Wrap(errs.TooLarge, err, "request body larger than %d bytes", tooBig.Limit)
		}
		status := kind.HTTPStatus()
		setErrorHeaders(w, err)
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "err", err}
		if status >= 500 {
			a.log.ErrorContext(r.Context(), "management request failed", attrs...)
		} else {
			a.log.DebugContext(r.Context(), "management request refused", attrs...)
		}
		writeError(w, status, kind.String(), errs.PublicMessage(err), errs.FieldOf(err))
	})
}

// setErrorHeaders adds what an error tells a client beyond its body: when to
// retry (429, 503) and how to authenticate (401).
func setErrorHeaders(w http.ResponseWriter, err error) {
	if d := errs.RetryAfterOf(err); d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
	}
	if errs.KindOf(err) == errs.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nimbus"`)
	}
}

// WriteError answers err in the management API's format ({"error": {...}}),
// for middleware in front of the API (auth, the browser checks).
func WriteError(w http.ResponseWriter, err error) {
	kind := errs.KindOf(err)
	setErrorHeaders(w, err)
	writeError(w, kind.HTTPStatus(), kind.String(), errs.PublicMessage(err), errs.FieldOf(err))
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg, field string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: msg, Field: field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away; nothing left to tell it
}

// decodeJSON reads one JSON value of at most opts.MaxBodyBytes into v, refusing
// unknown fields so typos fail loudly.
func (a *api) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONMax(w, r, v, a.opts.MaxBodyBytes)
}

// decodeJSONMax is decodeJSON with its own size limit.
func decodeJSONMax(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("decode body: %w", err)
		}
		if errors.Is(err, io.EOF) {
			return errs.New(errs.InvalidArgument, "request body is empty")
		}
		if isJSONError(err) { // the caller's own JSON: say what is wrong with it
			return errs.New(errs.InvalidArgument, "invalid JSON body: %v", err)
		}
		return errs.Wrap(errs.InvalidArgument, err, "invalid JSON body") // a read error: kept for the log
	}
	if dec.More() {
		return errs.New(errs.InvalidArgument, "invalid JSON body: trailing data after the object")
	}
	return nil
}

// isJSONError reports whether a decode error is about the JSON itself (what the
// caller sent, safe to quote back) rather than a failure reading the body.
func isJSONError(err error) bool {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.As(err, &syn) || errors.As(err, &typ) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.HasPrefix(err.Error(), "json: ") // e.g. json: unknown field "x"
}

// versionParam parses the {version} path value as a version number.
func versionParam(r *http.Request) (int64, error) {
	s := r.PathValue("version")
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, errs.New(errs.InvalidArgument, "version %q is not a positive number", s).WithField("version")
	}
	return v, nil
}

// boolQuery parses an optional boolean query parameter.
func boolQuery(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, errs.New(errs.InvalidArgument, "%s=%q is not a boolean", name, s).WithField(name)
	}
	return b, nil
}

// jsonFallback answers requests the mux has no route for (404, 405) with JSON
// errors instead of ServeMux's plain text, keeping its Allow header.
func jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{header: http.Header{}}
		mux.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			writeError(w, rec.status, "method_not_allowed", fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path), "")
		case http.StatusNotFound, 0:
			writeError(w, http.StatusNotFound, errs.NotFound.String(), fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path), "")
		default: // redirects for unclean paths and the like
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
		}
	})
}

// statusRecorder captures what ServeMux's built-in error handlers write.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return len(b), nil
}
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
