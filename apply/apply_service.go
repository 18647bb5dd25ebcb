package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

// planService checks that every target of an InferenceService resolves — in the
// registry, or among the Models of the same apply — and adds its step.
func (p *plan) planService(ctx context.Context, d spec.Document, s *spec.InferenceService) {
	ns, name := s.Metadata.Namespace, s.Metadata.Name
	stored, managedBy, adopted, ok := p.existing(ctx, d)
	if !ok {
		return
	}
	before := len(p.errs)
	for i, t := range s.Spec.Traffic {
		p.checkTarget(ctx, d, fmt.Sprintf("spec.traffic[%d].model", i), ns, t.Model)
	}
	if s.Spec.Shadow != nil {
		p.checkTarget(ctx, d, "spec.shadow.model", ns, s.Spec.Shadow.Model)
	}
	if len(p.errs) > before || p.internal != nil {
		return
	}
	specJSON, err := marshalSpec(s.Spec)
	if err != nil {
		p.fail(err)
		return
	}
	var beforeObj spec.Object
	gen, expect := int64(1), int64(0)
	if stored != nil {
		prev, err := serviceFromStored(*stored)
		if err != nil {
			p.fail(err)
			return
		}
		beforeObj = serviceView(prev)
		gen, expect = stored.Generation, stored.ResourceVersion
		if string(stored.Spec) != string(specJSON) {
			gen++
		}
	}
	after := serviceView(s)
	diff := ""
	// Same stored spec and metadata: the views are equal, and rendering both
	// as YAML (most of a no-op sync's time) is skipped.
	if stored == nil || string(stored.Spec) != string(specJSON) || !sameMeta(stored, s.Metadata) {
		diff = diffOf(beforeObj, after)
	}
	st := &step{action: audit.ActionUpdate, summary: serviceSummary(s.Spec), managedBy: managedBy}
	st.result = spec.Result{Kind: spec.KindInferenceService, Namespace: ns, Name: name, Generation: gen, Diff: diff}
	switch {
	case stored == nil:
		st.result.Action, st.action = spec.ActionCreated, audit.ActionCreate
	case diff != "" || adopted:
		st.result.Action = spec.ActionConfigured
	default:
		st.result.Action = spec.ActionUnchanged
		st.commit = func(context.Context) error { return nil }
		p.steps = append(p.steps, st)
		return
	}
	declared := s.Spec
	st.commit = func(ctx context.Context) error {
		// A target deleted since validation (an imperative delete does not
		// wait for applies) fails the apply instead of being routed to.
		if err := p.e.checkTargetsExist(ctx, ns, name, declared); err != nil {
			return err
		}
		_, err := p.e.opts.Resources.PutResource(ctx, spec.StoredResource{
			Kind: spec.KindInferenceService, Namespace: ns, Name: name,
			Labels: emptyToNil(s.Metadata.Labels), Annotations: emptyToNil(s.Metadata.Annotations),
			Spec: specJSON, Generation: gen, ManagedBy: managedBy, AppliedBy: p.req.AppliedBy,
		}, expect)
		return err
	}
	st.after = func(ctx context.Context) { p.e.syncService(ctx, ns, name) }
	p.steps = append(p.steps, st)
}

// checkTarget reports a target whose model, alias or version does not exist
// and is not declared in this apply.
func (p *plan) checkTarget(ctx context.Context, d spec.Document, field, ns, target string) {
	model, ref, err := spec.ParseTarget(target)
	if err != nil {
		p.errs = append(p.errs, d.Errorf(field, errs.InvalidArgument, "%v", err))
		return
	}
	mp, err := p.modelState(ctx, ns, model)
	if err != nil {
		p.fail(err)
		return
	}
	n, isNum := versionOf(ref)
	_, hasVersion := mp.versions[n]
	_, hasAlias := mp.aliases[ref]
	switch {
	case !mp.exists && len(mp.versions) == 0:
		p.errs = append(p.errs, d.Errorf(field, errs.NotFound,
			"model %s does not exist in namespace %s; push it or declare a Model in the same apply", model, ns))
	case ref == "":
	case isNum:
		if !hasVersion {
			p.errs = append(p.errs, d.Errorf(field, errs.NotFound, "model %s has no version %d%s", model, n, versionsHint(mp)))
		}
	default:
		if !hasAlias {
			hint := "it has no aliases"
			if len(mp.aliases) > 0 {
				hint = "its aliases: " + strings.Join(slices.Sorted(maps.Keys(mp.aliases)), ", ")
			}
			p.errs = append(p.errs, d.Errorf(field, errs.NotFound, "model %s has no alias %q; %s", model, ref, hint))
		}
	}
}

func versionsHint(mp *modelPlan) string {
	if len(mp.versions) == 0 {
		return ""
	}
	ns := make([]string, 0, len(mp.versions))
	for _, n := range slices.Sorted(maps.Keys(mp.versions)) {
		ns = append(ns, strconv.FormatInt(n, 10))
	}
	return "; its versions: " + strings.Join(ns, ", ")
}

// versionOf is the version number a target's ref names, if it names one
// (ParseTarget leaves numbers in canonical form; aliases are never numbers).
func versionOf(ref string) (int64, bool) {
	n, err := strconv.ParseInt(ref, 10, 64)
	return n, err == nil
}

// targets lists every model reference of a service: traffic, then shadow.
func targets(s spec.ServiceSpec) []string {
	out := make([]string, 0, len(s.Traffic)+1)
	for _, t := range s.Traffic {
		out = append(out, t.Model)
	}
	if s.Shadow != nil {
		out = append(out, s.Shadow.Model)
	}
	return out
}

// serviceFromStored rebuilds a service from its stored row (no status).
func serviceFromStored(r spec.StoredResource) (*spec.InferenceService, error) {
	s := &spec.InferenceService{TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindInferenceService}}
	if err := json.Unmarshal(r.Spec, &s.Spec); err != nil {
		return nil, fmt.Errorf("stored spec of inferenceservice %s/%s: %w", r.Namespace, r.Name, err)
	}
	s.Metadata = spec.ObjectMeta{
		Name: r.Name, Namespace: r.Namespace, Labels: emptyToNil(r.Labels), Annotations: emptyToNil(r.Annotations),
		Generation: r.Generation, ResourceVersion: strconv.FormatInt(r.ResourceVersion, 10), ManagedBy: r.ManagedBy,
	}
	if !r.CreatedAt.IsZero() {
		t := r.CreatedAt.UTC()
		s.Metadata.CreationTimestamp = &t
	}
	return s, nil
}

// serviceView is s without server-written fields, as diffs compare it.
func serviceView(s *spec.InferenceService) *spec.InferenceService {
	out := &spec.InferenceService{TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindInferenceService}, Spec: s.Spec}
	out.Metadata = spec.ObjectMeta{Name: s.Metadata.Name, Namespace: s.Metadata.Namespace,
		Labels: emptyToNil(s.Metadata.Labels), Annotations: emptyToNil(s.Metadata.Annotations)}
	return out
}

func serviceSummary(s spec.ServiceSpec) string {
	parts := make([]string, 0, len(s.Traffic))
	for _, t := range s.Traffic {
		w := 0
		if t.Weight != nil {
			w = *t.Weight
		}
		parts = append(parts, fmt.Sprintf("%s=%d", t.Model, w))
	}
	out := "traffic " + strings.Join(parts, ",")
	if s.Shadow != nil {
		pct := 100
		if s.Shadow.Percent != nil {
			pct = *s.Shadow.Percent
		}
		out += fmt.Sprintf("; shadow %s %d%%", s.Shadow.Model, pct)
	}
	return out
}
