package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/reconcile"
	"github.com/nimbus-ai/nimbus/spec"
)

// Options configure a Controller.
type Options struct {
	Resources  Resources
	Applier    Applier
	Repos      Repos
	Identities Identities
	Secrets    Secrets
	// Fetcher fetches the sources that are not in the repository.
	Fetcher apply.Fetcher
	Metrics Metrics
	Clock   reconcile.Clock
	Logger  *slog.Logger
	// Resync lists every GitSource again this often (default 10 minutes);
	// each source also polls at its own interval.
	Resync time.Duration
}

// Controller syncs every GitSource.
type Controller struct {
	opts Options
	log  *slog.Logger
	ctrl *reconcile.Controller

	mu sync.Mutex
	// claims maps each resource a source declared on its last render to the
	// sources declaring it, to report two sources declaring one resource in
	// both statuses.
	claims map[resourceKey]map[reconcile.Key]bool
	// writes maps each source to the namespaces it writes into, as of its
	// last pass.
	writes map[reconcile.Key][]string
}

type resourceKey struct{ kind, ns, name string }

// New builds a Controller.
func New(opts Options) *Controller {
	if opts.Clock == nil {
		opts.Clock = reconcile.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Minute
	}
	c := &Controller{opts: opts, log: opts.Logger.With("component", "gitops"), claims: map[resourceKey]map[reconcile.Key]bool{}, writes: map[reconcile.Key][]string{}}
	c.ctrl = reconcile.New("gitsources", c, reconcile.Options{
		List: c.list, Resync: opts.Resync, Clock: opts.Clock, Logger: opts.Logger,
		BaseDelay: time.Second, MaxDelay: 5 * time.Minute,
		// Sources fetch in parallel (a slow remote holds up no other); their
		// applies take the engine's lock one at a time.
		Workers: 4,
	})
	return c
}

// Start runs the controller until ctx ends.
func (c *Controller) Start(ctx context.Context) error { return c.ctrl.Start(ctx) }

// Ready is closed after the first pass over every GitSource.
func (c *Controller) Ready() <-chan struct{} { return c.ctrl.Ready() }

// Key is the reconcile key of a GitSource.
func Key(ns, name string) reconcile.Key {
	return reconcile.Key{Namespace: ns, Kind: spec.KindGitSource, Name: name}
}

// Enqueue asks for a pass over a GitSource (it was applied, or a resource it
// owns changed).
func (c *Controller) Enqueue(ns, name string) { c.ctrl.Enqueue(Key(ns, name)) }

// Sync runs a pass over a GitSource now and waits for it ("sync now", the
// webhook), returning the status it left.
func (c *Controller) Sync(ctx context.Context, ns, name string) (spec.GitSourceStatus, error) {
	if _, err := c.opts.Resources.GetResource(ctx, spec.KindGitSource, ns, name); err != nil {
		return spec.GitSourceStatus{}, err
	}
	if err := c.ctrl.Sync(ctx, Key(ns, name)); err != nil {
		return spec.GitSourceStatus{}, err
	}
	st, _, err := c.loadStatus(ctx, ns, name)
	return st, err
}

func (c *Controller) list(ctx context.Context) ([]reconcile.Key, error) {
	rs, err := c.opts.Resources.ListResources(ctx, spec.KindGitSource, "")
	if err != nil {
		return nil, err
	}
	keys := make([]reconcile.Key, len(rs))
	for i, r := range rs {
		keys[i] = Key(r.Namespace, r.Name)
	}
	return keys, nil
}

// Reconcile is one pass over one GitSource: fetch, render, then apply (a new
// commit or a changed GitSource), heal (drift with selfHeal) or compare (drift
// without). It returns after recording the outcome in the source's status; a
// failed sync is not an error of the pass (the source polls again at its
// interval), so that a bad commit is not retried in a tight loop.
func (c *Controller) Reconcile(ctx context.Context, k reconcile.Key) (reconcile.Result, error) {
	stored, err := c.opts.Resources.GetResource(ctx, spec.KindGitSource, k.Namespace, k.Name)
	if errs.KindOf(err) == errs.NotFound {
		c.release(k, nil)
		if c.opts.Metrics != nil {
			c.opts.Metrics.GitForget(k.Namespace, k.Name)
		}
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	var gs spec.GitSourceSpec
	if err := json.Unmarshal(stored.Spec, &gs); err != nil {
		return reconcile.Result{}, reconcile.Terminal(fmt.Errorf("decode %s: %w", k, err))
	}
	prev, conds, err := c.loadStatus(ctx, k.Namespace, k.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	start := c.opts.Clock.Now()
	p := &pass{c: c, key: k, stored: stored, spec: gs, prev: prev, now: start}
	p.run(ctx)
	if c.opts.Metrics != nil {
		c.opts.Metrics.GitSync(k.Namespace, k.Name, p.result, c.opts.Clock.Now().Sub(start))
		// A pass that leaves the source Synced is a good sync, whether it
		// applied a commit or found the live state matching an unchanged
		// one: a quiet repository is not a failing one.
		if p.next.Sync == spec.SyncSynced {
			c.opts.Metrics.GitSynced(k.Namespace, k.Name, start)
		} else if p.next.LastSyncTime != nil {
			c.opts.Metrics.GitSynced(k.Namespace, k.Name, *p.next.LastSyncTime)
		}
	}
	if err := c.saveStatus(ctx, p, conds); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: gs.IntervalOrDefault()}, nil
}

// pass is the state of one Reconcile.
type pass struct {
	c      *Controller
	key    reconcile.Key
	stored spec.StoredResource
	spec   spec.GitSourceSpec
	prev   spec.GitSourceStatus
	next   spec.GitSourceStatus
	now    time.Time
	// result is the metrics label: synced, unchanged, drift, healed, failed.
	result string
}

func (p *pass) run(ctx context.Context) {
	p.next = p.prev
	p.next.AppliedBy = p.stored.AppliedBy
	p.next.Errors = nil
	now := p.now.UTC()
	p.next.LastAttemptTime = &now
	ns, name := p.key.Namespace, p.key.Name

	authorize, err := p.c.opts.Identities.Authorizer(ctx, p.stored.AppliedBy)
	if err != nil && errs.KindOf(err) == errs.Unavailable {
		// The token store could not answer: not the identity's fault.
		p.fail("", "IdentityUnavailable", "the identity this GitSource syncs as cannot be checked right now; the next pass tries again", nil)
		return
	}
	if err != nil {
		p.fail("", "IdentityInvalid", fmt.Sprintf("the identity that applied this GitSource (%s) may no longer sync it: %s; apply the GitSource again with a valid token",
			p.stored.AppliedBy, errs.PublicMessage(err)), nil)
		return
	}
	remote := Remote{URL: p.spec.URL}
	if p.spec.Auth != nil {
		tok, err := p.c.opts.Secrets.Token(*p.spec.Auth)
		if err != nil {
			p.fail("", "SecretUnavailable", "spec.auth.tokenFrom: "+errs.PublicMessage(err), nil)
			return
		}
		remote.Token = tok
	}
	snap, err := p.c.opts.Repos.Fetch(ctx, remote, p.spec.Ref)
	if err != nil {
		p.c.log.Warn("git fetch failed", "gitsource", ns+"/"+name, "err", err)
		p.fail("", "FetchFailed", err.Error(), nil)
		return
	}
	commit := snap.Commit()
	p.next.LastAttemptedCommit = commit
	files, err := render(snap, p.spec.Path)
	if err != nil {
		p.fail(commit, "RenderFailed", fmt.Sprintf("commit %s: %v", short(commit), err), nil)
		return
	}
	declared, broken := declaredBy(files, ns)
	targets := append([]string{ns}, p.spec.TargetNamespaces...)
	// Only what this source may write is claimed: a document it is refused
	// marks no other source's resource as in conflict.
	var claimed []resourceKey
	for _, rk := range declared {
		if slices.Contains(targets, rk.ns) && authorize(rk.kind, rk.ns) == nil {
			claimed = append(claimed, rk)
		}
	}
	p.c.claim(p.key, claimed)
	if len(declared) == 0 && !broken && !spec.Flag(p.spec.AllowEmpty, false) {
		p.fail(commit, "EmptyRender", fmt.Sprintf("commit %s declares no resources under %q; refusing to sync (and prune everything this source owns): set spec.allowEmpty: true if that is meant",
			short(commit), "/"+strings.Trim(p.spec.Path, "/")), nil)
		return
	}
	p.c.mu.Lock()
	p.c.writes[p.key] = targets
	p.c.mu.Unlock()
	req := spec.Request{
		Files: files, Namespace: ns,
		Actor: Actor(ns, name), Source: SourceGitOps,
		Authorize: func(kind, target string) error {
			if !slices.Contains(targets, target) {
				return errs.New(errs.PermissionDenied, "namespace %q is not this GitSource's (%s) nor in its spec.targetNamespaces", target, ns)
			}
			return authorize(kind, target)
		},
		AppliedBy: p.stored.AppliedBy,
	}
	so := apply.SyncOptions{
		Owner:           &spec.OwnerRef{Namespace: ns, Name: name},
		Prune:           spec.Flag(p.spec.Prune, true),
		PruneNamespaces: targets,
		Fetcher:         repoArtifacts{snap: snap, next: p.c.opts.Fetcher},
		AllowEmpty:      spec.Flag(p.spec.AllowEmpty, false),
	}

	// Only a commit or a GitSource not yet applied is applied: after a
	// failed pass (a git host down, a token revoked) the commit that is
	// live is compared, so that a change by hand stays unless selfHeal.
	changed := commit != p.prev.SyncedCommit || p.stored.Generation != p.prev.SyncedGeneration
	if !changed {
		dry := req
		dry.DryRun = true
		resp, err := p.c.opts.Applier.Sync(ctx, dry, so)
		if err != nil {
			// What applied before no longer would (a target deleted by
			// hand, a namespace no longer allowed): report it, keep serving.
			p.fail(commit, "SyncFailed", applyMessage(commit, err), err)
			return
		}
		drift := driftOf(resp)
		if len(drift) == 0 {
			p.synced(commit, resp, false)
			p.result = "unchanged"
			return
		}
		if !spec.Flag(p.spec.SelfHeal, false) {
			p.outOfSync(commit, resp, drift)
			return
		}
		p.c.log.Info("self-heal: reverting changes made outside git", "gitsource", ns+"/"+name, "resources", len(drift))
		req.Source = SourceGitOps + "-selfheal"
	}
	resp, err := p.c.opts.Applier.Sync(ctx, req, so)
	if err != nil {
		p.fail(commit, "SyncFailed", applyMessage(commit, err), err)
		return
	}
	p.synced(commit, resp, true)
	if req.Source != SourceGitOps {
		p.result = "healed"
	}
}

// synced records a commit applied (or found unchanged) in full.
func (p *pass) synced(commit string, resp *spec.Response, applied bool) {
	p.next.Sync = spec.SyncSynced
	p.next.SyncedCommit = commit
	p.next.SyncedGeneration = p.stored.Generation
	p.next.Reason = ""
	p.next.Resources = p.resources(resp, nil)
	changedSomething := false
	for _, r := range resp.Results {
		if r.Action != spec.ActionUnchanged {
			changedSomething = true
		}
	}
	if applied && (changedSomething || p.prev.SyncedCommit != commit || p.prev.LastSyncTime == nil) {
		now := p.now.UTC()
		p.next.LastSyncTime = &now
	}
	if p.prev.LastSyncTime == nil && p.next.LastSyncTime == nil {
		now := p.now.UTC()
		p.next.LastSyncTime = &now
	}
	if applied {
		p.next.Message = fmt.Sprintf("applied commit %s: %s", short(commit), summary(resp))
	} else {
		p.next.Message = fmt.Sprintf("in sync with commit %s (%s)", short(commit), plural(len(resp.Results), "resource"))
	}
	p.result = "synced"
	p.markConflicts()
}

// outOfSync records drift: live differs from the synced commit.
func (p *pass) outOfSync(commit string, resp *spec.Response, drift map[resourceKey]bool) {
	p.next.Sync = spec.SyncOutOfSync
	p.next.Resources = p.resources(resp, drift)
	p.next.Reason = ""
	verb := "differs"
	if len(drift) != 1 {
		verb = "differ"
	}
	p.next.Message = fmt.Sprintf("%s %s from commit %s (changed outside git); selfHeal is off", plural(len(drift), "resource"), verb, short(commit))
	p.result = "drift"
	p.markConflicts()
}

// fail records a sync that changed nothing: the last good state keeps
// serving.
func (p *pass) fail(commit, reason, msg string, err error) {
	p.next.Sync = spec.SyncFailed
	p.next.Message = msg
	p.next.Reason = reason
	var fes spec.Errors
	if errors.As(err, &fes) {
		p.next.Errors = fes
		if len(fes) > 0 {
			p.next.Message = fmt.Sprintf("commit %s not applied (nothing changed): %s", short(commit), fes[0].String())
			if len(fes) > 1 {
				p.next.Message += fmt.Sprintf(" (and %d more)", len(fes)-1)
			}
		}
	}
	p.result = "failed"
}

// resources lists what the commit declares, with drift where there is some.
func (p *pass) resources(resp *spec.Response, drift map[resourceKey]bool) []spec.SyncedResource {
	var out []spec.SyncedResource
	for _, r := range resp.Results {
		k := resourceKey{r.Kind, r.Namespace, r.Name}
		sr := spec.SyncedResource{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, State: spec.SyncSynced}
		switch {
		case r.Action == spec.ActionDeleted:
			sr.State = spec.SyncPruned
			if drift[k] {
				sr.State = spec.SyncOutOfSync
				sr.Message = "no longer declared; prune will delete it"
			}
		case drift[k]:
			sr.State = spec.SyncOutOfSync
			sr.Diff = r.Diff
		}
		out = append(out, sr)
	}
	return out
}

// markConflicts marks the resources another source declares too.
func (p *pass) markConflicts() {
	for i, r := range p.next.Resources {
		if others := p.c.otherClaims(p.key, resourceKey{r.Kind, r.Namespace, r.Name}); len(others) > 0 {
			p.next.Resources[i].State = spec.SyncConflict
			p.next.Resources[i].Message = "also declared by " + strings.Join(others, ", ") + "; only one GitSource may own a resource"
		}
	}
}

// driftOf is the resources a dry run would change.
func driftOf(resp *spec.Response) map[resourceKey]bool {
	out := map[resourceKey]bool{}
	for _, r := range resp.Results {
		if r.Action != spec.ActionUnchanged {
			out[resourceKey{r.Kind, r.Namespace, r.Name}] = true
		}
	}
	return out
}

func summary(resp *spec.Response) string {
	counts := map[string]int{}
	for _, r := range resp.Results {
		counts[r.Action]++
	}
	var parts []string
	for _, a := range []string{spec.ActionCreated, spec.ActionConfigured, spec.ActionDeleted, spec.ActionUnchanged} {
		if counts[a] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[a], a))
		}
	}
	if len(parts) == 0 {
		return "no resources"
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func applyMessage(commit string, err error) string {
	return fmt.Sprintf("commit %s not applied (nothing changed): %s", short(commit), errs.PublicMessage(err))
}

// claim records what source k declared on its last render.
// A source that newly claims a resource others claim wakes them, so the
// conflict shows in every status at once (a claim already known wakes no
// one: two sources in conflict do not wake each other forever).
func (c *Controller) claim(k reconcile.Key, keys []resourceKey) {
	c.mu.Lock()
	wake := map[reconcile.Key]bool{}
	had := map[resourceKey]bool{}
	for rk, srcs := range c.claims {
		if srcs[k] {
			had[rk] = true
		}
	}
	c.releaseClaimsLocked(k)
	for _, rk := range keys {
		if c.claims[rk] == nil {
			c.claims[rk] = map[reconcile.Key]bool{}
		}
		if !had[rk] {
			for other := range c.claims[rk] {
				wake[other] = true
			}
		}
		c.claims[rk][k] = true
	}
	c.mu.Unlock()
	for other := range wake {
		c.ctrl.Enqueue(other)
	}
}

// release forgets what source k declared.
func (c *Controller) release(k reconcile.Key, _ []resourceKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseClaimsLocked(k)
	delete(c.writes, k)
}

// NamespaceChanged is told of a change made in ns outside an apply (a
// registry call): every source writing there looks again.
func (c *Controller) NamespaceChanged(ns string) {
	c.mu.Lock()
	var keys []reconcile.Key
	for k, nss := range c.writes {
		if slices.Contains(nss, ns) {
			keys = append(keys, k)
		}
	}
	c.mu.Unlock()
	c.ctrl.Enqueue(keys...)
}

func (c *Controller) releaseClaimsLocked(k reconcile.Key) {
	for rk, srcs := range c.claims {
		delete(srcs, k)
		if len(srcs) == 0 {
			delete(c.claims, rk)
		}
	}
}

func (c *Controller) otherClaims(k reconcile.Key, rk resourceKey) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for src := range c.claims[rk] {
		if src != k {
			out = append(out, "gitsource/"+src.Namespace+"/"+src.Name)
		}
	}
	slices.Sort(out)
	return out
}

// loadStatus reads a source's recorded status.
func (c *Controller) loadStatus(ctx context.Context, ns, name string) (spec.GitSourceStatus, []spec.Condition, error) {
	st, err := c.opts.Resources.GetStatus(ctx, spec.KindGitSource, ns, name)
	if errs.KindOf(err) == errs.NotFound {
		return spec.GitSourceStatus{}, nil, nil
	}
	if err != nil {
		return spec.GitSourceStatus{}, nil, err
	}
	var out spec.GitSourceStatus
	if len(st.Details) > 0 {
		if err := json.Unmarshal(st.Details, &out.GitSyncStatus); err != nil {
			return spec.GitSourceStatus{}, nil, fmt.Errorf("decode status of gitsource %s/%s: %w", ns, name, err)
		}
	}
	out.ObservedGeneration, out.Conditions = st.ObservedGeneration, st.Conditions
	return out, st.Conditions, nil
}

// saveStatus writes the pass's status unless nothing but its times changed
// (a no-op sync writes nothing).
func (c *Controller) saveStatus(ctx context.Context, p *pass, conds []spec.Condition) error {
	next := p.next
	ready := spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionTrue, Reason: "Synced", Message: next.Message}
	degraded := spec.Condition{Type: spec.ConditionDegraded, Status: spec.ConditionFalse}
	switch next.Sync {
	case spec.SyncOutOfSync:
		degraded = spec.Condition{Type: spec.ConditionDegraded, Status: spec.ConditionTrue, Reason: "OutOfSync", Message: next.Message}
	case spec.SyncFailed:
		ready = spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionFalse, Reason: next.Reason, Message: next.Message}
		degraded = spec.Condition{Type: spec.ConditionDegraded, Status: spec.ConditionTrue, Reason: next.Reason, Message: next.Message}
		if next.SyncedCommit != "" {
			ready.Message += fmt.Sprintf(" (still serving commit %s)", short(next.SyncedCommit))
		}
	}
	newConds := slices.Clone(conds)
	newConds = spec.SetCondition(newConds, ready, p.now)
	newConds = spec.SetCondition(newConds, degraded, p.now)
	if sameIgnoringTimes(p.prev, next) && reflect.DeepEqual(conds, newConds) && p.prev.ObservedGeneration == p.stored.Generation {
		return nil
	}
	details, err := json.Marshal(next.GitSyncStatus)
	if err != nil {
		return err
	}
	err = c.opts.Resources.PutStatus(ctx, spec.KindGitSource, p.key.Namespace, p.key.Name, spec.Status{
		ObservedGeneration: p.stored.Generation, Conditions: newConds, Details: details,
	})
	if errs.KindOf(err) == errs.NotFound {
		return nil // deleted meanwhile
	}
	return err
}

func sameIgnoringTimes(a, b spec.GitSourceStatus) bool {
	a.LastAttemptTime, b.LastAttemptTime = nil, nil
	return reflect.DeepEqual(a.GitSyncStatus, b.GitSyncStatus)
}

// Trigger asks for a pass over a GitSource without waiting for it (a
// webhook): NotFound when there is no such source.
func (c *Controller) Trigger(ctx context.Context, ns, name string) error {
	if _, err := c.opts.Resources.GetResource(ctx, spec.KindGitSource, ns, name); err != nil {
		return err
	}
	c.Enqueue(ns, name)
	return nil
}

// WebhookSecret is the secret a GitSource's webhook is signed with (NotFound
// when the source does not exist or declares no webhook).
func (c *Controller) WebhookSecret(ctx context.Context, ns, name string) ([]byte, error) {
	r, err := c.opts.Resources.GetResource(ctx, spec.KindGitSource, ns, name)
	if err != nil {
		return nil, err
	}
	var gs spec.GitSourceSpec
	if err := json.Unmarshal(r.Spec, &gs); err != nil {
		return nil, err
	}
	if gs.Webhook == nil {
		return nil, errs.New(errs.NotFound, "gitsource %s/%s takes no webhook", ns, name)
	}
	tok, err := c.opts.Secrets.Token(spec.SourceAuth{TokenFrom: gs.Webhook.SecretFrom})
	if err != nil {
		return nil, err
	}
	return []byte(tok), nil
}

// Changed is told of every resource an apply changed (apply.Options.OnChange):
// a GitSource is looked at again; so is the source owning a resource changed
// by someone else (drift shows at once, not at the next poll).
func (c *Controller) Changed(kind, ns, name, managedBy string) {
	if kind == spec.KindGitSource {
		c.Enqueue(ns, name)
	}
	if o, ok := spec.OwnerOf(managedBy, ns); ok {
		c.Enqueue(o.Namespace, o.Name)
	}
}
