package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
)

// TestApplyRules walks the rules of docs/RESOURCES.md the other tests leave
// out: version numbers are never reused; a new Model declares a version; labels
// merge three ways; imperative changes keep resourceVersion; an answer whose
// every error is a missing reference is 404; a bearer token is the actor; a
// target whose version fails to load makes the service Degraded.
func TestApplyRules(t *testing.T) {
	dir, sha := sourceDir(t)
	srv := testutil.StartServer(t, func(c *config.Config) { c.SourceDir = dir })
	files := t.TempDir()
	model := writeFile(t, files, "model.yaml", modelYAML(dir, sha, ""))
	mustCLI(t, srv, "apply", "-f", model)

	getModel := func() spec.Model {
		t.Helper()
		var m spec.Model
		if err := json.Unmarshal([]byte(mustCLI(t, srv, "get", "model", "fraud-detector", "-o", "json")), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	// Imperative changes show in the live spec, not in resourceVersion.
	rv := getModel().Metadata.ResourceVersion
	mustCLI(t, srv, "models", "alias", "set", "fraud-detector", "stable", "1")
	if m := getModel(); m.Metadata.ResourceVersion != rv || m.Spec.Aliases["stable"] != 1 {
		t.Fatalf("after alias set: resourceVersion %s (was %s), aliases %v", m.Metadata.ResourceVersion, rv, m.Spec.Aliases)
	}

	// Labels: a hand-set label stays, one the file drops goes.
	st, _, body := do(t, "PATCH", srv.URL+"/api/v1/namespaces/default/models/fraud-detector", "application/json",
		[]byte(`{"labels": {"team": "payments", "owner": "ana"}}`))
	if st != 200 {
		t.Fatalf("patch labels: %d %s", st, body)
	}
	writeFile(t, files, "model.yaml", strings.Replace(modelYAML(dir, sha, ""), "labels: {team: payments}", "labels: {tier: gold}", 1))
	mustCLI(t, srv, "apply", "-f", model)
	if l := getModel().Metadata.Labels; len(l) != 2 || l["owner"] != "ana" || l["tier"] != "gold" {
		t.Fatalf("labels after dropping team: %v", l)
	}

	// A deleted version's number is not declared again.
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector") // version 3
	mustCLI(t, srv, "models", "delete", "fraud-detector@3")
	v3 := strings.Replace(modelYAML(dir, sha, ""), "  aliases:", fmt.Sprintf("    - version: 3\n      source: {uri: \"file://%s/fraud_v2.onnx\", sha256: %s}\n  aliases:", dir, sha["fraud_v2"]), 1)
	writeFile(t, files, "model.yaml", v3)
	_, errOut, code := runCLI(t, srv, "apply", "-f", model)
	if code != 1 || !strings.Contains(errOut, "spec.versions[2].version: version 3 of model fraud-detector was deleted or skipped; numbers are never reused: declare a number above 3") {
		t.Fatalf("reusing a deleted number: exit %d\n%s", code, errOut)
	}

	// A Model that does not exist declares a version.
	st, _, body = do(t, "POST", srv.URL+"/api/v1/apply", "application/yaml",
		[]byte("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: empty}\nspec: {aliases: {}}\n"))
	if st != 400 || !strings.Contains(string(body), "model empty does not exist yet, so declare at least one version") {
		t.Fatalf("a new model without versions: %d %s", st, body)
	}

	// Every error a missing reference: 404; the bearer token is the actor.
	svc := `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud}
spec:
  traffic: [{model: %s}]
`
	st, _, body = do(t, "POST", srv.URL+"/api/v1/apply", "application/yaml", []byte(fmt.Sprintf(svc, "nosuchmodel")))
	if st != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Fatalf("a missing target: %d %s", st, body)
	}
	// The audit log names the token that made the change, never its secret.
	var ci auth.CreatedView
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "tokens", "create", "--role", "deployer", "--scope", "default",
		"--name", "ci", "-o", "json")), &ci); err != nil {
		t.Fatal(err)
	}
	st, _, body = do(t, "POST", srv.URL+"/api/v1/apply", "application/yaml", []byte(fmt.Sprintf(svc, "fraud-detector@2")),
		"Authorization", "Bearer "+ci.Secret)
	if st != 200 {
		t.Fatalf("apply with a token: %d %s", st, body)
	}
	var evs []audit.Event
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "events", "--kind", "isvc", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Actor != "ci (token/"+ci.ID+")" || strings.Contains(evs[0].Actor, ci.Secret) || evs[0].Source != "api" {
		t.Fatalf("token actor: %+v", evs)
	}

	// Version 2's artifact is damaged on disk: its load fails, the service is Degraded.
	blob := fmt.Sprintf("%s/blobs/sha256/%s/%s", srv.DataDir, sha["fraud_v2"][:2], sha["fraud_v2"])
	if err := os.WriteFile(blob, []byte("not the model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, _, _ := inferService(srv.URL+"/v2/models/fraud/infer", ""); code != 503 {
		t.Fatalf("a corrupt artifact answered %d", code)
	}
	var isvc spec.InferenceService
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "get", "isvc", "fraud", "-o", "json")), &isvc); err != nil {
		t.Fatal(err)
	}
	var degraded spec.Condition
	for _, c := range isvc.Status.Conditions {
		if c.Type == spec.ConditionDegraded {
			degraded = c
		}
	}
	if degraded.Status != spec.ConditionTrue || degraded.Reason != "LoadFailed" || !strings.Contains(degraded.Message, "fraud-detector@2 (version 2)") ||
		isvc.Status.Traffic[0].State != "failed" {
		t.Fatalf("status with a failed target: %+v", isvc.Status)
	}
}
