package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/residency"
)

// TestServerlessThroughTheAPIAndCLI: a server with a memory budget that holds one
// mlp_medium. Cold requests say so in a header; a second model evicts the first;
// `nimbus models status` and the API show residency, measured memory and why a
// version left; metrics count cold starts and evictions.
func TestServerlessThroughTheAPIAndCLI(t *testing.T) {
	srv := testutil.StartServer(t, func(c *config.Config) { c.MemoryBudget = "2MiB" })
	for _, m := range []string{"a", "b"} {
		mustCLI(t, srv, "models", "push", testutil.Model("mlp_medium"), "--name", m)
	}
	infer := func(model string) http.Header {
		t.Helper()
		hdr, body := binaryRequest(1)
		code, h, resp := do(t, "POST", srv.URL+"/v2/models/"+model+"/infer", "application/octet-stream", body,
			"Inference-Header-Content-Length", strconv.Itoa(len(hdr)))
		if code != 200 {
			t.Fatalf("%s: %d %s", model, code, resp)
		}
		return h
	}
	h := infer("a")
	if ms, err := strconv.ParseFloat(h.Get("Nimbus-Cold-Start"), 64); err != nil || ms <= 0 {
		t.Fatalf("first request: Nimbus-Cold-Start %q", h.Get("Nimbus-Cold-Start"))
	}
	if h := infer("a"); h.Get("Nimbus-Cold-Start") != "" {
		t.Fatalf("warm request says cold: %q", h.Get("Nimbus-Cold-Start"))
	}
	infer("b") // needs a's room

	var rep residency.Report
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "models", "status", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Memory.BudgetBytes != 2<<20 || rep.Memory.Resident != 1 || rep.Memory.UsedBytes > 2<<20 || rep.Memory.ProcessRSSBytes <= 0 {
		t.Fatalf("memory: %+v", rep.Memory)
	}
	states := map[string]residency.VersionStatus{}
	for _, v := range rep.Versions {
		states[v.Model] = v
	}
	if a := states["a"]; a.State != residency.Evicted || a.Evictions != 1 || a.ColdStarts != 1 || a.MemoryBytes < 1_200_000 || !strings.Contains(a.Reason, "make room for b") {
		t.Fatalf("a: %+v", a)
	}
	if b := states["b"]; b.State != residency.Ready || b.Instances != 1 || b.LastUsed.IsZero() || b.MemoryBytes < 1_200_000 {
		t.Fatalf("b: %+v", b)
	}
	table := mustCLI(t, srv, "models", "status")
	for _, want := range []string{"used of 2.0 MiB budget", "evicted", "ready"} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
	if n := metricValue(t, srv.URL, `nimbus_evictions_total{namespace="default"}`); n != 1 {
		t.Errorf("nimbus_evictions_total = %v", n)
	}
	if n := metricValue(t, srv.URL, `nimbus_cold_starts_total{namespace="default"}`); n != 2 {
		t.Errorf("nimbus_cold_starts_total = %v", n)
	}
	if n := metricValue(t, srv.URL, "nimbus_models_loaded "); n != 1 {
		t.Errorf("nimbus_models_loaded = %v after an eviction, want 1", n)
	}
	if n := metricValue(t, srv.URL, "nimbus_memory_budget_bytes"); n != 2<<20 {
		t.Errorf("nimbus_memory_budget_bytes = %v", n)
	}

	// Autoscaling and warm-up are serving settings like the others.
	mustCLI(t, srv, "models", "config", "b", "--instances", "4", "--min-instances", "1", "--warmup-runs", "2")
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "models", "status", "b", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if v := rep.Versions[0]; v.MinInstances != 1 || v.MaxInstances != 4 || v.TargetConcurrency != 1 {
		t.Fatalf("b after config: %+v", v)
	}

	// gRPC answers say the same: a (the evicted one) is cold again, then warm.
	c := dialGRPC(t, srv)
	grpcInfer := func(model string) metadata.MD {
		t.Helper()
		var header metadata.MD
		if _, err := c.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: model,
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 64}}},
			RawInputContents: [][]byte{make([]byte, 256)}}, grpc.Header(&header)); err != nil {
			t.Fatal(err)
		}
		return header
	}
	if v := grpcInfer("a").Get("nimbus-cold-start"); len(v) != 1 {
		t.Errorf("cold gRPC answer: nimbus-cold-start %q", v)
	} else if ms, err := strconv.ParseFloat(v[0], 64); err != nil || ms <= 0 {
		t.Errorf("cold gRPC answer: nimbus-cold-start %q", v)
	}
	if v := grpcInfer("a").Get("nimbus-cold-start"); len(v) != 0 {
		t.Errorf("warm gRPC answer says cold: %q", v)
	}

	// A model bigger than the whole budget: a clear error, not an eviction storm.
	srv2 := testutil.StartServer(t, func(c *config.Config) { c.MemoryBudget = "1MiB" })
	mustCLI(t, srv2, "models", "push", testutil.Model("mlp_medium"), "--name", "big")
	hdr, body := binaryRequest(1)
	code, _, resp := do(t, "POST", srv2.URL+"/v2/models/big/infer", "application/octet-stream", body,
		"Inference-Header-Content-Length", strconv.Itoa(len(hdr)))
	if code != http.StatusServiceUnavailable || !strings.Contains(string(resp), "more than the whole memory budget") {
		t.Fatalf("oversized model: %d %s", code, resp)
	}
}
