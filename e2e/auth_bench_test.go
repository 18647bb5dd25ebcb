package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// BenchmarkAuthLoopback is the cost of auth at saturation over loopback: the
// same inference (the small MLP, batch 1) against two servers started in this
// run, one with auth off and one with auth on (an invoker token, verified from
// the cache and checked against the route on every request), from 16
// concurrent clients, over REST and gRPC. Compare req/s of "off" and "on" of
// one protocol (docs/BENCHMARKS.md).
//
//	go test -run '^$' -bench AuthLoopback -benchtime 5s -count 3 ./e2e/
func BenchmarkAuthLoopback(b *testing.B) {
	servers := map[string]*testutil.Server{
		"off": testutil.StartServer(b, func(c *config.Config) { c.Auth = "off" }),
		"on":  testutil.StartServer(b),
	}
	tokens := map[string]string{"off": ""}
	for mode, srv := range servers {
		if _, errOut, code := runCLIB(srv, "models", "push", testutil.Model("mlp"), "--name", "m", "--alias", "champion"); code != 0 {
			b.Fatalf("push: %s", errOut)
		}
		if mode == "on" {
			out, errOut, code := runCLIB(srv, "tokens", "create", "--role", "invoker", "--scope", "default", "-o", "json")
			var c auth.CreatedView
			if err := json.Unmarshal([]byte(out), &c); code != 0 || err != nil {
				b.Fatalf("token: %v %s", err, errOut)
			}
			tokens["on"] = c.Secret
		}
	}
	const clients = 16
	for _, proto := range []string{"rest", "grpc"} {
		for _, mode := range []string{"off", "on"} {
			srv, tok := servers[mode], tokens[mode]
			b.Run(proto+"/"+mode, func(b *testing.B) {
				b.SetParallelism(max(1, clients/runtime.GOMAXPROCS(0))) // goroutines = that × GOMAXPROCS
				start := time.Now()
				switch proto {
				case "rest":
					hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * clients, DisableCompression: true}}
					defer hc.CloseIdleConnections()
					b.RunParallel(func(p *testing.PB) {
						for p.Next() {
							req, _ := http.NewRequest("POST", srv.URL+"/v2/models/m/infer", strings.NewReader(mlpRequest))
							req.Header.Set("Content-Type", "application/json")
							if tok != "" {
								req.Header.Set("Authorization", "Bearer "+tok)
							}
							resp, err := hc.Do(req)
							if err != nil {
								b.Error(err)
								return
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode != 200 {
								b.Errorf("status %d", resp.StatusCode)
								return
							}
						}
					})
				case "grpc":
					opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
					if tok != "" {
						opts = append(opts, grpc.WithPerRPCCredentials(testutil.GRPCToken(tok)))
					}
					conn, err := grpc.NewClient(srv.GRPC, opts...)
					if err != nil {
						b.Fatal(err)
					}
					defer conn.Close()
					c := pb.NewGRPCInferenceServiceClient(conn)
					req := &pb.ModelInferRequest{ModelName: "m", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
						Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
						Contents: &pb.InferTensorContents{Fp32Contents: []float32{0.3, 12, 1, 0}}}}}
					b.RunParallel(func(p *testing.PB) {
						for p.Next() {
							if _, err := c.ModelInfer(context.Background(), req); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			})
		}
	}
}
