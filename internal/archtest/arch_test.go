// Package archtest guards the architecture: every package says what it is for,
// and the layering between packages holds (domain packages never import the API
// layer; leaf packages stay leaves).
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/testutil"
)

const module = "github.com/nimbus-ai/nimbus"

type pkg struct {
	hasDoc  bool
	imports map[string]bool
}

func loadPackages(t *testing.T) map[string]*pkg {
	t.Helper()
	root := testutil.RepoRoot()
	pkgs := map[string]*pkg{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		p := pkgs[rel]
		if p == nil {
			p = &pkg{imports: map[string]bool{}}
			pkgs[rel] = p
		}
		if f.Doc != nil && strings.HasPrefix(strings.TrimSpace(f.Doc.Text()), "Package "+f.Name.Name) || f.Name.Name == "main" && f.Doc != nil {
			p.hasDoc = true
		}
		for _, imp := range f.Imports {
			p.imports[strings.Trim(imp.Path.Value, `"`)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestEveryPackageHasADocComment(t *testing.T) {
	var missing []string
	for dir, p := range loadPackages(t) {
		if !p.hasDoc && !strings.HasPrefix(dir, "cmd") && !strings.HasPrefix(dir, "bench") {
			missing = append(missing, dir)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("packages without a \"// Package x ...\" doc comment: %v", missing)
	}
}

func TestLayering(t *testing.T) {
	pkgs := loadPackages(t)
	// forbidden[p] lists module-relative prefixes package p must not import.
	forbidden := map[string][]string{
		"tensor":        {""}, // a leaf: nothing from this module
		"internal/errs": {""},
		"runtime":       {"registry", "serving", "api", "internal/system", "internal/cli", "client"},
		"runtime/onnx":  {"registry", "serving", "api", "internal/system", "internal/cli", "client"},
		"registry":      {"serving", "api", "internal/system", "internal/cli", "client", "runtime/onnx"},
		"serving":       {"api", "internal/system", "internal/cli", "client", "runtime/onnx", "registry/sqlite", "registry/blob"},
		"api/oip":       {"registry/sqlite", "runtime/onnx", "internal/system", "internal/cli"},
		"api/grpcapi":   {"registry/sqlite", "runtime/onnx", "internal/system", "internal/cli"},
		"api/mgmt":      {"registry/sqlite", "runtime/onnx", "internal/system", "internal/cli", "serving"},
		"client":        {"registry/sqlite", "runtime/onnx", "internal/system", "serving", "api/mgmt", "apply"},
		"config":        {"registry", "serving", "api", "runtime", "internal/system", "internal/cli"},
		// Request-path limits (deadlines, the in-flight byte budget) sit under
		// the API adapters and know nothing of models.
		"internal/limits": {"registry", "serving", "api", "runtime", "spec", "apply", "internal/system", "internal/cli", "client"},
		// Declarative resources sit above the registry and beside serving: the
		// router knows nothing of YAML, and the apply engine reaches serving
		// only through the small interfaces internal/system adapts.
		"audit": {""},
		// One version's scheduler takes its config and reports to an observer:
		// it knows no registry, statistics, metrics or runtime package.
		"serving/batch":  {"registry", "telemetry", "runtime", "serving/router", "api", "internal/system", "internal/cli", "client"},
		"serving/router": {"spec", "apply", "api", "registry/sqlite", "internal/system", "internal/cli", "client", "runtime/onnx"},
		// spec is the pure resource model the client imports too: types,
		// decoding, validation, defaults, canonical YAML, diffs. It does no
		// I/O and knows no engine, store, controller or audit log. It imports
		// internal/errs, secrets (a source's token is a secrets.Ref) and
		// registry, for the name rules, version bounds and serving settings
		// a Model declares (registry.ServingConfig); nothing of registry's
		// I/O is called.
		"spec": {"serving", "api", "runtime", "registry/sqlite", "registry/blob", "internal/system", "internal/cli", "client",
			"apply", "reconcile", "internal/run", "audit"},
		// The apply engine: it changes the registry, the resource store and the
		// router through interfaces; the stores and the router are wired in
		// internal/system.
		"apply":       {"serving", "api", "runtime", "registry/sqlite", "registry/blob", "internal/system", "internal/cli", "client"},
		"spec/source": {"serving", "api", "runtime", "registry/sqlite", "internal/system", "internal/cli", "client"},
		// auth decides who may do what; the API packages declare rules and ask
		// it. It knows no routes, stores or runtimes.
		"auth":               {"api", "serving", "spec", "apply", "runtime", "registry/sqlite", "registry/blob", "internal/system", "internal/cli", "client"},
		"internal/ratelimit": {"api", "serving", "spec", "apply", "runtime", "registry", "auth", "internal/system", "internal/cli", "client"},
		"internal/cliconfig": {"api", "serving", "spec", "apply", "runtime", "registry", "auth", "internal/system", "internal/cli", "client", "config"},

		// Test models built byte by byte and the test cases of testdata/models:
		// tensors only, so any test may use it.
		"runtime/onnx/onnxtest": {"registry", "serving", "api", "runtime", "internal", "spec", "apply", "client", "config", "telemetry"},
		// The egress rule and secret references serve every part that
		// connects or authenticates on a caller's behalf (fetches now; git,
		// brokers, remote runtimes later): leaves (secrets uses errs only).
		"egress": {""},
		// The control-plane home: the run group and the controller runtime
		// know nothing of what they run.
		"internal/run": {""},
		"reconcile":    {""},
		// Rollout decisions are pure: the statistics, nothing else of ours.
		"rollout": {"serving", "api", "registry", "spec", "apply", "runtime", "gitops", "reconcile", "internal/system", "internal/cli", "client"},
		// The rollout controller decides from the stored state, the registry's
		// aliases and the router's windows, all through small interfaces; the
		// InferenceService controller (apply) calls it, so it imports neither
		// apply nor the controller runtime, nor the router.
		"delivery": {"serving", "api", "runtime", "registry/sqlite", "registry/blob", "internal/system", "internal/cli", "client",
			"apply", "gitops", "reconcile"},
		// The bus interface and its adapters know nothing of models or
		// resources: a Trigger's controller feeds them (adapters import events
		// only).
		"events":             {"tensor", "serving", "api", "registry", "spec", "apply", "runtime", "reconcile", "internal/system", "internal/cli", "client", "audit"},
		"events/natsjs":      {"tensor", "serving", "api", "registry", "spec", "apply", "runtime", "reconcile", "internal/system", "internal/cli", "client", "audit", "events/format"},
		"events/redisstream": {"tensor", "serving", "api", "registry", "spec", "apply", "runtime", "reconcile", "internal/system", "internal/cli", "client", "audit", "events/format"},
		"events/eventstest":  {"tensor", "serving", "api", "registry", "spec", "apply", "runtime", "reconcile", "internal/system", "internal/cli", "client", "audit", "events/format"},
		// The trigger loop feeds the router through a small interface and
		// knows no store, API or concrete bus.
		"trigger": {"api", "registry/sqlite", "registry/blob", "runtime/onnx", "internal/system", "internal/cli", "client", "apply", "gitops", "events/natsjs"},
		// The OIP codec of triggers uses the REST API's own decoder, and nothing
		// of the server beyond it.
		"trigger/oipcodec": {"api/mgmt", "api/grpcapi", "registry/sqlite", "registry/blob", "runtime/onnx", "internal/system", "internal/cli", "client", "apply", "gitops"},
		// The Trigger controller reads resources and feeds the router through
		// small interfaces; it knows no store, API, server or apply engine.
		"trigger/controller": {"api/mgmt", "api/grpcapi", "registry/sqlite", "registry/blob", "runtime/onnx", "internal/system", "internal/cli", "client", "apply", "gitops", "telemetry"},
		// Event formats: payloads to tensors and back, pure (tensor only).
		"events/format": {"serving", "api", "registry", "spec", "apply", "runtime", "reconcile", "internal/system", "internal/cli", "client", "audit"},
		// Generated test and benchmark models: a leaf any test may use.
		"internal/mlpgen": {""},
		// Rollout statistics (intervals, verdicts, latency histograms) are
		// pure math: a leaf the canary controller and serving both use.
		"analysis": {""},
		// GitOps drives the apply engine and reaches git through gitops/gitrepo;
		// it knows no store, server or runtime (small interfaces, adapted in
		// internal/system).
		"gitops":  {"serving", "api", "runtime", "registry/sqlite", "registry/blob", "internal/system", "internal/cli", "client", "auth"},
		"secrets": {"tensor", "registry", "runtime", "serving", "spec", "apply", "audit", "api", "config", "internal/system", "internal/cli", "client", "egress"},
	}
	for dir, bans := range forbidden {
		p, ok := pkgs[dir]
		if !ok {
			t.Errorf("package %s not found", dir)
			continue
		}
		for imp := range p.imports {
			rel, inModule := strings.CutPrefix(imp, module)
			if !inModule {
				continue
			}
			rel = strings.TrimPrefix(rel, "/")
			for _, ban := range bans {
				if ban == "" || rel == ban || strings.HasPrefix(rel, ban+"/") {
					t.Errorf("%s imports %s, which the layering forbids", dir, rel)
				}
			}
		}
	}
}

// TestImportAllowLists: packages that wrap one outside library for the rest
// of the module import only the standard library and what is listed here
// (entries ending in "/" are prefixes). The git layer of GitOps knows go-git
// (go-billy is go-git's own file system layer) and at most the egress rule;
// its test helper, the standard library alone.
func TestImportAllowLists(t *testing.T) {
	pkgs := loadPackages(t)
	allowed := map[string][]string{
		"gitops/gitrepo":         {"github.com/go-git/", module + "/egress"},
		"gitops/gitrepo/gittest": {},
	}
	for dir, allow := range allowed {
		p, ok := pkgs[dir]
		if !ok {
			t.Errorf("package %s not found", dir)
			continue
		}
	imports:
		for imp := range p.imports {
			if first, _, _ := strings.Cut(imp, "/"); !strings.Contains(first, ".") {
				continue // the standard library
			}
			for _, a := range allow {
				if imp == a || strings.HasSuffix(a, "/") && strings.HasPrefix(imp, a) {
					continue imports
				}
			}
			t.Errorf("%s imports %s, which is not on its allow list", dir, imp)
		}
	}
}

// TestCLIDoesNotTouchTheDataDir: the CLI is a client of the API; only the server
// command wires storage.
func TestCLIDoesNotTouchTheDataDir(t *testing.T) {
	p := loadPackages(t)["internal/cli"]
	for imp := range p.imports {
		if strings.HasPrefix(imp, module+"/registry/sqlite") || strings.HasPrefix(imp, module+"/registry/blob") {
			t.Errorf("internal/cli imports %s directly", imp)
		}
	}
}
