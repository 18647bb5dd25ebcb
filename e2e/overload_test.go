package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/registry"
)

func statsOf(t *testing.T, url, model string) (executions, successes int64) {
	t.Helper()
	var s struct {
		ModelStats []struct {
			ExecutionCount int64 `json:"execution_count"`
			InferenceStats struct {
				Success struct{ Count int64 } `json:"success"`
			} `json:"inference_stats"`
		} `json:"model_stats"`
	}
	if getJSON(t, url+"/v2/models/"+model+"/stats", &s) != 200 || len(s.ModelStats) == 0 {
		return 0, 0
	}
	return s.ModelStats[0].ExecutionCount, s.ModelStats[0].InferenceStats.Success.Count
}

func metricValue(t *testing.T, url, prefix string) float64 {
	t.Helper()
	_, _, body := do(t, "GET", url+"/metrics", "", nil)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			f, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return f
		}
	}
	return -1
}

// binaryRequest builds an OIP request for mlp_medium with rows of zeros, sent with
// the binary extension (small header, raw FP32 body).
func binaryRequest(rows int) (header string, body []byte) {
	header = fmt.Sprintf(`{"inputs":[{"name":"x","shape":[%d,64],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"y","parameters":{"binary_data":true}}]}`, rows, rows*256)
	return header, append([]byte(header), make([]byte, rows*256)...)
}

func postBinary(url string, rows int) (int, http.Header, []byte, error) {
	header, body := binaryRequest(rows)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(header)))
	resp, err := testutil.Client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, nil
}

// TestOverloadSheds: with one instance busy and the queue full, REST answers 429
// with Retry-After and gRPC RESOURCE_EXHAUSTED; queued work still completes.
func TestOverloadSheds(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp_medium"), "--name", "m")
	mustCLI(t, srv, "models", "config", "m", "--instances", "1", "--max-queue-size", "1")
	url := srv.URL + "/v2/models/m/infer"

	// r1 occupies the only instance for about a second (150k rows).
	r1 := make(chan int, 1)
	go func() {
		st, _, _, err := postBinary(url, 150_000)
		if err != nil {
			t.Error(err)
		}
		r1 <- st
	}()
	testutil.Eventually(t, 30*time.Second, func() bool { ex, _ := statsOf(t, srv.URL, "m"); return ex == 1 }, "r1 never started running")
	// r2 fills the queue.
	r2 := make(chan int, 1)
	go func() {
		st, _, _, err := postBinary(url, 1)
		if err != nil {
			t.Error(err)
		}
		r2 <- st
	}()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return metricValue(t, srv.URL, `nimbus_queue_depth{model="m",namespace="default",version="1"}`) == 1
	}, "r2 never queued")
	if _, succ := statsOf(t, srv.URL, "m"); succ != 0 {
		t.Fatalf("r1 finished before the queue filled; the test cannot observe shedding")
	}
	// r3 is shed, over REST and over gRPC.
	st, hdr, body, err := postBinary(url, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st != 429 || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), "overloaded") {
		t.Errorf("REST over the queue bound: %d Retry-After=%q %s", st, hdr.Get("Retry-After"), body)
	}
	c := dialGRPC(t, srv)
	var trailer metadata.MD
	_, err = c.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "m",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 64}}},
		RawInputContents: [][]byte{make([]byte, 256)}}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted || len(trailer.Get("grpc-retry-pushback-ms")) != 1 || trailer.Get("grpc-retry-pushback-ms")[0] != "1000" {
		t.Errorf("gRPC over the queue bound: %v, trailer %v (want grpc-retry-pushback-ms 1000, the REST Retry-After)", err, trailer)
	}
	if got := metricValue(t, srv.URL, `nimbus_requests_rejected_total{model="m",namespace="default",version="1"}`); got != 2 {
		t.Errorf("rejected counter = %v, want 2", got)
	}
	if s := <-r1; s != 200 {
		t.Errorf("r1 = %d", s)
	}
	if s := <-r2; s != 200 {
		t.Errorf("queued r2 = %d", s)
	}
}

func TestServingTimeout(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m")
	mustCLI(t, srv, "models", "config", "m", "--timeout", "1ns")
	st, body := postJSON(t, srv.URL+"/v2/models/m/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`)
	if st != 504 {
		t.Errorf("REST past the timeout: %d %s", st, body)
	}
	_, err := dialGRPC(t, srv).ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("gRPC past the timeout: %v", err)
	}
	mustCLI(t, srv, "models", "config", "m", "--timeout", "5s")
	if st, b := postJSON(t, srv.URL+"/v2/models/m/infer", `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`); st != 200 {
		t.Errorf("after raising the timeout: %d %s", st, b)
	}
}

// TestBatchedAnswersAreEachRequestsOwn: under concurrent REST and gRPC load with
// batching on, every caller gets the outputs of its own rows.
func TestBatchedAnswersAreEachRequestsOwn(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m")
	mustCLI(t, srv, "models", "config", "m", "--max-batch-size", "32", "--max-queue-delay", "2ms", "--instances", "1")
	var cfg registry.ServingConfig
	cfg, err := client.New(srv.URL, client.WithToken(srv.Token)).GetServing(context.Background(), "default", "m")
	if err != nil || cfg.BatchSize() != 32 {
		t.Fatalf("serving settings: %+v %v", cfg, err)
	}
	c := dialGRPC(t, srv)
	const n = 64
	xs := make([]float32, 0, 4*n)
	for i := range n {
		xs = append(xs, float32(i), float32(i%7), -float32(i), 0.5)
	}
	// Expected: the raw runtime on all rows at once (each row is independent).
	wantAll := f32s(rawRun(t, "mlp", f32Tensor("x", []int64{n, 4}, xs...))["y"].Data)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := xs[4*i : 4*i+4]
			want := f32Tensor("y", []int64{1, 3}, wantAll[3*i:3*i+3]...)
			if i%2 == 0 {
				st, body := postJSON(t, srv.URL+"/v2/models/m/infer",
					fmt.Sprintf(`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[%v,%v,%v,%v]}],"outputs":[{"name":"y"}]}`, x[0], x[1], x[2], x[3]))
				var r oipResponse
				if st != 200 || json.Unmarshal(body, &r) != nil {
					t.Errorf("request %d: %d %s", i, st, body)
					return
				}
				if got := floatsOf(t, r.output(t, "y").Data); !equalFloats(got, f32s(want.Data)) {
					t.Errorf("request %d got %v, want %v", i, got, f32s(want.Data))
				}
				return
			}
			resp, err := c.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "m",
				Inputs:  []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Fp32Contents: x}}},
				Outputs: []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: "y"}}})
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			if got := resp.Outputs[0].Contents.Fp32Contents; !equalFloats(got, f32s(want.Data)) {
				t.Errorf("request %d got %v, want %v", i, got, f32s(want.Data))
			}
		}()
	}
	wg.Wait()
	if n := metricValue(t, srv.URL, `nimbus_batch_size_count{model="m",namespace="default",version="1"}`); n <= 0 || n > 64 {
		t.Errorf("runtime calls = %v", n)
	}
}
