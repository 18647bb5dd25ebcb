package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// The kinds stored as their spec alone, with a controller that does the
// rest: a GitSource syncs, a Trigger consumes, a Connection is read by the
// Triggers of its namespace. The engine stores them, checks what refers to
// what, and shows them with the status their controller recorded.

// planGitSource adds the step of a GitSource.
func (p *plan) planGitSource(ctx context.Context, d spec.Document, g *spec.GitSource) {
	if p.sync.Owner != nil && p.req.Authorize != nil {
		// It will sync as the identity of the source declaring it: it may
		// target only what that source may write, or a source kept to
		// its own namespace could reach any through one of its own.
		refused := false
		for i, tn := range g.Spec.TargetNamespaces {
			if err := p.req.Authorize("", tn); err != nil {
				p.errs = append(p.errs, d.Errorf(fmt.Sprintf("spec.targetNamespaces[%d]", i), errs.PermissionDenied,
					"a GitSource declared by gitsource %s/%s may target only namespaces it may write into: %s",
					p.sync.Owner.Namespace, p.sync.Owner.Name, errs.PublicMessage(err)))
				refused = true
			}
		}
		if refused {
			return
		}
	}
	p.planStored(ctx, d, "gitsource "+spec.RedactURI(g.Spec.URL))
}

// planConnection adds the step of a Connection (authorize let only an admin
// of its namespace declare it).
func (p *plan) planConnection(ctx context.Context, d spec.Document, c *spec.Connection) {
	p.planStored(ctx, d, "connection ("+c.Spec.Bus()+")")
}

// planTrigger adds the step of a Trigger after checking that each
// connection it names is in its namespace (stored, or declared by this
// apply) and is of the bus its endpoint names. Its service is resolved by
// its controller, which reports one that is missing in its status.
func (p *plan) planTrigger(ctx context.Context, d spec.Document, t *spec.Trigger, declared map[string]*spec.Connection) {
	ns := t.Metadata.Namespace
	ok := true
	missing := map[string]bool{} // reported once, at the first field naming it
	for _, ep := range []struct {
		field string
		e     spec.TriggerEndpoint
	}{{"spec.source", t.Spec.Source}, {"spec.sink", t.Spec.Sink}, {"spec.deadLetter", t.Spec.DeadLetter}} {
		c := declared[ns+"/"+ep.e.Connection]
		if c == nil {
			stored, err := p.storedOrNil(ctx, spec.KindConnection, ns, ep.e.Connection)
			if err != nil {
				p.fail(err)
				return
			}
			if stored != nil {
				obj, err := specObject(*stored)
				if err != nil {
					p.fail(err)
					return
				}
				c = obj.(*spec.Connection)
			}
		}
		switch {
		case c == nil && missing[ep.e.Connection]:
			ok = false
		case c == nil:
			missing[ep.e.Connection] = true
			p.errs = append(p.errs, d.Errorf(ep.field+".connection", errs.NotFound,
				"connection %q not found in namespace %s; an admin of it declares one (kind: Connection)", ep.e.Connection, ns))
			ok = false
		case c.Spec.Bus() != ep.e.Bus():
			p.errs = append(p.errs, d.Errorf(ep.field, errs.InvalidArgument,
				"connection %q is a %s connection, not %s: name a %s connection or use %s: settings",
				ep.e.Connection, c.Spec.Bus(), ep.e.Bus(), ep.e.Bus(), c.Spec.Bus()))
			ok = false
		}
	}
	if ok {
		p.planStored(ctx, d, "trigger of "+t.Spec.Service)
	}
}

// planStored adds the step of a resource stored as its spec alone.
func (p *plan) planStored(ctx context.Context, d spec.Document, summary string) {
	kind, m := d.Object.GetKind(), d.Object.GetMeta()
	ns, name := m.Namespace, m.Name
	stored, managedBy, adopted, ok := p.existing(ctx, d)
	if !ok {
		return
	}
	specJSON, err := specJSONOf(d.Object)
	if err != nil {
		p.fail(err)
		return
	}
	var beforeObj spec.Object
	gen, expect := int64(1), int64(0)
	metaChanged := true
	if stored != nil {
		if beforeObj, err = specObject(*stored); err != nil {
			p.fail(err)
			return
		}
		gen, expect = stored.Generation, stored.ResourceVersion
		if string(stored.Spec) != string(specJSON) {
			gen++
		}
		// Applied again by someone else, it is configured: a GitSource
		// then syncs as them.
		metaChanged = !sameMeta(stored, *m) || stored.AppliedBy != p.req.AppliedBy
	}
	row := spec.StoredResource{
		Kind: kind, Namespace: ns, Name: name,
		Labels: emptyToNil(m.Labels), Annotations: emptyToNil(m.Annotations),
		Spec: specJSON, Generation: gen, ManagedBy: managedBy, AppliedBy: p.req.AppliedBy,
	}
	after, err := specObject(row)
	if err != nil {
		p.fail(err)
		return
	}
	diff := diffOf(beforeObj, after)
	st := &step{action: audit.ActionUpdate, summary: summary, managedBy: managedBy}
	st.result = spec.Result{Kind: kind, Namespace: ns, Name: name, Generation: gen, Diff: diff}
	switch {
	case stored == nil:
		st.result.Action, st.action = spec.ActionCreated, audit.ActionCreate
	case diff != "" || adopted || metaChanged:
		st.result.Action = spec.ActionConfigured
	default:
		st.result.Action = spec.ActionUnchanged
		st.commit = func(context.Context) error { return nil }
		p.steps = append(p.steps, st)
		return
	}
	st.commit = func(ctx context.Context) error {
		_, err := p.e.opts.Resources.PutResource(ctx, row, expect)
		return err
	}
	p.steps = append(p.steps, st)
}

// specJSONOf is the spec of obj as it is stored.
func specJSONOf(obj spec.Object) (json.RawMessage, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.GetKind(), err)
	}
	var v struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.GetKind(), err)
	}
	return v.Spec, nil
}

// specObject is a stored resource as its kind's object, metadata and spec
// only: what apply compares and what a delete's diff shows.
func specObject(r spec.StoredResource) (spec.Object, error) {
	obj, err := spec.NewObject(r.Kind)
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Spec       json.RawMessage `json:"spec"`
	}{spec.APIVersion, r.Kind, r.Spec})
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(doc, obj); err != nil {
		return nil, fmt.Errorf("stored spec of %s %s/%s: %w", r.Kind, r.Namespace, r.Name, err)
	}
	*obj.GetMeta() = spec.ObjectMeta{Name: r.Name, Namespace: r.Namespace, Labels: emptyToNil(r.Labels), Annotations: emptyToNil(r.Annotations)}
	return obj, nil
}

// storedKinds are the kinds planStored stores, in the order a delete of
// several goes: what refers to a Connection (a Trigger) before it.
var storedKinds = []string{spec.KindGitSource, spec.KindTrigger, spec.KindConnection}

func isStoredKind(kind string) bool {
	for _, k := range storedKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// storedView is a stored resource of a storedKind with the status its
// controller recorded.
func (e *Engine) storedView(ctx context.Context, r spec.StoredResource) (spec.Object, error) {
	switch r.Kind {
	case spec.KindGitSource:
		return e.gitSourceObject(ctx, r)
	}
	obj, err := specObject(r)
	if err != nil {
		return nil, err
	}
	*obj.GetMeta() = storedMeta(r)
	if t, ok := obj.(*spec.Trigger); ok {
		st := &spec.TriggerStatus{}
		rec, err := e.opts.Resources.GetStatus(ctx, spec.KindTrigger, r.Namespace, r.Name)
		switch {
		case err == nil:
			st.ObservedGeneration, st.Conditions = rec.ObservedGeneration, rec.Conditions
			if len(rec.Details) > 0 {
				if err := json.Unmarshal(rec.Details, st); err != nil {
					return nil, fmt.Errorf("status of trigger %s/%s: %w", r.Namespace, r.Name, err)
				}
				st.ObservedGeneration, st.Conditions = rec.ObservedGeneration, rec.Conditions
			}
		case errs.KindOf(err) == errs.NotFound:
			st.Conditions = []spec.Condition{{Type: spec.ConditionReady, Status: spec.ConditionUnknown, Reason: "Pending", Message: "not started yet"}}
		default:
			return nil, err
		}
		st.Lag = -1 // not running here: nothing known of its lag
		if e.opts.Triggers != nil {
			if c, ok := e.opts.Triggers.TriggerCounts(r.Namespace, r.Name); ok {
				st.TriggerCounts = c
			}
		}
		t.Status = st
	}
	return obj, nil
}

// getStored is Get of a storedKind.
func (e *Engine) getStored(ctx context.Context, kind, ns, name string) (spec.Object, error) {
	r, err := e.opts.Resources.GetResource(ctx, kind, ns, name)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "%s %s not found in namespace %s", lower(kind), name, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", lower(kind), err)
	}
	return e.storedView(ctx, r)
}

// listStored is List of a storedKind.
func (e *Engine) listStored(ctx context.Context, kind, ns string) ([]spec.Object, error) {
	rs, err := e.opts.Resources.ListResources(ctx, kind, ns)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", spec.Plural(kind), err)
	}
	out := make([]spec.Object, 0, len(rs))
	for _, r := range rs {
		obj, err := e.storedView(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
	return out, nil
}

// deleteStored deletes a resource of a storedKind inside the caller's
// transaction. A Connection still named by a Trigger that is not deleted
// with it is refused, naming the triggers. What a deleted GitSource
// deployed stays, owned by no live source, until someone deletes it or
// another source adopts it.
func (e *Engine) deleteStored(ctx context.Context, dr spec.DeleteRequest, deleting map[string]bool) error {
	if dr.Kind == spec.KindConnection {
		users, err := e.connectionUsers(ctx, dr.Namespace, dr.Name, deleting)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return errs.New(errs.Conflict, "connection %s/%s is used by trigger(s) %v; delete or change them first", dr.Namespace, dr.Name, users)
		}
	}
	if dr.DryRun {
		return nil
	}
	return e.opts.Resources.DeleteResource(ctx, dr.Kind, dr.Namespace, dr.Name, 0)
}

// connectionUsers are the triggers of ns naming connection name, except
// those being deleted (keys "Trigger/ns/name").
func (e *Engine) connectionUsers(ctx context.Context, ns, name string, deleting map[string]bool) ([]string, error) {
	rs, err := e.opts.Resources.ListResources(ctx, spec.KindTrigger, ns)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, r := range rs {
		if deleting[spec.KindTrigger+"/"+ns+"/"+r.Name] {
			continue
		}
		var ts spec.TriggerSpec
		if err := json.Unmarshal(r.Spec, &ts); err != nil {
			return nil, fmt.Errorf("stored spec of trigger %s/%s: %w", ns, r.Name, err)
		}
		for _, ep := range []spec.TriggerEndpoint{ts.Source, ts.Sink, ts.DeadLetter} {
			if ep.Connection == name {
				users = append(users, r.Name)
				break
			}
		}
	}
	return users, nil
}

func lower(kind string) string { return spec.Plural(kind)[:len(kind)] }

// storedRowOf is obj's kind, name and spec as a row (no metadata beyond).
func storedRowOf(obj spec.Object) (spec.StoredResource, error) {
	b, err := specJSONOf(obj)
	m := obj.GetMeta()
	return spec.StoredResource{Kind: obj.GetKind(), Namespace: m.Namespace, Name: m.Name, Spec: b}, err
}

// markDeleting records that a delete (or a prune) removes a resource, for
// the checks of what refers to it: services by "ns/name" (the Models'
// check), triggers by "Trigger/ns/name" (the Connections').
func markDeleting(deleting map[string]bool, kind, ns, name string) {
	switch kind {
	case spec.KindInferenceService:
		deleting[ns+"/"+name] = true
	case spec.KindTrigger:
		deleting[spec.KindTrigger+"/"+ns+"/"+name] = true
	}
}
