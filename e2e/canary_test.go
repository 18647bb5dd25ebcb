package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
)

const fraudRequest = `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0.3,12,1,0]}]}`

func serviceYAML(ns string, champion, challenger int) string {
	return fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: InferenceService
metadata:
  name: fraud
  namespace: %s
spec:
  traffic:
    - model: fraud-detector@champion
      weight: %d
    - model: fraud-detector@challenger
      weight: %d
`, ns, champion, challenger)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	return writeFileB(t, dir, name, content)
}

func writeFileB(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// inferService sends one request to a service and returns the status, the
// answering version (model_version) and the Nimbus-Target header.
func inferService(url string, key string) (int, string, string, error) {
	req, err := http.NewRequest("POST", url, strings.NewReader(fraudRequest))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Nimbus-Routing-Key", key)
	}
	resp, err := testutil.Client.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	var body struct {
		ModelName    string `json:"model_name"`
		ModelVersion string `json:"model_version"`
		Error        string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, "", "", err
	}
	if resp.StatusCode != 200 {
		return resp.StatusCode, "", "", fmt.Errorf("%d: %s", resp.StatusCode, body.Error)
	}
	return resp.StatusCode, body.ModelVersion, resp.Header.Get("Nimbus-Target"), nil
}

// TestWalkthroughCanaryByHand walks story 3's first half from the CLI: push two
// versions, apply a service at 90/10, watch the split in metrics and status,
// shift to 50/50 and then 0/100 under continuous load with no failed request.
func TestWalkthroughCanaryByHand(t *testing.T) {
	srv := testutil.StartServer(t)
	dir := t.TempDir()
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v1"), "--name", "fraud-detector", "--alias", "champion")
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector", "--alias", "challenger")

	svc := writeFile(t, dir, "fraud.yaml", serviceYAML("default", 90, 10))
	if out := mustCLI(t, srv, "apply", "-f", svc); !strings.Contains(out, "inferenceservice.nimbus.dev/fraud created") {
		t.Fatalf("apply output: %q", out)
	}
	if out := mustCLI(t, srv, "apply", "-f", svc); !strings.Contains(out, "inferenceservice.nimbus.dev/fraud unchanged") {
		t.Fatalf("re-apply output: %q", out)
	}

	url := srv.URL + "/v2/models/fraud/infer"
	split := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			code, version, target, err := inferService(url, "")
			if err != nil || code != 200 {
				t.Fatalf("request: %d %v", code, err)
			}
			if target != "fraud-detector@"+version {
				t.Fatalf("Nimbus-Target %q for model_version %q", target, version)
			}
			got[version]++
		}
		return got
	}
	// Weighted split without a routing key is exact per 100 requests (the
	// issue's bar is ±2 points).
	if got := split(1000); got["1"] != 900 || got["2"] != 100 {
		t.Fatalf("90/10 split over 1000 requests: %v", got)
	}
	challenger := metricValue(t, srv.URL, `nimbus_service_requests_total{code="200",namespace="default",service="fraud",target="fraud-detector@challenger",version="2"}`)
	champion := metricValue(t, srv.URL, `nimbus_service_requests_total{code="200",namespace="default",service="fraud",target="fraud-detector@champion",version="1"}`)
	if champion != 900 || challenger != 100 {
		t.Fatalf("metrics: champion %v challenger %v", champion, challenger)
	}
	var isvc spec.InferenceService
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "get", "isvc", "fraud", "-o", "json")), &isvc); err != nil {
		t.Fatal(err)
	}
	if st := isvc.Status; st == nil || st.ObservedGeneration != 1 || len(st.Traffic) != 2 || st.Traffic[1].Requests != int64(challenger) ||
		st.Traffic[0].Version != 1 || st.Traffic[1].Version != 2 || !ready(st.Conditions) {
		t.Fatalf("status: %+v", isvc.Status)
	}
	if out := mustCLI(t, srv, "describe", "isvc", "fraud"); !strings.Contains(out, "fraud-detector@challenger") {
		t.Fatalf("describe:\n%s", out)
	}

	// Shift weights under continuous load: no request may fail.
	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if code, _, _, err := inferService(url, ""); err != nil || code != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v", code, err))
				}
			}
		}()
	}
	writeFile(t, dir, "fraud.yaml", serviceYAML("default", 50, 50))
	if out := mustCLI(t, srv, "apply", "-f", svc); !strings.Contains(out, "configured") {
		t.Fatalf("apply 50/50: %q", out)
	}
	before := sent.Load()
	testutil.Eventually(t, 30e9, func() bool { return sent.Load() > before+200 }, "load generator stalled")
	writeFile(t, dir, "fraud.yaml", serviceYAML("default", 0, 100))
	mustCLI(t, srv, "apply", "-f", svc)
	before = sent.Load()
	testutil.Eventually(t, 30e9, func() bool { return sent.Load() > before+200 }, "load generator stalled")
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during the weight shifts; first: %v", n, sent.Load(), firstErr.Load())
	}
	if got := split(200); got["2"] != 200 {
		t.Fatalf("0/100 split: %v", got)
	}

	// The audit log holds the three service changes, with diffs, in order.
	var evs []audit.Event
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "events", "--kind", "isvc", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].Action != "create" || evs[1].Action != "update" || evs[2].Action != "update" ||
		evs[2].Generation != 3 || evs[2].Source != "cli" || !strings.HasPrefix(evs[2].Actor, "bootstrap-admin (token/") ||
		!strings.Contains(evs[2].Diff, "-      weight: 50") || !strings.Contains(evs[2].Diff, "+      weight: 100") {
		t.Fatalf("events: %+v", evs)
	}

	// Imperative deletes may not take a target away from the live service.
	for _, args := range [][]string{
		{"models", "alias", "rm", "fraud-detector", "challenger"},
		{"models", "delete", "fraud-detector@2", "--force"}, // its alias challenger would go too
		{"models", "delete", "fraud-detector", "--force"},
	} {
		if _, errOut, code := runCLI(t, srv, args...); code != 1 || !strings.Contains(errOut, "inferenceservice fraud (fraud-detector@") {
			t.Errorf("nimbus %s: exit %d %s", strings.Join(args, " "), code, errOut)
		}
	}
	if got := split(10); got["2"] != 10 {
		t.Fatalf("after refused deletes: %v", got)
	}
}

func ready(cs []spec.Condition) bool {
	for _, c := range cs {
		if c.Type == spec.ConditionReady {
			return c.Status == spec.ConditionTrue
		}
	}
	return false
}

// TestStickyRoutingAndNamespaces: a routing key keeps a caller on one target;
// payments/fraud and risk/fraud are different services.
func TestStickyRoutingAndNamespaces(t *testing.T) {
	srv := testutil.StartServer(t)
	for _, ns := range []string{"payments", "risk"} {
		mustCLI(t, srv, "-n", ns, "models", "push", testutil.Model("fraud_v1"), "--name", "fraud-detector", "--alias", "champion")
		mustCLI(t, srv, "-n", ns, "models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector", "--alias", "challenger")
	}
	dir := t.TempDir()
	writeFile(t, dir, "payments.yaml", serviceYAML("payments", 50, 50))
	writeFile(t, dir, "risk.yaml", serviceYAML("risk", 0, 100))
	out := mustCLI(t, srv, "apply", "-f", dir)
	if strings.Count(out, "created") != 2 {
		t.Fatalf("apply dir: %q", out)
	}
	seen := map[string]string{}
	for i := range 200 {
		key := fmt.Sprintf("customer-%d", i%20)
		_, v, _, err := inferService(srv.URL+"/ns/payments/v2/models/fraud/infer", key)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := seen[key]; ok && prev != v {
			t.Fatalf("key %s moved from version %s to %s", key, prev, v)
		}
		seen[key] = v
	}
	versions := map[string]bool{}
	for _, v := range seen {
		versions[v] = true
	}
	if len(versions) != 2 {
		t.Fatalf("20 keys at 50/50 all went to one version: %v", seen)
	}
	for range 20 {
		if _, v, _, err := inferService(srv.URL+"/ns/risk/v2/models/fraud/infer", ""); err != nil || v != "2" {
			t.Fatalf("risk/fraud answered by version %q: %v", v, err)
		}
	}
	if code, _, _, _ := inferService(srv.URL+"/v2/models/fraud/infer", ""); code != 404 {
		t.Fatalf("default/fraud does not exist, got %d", code)
	}
	// A model version stays reachable under the service's name space.
	code, body := postJSON(t, srv.URL+"/ns/payments/v2/models/fraud-detector/versions/1/infer", fraudRequest)
	if code != 200 {
		t.Fatalf("model version: %d %s", code, body)
	}

	// A model named like a service: the service wins on /v2/models/fraud, the
	// model stays reachable by version.
	mustCLI(t, srv, "-n", "risk", "models", "push", testutil.Model("fraud_v1"), "--name", "fraud")
	if _, _, target, err := inferService(srv.URL+"/ns/risk/v2/models/fraud/infer", ""); err != nil || target != "fraud-detector@2" {
		t.Fatalf("service vs model of the same name: target %q, %v", target, err)
	}
	if _, v, target, err := inferService(srv.URL+"/ns/risk/v2/models/fraud/versions/1/infer", ""); err != nil || v != "1" || target != "" {
		t.Fatalf("the model by version: version %q target %q, %v", v, target, err)
	}
}
