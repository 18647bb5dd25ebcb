package oip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/limits"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Backend is what the OIP handlers need from the serving layer.
type Backend interface {
	// ResolveInputs checks that a request's model and version exist before its
	// body is read, and returns the inputs it expects when they are known (see
	// serving.Manager.ResolveInputs).
	ResolveInputs(ctx context.Context, ns, model, version string) (inputs []tensor.TensorSpec, known bool, err error)
	Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error)
	ModelMetadata(ctx context.Context, ns, model, version string) (*serving.ModelMetadata, error)
	ModelReady(ctx context.Context, ns, model, version string) (bool, error)
	ServerReady(ctx context.Context) bool
	ServerMetadata() serving.ServerMetadata
	RepositoryIndex(ctx context.Context, ns string, readyOnly bool) ([]serving.RepositoryEntry, error)
	LoadModel(ctx context.Context, ns, model string) error
	UnloadModel(ctx context.Context, ns, model string) error
	// Stats returns statistics; model "" means every model, version "" every version.
	Stats(ctx context.Context, ns, model, version string) ([]serving.ModelStats, error)
}

// DefaultMaxBodyBytes is the request body limit when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 64 << 20

// DefaultNamespace is the namespace of the un-prefixed /v2/... routes.
const DefaultNamespace = "default"

// HeaderModelVersion names the version that answered an inference request.
const HeaderModelVersion = "Nimbus-Model-Version"

// HeaderRoutingKey keeps a caller of an InferenceService on one target.
const HeaderRoutingKey = "Nimbus-Routing-Key"

// HeaderTarget names the model and version that answered a request to an
// InferenceService ("fraud-detector@4").
const HeaderTarget = "Nimbus-Target"

// HeaderColdStart is set on answers that waited for their version to load: the
// wait in milliseconds ("12.345").
const HeaderColdStart = "Nimbus-Cold-Start"

// Options configure NewHandler. The zero value is usable.
type Options struct {
	// MaxBodyBytes limits request bodies; larger ones get 413. Default 64 MiB.
	MaxBodyBytes int64
	// Metrics records every inference request; nil records nothing.
	Metrics *telemetry.Metrics
	// Logger receives failures; nil discards.
	Logger *slog.Logger
	// Budget bounds the bytes requests in flight hold together (bodies and
	// what decoding them allocates); nil is unlimited. Shared with gRPC.
	Budget *limits.Budget
}

type handler struct {
	b       Backend
	max     int64
	metrics *telemetry.Metrics
	log     *slog.Logger
	budget  *limits.Budget
}

// Route is one registered route and what a caller needs for it.
type Route struct {
	Method, Pattern string
	Rule            auth.Rule
}

// Handler is the OIP REST API: an http.Handler with its route table.
type Handler struct {
	http.Handler
	routes []Route
}

// Routes lists every route the handler serves.
func (h *Handler) Routes() []Route { return h.routes }

// NewHandler serves the OIP v2 REST API (plus Triton's repository and statistics
// extensions) under /v2/... for the default namespace and /ns/{namespace}/v2/...
// for any other. Every route but the health checks checks the caller's identity
// (auth.FromContext) against its rule for the request's namespace.
func NewHandler(b Backend, opts Options) *Handler {
	h := &handler{b: b, max: opts.MaxBodyBytes, metrics: opts.Metrics, log: opts.Logger, budget: opts.Budget}
	if h.max <= 0 {
		h.max = DefaultMaxBodyBytes
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	out := &Handler{Handler: mux}
	var (
		metadata = auth.Needs(auth.PermMetadata)
		infer    = auth.Needs(auth.PermInfer)
		read     = auth.Needs(auth.PermRead)
		write    = auth.Needs(auth.PermWrite)
		// Server metadata says nothing about any namespace.
		server = auth.NeedsAny(auth.PermMetadata)
	)
	for _, prefix := range []string{"", "/ns/{namespace}"} {
		handle := func(pattern string, rule auth.Rule, fn http.HandlerFunc) {
			method, path, _ := cut(pattern)
			out.routes = append(out.routes, Route{Method: method, Pattern: prefix + path, Rule: rule})
			if rule.Perm != auth.PermOpen {
				fn = h.guarded(rule, fn)
			}
			mux.HandleFunc(method+" "+prefix+path, fn)
		}
		handle("GET /v2/health/live", auth.Open, h.live)
		handle("GET /v2/health/ready", auth.Open, h.serverReady)
		handle("GET /v2", server, h.serverMetadata)
		handle("GET /v2/{$}", server, h.serverMetadata)
		handle("GET /v2/models/{model}", metadata, h.modelMetadata)
		handle("GET /v2/models/{model}/versions/{version}", metadata, h.modelMetadata)
		handle("GET /v2/models/{model}/ready", metadata, h.modelReady)
		handle("GET /v2/models/{model}/versions/{version}/ready", metadata, h.modelReady)
		handle("POST /v2/models/{model}/infer", infer, h.infer)
		handle("POST /v2/models/{model}/versions/{version}/infer", infer, h.infer)
		handle("POST /v2/repository/index", metadata, h.repositoryIndex)
		handle("POST /v2/repository/models/{model}/load", write, h.load)
		handle("POST /v2/repository/models/{model}/unload", write, h.unload)
		handle("GET /v2/models/stats", read, h.stats)
		handle("GET /v2/models/{model}/stats", read, h.stats)
		handle("GET /v2/models/{model}/versions/{version}/stats", read, h.stats)
	}
	return out
}

// guarded checks the caller against rule in the request's namespace first.
func (h *handler) guarded(rule auth.Rule, fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := auth.Authorize(r.Context(), rule, namespace(r)); err != nil {
			h.writeError(w, r, err)
			return
		}
		fn(w, r)
	}
}

func cut(pattern string) (method, path string, ok bool) {
	for i := range len(pattern) {
		if pattern[i] == ' ' {
			return pattern[:i], pattern[i+1:], true
		}
	}
	return "", pattern, false
}

// namespace is the {namespace} path segment, or the default namespace.
func namespace(r *http.Request) string {
	if ns := r.PathValue("namespace"); ns != "" {
		return ns
	}
	return DefaultNamespace
}

func (h *handler) live(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

func (h *handler) serverReady(w http.ResponseWriter, r *http.Request) {
	if h.b.ServerReady(r.Context()) {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
}

func (h *handler) modelReady(w http.ResponseWriter, r *http.Request) {
	ready, err := h.b.ModelReady(r.Context(), namespace(r), r.PathValue("model"), r.PathValue("version"))
	switch {
	case err != nil:
		h.writeError(w, r, err)
	case ready:
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

type serverMetadataJSON struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

func (h *handler) serverMetadata(w http.ResponseWriter, r *http.Request) {
	md := h.b.ServerMetadata()
	h.writeJSON(w, r, http.StatusOK, serverMetadataJSON{Name: md.Name, Version: md.Version, Extensions: nonNil(md.Extensions)})
}

type metadataTensorJSON struct {
	Name     string  `json:"name"`
	DataType string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
	// Kind is set only for values OIP cannot carry (e.g. ONNX sequences and maps).
	Kind string `json:"kind,omitempty"`
	// Optional marks an input a request may leave out (as Triton's model
	// configuration says optional: true).
	Optional bool `json:"optional,omitempty"`
}

type modelMetadataJSON struct {
	Name     string               `json:"name"`
	Versions []string             `json:"versions,omitempty"`
	Platform string               `json:"platform"`
	Inputs   []metadataTensorJSON `json:"inputs"`
	Outputs  []metadataTensorJSON `json:"outputs"`
}

func (h *handler) modelMetadata(w http.ResponseWriter, r *http.Request) {
	md, err := h.b.ModelMetadata(r.Context(), namespace(r), r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := modelMetadataJSON{
		Name: md.Name, Versions: md.Versions, Platform: md.Platform,
		Inputs:  make([]metadataTensorJSON, 0, len(md.Inputs)),
		Outputs: make([]metadataTensorJSON, 0, len(md.Outputs)),
	}
	for _, s := range md.Inputs {
		t := tensorSpecJSON(s.Name, s.DataType.String(), s.Shape, s.Kind, s.Supported())
		t.Optional = s.Optional
		out.Inputs = append(out.Inputs, t)
	}
	for _, s := range md.Outputs {
		out.Outputs = append(out.Outputs, tensorSpecJSON(s.Name, s.DataType.String(), s.Shape, s.Kind, s.Supported()))
	}
	h.writeJSON(w, r, http.StatusOK, out)
}

func tensorSpecJSON(name, dt string, shape []int64, kind string, supported bool) metadataTensorJSON {
	t := metadataTensorJSON{Name: name, DataType: dt, Shape: nonNil(shape)}
	if !supported {
		t.Kind = kind
	}
	return t
}

// respBufs recycles response buffers; request bodies are not pooled because the
// decoded tensors alias them and the backend may keep them.
var respBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (h *handler) infer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ns, model := namespace(r), r.PathValue("model")
	status, answered := h.doInfer(w, r, ns, model)
	h.metrics.ObserveRequest(ns, model, answered, "rest", strconv.Itoa(status), time.Since(start))
}

// doInfer runs one inference and returns the HTTP status and the answering
// version. The model is resolved before the body is read, and what the body and
// its decoding hold is reserved in the in-flight budget until the answer is
// written.
func (h *handler) doInfer(w http.ResponseWriter, r *http.Request, ns, model string) (int, string) {
	headerLen := 0
	if v := r.Header.Get(HeaderContentLength); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return h.writeError(w, r, invalid("invalid %s %q", HeaderContentLength, v)), ""
		}
		headerLen = n
	}
	version := r.PathValue("version")
	inputs, known, err := h.b.ResolveInputs(r.Context(), ns, model, version)
	if err != nil {
		return h.writeError(w, r, err), ""
	}
	hold := h.budget.NewHold()
	defer hold.Release()
	body, err := h.readBody(w, r, &hold)
	if err != nil {
		return h.writeError(w, r, err), ""
	}
	req, err := DecodeRequest(body, headerLen, DecodeOptions{Model: model, Inputs: inputs, Known: known, Budget: &hold})
	if err != nil {
		return h.writeError(w, r, err), ""
	}
	req.Namespace, req.Model, req.Version = ns, model, version
	req.RoutingKey = r.Header.Get(HeaderRoutingKey)
	resp, err := h.b.Infer(r.Context(), req)
	if err == nil && resp == nil {
		err = errs.New(errs.Internal, "backend returned no response")
	}
	if err != nil {
		return h.writeError(w, r, err), ""
	}
	bufp := respBufs.Get().(*[]byte)
	defer func() {
		if cap(*bufp) <= 1<<20 { // don't pin rare huge buffers
			respBufs.Put(bufp)
		}
	}()
	out, jsonLen, err := EncodeInferResponse((*bufp)[:0], resp, req)
	*bufp = out
	if err != nil {
		return h.writeError(w, r, err), resp.ModelVersion
	}
	hdr := w.Header()
	if jsonLen > 0 {
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set(HeaderContentLength, strconv.Itoa(jsonLen))
	} else {
		hdr.Set("Content-Type", "application/json")
	}
	hdr.Set("Content-Length", strconv.Itoa(len(out)))
	if resp.ModelVersion != "" {
		hdr.Set(HeaderModelVersion, resp.ModelVersion)
	}
	if resp.Target != "" {
		hdr.Set(HeaderTarget, resp.Target)
	}
	if resp.ColdStart > 0 {
		hdr.Set(HeaderColdStart, strconv.FormatFloat(float64(resp.ColdStart.Microseconds())/1000, 'f', 3, 64))
	}
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(out); err != nil {
		h.log.DebugContext(r.Context(), "write inference response", "err", err)
	}
	return http.StatusOK, resp.ModelVersion
}

// readBody reads the whole body within the size limit, reserving its buffer in
// hold as it grows (so a client holds what it has sent, not what it claims).
func (h *handler) readBody(w http.ResponseWriter, r *http.Request, hold *limits.Hold) ([]byte, error) {
	if r.ContentLength > h.max {
		return nil, h.tooLarge()
	}
	rd := http.MaxBytesReader(w, r.Body, h.max)
	body, err := readN(rd, r.ContentLength, h.max, hold)
	if err == nil {
		return body, nil
	}
	if errs.KindOf(err) == errs.ResourceExhausted || errs.KindOf(err) == errs.TooLarge {
		return nil, err // the in-flight budget refused the buffer
	}
	if errors.Is(err, limits.ErrSlowBody) { // before the context: the failed read ended it
		return nil, errs.Wrap(errs.InvalidArgument, err, "request body arrived too slowly (see readTimeout and minTransferRate)")
	}
	if ctxErr := r.Context().Err(); ctxErr != nil {
		return nil, fmt.Errorf("read request body: %w", ctxErr)
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, h.tooLarge()
	}
	return nil, errs.Wrap(errs.InvalidArgument, err, "read request body")
}

// bodyPrealloc is the most readN allocates before any body bytes arrive.
const bodyPrealloc = 1 << 20

// unknownPrealloc is the first buffer for a body of unknown length (chunked).
const unknownPrealloc = 64 << 10

// readN reads a body of n bytes, or up to EOF when n < 0 (then at most maxLen+1
// bytes, so that the MaxBytesReader can refuse a longer one). Small bodies take
// one exact allocation; above bodyPrealloc the buffer at most doubles as data
// arrives, so a Content-Length the client never sends costs at most twice what
// it did send. budget is asked for every allocation first.
func readN(rd io.Reader, n, maxLen int64, budget Reserver) ([]byte, error) {
	limit := n
	first := min(n, bodyPrealloc)
	if n < 0 {
		limit, first = maxLen+1, min(maxLen+1, unknownPrealloc)
	}
	if err := budget.Reserve(first); err != nil {
		return nil, err
	}
	buf := make([]byte, first)
	off := 0
	for {
		m, err := io.ReadFull(rd, buf[off:])
		off += m
		if n < 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
			return buf[:off], nil // the end of a body of unknown length
		}
		if err != nil || int64(off) == limit {
			return buf[:off], err
		}
		next := min(limit, 2*int64(len(buf)))
		if err := budget.Reserve(next - int64(len(buf))); err != nil {
			return nil, err
		}
		grown := make([]byte, next) // exactly what was reserved
		copy(grown, buf[:off])
		buf = grown
	}
}

func (h *handler) tooLarge() error {
	limit := strconv.FormatInt(h.max, 10) + " bytes"
	if h.max%(1<<20) == 0 {
		limit = strconv.FormatInt(h.max>>20, 10) + " MiB"
	}
	return errs.New(errs.TooLarge, "request body exceeds the %s limit", limit)
}

type indexRequestJSON struct {
	Ready bool `json:"ready"`
}

type indexEntryJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
}

func (h *handler) repositoryIndex(w http.ResponseWriter, r *http.Request) {
	var req indexRequestJSON
	if err := h.readSmallJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	entries, err := h.b.RepositoryIndex(r.Context(), namespace(r), req.Ready)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]indexEntryJSON, len(entries))
	for i, e := range entries {
		out[i] = indexEntryJSON(e)
	}
	h.writeJSON(w, r, http.StatusOK, out)
}

type loadRequestJSON struct {
	Parameters map[string]json.RawMessage `json:"parameters"`
}

func (h *handler) load(w http.ResponseWriter, r *http.Request)   { h.loadUnload(w, r, h.b.LoadModel) }
func (h *handler) unload(w http.ResponseWriter, r *http.Request) { h.loadUnload(w, r, h.b.UnloadModel) }

func (h *handler) loadUnload(w http.ResponseWriter, r *http.Request, op func(context.Context, string, string) error) {
	var req loadRequestJSON
	if err := h.readSmallJSON(w, r, &req); err != nil {
		h.writeError(w, r, err)
		return
	}
	// Triton's config/file overrides and unload_dependents are not supported;
	// saying so beats silently ignoring them.
	for k := range req.Parameters {
		h.writeError(w, r, errs.New(errs.Unimplemented, "repository parameter %q is not supported", k))
		return
	}
	if err := op(r.Context(), namespace(r), r.PathValue("model")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// readSmallJSON decodes an optional JSON body (empty means all defaults).
func (h *handler) readSmallJSON(w http.ResponseWriter, r *http.Request, v any) error {
	hold := h.budget.NewHold()
	defer hold.Release()
	body, err := h.readBody(w, r, &hold)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return errs.New(errs.InvalidArgument, "invalid JSON at offset %d: %v", se.Offset, err)
		}
		return errs.New(errs.InvalidArgument, "invalid request body: %v", err)
	}
	return nil
}

type durationJSON struct {
	Count int64 `json:"count"`
	NS    int64 `json:"ns"`
}

type inferenceStatsJSON struct {
	Success       durationJSON `json:"success"`
	Fail          durationJSON `json:"fail"`
	Queue         durationJSON `json:"queue"`
	ComputeInput  durationJSON `json:"compute_input"`
	ComputeInfer  durationJSON `json:"compute_infer"`
	ComputeOutput durationJSON `json:"compute_output"`
}

type modelStatJSON struct {
	Name           string             `json:"name"`
	Version        string             `json:"version"`
	LastInference  int64              `json:"last_inference"`
	InferenceCount int64              `json:"inference_count"`
	ExecutionCount int64              `json:"execution_count"`
	InferenceStats inferenceStatsJSON `json:"inference_stats"`
	// BatchStats is always empty for now; Triton clients expect the key.
	BatchStats []struct{} `json:"batch_stats"`
}

type statsJSON struct {
	ModelStats []modelStatJSON `json:"model_stats"`
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	st, err := h.b.Stats(r.Context(), namespace(r), r.PathValue("model"), r.PathValue("version"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := statsJSON{ModelStats: make([]modelStatJSON, len(st))}
	for i, s := range st {
		last := int64(0)
		if !s.LastInference.IsZero() {
			last = s.LastInference.UnixMilli()
		}
		out.ModelStats[i] = modelStatJSON{
			Name: s.Name, Version: s.Version, LastInference: last,
			InferenceCount: s.InferenceCount, ExecutionCount: s.ExecutionCount,
			InferenceStats: inferenceStatsJSON{
				Success: durJSON(s.Success), Fail: durJSON(s.Fail), Queue: durJSON(s.Queue),
				ComputeInput: durJSON(s.ComputeInput), ComputeInfer: durJSON(s.ComputeInfer),
				ComputeOutput: durJSON(s.ComputeOutput),
			},
			BatchStats: []struct{}{},
		}
	}
	h.writeJSON(w, r, http.StatusOK, out)
}

func durJSON(d serving.Duration) durationJSON {
	return durationJSON{Count: d.Count, NS: d.Total.Nanoseconds()}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (h *handler) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.writeError(w, r, fmt.Errorf("encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError writes OIP's {"error": "..."} with the status of err's kind, logs
// server-side failures with their internal cause, and returns the status.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) int {
	kind := errs.KindOf(err)
	if kind == errs.Canceled {
		// Cancelled by the server (a shutdown past its deadline), not by the
		// client: answer with the server's reason.
		if cause := context.Cause(r.Context()); r.Context().Err() != nil && errs.KindOf(cause) != errs.Internal && errs.KindOf(cause) != errs.Canceled {
			err = errs.Wrap(errs.KindOf(cause), err, "%s", errs.PublicMessage(cause))
			kind = errs.KindOf(err)
		}
	}
	status := kind.HTTPStatus()
	switch {
	case status >= 500:
		h.log.ErrorContext(r.Context(), "oip request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	default:
		h.log.DebugContext(r.Context(), "oip request rejected", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if errors.Is(err, limits.ErrSlowBody) {
		status = http.StatusRequestTimeout // the connection closes after this answer
	}
	b := append(make([]byte, 0, 64), `{"error":`...)
	b = appendString(b, errs.PublicMessage(err))
	b = append(b, '}')
	hdr := w.Header()
	hdr.Del(HeaderContentLength)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	if ra := errs.RetryAfterOf(err); ra > 0 {
		hdr.Set("Retry-After", strconv.Itoa(int(max(1, (ra+time.Second-1)/time.Second))))
	}
	if kind == errs.Unauthenticated {
		hdr.Set("WWW-Authenticate", `Bearer realm="nimbus"`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return status
}

// WriteError answers err in OIP's format ({"error": "..."}), for middleware in
// front of the API (auth, the browser checks).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	(&handler{log: slog.New(slog.DiscardHandler)}).writeError(w, r, err)
}
