package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// adversarialSize is the size of an apply body the management API accepts.
const adversarialSize = 16 << 20

// repeatTo repeats unit after head until the text is n bytes long.
func repeatTo(head, unit, tail string, n int) string {
	var b strings.Builder
	b.Grow(n + len(tail))
	b.WriteString(head)
	for b.Len()+len(unit)+len(tail) <= n {
		b.WriteString(unit)
	}
	b.WriteString(tail)
	return b.String()
}

// TestAdversarialYAMLRefusedBeforeParsing: 16 MiB bodies built to make yaml.v3
// build huge trees (tiny nodes, aliases, nesting, one huge scalar, many
// documents, many documents just under each per-document bound) are refused
// with one error each, having allocated next to nothing. Before, the first
// took 2.7 GB and 20 s (2 MiB of it: 405 MiB, 1.2 s) before being refused.
func TestAdversarialYAMLRefusedBeforeParsing(t *testing.T) {
	head := "apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: x}\nspec:\n  x: "
	// A document just under maxDocBytes that is nothing but nodes.
	nearlyFull := repeatTo("---\n"+head+"[", "a,", "a]\n", maxDocBytes-64)
	// A document of about 50,000 counted nodes, within every per-document bound.
	moderate := repeatTo("---\n"+head+"[", "a,", "a]\n", 8<<10)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"tiny nodes", repeatTo(head+"[", "a,", "a]\n", adversarialSize), "more than 100000 YAML nodes"},
		{"tiny nodes, block style", repeatTo(head+"\n", "    - a\n", "", adversarialSize), "more than 100000 YAML nodes"},
		{"alias bomb", repeatTo(head+"&a [x]\n  y: [", "*a,", "*a]\n", adversarialSize), "too many YAML aliases"},
		{"deep nesting", repeatTo(head, "[", "", adversarialSize), "nested too deeply"},
		{"deep block nesting", repeatTo(head+"\n", "- ", "a\n", adversarialSize), "nested too deeply"},
		{"huge scalar", repeatTo(head+"\"", "a", "\"\n", adversarialSize), "document too large: more than 1048576 bytes"},
		{"huge line", repeatTo(head, "a", "", adversarialSize), "document too large: more than 1048576 bytes"},
		{"many documents", repeatTo("", "---\na: b\n", "", adversarialSize), "too many YAML documents in one request"},
		{"documents just under the byte bound", repeatTo("", nearlyFull, "", adversarialSize), "more than 100000 YAML nodes"},
		{"moderate documents", repeatTo("", moderate, "", adversarialSize), "request too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{Files: []File{{Name: "big.yaml", Content: tc.in}}}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			docs, fes := decodeAll(req)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes refused in %v, %d bytes allocated", len(tc.in), took, alloc)
			if len(docs) != 0 || len(fes) != 1 || !strings.Contains(fes[0].Message, tc.want) || fes[0].File != "big.yaml" || fes[0].Line < 1 {
				t.Fatalf("docs %d, errors %v; want one error saying %q", len(docs), fes, tc.want)
			}
			if alloc > 1<<20 {
				t.Errorf("allocated %d bytes to refuse it, want under 1 MiB", alloc)
			}
		})
	}
}

// TestPrescanKeepsRealResources: real resources, and big but reasonable
// requests, pass the bounds.
func TestPrescanKeepsRealResources(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if p := prescan(string(data), &scanBudget{}); p != nil {
			t.Errorf("%s: %s", f, p.msg)
		}
	}
	// A model with 2,000 versions, and 2,000 services in one request.
	versions := repeatTo("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: big, labels: {team: risk}}\nspec:\n  versions:\n",
		"    - version: 1\n      format: onnx\n      source:\n        uri: https://models.example.com/fraud/v1/model.onnx?X-Amz-Signature=abc\n        sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\n",
		"", 2000*170)
	services := repeatTo("", "---\napiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: fraud, namespace: payments}\nspec:\n  traffic:\n    - {model: fraud-detector@champion, weight: 90}\n    - {model: fraud-detector@challenger, weight: 10}\n  shadow: {model: fraud-detector@2, percent: 100}\n  timeout: 500ms\n", "", 2000*230)
	for name, in := range map[string]string{"versions": versions, "services": services} {
		if p := prescan(in, &scanBudget{}); p != nil {
			t.Errorf("%s (%d bytes): %s", name, len(in), p.msg)
		}
	}
}

// countNodes counts the nodes yaml.v3 built under n, aliases as themselves.
func countNodes(n *yaml.Node) (nodes, aliases int) {
	nodes = 1
	if n.Kind == yaml.AliasNode {
		aliases = 1
	}
	for _, c := range n.Content {
		cn, ca := countNodes(c)
		nodes, aliases = nodes+cn, aliases+ca
	}
	return nodes, aliases
}

// yamlCounts is what was built from, or counted in, some YAML text.
type yamlCounts struct{ nodes, aliases, docs int }

// builtBy is what yaml.v3 builds from data, every document until the first
// error.
func builtBy(data string) yamlCounts {
	var c yamlCounts
	dec := yaml.NewDecoder(strings.NewReader(data))
	for {
		var n yaml.Node
		if err := decodeNode(dec, &n); err != nil {
			return c
		}
		cn, ca := countNodes(&n)
		c.nodes, c.aliases, c.docs = c.nodes+cn, c.aliases+ca, c.docs+1
	}
}

// counted is what the scanner counts, without its bounds.
func counted(data string) yamlCounts {
	s := yamlScanner{lim: scanLimits{docBytes: len(data) + 1, docNodes: 1 << 62, docAliases: 1 << 62, docDepth: 1 << 62,
		requestNodes: 1 << 62, requestDocs: 1 << 62}, budget: &scanBudget{}}
	s.scan(data)
	return yamlCounts{nodes: s.totalNodes, aliases: s.totalAliases, docs: s.budget.docs}
}

// countsLess says how the scanner counts less of in than yaml.v3 builds, or "".
func countsLess(in string) string {
	built, cnt := builtBy(in), counted(in)
	if cnt.nodes < built.nodes || cnt.aliases < built.aliases || cnt.docs < built.docs {
		return fmt.Sprintf("%q: counted %d nodes, %d aliases, %d documents; yaml.v3 built %d, %d, %d",
			in, cnt.nodes, cnt.aliases, cnt.docs, built.nodes, built.aliases, built.docs)
	}
	return ""
}

// yamlBreaks are the line breaks yaml.v3 knows: CR and LF, and, as YAML 1.1
// has them, NEL, LS and PS.
var yamlBreaks = map[string]string{"LF": "\n", "CRLF": "\r\n", "CR": "\r", "NEL": "\u0085", "LS": "\u2028", "PS": "\u2029"}

// TestPrescanNeverCountsLess: on every fixture and some odd YAML, the scanner
// counts at least as many nodes, aliases and documents as yaml.v3 builds.
func TestPrescanNeverCountsLess(t *testing.T) {
	inputs := []string{
		"", "a", "---", "--- a", "---\n---\n---\n", "...\n...\n", "- - - -\n", "-\n-\n-\n", ": \n:\n", "? \n? a\n: b\n",
		"{a, b, c}", "{a: , b: }", "[a: b, : c, d]", "[[[]]]", "{{}: {}}", "a: &x [1]\nb: *x\nc: *x\n",
		"a: |\n  - b: [c\n  d: ]\n", "a: 'x: [y, z]'\nb: \"c\\\"d: e\"\n", "a: b # c: [d, e]\n", "\ufeffa: b\n",
		"a: b\u0085c: d\u2028e: f\n", "a: !!str\nb: !t\n", "key:\n- a\n- b\n- c: d\n  e: f\n", "a:\r\n  b: c\r\n",
		`{"a":1,"b":[1,2,{"c":null}]}`, "- ? a\n  : b\n", "<<: *a\n", "%YAML 1.2\n---\na: b\n",
	}
	for _, br := range yamlBreaks {
		inputs = append(inputs, "a: b"+br+"---"+br+"c: d"+br, "---"+br+"a: b"+br+"..."+br+"---"+br+"c: d"+br,
			"a:"+br+"  - x"+br+"  - y"+br, "a: b\r"+br+"--- c"+br+"..."+br+"d", "a: |"+br+"  x"+br+"---"+br+"b: c")
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		inputs = append(inputs, string(data))
	}
	for _, in := range inputs {
		if msg := countsLess(in); msg != "" {
			t.Error(msg)
		}
	}
}

// TestPrescanSeesEveryDocument: yaml.v3 starts a document at a "---" after any
// of its line breaks, so the scanner must too. Before, it split lines at LF
// only: documents after CR, NEL, LS or PS were not counted, and a request could
// hold any number of them.
func TestPrescanSeesEveryDocument(t *testing.T) {
	for name, br := range yamlBreaks {
		t.Run(name, func(t *testing.T) {
			in := strings.Repeat("---"+br+"a"+br, maxRequestDocs+1)
			if got := builtBy(in).docs; got != maxRequestDocs+1 {
				t.Fatalf("yaml.v3 built %d documents, want %d", got, maxRequestDocs+1)
			}
			p := prescan(in, &scanBudget{})
			if p == nil || !p.request || !strings.Contains(p.msg, "too many YAML documents") {
				t.Fatalf("prescan = %+v, want the request refused for too many documents", p)
			}
		})
	}
	// The lines the scanner reports are yaml.v3's lines.
	for name, br := range yamlBreaks {
		in := "a: b" + br + "---" + br + "c: [" + strings.Repeat("[", maxScanDepth) + br
		if p := prescan(in, &scanBudget{}); p == nil || p.line != 2 {
			t.Errorf("%s: prescan = %+v, want the second document refused at line 2", name, p)
		}
	}
}

// FuzzPrescan: whatever the text, the scanner never counts fewer nodes,
// aliases or documents than yaml.v3 builds from it, and the bounded scan never
// panics.
func FuzzPrescan(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(string(data))
		}
	}
	for _, s := range []string{"[a: b, : c]", "- - a\n", "a:\n- b\n", "{a, b}", "a: &x 1\nb: *x\n", "--- |\n  x\n...\n"} {
		f.Add(s)
	}
	for _, br := range yamlBreaks {
		f.Add("a: b" + br + "---" + br + "c: d" + br + "..." + br + "e")
	}
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1<<16 {
			return
		}
		prescan(in, &scanBudget{})
		if msg := countsLess(in); msg != "" {
			t.Fatal(msg)
		}
	})
}
