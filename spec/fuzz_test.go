package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/registry"
)

// FuzzDecode: any bytes decode to documents or errors, never a panic; every
// error says something and where; and what decodes and validates cleanly comes
// out of MarshalYAML as YAML that decodes to the same objects, validates
// cleanly again and marshals to the same bytes.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: x, labels: {<<: {a: b}}}\n"))
	f.Add([]byte("{\"apiVersion\": \"nimbus.dev/v1\", \"kind\": \"InferenceService\", \"spec\": {\"traffic\": [{\"model\": \"x\"}]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, fes := decodeAndValidate("fuzz.yaml", data)
		for _, fe := range fes {
			if fe.Message == "" || fe.Line < 1 {
				t.Fatalf("incomplete error %+v", fe)
			}
		}
		for _, d := range docs {
			if d.Object == nil || d.Line < 1 {
				t.Fatalf("document %+v", d)
			}
		}
		if len(fes) > 0 || len(docs) == 0 {
			return
		}
		var objs []Object
		for _, d := range docs {
			objs = append(objs, d.Object)
		}
		out, err := MarshalYAML(objs...)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		assertRoundTrip(t, objs)
		again, fes := decodeAndValidate("again.yaml", out)
		if len(fes) > 0 || len(again) != len(docs) {
			t.Fatalf("output of MarshalYAML does not check cleanly: %d documents, errors %v\n%s", len(again), fes, out)
		}
		out2, err := MarshalYAML(objsOf(again)...)
		if err != nil || string(out2) != string(out) {
			t.Fatalf("MarshalYAML is not stable: %v\n%s\n---- then ----\n%s", err, out, out2)
		}
	})
}

func objsOf(docs []Document) []Object {
	objs := make([]Object, len(docs))
	for i, d := range docs {
		objs[i] = d.Object
	}
	return objs
}

// FuzzDiff: the diff of any two texts, applied to the first, gives the second.
func FuzzDiff(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nc\nd\n")
	f.Add("", "x")
	f.Add("x", "x\n")
	f.Add("1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\nX\n4\n5\n6\n7\n8\nY\n")
	f.Fuzz(func(t *testing.T, a, b string) {
		if strings.Count(a, "\n") > 500 || strings.Count(b, "\n") > 500 {
			return
		}
		d := Diff([]byte(a), []byte(b), "a", "b")
		if (d == "") != (a == b) {
			t.Fatalf("Diff empty=%v for a == b %v", d == "", a == b)
		}
		if d == "" {
			return
		}
		got, err := applyUnified(a, d)
		if err != nil {
			t.Fatalf("%v\n%s", err, d)
		}
		if got != b {
			t.Fatalf("patch gives %q, want %q\n%s", got, b, d)
		}
	})
}

// FuzzRoundTrip: objects holding any strings and numbers come out of
// MarshalYAML as YAML that Decode reads back to the same objects.
func FuzzRoundTrip(f *testing.F) {
	f.Add("fraud", "team", "risk", "file:///m.onnx", int64(3), 90, int64(500_000_000))
	f.Add("123", "null", "true", "a: b\n#c", int64(-1), -5, int64(-1))
	f.Add("", "", "~", "\x00\xff", int64(0), 0, int64(0))
	f.Add("\r", " lead", "trail ", "a\n b\n\n", int64(1), 1, int64(1))
	f.Add("\u0085", "\ufeffx", "\t", "\n", int64(1), 1, int64(1))
	f.Fuzz(func(t *testing.T, name, key, value, text string, version int64, weight int, timeout int64) {
		m := &Model{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindModel},
			Metadata: ObjectMeta{Name: name, Namespace: value, Labels: map[string]string{key: value}, Annotations: map[string]string{text: name}, ResourceVersion: text},
			Spec: ModelSpec{
				Versions: []ModelVersion{{Version: version, Format: key, Source: Source{URI: text, SHA256: value}}},
				Aliases:  map[string]int64{key: version, value: int64(weight)},
				Serving:  &registry.ServingConfig{Threads: weight, Timeout: registry.Duration(timeout), Batching: &registry.BatchingConfig{PreferredBatchSizes: []int{weight}}},
			},
		}
		s := &InferenceService{
			TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindInferenceService},
			Metadata: ObjectMeta{Name: text},
			Spec: ServiceSpec{
				Traffic: []TrafficTarget{{Model: name, Weight: &weight}, {Model: text}},
				Shadow:  &ShadowTarget{Model: value, Percent: &weight},
				Timeout: registry.Duration(timeout),
				Routing: &Routing{StickyBy: key},
			},
		}
		assertRoundTrip(t, []Object{m, s})
	})
}
