// Package delivery runs the progressive rollouts of InferenceServices that
// declare one (spec.rollout): when the version a service's target resolves
// to changes — an alias's declared version moved by an apply, a GitOps sync
// or `nimbus models alias set`, or the target's ref edited — the new version
// takes the traffic step by step while package rollout judges each step from
// the router's measurement windows, then is promoted (the alias's effective
// version moves) or rolled back (all traffic returns to the stable version,
// which stays effective; the declared version is not retried).
//
// The controller is not a reconcile loop of its own: the InferenceService
// controller (package apply) calls Reconcile in each pass over a service, so
// one writer routes a service and records its status, and every decision is
// a function of what is stored (the spec, the registry's declared and
// effective aliases, the rollout's recorded state) and of the open window.
// Its state lives in the service's stored status: a restart resumes at the
// recorded step, with the step's start time kept (the window's counts,
// which live in memory, start again).
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/rollout"
	"github.com/nimbus-ai/nimbus/spec"
)

// Registry is the part of the registry a rollout reads and moves.
type Registry interface {
	GetModel(ctx context.Context, ns, name string) (registry.Model, error)
	SetEffectiveAlias(ctx context.Context, ns, model, alias string, version int64) error
}

// Windows are the router's measurement windows, read as a rollout's two
// versions (stable and canary are target names, "model@3").
type Windows interface {
	OpenWindow(ns, name string, now time.Time) bool
	ReadWindow(ns, name, stable, canary string) (rollout.Window, bool)
	CloseWindow(ns, name string)
}

// Services lists the stored InferenceServices of a namespace (to find which
// one owns an alias's rollout).
type Services interface {
	ListResources(ctx context.Context, kind, ns string) ([]spec.StoredResource, error)
}

// Options configure a Controller.
type Options struct {
	Registry Registry
	Services Services
	Windows  Windows
	// Audit records each rollout's start, steps and end (nil: not recorded).
	Audit  audit.Log
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
	// Enqueue asks for a pass over service ns/name (set before use: the
	// InferenceService controller's Enqueue).
	Enqueue func(ns, name string)
	// Metrics records each rollout's state and transitions (nil: none).
	Metrics Metrics
}

// Metrics receives rollouts' state (*telemetry.Metrics is one).
type Metrics interface {
	RolloutState(ns, name string, stable, canary int64, weight int)
	RolloutEvent(ns, name, event string)
	RolloutForget(ns, name string)
}

// Controller decides the rollouts of every service that declares one.
type Controller struct {
	opts Options
	log  *slog.Logger

	mu sync.Mutex
	// models maps a namespace's model to the services with a rollout that
	// route to it, so a registry change wakes them.
	models map[modelKey]map[string]bool
	// targets is the target each tracked service routes to.
	targets map[svcKey]tracked
	pending map[svcKey]*command
}

type modelKey struct{ ns, model string }

type tracked struct {
	model  modelKey
	target string
}
type svcKey struct{ ns, name string }

// New returns a Controller.
func New(opts Options) *Controller {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Enqueue == nil {
		opts.Enqueue = func(string, string) {}
	}
	return &Controller{opts: opts, log: opts.Logger.With("component", "rollout"),
		models: map[modelKey]map[string]bool{}, targets: map[svcKey]tracked{}, pending: map[svcKey]*command{}}
}

// SetEnqueue sets Options.Enqueue (the controller that calls Reconcile is
// built after this one).
func (c *Controller) SetEnqueue(f func(ns, name string)) { c.opts.Enqueue = f }

// Service is one pass's input: a stored InferenceService and the rollout
// status recorded for it (nil: none yet).
type Service struct {
	Namespace, Name string
	Created         time.Time
	Spec            spec.ServiceSpec
	Status          *spec.RolloutStatus
}

// Result is what the pass decided.
type Result struct {
	// Status is the rollout status to record (nil: the service has none).
	Status *spec.RolloutStatus
	// Route is what the service's target serves now; nil: the spec as
	// declared (its aliases resolve to their effective versions).
	Route *rollout.Route
	// AfterRoute, when set, runs once the router serves Route (it opens or
	// closes the measurement window on the new table).
	AfterRoute func()
	// RequeueAfter asks for the next analysis (0: none needed).
	RequeueAfter time.Duration
	// Recorded, when set, is told whether Status was stored (it answers a
	// rollout command only then).
	Recorded func(error)
}

// Reconcile decides the rollout of one service. Errors are transient (the
// store, the registry): the pass is retried.
func (c *Controller) Reconcile(ctx context.Context, svc Service) (Result, error) {
	key := svcKey{svc.Namespace, svc.Name}
	cmd := c.takeCommand(key)
	res, err := c.reconcile(ctx, svc, cmd)
	if m := c.opts.Metrics; m != nil && err == nil {
		switch st := res.Status; {
		case st == nil:
			// Only a service that had a rollout has series to drop: a pass
			// over every other service costs nothing here.
			if svc.Status != nil {
				m.RolloutForget(svc.Namespace, svc.Name)
			}
		case st.Phase == spec.RolloutProgressing:
			m.RolloutState(svc.Namespace, svc.Name, st.Stable, st.Canary, st.CanaryWeight)
		default:
			m.RolloutState(svc.Namespace, svc.Name, st.Stable, 0, 0)
		}
	}
	switch {
	case cmd == nil:
	case err != nil:
		cmd.finish(err)
	default:
		// The command is done once its outcome is stored.
		res.Recorded = func(err error) { cmd.finish(errors.Join(cmd.err, err)) }
	}
	return res, err
}

func (c *Controller) reconcile(ctx context.Context, svc Service, cmd *command) (Result, error) {
	ns, name, now := svc.Namespace, svc.Name, c.opts.Now()
	r, prev := svc.Spec.Rollout, svc.Status
	if r == nil || len(svc.Spec.Traffic) != 1 {
		if cmd != nil {
			cmd.fail(errs.New(errs.FailedPrecondition, "inference service %s/%s declares no rollout", ns, name))
		}
		return c.noRollout(ctx, svc)
	}
	plan := r.Plan()
	target := svc.Spec.Traffic[0].Model
	model, ref, err := spec.ParseTarget(target)
	if err != nil {
		return Result{}, fmt.Errorf("rollout %s/%s: %w", ns, name, err) // validated on apply: not reached
	}
	c.track(svcKey{ns, name}, tracked{modelKey{ns, model}, target})
	st := &spec.RolloutStatus{Phase: spec.RolloutIdle, Target: target, Steps: len(plan.Steps)}
	if prev != nil {
		st.FailedVersion, st.History = prev.FailedVersion, prev.History
	}
	m, err := c.opts.Registry.GetModel(ctx, ns, model)
	if errs.KindOf(err) == errs.NotFound {
		st.Message = fmt.Sprintf("model %s is not registered", model)
		cmd.fail(errs.New(errs.FailedPrecondition, "%s", st.Message))
		return Result{Status: st}, nil
	}
	if err != nil {
		return Result{}, err
	}
	alias, desired, ok := desiredVersion(m, ref)
	if !ok {
		st.Message = fmt.Sprintf("%s resolves to no version", target)
		cmd.fail(errs.New(errs.FailedPrecondition, "%s", st.Message))
		return Result{Status: st}, nil
	}
	// The version served now: what this service served last (its ref may
	// have changed), else the alias's effective version.
	stable := desired
	if alias != "" {
		stable, _ = m.EffectiveVersion(alias)
		owner, err := c.owner(ctx, ns, model, alias, svc)
		if err != nil {
			return Result{}, err
		}
		if owner != name {
			st.Phase, st.Owner, st.Stable = spec.RolloutFollowing, owner, stable
			st.Message = fmt.Sprintf("service %s owns the rollout of %s@%s; this one serves its effective version %d", owner, model, alias, stable)
			cmd.fail(errs.New(errs.FailedPrecondition, "%s", st.Message))
			return Result{Status: st, AfterRoute: c.closer(ns, name, prev)}, nil
		}
	}
	if prev != nil && prev.Stable > 0 && sameModel(prev.Target, model) && prev.Phase != spec.RolloutFollowing {
		stable = prev.Stable
	}
	st.Stable = stable
	names := [2]string{versionTarget(model, stable), versionTarget(model, desired)}

	switch {
	case stable == desired:
		// Nothing to roll out.
		if prev != nil && prev.Phase == spec.RolloutSucceeded && prev.Canary == desired {
			kept := *prev
			cmd.notApplicable(spec.RolloutSucceeded)
			return Result{Status: &kept}, nil
		}
		st.Message = fmt.Sprintf("serving version %d, the declared one", stable)
		if prev != nil && prev.Phase == spec.RolloutProgressing {
			c.record(ctx, ns, name, "", "cancelled", fmt.Sprintf("rollout of %s version %d cancelled: version %d is declared again", model, prev.Canary, desired))
		}
		if prev != nil && prev.FailedVersion != 0 && prev.FailedVersion != desired {
			st.FailedVersion = 0
		}
		cmd.notApplicable(spec.RolloutIdle)
		return Result{Status: st, AfterRoute: c.closer(ns, name, prev)}, nil
	case cmd != nil && cmd.kind == Retry && prev != nil && prev.Phase == spec.RolloutFailed:
		// Start over below.
	case prev != nil && prev.Phase == spec.RolloutFailed && prev.FailedVersion == desired && prev.Stable == stable:
		kept := *prev
		cmd.notApplicable(spec.RolloutFailed)
		return Result{Status: &kept, Route: &rollout.Route{Model: model, Stable: stable}}, nil
	case prev != nil && prev.Phase == spec.RolloutProgressing && prev.Canary == desired && prev.Stable == stable &&
		prev.Started != nil && prev.StepStarted != nil && prev.Step >= 1 && prev.Step <= len(plan.Steps):
		return c.progress(ctx, svc, plan, alias, model, names, prev, cmd, now)
	}
	if cmd != nil && cmd.kind != Retry {
		cmd.fail(errs.New(errs.FailedPrecondition, "no rollout in progress for %s/%s", ns, name))
	}
	// A new declared version: start at the first step.
	s := rollout.Start(now)
	st = c.status(st, plan, s, stable, desired, plan.Steps[0])
	st.FailedVersion, st.History = 0, nil // a new rollout: its own story
	st.Message = fmt.Sprintf("rolling out version %d over version %d: step 1 (%d%%)", desired, stable, plan.Steps[0])
	actor := ""
	if cmd != nil {
		actor = cmd.actor
	}
	c.record(ctx, ns, name, actor, "started", fmt.Sprintf("rollout of %s started: version %d over %d, step 1 (%d%%)", model, desired, stable, plan.Steps[0]))
	return Result{Status: st, Route: c.route(svc.Spec.Rollout, plan, model, stable, desired, plan.Steps[0]),
		AfterRoute: c.opener(ns, name), RequeueAfter: tick(plan)}, nil
}

// progress runs one analysis of a rollout in progress.
func (c *Controller) progress(ctx context.Context, svc Service, plan rollout.Plan, alias, model string, names [2]string,
	prev *spec.RolloutStatus, cmd *command, now time.Time) (Result, error) {
	ns, name := svc.Namespace, svc.Name
	stable, canary := prev.Stable, prev.Canary
	state := rollout.State{Phase: rollout.Progressing, Step: prev.Step - 1, Started: *prev.Started, StepStarted: *prev.StepStarted,
		Failures: prev.Failures, Reason: prev.Message}
	w, ok := c.opts.Windows.ReadWindow(ns, name, names[0], names[1])
	if !ok && cmd == nil {
		// No window: the server restarted in this step (or the router
		// has not installed the route yet). Measure again from now; the
		// step keeps its start time.
		st := c.status(&spec.RolloutStatus{Target: prev.Target, FailedVersion: prev.FailedVersion, History: prev.History},
			plan, state, stable, canary, plan.Steps[state.Step])
		st.Message = prev.Message
		return Result{Status: st, Route: c.route(svc.Spec.Rollout, plan, model, stable, canary, plan.Steps[state.Step]),
			AfterRoute: c.opener(ns, name), RequeueAfter: tick(plan)}, nil
	}
	d, err := rollout.Next(plan, state, w, now)
	if err != nil {
		return Result{}, err
	}
	actor := "rollout"
	if cmd != nil {
		actor = cmd.actor
		switch cmd.kind {
		case Promote:
			d.State.Phase, d.CanaryWeight = rollout.Succeeded, 100
			d.State.Reason = "promoted by hand at step " + strconv.Itoa(state.Step+1)
		case Abort:
			d.State.Phase, d.CanaryWeight = rollout.Failed, 0
			d.State.Reason = "aborted by hand at step " + strconv.Itoa(state.Step+1)
		case Retry:
			cmd.fail(errs.New(errs.FailedPrecondition, "the rollout of version %d is in progress: nothing to retry", canary))
		}
	}
	st := c.status(&spec.RolloutStatus{Target: prev.Target, FailedVersion: prev.FailedVersion, History: prev.History},
		plan, d.State, stable, canary, d.CanaryWeight)
	st.Analysis = checks(d.Checks, plan)
	st.StableRequests, st.CanaryRequests = w.Stable.Requests, w.Canary.Requests
	st.Message = d.State.Reason
	step := func(outcome string) spec.RolloutStep {
		return spec.RolloutStep{Step: state.Step + 1, CanaryWeight: plan.Steps[state.Step], Outcome: outcome, At: now.UTC(),
			Requests: [2]int64{w.Stable.Requests, w.Canary.Requests}, Analysis: st.Analysis}
	}
	switch d.State.Phase {
	case rollout.Succeeded:
		if alias != "" {
			if err := c.opts.Registry.SetEffectiveAlias(ctx, ns, model, alias, canary); err != nil {
				return Result{}, fmt.Errorf("promote %s@%s to version %d: %w", model, alias, canary, err)
			}
		}
		st.History = append(st.History, step("promoted"))
		st.Phase, st.Stable, st.Step, st.CanaryWeight = spec.RolloutSucceeded, canary, 0, 100
		st.Finished = timePtr(now)
		c.record(ctx, ns, name, actor, "succeeded", fmt.Sprintf("rollout of %s succeeded: version %d promoted (%s)", model, canary, d.State.Reason))
		return Result{Status: st, AfterRoute: c.closer(ns, name, prev)}, nil
	case rollout.Failed:
		outcome := "failed"
		if cmd != nil && cmd.kind == Abort {
			outcome = "aborted"
		}
		st.History = append(st.History, step(outcome))
		st.Phase, st.FailedVersion, st.Step, st.CanaryWeight = spec.RolloutFailed, canary, 0, 0
		st.Finished = timePtr(now)
		st.Message = fmt.Sprintf("rolled back to version %d: %s", stable, d.State.Reason)
		c.record(ctx, ns, name, actor, "failed", fmt.Sprintf("rollout of %s version %d failed; rolled back to version %d: %s", model, canary, stable, d.State.Reason))
		c.log.Warn("rollout failed; rolled back", "namespace", ns, "service", name, "model", model, "canary", canary, "stable", stable, "reason", d.State.Reason)
		return Result{Status: st, Route: &rollout.Route{Model: model, Stable: stable}, AfterRoute: c.closer(ns, name, prev)}, nil
	}
	res := Result{Status: st, Route: c.route(svc.Spec.Rollout, plan, model, stable, canary, d.CanaryWeight), RequeueAfter: tick(plan)}
	if d.NewWindow {
		outcome := "passed"
		if d.State.Step == state.Step {
			outcome = "analysis failed"
		}
		st.History = append(st.History, step(outcome))
		res.AfterRoute = c.opener(ns, name)
		event := "step"
		if outcome != "passed" {
			event = "analysis_failed"
		}
		c.record(ctx, ns, name, actor, event, fmt.Sprintf("rollout of %s version %d: %s", model, canary, d.State.Reason))
	}
	return res, nil
}

// noRollout handles a service without a rollout: one that had one releases
// the alias it held when no other service holds it.
func (c *Controller) noRollout(ctx context.Context, svc Service) (Result, error) {
	c.untrack(svcKey{svc.Namespace, svc.Name})
	if svc.Status == nil {
		return Result{}, nil
	}
	if err := c.release(ctx, svc.Namespace, svc.Status.Target); err != nil {
		return Result{}, err
	}
	return Result{AfterRoute: c.closer(svc.Namespace, svc.Name, svc.Status)}, nil
}

// Deleted releases what a deleted service held: its rollout's alias moves
// to its declared version unless another service with a rollout routes to
// it; the services that followed it look again. (A service deleted while
// the server was down, before this controller saw it, is not known here:
// its alias stays held until the next rollout on it or an alias change.)
func (c *Controller) Deleted(ctx context.Context, ns, name string) error {
	target := c.untrack(svcKey{ns, name})
	if c.opts.Metrics != nil {
		c.opts.Metrics.RolloutForget(ns, name)
	}
	if cmd := c.takeCommand(svcKey{ns, name}); cmd != nil {
		cmd.finish(errs.New(errs.NotFound, "inference service %s/%s not found", ns, name))
	}
	if target == "" {
		return nil
	}
	return c.release(ctx, ns, target)
}

// release moves target's alias to its declared version when no service
// with a rollout holds it any more, and wakes the services that follow it.
func (c *Controller) release(ctx context.Context, ns, target string) error {
	model, ref, err := spec.ParseTarget(target)
	if err != nil {
		return nil
	}
	c.wake(ns, model)
	m, err := c.opts.Registry.GetModel(ctx, ns, model)
	if errs.KindOf(err) == errs.NotFound {
		return nil
	}
	if err != nil {
		return err
	}
	alias, declared, ok := desiredVersion(m, ref)
	if !ok || alias == "" {
		return nil
	}
	if eff, _ := m.EffectiveVersion(alias); eff == declared {
		return nil
	}
	held, err := c.holders(ctx, ns, model, alias)
	if err != nil || len(held) > 0 {
		return err
	}
	c.log.Info("no rollout holds the alias any more; it serves its declared version", "namespace", ns, "model", model, "alias", alias, "version", declared)
	return c.opts.Registry.SetEffectiveAlias(ctx, ns, model, alias, declared)
}

// Hold implements registry.AliasHold: an alias is held while an
// InferenceService with a rollout routes to it. It runs inside the alias
// change's transaction and reads the services through it.
func (c *Controller) Hold(ctx context.Context, ns, model, alias string) bool {
	held, err := c.holders(ctx, ns, model, alias)
	if err != nil {
		// Unknown: hold. A rollout then decides, and a service without
		// one sees the version move on its next pass.
		c.log.Warn("cannot tell whether a rollout holds an alias; holding it", "namespace", ns, "model", model, "alias", alias, "err", err)
		return true
	}
	return len(held) > 0
}

// ModelChanged wakes the services with a rollout that route to model.
func (c *Controller) ModelChanged(ns, model string) { c.wake(ns, model) }

func (c *Controller) wake(ns, model string) {
	c.mu.Lock()
	var names []string
	for n := range c.models[modelKey{ns, model}] {
		names = append(names, n)
	}
	c.mu.Unlock()
	for _, n := range names {
		c.opts.Enqueue(ns, n)
	}
}

func (c *Controller) track(k svcKey, t tracked) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.targets[k]; ok && old.model != t.model {
		c.dropLocked(k, old.model)
	}
	c.targets[k] = t
	if c.models[t.model] == nil {
		c.models[t.model] = map[string]bool{}
	}
	c.models[t.model][k.name] = true
}

// untrack forgets k and returns the target it routed to ("" if unknown).
func (c *Controller) untrack(k svcKey) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.targets[k]
	if !ok {
		return ""
	}
	c.dropLocked(k, t.model)
	delete(c.targets, k)
	return t.target
}

func (c *Controller) dropLocked(k svcKey, m modelKey) {
	delete(c.models[m], k.name)
	if len(c.models[m]) == 0 {
		delete(c.models, m)
	}
}

// holder is a service with a rollout routing to an alias.
type holder struct {
	name    string
	created time.Time
}

// holders lists the services of ns with a rollout whose target resolves
// through model's alias, oldest first.
func (c *Controller) holders(ctx context.Context, ns, model, alias string) ([]holder, error) {
	rs, err := c.opts.Services.ListResources(ctx, spec.KindInferenceService, ns)
	if err != nil {
		return nil, fmt.Errorf("list inference services of %s: %w", ns, err)
	}
	var out []holder
	for _, r := range rs {
		var s spec.ServiceSpec
		if json.Unmarshal(r.Spec, &s) != nil || s.Rollout == nil || len(s.Traffic) != 1 {
			continue
		}
		m, ref, err := spec.ParseTarget(s.Traffic[0].Model)
		if err != nil || m != model {
			continue
		}
		if ref == alias || ref == "" && alias == registry.ChampionAlias {
			out = append(out, holder{r.Name, r.CreatedAt})
		}
	}
	slices.SortFunc(out, func(a, b holder) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return compareStrings(a.name, b.name)
	})
	return out, nil
}

// owner is the service that runs the rollout of model's alias: the oldest
// holder (svc itself when the store does not list it yet).
func (c *Controller) owner(ctx context.Context, ns, model, alias string, svc Service) (string, error) {
	hs, err := c.holders(ctx, ns, model, alias)
	if err != nil {
		return "", err
	}
	if len(hs) == 0 {
		return svc.Name, nil
	}
	return hs[0].name, nil
}

// desiredVersion is the version ref declares: an alias's declared version
// (alias set), a version number, or with no ref the champion alias's, else
// the latest version.
func desiredVersion(m registry.Model, ref string) (alias string, version int64, ok bool) {
	switch {
	case ref == "":
		if v, ok := m.Aliases[registry.ChampionAlias]; ok {
			return registry.ChampionAlias, v, true
		}
		return "", m.LatestVersion, m.LatestVersion > 0
	case isDigits(ref):
		v, err := strconv.ParseInt(ref, 10, 64)
		return "", v, err == nil && v > 0
	default:
		v, ok := m.Aliases[ref]
		return ref, v, ok
	}
}

func (c *Controller) status(st *spec.RolloutStatus, plan rollout.Plan, s rollout.State, stable, canary int64, weight int) *spec.RolloutStatus {
	st.Phase, st.Stable, st.Canary = spec.RolloutProgressing, stable, canary
	st.Step, st.Steps, st.CanaryWeight, st.Failures = s.Step+1, len(plan.Steps), weight, s.Failures
	st.Started, st.StepStarted = timePtr(s.Started), timePtr(s.StepStarted)
	return st
}

// route is the routing of a rollout at canary weight w: the shadow mirrors
// the stable version's traffic to the canary when shadowMismatchRate is a
// gate.
func (c *Controller) route(r *spec.RolloutSpec, plan rollout.Plan, model string, stable, canary int64, w int) *rollout.Route {
	rt := &rollout.Route{Model: model, Stable: stable, Canary: canary, CanaryWeight: w}
	if plan.Has(rollout.ShadowMismatchRate) {
		rt.ShadowPercent, rt.Tolerance = spec.DefaultShadowPercent, r.Analysis.Tolerance
		if p := r.Analysis.ShadowPercent; p != nil {
			rt.ShadowPercent = *p
		}
	}
	return rt
}

func (c *Controller) opener(ns, name string) func() {
	return func() { c.opts.Windows.OpenWindow(ns, name, c.opts.Now()) }
}

// closer closes the window a rollout in progress had open.
func (c *Controller) closer(ns, name string, prev *spec.RolloutStatus) func() {
	if prev == nil || prev.Phase != spec.RolloutProgressing {
		return nil
	}
	return func() { c.opts.Windows.CloseWindow(ns, name) }
}

// record appends a rollout event to the audit log; a failure to record is
// logged, not retried (the rollout's status holds the same story).
func (c *Controller) record(ctx context.Context, ns, name, actor, event, summary string) {
	c.log.Info(summary, "namespace", ns, "service", name)
	if c.opts.Metrics != nil {
		c.opts.Metrics.RolloutEvent(ns, name, event)
	}
	if c.opts.Audit == nil {
		return
	}
	if actor == "" {
		actor = "rollout"
	}
	ev := audit.Event{Time: c.opts.Now(), Actor: actor, Source: "rollout", Action: audit.ActionUpdate,
		Kind: spec.KindInferenceService, Namespace: ns, Name: name, Summary: summary}
	if _, err := c.opts.Audit.AppendEvent(ctx, ev); err != nil {
		c.log.Warn("cannot record a rollout event", "namespace", ns, "service", name, "err", err)
	}
}

// tick is how often a rollout in progress is analysed: a sixth of a step,
// between 1 and 10 seconds.
func tick(p rollout.Plan) time.Duration {
	return min(max(p.Interval/6, time.Second), 10*time.Second)
}

func versionTarget(model string, v int64) string { return model + "@" + strconv.FormatInt(v, 10) }

func sameModel(target, model string) bool {
	m, _, err := spec.ParseTarget(target)
	return err == nil && m == model
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func timePtr(t time.Time) *time.Time {
	u := t.UTC()
	return &u
}
