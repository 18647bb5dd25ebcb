package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/tensor"
)

func TestOIPHealthAndMetadata(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "mlp")
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "mlp", "--alias", "champion")
	for _, path := range []string{"/v2/health/live", "/v2/health/ready", "/v2/models/mlp/ready", "/v2/models/mlp/versions/1/ready"} {
		if st, _, b := do(t, "GET", srv.URL+path, "", nil); st != 200 {
			t.Errorf("GET %s = %d %s", path, st, b)
		}
	}
	if st, _, _ := do(t, "GET", srv.URL+"/v2/models/nope/ready", "", nil); st != 404 {
		t.Errorf("unknown model ready = %d, want 404", st)
	}
	var server struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}
	if st := getJSON(t, srv.URL+"/v2", &server); st != 200 || server.Name != "nimbus" || len(server.Extensions) == 0 {
		t.Errorf("server metadata: %d %+v", st, server)
	}
	var md struct {
		Name     string   `json:"name"`
		Versions []string `json:"versions"`
		Platform string   `json:"platform"`
		Inputs   []struct {
			Name     string  `json:"name"`
			Datatype string  `json:"datatype"`
			Shape    []int64 `json:"shape"`
		} `json:"inputs"`
	}
	if st := getJSON(t, srv.URL+"/v2/models/mlp", &md); st != 200 {
		t.Fatalf("model metadata: %d", st)
	}
	if md.Name != "mlp" || fmt.Sprint(md.Versions) != "[1 2]" || md.Platform != "onnxruntime_onnx" ||
		md.Inputs[0].Name != "x" || md.Inputs[0].Datatype != "FP32" || fmt.Sprint(md.Inputs[0].Shape) != "[-1 4]" {
		t.Errorf("model metadata: %+v", md)
	}
	// No version: the champion alias answers (here version 2).
	st, body := postJSON(t, srv.URL+"/v2/models/mlp/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`)
	var r oipResponse
	json.Unmarshal(body, &r)
	if st != 200 || r.ModelVersion != "2" {
		t.Errorf("champion infer: %d %s", st, body)
	}
	st, body = postJSON(t, srv.URL+"/v2/models/mlp/versions/1/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`)
	json.Unmarshal(body, &r)
	if st != 200 || r.ModelVersion != "1" {
		t.Errorf("version 1 infer: %d %s", st, body)
	}
}

// TestEveryDatatypeRoundTrips sends every OIP datatype through an Identity model,
// as nested JSON, and checks exact values (INT64/UINT64 beyond 2^53, NaN, ±Inf).
func TestEveryDatatypeRoundTrips(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("dtypes"), "--name", "dtypes")
	cases := []struct {
		dt, suffix, data, want string
	}{
		{"BOOL", "bool", `[[true,false],[false,true]]`, `[true,false,false,true]`},
		{"UINT8", "uint8", `[[0,255],[1,2]]`, `[0,255,1,2]`},
		{"UINT16", "uint16", `[[0,65535],[1,2]]`, `[0,65535,1,2]`},
		{"UINT32", "uint32", `[[0,4294967295],[1,2]]`, `[0,4294967295,1,2]`},
		{"UINT64", "uint64", `[[0,18446744073709551615],[9007199254740993,2]]`, `[0,18446744073709551615,9007199254740993,2]`},
		{"INT8", "int8", `[[-128,127],[1,2]]`, `[-128,127,1,2]`},
		{"INT16", "int16", `[[-32768,32767],[1,2]]`, `[-32768,32767,1,2]`},
		{"INT32", "int32", `[[-2147483648,2147483647],[1,2]]`, `[-2147483648,2147483647,1,2]`},
		{"INT64", "int64", `[[-9223372036854775808,9223372036854775807],[9007199254740993,2]]`, `[-9223372036854775808,9223372036854775807,9007199254740993,2]`},
		{"FP16", "fp16", `[[1.5,-2],[0.25,65504]]`, `[1.5,-2,0.25,65504]`},
		{"BF16", "bf16", `[[1.5,-2],[0.25,256]]`, `[1.5,-2,0.25,256]`},
		{"FP32", "fp32", `[["NaN","Infinity"],["-Infinity",0.5]]`, `["NaN","Infinity","-Infinity",0.5]`},
		{"FP64", "fp64", `[[1e-300,-2.5],[3.141592653589793,"NaN"]]`, `[1e-300,-2.5,3.141592653589793,"NaN"]`},
		{"BYTES", "string", `[["héllo",""],["a b","z"]]`, `["héllo","","a b","z"]`},
	}
	var inputs []string
	for _, c := range cases {
		inputs = append(inputs, fmt.Sprintf(`{"name":"in_%s","shape":[2,2],"datatype":%q,"data":%s}`, c.suffix, c.dt, c.data))
	}
	st, body := postJSON(t, srv.URL+"/v2/models/dtypes/infer", `{"inputs":[`+strings.Join(inputs, ",")+`]}`)
	if st != 200 {
		t.Fatalf("%d %s", st, body)
	}
	var r oipResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.dt, func(t *testing.T) {
			o := r.output(t, "out_"+c.suffix)
			if o.Datatype != c.dt || fmt.Sprint(o.Shape) != "[2 2]" {
				t.Errorf("output %s %v", o.Datatype, o.Shape)
			}
			if got := compact(o.Data); got != c.want {
				t.Errorf("data = %s, want %s", got, c.want)
			}
		})
	}
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	json.Compact(&b, raw)
	return b.String()
}

// TestBinaryTensorExtension sends int64 and bool inputs as binary data and asks for
// binary outputs, as Triton's clients do, and compares with the raw runtime.
func TestBinaryTensorExtension(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("multi_io"), "--name", "multi")
	a := []float32{1, 2, 3, 4, 5, 6}
	bvals := []int64{10, -20, 1 << 40, 0, 1, 2}
	mask := []byte{1, 0, 1, 0, 1, 1}
	var bin bytes.Buffer
	binary.Write(&bin, binary.LittleEndian, bvals)
	bin.Write(mask)
	header := fmt.Sprintf(`{"inputs":[` +
		`{"name":"a","shape":[2,3],"datatype":"FP32","data":[1,2,3,4,5,6]},` +
		`{"name":"b","shape":[2,3],"datatype":"INT64","parameters":{"binary_data_size":48}},` +
		`{"name":"mask","shape":[2,3],"datatype":"BOOL","parameters":{"binary_data_size":6}}],` +
		`"outputs":[{"name":"sum","parameters":{"binary_data":true}},{"name":"count"}]}`)
	body := append([]byte(header), bin.Bytes()...)
	st, hdr, resp := do(t, "POST", srv.URL+"/v2/models/multi/infer", "application/octet-stream", body,
		"Inference-Header-Content-Length", strconv.Itoa(len(header)))
	if st != 200 {
		t.Fatalf("%d %s", st, resp)
	}
	hlen, err := strconv.Atoi(hdr.Get("Inference-Header-Content-Length"))
	if err != nil || hlen <= 0 || hlen > len(resp) {
		t.Fatalf("response header length %q", hdr.Get("Inference-Header-Content-Length"))
	}
	var r struct {
		Outputs []struct {
			Name       string          `json:"name"`
			Parameters map[string]any  `json:"parameters"`
			Data       json.RawMessage `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(resp[:hlen], &r); err != nil {
		t.Fatal(err)
	}
	bTensor := &tensor.Tensor{Name: "b", DataType: tensor.Int64, Shape: []int64{2, 3}, Data: bin.Bytes()[:48]}
	want := rawRun(t, "multi_io", f32Tensor("a", []int64{2, 3}, a...), bTensor,
		&tensor.Tensor{Name: "mask", DataType: tensor.Bool, Shape: []int64{2, 3}, Data: mask})
	if r.Outputs[0].Name != "sum" || r.Outputs[0].Parameters["binary_data_size"] != float64(24) {
		t.Fatalf("sum output: %+v", r.Outputs[0])
	}
	if !bytes.Equal(resp[hlen:], want["sum"].Data) {
		t.Errorf("binary sum = %v, raw = %v", f32s(resp[hlen:]), f32s(want["sum"].Data))
	}
	if got := compact(r.Outputs[1].Data); got != "[2,2]" {
		t.Errorf("count = %s", got)
	}
	// Sizes that do not add up are refused precisely.
	st, _, resp = do(t, "POST", srv.URL+"/v2/models/multi/infer", "application/octet-stream", body[:len(body)-3],
		"Inference-Header-Content-Length", strconv.Itoa(len(header)))
	if st != 400 || !strings.Contains(string(resp), "binary") {
		t.Errorf("short binary body: %d %s", st, resp)
	}
}

func TestRepositoryAndStatistics(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "mlp")
	infer := `{"inputs":[{"name":"x","shape":[3,4],"datatype":"FP32","data":[1,2,3,4,1,2,3,4,1,2,3,4]}]}`
	for range 2 {
		if st, b := postJSON(t, srv.URL+"/v2/models/mlp/infer", infer); st != 200 {
			t.Fatalf("%d %s", st, b)
		}
	}
	var stats struct {
		ModelStats []struct {
			Name           string `json:"name"`
			Version        string `json:"version"`
			InferenceCount int64  `json:"inference_count"`
			ExecutionCount int64  `json:"execution_count"`
			InferenceStats struct {
				Success struct {
					Count int64 `json:"count"`
					Ns    int64 `json:"ns"`
				} `json:"success"`
			} `json:"inference_stats"`
		} `json:"model_stats"`
	}
	if st := getJSON(t, srv.URL+"/v2/models/mlp/stats", &stats); st != 200 || len(stats.ModelStats) != 1 {
		t.Fatalf("stats: %d %+v", st, stats)
	}
	s := stats.ModelStats[0]
	if s.Name != "mlp" || s.Version != "1" || s.InferenceCount != 6 || s.ExecutionCount != 2 || s.InferenceStats.Success.Count != 2 || s.InferenceStats.Success.Ns <= 0 {
		t.Errorf("stats: %+v", s)
	}

	st, body := postJSON(t, srv.URL+"/v2/repository/models/mlp/unload", ``)
	if st != 200 {
		t.Fatalf("unload: %d %s", st, body)
	}
	if st, b := postJSON(t, srv.URL+"/v2/models/mlp/infer", infer); st != 503 || !strings.Contains(string(b), "unloaded") {
		t.Errorf("infer after unload: %d %s", st, b)
	}
	st, body = postJSON(t, srv.URL+"/v2/repository/index", `{}`)
	var idx []struct{ Name, Version, State, Reason string }
	json.Unmarshal(body, &idx)
	if st != 200 || len(idx) != 1 || idx[0].State != "UNAVAILABLE" {
		t.Errorf("index after unload: %d %s", st, body)
	}
	if st, b := postJSON(t, srv.URL+"/v2/repository/models/mlp/load", ``); st != 200 {
		t.Fatalf("load: %d %s", st, b)
	}
	st, body = postJSON(t, srv.URL+"/v2/repository/index", `{"ready": true}`)
	json.Unmarshal(body, &idx)
	if st != 200 || len(idx) != 1 || idx[0].State != "READY" {
		t.Errorf("index after load: %d %s", st, body)
	}
	if st, b := postJSON(t, srv.URL+"/v2/models/mlp/infer", infer); st != 200 {
		t.Errorf("infer after load: %d %s", st, b)
	}
}

func TestNamespacesOnTheOIPPath(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "-n", "payments", "models", "push", testutil.Model("mlp"), "--name", "fraud")
	mustCLI(t, srv, "-n", "risk", "models", "push", testutil.Model("mlp_medium"), "--name", "fraud")
	infer4 := `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`
	if st, b := postJSON(t, srv.URL+"/ns/payments/v2/models/fraud/infer", infer4); st != 200 {
		t.Errorf("payments/fraud: %d %s", st, b)
	}
	if st, b := postJSON(t, srv.URL+"/ns/risk/v2/models/fraud/infer", infer4); st != 400 || !strings.Contains(string(b), "[-1,64]") {
		t.Errorf("risk/fraud is a different model and must refuse 4 features: %d %s", st, b)
	}
	if st, _ := postJSON(t, srv.URL+"/v2/models/fraud/infer", infer4); st != 404 {
		t.Errorf("default namespace must not see payments/fraud: %d", st)
	}
	out := mustCLI(t, srv, "-n", "payments", "predict", "fraud", "--data", `{"x": [[1,2,3,4]]}`)
	if !strings.Contains(out, "y") {
		t.Errorf("CLI predict in namespace: %s", out)
	}
}

func TestBadInputAnswers(t *testing.T) {
	srv := testutil.StartServer(t, func(c *config.Config) { c.MaxBodyBytes = 64 << 10 })
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "mlp")
	url := srv.URL + "/v2/models/mlp/infer"
	big := `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[` + strings.Repeat("1,", 40000) + `1]}]}`
	cases := []struct {
		name, url, body string
		status          int
		msg             string
	}{
		{"malformed JSON", url, `{"inputs":[`, 400, "invalid JSON"},
		{"wrong tensor name", url, `{"inputs":[{"name":"q","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, 400, `unknown input "q"`},
		{"element count", url, `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3]}]}`, 400, "x"},
		{"wrong datatype", url, `{"inputs":[{"name":"x","shape":[1,4],"datatype":"INT32","data":[1,2,3,4]}]}`, 400, "expects shape [-1,4] FP32, got [1,4] INT32"},
		{"unknown datatype", url, `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FLOAT","data":[1,2,3,4]}]}`, 400, "FLOAT"},
		{"unknown model", srv.URL + "/v2/models/nope/infer", `{"inputs":[]}`, 404, "nope"},
		{"unknown version", srv.URL + "/v2/models/mlp/versions/7/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`, 404, "7"},
		{"body over limit", url, big, 413, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, body := postJSON(t, c.url, c.body)
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body is not OIP JSON: %s", body)
			}
			if st != c.status || !strings.Contains(e.Error, c.msg) {
				t.Errorf("got %d %q, want %d containing %q", st, e.Error, c.status, c.msg)
			}
		})
	}
	// The server is still healthy after all of that.
	if st, b := postJSON(t, url, `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`); st != 200 {
		t.Fatalf("healthy request after bad ones: %d %s", st, b)
	}
}
