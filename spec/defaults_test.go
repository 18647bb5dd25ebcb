package spec

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/registry"
)

func TestDefault(t *testing.T) {
	for _, c := range []struct {
		name    string
		ns      string
		in, out Object
	}{
		{
			name: "model",
			in:   &Model{Metadata: ObjectMeta{Name: "m"}, Spec: ModelSpec{Versions: []ModelVersion{{Version: 1}, {Version: 2, Format: "tree"}}}},
			out: &Model{
				TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindModel},
				Metadata: ObjectMeta{Name: "m", Namespace: "default"},
				Spec:     ModelSpec{Versions: []ModelVersion{{Version: 1, Format: "onnx"}, {Version: 2, Format: "tree"}}},
			},
		},
		{
			name: "request namespace, serving left alone",
			ns:   "payments",
			in:   &Model{Metadata: ObjectMeta{Name: "m"}, Spec: ModelSpec{Serving: &registry.ServingConfig{}}},
			out: &Model{
				TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindModel},
				Metadata: ObjectMeta{Name: "m", Namespace: "payments"},
				Spec:     ModelSpec{Serving: &registry.ServingConfig{}},
			},
		},
		{
			name: "declared namespace wins",
			ns:   "payments",
			in:   &Model{Metadata: ObjectMeta{Name: "m", Namespace: "risk"}},
			out:  &Model{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindModel}, Metadata: ObjectMeta{Name: "m", Namespace: "risk"}},
		},
		{
			name: "single target",
			in: &InferenceService{Metadata: ObjectMeta{Name: "s"}, Spec: ServiceSpec{
				Traffic: []TrafficTarget{{Model: "m"}}, Shadow: &ShadowTarget{Model: "m@2"},
			}},
			out: &InferenceService{
				TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindInferenceService},
				Metadata: ObjectMeta{Name: "s", Namespace: "default"},
				Spec: ServiceSpec{
					Traffic: []TrafficTarget{{Model: "m", Weight: pointerTo(100)}},
					Shadow:  &ShadowTarget{Model: "m@2", Percent: pointerTo(100)},
					Routing: &Routing{StickyBy: StickyByHeader},
				},
			},
		},
		{
			name: "two targets keep their (missing) weights",
			in: &InferenceService{Metadata: ObjectMeta{Name: "s"}, Spec: ServiceSpec{
				Traffic: []TrafficTarget{{Model: "m@1"}, {Model: "m@2", Weight: pointerTo(0)}},
				Shadow:  &ShadowTarget{Model: "m@2", Percent: pointerTo(0)},
				Routing: &Routing{StickyBy: StickyByRequestID},
			}},
			out: &InferenceService{
				TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindInferenceService},
				Metadata: ObjectMeta{Name: "s", Namespace: "default"},
				Spec: ServiceSpec{
					Traffic: []TrafficTarget{{Model: "m@1"}, {Model: "m@2", Weight: pointerTo(0)}},
					Shadow:  &ShadowTarget{Model: "m@2", Percent: pointerTo(0)},
					Routing: &Routing{StickyBy: StickyByRequestID},
				},
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			Default(c.in, c.ns)
			if diff := cmp.Diff(c.out, c.in); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			Default(c.in, c.ns)
			if diff := cmp.Diff(c.out, c.in); diff != "" {
				t.Errorf("not idempotent (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNormalizeAndSpecEqual(t *testing.T) {
	now := time.Now()
	a := &Model{
		Metadata: ObjectMeta{Name: "m", Labels: map[string]string{}, Generation: 3, ResourceVersion: "9", CreationTimestamp: &now},
		Spec: ModelSpec{
			Versions: []ModelVersion{{Version: 2, Format: "onnx"}, {Version: 1, Format: "onnx"}},
			Aliases:  map[string]int64{},
			Serving:  &registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 8, PreferredBatchSizes: []int{}}},
		},
		Status: &ModelStatus{ObservedGeneration: 3},
	}
	b := &Model{
		Metadata: ObjectMeta{Name: "m"},
		Spec: ModelSpec{
			Versions: []ModelVersion{{Version: 1, Format: "onnx"}, {Version: 2, Format: "onnx"}},
			Serving:  &registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 8}},
		},
	}
	before := Clone(a)
	if !SpecEqual(a, b) || !SpecEqual(b, a) {
		t.Error("equal specs reported different")
	}
	if diff := cmp.Diff(before, Object(a)); diff != "" {
		t.Errorf("SpecEqual changed its argument (-before +after):\n%s", diff)
	}
	Normalize(a)
	if diff := cmp.Diff(Object(b), Object(a)); diff != "" {
		t.Errorf("normalized (-want +got):\n%s", diff)
	}
	b.Spec.Serving.Threads = 2
	if SpecEqual(a, b) {
		t.Error("different serving reported equal")
	}
	s := &InferenceService{Metadata: ObjectMeta{Name: "m"}}
	if SpecEqual(a, s) || !SpecEqual(nil, nil) || SpecEqual(a, nil) {
		t.Error("SpecEqual across kinds or nil")
	}
	x := &InferenceService{Spec: ServiceSpec{Traffic: []TrafficTarget{{Model: "a", Weight: pointerTo(50)}, {Model: "b", Weight: pointerTo(50)}}}}
	y := Clone(x).(*InferenceService)
	*y.Spec.Traffic[0].Weight = 40
	if *x.Spec.Traffic[0].Weight != 50 || SpecEqual(x, y) {
		t.Error("Clone shares a weight")
	}
}
