// Package apply is the engine that applies declared resources (package spec):
// it validates every document against the live registry, fetches the sources
// of new versions outside its lock, commits each apply or delete as one
// transaction with its audit events, runs the router's controller so that
// what is stored is what is served (routing.go), and answers get, list and
// delete with live status.
package apply

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
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/delivery"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/rollout"
	"github.com/nimbus-ai/nimbus/spec"
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
// service's routing table atomically; route, when set, is what a rollout
// makes the service's one target serve instead of the declared ref.
type Routes interface {
	SetService(ns, name string, generation int64, s spec.ServiceSpec, route *rollout.Route)
	DeleteService(ns, name string)
}

// Rollouts decides the progressive rollouts of services that declare one
// (*delivery.Controller); the InferenceService controller calls it in each
// pass, so one writer routes a service and records its status.
type Rollouts interface {
	Reconcile(ctx context.Context, svc delivery.Service) (delivery.Result, error)
	Deleted(ctx context.Context, ns, name string) error
}

// Options configure an Engine. Resources and Audit must live in the registry's
// store (the SQLite store is all three), so that Registry.Atomic covers them and
// a commit is one transaction.
type Options struct {
	Registry  Registry
	Resources spec.ResourceStore
	Audit     audit.Log
	Fetcher   Fetcher
	Routes    Routes
	// Rollouts runs services' rollouts (nil: a rollout spec is stored
	// but nothing rolls out).
	Rollouts Rollouts
	// Observer adds live state (loaded versions, traffic counters) to status;
	// nil leaves it out.
	Observer Observer
	// Triggers adds a running trigger's counters to its status; nil: none.
	Triggers TriggerObserver
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
	// OnChange, when set, is told of every resource a commit created,
	// changed or deleted, with its owner after the change ("" for none):
	// the GitOps controller looks at the sources concerned.
	OnChange func(kind, ns, name, managedBy string)
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
		rr := &routeReconciler{resources: opts.Resources, routes: opts.Routes, rollouts: opts.Rollouts, now: opts.Now, routed: map[reconcile.Key]bool{}}
		e.services = reconcile.New("inferenceservices", rr,
			reconcile.Options{List: rr.list, Resync: opts.Resync, Clock: opts.Clock, Logger: e.log})
	}
	return e
}

// Apply validates every document and, unless it is a dry run, makes it so.
// Validation errors come back as Errors and change nothing.
//
// A refused apply fetches nothing: every document is authorized, and the
// apply is planned once with the artifacts checked but not fetched, before
// any source is read. Only an apply that nothing but its artifacts can still
// refuse fetches them (outside the lock, so a slow source holds up no other
// apply or delete) and is planned again with what they hold.
func (e *Engine) Apply(ctx context.Context, req spec.Request) (*spec.Response, error) {
	return e.Sync(ctx, req, SyncOptions{})
}

// SyncOptions is what a GitSource's apply adds to a request: whose resources
// these are, what to prune, and where its artifacts come from.
type SyncOptions struct {
	// Owner, when set, owns every resource the apply writes
	// (metadata.managedBy); a resource another source owns is refused.
	Owner *spec.OwnerRef
	// Prune deletes, in the same transaction, the resources Owner owns in
	// PruneNamespaces that the request no longer declares.
	Prune           bool
	PruneNamespaces []string
	// Fetcher, when set, fetches this apply's artifacts instead of the
	// engine's (a GitSource reads paths inside its commit).
	Fetcher Fetcher
	// AllowEmpty lets an input that declares nothing prune everything Owner
	// owns (a GitSource's spec.allowEmpty).
	AllowEmpty bool
}

// Sync is Apply with the options of a GitSource's sync.
func (e *Engine) Sync(ctx context.Context, req spec.Request, so SyncOptions) (*spec.Response, error) {
	docs, invalid, fes, err := e.decode(ctx, req)
	if err != nil {
		return nil, err
	}
	if so.AllowEmpty && so.Prune && len(docs) == 0 && len(fes) == 1 && fes[0].Message == spec.NoResources {
		fes = nil
	}
	if denied := authorize(req, docs, invalid); len(denied) > 0 {
		return nil, denied
	}
	if len(docs) == 0 && (len(fes) > 0 || !so.Prune) {
		return nil, fes.Sorted()
	}
	f := so.Fetcher
	if f == nil {
		f = e.opts.Fetcher
	}
	mode := checkArtifacts
	if req.DryRun {
		mode = inspectArtifacts
	}
	arts := e.prepareArtifacts(ctx, mode, docs, f)
	if req.DryRun || len(arts) == 0 { // nothing to fetch: this plan is the one to commit
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.planAndCommit(ctx, req, so, docs, fes, arts)
	}
	e.mu.Lock()
	p := e.plan(ctx, req, so, docs, fes, arts)
	e.mu.Unlock()
	if err := p.refusal(); err != nil {
		return nil, err
	}
	arts = e.prepareArtifacts(ctx, fetchArtifacts, docs, f)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.planAndCommit(ctx, req, so, docs, fes, arts)
}

// plan checks docs against the registry (fes are the problems decoding
// found) and builds the steps that apply them. The caller holds e.mu.
func (e *Engine) plan(ctx context.Context, req spec.Request, so SyncOptions, docs []spec.Document, fes spec.Errors, arts map[artifactKey]*artifact) *plan {
	// The documents that passed the static checks are planned even when others
	// failed, so one answer reports every problem of every document.
	p := &plan{e: e, req: req, sync: so, models: map[string]*modelPlan{}, services: map[string]bool{}, errs: slices.Clone(fes), artifacts: arts}
	if err := p.preload(ctx, docs); err != nil {
		p.fail(err)
		return p
	}
	for _, d := range docs {
		if s, ok := d.Object.(*spec.InferenceService); ok {
			p.services[s.Metadata.Namespace+"/"+s.Metadata.Name] = true
		}
	}
	for _, d := range docs {
		if m, ok := d.Object.(*spec.Model); ok {
			p.planModel(ctx, d, m)
		}
	}
	for _, d := range docs {
		if s, ok := d.Object.(*spec.InferenceService); ok {
			p.planService(ctx, d, s)
		}
	}
	connections := map[string]*spec.Connection{}
	for _, d := range docs {
		switch o := d.Object.(type) {
		case *spec.GitSource:
			p.planGitSource(ctx, d, o)
		case *spec.Connection:
			p.planConnection(ctx, d, o)
			connections[o.Metadata.Namespace+"/"+o.Metadata.Name] = o
		}
	}
	for _, d := range docs {
		if t, ok := d.Object.(*spec.Trigger); ok {
			p.planTrigger(ctx, d, t, connections)
		}
	}
	// Only a plan that can commit prunes: a document that failed to decode
	// is still declared, and must not read as deleted.
	if so.Prune && so.Owner != nil && p.internal == nil && len(p.errs) == 0 {
		p.planPrune(ctx, docs)
	}
	return p
}

// refusal is why the plan cannot be applied, or nil.
func (p *plan) refusal() error {
	if p.internal != nil {
		return p.internal
	}
	if len(p.errs) > 0 {
		return p.errs.Sorted()
	}
	return nil
}

// planAndCommit plans docs and, unless it is a dry run, commits the plan.
// The caller holds e.mu.
func (e *Engine) planAndCommit(ctx context.Context, req spec.Request, so SyncOptions, docs []spec.Document, fes spec.Errors, arts map[artifactKey]*artifact) (*spec.Response, error) {
	p := e.plan(ctx, req, so, docs, fes, arts)
	if err := p.refusal(); err != nil {
		return nil, err
	}
	resp := &spec.Response{DryRun: req.DryRun, Results: make([]spec.Result, 0, len(p.steps))}
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
			if st.result.Action != spec.ActionUnchanged && !st.recorded {
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
		if e.opts.OnChange != nil && st.result.Action != spec.ActionUnchanged {
			e.opts.OnChange(st.result.Kind, st.result.Namespace, st.result.Name, st.managedBy)
		}
	}
	return resp, nil
}

// plan holds what one apply will do, built while validating.
type plan struct {
	e        *Engine
	req      spec.Request
	sync     SyncOptions
	errs     spec.Errors
	internal error
	steps    []*step
	// models declared in this apply, by namespace/name, for the services'
	// reference checks.
	models map[string]*modelPlan
	// services declared in this apply, by namespace/name.
	services map[string]bool
	// artifacts of the new versions, prepared before the lock was taken.
	artifacts map[artifactKey]*artifact
	// stored holds the stored resources of the kinds and namespaces many
	// documents declare, read with one list (see preload).
	stored map[[2]string]map[string]*spec.StoredResource
}

// preloadAt is how many documents of one kind in one namespace make planning
// list them at once instead of reading each (a GitSource of 1,000 services).
const preloadAt = 16

// preload lists the stored resources of every kind and namespace that at
// least preloadAt documents declare. The caller holds e.mu, so nothing
// changes them meanwhile.
func (p *plan) preload(ctx context.Context, docs []spec.Document) error {
	counts := map[[2]string]int{}
	for _, d := range docs {
		counts[[2]string{d.Object.GetKind(), d.Object.GetMeta().Namespace}]++
	}
	for k, n := range counts {
		if n < preloadAt {
			continue
		}
		rs, err := p.e.opts.Resources.ListResources(ctx, k[0], k[1])
		if err != nil {
			return err
		}
		m := make(map[string]*spec.StoredResource, len(rs))
		for i := range rs {
			m[rs[i].Name] = &rs[i]
		}
		if p.stored == nil {
			p.stored = map[[2]string]map[string]*spec.StoredResource{}
		}
		p.stored[k] = m
	}
	return nil
}

// storedOrNil is Engine.storedOrNil, from the preloaded list when there is one.
func (p *plan) storedOrNil(ctx context.Context, kind, ns, name string) (*spec.StoredResource, error) {
	if m, ok := p.stored[[2]string{kind, ns}]; ok {
		return m[name], nil
	}
	return p.e.storedOrNil(ctx, kind, ns, name)
}

// step is one resource's change, ready to commit.
type step struct {
	result spec.Result
	// commit writes the change through ctx, inside the apply's transaction.
	commit func(ctx context.Context) error
	// after, if set, runs once the transaction committed: in-memory state (the
	// router) follows what is stored, never what was rolled back.
	after func(ctx context.Context)
	// summary is one line for the audit log.
	summary string
	action  string // audit action
	// managedBy is the resource's owner after the step.
	managedBy string
	// recorded says commit records its own audit event (a pruned resource's
	// delete).
	recorded bool
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
func (e *Engine) storedOrNil(ctx context.Context, kind, ns, name string) (*spec.StoredResource, error) {
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
func (p *plan) checkResourceVersion(d spec.Document, stored *spec.StoredResource) bool {
	m := d.Object.GetMeta()
	if m.ResourceVersion == "" {
		return true
	}
	want, err := strconv.ParseInt(m.ResourceVersion, 10, 64)
	if err != nil || want < 1 {
		p.errs = append(p.errs, d.Errorf("metadata.resourceVersion", errs.InvalidArgument,
			"must be a positive number as the server wrote it, got %q", m.ResourceVersion))
		return false
	}
	switch {
	case stored == nil:
		p.errs = append(p.errs, d.Errorf("metadata.resourceVersion", errs.Conflict,
			"%s %s/%s does not exist (any more); remove resourceVersion to create it", d.Object.GetKind(), m.Namespace, m.Name))
		return false
	case stored.ResourceVersion != want:
		p.errs = append(p.errs, d.Errorf("metadata.resourceVersion", errs.Conflict,
			"%s %s/%s was changed (resourceVersion %d, now %d); get it again and retry",
			d.Object.GetKind(), m.Namespace, m.Name, want, stored.ResourceVersion))
		return false
	}
	return true
}

// record appends the audit event of a step inside its transaction: a change is
// never stored without its event, so a failing append fails the change.
func (e *Engine) record(ctx context.Context, req spec.Request, st *step) error {
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
func yamlOf(obj spec.Object) []byte {
	if obj == nil {
		return nil
	}
	b, err := spec.MarshalYAML(obj)
	if err != nil {
		return []byte("# " + err.Error() + "\n")
	}
	return b
}

func diffOf(before, after spec.Object) string {
	from, to := "live", "applied"
	if before == nil {
		from = "/dev/null"
	}
	if after == nil {
		to = "/dev/null"
	}
	return spec.Diff(yamlOf(before), yamlOf(after), from, to)
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
