package spec

import (
	"strings"
	"testing"
)

func TestRedactURI(t *testing.T) {
	for in, want := range map[string]string{
		"https://models.example.com/fraud-v2.onnx":                       "https://models.example.com/fraud-v2.onnx",
		"https://bucket.s3.amazonaws.com/m.onnx?X-Amz-Signature=abc&X=1": "https://bucket.s3.amazonaws.com/m.onnx?<redacted>",
		"https://user:secret@example.com/m.onnx":                         "https://example.com/m.onnx",
		"file:///srv/models/m.onnx":                                      "file:///srv/models/m.onnx",
		"https://example.com/m.onnx#frag":                                "https://example.com/m.onnx",
		"":                                                               "",
	} {
		if got := RedactURI(in); got != want {
			t.Errorf("RedactURI(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDecodeAllReportsPartialDocuments: a document with a decode error still has
// its other problems reported, without errors that only follow from the refused
// field; a later document is checked as well.
func TestDecodeAllReportsPartialDocuments(t *testing.T) {
	in := `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: bad}
spec:
  traffic:
    - model: fraud-detector@champion
      weigth: 50
    - model: nope@x
      weight: 150
---
apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: b2}
spec:
  traffic:
    - model: x
      weight: ten
    - model: y
      weight: 20
---
apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: good}
spec:
  traffic: [{model: x}]
`
	docs, fes := decodeAll(Request{Files: []File{{Name: "f.yaml", Content: in}}})
	var got []string
	for _, fe := range fes.Sorted() {
		got = append(got, fe.String())
	}
	want := []string{
		`f.yaml:7: spec.traffic[0].weigth: unknown field "weigth"; did you mean "weight"?`,
		`f.yaml:9: spec.traffic[1].weight: must be 0..100, got 150`,
		`f.yaml:17: spec.traffic[0].weight: must be an integer, got string "ten"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(docs) != 1 || docs[0].Object.GetMeta().Name != "good" {
		t.Fatalf("documents to apply: %+v", docs)
	}
}

// FuzzDecodeAll: apply's decoding (partial documents validated too) never
// panics, and every problem has a message.
func FuzzDecodeAll(f *testing.F) {
	f.Add("apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: a}\nspec:\n  traffic:\n    - {model: m, weigth: 5}\n    - {model: n@2, weight: x}\n")
	f.Add("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: m}\nspec:\n  versions: [{version: x, source: {sha256: 1}}]\n  serving: {threads: many}\n")
	f.Fuzz(func(t *testing.T, in string) {
		_, fes := decodeAll(Request{Files: []File{{Name: "f", Content: in}}})
		for _, fe := range fes {
			if fe.Message == "" {
				t.Fatalf("error without a message: %+v", fe)
			}
		}
	})
}
