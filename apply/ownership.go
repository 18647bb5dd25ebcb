package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// fetcher is the fetcher of this apply's artifacts.
func (p *plan) fetcher() Fetcher {
	if p.sync.Fetcher != nil {
		return p.sync.Fetcher
	}
	return p.e.opts.Fetcher
}

// ownership is who owns a declared resource after this apply: the apply's
// owner (a GitSource's sync), refused when another source owns it already;
// otherwise whoever owned it before (a change by hand to an owned resource
// is drift, not a change of owner). adopted says the owner changes.
func (p *plan) ownership(ctx context.Context, d spec.Document, stored *spec.StoredResource) (managedBy string, adopted, ok bool) {
	prev := ""
	if stored != nil {
		prev = stored.ManagedBy
	}
	if p.sync.Owner == nil {
		if stored != nil && prev != "" {
			if err := p.e.lockedBy(ctx, *stored); err != nil {
				p.errs = append(p.errs, d.Errorf("metadata.name", errs.KindOf(err), "%s", errs.PublicMessage(err)))
				return "", false, false
			}
		}
		return prev, false, true
	}
	m := d.Object.GetMeta()
	want := spec.ManagedBy(*p.sync.Owner, m.Namespace)
	if prev != "" && prev != want {
		// What a deleted source left is owned by no live source: adopted,
		// like a resource made by hand.
		switch gone, err := p.e.ownerGone(ctx, prev, m.Namespace); {
		case err != nil:
			p.fail(err)
			return "", false, false
		case gone:
			return want, true, true
		}
		p.errs = append(p.errs, d.Errorf("metadata.name", errs.Conflict,
			"%s %s/%s is owned by %s; two GitSources may not own one resource (remove it from one of them)",
			d.Object.GetKind(), m.Namespace, m.Name, prev))
		return "", false, false
	}
	return want, prev != want, true
}

// existing reads what is stored of d's resource and checks what every kind
// checks first: its resourceVersion (an optimistic update) and who owns it.
// ok false: a problem was recorded, and d is planned no further.
func (p *plan) existing(ctx context.Context, d spec.Document) (stored *spec.StoredResource, managedBy string, adopted, ok bool) {
	m := d.Object.GetMeta()
	stored, err := p.storedOrNil(ctx, d.Object.GetKind(), m.Namespace, m.Name)
	if err != nil {
		p.fail(err)
		return nil, "", false, false
	}
	if !p.checkResourceVersion(d, stored) {
		return nil, "", false, false
	}
	managedBy, adopted, ok = p.ownership(ctx, d, stored)
	return stored, managedBy, adopted, ok
}

// deleteKinds is the order a delete of several kinds goes in: what refers
// to a resource before it (a Trigger before its Connection, a service
// before the Model it targets), so that both may go in one transaction.
var deleteKinds = append(slices.Clone(storedKinds), spec.KindInferenceService, spec.KindModel)

// planPrune adds a delete step for every resource the apply's owner owns in
// the prune namespaces that no document declares. A resource made by hand,
// or owned by another source, is never touched; nor is one in a namespace
// the request may not write in (a source applied again by someone who may
// write less than whoever pointed it there): that refuses the apply.
func (p *plan) planPrune(ctx context.Context, docs []spec.Document) {
	declared := map[string]bool{}
	for _, d := range docs {
		m := d.Object.GetMeta()
		declared[d.Object.GetKind()+"/"+m.Namespace+"/"+m.Name] = true
	}
	deleting := map[string]bool{}
	var victims []spec.DeleteRequest
	for _, kind := range deleteKinds {
		for _, ns := range slices.Compact(slices.Sorted(slices.Values(p.sync.PruneNamespaces))) {
			rs, err := p.e.opts.Resources.ListResources(ctx, kind, ns)
			if err != nil {
				p.fail(err)
				return
			}
			owner := spec.ManagedBy(*p.sync.Owner, ns)
			for _, r := range rs {
				if r.ManagedBy != owner || declared[kind+"/"+ns+"/"+r.Name] {
					continue
				}
				victims = append(victims, spec.DeleteRequest{Kind: kind, Namespace: ns, Name: r.Name,
					DryRun: p.req.DryRun, Actor: p.req.Actor, Source: p.req.Source})
				markDeleting(deleting, kind, ns, r.Name)
			}
		}
	}
	verdicts := map[[2]string]error{}
	for _, dr := range victims {
		if p.req.Authorize != nil {
			k := [2]string{dr.Kind, dr.Namespace}
			err, seen := verdicts[k]
			if !seen {
				err = p.req.Authorize(dr.Kind, dr.Namespace)
				verdicts[k] = err
			}
			if err != nil {
				p.errs = append(p.errs, spec.FieldError{Kind: dr.Kind, Name: dr.Namespace + "/" + dr.Name,
					Message: "cannot prune it (no longer declared): " + errs.PublicMessage(err), Code: errs.PermissionDenied.String()})
				continue
			}
		}
		// Checked now (a dry run answers with what would go); deleted at commit.
		res, _, err := p.e.deleteLocked(ctx, spec.DeleteRequest{Kind: dr.Kind, Namespace: dr.Namespace, Name: dr.Name, DryRun: true}, deleting)
		if err != nil {
			p.errs = append(p.errs, spec.FieldError{Kind: dr.Kind, Name: dr.Namespace + "/" + dr.Name,
				Message: "cannot prune it (no longer declared): " + errs.PublicMessage(err), Code: errs.KindOf(err).String()})
			continue
		}
		// deleteLocked records the delete's audit event itself.
		st := &step{result: res, action: audit.ActionDelete, summary: "pruned: no longer declared", recorded: true}
		st.result.Action = spec.ActionDeleted
		dr.DryRun = false
		st.commit = func(ctx context.Context) error {
			_, after, err := p.e.deleteLocked(ctx, dr, deleting)
			st.after = after
			return err
		}
		p.steps = append(p.steps, st)
	}
}

// gitSourceObject is a stored GitSource with the status its controller
// recorded.
func (e *Engine) gitSourceObject(ctx context.Context, r spec.StoredResource) (*spec.GitSource, error) {
	g := &spec.GitSource{TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindGitSource}}
	if err := json.Unmarshal(r.Spec, &g.Spec); err != nil {
		return nil, fmt.Errorf("stored spec of gitsource %s/%s: %w", r.Namespace, r.Name, err)
	}
	g.Metadata = storedMeta(r)
	st := &spec.GitSourceStatus{}
	rec, err := e.opts.Resources.GetStatus(ctx, spec.KindGitSource, r.Namespace, r.Name)
	switch {
	case err == nil:
		st.ObservedGeneration, st.Conditions = rec.ObservedGeneration, rec.Conditions
		if len(rec.Details) > 0 {
			if err := json.Unmarshal(rec.Details, &st.GitSyncStatus); err != nil {
				return nil, fmt.Errorf("status of gitsource %s/%s: %w", r.Namespace, r.Name, err)
			}
		}
	case errs.KindOf(err) == errs.NotFound:
		st.Conditions = []spec.Condition{{Type: spec.ConditionReady, Status: spec.ConditionUnknown, Reason: "Pending", Message: "not synced yet"}}
	default:
		return nil, err
	}
	st.AppliedBy = r.AppliedBy
	g.Status = st
	return g, nil
}

// storedMeta is the metadata of a stored resource as views show it.
func storedMeta(r spec.StoredResource) spec.ObjectMeta {
	m := spec.ObjectMeta{
		Name: r.Name, Namespace: r.Namespace, Labels: emptyToNil(r.Labels), Annotations: emptyToNil(r.Annotations),
		Generation: r.Generation, ResourceVersion: strconv.FormatInt(r.ResourceVersion, 10), ManagedBy: r.ManagedBy,
	}
	if !r.CreatedAt.IsZero() {
		t := r.CreatedAt.UTC()
		m.CreationTimestamp = &t
	}
	return m
}

// CheckUnlocked refuses a change made outside git (the API, the CLI) to a
// resource owned by a GitSource whose spec.lockImperative is on, with a
// message naming the source. Anything else passes.
func (e *Engine) CheckUnlocked(ctx context.Context, kind, ns, name string) error {
	r, err := e.opts.Resources.GetResource(ctx, kind, ns, name)
	if errs.KindOf(err) == errs.NotFound {
		return nil
	}
	if err != nil {
		return err
	}
	return e.lockedBy(ctx, r)
}

// ownerGone reports whether managedBy (written in ns) names a GitSource
// that no longer exists.
func (e *Engine) ownerGone(ctx context.Context, managedBy, ns string) (bool, error) {
	o, ok := spec.OwnerOf(managedBy, ns)
	if !ok {
		return false, nil
	}
	_, err := e.opts.Resources.GetResource(ctx, spec.KindGitSource, o.Namespace, o.Name)
	if errs.KindOf(err) == errs.NotFound {
		return true, nil
	}
	return false, err
}

// lockedBy is CheckUnlocked for a resource already read.
func (e *Engine) lockedBy(ctx context.Context, r spec.StoredResource) error {
	o, ok := spec.OwnerOf(r.ManagedBy, r.Namespace)
	if !ok {
		return nil
	}
	src, err := e.opts.Resources.GetResource(ctx, spec.KindGitSource, o.Namespace, o.Name)
	if errs.KindOf(err) == errs.NotFound {
		return nil // its source is gone: nobody locks it
	}
	if err != nil {
		return err
	}
	var gs spec.GitSourceSpec
	if err := json.Unmarshal(src.Spec, &gs); err != nil {
		return fmt.Errorf("stored spec of gitsource %s/%s: %w", o.Namespace, o.Name, err)
	}
	if !spec.Flag(gs.LockImperative, false) {
		return nil
	}
	return errs.New(errs.FailedPrecondition,
		"%s %s/%s is managed by gitsource %s/%s, which refuses changes made outside git (spec.lockImperative): change it in %s",
		r.Kind, r.Namespace, r.Name, o.Namespace, o.Name, spec.RedactURI(gs.URL))
}
