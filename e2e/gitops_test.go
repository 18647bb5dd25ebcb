package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/gitops/gitrepo/gittest"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
)

// gitEnv is a server whose --source-dir holds a real git repository.
type gitEnv struct {
	srv  *testutil.Server
	repo *gittest.Repo
	// model is the bytes of the test MLP and their sha256.
	model []byte
	sum   string
}

func newGitEnv(t testing.TB, mutate ...func(*config.Config)) *gitEnv {
	t.Helper()
	repo := gittest.NewRepo(t)
	b, err := os.ReadFile(testutil.Model("mlp"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	srv := testutil.StartServer(t, append([]func(*config.Config){func(c *config.Config) {
		c.SourceDir = filepath.Dir(repo.Dir())
	}}, mutate...)...)
	return &gitEnv{srv: srv, repo: repo, model: b, sum: hex.EncodeToString(h[:])}
}

// modelYAML declares the fraud model with versions from artifacts in the
// repo (./fraud-vN.onnx beside the YAML) and the champion alias.
func (g *gitEnv) modelYAML(versions []int, champion int) string {
	var b strings.Builder
	b.WriteString("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: fraud-detector}\nspec:\n  versions:\n")
	for _, v := range versions {
		fmt.Fprintf(&b, "    - {version: %d, source: {uri: ./fraud-v%d.onnx, sha256: %s}}\n", v, v, g.sum)
	}
	fmt.Fprintf(&b, "  aliases: {champion: %d}\n", champion)
	return b.String()
}

const gitServiceYAML = `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud}
spec:
  traffic:
    - {model: fraud-detector@champion}
`

// sync asks for a sync now (as the admin) and returns the status it left.
func (g *gitEnv) sync(t testing.TB, name string) spec.GitSourceStatus {
	t.Helper()
	return g.syncNS(t, "default", name)
}

// syncNS is sync in namespace ns.
func (g *gitEnv) syncNS(t testing.TB, ns, name string) spec.GitSourceStatus {
	t.Helper()
	st, _, body := do(t, "POST", g.srv.URL+"/api/v1/namespaces/"+ns+"/resources/gitsources/"+name+"/sync", "", nil)
	if st != http.StatusOK {
		t.Fatalf("sync %s: %d %s", name, st, body)
	}
	var out spec.GitSourceStatus
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("sync %s: %v: %s", name, err, body)
	}
	return out
}

func (g *gitEnv) alias(t testing.TB, alias string) int64 {
	t.Helper()
	var m struct {
		Aliases map[string]int64 `json:"aliases"`
	}
	if st := getJSON(t, g.srv.URL+"/api/v1/namespaces/default/models/fraud-detector", &m); st != 200 {
		t.Fatalf("get model: %d", st)
	}
	return m.Aliases[alias]
}

// TestGitOpsWalkthrough is README walkthrough 4 without the rollout: a local
// repository holds a Model (its artifact committed beside it) and an
// InferenceService; Nimbus syncs and serves it; a commit adds a version and
// moves the alias; a broken commit changes nothing and says where; a change
// by hand shows as drift and is healed.
func TestGitOpsWalkthrough(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("models/fraud-v1.onnx", string(g.model))
	g.repo.Write("models/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Write("services/fraud.yaml", gitServiceYAML)
	g.repo.Write("README.md", "not a resource\n")
	first := g.repo.Commit("fraud v1")

	gs := filepath.Join(t.TempDir(), "gs.yaml")
	os.WriteFile(gs, []byte(fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: deploy}\nspec: {url: %q, ref: main}\n", "file://"+g.repo.Dir())), 0o600)
	mustCLI(t, g.srv, "apply", "-f", gs)

	st := g.sync(t, "deploy")
	if st.Sync != spec.SyncSynced || st.SyncedCommit != first || len(st.Resources) != 2 {
		t.Fatalf("first sync: %+v", st)
	}
	if code, body := postJSON(t, g.srv.URL+"/v2/models/fraud/infer", mlpRequest); code != 200 {
		t.Fatalf("infer after the first sync: %d %s", code, body)
	}
	// The server owns what it wrote, and the audit log names the source.
	var m spec.Model
	if getJSON(t, g.srv.URL+"/api/v1/namespaces/default/resources/models/fraud-detector", &m); m.Metadata.ManagedBy != "gitsource/deploy" {
		t.Fatalf("managedBy = %q", m.Metadata.ManagedBy)
	}
	if out := mustCLI(t, g.srv, "events", "-o", "json"); !strings.Contains(out, `"actor": "gitsource/default/deploy"`) && !strings.Contains(out, `"actor":"gitsource/default/deploy"`) {
		t.Fatalf("audit log does not name the GitSource: %s", out)
	}

	// A commit adds version 2 and moves the alias.
	g.repo.Write("models/fraud-v2.onnx", string(g.model))
	g.repo.Write("models/fraud.yaml", g.modelYAML([]int{1, 2}, 2))
	second := g.repo.Commit("fraud v2 is champion")
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced || st.SyncedCommit != second {
		t.Fatalf("second sync: %+v", st)
	}
	if a := g.alias(t, "champion"); a != 2 {
		t.Fatalf("champion = %d after the commit that moved it to 2", a)
	}

	// A broken commit: an unknown field. Nothing changes; status says where.
	g.repo.Write("models/fraud.yaml", strings.Replace(g.modelYAML([]int{1, 2}, 1), "  aliases:", "  aliasses:", 1))
	broken := g.repo.Commit("typo")
	st = g.sync(t, "deploy")
	if st.Sync != spec.SyncFailed || st.SyncedCommit != second || st.LastAttemptedCommit != broken || len(st.Errors) == 0 {
		t.Fatalf("broken commit: %+v", st)
	}
	if fe := st.Errors[0]; fe.File != "models/fraud.yaml" || fe.Line != 8 || fe.Field != "spec.aliasses" {
		t.Fatalf("broken commit error %+v, want models/fraud.yaml:8 spec.aliasses", fe)
	}
	// The CLI says so too: exit 1, the place in the table, the status in JSON.
	if out, _, code := runCLI(t, g.srv, "gs", "sync", "deploy"); code != 1 || !strings.Contains(out, "models/fraud.yaml:8: spec.aliasses") {
		t.Fatalf("nimbus gs sync on a broken commit: exit %d\n%s", code, out)
	}
	out, _, _ := runCLI(t, g.srv, "gs", "sync", "deploy", "-o", "json")
	var js spec.GitSourceStatus
	if err := json.Unmarshal([]byte(out), &js); err != nil || js.Sync != spec.SyncFailed || js.SyncedCommit != second {
		t.Fatalf("gs sync -o json: %v %+v\n%s", err, js, out)
	}
	if a := g.alias(t, "champion"); a != 2 {
		t.Fatalf("champion = %d after a broken commit (want 2, unchanged)", a)
	}
	if code, _ := postJSON(t, g.srv.URL+"/v2/models/fraud/infer", mlpRequest); code != 200 {
		t.Fatalf("the last good state stopped serving: %d", code)
	}

	// The fix; then a change by hand is drift, shown with its diff.
	g.repo.Write("models/fraud.yaml", g.modelYAML([]int{1, 2}, 2))
	fixed := g.repo.Commit("fix typo")
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced || st.SyncedCommit != fixed {
		t.Fatalf("fixed commit: %+v", st)
	}
	mustCLI(t, g.srv, "models", "alias", "set", "fraud-detector", "champion", "1")
	st = g.sync(t, "deploy")
	if st.Sync != spec.SyncOutOfSync {
		t.Fatalf("after a change by hand: %+v", st)
	}
	var drifted *spec.SyncedResource
	for i := range st.Resources {
		if st.Resources[i].State == spec.SyncOutOfSync {
			drifted = &st.Resources[i]
		}
	}
	if drifted == nil || drifted.Name != "fraud-detector" || !strings.Contains(drifted.Diff, "champion") {
		t.Fatalf("drift not shown with its diff: %+v", st.Resources)
	}
	if a := g.alias(t, "champion"); a != 1 {
		t.Fatalf("selfHeal is off, but champion = %d", a)
	}

	// Changing the GitSource syncs it again (as a new commit would): the
	// hand change is overwritten. With selfHeal on, a later hand change is
	// reverted by the next pass alone, audited as a self-heal.
	os.WriteFile(gs, []byte(fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: deploy}\nspec: {url: %q, ref: main, selfHeal: true}\n", "file://"+g.repo.Dir())), 0o600)
	mustCLI(t, g.srv, "apply", "-f", gs)
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
		t.Fatalf("after selfHeal was turned on: %+v", st)
	}
	if a := g.alias(t, "champion"); a != 2 {
		t.Fatalf("champion = %d after the GitSource changed, want 2", a)
	}
	mustCLI(t, g.srv, "models", "alias", "set", "fraud-detector", "champion", "1")
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
		t.Fatalf("self-heal: %+v", st)
	}
	if a := g.alias(t, "champion"); a != 2 {
		t.Fatalf("champion = %d after self-heal, want 2", a)
	}
	if out := mustCLI(t, g.srv, "events", "-o", "json"); !strings.Contains(out, "gitops-selfheal") {
		t.Fatalf("the revert is not audited: %s", out)
	}

	// Server-side defaults never count as drift: pass after pass, Synced.
	for range 3 {
		if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
			t.Fatalf("defaults counted as drift: %+v", st)
		}
	}

	// get lists it, describe shows it for people.
	if out := mustCLI(t, g.srv, "get", "gs"); !strings.Contains(out, "deploy") || !strings.Contains(out, "Synced") || !strings.Contains(out, fixed[:12]) {
		t.Fatalf("get gs:\n%s", out)
	}
	out = mustCLI(t, g.srv, "describe", "gs", "deploy")
	for _, want := range []string{"deploy", fixed[:12], "Synced"} {
		if !strings.Contains(out, want) {
			t.Fatalf("describe gs lacks %q:\n%s", want, out)
		}
	}
}

// TestGitOpsPruneAndEmpty: a file deleted from the repo prunes what it
// declared and only that; a render that finds nothing is refused unless
// allowEmpty; a resource made by hand is never pruned.
func TestGitOpsPruneAndEmpty(t *testing.T) {
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Write("s/fraud.yaml", gitServiceYAML)
	g.repo.Commit("all")
	// Made by hand in the same namespace: the source must never touch it.
	g.srv.Push(t, "handmade", "mlp")

	gs := filepath.Join(t.TempDir(), "gs.yaml")
	os.WriteFile(gs, []byte(fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: deploy}\nspec: {url: %q}\n", g.repo.Dir())), 0o600)
	mustCLI(t, g.srv, "apply", "-f", gs)
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
		t.Fatalf("first sync: %+v", st)
	}
	g.repo.Remove("s/fraud.yaml")
	g.repo.Commit("drop the service")
	st := g.sync(t, "deploy")
	if st.Sync != spec.SyncSynced {
		t.Fatalf("prune sync: %+v", st)
	}
	pruned := false
	for _, r := range st.Resources {
		pruned = pruned || (r.State == spec.SyncPruned && r.Name == "fraud")
	}
	if !pruned {
		t.Fatalf("service not reported pruned: %+v", st.Resources)
	}
	if code := getJSON(t, g.srv.URL+"/api/v1/namespaces/default/resources/inferenceservices/fraud", nil); code != 404 {
		t.Fatalf("pruned service still there: %d", code)
	}

	g.repo.Remove("m/fraud.yaml")
	emptyCommit := g.repo.Commit("nothing left")
	st = g.sync(t, "deploy")
	if st.Sync != spec.SyncFailed || st.Reason != "EmptyRender" || st.LastAttemptedCommit != emptyCommit {
		t.Fatalf("empty render: %+v", st)
	}
	if code := getJSON(t, g.srv.URL+"/api/v1/namespaces/default/models/fraud-detector", nil); code != 200 {
		t.Fatalf("an empty render pruned the model: %d", code)
	}
	os.WriteFile(gs, []byte(fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: deploy}\nspec: {url: %q, allowEmpty: true}\n", g.repo.Dir())), 0o600)
	mustCLI(t, g.srv, "apply", "-f", gs)
	if st := g.sync(t, "deploy"); st.Sync != spec.SyncSynced {
		t.Fatalf("allowEmpty: %+v", st)
	}
	if code := getJSON(t, g.srv.URL+"/api/v1/namespaces/default/models/fraud-detector", nil); code != 404 {
		t.Fatalf("allowEmpty: the owned model was not pruned: %d", code)
	}
	if code := getJSON(t, g.srv.URL+"/api/v1/namespaces/default/models/handmade", nil); code != 200 {
		t.Fatalf("a model made by hand was pruned: %d", code)
	}
}

// TestGitOpsWebhook: "sync now" takes a deployer token, or a git host's
// signature of the body with the source's webhook secret; a bad or missing
// signature is refused and triggers nothing.
func TestGitOpsWebhook(t *testing.T) {
	t.Setenv("NIMBUS_SECRET_HOOK", "hook-secret")
	g := newGitEnv(t)
	g.repo.Write("m/fraud-v1.onnx", string(g.model))
	g.repo.Write("m/fraud.yaml", g.modelYAML([]int{1}, 1))
	g.repo.Commit("v1")
	gs := filepath.Join(t.TempDir(), "gs.yaml")
	os.WriteFile(gs, []byte(fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: GitSource\nmetadata: {name: hooked}\nspec: {url: %q, webhook: {secretFrom: {env: NIMBUS_SECRET_HOOK}}}\n", g.repo.Dir())), 0o600)
	mustCLI(t, g.srv, "apply", "-f", gs)
	url := g.srv.URL + "/api/v1/namespaces/default/resources/gitsources/hooked/sync"
	body := []byte(`{"ref":"refs/heads/main"}`)
	sign := func(secret string) string {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		return "sha256=" + hex.EncodeToString(mac.Sum(nil))
	}
	sendBody := func(payload, sig string) (int, string) {
		req, _ := http.NewRequest("POST", url, strings.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		resp, err := testutil.Client.Do(testutil.NoToken(req))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	send := func(sig string) (int, string) { return sendBody(string(body), sig) }
	if code, b := send(sign("wrong")); code != 401 || !strings.Contains(b, "signature does not match") {
		t.Fatalf("wrong secret: %d %s", code, b)
	}
	if code, b := send(""); code != 401 {
		t.Fatalf("no signature, no token: %d %s", code, b)
	}
	if code, b := send("sha256=zz"); code != 401 {
		t.Fatalf("malformed signature: %d %s", code, b)
	}
	if code, b := sendBody(strings.Repeat("x", 1<<20+1), "sha256="+strings.Repeat("0", 64)); code != 413 {
		t.Fatalf("a webhook body over 1 MiB: %d %s, want 413", code, b)
	}
	if code, b := send(sign("hook-secret")); code != 202 || strings.Contains(b, "commit") {
		t.Fatalf("good signature: %d %s (want 202 with nothing about the source)", code, b)
	}
	// The webhook's pass runs; a token's sync then finds it synced.
	if st := g.sync(t, "hooked"); st.Sync != spec.SyncSynced {
		t.Fatalf("after the webhook: %+v", st)
	}
	// An invoker token may not sync.
	inv := createToken(t, g.srv, "--role", "invoker", "--scope", "default")
	if code, _, _ := do(t, "POST", url, "", nil, "Authorization", "Bearer "+inv.Secret); code != 403 {
		t.Fatalf("invoker sync: %d, want 403", code)
	}
}
