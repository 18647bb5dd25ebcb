package e2e

import (
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// TestShadowTraffic: a shadow copy of every request goes to version 2; its
// answers are compared with the primary's and counted, never returned. A shadow
// that fails on every request (a model with another signature) changes no
// primary answer.
func TestShadowTraffic(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v1"), "--name", "fraud-detector", "--alias", "champion")
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector")
	mustCLI(t, srv, "models", "push", testutil.Model("mlp_medium"), "--name", "other")
	dir := t.TempDir()
	svc := writeFile(t, dir, "svc.yaml", `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud}
spec:
  traffic: [{model: fraud-detector@champion}]
  shadow: {model: fraud-detector@2}
`)
	mustCLI(t, srv, "apply", "-f", svc)
	for range 50 {
		if code, v, _, err := inferService(srv.URL+"/v2/models/fraud/infer", ""); err != nil || v != "1" {
			t.Fatalf("primary: %d %q %v", code, v, err)
		}
	}
	mismatch := `nimbus_shadow_comparisons_total{match="false",namespace="default",service="fraud",target="fraud-detector@2"}`
	testutil.Eventually(t, 30e9, func() bool { return metricValue(t, srv.URL, mismatch) == 50 }, "50 shadow comparisons never counted")
	if out := mustCLI(t, srv, "describe", "isvc", "fraud"); !strings.Contains(out, "fraud-detector@2") {
		t.Fatalf("describe:\n%s", out)
	}

	// Same version as shadow: every answer matches exactly.
	writeFile(t, dir, "svc.yaml", `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud}
spec:
  traffic: [{model: fraud-detector@champion}]
  shadow: {model: fraud-detector@1, percent: 50}
`)
	mustCLI(t, srv, "apply", "-f", svc)
	for range 20 {
		if _, _, _, err := inferService(srv.URL+"/v2/models/fraud/infer", ""); err != nil {
			t.Fatal(err)
		}
	}
	match := `nimbus_shadow_comparisons_total{match="true",namespace="default",service="fraud",target="fraud-detector@1"}`
	testutil.Eventually(t, 30e9, func() bool { return metricValue(t, srv.URL, match) == 10 }, "50% of 20 shadow copies never matched")
	if n := metricValue(t, srv.URL, strings.Replace(match, `match="true"`, `match="false"`, 1)); n > 0 {
		t.Fatalf("%v answers of the same version did not match", n)
	}

	// A shadow that fails every time: the primary answers all the same.
	writeFile(t, dir, "svc.yaml", `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: fraud}
spec:
  traffic: [{model: fraud-detector@champion}]
  shadow: {model: other}
`)
	mustCLI(t, srv, "apply", "-f", svc)
	for range 20 {
		if code, v, _, err := inferService(srv.URL+"/v2/models/fraud/infer", ""); err != nil || v != "1" {
			t.Fatalf("primary with a failing shadow: %d %q %v", code, v, err)
		}
	}
	failed := `nimbus_shadow_requests_total{namespace="default",result="error",service="fraud",target="other"}`
	testutil.Eventually(t, 30e9, func() bool { return metricValue(t, srv.URL, failed) == 20 }, "failed shadow copies never counted")
}
