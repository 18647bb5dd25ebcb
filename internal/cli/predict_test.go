package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/tensor"
)

// oipServer fakes the OIP metadata and infer endpoints of a model with one
// input x FP32 [-1,4]; it refuses other shapes as the real server does.
type oipServer struct {
	mu    sync.Mutex
	paths []string
	last  client.InferRequest
}

func (o *oipServer) start(t *testing.T) string {
	mux := http.NewServeMux()
	meta := func(w http.ResponseWriter, r *http.Request) {
		o.record(r.URL.Path)
		if r.PathValue("m") != "churn" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":"model \"`+r.PathValue("m")+`\" not found"}`)
			return
		}
		_, _ = io.WriteString(w, `{"name":"churn","versions":["1","2"],"platform":"onnxruntime_onnx",
			"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],
			"outputs":[{"name":"label","datatype":"INT64","shape":[-1]}]}`)
	}
	infer := func(w http.ResponseWriter, r *http.Request) {
		o.record(r.URL.Path)
		var req client.InferRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		o.mu.Lock()
		o.last = req
		o.mu.Unlock()
		in := req.Inputs[0]
		if in.Datatype != "FP32" || !tensor.ShapeMatches([]int64{-1, 4}, in.Shape) {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":"input x expects shape [-1,4] FP32, got %s %s"}`, tensor.ShapeString(in.Shape), in.Datatype)
			return
		}
		rows := in.Shape[0]
		labels := strings.TrimSuffix(strings.Repeat("1,", int(rows)), ",")
		fmt.Fprintf(w, `{"model_name":"churn","model_version":"2","outputs":[{"name":"label","datatype":"INT64","shape":[%d],"data":[%s]}]}`, rows, labels)
	}
	for _, base := range []string{"/v2", "/ns/{ns}/v2"} {
		mux.HandleFunc("GET "+base+"/models/{m}", meta)
		mux.HandleFunc("GET "+base+"/models/{m}/versions/{v}", meta)
		mux.HandleFunc("POST "+base+"/models/{m}/infer", infer)
		mux.HandleFunc("POST "+base+"/models/{m}/versions/{v}/infer", infer)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func (o *oipServer) record(p string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.paths = append(o.paths, p)
}

func TestPredict(t *testing.T) {
	rowsFile := filepath.Join(t.TempDir(), "rows.json")
	if err := os.WriteFile(rowsFile, []byte("[[1,2,3,4],[5,6,7,8]]"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		code      int
		out       string // exact stdout, when set
		errHas    string
		paths     []string
		sentShape []int64
		sentData  string
	}{
		{
			name:  "walkthrough",
			args:  []string{"predict", "churn", "--data", `{"x": [[0.3, 12, 1, 0]]}`},
			out:   "NAME   DATATYPE  SHAPE  DATA\nlabel  INT64     [1]    [1]\n",
			paths: []string{"/v2/models/churn", "/v2/models/churn/infer"}, sentShape: []int64{1, 4}, sentData: "[0.3,12,1,0]",
		},
		{
			name:      "alias, namespace and file input",
			args:      []string{"predict", "churn@champion", "-n", "payments", "--input", "x=@" + rowsFile},
			paths:     []string{"/ns/payments/v2/models/churn/versions/champion", "/ns/payments/v2/models/churn/versions/champion/infer"},
			sentShape: []int64{2, 4}, sentData: "[1,2,3,4,5,6,7,8]",
		},
		{
			name:  "single row gets a batch dimension",
			args:  []string{"predict", "churn@2", "--input", "x=[1,2,3,4]"},
			paths: []string{"/v2/models/churn/versions/2", "/v2/models/churn/versions/2/infer"}, sentShape: []int64{1, 4}, sentData: "[1,2,3,4]",
		},
		{
			name: "server reports shape mismatch",
			args: []string{"predict", "churn", "--data", `{"x": [[0.3, 12, 1]]}`},
			code: 1, errHas: "Error: predict: input x expects shape [-1,4] FP32, got [1,3] FP32\n",
		},
		{name: "unknown input", args: []string{"predict", "churn", "--data", `{"z": [1]}`}, code: 1, errHas: `model churn has no input "z" (inputs: x)`},
		{name: "unknown model", args: []string{"predict", "nope", "--data", `{"x": [1]}`}, code: 1, errHas: `Error: model metadata: model "nope" not found`},
		{name: "ragged", args: []string{"predict", "churn", "--data", `{"x": [[1,2],[3]]}`}, code: 1, errHas: "ragged array"},
		{name: "no inputs", args: []string{"predict", "churn"}, code: 2, errHas: "give inputs with --data or --input"},
		{name: "bad data", args: []string{"predict", "churn", "--data", `[1]`}, code: 2, errHas: "--data must be a JSON object"},
		{name: "bad input", args: []string{"predict", "churn", "--input", `x=[1,`}, code: 2, errHas: "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &oipServer{}
			srv := o.start(t)
			r := runCLI(t, nil, append([]string{"--server", srv}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.err, tt.errHas) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", r.code, tt.code, r.out, r.err)
			}
			if tt.out != "" && r.out != tt.out {
				t.Errorf("stdout:\n%s\nwant:\n%s", r.out, tt.out)
			}
			if tt.paths != nil {
				if diff := cmp.Diff(tt.paths, o.paths); diff != "" {
					t.Errorf("paths (-want +got):\n%s", diff)
				}
			}
			if tt.sentShape != nil {
				in := o.last.Inputs[0]
				if !cmp.Equal(in.Shape, tt.sentShape) || string(in.Data) != tt.sentData || in.Datatype != "FP32" {
					t.Errorf("sent %+v (data %s)", in, in.Data)
				}
			}
		})
	}
}

func TestPredictJSON(t *testing.T) {
	srv := (&oipServer{}).start(t)
	r := runCLI(t, nil, "--server", srv, "predict", "churn", "--data", `{"x": [[1,2,3,4],[5,6,7,8]]}`, "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.err)
	}
	var resp struct {
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name string  `json:"name"`
			Data []int64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(r.out), &resp); err != nil {
		t.Fatalf("%q: %v", r.out, err)
	}
	if resp.ModelName != "churn" || !cmp.Equal(resp.Outputs[0].Data, []int64{1, 1}) {
		t.Errorf("response = %+v", resp)
	}
}

func TestShapeAndFlatten(t *testing.T) {
	tests := []struct {
		in      string
		shape   []int64
		flat    string
		wantErr bool
	}{
		{in: `3.5`, shape: []int64{}, flat: `[3.5]`},
		{in: `[]`, shape: []int64{0}, flat: `[]`},
		{in: `[1,2,3]`, shape: []int64{3}, flat: `[1,2,3]`},
		{in: `[[1,2],[3,4],[5,6]]`, shape: []int64{3, 2}, flat: `[1,2,3,4,5,6]`},
		{in: `[[[true],[false]]]`, shape: []int64{1, 2, 1}, flat: `[true,false]`},
		{in: `[["a","b"]]`, shape: []int64{1, 2}, flat: `["a","b"]`},
		{in: `[1e400]`, shape: []int64{1}, flat: `[1e400]`}, // kept verbatim for the server to judge
		{in: `[[1,2],[3]]`, wantErr: true},
		{in: `[[1,2],3]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			dec := json.NewDecoder(strings.NewReader(tt.in))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			shape, flat, err := shapeAndFlatten(v)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			b, _ := json.Marshal(flat)
			if !cmp.Equal(shape, tt.shape) || string(b) != tt.flat {
				t.Errorf("got %v %s, want %v %s", shape, b, tt.shape, tt.flat)
			}
		})
	}
}
