package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

func TestParseTarget(t *testing.T) {
	for _, c := range []struct {
		in, model, ref, err string
	}{
		{in: "fraud", model: "fraud"},
		{in: "fraud@champion", model: "fraud", ref: "champion"},
		{in: "fraud@3", model: "fraud", ref: "3"},
		{in: "fraud@003", model: "fraud", ref: "3"},
		{in: "fraud-detector.v2@canary-1", model: "fraud-detector.v2", ref: "canary-1"},
		{in: "", err: "target must not be empty"},
		{in: "Fraud", err: `target "Fraud": model name "Fraud": must consist of`},
		{in: "@champion", err: `target "@champion": model name: must not be empty`},
		{in: "fraud@", err: `target "fraud@": nothing after @`},
		{in: "fraud@0", err: `target "fraud@0": version "0" must be a positive number`},
		{in: "fraud@99999999999999999999", err: `version "99999999999999999999" must be a positive number`},
		{in: "fraud@9007199254740992", err: `target "fraud@9007199254740992": version 9007199254740992 must be at most 9007199254740991 (2^53-1)`},
		{in: "fraud@-1", err: `alias "-1": must consist of`},
		{in: "fraud@a@b", err: `alias "a@b": must consist of`},
		{in: "fraud@Champion", err: `alias "Champion": must consist of`},
	} {
		model, ref, err := ParseTarget(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || errs.KindOf(err) != errs.InvalidArgument {
				t.Errorf("ParseTarget(%q) error = %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || model != c.model || ref != c.ref {
			t.Errorf("ParseTarget(%q) = %q, %q, %v; want %q, %q", c.in, model, ref, err, c.model, c.ref)
		}
	}
}

func TestCheckSourceURI(t *testing.T) {
	for uri, want := range map[string]string{
		"file:///models/a.onnx":          "",
		"FILE:///models/a.onnx":          "",
		"https://example.com/a.onnx?x=1": "",
		"file://":                        "must name an absolute path",
		"file://relative/a.onnx":         "must name an absolute path",
		"https:///a.onnx":                "invalid https URI",
		"http://example.com/a.onnx":      `scheme "http" is not supported`,
		"s3://bucket/a.onnx":             `scheme "s3" is not supported; use file:// or https://`,
		"gs://bucket/a.onnx":             `scheme "gs" is not supported`,
		"/models/a.onnx":                 "write file:///models/a.onnx",
		"a.onnx":                         "must be a file:// or https:// URI",
	} {
		got := checkSourceURI(uri)
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("checkSourceURI(%q) = %q, want %q", uri, got, want)
		}
	}
}

// TestValidateLines: errors point at their field's line, else the nearest
// parent's, else the document's.
func TestValidateLines(t *testing.T) {
	doc := Document{
		File: "f.yaml", Line: 2,
		Object: &InferenceService{
			Metadata: ObjectMeta{Name: "svc", Namespace: "default"},
			Spec: ServiceSpec{
				Traffic: []TrafficTarget{{Model: "a", Weight: pointerTo(200)}, {Model: "b"}},
				Routing: &Routing{StickyBy: "cookie"},
			},
		},
		Lines: map[string]int{"spec": 5, "spec.traffic": 6, "spec.traffic[0]": 7, "spec.traffic[0].weight": 8, "spec.traffic[1]": 9},
	}
	got := Validate(doc)
	want := []FieldError{
		{File: "f.yaml", Line: 8, Kind: KindInferenceService, Name: "svc", Field: "spec.traffic[0].weight", Message: "must be 0..100, got 200", Code: "invalid_argument"},
		{File: "f.yaml", Line: 9, Kind: KindInferenceService, Name: "svc", Field: "spec.traffic[1].weight", Message: "required when there is more than one target", Code: "invalid_argument"},
		{File: "f.yaml", Line: 5, Kind: KindInferenceService, Name: "svc", Field: "spec.routing.stickyBy", Message: `must be "header" or "requestId", got "cookie"`, Code: "invalid_argument"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if fes := Validate(Document{File: "x"}); len(fes) != 1 {
		t.Errorf("a document without an object: %v", fes)
	}
}
