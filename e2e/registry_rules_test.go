package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// TestOneNamespaceRule (issue 10 defect 7): uploads had their own namespace
// pattern, without the '.' and '_' the registry allows, so a namespace apply
// accepted could not be pushed to. Upload, push and apply now take and refuse
// the same names.
func TestOneNamespaceRule(t *testing.T) {
	dir, sha := sourceDir(t)
	srv := testutil.StartServer(t, func(c *config.Config) { c.SourceDir = dir })
	c := client.New(srv.URL, client.WithToken(srv.Token))
	ctx := context.Background()
	for _, tc := range []struct {
		ns string
		ok bool
	}{
		{"team.ml_1", true}, {"a", true}, {"x-y.z", true}, {strings.Repeat("a", 63), true},
		{"Team", false}, {"_x", false}, {"x.", false}, {"a..", false}, {strings.Repeat("a", 64), false},
	} {
		t.Run(tc.ns, func(t *testing.T) {
			_, uerr := c.StartUpload(ctx, tc.ns)
			_, errOut, code := runCLI(t, srv, "-n", tc.ns, "models", "push", testutil.Model("fraud_v1"), "--name", "m")
			st, _, body := do(t, "POST", srv.URL+"/api/v1/apply", "application/json", mustJSON(t, map[string]any{
				"files": []map[string]string{{"name": "m.yaml", "content": fmt.Sprintf(`apiVersion: nimbus.dev/v1
kind: Model
metadata: {name: declared, namespace: %q}
spec:
  versions:
    - {version: 1, source: {uri: "file://%s/fraud_v1.onnx", sha256: %s}}
`, tc.ns, dir, sha["fraud_v1"])}}}))
			if tc.ok {
				if uerr != nil || code != 0 || st != 200 {
					t.Fatalf("namespace %q: upload %v; push exit %d %s; apply %d %s", tc.ns, uerr, code, errOut, st, body)
				}
				return
			}
			var apiErr *client.APIError
			if !errors.As(uerr, &apiErr) || apiErr.Status != 400 || !strings.Contains(apiErr.Message, "namespace") {
				t.Errorf("upload to %q: %v, want 400", tc.ns, uerr)
			}
			if code == 0 || !strings.Contains(errOut, "namespace") {
				t.Errorf("push to %q: exit %d %s", tc.ns, code, errOut)
			}
			if st != 400 || !strings.Contains(string(body), "metadata.namespace") {
				t.Errorf("apply to %q: %d %s", tc.ns, st, body)
			}
		})
	}
}

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
		_, err := dialGRPC(t, srv).ModelInfer(gctx, &pb.ModelInferRequest{ModelName: "m", ModelVersion: n})
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
