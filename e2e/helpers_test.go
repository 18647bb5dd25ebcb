// Package e2e drives a real Nimbus server (in-process, random ports, real SQLite,
// real ONNX Runtime) through REST, gRPC and the CLI, as users and OIP clients do.
package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/cli"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/tensor"
)

// runCLI runs the nimbus command tree in-process against srv.
func runCLI(t testing.TB, srv *testutil.Server, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLIB(srv, args...)
}

// runCLIB is runCLI for benchmarks.
func runCLIB(srv *testutil.Server, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	env := srv.Env()
	code = cli.Run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return out.String(), errb.String(), code
}

func mustCLI(t testing.TB, srv *testutil.Server, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, srv, args...)
	if code != 0 {
		t.Fatalf("nimbus %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// do sends a request and returns status, headers and body.
func do(t testing.TB, method, url, contentType string, body []byte, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := testutil.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func postJSON(t testing.TB, url, body string) (int, []byte) {
	t.Helper()
	st, _, b := do(t, "POST", url, "application/json", []byte(body))
	return st, b
}

func getJSON(t testing.TB, url string, out any) int {
	t.Helper()
	st, _, b := do(t, "GET", url, "", nil)
	if out != nil && st == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, b)
		}
	}
	return st
}

// rawRun runs the committed model with the real runtime, outside Nimbus.
func rawRun(t *testing.T, model string, inputs ...*tensor.Tensor) map[string]*tensor.Tensor {
	t.Helper()
	m, err := onnx.New("", nil).Load(context.Background(), testutil.Model(model), runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	outs, err := m.Run(context.Background(), inputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]*tensor.Tensor{}
	for _, o := range outs {
		res[o.Name] = o
	}
	return res
}

func f32Tensor(name string, shape []int64, vals ...float32) *tensor.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return &tensor.Tensor{Name: name, DataType: tensor.FP32, Shape: shape, Data: b}
}

func f32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// oipOutput is an output of an OIP JSON response.
type oipOutput struct {
	Name     string          `json:"name"`
	Datatype string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     json.RawMessage `json:"data"`
}

type oipResponse struct {
	ModelName    string      `json:"model_name"`
	ModelVersion string      `json:"model_version"`
	ID           string      `json:"id"`
	Outputs      []oipOutput `json:"outputs"`
}

func (r oipResponse) output(t *testing.T, name string) oipOutput {
	t.Helper()
	for _, o := range r.Outputs {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("response has no output %q: %+v", name, r)
	return oipOutput{}
}

func floatsOf(t *testing.T, raw json.RawMessage) []float32 {
	t.Helper()
	var v []float64
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("data %s: %v", raw, err)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
