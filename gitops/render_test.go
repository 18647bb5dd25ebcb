package gitops

import "testing"

// TestIsYAML: only *.yaml and *.yml files are resources; a yacc grammar
// (parser.y) or any other extension that is a prefix of them is not.
func TestIsYAML(t *testing.T) {
	for p, want := range map[string]bool{
		"m/model.yaml": true, "m/model.yml": true, "m/MODEL.YAML": true,
		"m/.hidden.yaml": false, "m/parser.y": false, "m/x.ya": false, "m/x.yam": false, "m/x.ym": false,
		"m/README.md": false, "m/yaml": false, "m/fraud.onnx": false,
	} {
		if got := isYAML(p); got != want {
			t.Errorf("isYAML(%q) = %v, want %v", p, got, want)
		}
	}
}
