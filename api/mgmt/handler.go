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
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// Registry is what the handlers need from *registry.Registry.
type Registry interface {
	GetModel(ctx context.Context, ns, name string) (registry.Model, error)
	ListModels(ctx context.Context, ns string, opt registry.ListOptions) (registry.ModelPage, error)
	UpdateModel(ctx context.Context, m registry.Model) (registry.Model, error)
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
	// Audit records every change and serves the events routes; nil records nothing.
	Audit audit.Log
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

// NewHandler returns the management API. It serves paths under /api/v1/ and
// answers unknown paths and methods there with JSON errors.
func NewHandler(reg Registry, opts Options) http.Handler {
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
	routes := []struct {
		pattern string
		h       handlerFunc
	}{
		{"GET /api/v1/namespaces", a.listNamespaces},
		{"POST /api/v1/gc", a.audited("Blob", "collect unreferenced blobs", a.gc)},

		{"POST /api/v1/apply", a.applyFiles(Resources.Apply)},
		{"POST /api/v1/delete", a.applyFiles(Resources.DeleteFiles)},
		{"GET /api/v1/resources/{kind}", a.withResources(a.listResources)},
		{"GET " + nsp + "/resources/{kind}", a.withResources(a.listResources)},
		{"GET " + nsp + "/resources/{kind}/{name}", a.withResources(a.getResource)},
		{"DELETE " + nsp + "/resources/{kind}/{name}", a.withResources(a.deleteResource)},
		{"GET /api/v1/events", a.listEvents},
		{"GET " + nsp + "/events", a.listEvents},

		{"GET " + nsp + "/models", a.listModels},
		{"GET " + nsp + "/status", a.status},
		{"GET " + mp, a.getModel},
		{"PATCH " + mp, a.audited("Model", "update description and labels", a.patchModel)},
		{"DELETE " + mp, a.audited("Model", "delete model", a.deleteModel)},
		{"GET " + mp + "/serving", a.getServing},
		{"PUT " + mp + "/serving", a.audited("Model", "set serving settings", a.putServing)},
		{"GET " + mp + "/status", a.status},

		{"GET " + mp + "/versions", a.listVersions},
		{"POST " + mp + "/versions", a.audited("Model", "create version", a.createVersion)},
		{"GET " + vp, a.getVersion},
		{"DELETE " + vp, a.audited("Model", "delete version {version}", a.deleteVersion)},
		{"PUT " + vp + "/serving", a.audited("Model", "set serving settings of version {version}", a.putVersionServing)},
		{"DELETE " + vp + "/serving", a.audited("Model", "clear serving settings of version {version}", a.deleteVersionServing)},
		{"GET " + vp + "/artifact", a.getArtifact},

		{"PUT " + mp + "/aliases/{alias}", a.audited("Model", "set alias {alias}", a.setAlias)},
		{"DELETE " + mp + "/aliases/{alias}", a.audited("Model", "delete alias {alias}", a.deleteAlias)},

		{"POST " + nsp + "/blobs", a.postBlob},
		{"POST " + nsp + "/blobs/uploads", a.startUpload},
		{"GET " + nsp + "/blobs/uploads/{id}", a.uploadStatus},
		{"PATCH " + nsp + "/blobs/uploads/{id}", a.uploadChunk},
		{"PUT " + nsp + "/blobs/uploads/{id}", a.finishUpload},
		{"DELETE " + nsp + "/blobs/uploads/{id}", a.cancelUpload},
	}
	for _, rt := range routes {
		mux.Handle(rt.pattern, a.wrap(rt.h))
	}
	return jsonFallback(mux)
}

// handlerFunc is a handler that leaves error reporting to wrap.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// wrap turns a handlerFunc into an http.Handler: errors become JSON bodies, and
// server-side failures are logged with their internal cause.
func (a *api) wrap(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", status, "err", err}
		if status >= 500 {
			a.log.ErrorContext(r.Context(), "management request failed", attrs...)
		} else {
			a.log.DebugContext(r.Context(), "management request refused", attrs...)
		}
		writeError(w, status, kind.String(), errs.PublicMessage(err), errs.FieldOf(err))
	})
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
