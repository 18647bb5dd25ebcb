package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/registry"
)

// TestWalkthroughFiveMinutes walks story 1 of WALKTHROUGHS.md: push, get, predict
// with the CLI, then call the same model as a plain OIP client and read /metrics.
func TestWalkthroughFiveMinutes(t *testing.T) {
	srv := testutil.StartServer(t)
	modelFile := testutil.Model("mlp")

	out := mustCLI(t, srv, "models", "push", modelFile, "--name", "churn", "--alias", "champion")
	if !strings.Contains(out, "churn") || !strings.Contains(out, "champion") {
		t.Fatalf("push output lacks model or alias:\n%s", out)
	}

	var details struct {
		Model    registry.Model     `json:"model"`
		Versions []registry.Version `json:"versions"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "models", "get", "churn", "-o", "json")), &details); err != nil {
		t.Fatal(err)
	}
	sum, size, err := client.FileSHA256(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(details.Versions) != 1 {
		t.Fatalf("versions: %+v", details.Versions)
	}
	v := details.Versions[0]
	if v.Version != 1 || v.SHA256 != sum || v.Size != size || details.Model.Aliases["champion"] != 1 {
		t.Fatalf("unexpected version %+v / aliases %v (want sha %s size %d)", v, details.Model.Aliases, sum, size)
	}
	if got := fmt.Sprintf("%s %s %v", v.Signature.Inputs[0].Name, v.Signature.Inputs[0].DataType, v.Signature.Inputs[0].Shape); got != "x FP32 [-1 4]" {
		t.Errorf("signature input = %s", got)
	}
	table := mustCLI(t, srv, "models", "get", "churn")
	if !strings.Contains(table, "FP32") || !strings.Contains(table, "[-1,4]") {
		t.Errorf("models get table lacks the signature:\n%s", table)
	}

	want := rawRun(t, "mlp", f32Tensor("x", []int64{1, 4}, 0.3, 12, 1, 0))
	var pred oipResponse
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "predict", "churn", "--data", `{"x": [[0.3, 12, 1, 0]]}`, "-o", "json")), &pred); err != nil {
		t.Fatal(err)
	}
	if got := floatsOf(t, pred.output(t, "y").Data); !equalFloats(got, f32s(want["y"].Data)) {
		t.Errorf("CLI predict y = %v, raw runtime = %v", got, f32s(want["y"].Data))
	}

	// Any OIP client: a plain JSON POST.
	st, body := postJSON(t, srv.URL+"/v2/models/churn/infer",
		`{"id":"r1","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0.3,12,1,0]}]}`)
	if st != 200 {
		t.Fatalf("infer: %d %s", st, body)
	}
	var resp oipResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.ModelName != "churn" || resp.ModelVersion != "1" || resp.ID != "r1" {
		t.Errorf("response header fields: %+v", resp)
	}
	if got := floatsOf(t, resp.output(t, "y").Data); !equalFloats(got, f32s(want["y"].Data)) {
		t.Errorf("REST y = %v, raw runtime = %v", got, f32s(want["y"].Data))
	}

	// A clear error for a wrong shape, naming what the model expects.
	st, body = postJSON(t, srv.URL+"/v2/models/churn/infer",
		`{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[0.3,12,1]}]}`)
	if st != 400 || !strings.Contains(string(body), "input x expects shape [-1,4] FP32, got [1,3] FP32") {
		t.Errorf("wrong shape: %d %s", st, body)
	}
	_, errOut, code := runCLI(t, srv, "predict", "churn", "--data", `{"x": [[1, 2, 3]]}`)
	if code != 1 || !strings.Contains(errOut, "expects shape [-1,4] FP32") {
		t.Errorf("CLI wrong shape: exit %d, stderr %q", code, errOut)
	}

	// Metrics are ready for Prometheus.
	resp2, err := testutil.Client.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	for _, want := range []string{
		`nimbus_requests_total{code="200",model="churn",namespace="default",protocol="rest",version="1"}`,
		`nimbus_request_duration_seconds_bucket{model="churn",namespace="default",protocol="rest",version="1"`,
		`nimbus_model_load_duration_seconds_count{namespace="default"} 1`,
		`nimbus_models_loaded 1`,
		`nimbus_cold_starts_total{namespace="default"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestRestartKeepsServing: the data dir holds everything; a new process serves the
// same models without re-pushing.
func TestRestartKeepsServing(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m", "--alias", "champion")
	dir := srv.DataDir
	srv.Stop()
	srv2 := testutil.StartServer(t, func(c *config.Config) { c.DataDir = dir })
	st, body := postJSON(t, srv2.URL+"/v2/models/m/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`)
	if st != 200 {
		t.Fatalf("after restart: %d %s", st, body)
	}
	if _, err := os.Stat(dir + "/nimbus.db"); err != nil {
		t.Fatal(err)
	}
}
