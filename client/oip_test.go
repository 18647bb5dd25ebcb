package client_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nimbus-ai/nimbus/client"
)

func TestOIP(t *testing.T) {
	var gotPath string
	var gotBody client.InferRequest
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	meta := func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		_, _ = io.WriteString(w, `{"name":"churn","versions":["1"],"platform":"onnxruntime_onnx","inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[]}`)
	}
	mux.HandleFunc("GET /ns/{ns}/v2/models/{m}/versions/{v}/ready", func(_ http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
	})
	mux.HandleFunc("GET /v2/models/{m}", meta)
	mux.HandleFunc("GET /ns/{ns}/v2/models/{m}/versions/{v}", meta)
	mux.HandleFunc("POST /v2/models/{m}/versions/{v}/infer", func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		_ = json.NewDecoder(r.Body).Decode(&gotBody)
		_, _ = io.WriteString(w, `{"model_name":"churn","model_version":"2","outputs":[{"name":"y","datatype":"INT64","shape":[1],"data":[1]}]}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	c := client.New(srv.URL)

	if live, err := c.ServerLive(ctx); err != nil || !live {
		t.Errorf("ServerLive = %v, %v", live, err)
	}
	if ready, err := c.ServerReady(ctx); err != nil || ready {
		t.Errorf("ServerReady = %v, %v", ready, err)
	}
	if ready, err := c.ModelReady(ctx, "payments", "churn", "2"); err != nil || !ready || gotPath != "/ns/payments/v2/models/churn/versions/2/ready" {
		t.Errorf("ModelReady = %v, %v (path %q)", ready, err, gotPath)
	}
	if ready, err := c.ModelReady(ctx, "default", "churn", ""); err != nil || ready { // no such route: 404
		t.Errorf("ModelReady on a 404 = %v, %v", ready, err)
	}
	tests := []struct {
		ns, version, path string
	}{
		{"default", "", "/v2/models/churn"},
		{"", "", "/v2/models/churn"},
		{"payments", "champion", "/ns/payments/v2/models/churn/versions/champion"},
	}
	for _, tt := range tests {
		md, err := c.ModelMetadata(ctx, tt.ns, "churn", tt.version)
		if err != nil || gotPath != tt.path {
			t.Fatalf("ModelMetadata(%q, %q): path %q, %v", tt.ns, tt.version, gotPath, err)
		}
		if in, ok := md.Input("x"); !ok || in.Datatype != "FP32" {
			t.Errorf("input x = %+v", in)
		}
	}
	resp, err := c.Infer(ctx, "default", "churn", "2", &client.InferRequest{Inputs: []client.InferTensor{
		{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Data: json.RawMessage(`[0.3,12,1,0]`)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ModelVersion != "2" || len(resp.Outputs) != 1 || string(resp.Outputs[0].Data) != "[1]" || len(resp.Raw) == 0 {
		t.Errorf("response = %+v", resp)
	}
	if gotPath != "/v2/models/churn/versions/2/infer" || gotBody.Inputs[0].Name != "x" {
		t.Errorf("request %s %+v", gotPath, gotBody)
	}
}
