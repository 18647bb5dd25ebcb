package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// The apply contract's types are the server's own (package spec).
type (
	// ApplyFile is one named input of an apply or delete: YAML (or JSON)
	// holding one or more documents. Name is what errors point at.
	ApplyFile = spec.File
	// ApplyResult is what an apply or delete did, or on a dry run would do.
	ApplyResult = spec.Response
	// ResourceResult is what happened to one resource; Diff is a unified diff
	// of its YAML, empty when unchanged.
	ResourceResult = spec.Result
)

// Actions of a ResourceResult.
const (
	ActionCreated    = spec.ActionCreated
	ActionConfigured = spec.ActionConfigured
	ActionUnchanged  = spec.ActionUnchanged
	ActionDeleted    = spec.ActionDeleted
)

// ApplyOptions tune an apply or delete.
type ApplyOptions struct {
	// Namespace is given to documents that name none (server default "default").
	Namespace string
	// DryRun validates and reports what would change without changing anything.
	DryRun bool
}

// ApplyError is an apply or delete the server refused as a whole: every problem
// it found in every document. Nothing was changed.
type ApplyError struct {
	Status int // HTTP status: 400, 409 when a document conflicts, 404 for a missing resource on delete
	Errors []spec.FieldError

	api *APIError
}

// Error lists every problem, one per line, as "file:line: field: message".
func (e *ApplyError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.String()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the server's answer as an *APIError, so IsNotFound and
// errors.As work on an ApplyError too.
func (e *ApplyError) Unwrap() error {
	if e.api == nil {
		return nil
	}
	return e.api
}

// decodeAnswerError builds the error of a non-2xx answer: an *ApplyError for a
// 4xx answer carrying {"errors": [...]} (only apply and delete send those),
// else an *APIError.
func decodeAnswerError(status int, body []byte) error {
	ae := decodeError(status, body)
	if status < 400 || status >= 500 {
		return ae
	}
	var env struct {
		Errors []spec.FieldError `json:"errors"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Errors) == 0 {
		return ae
	}
	return &ApplyError{Status: status, Errors: env.Errors, api: ae}
}

// Apply sends files to the server, which validates every document before
// changing anything and then creates or updates the resources they declare.
// A refused apply is an *ApplyError listing every problem.
func (c *Client) Apply(ctx context.Context, files []ApplyFile, opt ApplyOptions) (*ApplyResult, error) {
	return c.applyCall(ctx, "/api/v1/apply", files, opt)
}

// DeleteFiles deletes the resources files declare (only their kind, namespace
// and name matter). A missing resource makes the whole call fail with an
// *ApplyError (status 404) and nothing is deleted.
func (c *Client) DeleteFiles(ctx context.Context, files []ApplyFile, opt ApplyOptions) (*ApplyResult, error) {
	return c.applyCall(ctx, "/api/v1/delete", files, opt)
}

func (c *Client) applyCall(ctx context.Context, path string, files []ApplyFile, opt ApplyOptions) (*ApplyResult, error) {
	if files == nil {
		files = []ApplyFile{}
	}
	body := spec.Request{Files: files, Namespace: opt.Namespace, DryRun: opt.DryRun}
	var out ApplyResult
	if err := c.call(ctx, request{method: http.MethodPost, path: path, json: body}, &out); err != nil {
		return nil, err
	}
	if out.Results == nil {
		out.Results = []ResourceResult{}
	}
	return &out, nil
}

// NormalizeKind resolves what a user types for a kind (model, models,
// inferenceservice, inferenceservices, isvc; any case, optionally with the
// ".nimbus.dev" group) to the kind ("Model") and its plural ("models") as
// the REST paths name it.
func NormalizeKind(s string) (kind, plural string, err error) {
	if kind, err = spec.NormalizeKind(s); err != nil {
		return "", "", err
	}
	return kind, spec.Plural(kind), nil
}

func resourcesPath(ns, plural string) string {
	if ns == "" {
		ns = registry.DefaultNamespace
	}
	return "/api/v1/namespaces/" + esc(ns) + "/resources/" + plural
}

// decodeObject decodes one resource; its own "kind" wins over want.
func decodeObject(raw json.RawMessage, want string) (spec.Object, error) {
	var tm spec.TypeMeta
	if err := json.Unmarshal(raw, &tm); err == nil && tm.Kind != "" {
		want = tm.Kind
	}
	obj, err := spec.NewObject(want)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", want, err)
	}
	return obj, nil
}

// GetResource returns one resource with its status: a *spec.Model or a
// *spec.InferenceService. ns "" is "default".
func (c *Client) GetResource(ctx context.Context, kind, ns, name string) (spec.Object, error) {
	k, plural, err := NormalizeKind(kind)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.call(ctx, request{method: http.MethodGet, path: resourcesPath(ns, plural) + "/" + esc(name)}, &raw); err != nil {
		return nil, err
	}
	return decodeObject(raw, k)
}

// ListResources lists a kind's resources of namespace ns ("" is "default"), or
// of every namespace, by namespace and then name.
func (c *Client) ListResources(ctx context.Context, kind, ns string, allNamespaces bool) ([]spec.Object, error) {
	k, plural, err := NormalizeKind(kind)
	if err != nil {
		return nil, err
	}
	path := resourcesPath(ns, plural)
	if allNamespaces {
		path = "/api/v1/resources/" + plural
	}
	var out struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: path}, &out); err != nil {
		return nil, err
	}
	objs := make([]spec.Object, 0, len(out.Items))
	for _, raw := range out.Items {
		obj, err := decodeObject(raw, k)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// DeleteResource deletes one resource by name; with dryRun it only checks that it could.
func (c *Client) DeleteResource(ctx context.Context, kind, ns, name string, dryRun bool) error {
	_, plural, err := NormalizeKind(kind)
	if err != nil {
		return err
	}
	req := request{method: http.MethodDelete, path: resourcesPath(ns, plural) + "/" + esc(name)}
	if dryRun {
		req.query = url.Values{"dryRun": {"true"}}
	}
	return c.call(ctx, req, nil)
}

// Events lists audit events matching q, oldest first. q.Namespace "" means
// every namespace. Page with q.After set to the last ID seen; q.Latest asks
// for the newest q.Limit events instead of the oldest.
func (c *Client) Events(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	v := url.Values{}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if q.Name != "" {
		v.Set("name", q.Name)
	}
	if q.After > 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Latest {
		v.Set("latest", "true")
	}
	path := "/api/v1/events"
	if q.Namespace != "" {
		path = "/api/v1/namespaces/" + esc(q.Namespace) + "/events"
	}
	var out struct {
		Items []audit.Event `json:"items"`
	}
	if err := c.call(ctx, request{method: http.MethodGet, path: path, query: v}, &out); err != nil {
		return nil, err
	}
	if out.Items == nil {
		out.Items = []audit.Event{}
	}
	return out.Items, nil
}

// SyncGitSource syncs a GitSource now and returns the status its pass left.
func (c *Client) SyncGitSource(ctx context.Context, ns, name string) (spec.GitSourceStatus, error) {
	var st spec.GitSourceStatus
	err := c.call(ctx, request{method: http.MethodPost, path: resourcesPath(ns, "gitsources") + "/" + esc(name) + "/sync"}, &st)
	return st, err
}

// RolloutCommand runs command (promote, abort, retry) on InferenceService
// ns/name's rollout and returns the service after it.
func (c *Client) RolloutCommand(ctx context.Context, ns, name, command string) (*spec.InferenceService, error) {
	var raw json.RawMessage
	if err := c.call(ctx, request{method: http.MethodPost, path: resourcesPath(ns, "inferenceservices") + "/" + esc(name) + "/rollout/" + esc(command)}, &raw); err != nil {
		return nil, err
	}
	obj, err := decodeObject(raw, spec.KindInferenceService)
	if err != nil {
		return nil, err
	}
	return obj.(*spec.InferenceService), nil
}
