package spec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// Registry is what the apply engine needs from *registry.Registry.
type Registry interface {
	GetModel(ctx context.Context, ns, name string) (registry.Model, error)
	PatchModel(ctx context.Context, ns, name string, p registry.ModelPatch) (registry.Model, error)
	ListVersions(ctx context.Context, ns, model string) ([]registry.Version, error)
	// Resolve maps a reference ("", alias, version number) as serving does.
	Resolve(ctx context.Context, ns, model, ref string) (registry.Version, error)
	CreateVersion(ctx context.Context, req registry.CreateVersionRequest) (registry.Version, error)
	SetAlias(ctx context.Context, ns, model, alias string, version int64) error
	DeleteAlias(ctx context.Context, ns, model, alias string) error
	SetModelServing(ctx context.Context, ns, model string, s registry.ServingConfig) (registry.Model, error)
	DeleteModel(ctx context.Context, ns, model string, force bool) error
	InspectBlob(ctx context.Context, format, sha256 string) (tensor.Signature, error)
	PutBlob(ctx context.Context, body io.Reader, want string) (registry.BlobInfo, error)
	ListModels(ctx context.Context, ns string, opt registry.ListOptions) (registry.ModelPage, error)
	Store() registry.Store
	// Atomic runs fn in one store transaction that the resource store and the
	// audit log join (they share the registry's database): a commit's registry
	// changes, resource rows and events are written together or not at all.
	Atomic(ctx context.Context, fn func(ctx context.Context) error) error
	// AddDeleteGuard registers a check that runs inside every delete's
	// transaction (see registry.DeleteGuard).
	AddDeleteGuard(g registry.DeleteGuard)
}

// BlobPutter is where a Fetcher writes what it fetched.
type BlobPutter interface {
	PutBlob(ctx context.Context, body io.Reader, want string) (registry.BlobInfo, error)
}

// Fetcher fetches a declared artifact (file://, https://) into the blob store,
// verifying its sha256. Check makes the checks Fetch makes before it reads or
// connects (a dry run uses it). The message of a failed Fetch's outermost
// errs.Error is what the caller sees; its cause is for the log.
type Fetcher interface {
	Fetch(ctx context.Context, a Artifact, dst BlobPutter) (registry.BlobInfo, error)
	Check(a Artifact) error
}

// Routes receives the InferenceServices to serve. SetService replaces a
// service's routing table atomically.
type Routes interface {
	SetService(ns, name string, generation int64, s ServiceSpec)
	DeleteService(ns, name string)
}

// Options configure an Engine. Resources and Audit must live in the registry's
// store (the SQLite store is all three), so that Registry.Atomic covers them and
// a commit is one transaction.
type Options struct {
	Registry  Registry
	Resources ResourceStore
	Audit     audit.Log
	Fetcher   Fetcher
	Routes    Routes
	// Observer adds live state (loaded versions, traffic counters) to status;
	// nil leaves it out.
	Observer Observer
	Logger   *slog.Logger
	Now      func() time.Time
	// MaxDecodes bounds how many requests decode their YAML at once (default
	// GOMAXPROCS, at most 4: a request at the bounds prescan allows costs
	// about 100 MB while it decodes); the others wait with their request's
	// context.
	MaxDecodes int
	// Resync is how often controllers look at every resource again, to
	// repair what a missed event left behind (default 10 minutes).
	Resync time.Duration
	// Clock is the controllers' clock (default the wall clock).
	Clock reconcile.Clock
}

// Engine applies declared resources: it validates every document, then makes the
// registry, the resource store and the router match, recording each change in
// the audit log. Applies and deletes run one at a time.
type Engine struct {
	opts    Options
	log     *slog.Logger
	mu      sync.Mutex    // one apply or delete at a time; no network I/O under it
	decodes chan struct{} // a slot per running decode
	// services routes stored InferenceServices (nil without Routes).
	services *reconcile.Controller
}

// NewEngine builds an Engine.
func NewEngine(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Minute
	}
	if opts.MaxDecodes <= 0 {
		opts.MaxDecodes = min(runtime.GOMAXPROCS(0), 4)
	}
	e := &Engine{opts: opts, log: opts.Logger.With("component", "apply"), decodes: make(chan struct{}, opts.MaxDecodes)}
	if opts.Registry != nil && opts.Resources != nil {
		opts.Registry.AddDeleteGuard(e.guardDelete)
	}
	if opts.Routes != nil && opts.Resources != nil {
		rr := &routeReconciler{resources: opts.Resources, routes: opts.Routes, now: opts.Now, routed: map[reconcile.Key]bool{}}
		e.services = reconcile.New("inferenceservices", rr,
			reconcile.Options{List: rr.list, Resync: opts.Resync, Clock: opts.Clock, Logger: e.log})
	}
	return e
}

// File is one named input of an apply.
type File struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// Request is one apply (or delete) call.
type Request struct {
	Files []File `json:"files"`
	// Namespace is given to documents that name none (default "default").
	Namespace string `json:"namespace,omitempty"`
	DryRun    bool   `json:"dryRun,omitempty"`
	// Actor and Source are recorded in the audit log (set by the server, not the body).
	Actor  string `json:"-"`
	Source string `json:"-"`
	// Authorize, when set, is asked about every document's namespace before
	// anything else happens; an error refuses the whole request (set by the
	// server from the caller's token).
	Authorize func(namespace string) error `json:"-"`
}

// Actions of a Result.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
	ActionDeleted    = "deleted"
)

// Result is what happened (or, on a dry run, would happen) to one resource.
type Result struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Action     string `json:"action"`
	Generation int64  `json:"generation,omitempty"`
	Diff       string `json:"diff,omitempty"`
	// Fetch lists the source URIs (credentials dropped) of the new artifacts
	// this apply fetched; on a dry run, those it would fetch.
	Fetch []string `json:"fetch,omitempty"`
}

// Response is the outcome of an apply or delete.
type Response struct {
	DryRun  bool     `json:"dryRun"`
	Results []Result `json:"results"`
}

// Changed reports whether any resource was (or on a dry run would be)
// created, changed or deleted.
func (r *Response) Changed() bool {
	for _, res := range r.Results {
		if res.Action != ActionUnchanged {
			return true
		}
	}
	return false
}

// Errors is every problem an apply found; nothing was changed.
type Errors []FieldError

func (e Errors) Error() string {
	var b strings.Builder
	for i, fe := range e {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(fe.String())
	}
	return b.String()
}

// sorted orders the errors by file and line, so they read top to bottom.
func (e Errors) sorted() Errors {
	slices.SortStableFunc(e, func(a, b FieldError) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return a.Line - b.Line
	})
	return e
}

// Status is the HTTP status of the whole answer: 409 when a conflict is among
// the errors, 404 when every error is a missing reference, else 400.
func (e Errors) Status() int {
	notFound := len(e) > 0
	for _, fe := range e {
		if fe.Code == errs.PermissionDenied.String() {
			return errs.PermissionDenied.HTTPStatus()
		}
	}
	for _, fe := range e {
		switch fe.Code {
		case errs.Conflict.String(), errs.AlreadyExists.String():
			return errs.Conflict.HTTPStatus()
		case errs.NotFound.String():
		default:
			notFound = false
		}
	}
	if notFound {
		return errs.NotFound.HTTPStatus()
	}
	return errs.InvalidArgument.HTTPStatus()
}

// String renders "file:line: kind/name: field: message", leaving out empty parts.
// Without a file it names the resource ("inferenceservice/fraud") where it can.
func (fe FieldError) String() string {
	var parts []string
	switch {
	case fe.File != "" && fe.Line > 0:
		parts = append(parts, fe.File+":"+strconv.Itoa(fe.Line))
	case fe.File != "":
		parts = append(parts, fe.File)
	case fe.Name != "" && fe.Kind != "":
		parts = append(parts, strings.ToLower(fe.Kind)+"/"+fe.Name)
	case fe.Name != "":
		parts = append(parts, fe.Name)
	case fe.Line > 0:
		parts = append(parts, "line "+strconv.Itoa(fe.Line))
	}
	if fe.Field != "" {
		parts = append(parts, fe.Field)
	}
	msg := fe.Message
	if msg == "" {
		msg = fe.Code
	}
	if msg != "" {
		parts = append(parts, msg)
	}
	return strings.Join(parts, ": ")
}

// decodeAll decodes, defaults and statically validates every file, and refuses a
// resource declared twice.
func decodeAll(req Request) ([]Document, Errors) {
	docs, _, all := decodeRequest(req)
	return docs, all
}

// decodeRequest is decodeAll that also returns the documents of a known kind
// that failed decoding or validation (defaulted: their namespace is known),
// so that they are authorized too.
func decodeRequest(req Request) (docs, invalid []Document, all Errors) {
	ns := req.Namespace
	if ns == "" {
		ns = registry.DefaultNamespace
	}
	seen := map[string]Document{}
	budget := &scanBudget{}
	for _, f := range req.Files {
		ds, partial, fes, stop := decodeFile(f.Name, f.Content, budget)
		all = append(all, fes...)
		if stop {
			break // the request's bounds are spent: the rest is not even scanned
		}
		all = append(all, validatePartial(partial, ns)...)
		for _, d := range partial {
			invalid = append(invalid, d.Document)
		}
		for _, d := range ds {
			Default(d.Object, ns)
			if fes := Validate(d); len(fes) > 0 {
				all = append(all, fes...)
				invalid = append(invalid, d)
				continue
			}
			m := d.Object.GetMeta()
			key := d.Object.GetKind() + "/" + m.Namespace + "/" + m.Name
			if prev, dup := seen[key]; dup {
				all = append(all, d.errorf("metadata.name", errs.InvalidArgument,
					"%s %s/%s is declared twice (also at %s:%d)", d.Object.GetKind(), m.Namespace, m.Name, prev.File, prev.Line))
				continue
			}
			seen[key] = d
			docs = append(docs, d)
		}
	}
	if len(all) == 0 && len(docs) == 0 {
		all = append(all, FieldError{Message: "no resources found in the input", Code: errs.InvalidArgument.String()})
	}
	return docs, invalid, all
}

// validatePartial validates documents that decoded with errors, keeping only
// problems of fields the decode errors did not already cover (a field left at
// zero because its value was refused is not "required" too). The documents are
// never applied.
func validatePartial(partial []partialDoc, ns string) []FieldError {
	var out []FieldError
	for _, d := range partial {
		// The object holding a refused field is suspect as a whole: a
		// misspelled "weigth" leaves "weight" unset on purpose of nobody.
		bad := make([]string, 0, len(d.errs))
		for _, fe := range d.errs {
			parent := fe.Field
			if i := strings.LastIndexAny(parent, ".["); i > 0 {
				parent = parent[:i]
			}
			bad = append(bad, parent)
		}
		Default(d.Object, ns)
		for _, fe := range Validate(d.Document) {
			if !overlaps(fe.Field, bad) {
				out = append(out, fe)
			}
		}
	}
	return out
}

// overlaps reports whether field is one of paths, inside one, or contains one.
func overlaps(field string, paths []string) bool {
	for _, p := range paths {
		if p == "" || field == p || strings.HasPrefix(field, p+".") || strings.HasPrefix(field, p+"[") ||
			strings.HasPrefix(p, field+".") || strings.HasPrefix(p, field+"[") || field == "" {
			return true
		}
	}
	return false
}

// errorf makes a FieldError at field of d, with the field's line when known.
func (d Document) errorf(field string, kind errs.Kind, format string, args ...any) FieldError {
	m := d.Object.GetMeta()
	return FieldError{
		File: d.File, Line: d.lineOf(field), Kind: d.Object.GetKind(), Name: m.Name,
		Field: field, Message: fmt.Sprintf(format, args...), Code: kind.String(),
	}
}

// lineOf is the line of field, else of its nearest parent, else of the document.
func (d Document) lineOf(field string) int {
	for p := field; p != ""; {
		if l, ok := d.Lines[p]; ok && l > 0 {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return d.Line
}

// Apply validates every document and, unless it is a dry run, makes it so.
// Validation errors come back as Errors and change nothing.
//
// A refused apply fetches nothing: every document is authorized, and the
// apply is planned once with the artifacts checked but not fetched, before
// any source is read. Only an apply that nothing but its artifacts can still
// refuse fetches them (outside the lock, so a slow source holds up no other
// apply or delete) and is planned again with what they hold.
func (e *Engine) Apply(ctx context.Context, req Request) (*Response, error) {
	docs, invalid, fes, err := e.decode(ctx, req)
	if err != nil {
		return nil, err
	}
	if denied := authorize(req, docs, invalid); len(denied) > 0 {
		return nil, denied
	}
	if len(docs) == 0 {
		return nil, fes.sorted()
	}
	mode := checkArtifacts
	if req.DryRun {
		mode = inspectArtifacts
	}
	arts := e.prepareArtifacts(ctx, mode, docs)
	if req.DryRun || len(arts) == 0 { // nothing to fetch: this plan is the one to commit
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.planAndCommit(ctx, req, docs, fes, arts)
	}
	e.mu.Lock()
	p := e.plan(ctx, req, docs, fes, arts)
	e.mu.Unlock()
	if err := p.refusal(); err != nil {
		return nil, err
	}
	arts = e.prepareArtifacts(ctx, fetchArtifacts, docs)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.planAndCommit(ctx, req, docs, fes, arts)
}

// plan checks docs against the registry (fes are the problems decoding
// found) and builds the steps that apply them. The caller holds e.mu.
func (e *Engine) plan(ctx context.Context, req Request, docs []Document, fes Errors, arts map[artifactKey]*artifact) *plan {
	// The documents that passed the static checks are planned even when others
	// failed, so one answer reports every problem of every document.
	p := &plan{e: e, req: req, models: map[string]*modelPlan{}, services: map[string]bool{}, errs: slices.Clone(fes), artifacts: arts}
	for _, d := range docs {
		if s, ok := d.Object.(*InferenceService); ok {
			p.services[s.Metadata.Namespace+"/"+s.Metadata.Name] = true
		}
	}
	for _, d := range docs {
		if m, ok := d.Object.(*Model); ok {
			p.planModel(ctx, d, m)
		}
	}
	for _, d := range docs {
		if s, ok := d.Object.(*InferenceService); ok {
			p.planService(ctx, d, s)
		}
	}
	return p
}

// refusal is why the plan cannot be applied, or nil.
func (p *plan) refusal() error {
	if p.internal != nil {
		return p.internal
	}
	if len(p.errs) > 0 {
		return p.errs.sorted()
	}
	return nil
}

// planAndCommit plans docs and, unless it is a dry run, commits the plan.
// The caller holds e.mu.
func (e *Engine) planAndCommit(ctx context.Context, req Request, docs []Document, fes Errors, arts map[artifactKey]*artifact) (*Response, error) {
	p := e.plan(ctx, req, docs, fes, arts)
	if err := p.refusal(); err != nil {
		return nil, err
	}
	resp := &Response{DryRun: req.DryRun, Results: make([]Result, 0, len(p.steps))}
	for _, st := range p.steps {
		resp.Results = append(resp.Results, st.result)
	}
	if req.DryRun {
		return resp, nil
	}
	// Validation passed: the changes are made even if the client goes away now.
	// Every step and its audit event are one transaction, so a failure (or a
	// crash) part way leaves nothing of the apply.
	// The engine records one event per resource, with its diff: the registry
	// calls of the commit record none of their own.
	ctx = context.WithValue(registry.WithoutAudit(context.WithoutCancel(ctx)), applyingKey{}, p.services)
	err := e.opts.Registry.Atomic(ctx, func(ctx context.Context) error {
		for i, st := range p.steps {
			if err := st.commit(ctx); err != nil {
				return fmt.Errorf("%s %s/%s: %w", st.result.Kind, st.result.Namespace, st.result.Name, err)
			}
			resp.Results[i] = st.result
			if st.result.Action != ActionUnchanged {
				if err := e.record(ctx, req, st); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apply: nothing was applied: %w", err)
	}
	for _, st := range p.steps {
		if st.after != nil {
			st.after(ctx)
		}
	}
	return resp, nil
}

// plan holds what one apply will do, built while validating.
type plan struct {
	e        *Engine
	req      Request
	errs     Errors
	internal error
	steps    []*step
	// models declared in this apply, by namespace/name, for the services'
	// reference checks.
	models map[string]*modelPlan
	// services declared in this apply, by namespace/name.
	services map[string]bool
	// artifacts of the new versions, prepared before the lock was taken.
	artifacts map[artifactKey]*artifact
}

// step is one resource's change, ready to commit.
type step struct {
	result Result
	// commit writes the change through ctx, inside the apply's transaction.
	commit func(ctx context.Context) error
	// after, if set, runs once the transaction committed: in-memory state (the
	// router) follows what is stored, never what was rolled back.
	after func(ctx context.Context)
	// summary is one line for the audit log.
	summary string
	action  string // audit action
}

func (p *plan) fail(err error) {
	if p.internal == nil {
		p.internal = err
	}
}

// modelPlan is the state a Model will have after the apply.
type modelPlan struct {
	exists   bool
	versions map[int64]registry.Version // existing and declared
	aliases  map[string]int64
}

// storedOrNil returns the stored resource, or nil when there is none.
func (e *Engine) storedOrNil(ctx context.Context, kind, ns, name string) (*StoredResource, error) {
	r, err := e.opts.Resources.GetResource(ctx, kind, ns, name)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// checkResourceVersion enforces metadata.resourceVersion when the document gives one.
func (p *plan) checkResourceVersion(d Document, stored *StoredResource) bool {
	m := d.Object.GetMeta()
	if m.ResourceVersion == "" {
		return true
	}
	want, err := strconv.ParseInt(m.ResourceVersion, 10, 64)
	if err != nil || want < 1 {
		p.errs = append(p.errs, d.errorf("metadata.resourceVersion", errs.InvalidArgument,
			"must be a positive number as the server wrote it, got %q", m.ResourceVersion))
		return false
	}
	switch {
	case stored == nil:
		p.errs = append(p.errs, d.errorf("metadata.resourceVersion", errs.Conflict,
			"%s %s/%s does not exist (any more); remove resourceVersion to create it", d.Object.GetKind(), m.Namespace, m.Name))
		return false
	case stored.ResourceVersion != want:
		p.errs = append(p.errs, d.errorf("metadata.resourceVersion", errs.Conflict,
			"%s %s/%s was changed (resourceVersion %d, now %d); get it again and retry",
			d.Object.GetKind(), m.Namespace, m.Name, want, stored.ResourceVersion))
		return false
	}
	return true
}

// record appends the audit event of a step inside its transaction: a change is
// never stored without its event, so a failing append fails the change.
func (e *Engine) record(ctx context.Context, req Request, st *step) error {
	if e.opts.Audit == nil {
		return nil
	}
	actor, source := req.Actor, req.Source
	if actor == "" {
		actor = audit.LocalActor
	}
	if source == "" {
		source = audit.SourceAPI
	}
	ev := audit.Event{
		Time: e.opts.Now(), Actor: actor, Source: source, Action: st.action,
		Kind: st.result.Kind, Namespace: st.result.Namespace, Name: st.result.Name,
		Generation: st.result.Generation, Summary: st.summary, Diff: st.result.Diff,
	}
	if _, err := e.opts.Audit.AppendEvent(ctx, ev); err != nil {
		return fmt.Errorf("record audit event: %w", err)
	}
	return nil
}

// yamlOf renders obj for a diff; an error yields its message so a diff still shows.
func yamlOf(obj Object) []byte {
	if obj == nil {
		return nil
	}
	b, err := MarshalYAML(obj)
	if err != nil {
		return []byte("# " + err.Error() + "\n")
	}
	return b
}

func diffOf(before, after Object) string {
	from, to := "live", "applied"
	if before == nil {
		from = "/dev/null"
	}
	if after == nil {
		to = "/dev/null"
	}
	return Diff(yamlOf(before), yamlOf(after), from, to)
}

func marshalSpec(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	return b, nil
}

func emptyToNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
