package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// Observer reports live serving state for status.
type Observer interface {
	// VersionState is a version's residency state (ready, loading, idle,
	// evicted, failed, unloaded; "" if never loaded) and, if failed, why.
	VersionState(ctx context.Context, ns, model string, version int64) (state, reason string)
	// ServiceStats are a service's counters since the server started.
	ServiceStats(ns, name string) (ServiceStats, bool)
}

// ServiceStats are what the router counted for one service.
type ServiceStats struct {
	// Generation is the spec generation the router serves.
	Generation int64
	Targets    []TargetStats
	Shadow     *spec.ShadowStatus
}

// TargetStats are one target's counters.
type TargetStats struct {
	Target   string
	Requests int64
	Errors   int64
	Latency  time.Duration // total
}

// TriggerObserver reports what a running trigger counted (the Trigger
// controller).
type TriggerObserver interface {
	TriggerCounts(ns, name string) (spec.TriggerCounts, bool)
}

// Get returns one resource with its status.
func (e *Engine) Get(ctx context.Context, kind, ns, name string) (spec.Object, error) {
	switch kind {
	case spec.KindModel:
		reg, err := e.opts.Registry.GetModel(ctx, ns, name)
		if err != nil {
			return nil, fmt.Errorf("get model: %w", err)
		}
		return e.modelObject(ctx, reg)
	case spec.KindInferenceService:
		r, err := e.opts.Resources.GetResource(ctx, spec.KindInferenceService, ns, name)
		if errors.Is(err, errs.ErrNotFound) {
			return nil, errs.New(errs.NotFound, "inferenceservice %s not found in namespace %s", name, ns)
		}
		if err != nil {
			return nil, fmt.Errorf("get inferenceservice: %w", err)
		}
		return e.serviceObject(ctx, r)
	}
	if isStoredKind(kind) {
		return e.getStored(ctx, kind, ns, name)
	}
	return nil, errs.New(errs.NotFound, "unknown kind %q", kind)
}

// List returns a kind's resources in ns ("" for every namespace), by
// namespace, then name.
func (e *Engine) List(ctx context.Context, kind, ns string) ([]spec.Object, error) {
	out := []spec.Object{}
	switch kind {
	case spec.KindModel:
		nss := []string{ns}
		if ns == "" {
			var err error
			if nss, err = e.opts.Registry.Store().ListNamespaces(ctx); err != nil {
				return nil, fmt.Errorf("list models: %w", err)
			}
		}
		for _, n := range nss {
			opt := registry.ListOptions{Limit: registry.MaxPageSize}
			for {
				page, err := e.opts.Registry.ListModels(ctx, n, opt)
				if err != nil {
					return nil, fmt.Errorf("list models: %w", err)
				}
				for _, m := range page.Items {
					obj, err := e.modelObject(ctx, m)
					if err != nil {
						return nil, err
					}
					out = append(out, obj)
				}
				if page.Next == "" {
					break
				}
				opt.After = page.Next
			}
		}
	case spec.KindInferenceService:
		rs, err := e.opts.Resources.ListResources(ctx, spec.KindInferenceService, ns)
		if err != nil {
			return nil, fmt.Errorf("list inferenceservices: %w", err)
		}
		for _, r := range rs {
			obj, err := e.serviceObject(ctx, r)
			if err != nil {
				return nil, err
			}
			out = append(out, obj)
		}
	default:
		if isStoredKind(kind) {
			return e.listStored(ctx, kind, ns)
		}
		return nil, errs.New(errs.NotFound, "unknown kind %q", kind)
	}
	return out, nil
}

func (e *Engine) modelObject(ctx context.Context, reg registry.Model) (*spec.Model, error) {
	ns, name := reg.Namespace, reg.Name
	stored, err := e.storedOrNil(ctx, spec.KindModel, ns, name)
	if err != nil {
		return nil, fmt.Errorf("get model: %w", err)
	}
	vs, err := e.opts.Registry.ListVersions(ctx, ns, name)
	if err != nil {
		return nil, fmt.Errorf("get model: %w", err)
	}
	var last spec.ModelSpec
	if stored != nil {
		if err := json.Unmarshal(stored.Spec, &last); err != nil {
			return nil, fmt.Errorf("get model: stored spec of %s/%s: %w", ns, name, err)
		}
	}
	m := modelView(ns, name, reg.Labels, stored, vs, reg.Aliases, servingShown(reg, last.Serving != nil, nil))
	created := reg.CreatedAt.UTC()
	m.Metadata.CreationTimestamp = &created
	st := &spec.ModelStatus{EffectiveAliases: reg.Effective}
	if stored != nil {
		m.Metadata.Generation = stored.Generation
		m.Metadata.ResourceVersion = strconv.FormatInt(stored.ResourceVersion, 10)
		m.Metadata.ManagedBy = stored.ManagedBy
		st.ObservedGeneration = stored.Generation
	}
	var failed []string
	if e.opts.Observer != nil {
		for _, v := range vs {
			if state, reason := e.opts.Observer.VersionState(ctx, ns, name, v.Version); state == "failed" {
				failed = append(failed, fmt.Sprintf("version %d: %s", v.Version, reason))
			}
		}
	}
	msg := fmt.Sprintf("%d versions registered; they load on demand", len(vs))
	st.Conditions = []spec.Condition{{Type: spec.ConditionReady, Status: spec.ConditionTrue, Reason: "Registered", Message: msg}}
	if len(failed) > 0 {
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionDegraded, Status: spec.ConditionTrue,
			Reason: "LoadFailed", Message: strings.Join(failed, "; ")})
	} else {
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionDegraded, Status: spec.ConditionFalse})
	}
	m.Status = st
	return m, nil
}

func (e *Engine) serviceObject(ctx context.Context, r spec.StoredResource) (*spec.InferenceService, error) {
	s, err := serviceFromStored(r)
	if err != nil {
		return nil, err
	}
	st := &spec.ServiceStatus{URL: spec.ServiceURL(r.Namespace, r.Name)}
	var stats ServiceStats
	var haveStats bool
	if e.opts.Observer != nil {
		stats, haveStats = e.opts.Observer.ServiceStats(r.Namespace, r.Name)
	}
	if haveStats {
		st.ObservedGeneration = stats.Generation
	}
	counted := map[string]TargetStats{}
	var total int64
	for _, t := range stats.Targets {
		counted[t.Target] = t
		total += t.Requests
	}
	if stored, err := e.opts.Resources.GetStatus(ctx, r.Kind, r.Namespace, r.Name); err == nil {
		if d, err := decodeServiceDetails(stored.Details); err == nil {
			st.Rollout = d.Rollout
		}
	}
	var missing, failed, loading []string
	for _, t := range servedTraffic(s.Spec.Traffic, st.Rollout) {
		ts := spec.TrafficStatus{Model: t.Model}
		if t.Weight != nil {
			ts.Weight = *t.Weight
		}
		if c, ok := counted[t.Model]; ok {
			ts.Requests, ts.Errors = c.Requests, c.Errors
			if total > 0 {
				ts.Share = math.Round(float64(c.Requests)/float64(total)*1e4) / 1e4
			}
			if c.Requests > 0 {
				ts.MeanMS = math.Round(float64(c.Latency.Microseconds())/float64(c.Requests)) / 1000
			}
		}
		model, ref, _ := spec.ParseTarget(t.Model)
		rv, err := e.opts.Registry.Resolve(ctx, r.Namespace, model, ref)
		switch {
		case err != nil:
			missing = append(missing, t.Model+": "+errs.PublicMessage(err))
		default:
			v := rv.Version
			ts.Version = v
			if e.opts.Observer != nil {
				state, reason := e.opts.Observer.VersionState(ctx, r.Namespace, model, v)
				ts.State = state
				switch state {
				case "failed":
					failed = append(failed, fmt.Sprintf("%s (version %d): %s", t.Model, v, reason))
				case "loading":
					loading = append(loading, t.Model)
				}
			}
		}
		st.Traffic = append(st.Traffic, ts)
	}
	if s.Spec.Shadow != nil {
		sh := spec.ShadowStatus{Model: s.Spec.Shadow.Model}
		if stats.Shadow != nil {
			sh = *stats.Shadow
			sh.Model = s.Spec.Shadow.Model
		}
		st.Shadow = &sh
	}
	switch {
	case len(missing) > 0:
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionFalse,
			Reason: "TargetNotFound", Message: strings.Join(missing, "; ")})
	case haveStats && stats.Generation != r.Generation:
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionFalse,
			Reason: "NotObserved", Message: fmt.Sprintf("the router serves generation %d", stats.Generation)})
	default:
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionReady, Status: spec.ConditionTrue,
			Reason: "Routing", Message: fmt.Sprintf("%d targets; versions load on first request", len(s.Spec.Traffic))})
	}
	if len(loading) > 0 {
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionProgressing, Status: spec.ConditionTrue,
			Reason: "Loading", Message: strings.Join(loading, ", ") + " loading"})
	} else {
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionProgressing, Status: spec.ConditionFalse})
	}
	if len(failed)+len(missing) > 0 {
		reason := "LoadFailed"
		if len(missing) > 0 {
			reason = "TargetNotFound"
		}
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionDegraded, Status: spec.ConditionTrue,
			Reason: reason, Message: strings.Join(append(missing, failed...), "; ")})
	} else {
		st.Conditions = append(st.Conditions, spec.Condition{Type: spec.ConditionDegraded, Status: spec.ConditionFalse})
	}
	s.Status = st
	return s, nil
}

// servedTraffic is the traffic the router serves: the declared targets,
// or while a rollout routes the target by version, the stable version and
// the canary at their weights.
func servedTraffic(declared []spec.TrafficTarget, ro *spec.RolloutStatus) []spec.TrafficTarget {
	if ro == nil || ro.Stable == 0 || (ro.Phase != spec.RolloutProgressing && ro.Phase != spec.RolloutFailed) {
		return declared
	}
	model, _, err := spec.ParseTarget(ro.Target)
	if err != nil {
		return declared
	}
	at := func(v int64, w int) spec.TrafficTarget {
		return spec.TrafficTarget{Model: model + "@" + strconv.FormatInt(v, 10), Weight: &w}
	}
	if ro.Phase == spec.RolloutFailed || ro.CanaryWeight == 0 {
		return []spec.TrafficTarget{at(ro.Stable, 100)}
	}
	return []spec.TrafficTarget{at(ro.Stable, 100-ro.CanaryWeight), at(ro.Canary, ro.CanaryWeight)}
}

// Delete deletes one resource. A Model still targeted by an InferenceService
// is refused (Conflict) naming the services; deleting a Model removes its
// versions and aliases from the registry. The delete and its audit event are
// one transaction.
func (e *Engine) Delete(ctx context.Context, dr spec.DeleteRequest) (spec.Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx = registry.WithoutAudit(context.WithoutCancel(ctx)) // the engine records the delete
	if err := e.CheckUnlocked(ctx, dr.Kind, dr.Namespace, dr.Name); err != nil {
		return spec.Result{}, err
	}
	if dr.DryRun {
		res, _, err := e.deleteLocked(ctx, dr, nil)
		return res, err
	}
	var res spec.Result
	var after func(context.Context)
	err := e.opts.Registry.Atomic(ctx, func(ctx context.Context) error {
		var err error
		res, after, err = e.deleteLocked(ctx, dr, nil)
		return err
	})
	if err != nil {
		return res, err
	}
	if after != nil {
		after(ctx)
	}
	return res, nil
}

// deleteLocked deletes one resource through ctx (inside the caller's
// transaction unless a dry run) and returns what to run once it committed.
func (e *Engine) deleteLocked(ctx context.Context, dr spec.DeleteRequest, deleting map[string]bool) (spec.Result, func(context.Context), error) {
	res := spec.Result{Kind: dr.Kind, Namespace: dr.Namespace, Name: dr.Name, Action: spec.ActionDeleted}
	before, err := e.Get(ctx, dr.Kind, dr.Namespace, dr.Name)
	if err != nil {
		return res, nil, err
	}
	// The owner looks again: a delete by hand of what it owns is drift.
	managedBy := before.GetMeta().ManagedBy
	before = stripped(before)
	res.Diff = diffOf(before, nil)
	if m := before.GetMeta(); m.Generation > 0 {
		res.Generation = m.Generation
	}
	var after func(context.Context)
	switch dr.Kind {
	case spec.KindModel:
		if err := e.checkUnused(ctx, dr.Namespace, dr.Name, deleting); err != nil {
			return res, nil, err
		}
		if dr.DryRun {
			return res, nil, nil
		}
		// The registry's delete guard checks the services again inside the
		// transaction and drops the Model's resource row with it.
		if err := e.opts.Registry.DeleteModel(ctx, dr.Namespace, dr.Name, true); err != nil {
			return res, nil, err
		}
	case spec.KindInferenceService:
		if dr.DryRun {
			return res, nil, nil
		}
		if err := e.opts.Resources.DeleteResource(ctx, spec.KindInferenceService, dr.Namespace, dr.Name, 0); err != nil {
			return res, nil, err
		}
		after = func(ctx context.Context) {
			e.syncService(ctx, dr.Namespace, dr.Name)
			if e.opts.OnChange != nil {
				e.opts.OnChange(spec.KindInferenceService, dr.Namespace, dr.Name, managedBy)
			}
		}
	default:
		if err := e.deleteStored(ctx, dr, deleting); err != nil {
			return res, nil, err
		}
		if dr.DryRun {
			return res, nil, nil
		}
		if e.opts.OnChange != nil {
			after = func(context.Context) { e.opts.OnChange(dr.Kind, dr.Namespace, dr.Name, managedBy) }
		}
	}
	if err := e.record(ctx, spec.Request{Actor: dr.Actor, Source: dr.Source}, &step{result: res, action: audit.ActionDelete, summary: "deleted"}); err != nil {
		return res, nil, err
	}
	return res, after, nil
}

// DeleteFiles deletes every resource the files declare, after checking that
// each exists; a missing one fails the call before anything is deleted.
func (e *Engine) DeleteFiles(ctx context.Context, req spec.Request) (*spec.Response, error) {
	docs, invalid, fes, err := e.decode(ctx, req)
	if err != nil {
		return nil, err
	}
	if denied := authorize(req, docs, invalid); len(denied) > 0 {
		return nil, denied
	}
	if len(fes) > 0 {
		return nil, fes.Sorted()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var missing spec.Errors
	for _, d := range docs {
		m := d.Object.GetMeta()
		if _, err := e.Get(ctx, d.Object.GetKind(), m.Namespace, m.Name); err != nil {
			if !errors.Is(err, errs.ErrNotFound) {
				return nil, err
			}
			missing = append(missing, d.Errorf("metadata.name", errs.NotFound, "%s", errs.PublicMessage(err)))
		}
	}
	if len(missing) > 0 {
		return nil, missing.Sorted()
	}
	// Every Model must be free of services other than the ones deleted with it
	// before anything is deleted, dry run or not.
	deleting := map[string]bool{}
	for _, d := range docs {
		m := d.Object.GetMeta()
		markDeleting(deleting, d.Object.GetKind(), m.Namespace, m.Name)
	}
	var inUse spec.Errors
	for _, d := range docs {
		if m := d.Object.GetMeta(); d.Object.GetKind() == spec.KindModel {
			if err := e.checkUnused(ctx, m.Namespace, m.Name, deleting); err != nil {
				if errs.KindOf(err) != errs.Conflict {
					return nil, err
				}
				inUse = append(inUse, d.Errorf("metadata.name", errs.Conflict, "%s", errs.PublicMessage(err)))
			}
		}
	}
	if len(inUse) > 0 {
		return nil, inUse.Sorted()
	}
	// Services first: a Model is refused while a service targets it. Past the
	// checks, a client that goes away does not stop the deletes, and they are
	// one transaction: a failure part way deletes nothing.
	ctx = registry.WithoutAudit(context.WithoutCancel(ctx))
	resp := &spec.Response{DryRun: req.DryRun}
	var afters []func(context.Context)
	deleteAll := func(ctx context.Context) error {
		for _, kind := range deleteKinds {
			for _, d := range docs {
				if d.Object.GetKind() != kind {
					continue
				}
				m := d.Object.GetMeta()
				if err := e.CheckUnlocked(ctx, kind, m.Namespace, m.Name); err != nil {
					return err
				}
				res, after, err := e.deleteLocked(ctx, spec.DeleteRequest{Kind: kind, Namespace: m.Namespace, Name: m.Name,
					DryRun: req.DryRun, Actor: req.Actor, Source: req.Source}, deleting)
				if err != nil {
					return fmt.Errorf("%s %s/%s: %w", kind, m.Namespace, m.Name, err)
				}
				resp.Results = append(resp.Results, res)
				if after != nil {
					afters = append(afters, after)
				}
			}
		}
		return nil
	}
	if req.DryRun {
		if err := deleteAll(ctx); err != nil {
			return nil, fmt.Errorf("delete: %w", err)
		}
		return resp, nil
	}
	if err := e.opts.Registry.Atomic(ctx, deleteAll); err != nil {
		return nil, fmt.Errorf("delete: nothing was deleted: %w", err)
	}
	for _, after := range afters {
		after(ctx)
	}
	return resp, nil
}

// checkUnused is a Conflict naming the services (other than those in
// deleting) that target model.
func (e *Engine) checkUnused(ctx context.Context, ns, model string, deleting map[string]bool) error {
	users, err := e.servicesTargeting(ctx, ns, model, deleting, func(string) bool { return true })
	if err != nil {
		return err
	}
	if len(users) > 0 {
		names := make([]string, len(users))
		for i, u := range users {
			names[i] = u.name
		}
		return errs.New(errs.Conflict, "model %s is a target of inferenceservice %s; change or delete those first",
			model, strings.Join(names, ", "))
	}
	return nil
}

// stripped is obj without status and server-written metadata, for diffs.
func stripped(obj spec.Object) spec.Object {
	switch o := obj.(type) {
	case *spec.Model:
		c := *o
		c.Status = nil
		c.Metadata = spec.ObjectMeta{Name: o.Metadata.Name, Namespace: o.Metadata.Namespace, Labels: o.Metadata.Labels, Annotations: o.Metadata.Annotations}
		return &c
	case *spec.InferenceService:
		return serviceView(o)
	}
	if isStoredKind(obj.GetKind()) {
		m := obj.GetMeta()
		if r, err := storedRowOf(obj); err == nil {
			r.Labels, r.Annotations = m.Labels, m.Annotations
			if v, err := specObject(r); err == nil {
				return v
			}
		}
	}
	return obj
}
