package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// TestServiceOverGRPC: a service name takes the model slot over gRPC too; the
// routing key travels as metadata and the answer names its target in a header.
func TestServiceOverGRPC(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "-n", "payments", "models", "push", testutil.Model("fraud_v1"), "--name", "fraud-detector", "--alias", "champion")
	mustCLI(t, srv, "-n", "payments", "models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector", "--alias", "challenger")
	mustCLI(t, srv, "apply", "-f", writeFile(t, t.TempDir(), "svc.yaml", serviceYAML("payments", 50, 50)))
	c := dialGRPC(t, srv)
	byKey := map[string]string{}
	for i := range 60 {
		key := fmt.Sprintf("k%d", i%6)
		ctx := metadata.AppendToOutgoingContext(context.Background(), "nimbus-namespace", "payments", "nimbus-routing-key", key)
		var hdr metadata.MD
		resp, err := c.ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "fraud", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name: "x", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &pb.InferTensorContents{Fp32Contents: []float32{0.3, 12, 1, 0}},
		}}}, grpc.Header(&hdr))
		if err != nil {
			t.Fatal(err)
		}
		if got := hdr.Get("nimbus-target"); len(got) != 1 || got[0] != "fraud-detector@"+resp.ModelVersion || resp.ModelName != "fraud" {
			t.Fatalf("answer %s v%s, nimbus-target %v", resp.ModelName, resp.ModelVersion, got)
		}
		if prev, ok := byKey[key]; ok && prev != resp.ModelVersion {
			t.Fatalf("key %s moved from %s to %s", key, prev, resp.ModelVersion)
		}
		byKey[key] = resp.ModelVersion
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "nimbus-namespace", "payments")
	if r, err := c.ModelReady(ctx, &pb.ModelReadyRequest{Name: "fraud"}); err != nil || !r.Ready {
		t.Fatalf("service ready: %v %v", r, err)
	}
	if md, err := c.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: "fraud"}); err != nil || md.Name != "fraud" || md.Inputs[0].Name != "x" {
		t.Fatalf("service metadata: %v %v", md, err)
	}
}

// TestResourcesSurviveRestartAndDelete: services are restored from the
// metadata store at start; deleting a Model a service targets is refused;
// deleting the service, then the Model, works; the audit log holds every
// change, the imperative ones included, and reads back after a restart.
func TestResourcesSurviveRestartAndDelete(t *testing.T) {
	dataDir := t.TempDir()
	start := func() *testutil.Server {
		return testutil.StartServer(t, func(c *config.Config) { c.DataDir = dataDir })
	}
	srv := start()
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v1"), "--name", "fraud-detector", "--alias", "champion")
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector", "--alias", "challenger")
	svc := writeFile(t, t.TempDir(), "svc.yaml", serviceYAML("default", 0, 100))
	mustCLI(t, srv, "apply", "-f", svc)
	srv.Stop()

	srv = start()
	if _, v, _, err := inferService(srv.URL+"/v2/models/fraud/infer", ""); err != nil || v != "2" {
		t.Fatalf("after restart: version %q, %v", v, err)
	}
	if out := mustCLI(t, srv, "apply", "-f", svc); !strings.Contains(out, "unchanged") {
		t.Fatalf("re-apply after restart: %q", out)
	}
	_, errOut, code := runCLI(t, srv, "delete", "model", "fraud-detector")
	if code != 1 || !strings.Contains(errOut, "is a target of inferenceservice fraud") {
		t.Fatalf("deleting a targeted model: exit %d %s", code, errOut)
	}
	if out := mustCLI(t, srv, "delete", "-f", svc); !strings.Contains(out, "inferenceservice.nimbus.dev/fraud deleted") {
		t.Fatalf("delete -f: %q", out)
	}
	if code, _, _, _ := inferService(srv.URL+"/v2/models/fraud/infer", ""); code != 404 {
		t.Fatalf("deleted service answered %d", code)
	}
	mustCLI(t, srv, "delete", "model", "fraud-detector")
	if st, _, _ := do(t, "GET", srv.URL+"/api/v1/namespaces/default/models/fraud-detector", "", nil); st != 404 {
		t.Fatalf("deleted model: %d", st)
	}

	var evs []audit.Event
	if err := json.Unmarshal([]byte(mustCLI(t, srv, "events", "-o", "json")), &evs); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Action+" "+e.Kind+" "+e.Name+" "+e.Source)
	}
	_, sha := sourceDir(t) // the pushed files' sha256
	want := []string{
		"create Blob " + sha["fraud_v1"] + " cli", // push: the upload
		"create Model fraud-detector cli",         // and the version
		"create Blob " + sha["fraud_v2"] + " cli",
		"create Model fraud-detector cli",
		"create InferenceService fraud cli",
		"delete InferenceService fraud cli",
		"delete Model fraud-detector cli",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if evs[3].Summary != "create version" || evs[1].Diff == "" || evs[6].Summary != "deleted" ||
		!strings.HasPrefix(evs[0].Summary, "resumable upload ") || !strings.HasSuffix(evs[0].Summary, " bytes") {
		t.Fatalf("summaries: %q %q %q, push body %q", evs[0].Summary, evs[3].Summary, evs[6].Summary, evs[1].Diff)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].ID <= evs[i-1].ID || evs[i].Time.Before(evs[i-1].Time) || !strings.HasPrefix(evs[i].Actor, "bootstrap-admin (token/") {
			t.Fatalf("events out of order or without actor: %+v", evs)
		}
	}
}
