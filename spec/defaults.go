package spec

import (
	"reflect"
	"slices"
	"time"

	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/rollout"
)

// DefaultTrafficWeight is the weight of a service's only target when it names none.
const DefaultTrafficWeight = 100

// DefaultShadowPercent is the share of requests copied to a shadow that names none.
const DefaultShadowPercent = 100

// Default fills in what the server assumes where a document is silent, so that
// `get -o yaml` shows it: apiVersion and kind; metadata.namespace (namespace,
// itself "default" when empty); each model version's format ("onnx"); the
// weight of a service's only target (100); shadow.percent (100); and
// routing.stickyBy ("header"). A model's serving settings are left alone:
// absent means "not managed by apply". Default is idempotent.
func Default(obj Object, namespace string) {
	if namespace == "" {
		namespace = registry.DefaultNamespace
	}
	if m := obj.GetMeta(); m.Namespace == "" {
		m.Namespace = namespace
	}
	switch o := obj.(type) {
	case *Model:
		o.TypeMeta = TypeMeta{APIVersion: APIVersion, Kind: KindModel}
		for i := range o.Spec.Versions {
			if o.Spec.Versions[i].Format == "" {
				o.Spec.Versions[i].Format = registry.DefaultFormat
			}
		}
	case *InferenceService:
		o.TypeMeta = TypeMeta{APIVersion: APIVersion, Kind: KindInferenceService}
		s := &o.Spec
		if len(s.Traffic) == 1 && s.Traffic[0].Weight == nil {
			s.Traffic[0].Weight = pointerTo(DefaultTrafficWeight)
		}
		if s.Shadow != nil && s.Shadow.Percent == nil {
			s.Shadow.Percent = pointerTo(DefaultShadowPercent)
		}
		if s.Routing == nil {
			s.Routing = &Routing{}
		}
		if s.Routing.StickyBy == "" {
			s.Routing.StickyBy = StickyByHeader
		}
		if s.Rollout != nil {
			defaultRollout(s.Rollout)
		}
	case *GitSource:
		o.TypeMeta = TypeMeta{APIVersion: APIVersion, Kind: KindGitSource}
		s := &o.Spec
		if s.Interval == nil {
			s.Interval = pointerTo(registry.Duration(DefaultGitInterval))
		}
		if s.Prune == nil {
			s.Prune = pointerTo(true)
		}
		for _, b := range []**bool{&s.SelfHeal, &s.LockImperative, &s.AllowEmpty} {
			if *b == nil {
				*b = pointerTo(false)
			}
		}
	case *Connection:
		o.TypeMeta = TypeMeta{APIVersion: APIVersion, Kind: KindConnection}
	case *Trigger:
		o.TypeMeta = TypeMeta{APIVersion: APIVersion, Kind: KindTrigger}
		DefaultTrigger(&o.Spec)
	}
}

func pointerTo[T any](v T) *T { return &v }

// Rollout defaults.
const (
	DefaultRolloutInterval         = time.Minute
	DefaultRolloutProgressDeadline = 30 * time.Minute
	DefaultRolloutMinSamples       = 200
	DefaultRolloutConfidence       = 0.95
	DefaultRolloutMaxErrorRate     = 0.01
)

// defaultRollout fills a rollout's interval (1m), progressDeadline (30m, or
// twice the steps' least duration when that is longer), minSamples (200),
// confidence (0.95), metrics (errorRate below 0.01), maxFailures (0) and
// shadowPercent (100).
func defaultRollout(r *RolloutSpec) {
	if r.Interval == 0 {
		r.Interval = registry.Duration(DefaultRolloutInterval)
	}
	if r.ProgressDeadline == 0 {
		d := DefaultRolloutProgressDeadline
		if least := time.Duration(len(r.Steps)) * r.Interval.D(); 2*least > d {
			d = 2 * least
		}
		r.ProgressDeadline = registry.Duration(d)
	}
	a := &r.Analysis
	if a.MinSamples == 0 {
		a.MinSamples = DefaultRolloutMinSamples
	}
	if a.Confidence == 0 {
		a.Confidence = DefaultRolloutConfidence
	}
	if len(a.Metrics) == 0 {
		a.Metrics = []RolloutMetric{{Name: "errorRate", Max: DefaultRolloutMaxErrorRate}}
	}
	if a.MaxFailures == nil {
		a.MaxFailures = pointerTo(0)
	}
	if a.ShadowPercent == nil {
		a.ShadowPercent = pointerTo(DefaultShadowPercent)
	}
}

// Plan is the rollout's plan for package rollout (defaults applied).
func (r RolloutSpec) Plan() rollout.Plan {
	defaultRollout(&r)
	r.Analysis.Metrics = slices.Clone(r.Analysis.Metrics)
	p := rollout.Plan{Steps: slices.Clone(r.Steps), Interval: r.Interval.D(), MinSamples: r.Analysis.MinSamples,
		Confidence: r.Analysis.Confidence, MaxFailures: *r.Analysis.MaxFailures, ProgressDeadline: r.ProgressDeadline.D()}
	for _, m := range r.Analysis.Metrics {
		p.Metrics = append(p.Metrics, rollout.Metric{Name: m.Name, Max: m.Max, MaxRatioToStable: m.MaxRatioToStable})
	}
	return p
}

// Normalize puts obj in the canonical form that comparisons and stored specs
// use, in place:
//   - status is dropped, and so are the server-written metadata fields
//     (generation, resourceVersion, creationTimestamp);
//   - a model's versions are sorted by version number (a stable sort, so
//     duplicates, which Validate refuses, keep their order);
//   - empty maps and lists (labels, annotations, aliases, versions, traffic,
//     preferredBatchSizes) become nil, so `labels: {}` equals no labels.
//
// Traffic targets keep their declared order. Normalize applies no defaults:
// call Default first to compare what the server would store.
func Normalize(obj Object) {
	m := obj.GetMeta()
	m.Generation, m.ResourceVersion, m.CreationTimestamp, m.ManagedBy = 0, "", nil, ""
	m.Labels = nilIfEmpty(m.Labels)
	m.Annotations = nilIfEmpty(m.Annotations)
	switch o := obj.(type) {
	case *Model:
		o.Status = nil
		s := &o.Spec
		slices.SortStableFunc(s.Versions, func(a, b ModelVersion) int {
			switch {
			case a.Version < b.Version:
				return -1
			case a.Version > b.Version:
				return 1
			}
			return 0
		})
		if len(s.Versions) == 0 {
			s.Versions = nil
		}
		s.Aliases = nilIfEmpty(s.Aliases)
		if s.Serving != nil && s.Serving.Batching != nil && len(s.Serving.Batching.PreferredBatchSizes) == 0 {
			s.Serving.Batching.PreferredBatchSizes = nil
		}
	case *InferenceService:
		o.Status = nil
		if len(o.Spec.Traffic) == 0 {
			o.Spec.Traffic = nil
		}
	case *GitSource:
		o.Status = nil
		if len(o.Spec.TargetNamespaces) == 0 {
			o.Spec.TargetNamespaces = nil
		}
	case *Trigger:
		o.Status = nil
	}
}

func nilIfEmpty[M ~map[string]V, V any](m M) M {
	if len(m) == 0 {
		return nil
	}
	return m
}

// SpecEqual reports whether a and b are the same kind and declare the same
// spec once normalized (see Normalize); metadata and status are not compared.
// Neither argument is changed.
func SpecEqual(a, b Object) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if a.GetKind() != b.GetKind() {
		return false
	}
	a, b = Clone(a), Clone(b)
	Normalize(a)
	Normalize(b)
	switch x := a.(type) {
	case *Model:
		return reflect.DeepEqual(x.Spec, b.(*Model).Spec)
	case *InferenceService:
		return reflect.DeepEqual(x.Spec, b.(*InferenceService).Spec)
	case *GitSource:
		return reflect.DeepEqual(x.Spec, b.(*GitSource).Spec)
	case *Connection:
		return reflect.DeepEqual(x.Spec, b.(*Connection).Spec)
	case *Trigger:
		return reflect.DeepEqual(x.Spec, b.(*Trigger).Spec)
	}
	return false
}

// Clone returns a deep copy of obj (nil for nil), sharing nothing with it.
func Clone(obj Object) Object {
	if obj == nil {
		return nil
	}
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return obj
	}
	c := reflect.New(v.Type().Elem())
	deepCopy(c.Elem(), v.Elem())
	return c.Interface().(Object)
}

// deepCopy copies src into dst (both of one type), following pointers, slices
// and maps. Structs with unexported fields (time.Time) are values that share no
// mutable state and are assigned whole.
func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		deepCopy(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			deepCopy(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		for it := src.MapRange(); it.Next(); {
			e := reflect.New(src.Type().Elem()).Elem()
			deepCopy(e, it.Value())
			m.SetMapIndex(it.Key(), e)
		}
		dst.Set(m)
	case reflect.Struct:
		for i := range src.NumField() {
			if !src.Type().Field(i).IsExported() {
				dst.Set(src)
				return
			}
		}
		for i := range src.NumField() {
			deepCopy(dst.Field(i), src.Field(i))
		}
	default:
		dst.Set(src)
	}
}
