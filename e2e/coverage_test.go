package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/runtime/onnx/onnxtest"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/tensor"
)

// TestEveryTensorONNXRuntimeCanRun serves the models that need more than
// batched tensors of fixed types — rank-0 scalars of every type (a
// voice-activity model's INT64 sample rate among them), FP16, BF16 and BYTES
// outputs whose shape only the run decides, and an optional input given and
// left out — and answers every case of cases.json over REST JSON, REST with
// the binary tensor extension and gRPC, each compared with numpy's answer and
// with onnxruntime-node's where it has one (node_answers.json).
func TestEveryTensorONNXRuntimeCanRun(t *testing.T) {
	srv := testutil.StartServer(t)
	all, err := onnxtest.LoadCases(filepath.Join(testutil.RepoRoot(), "testdata", "models"))
	if err != nil {
		t.Fatal(err)
	}
	models := []string{"scalars", "scalars_bf16", "vad_like", "dynamic_out", "dynamic_bf16", "optional_input"}
	for _, name := range models {
		mustCLI(t, srv, "models", "push", testutil.Model(name), "--name", strings.ReplaceAll(name, "_", "-"))
	}
	c := dialGRPC(t, srv)
	modes := map[string]func(t *testing.T, model string, in []*tensor.Tensor) []*tensor.Tensor{
		"json": func(t *testing.T, m string, in []*tensor.Tensor) []*tensor.Tensor {
			return inferREST(t, srv, m, in, false)
		},
		"binary": func(t *testing.T, m string, in []*tensor.Tensor) []*tensor.Tensor {
			return inferREST(t, srv, m, in, true)
		},
		"grpc": func(t *testing.T, m string, in []*tensor.Tensor) []*tensor.Tensor { return inferGRPC(t, c, m, in) },
	}
	for _, name := range models {
		for i, cs := range all[name] {
			for mode, infer := range modes {
				t.Run(fmt.Sprintf("%s/%d/%s", name, i, mode), func(t *testing.T) {
					got := infer(t, strings.ReplaceAll(name, "_", "-"), cs.Inputs)
					byName := map[string]*tensor.Tensor{}
					for _, g := range got {
						byName[g.Name] = g
					}
					if len(got) != len(cs.Outputs) {
						t.Fatalf("%d outputs, want %d", len(got), len(cs.Outputs))
					}
					for k, want := range cs.Outputs {
						g := byName[want.Name]
						if g == nil {
							t.Fatalf("no output %s", want.Name)
						}
						if err := onnxtest.Compare(g, want); err != nil {
							t.Errorf("against numpy: %v", err)
						}
						if cs.Node != nil {
							if err := onnxtest.CompareNode(g, cs.Node[k]); err != nil {
								t.Errorf("against onnxruntime-node: %v", err)
							}
						}
					}
				})
			}
		}
	}

	// The metadata says which input may be left out, and a scalar's shape is [].
	var md struct {
		Inputs []struct {
			Name     string  `json:"name"`
			Shape    []int64 `json:"shape"`
			Optional bool    `json:"optional"`
		} `json:"inputs"`
	}
	if st := getJSON(t, srv.URL+"/v2/models/optional-input", &md); st != http.StatusOK || len(md.Inputs) != 2 ||
		md.Inputs[0].Optional || !md.Inputs[1].Optional || md.Inputs[1].Name != "bias" {
		t.Errorf("optional-input metadata: %d %+v", st, md)
	}
	if st := getJSON(t, srv.URL+"/v2/models/vad-like", &md); st != http.StatusOK || md.Inputs[1].Name != "sr" ||
		md.Inputs[1].Shape == nil || len(md.Inputs[1].Shape) != 0 {
		t.Errorf("vad-like metadata: %d %+v", st, md)
	}
	// A required input left out is still refused, naming it.
	st, body := postJSON(t, srv.URL+"/v2/models/vad-like/infer", `{"inputs":[{"name":"input","shape":[1,8],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]}]}`)
	if st != http.StatusBadRequest || !strings.Contains(string(body), "missing input sr INT64 []") {
		t.Errorf("vad-like without sr: %d %s", st, body)
	}
	// A scalar is one element: [1] is not [].
	st, body = postJSON(t, srv.URL+"/v2/models/vad-like/infer", `{"inputs":[{"name":"input","shape":[1,8],"datatype":"FP32","data":[1,2,3,4,5,6,7,8]},`+
		`{"name":"sr","shape":[1],"datatype":"INT64","data":[16000]}]}`)
	if st != http.StatusBadRequest || !strings.Contains(string(body), "input sr expects shape [] INT64, got [1] INT64") {
		t.Errorf("vad-like with sr [1]: %d %s", st, body)
	}
}

// inferREST runs one OIP REST request: JSON data, or with binary every input
// and output goes through the binary tensor extension.
func inferREST(t *testing.T, srv *testutil.Server, model string, in []*tensor.Tensor, bin bool) []*tensor.Tensor {
	t.Helper()
	req := &serving.InferRequest{Inputs: in}
	if bin {
		req.Parameters = map[string]any{"binary_data_output": true}
	}
	body, hlen, err := oip.EncodeInferRequest(nil, req, bin)
	if err != nil {
		t.Fatal(err)
	}
	var hdr []string
	if hlen > 0 {
		hdr = []string{"Inference-Header-Content-Length", strconv.Itoa(hlen)}
	}
	st, h, out := do(t, "POST", srv.URL+"/v2/models/"+model+"/infer", "application/json", body, hdr...)
	if st != http.StatusOK {
		t.Fatalf("infer %s: %d %s", model, st, out)
	}
	rhlen := 0
	if v := h.Get("Inference-Header-Content-Length"); v != "" {
		if rhlen, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	} else if bin {
		t.Fatalf("a binary_data_output response without Inference-Header-Content-Length")
	}
	resp, err := oip.DecodeInferResponse(out, rhlen)
	if err != nil {
		t.Fatalf("decode %s: %v\n%s", model, err, out)
	}
	return resp.Outputs
}

// inferGRPC runs one ModelInfer with raw contents in and out.
func inferGRPC(t *testing.T, c pb.GRPCInferenceServiceClient, model string, in []*tensor.Tensor) []*tensor.Tensor {
	t.Helper()
	req := &pb.ModelInferRequest{ModelName: model}
	for _, x := range in {
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: x.Name, Datatype: x.DataType.String(), Shape: x.Shape})
		raw := x.Data
		if x.DataType == tensor.Bytes {
			raw = nil
			for _, s := range x.Strings {
				raw = binary.LittleEndian.AppendUint32(raw, uint32(len(s)))
				raw = append(raw, s...)
			}
		}
		req.RawInputContents = append(req.RawInputContents, raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.ModelInfer(ctx, req)
	if err != nil {
		t.Fatalf("gRPC infer %s: %v", model, err)
	}
	if len(resp.RawOutputContents) != len(resp.Outputs) {
		t.Fatalf("%d raw contents for %d outputs", len(resp.RawOutputContents), len(resp.Outputs))
	}
	var out []*tensor.Tensor
	for i, o := range resp.Outputs {
		dt, ok := tensor.ParseDataType(o.Datatype)
		if !ok {
			t.Fatalf("output %s: datatype %q", o.Name, o.Datatype)
		}
		shape := o.Shape
		if shape == nil {
			shape = []int64{}
		}
		x := &tensor.Tensor{Name: o.Name, DataType: dt, Shape: shape, Data: resp.RawOutputContents[i]}
		if dt == tensor.Bytes {
			raw := x.Data
			x.Data, x.Strings = nil, [][]byte{}
			for len(raw) >= 4 {
				n := binary.LittleEndian.Uint32(raw)
				if int(n) > len(raw)-4 {
					t.Fatalf("output %s: a string runs past its contents", o.Name)
				}
				x.Strings = append(x.Strings, raw[4:4+n])
				raw = raw[4+n:]
			}
			if len(raw) != 0 {
				t.Fatalf("output %s: %d bytes after its last string", o.Name, len(raw))
			}
		}
		out = append(out, x)
	}
	return out
}
