package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/spec"
)

// loadModel reads a model and its versions; exists is false (and err nil)
// when the registry has no such model.
func (e *Engine) loadModel(ctx context.Context, ns, name string) (reg registry.Model, vs []registry.Version, exists bool, err error) {
	reg, err = e.opts.Registry.GetModel(ctx, ns, name)
	if errors.Is(err, errs.ErrNotFound) {
		return registry.Model{}, nil, false, nil
	}
	if err != nil {
		return registry.Model{}, nil, false, err
	}
	if vs, err = e.opts.Registry.ListVersions(ctx, ns, name); err != nil {
		return registry.Model{}, nil, false, err
	}
	return reg, vs, true, nil
}

func newModelPlan(reg registry.Model, vs []registry.Version, exists bool) *modelPlan {
	mp := &modelPlan{exists: exists, versions: make(map[int64]registry.Version, len(vs)), aliases: maps.Clone(reg.Aliases)}
	if mp.aliases == nil {
		mp.aliases = map[string]int64{}
	}
	for _, v := range vs {
		mp.versions[v.Version] = v
	}
	return mp
}

// modelState is what a plan knows about a model: as it is, or as this apply
// will leave it.
func (p *plan) modelState(ctx context.Context, ns, name string) (*modelPlan, error) {
	key := ns + "/" + name
	if mp, ok := p.models[key]; ok {
		return mp, nil
	}
	reg, vs, exists, err := p.e.loadModel(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	mp := newModelPlan(reg, vs, exists)
	p.models[key] = mp
	return mp, nil
}

// planModel checks a Model against the registry, fetches the artifacts of new
// versions and adds the step that makes it so.
func (p *plan) planModel(ctx context.Context, d spec.Document, m *spec.Model) {
	ns, name := m.Metadata.Namespace, m.Metadata.Name
	stored, managedBy, adopted, ok := p.existing(ctx, d)
	if !ok {
		return
	}
	reg, existing, exists, err := p.e.loadModel(ctx, ns, name)
	if err != nil {
		p.fail(err)
		return
	}
	var last spec.ModelSpec
	var lastLabels map[string]string
	if stored != nil {
		if err := json.Unmarshal(stored.Spec, &last); err != nil {
			p.fail(fmt.Errorf("apply: stored spec of model %s/%s: %w", ns, name, err))
			return
		}
		lastLabels = stored.Labels
	}
	managed := last.Serving != nil
	mp := newModelPlan(reg, existing, exists)
	before := len(p.errs)
	if !exists && len(m.Spec.Versions) == 0 {
		p.errs = append(p.errs, d.Errorf("spec.versions", errs.InvalidArgument,
			"required: model %s does not exist yet, so declare at least one version", name))
	}

	// Versions: existing ones must match; new ones were fetched and inspected
	// before planning, so a bad artifact fails the apply before anything changes.
	var created []registry.Version
	var fetches []string
	unknown := map[int64]bool{} // new versions whose signature a dry run cannot know
	for i, dv := range m.Spec.Versions {
		field := fmt.Sprintf("spec.versions[%d]", i)
		if cur, ok := mp.versions[dv.Version]; ok {
			if cur.SHA256 != dv.Source.SHA256 {
				p.errs = append(p.errs, d.Errorf(field+".source.sha256", errs.Conflict,
					"version %d of model %s already exists with sha256 %s; versions never change: declare the new artifact as a new version",
					dv.Version, name, cur.SHA256))
			} else if cur.Format != dv.Format {
				p.errs = append(p.errs, d.Errorf(field+".format", errs.Conflict,
					"version %d of model %s already exists with format %q", dv.Version, name, cur.Format))
			}
			continue
		}
		if exists && dv.Version <= reg.LatestVersion {
			p.errs = append(p.errs, d.Errorf(field+".version", errs.Conflict,
				"version %d of model %s was deleted or skipped; numbers are never reused: declare a number above %d",
				dv.Version, name, reg.LatestVersion))
			continue
		}
		if dv.Source.URI == "" {
			p.errs = append(p.errs, d.Errorf(field+".source.uri", errs.InvalidArgument,
				"required: version %d does not exist yet, so its artifact must come from a file:// or https:// URI", dv.Version))
			continue
		}
		if p.fetcher() == nil {
			p.errs = append(p.errs, d.Errorf(field+".source.uri", errs.FailedPrecondition, "this server fetches no artifacts"))
			continue
		}
		art := p.artifacts[artifactKey{ns, name, dv.Version}]
		switch {
		case art == nil:
			// It was not new when the artifacts were fetched: the model was
			// changed (deleted) meanwhile. Fetching here would hold the lock.
			p.errs = append(p.errs, d.Errorf(field+".version", errs.Conflict,
				"model %s changed while this apply fetched its artifacts; apply again", name))
			continue
		case art.err != nil:
			p.errs = append(p.errs, d.Errorf(field+".source."+art.field, errs.KindOf(art.err), "%s", art.public))
			continue
		case art.fetch:
			fetches = append(fetches, spec.RedactURI(dv.Source.URI))
		}
		if !art.known {
			unknown[dv.Version] = true // a dry run that would fetch it: nothing to inspect yet
		}
		sig := art.sig
		v := registry.Version{Namespace: ns, Model: name, Version: dv.Version, Format: dv.Format,
			SHA256: dv.Source.SHA256, Signature: sig, Source: spec.RedactURI(dv.Source.URI)}
		mp.versions[dv.Version] = v
		created = append(created, v)
	}
	slices.SortFunc(created, func(a, b registry.Version) int { return int(a.Version - b.Version) })

	// Aliases: drop the ones this resource declared before and no longer does
	// (one set by hand stays), then set the declared ones.
	var dropAliases []string
	for a := range last.Aliases {
		if _, still := m.Spec.Aliases[a]; !still {
			if _, present := mp.aliases[a]; present {
				dropAliases = append(dropAliases, a)
				delete(mp.aliases, a)
			}
		}
	}
	slices.Sort(dropAliases)
	for _, a := range slices.Sorted(maps.Keys(m.Spec.Aliases)) {
		v := m.Spec.Aliases[a]
		if _, ok := mp.versions[v]; !ok {
			p.errs = append(p.errs, d.Errorf("spec.aliases."+a, errs.NotFound,
				"version %d of model %s neither exists nor is declared in spec.versions", v, name))
			continue
		}
		mp.aliases[a] = v
	}

	// Serving: the declared settings replace the model's; batching needs every
	// version without its own batching override to have a batch dimension.
	var serving *registry.ServingConfig
	if m.Spec.Serving != nil {
		s := spec.ServingDefaults(*m.Spec.Serving)
		serving = &s
		m.Spec.Serving = &s
		if s.BatchSize() > 1 {
			for _, n := range slices.Sorted(maps.Keys(mp.versions)) {
				v := mp.versions[n]
				if (v.Serving != nil && v.Serving.Batching != nil) || unknown[n] {
					continue
				}
				if err := registry.CheckBatchable(v.Signature); err != nil {
					p.errs = append(p.errs, d.Errorf("spec.serving.batching.maxBatchSize", errs.InvalidArgument,
						"version %d cannot batch: %v; leave batching off or give that version its own setting", n, err))
				}
			}
		}
	}
	labels := threeWay(reg.Labels, lastLabels, m.Metadata.Labels)
	if len(p.errs) > before {
		return
	}
	if !p.checkServicesKeepTargets(ctx, d, ns, name, mp) {
		return
	}
	p.models[ns+"/"+name] = mp

	var beforeObj spec.Object
	if exists {
		beforeObj = modelView(ns, name, reg.Labels, stored, existing, reg.Aliases, servingShown(reg, managed, nil))
	}
	after := modelView(ns, name, labels, nil, slices.Collect(maps.Values(mp.versions)), mp.aliases, servingShown(reg, managed, serving))
	after.Metadata.Annotations = emptyToNil(m.Metadata.Annotations)
	if bm, ok := beforeObj.(*spec.Model); ok && stored == nil {
		bm.Metadata.Annotations = nil
	}
	diff := diffOf(beforeObj, after)

	declared := m.Spec
	declared.Versions = slices.Clone(m.Spec.Versions)
	for i := range declared.Versions {
		declared.Versions[i].Source.URI = spec.RedactURI(declared.Versions[i].Source.URI)
	}
	slices.SortFunc(declared.Versions, func(a, b spec.ModelVersion) int { return int(a.Version - b.Version) })
	specJSON, err := marshalSpec(declared)
	if err != nil {
		p.fail(err)
		return
	}
	// The generation counts changes of the declared spec. A declaration that
	// changed although the live state already matched (an alias removed by hand,
	// then from the file) is still stored, so later three-way merges see it.
	gen, expect := int64(1), int64(0)
	specChanged, metaChanged := true, true
	if stored != nil {
		gen, expect = stored.Generation, stored.ResourceVersion
		specChanged = string(stored.Spec) != string(specJSON)
		metaChanged = !sameMeta(stored, m.Metadata)
		if specChanged {
			gen++
		}
	}
	st := &step{action: audit.ActionUpdate, managedBy: managedBy}
	st.result = spec.Result{Kind: spec.KindModel, Namespace: ns, Name: name, Generation: gen, Diff: diff, Fetch: fetches}
	switch {
	case !exists:
		st.result.Action, st.action = spec.ActionCreated, audit.ActionCreate
	case diff != "" || specChanged || metaChanged || adopted:
		// Also a pushed model applied for the first time: it becomes declared.
		st.result.Action = spec.ActionConfigured
	default:
		st.result.Action = spec.ActionUnchanged
	}
	st.summary = modelSummary(created, dropAliases, m.Spec.Aliases, serving != nil && !reflect.DeepEqual(servingShown(reg, managed, nil), serving))
	if st.result.Action == spec.ActionUnchanged {
		st.commit = func(context.Context) error { return nil }
		p.steps = append(p.steps, st)
		return
	}
	r := p.e.opts.Registry
	st.commit = func(ctx context.Context) error {
		for _, v := range created {
			if _, err := r.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: ns, Model: name,
				Version: v.Version, Format: v.Format, SHA256: v.SHA256, Source: v.Source}); err != nil {
				return err
			}
		}
		for _, a := range dropAliases {
			if err := r.DeleteAlias(ctx, ns, name, a); err != nil && !errors.Is(err, errs.ErrNotFound) {
				return err
			}
		}
		for _, a := range slices.Sorted(maps.Keys(m.Spec.Aliases)) {
			if v := m.Spec.Aliases[a]; reg.Aliases[a] != v {
				if err := r.SetAlias(ctx, ns, name, a, v); err != nil {
					return err
				}
			}
		}
		if serving != nil && !reflect.DeepEqual(servingShown(reg, managed, nil), serving) {
			if _, err := r.SetModelServing(ctx, ns, name, *serving); err != nil {
				return err
			}
		}
		// The merge is redone on the labels as they are inside the commit, so
		// a label set by hand since validation is kept.
		cur, err := r.GetModel(ctx, ns, name)
		if err != nil {
			return err
		}
		if merged := threeWay(cur.Labels, lastLabels, m.Metadata.Labels); !maps.Equal(emptyToNil(cur.Labels), merged) {
			if merged == nil {
				merged = map[string]string{} // clears them
			}
			if _, err := r.PatchModel(ctx, ns, name, registry.ModelPatch{Labels: merged}); err != nil {
				return err
			}
		}
		_, err = p.e.opts.Resources.PutResource(ctx, spec.StoredResource{
			Kind: spec.KindModel, Namespace: ns, Name: name,
			Labels: emptyToNil(m.Metadata.Labels), Annotations: emptyToNil(m.Metadata.Annotations),
			Spec: specJSON, Generation: gen, ManagedBy: managedBy, AppliedBy: p.req.AppliedBy,
		}, expect)
		return err
	}
	p.steps = append(p.steps, st)
}

// checkServicesKeepTargets refuses a Model change that would leave a stored
// InferenceService (one not re-declared in this apply) without its target.
func (p *plan) checkServicesKeepTargets(ctx context.Context, d spec.Document, ns, model string, mp *modelPlan) bool {
	rs, err := p.e.opts.Resources.ListResources(ctx, spec.KindInferenceService, ns)
	if err != nil {
		p.fail(err)
		return false
	}
	ok := true
	for _, r := range rs {
		if p.services[ns+"/"+r.Name] {
			continue // checked against this apply's state when planned
		}
		var s spec.ServiceSpec
		if err := json.Unmarshal(r.Spec, &s); err != nil {
			p.fail(fmt.Errorf("stored spec of inferenceservice %s/%s: %w", ns, r.Name, err))
			return false
		}
		for _, t := range targets(s) {
			m, ref, err := spec.ParseTarget(t)
			if err != nil || m != model {
				continue
			}
			if n, isNum := versionOf(ref); isNum {
				if _, has := mp.versions[n]; !has {
					p.errs = append(p.errs, d.Errorf("spec.versions", errs.Conflict,
						"version %d is a target of inferenceservice %s; change that service first, or in the same apply", n, r.Name))
					ok = false
				}
			} else if ref != "" {
				if _, has := mp.aliases[ref]; !has {
					p.errs = append(p.errs, d.Errorf("spec.aliases", errs.Conflict,
						"alias %s is a target of inferenceservice %s; change that service first, or in the same apply", ref, r.Name))
					ok = false
				}
			}
		}
	}
	return ok
}

// servingShown is the serving block a Model shows: the model's settings with
// defaults filled when apply manages them (managed: declared before) or they
// differ from the defaults; nil otherwise. declared, when set, wins.
func servingShown(reg registry.Model, managed bool, declared *registry.ServingConfig) *registry.ServingConfig {
	if declared != nil {
		return declared
	}
	if !managed && reflect.DeepEqual(reg.Serving, registry.ServingConfig{}) {
		return nil
	}
	s := spec.ServingDefaults(reg.Serving)
	return &s
}

// threeWay merges labels as kubectl apply does: keys this resource declared
// before and no longer does are removed, declared keys set, others kept.
func threeWay(live, lastApplied, declared map[string]string) map[string]string {
	out := map[string]string{}
	maps.Copy(out, live)
	for k := range lastApplied {
		if _, ok := declared[k]; !ok {
			delete(out, k)
		}
	}
	maps.Copy(out, declared)
	return emptyToNil(out)
}

func sameMeta(stored *spec.StoredResource, m spec.ObjectMeta) bool {
	return maps.Equal(emptyToNil(stored.Labels), emptyToNil(m.Labels)) &&
		maps.Equal(emptyToNil(stored.Annotations), emptyToNil(m.Annotations))
}

// modelView renders a model's live state as a Model resource (no status).
func modelView(ns, name string, labels map[string]string, stored *spec.StoredResource, vs []registry.Version,
	aliases map[string]int64, serving *registry.ServingConfig) *spec.Model {
	m := &spec.Model{TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindModel}}
	m.Metadata = spec.ObjectMeta{Name: name, Namespace: ns, Labels: emptyToNil(labels)}
	if stored != nil {
		m.Metadata.Annotations = emptyToNil(stored.Annotations)
	}
	slices.SortFunc(vs, func(a, b registry.Version) int { return int(a.Version - b.Version) })
	for _, v := range vs {
		mv := spec.ModelVersion{Version: v.Version, Format: v.Format, Source: spec.Source{SHA256: v.SHA256}}
		if strings.Contains(v.Source, "://") {
			mv.Source.URI = v.Source
		}
		m.Spec.Versions = append(m.Spec.Versions, mv)
	}
	if len(aliases) > 0 {
		m.Spec.Aliases = maps.Clone(aliases)
	}
	m.Spec.Serving = serving
	return m
}

func modelSummary(created []registry.Version, dropped []string, aliases map[string]int64, serving bool) string {
	var parts []string
	if len(created) > 0 {
		ns := make([]string, len(created))
		for i, v := range created {
			ns[i] = fmt.Sprint(v.Version)
		}
		parts = append(parts, "new versions "+strings.Join(ns, ","))
	}
	if len(aliases) > 0 {
		as := make([]string, 0, len(aliases))
		for _, a := range slices.Sorted(maps.Keys(aliases)) {
			as = append(as, fmt.Sprintf("%s=%d", a, aliases[a]))
		}
		parts = append(parts, "aliases "+strings.Join(as, ","))
	}
	if len(dropped) > 0 {
		parts = append(parts, "removed aliases "+strings.Join(dropped, ","))
	}
	if serving {
		parts = append(parts, "serving settings")
	}
	return strings.Join(parts, "; ")
}
