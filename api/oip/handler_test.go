package oip

// These tests drive the handlers through a fake Backend defined here: they check
// routing, status codes and JSON shapes. End-to-end tests against the real serving
// runtime are written elsewhere (by the lead, in the system tests).

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// call is one Backend call as the fake saw it.
type call struct {
	method, ns, model, version string
	readyOnly                  bool
}

type fakeBackend struct {
	mu    sync.Mutex
	calls []call

	notFound bool // every model lookup fails with NotFound
	ready    bool
}

func (f *fakeBackend) record(c call) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	if f.notFound && c.model != "" {
		return errs.New(errs.NotFound, "model %q not found in namespace %q", c.model, c.ns)
	}
	return nil
}

func (f *fakeBackend) last() call {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return call{}
	}
	return f.calls[len(f.calls)-1]
}

// ResolveInputs knows every model (unless notFound) but not its inputs. It is
// not recorded: the tests' "backend was called" means Infer and the others.
func (f *fakeBackend) ResolveInputs(_ context.Context, ns, model, _ string) ([]tensor.TensorSpec, bool, error) {
	if f.notFound {
		return nil, false, errs.New(errs.NotFound, "model %q not found in namespace %q", model, ns)
	}
	return nil, false, nil
}

// Infer echoes the inputs as outputs, answering as version "7".
func (f *fakeBackend) Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error) {
	if err := f.record(call{"Infer", req.Namespace, req.Model, req.Version, false}); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &serving.InferResponse{ModelName: req.Model, ModelVersion: "7", ID: req.ID, Outputs: req.Inputs}, nil
}

func (f *fakeBackend) ModelMetadata(_ context.Context, ns, model, version string) (*serving.ModelMetadata, error) {
	if err := f.record(call{"ModelMetadata", ns, model, version, false}); err != nil {
		return nil, err
	}
	return &serving.ModelMetadata{
		Name: model, Versions: []string{"1", "2"}, Platform: "onnxruntime_onnx",
		Inputs: []tensor.TensorSpec{{Name: "x", DataType: tensor.FP32, Shape: []int64{-1, 4}}},
		Outputs: []tensor.TensorSpec{
			{Name: "label", DataType: tensor.Int64, Shape: []int64{-1}},
			{Name: "probs", Shape: []int64{-1}, Kind: "seq(map(int64,tensor(float)))"},
		},
	}, nil
}

func (f *fakeBackend) ModelReady(_ context.Context, ns, model, version string) (bool, error) {
	if err := f.record(call{"ModelReady", ns, model, version, false}); err != nil {
		return false, err
	}
	return f.ready, nil
}

func (f *fakeBackend) ServerReady(context.Context) bool {
	_ = f.record(call{method: "ServerReady"})
	return f.ready
}

func (f *fakeBackend) ServerMetadata() serving.ServerMetadata {
	return serving.ServerMetadata{Name: "nimbus", Version: "0.1.0", Extensions: []string{"binary_tensor_data", "statistics"}}
}

func (f *fakeBackend) RepositoryIndex(_ context.Context, ns string, readyOnly bool) ([]serving.RepositoryEntry, error) {
	_ = f.record(call{method: "RepositoryIndex", ns: ns, readyOnly: readyOnly})
	return []serving.RepositoryEntry{
		{Name: "a", Version: "1", State: serving.StateReady},
		{Name: "b", Version: "3", State: serving.StateUnavailable, Reason: "load failed"},
	}, nil
}

func (f *fakeBackend) LoadModel(_ context.Context, ns, model string) error {
	return f.record(call{method: "LoadModel", ns: ns, model: model})
}

func (f *fakeBackend) UnloadModel(_ context.Context, ns, model string) error {
	return f.record(call{method: "UnloadModel", ns: ns, model: model})
}

func (f *fakeBackend) Stats(_ context.Context, ns, model, version string) ([]serving.ModelStats, error) {
	if err := f.record(call{"Stats", ns, model, version, false}); err != nil {
		return nil, err
	}
	return []serving.ModelStats{{
		Name: "a", Version: "1", LastInference: time.UnixMilli(1700000000123),
		InferenceCount: 64, ExecutionCount: 2,
		Success: serving.Duration{Count: 2, Total: 3 * time.Millisecond},
		Fail:    serving.Duration{Count: 1, Total: 10},
		Queue:   serving.Duration{Count: 2, Total: 20},
	}}, nil
}

var _ Backend = (*fakeBackend)(nil)

const (
	inferBody    = `{"id":"q","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1.5,2]]}]}`
	inferRespOK  = `{"model_name":"m","model_version":"7","id":"q","outputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1.5,2]}]}`
	statsRespOK  = `{"model_stats":[{"name":"a","version":"1","last_inference":1700000000123,"inference_count":64,"execution_count":2,"inference_stats":{"success":{"count":2,"ns":3000000},"fail":{"count":1,"ns":10},"queue":{"count":2,"ns":20},"compute_input":{"count":0,"ns":0},"compute_infer":{"count":0,"ns":0},"compute_output":{"count":0,"ns":0}},"batch_stats":[]}]}`
	indexRespOK  = `[{"name":"a","version":"1","state":"READY","reason":""},{"name":"b","version":"3","state":"UNAVAILABLE","reason":"load failed"}]`
	metaRespOK   = `{"name":"m","versions":["1","2"],"platform":"onnxruntime_onnx","inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[{"name":"label","datatype":"INT64","shape":[-1]},{"name":"probs","datatype":"INVALID","shape":[-1],"kind":"seq(map(int64,tensor(float)))"}]}`
	serverRespOK = `{"name":"nimbus","version":"0.1.0","extensions":["binary_tensor_data","statistics"]}`
)

func TestRoutes(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		notFound   bool
		notReady   bool
		wantStatus int
		wantBody   string
		wantCall   call
	}{
		{"live", "GET", "/v2/health/live", "", false, false, 200, "", call{}},
		{"ready", "GET", "/v2/health/ready", "", false, false, 200, "", call{method: "ServerReady"}},
		{"not ready", "GET", "/v2/health/ready", "", false, true, 503, "", call{method: "ServerReady"}},
		{"server metadata", "GET", "/v2", "", false, false, 200, serverRespOK, call{}},
		{"server metadata slash", "GET", "/ns/team/v2/", "", false, false, 200, serverRespOK, call{}},
		{"model metadata", "GET", "/v2/models/m", "", false, false, 200, metaRespOK, call{"ModelMetadata", "default", "m", "", false}},
		{"model metadata version", "GET", "/ns/team/v2/models/m/versions/2", "", false, false, 200, metaRespOK, call{"ModelMetadata", "team", "m", "2", false}},
		{"model metadata unknown", "GET", "/v2/models/nope", "", true, false, 404, `{"error":"model \"nope\" not found in namespace \"default\""}`, call{"ModelMetadata", "default", "nope", "", false}},
		{"model ready", "GET", "/v2/models/m/ready", "", false, false, 200, "", call{"ModelReady", "default", "m", "", false}},
		{"model version ready", "GET", "/ns/team/v2/models/m/versions/3/ready", "", false, false, 200, "", call{"ModelReady", "team", "m", "3", false}},
		{"model not ready", "GET", "/v2/models/m/ready", "", false, true, 503, "", call{"ModelReady", "default", "m", "", false}},
		{"model ready unknown", "GET", "/v2/models/m/ready", "", true, false, 404, `{"error":"model \"m\" not found in namespace \"default\""}`, call{"ModelReady", "default", "m", "", false}},
		{"infer", "POST", "/v2/models/m/infer", inferBody, false, false, 200, inferRespOK, call{"Infer", "default", "m", "", false}},
		{"infer version ns", "POST", "/ns/team/v2/models/m/versions/champion/infer", inferBody, false, false, 200, inferRespOK, call{"Infer", "team", "m", "champion", false}},
		{"infer unknown", "POST", "/ns/team/v2/models/m/infer", inferBody, true, false, 404, `{"error":"model \"m\" not found in namespace \"team\""}`, call{}}, // refused before the body is read: Infer never runs
		{"infer bad json", "POST", "/v2/models/m/infer", `{"inputs":[}`, false, false, 400, `{"error":"invalid JSON at offset 11: unexpected '}', expected '{'"}`, call{}},
		{"infer bad datatype", "POST", "/v2/models/m/infer", string(inputJSON("FLOAT", "[1]", "[1]")), false, false, 400, `{"error":"input \"x\": unknown datatype \"FLOAT\""}`, call{}},
		{"infer wrong method", "GET", "/v2/models/m/infer", "", false, false, 405, "", call{}},
		{"repository index", "POST", "/v2/repository/index", "", false, false, 200, indexRespOK, call{method: "RepositoryIndex", ns: "default"}},
		{"repository index ready", "POST", "/ns/team/v2/repository/index", `{"ready":true}`, false, false, 200, indexRespOK, call{method: "RepositoryIndex", ns: "team", readyOnly: true}},
		{"repository index bad body", "POST", "/v2/repository/index", `{"ready":`, false, false, 400, `{"error":"invalid JSON at offset 9: unexpected end of JSON input"}`, call{}},
		{"load", "POST", "/ns/team/v2/repository/models/m/load", "", false, false, 200, "", call{method: "LoadModel", ns: "team", model: "m"}},
		{"load parameters", "POST", "/v2/repository/models/m/load", `{"parameters":{"config":"{}"}}`, false, false, 501, `{"error":"repository parameter \"config\" is not supported"}`, call{}},
		{"unload", "POST", "/v2/repository/models/m/unload", "{}", false, false, 200, "", call{method: "UnloadModel", ns: "default", model: "m"}},
		{"unload unknown", "POST", "/v2/repository/models/m/unload", "", true, false, 404, `{"error":"model \"m\" not found in namespace \"default\""}`, call{method: "UnloadModel", ns: "default", model: "m"}},
		{"stats all", "GET", "/v2/models/stats", "", false, false, 200, statsRespOK, call{"Stats", "default", "", "", false}},
		{"stats model", "GET", "/ns/team/v2/models/a/stats", "", false, false, 200, statsRespOK, call{"Stats", "team", "a", "", false}},
		{"stats version", "GET", "/v2/models/a/versions/1/stats", "", false, false, 200, statsRespOK, call{"Stats", "default", "a", "1", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := &fakeBackend{notFound: tt.notFound, ready: !tt.notReady}
			h := openHandler(fb, Options{})
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus != 405 && rec.Body.String() != tt.wantBody {
				t.Fatalf("body = %s\nwant   %s", rec.Body, tt.wantBody)
			}
			if got := fb.last(); got != tt.wantCall {
				t.Fatalf("backend call = %+v, want %+v", got, tt.wantCall)
			}
			if tt.wantBody != "" && rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("Content-Type = %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

func TestInferHeadersAndMetrics(t *testing.T) {
	m := telemetry.NewMetrics()
	h := openHandler(&fakeBackend{ready: true}, Options{Metrics: m})

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/ns/team/v2/models/m/infer", strings.NewReader(inferBody)))
	if rec.Code != 200 || rec.Header().Get(HeaderModelVersion) != "7" || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Header().Get(HeaderContentLength) != "" || rec.Header().Get("Content-Length") != strconv.Itoa(len(inferRespOK)) {
		t.Fatalf("status %d headers %v", rec.Code, rec.Header())
	}

	// Binary in, binary out.
	js := `{"parameters":{"binary_data_output":true},"inputs":[{"name":"x","shape":[2],"datatype":"INT16","parameters":{"binary_data_size":4}}]}`
	req := httptest.NewRequest("POST", "/v2/models/m/infer", bytes.NewReader(append([]byte(js), le16(1, 0xffff)...)))
	req.Header.Set(HeaderContentLength, strconv.Itoa(len(js)))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	wantJSON := `{"model_name":"m","model_version":"7","outputs":[{"name":"x","datatype":"INT16","shape":[2],"parameters":{"binary_data_size":4}}]}`
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/octet-stream" ||
		rec.Header().Get(HeaderContentLength) != strconv.Itoa(len(wantJSON)) || rec.Body.String() != wantJSON+string(le16(1, 0xffff)) {
		t.Fatalf("status %d headers %v body %q", rec.Code, rec.Header(), rec.Body)
	}

	// A bad header value.
	req = httptest.NewRequest("POST", "/v2/models/m/infer", strings.NewReader(inferBody))
	req.Header.Set(HeaderContentLength, "abc")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 400 || rec.Body.String() != `{"error":"invalid Inference-Header-Content-Length \"abc\""}` {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}

	counts := map[string]float64{}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "nimbus_requests_total" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			var key []string
			for _, l := range metric.GetLabel() {
				key = append(key, l.GetName()+"="+l.GetValue())
			}
			counts[strings.Join(key, ",")] = metric.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"code=200,model=m,namespace=team,protocol=rest,version=7":    1,
		"code=200,model=m,namespace=default,protocol=rest,version=7": 1,
		"code=400,model=,namespace=,protocol=rest,version=":          1, // unresolved: client-chosen names are dropped
	}
	if len(counts) != len(want) {
		t.Fatalf("requests_total = %v, want %v", counts, want)
	}
	for k, v := range want {
		if counts[k] != v {
			t.Fatalf("requests_total = %v, want %v", counts, want)
		}
	}
}

// zeros is an endless body; it lets a test send a huge request without memory.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestBodyLimit(t *testing.T) {
	tests := []struct {
		name    string
		max     int64
		length  int64 // Content-Length; -1 is chunked
		wantMsg string
	}{
		{"default limit by Content-Length", 0, 64<<20 + 1, `{"error":"request body exceeds the 64 MiB limit"}`},
		{"streamed body", 1 << 20, -1, `{"error":"request body exceeds the 1 MiB limit"}`},
		{"odd limit", 1000, -1, `{"error":"request body exceeds the 1000 bytes limit"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := &fakeBackend{}
			h := openHandler(fb, Options{MaxBodyBytes: tt.max})
			var body io.Reader = zeros{}
			if tt.length > 0 {
				body = io.LimitReader(zeros{}, tt.length)
			}
			req := httptest.NewRequest("POST", "/v2/models/m/infer", body)
			req.ContentLength = tt.length
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge || rec.Body.String() != tt.wantMsg {
				t.Fatalf("status %d body %s", rec.Code, rec.Body)
			}
			if c := fb.last(); c.method != "" {
				t.Fatalf("backend was called: %+v", c)
			}
		})
	}
}

func TestClientCanceled(t *testing.T) {
	h := openHandler(&fakeBackend{}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "POST", "/v2/models/m/infer", strings.NewReader(inferBody))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 499 || rec.Body.String() != `{"error":"request canceled"}` {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
}

// TestRealServer runs the handler behind a real listener, including a client that
// goes away mid-body.
func TestRealServer(t *testing.T) {
	srv := httptest.NewServer(openHandler(&fakeBackend{ready: true}, Options{}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v2/models/m/infer", "application/json", strings.NewReader(inferBody))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != inferRespOK {
		t.Fatalf("status %d body %s", resp.StatusCode, got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v2/models/m/infer", pr)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	_, _ = pw.Write([]byte(`{"inputs":[`))
	cancel()
	_ = pw.CloseWithError(context.Canceled)
	if err := <-done; err == nil {
		t.Fatal("canceled request succeeded")
	}
}

func TestInferHeaderContentLength(t *testing.T) {
	tests := []struct{ name, value, wantMsg string }{
		{"not a number", "12x", `{"error":"invalid Inference-Header-Content-Length \"12x\""}`},
		{"overflows int", "99999999999999999999", `{"error":"invalid Inference-Header-Content-Length \"99999999999999999999\""}`},
		{"negative", "-4", `{"error":"Inference-Header-Content-Length must not be negative, got -4"}`},
		{"past the body", strconv.Itoa(len(inferBody) + 1), `{"error":"Inference-Header-Content-Length ` + strconv.Itoa(len(inferBody)+1) + ` exceeds the body size ` + strconv.Itoa(len(inferBody)) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := &fakeBackend{}
			req := httptest.NewRequest("POST", "/v2/models/m/infer", strings.NewReader(inferBody))
			req.Header.Set(HeaderContentLength, tt.value)
			rec := httptest.NewRecorder()
			openHandler(fb, Options{}).ServeHTTP(rec, req)
			if rec.Code != http.StatusBadRequest || rec.Body.String() != tt.wantMsg {
				t.Fatalf("status %d body %s", rec.Code, rec.Body)
			}
			if c := fb.last(); c.method != "" {
				t.Fatalf("backend was called: %+v", c)
			}
		})
	}
}

// TestBodyShorterThanContentLength checks that a body that ends before its
// declared length is refused, and that the declared length alone does not make
// the handler allocate it.
func TestBodyShorterThanContentLength(t *testing.T) {
	fb := &fakeBackend{}
	h := openHandler(fb, Options{})
	req := httptest.NewRequest("POST", "/v2/models/m/infer", strings.NewReader(inferBody))
	req.ContentLength = DefaultMaxBodyBytes
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	runtime.ReadMemStats(&after)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
	if c := fb.last(); c.method != "" {
		t.Fatalf("backend was called: %+v", c)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
		t.Fatalf("allocated %d bytes for a %d-byte body", got, len(inferBody))
	}
}

// TestLargeBody reads a body past bodyPrealloc, so readN has to grow its buffer.
func TestLargeBody(t *testing.T) {
	data := make([]byte, 3*bodyPrealloc+5)
	for i := range data {
		data[i] = byte(i * 7)
	}
	js := `{"parameters":{"binary_data_output":true},"inputs":[{"name":"x","shape":[` + strconv.Itoa(len(data)) +
		`],"datatype":"UINT8","parameters":{"binary_data_size":` + strconv.Itoa(len(data)) + `}}]}`
	body := append([]byte(js), data...)
	req := httptest.NewRequest("POST", "/v2/models/m/infer", bytes.NewReader(body))
	req.Header.Set(HeaderContentLength, strconv.Itoa(len(js)))
	rec := httptest.NewRecorder()
	openHandler(&fakeBackend{}, Options{}).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d body %.200s", rec.Code, rec.Body)
	}
	if got := rec.Body.Bytes(); !bytes.HasSuffix(got, data) {
		t.Fatalf("response does not end with the %d input bytes (got %d bytes)", len(data), len(got))
	}
}
