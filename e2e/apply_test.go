package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
)

// sourceDir copies the fraud models into a directory the server may read
// file:// sources from, and returns it with the files' sha256.
func sourceDir(t *testing.T) (dir string, sha map[string]string) {
	t.Helper()
	dir = t.TempDir()
	sha = map[string]string{}
	for _, m := range []string{"fraud_v1", "fraud_v2", "fixed_batch"} {
		b, err := os.ReadFile(testutil.Model(m))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, m+".onnx")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if sha[m], _, err = client.FileSHA256(p); err != nil {
			t.Fatal(err)
		}
	}
	return dir, sha
}

func modelYAML(dir string, sha map[string]string, extra string) string {
	return fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: Model
metadata:
  name: fraud-detector
  labels: {team: payments}
spec:
  versions:
    - version: 1
      source: {uri: "file://%[1]s/fraud_v1.onnx", sha256: %[2]s}
    - version: 2
      source: {uri: "file://%[1]s/fraud_v2.onnx", sha256: %[3]s}
  aliases: {champion: 1, challenger: 2}
  serving:
    batching: {maxBatchSize: 8, maxQueueDelay: 2ms}
    idleTimeout: 5m
%[4]s`, dir, sha["fraud_v1"], sha["fraud_v2"], extra)
}

// TestApplyModelRoundTrip: a Model declared with file:// sources is fetched,
// verified and registered; `get -o yaml` shows the server's defaults and
// re-applying it is unchanged; a changed sha256 for an existing version is a
// 409 naming the field; pushed versions join the list.
func TestApplyModelRoundTrip(t *testing.T) {
	dir, sha := sourceDir(t)
	srv := testutil.StartServer(t, func(c *config.Config) { c.SourceDir = dir })
	files := t.TempDir()
	model := writeFile(t, files, "model.yaml", modelYAML(dir, sha, ""))
	out := mustCLI(t, srv, "apply", "-f", model)
	if !strings.Contains(out, "model.nimbus.dev/fraud-detector created") {
		t.Fatalf("apply: %q", out)
	}
	if out := mustCLI(t, srv, "apply", "-f", model); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-apply: %q", out)
	}
	// The registry holds what was declared.
	code, body := postJSON(t, srv.URL+"/v2/models/fraud-detector/versions/2/infer", fraudRequest)
	if code != 200 {
		t.Fatalf("infer v2: %d %s", code, body)
	}
	live := mustCLI(t, srv, "get", "model", "fraud-detector", "-o", "yaml")
	for _, want := range []string{"threads: 1", "maxQueueSize: 1024", "idleTimeout: 5m", "maxBatchSize: 8", "team: payments", "resourceVersion:", "observedGeneration: 1"} {
		if !strings.Contains(live, want) {
			t.Errorf("get -o yaml lacks %q:\n%s", want, live)
		}
	}
	back := writeFile(t, files, "live.yaml", live)
	if out := mustCLI(t, srv, "apply", "-f", back); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-applying get -o yaml: %q", out)
	}

	// A new sha256 for version 2 is a conflict with the field path.
	bad := strings.Replace(modelYAML(dir, sha, ""), sha["fraud_v2"], sha["fraud_v1"], 1)
	bad = strings.Replace(bad, "fraud_v2.onnx", "fraud_v1.onnx", 1)
	badFile := writeFile(t, files, "bad.yaml", bad)
	_, errOut, code2 := runCLI(t, srv, "apply", "-f", badFile)
	if code2 != 1 || !strings.Contains(errOut, "bad.yaml:11: spec.versions[1].source.sha256: version 2 of model fraud-detector already exists") {
		t.Fatalf("changed sha: exit %d\n%s", code2, errOut)
	}
	st, _, resp := do(t, "POST", srv.URL+"/api/v1/apply", "application/yaml", []byte(bad))
	if st != 409 || !strings.Contains(string(resp), `"field":"spec.versions[1].source.sha256"`) {
		t.Fatalf("API: %d %s", st, resp)
	}

	// A pushed version appears in the Model's list; the file stays valid.
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector")
	var m spec.Model
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "get", "model", "fraud-detector", "-o", "json")), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Spec.Versions) != 3 || m.Spec.Versions[2].Source.URI != "" {
		t.Fatalf("versions after a push: %+v", m.Spec.Versions)
	}
	if out := mustCLI(t, srv, "apply", "-f", model); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-apply after push: %q", out)
	}

	// Dropping an alias from the file removes it; stale resourceVersion is 409.
	noChallenger := strings.Replace(modelYAML(dir, sha, ""), "aliases: {champion: 1, challenger: 2}", "aliases: {champion: 2}", 1)
	writeFile(t, files, "model.yaml", noChallenger)
	if out, _, code := runCLI(t, srv, "diff", "-f", model); code != 1 || !strings.Contains(out, "-    challenger: 2") || !strings.Contains(out, "+    champion: 2") {
		t.Fatalf("diff: exit %d\n%s", code, out)
	}
	mustCLI(t, srv, "apply", "-f", model)
	m = spec.Model{} // Unmarshal merges into a map it finds
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "get", "model", "fraud-detector", "-o", "json")), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Spec.Aliases) != 1 || m.Spec.Aliases["champion"] != 2 || m.Metadata.Generation != 2 {
		t.Fatalf("after dropping challenger: aliases %v generation %d", m.Spec.Aliases, m.Metadata.Generation)
	}
	_, errOut, code2 = runCLI(t, srv, "apply", "-f", back) // carries the old resourceVersion
	if code2 != 1 || !strings.Contains(errOut, "metadata.resourceVersion") || !strings.Contains(errOut, "was changed") {
		t.Fatalf("stale resourceVersion: exit %d\n%s", code2, errOut)
	}
}

// TestApplyIsAllOrNothing: one bad document among good ones changes nothing,
// and every bad document is reported with file, line and field at once.
func TestApplyIsAllOrNothing(t *testing.T) {
	dir, sha := sourceDir(t)
	srv := testutil.StartServer(t, func(c *config.Config) { c.SourceDir = dir })
	files := t.TempDir()
	writeFile(t, files, "a/model.yaml", modelYAML(dir, sha, ""))
	writeFile(t, files, "b/services.yaml", `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: good}
spec:
  traffic:
    - model: fraud-detector@champion
---
apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: bad}
spec:
  traffic:
    - model: fraud-detector@champion
      weight: 90
    - model: fraud-detector@nosuchalias
      weight: 20
`)
	writeFile(t, files, "c/outside.yaml", `apiVersion: nimbus.dev/v1
kind: Model
metadata: {name: other}
spec:
  versions:
    - version: 1
      source: {uri: "file:///etc/passwd", sha256: "`+strings.Repeat("a", 64)+`"}
`)
	_, errOut, code := runCLI(t, srv, "apply", "-f", files)
	if code != 1 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"services.yaml:12: spec.traffic: weights sum to 110, must be 100",
		"outside.yaml:7: spec.versions[0].source.uri:",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("errors lack %q:\n%s", want, errOut)
		}
	}
	st, _, _ := do(t, "GET", srv.URL+"/api/v1/namespaces/default/models/fraud-detector", "", nil)
	if st != 404 {
		t.Fatalf("the good Model was created although the apply failed: %d", st)
	}
	if st, _, _ := do(t, "GET", srv.URL+"/api/v1/namespaces/default/resources/isvc/good", "", nil); st != 404 {
		t.Fatalf("the good service was created although the apply failed: %d", st)
	}
	// Unknown alias is reported once the weights are fixed.
	writeFile(t, files, "b/services.yaml", `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: bad}
spec:
  traffic:
    - model: fraud-detector@champion
      weight: 90
    - model: fraud-detector@nosuchalias
      weight: 10
`)
	os.Remove(filepath.Join(files, "c", "outside.yaml"))
	_, errOut, code = runCLI(t, srv, "apply", "-f", files)
	if code != 1 || !strings.Contains(errOut, `services.yaml:8: spec.traffic[1].model: model fraud-detector has no alias "nosuchalias"; its aliases: challenger, champion`) {
		t.Fatalf("unknown alias:\n%s", errOut)
	}
	// A batch setting on a model without a dynamic batch dimension.
	writeFile(t, files, "b/services.yaml", "")
	lookup := fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: Model
metadata: {name: lookup}
spec:
  versions:
    - {version: 1, source: {uri: "file://%s/fixed_batch.onnx", sha256: %s}}
  serving:
    batching: {maxBatchSize: 4}
`, dir, sha["fixed_batch"])
	writeFile(t, files, "d/lookup.yaml", lookup)
	_, errOut, code = runCLI(t, srv, "apply", "-f", filepath.Join(files, "d"))
	if code != 1 || !strings.Contains(errOut, "lookup.yaml:8: spec.serving.batching.maxBatchSize: version 1 cannot batch") {
		t.Fatalf("batching on a fixed-shape model:\n%s", errOut)
	}

	// A dry run reports what would happen and changes nothing.
	os.Remove(filepath.Join(files, "d", "lookup.yaml"))
	writeFile(t, files, "b/services.yaml", `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: bad}
spec:
  traffic:
    - {model: fraud-detector@champion, weight: 90}
    - {model: fraud-detector@challenger, weight: 10}
`)
	out := mustCLI(t, srv, "apply", "--dry-run", "-f", files)
	if !strings.Contains(out, "model.nimbus.dev/fraud-detector created (dry run)") || !strings.Contains(out, "inferenceservice.nimbus.dev/bad created (dry run)") {
		t.Fatalf("dry run: %q", out)
	}
	if st, _, _ := do(t, "GET", srv.URL+"/api/v1/namespaces/default/models/fraud-detector", "", nil); st != 404 {
		t.Fatalf("a dry run created the model: %d", st)
	}
	var evs []audit.Event
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "events", "-o", "json")), &evs); err != nil || len(evs) != 0 {
		t.Fatalf("events after failed applies and a dry run: %v %+v", err, evs)
	}
}

// TestConcurrentApplies: applies racing on one service all succeed, one at a
// time; the generation counts the changes and the audit log has one event per
// change.
func TestConcurrentApplies(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v1"), "--name", "fraud-detector", "--alias", "champion")
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector", "--alias", "challenger")
	c := client.New(srv.URL, client.WithToken(srv.Token))
	var wg sync.WaitGroup
	results := make([]*client.ApplyResult, 10)
	errs := make([]error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = c.Apply(t.Context(), []client.ApplyFile{{Name: "svc.yaml", Content: serviceYAML("default", 100-i, i)}}, client.ApplyOptions{})
		}()
	}
	wg.Wait()
	changes := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		if results[i].Results[0].Action != "unchanged" {
			changes++
		}
	}
	obj, err := c.GetResource(t.Context(), "InferenceService", "default", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	if g := obj.GetMeta().Generation; g != int64(changes) || changes != 10 {
		t.Fatalf("generation %d after %d changes", g, changes)
	}
	evs, err := c.Events(t.Context(), auditQuery("InferenceService", "fraud"))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != changes {
		t.Fatalf("%d events for %d changes", len(evs), changes)
	}
}

func auditQuery(kind, name string) audit.Query { return audit.Query{Kind: kind, Name: name} }

// TestApplyKeepsServicesAndHandSetAliases walks the review's sequences: a
// declaration that changes while the live state already matches is still
// recorded (so a later hand-set alias survives); a Model apply that would take
// a service's target away is refused; delete -f of a service and its model
// works, dry run included, and never deletes part of a refused request.
func TestApplyKeepsServicesAndHandSetAliases(t *testing.T) {
	dir, sha := sourceDir(t)
	srv := testutil.StartServer(t, func(c *config.Config) { c.SourceDir = dir })
	files := t.TempDir()
	model := writeFile(t, files, "model.yaml", modelYAML(dir, sha, ""))
	mustCLI(t, srv, "apply", "-f", model)

	mustCLI(t, srv, "models", "alias", "rm", "fraud-detector", "challenger")
	noChallenger := strings.Replace(modelYAML(dir, sha, ""), "aliases: {champion: 1, challenger: 2}", "aliases: {champion: 1}", 1)
	writeFile(t, files, "model.yaml", noChallenger)
	if out := mustCLI(t, srv, "apply", "-f", model); !strings.Contains(out, "configured") {
		t.Fatalf("a changed declaration over a matching live state: %q", out)
	}
	mustCLI(t, srv, "models", "alias", "set", "fraud-detector", "challenger", "2")
	if out := mustCLI(t, srv, "apply", "-f", model); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-apply: %q", out)
	}
	var m spec.Model
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "get", "model", "fraud-detector", "-o", "json")), &m); err != nil {
		t.Fatal(err)
	}
	if m.Spec.Aliases["challenger"] != 2 || m.Metadata.Generation != 2 {
		t.Fatalf("hand-set alias lost or generation wrong: %v, generation %d", m.Spec.Aliases, m.Metadata.Generation)
	}

	// A service targets the challenger: once the file declares it, a Model
	// that drops it again is refused.
	svc := writeFile(t, files, "svc.yaml", serviceYAML("default", 50, 50))
	mustCLI(t, srv, "apply", "-f", svc)
	writeFile(t, files, "model.yaml", modelYAML(dir, sha, ""))
	mustCLI(t, srv, "apply", "-f", model)
	writeFile(t, files, "model.yaml", noChallenger)
	_, errOut, code := runCLI(t, srv, "apply", "-f", model)
	if code != 1 || !strings.Contains(errOut, "model.yaml:12: spec.aliases: alias challenger is a target of inferenceservice fraud") {
		t.Fatalf("dropping a service's alias: exit %d\n%s", code, errOut)
	}

	// delete -f of the service and its model, as a dry run and for real.
	both := writeFile(t, files, "both.yaml", modelYAML(dir, sha, "")+"---\n"+serviceYAML("default", 50, 50))
	if out := mustCLI(t, srv, "delete", "--dry-run", "-f", both); strings.Count(out, "deleted") != 2 {
		t.Fatalf("delete --dry-run: %q", out)
	}
	// Another service on the model: the whole request is refused, nothing deleted.
	other := strings.Replace(serviceYAML("default", 100, 0), "name: fraud", "name: other", 1)
	mustCLI(t, srv, "apply", "-f", writeFile(t, files, "other.yaml", other))
	_, errOut, code = runCLI(t, srv, "delete", "-f", both)
	if code != 1 || !strings.Contains(errOut, "is a target of inferenceservice other") {
		t.Fatalf("delete with another user: exit %d\n%s", code, errOut)
	}
	if st, _, _ := do(t, "GET", srv.URL+"/api/v1/namespaces/default/resources/isvc/fraud", "", nil); st != 200 {
		t.Fatalf("a refused delete deleted the service: %d", st)
	}
	mustCLI(t, srv, "delete", "isvc", "other")
	if out := mustCLI(t, srv, "delete", "-f", both); strings.Count(out, "deleted") != 2 {
		t.Fatalf("delete -f: %q", out)
	}
	// The model's last-applied state went with it: a new push starts clean.
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v1"), "--name", "fraud-detector")
	if st, _, _ := do(t, "GET", srv.URL+"/api/v1/namespaces/default/resources/models/fraud-detector", "", nil); st != 200 {
		t.Fatalf("pushed model as a resource: %d", st)
	}
}
