package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// TestVersionNumberBounds (issue 10 defect 7): a version number above 2^53-1
// is refused with 400 wherever it enters: the API, apply, and a reference
// resolved on the inference path (REST and gRPC); pushes go on numbering.
func TestVersionNumberBounds(t *testing.T) {
	dir, sha := sourceDir(t)
	srv := testutil.StartServer(t, func(c *config.Config) { c.SourceDir = dir })
	mustCLI(t, srv, "models", "push", testutil.Model("fraud_v1"), "--name", "m")
	const tooBig = "must be at most 9007199254740991 (2^53-1)"
	url := srv.URL + "/api/v1/namespaces/default/models/m"

	for _, n := range []string{"9007199254740992", "9223372036854775807"} {
		st, _, body := do(t, "POST", url+"/versions", "application/json", []byte(`{"version":`+n+`,"sha256":"`+sha["fraud_v1"]+`"}`))
		if st != 400 || !strings.Contains(string(body), tooBig) {
			t.Errorf("create version %s: %d %s", n, st, body)
		}
		st, _, body = do(t, "PUT", url+"/aliases/big", "application/json", []byte(`{"version":`+n+`}`))
		if st != 400 || !strings.Contains(string(body), tooBig) {
			t.Errorf("set alias to %s: %d %s", n, st, body)
		}
		st, _, body = do(t, "POST", srv.URL+"/api/v1/apply", "application/json", mustJSON(t, map[string]any{
			"files": []map[string]string{{"name": "m.yaml", "content": fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: Model
metadata: {name: declared}
spec:
  versions:
    - {version: %s, source: {uri: "file://%s/fraud_v1.onnx", sha256: %s}}
`, n, dir, sha["fraud_v1"])}}}))
		if st != 400 || !strings.Contains(string(body), "spec.versions[0].version") || !strings.Contains(string(body), tooBig) {
			t.Errorf("apply version %s: %d %s", n, st, body)
		}
		st, body = postJSON(t, srv.URL+"/v2/models/m/versions/"+n+"/infer",
			`{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`)
		var answer struct{ Error string }
		if err := json.Unmarshal(body, &answer); err != nil || st != 400 || !strings.Contains(answer.Error, tooBig) {
			t.Errorf("infer version %s: %d %s", n, st, body)
		}
		gctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := dialGRPC(t, srv.GRPC).ModelInfer(gctx, &pb.ModelInferRequest{ModelName: "m", ModelVersion: n})
		cancel()
		if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), tooBig) {
			t.Errorf("gRPC infer version %s: %v %q", n, s.Code(), s.Message())
		}
	}
	// Numbering goes on.
	out := mustCLI(t, srv, "models", "push", testutil.Model("fraud_v1"), "--name", "m", "-o", "json")
	var v struct{ Version int64 }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version != 2 {
		t.Fatalf("push after refused numbers: %s %v", out, err)
	}
}
