package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// BenchmarkServiceRouting measures what an InferenceService adds to a REST
// request: the same model called directly, through a 90/10 service, with a
// routing key, and with a 100% shadow copy (run after the answer). Compare
// ns/op across the sub-benchmarks of one run (docs/BENCHMARKS.md).
//
//	go test -run '^$' -bench ServiceRouting -benchtime 3s ./e2e/
func BenchmarkServiceRouting(b *testing.B) {
	srv := testutil.StartServer(b)
	c := func(args ...string) {
		b.Helper()
		if _, errOut, code := runCLIB(srv, args...); code != 0 {
			b.Fatalf("nimbus %v: %s", args, errOut)
		}
	}
	c("models", "push", testutil.Model("fraud_v1"), "--name", "fraud-detector", "--alias", "champion")
	c("models", "push", testutil.Model("fraud_v2"), "--name", "fraud-detector", "--alias", "challenger")
	dir := b.TempDir()
	c("apply", "-f", writeFileB(b, dir, "svc.yaml", serviceYAML("default", 90, 10)))
	c("apply", "-f", writeFileB(b, dir, "shadow.yaml", `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: shadowed}
spec:
  traffic: [{model: fraud-detector@champion}]
  shadow: {model: fraud-detector@challenger}
`))
	for _, bc := range []struct{ name, path, key string }{
		{"model", "/v2/models/fraud-detector/infer", ""},
		{"service", "/v2/models/fraud/infer", ""},
		{"service-key", "/v2/models/fraud/infer", "customer-42"},
		{"service-shadow", "/v2/models/shadowed/infer", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			url := srv.URL + bc.path
			for b.Loop() {
				req, _ := http.NewRequest("POST", url, strings.NewReader(fraudRequest))
				if bc.key != "" {
					req.Header.Set("Nimbus-Routing-Key", bc.key)
				}
				resp, err := testutil.Client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
