package spec

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/registry"
)

func TestMarshalYAML(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	objs := []Object{
		&Model{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindModel},
			Metadata: ObjectMeta{Name: "fraud", Namespace: "payments", Generation: 2, ResourceVersion: "5", CreationTimestamp: &now},
			Spec: ModelSpec{
				Versions: []ModelVersion{{Version: 1, Format: "onnx", Source: Source{URI: "file:///m/1.onnx", SHA256: strings.Repeat("0", 64)}}},
				Aliases:  map[string]int64{"champion": 1},
				Serving:  &registry.ServingConfig{Batching: &registry.BatchingConfig{MaxBatchSize: 8, MaxQueueDelay: registry.Duration(2 * time.Millisecond)}},
			},
			Status: &ModelStatus{ObservedGeneration: 2, Conditions: []Condition{{Type: ConditionReady, Status: ConditionTrue}}},
		},
		&InferenceService{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindInferenceService},
			Metadata: ObjectMeta{Name: "fraud", Namespace: "payments"},
			Spec: ServiceSpec{
				Traffic: []TrafficTarget{{Model: "fraud@1", Weight: pointerTo(100)}},
				Timeout: registry.Duration(500 * time.Millisecond),
			},
		},
	}
	got, err := MarshalYAML(objs...)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: nimbus.dev/v1
kind: Model
metadata:
  name: fraud
  namespace: payments
  generation: 2
  resourceVersion: "5"
  creationTimestamp: 2025-01-02T03:04:05Z
spec:
  versions:
    - version: 1
      format: onnx
      source:
        uri: file:///m/1.onnx
        sha256: "0000000000000000000000000000000000000000000000000000000000000000"
  aliases:
    champion: 1
  serving:
    batching:
      maxBatchSize: 8
      maxQueueDelay: 2ms
status:
  observedGeneration: 2
  conditions:
    - type: Ready
      status: "True"
---
apiVersion: nimbus.dev/v1
kind: InferenceService
metadata:
  name: fraud
  namespace: payments
spec:
  traffic:
    - model: fraud@1
      weight: 100
  timeout: 500ms
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	assertRoundTrip(t, objs)
	if _, err := MarshalYAML((*Model)(nil)); err == nil {
		t.Error("nil object marshalled")
	}
}

// TestGoodFileCanonical pins the canonical form of a full model file.
func TestGoodFileCanonical(t *testing.T) {
	data, err := os.ReadFile("testdata/model.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, fes := decodeAndValidate("model.good.yaml", data)
	if len(fes) > 0 {
		t.Fatal(fes)
	}
	got, err := MarshalYAML(docs[0].Object)
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/model.canonical.yaml"
	if *updateGolden {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestTagsAgree: Decode reads fields by their json tags, MarshalYAML writes
// them by their yaml tags; a field whose tags disagree would not round-trip.
func TestTagsAgree(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || ty == reflect.TypeFor[time.Time]() {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			if j, y := f.Tag.Get("json"), f.Tag.Get("yaml"); j != y {
				t.Errorf("%s.%s: json tag %q, yaml tag %q", ty, f.Name, j, y)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[Model]())
	walk(reflect.TypeFor[InferenceService]())
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 500 * time.Millisecond: "500ms", time.Minute: "1m", 10 * time.Minute: "10m", time.Hour: "1h",
		90 * time.Minute: "1h30m", time.Hour + 5*time.Second: "1h0m5s", -5 * time.Minute: "-5m", 1500 * time.Microsecond: "1.5ms",
	} {
		got := shortDuration(d)
		if got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != d {
			t.Errorf("%q parses as %s, %v", got, back, err)
		}
	}
}
