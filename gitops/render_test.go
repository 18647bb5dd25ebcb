package gitops

import (
	"io"
	"strings"
	"testing"
)

// TestIsYAML: only *.yaml and *.yml files are resources; a yacc grammar
// (parser.y) or any other extension that is a prefix of them is not, nor is
// a hidden file or a file in a hidden folder (a CI workflow).
func TestIsYAML(t *testing.T) {
	for p, want := range map[string]bool{
		"m/model.yaml": true, "m/model.yml": true, "m/MODEL.YAML": true,
		"m/.hidden.yaml": false, "m/parser.y": false, "m/x.ya": false, "m/x.yam": false, "m/x.ym": false,
		".github/workflows/ci.yml": false, "m/.k/x.yaml": false, "..x/m.yaml": false,
		"m/README.md": false, "m/yaml": false, "m/fraud.onnx": false,
	} {
		if got := isYAML(p); got != want {
			t.Errorf("isYAML(%q) = %v, want %v", p, got, want)
		}
	}
}

// files is a Snapshot of files given by path.
type files map[string]string

func (files) Commit() string { return "c0ffee" }
func (f files) Walk(dir string, fn func(string, int64) error) error {
	for p, c := range f {
		if dir == "" || strings.HasPrefix(p, dir+"/") {
			if err := fn(p, int64(len(c))); err != nil {
				return err
			}
		}
	}
	return nil
}
func (f files) Open(p string) (io.ReadCloser, int64, error) {
	return io.NopCloser(strings.NewReader(f[p])), int64(len(f[p])), nil
}

// TestRenderHiddenPath: a source whose path is a hidden folder reads it;
// hidden folders below its path are skipped.
func TestRenderHiddenPath(t *testing.T) {
	got, err := render(files{".deploy/m.yaml": "a", ".deploy/.ci/x.yml": "b"}, ".deploy/")
	if err != nil || len(got) != 1 || got[0].Name != ".deploy/m.yaml" {
		t.Fatalf("render = %+v, %v", got, err)
	}
}
