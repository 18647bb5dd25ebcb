package spec

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nimbus-ai/nimbus/registry"
)

var updateGolden = flag.Bool("update", false, "rewrite the expected errors of spec/testdata/*.bad.yaml")

// decodeAndValidate is what apply does first: decode, then default and validate every
// document that decoded.
func decodeAndValidate(file string, data []byte) ([]Document, []FieldError) {
	docs, fes := Decode(file, data)
	for _, d := range docs {
		Default(d.Object, "")
		fes = append(fes, Validate(d)...)
	}
	// In file order, as a reader wants them.
	slices.SortStableFunc(fes, func(a, b FieldError) int { return a.Line - b.Line })
	return docs, fes
}

// TestBadFiles checks every testdata/*.bad.yaml against its .err file: each
// line one expected error as "file:line: field: message". Run with -update to
// rewrite them (and review the diff).
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, fes := decodeAndValidate(f, data)
			if len(fes) == 0 {
				t.Fatal("no errors")
			}
			var got strings.Builder
			for _, fe := range fes {
				if fe.Message == "" || fe.Code != "invalid_argument" || fe.File != f || fe.Line < 1 {
					t.Errorf("incomplete error %+v", fe)
				}
				got.WriteString(fe.String() + "\n")
			}
			if *updateGolden {
				if err := os.WriteFile(f+".err", []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(f + ".err")
			if err != nil {
				t.Fatalf("missing expected errors (run go test ./spec -run TestBadFiles -update): %v", err)
			}
			if diff := cmp.Diff(string(want), got.String()); diff != "" {
				t.Errorf("errors differ (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGoodFiles: every testdata/*.good.yaml decodes and validates cleanly and
// survives MarshalYAML and Decode unchanged.
func TestGoodFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good fixtures: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs, fes := decodeAndValidate(f, data)
			if len(fes) > 0 || len(docs) == 0 {
				t.Fatalf("got %d documents, errors %v", len(docs), fes)
			}
			var objs []Object
			for _, d := range docs {
				objs = append(objs, d.Object)
			}
			assertRoundTrip(t, objs)
		})
	}
}

// assertRoundTrip checks Decode(MarshalYAML(objs)) == objs, status and
// server-written metadata aside.
func assertRoundTrip(t *testing.T, objs []Object) {
	t.Helper()
	out, err := MarshalYAML(objs...)
	if err != nil {
		t.Fatal(err)
	}
	docs, fes := Decode("out.yaml", out)
	if len(fes) > 0 {
		t.Fatalf("output does not decode: %v\n%s", fes, out)
	}
	var got, want []Object
	for i, d := range docs {
		got = append(got, d.Object)
		w := Clone(objs[i])
		m := w.GetMeta()
		m.Generation, m.CreationTimestamp = 0, nil
		switch o := w.(type) {
		case *Model:
			o.Status = nil
		case *InferenceService:
			o.Status = nil
		}
		want = append(want, w)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip differs (-want +got):\n%s\noutput:\n%s", diff, out)
	}
}

func TestDecodeObjects(t *testing.T) {
	docs, fes := Decode("s.yaml", []byte(`
# leading comment
apiVersion: nimbus.dev/v1
kind: InferenceService
metadata:
  name: fraud
  resourceVersion: "12"
  generation: 4
spec:
  traffic:
    - model: fraud@champion
      weight: 90
    - model: fraud@4
      weight: 0x0a
  timeout: 500ms
status:
  url: /v2/models/fraud
`))
	if len(fes) > 0 || len(docs) != 1 {
		t.Fatalf("docs %d, errors %v", len(docs), fes)
	}
	want := &InferenceService{
		TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindInferenceService},
		Metadata: ObjectMeta{Name: "fraud", ResourceVersion: "12"},
		Spec: ServiceSpec{
			Traffic: []TrafficTarget{{Model: "fraud@champion", Weight: pointerTo(90)}, {Model: "fraud@4", Weight: pointerTo(10)}},
			Timeout: registry.Duration(500 * time.Millisecond),
		},
	}
	if diff := cmp.Diff(want, docs[0].Object); diff != "" {
		t.Errorf("object (-want +got):\n%s", diff)
	}
	if docs[0].Line != 3 || docs[0].File != "s.yaml" {
		t.Errorf("document at %s:%d, want s.yaml:3", docs[0].File, docs[0].Line)
	}
	wantLines := map[string]int{
		"apiVersion": 3, "kind": 4, "metadata": 5, "metadata.name": 6, "metadata.resourceVersion": 7,
		"spec": 9, "spec.traffic": 10, "spec.traffic[0]": 11, "spec.traffic[0].model": 11, "spec.traffic[0].weight": 12,
		"spec.traffic[1]": 13, "spec.traffic[1].model": 13, "spec.traffic[1].weight": 14, "spec.timeout": 15,
	}
	if diff := cmp.Diff(wantLines, docs[0].Lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestDecodeErrorsNameTheDocument(t *testing.T) {
	_, fes := Decode("m.yaml", []byte("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: fraud}\nspec: {versionz: []}\n"))
	want := []FieldError{{
		File: "m.yaml", Line: 4, Kind: KindModel, Name: "fraud", Field: "spec.versionz",
		Message: `unknown field "versionz"; did you mean "versions"?`, Code: "invalid_argument",
	}}
	if diff := cmp.Diff(want, fes); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# nothing\n", "---\n", "---\n# c\n---\n...\n", "~\n", "null"} {
		docs, fes := Decode("e.yaml", []byte(in))
		if len(docs) != 0 || len(fes) != 0 {
			t.Errorf("%q: docs %d, errors %v", in, len(docs), fes)
		}
	}
}

func TestDecodeAliases(t *testing.T) {
	// Small aliases are fine: they expand like any YAML reader expands them.
	docs, fes := Decode("a.yaml", []byte(`
apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud, labels: &l {team: risk}, annotations: *l}
spec:
  traffic: [{model: &m fraud, weight: 50}, {model: *m, weight: 50}]
`))
	if len(fes) > 0 || len(docs) != 1 {
		t.Fatalf("docs %d, errors %v", len(docs), fes)
	}
	m := docs[0].Object.GetMeta()
	if m.Annotations["team"] != "risk" || m.Labels["team"] != "risk" {
		t.Errorf("meta %+v", m)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"model", "weight"}
	for in, want := range map[string]string{
		"weigth": "weight", "Weight": "weight", "wieght": "weight", "modle": "model", "mode": "model",
		"colour": "", "w": "", "weightweight": "", "": "",
	} {
		if got := suggest(in, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"weight", "weigth", 1}, {"kitten", "sitting", 3},
		{"abc", "abc", 0}, {"ca", "abc", 3},
	} {
		if got := editDistance(c.a, c.b); got != c.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestDecodeBounds(t *testing.T) {
	head := "apiVersion: nimbus.dev/v1\nkind: Model\nmetadata:\n  name: x\n"
	for _, c := range []struct {
		name, in, want string
	}{
		{"deep", head + "  labels: " + strings.Repeat("[", 70) + strings.Repeat("]", 70) + "\n", "nested too deeply: more than 64 levels"},
		{
			"deep through an alias",
			head + "  labels: {a: &d " + strings.Repeat("[", 50) + strings.Repeat("]", 50) + "}\nspec: {versions: " +
				strings.Repeat("[", 20) + "*d" + strings.Repeat("]", 20) + "}\n",
			"nested too deeply: more than 64 levels",
		},
		{"cycle", head + "  labels: &m {a: *m}\n", "a YAML alias refers to a node that contains it"},
		{"expansion", head + "spec: {versions: &a [" + strings.Repeat("{a: b}, ", 1000) + "], aliases: [" + strings.Repeat("*a, ", 200) + "]}\n", "document too large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			docs, fes := Decode("b.yaml", []byte(c.in))
			if len(docs) != 0 || len(fes) != 1 || !strings.Contains(fes[0].Message, c.want) {
				t.Fatalf("docs %d, errors %v; want one containing %q", len(docs), fes, c.want)
			}
			if fes[0].Kind != KindModel || fes[0].Name != "x" || fes[0].Line != 1 {
				t.Errorf("error %+v, want it at line 1 of Model x", fes[0])
			}
		})
	}
	t.Run("too many errors", func(t *testing.T) {
		_, fes := Decode("b.yaml", []byte(head+"  labels:\n"+strings.Repeat("    k: [v]\n", 500)))
		if len(fes) != maxDocErrors+1 || !strings.Contains(fes[maxDocErrors].Message, "too many errors") {
			t.Errorf("%d errors, last %v", len(fes), fes[len(fes)-1])
		}
	})
}

// TestDecodeKeepsGoodDocuments: one bad document does not hide the good ones,
// and only the good ones come back.
func TestDecodeKeepsGoodDocuments(t *testing.T) {
	data, err := os.ReadFile("testdata/multi.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, fes := Decode("multi.bad.yaml", data)
	if len(fes) != 0 || len(docs) != 3 {
		t.Fatalf("docs %d, errors %v (the errors of this file come from Validate)", len(docs), fes)
	}
	docs, fes = Decode("x.yaml", []byte("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: a}\nspec: {versions: 1}\n---\n"+
		"apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: b}\n"))
	if len(fes) != 1 || len(docs) != 1 || docs[0].Object.GetMeta().Name != "b" || docs[0].Line != 6 {
		t.Fatalf("docs %+v, errors %v", docs, fes)
	}
}
