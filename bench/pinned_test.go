package bench

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
)

// TestBareChildTakesItsReplies: in a pinned run the bare servers live in a
// child process, and the parent sets what they answer through their control
// path; they must then answer exactly those bytes (REST) and that response
// (gRPC). The servers run in-process here, as the child runs them.
func TestBareChildTakesItsReplies(t *testing.T) {
	defer goleak.VerifyNone(t)
	srv, err := startBareWith(true)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	remote := &bareServers{httpURL: srv.httpURL, grpcAddr: srv.grpcAddr, remote: true}
	ctx := context.Background()
	want := `{"model_name":"m","outputs":[]}`
	if err := remote.setReplies(ctx, []byte(want), &pb.ModelInferResponse{ModelName: "m", Id: "42"}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Post(srv.httpURL+"/v2/models/m/infer", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != want {
		t.Fatalf("REST answer %q, want %q", body, want)
	}
	conn, err := grpc.NewClient(srv.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g, err := pb.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, &pb.ModelInferRequest{ModelName: "m"})
	if err != nil || g.ModelName != "m" || g.Id != "42" {
		t.Fatalf("gRPC answer %v, %v", g, err)
	}
	// A control request the server cannot parse is refused, and the reply stays.
	req, _ := http.NewRequest(http.MethodPut, srv.httpURL+bareControlPath+"?kind=grpc", strings.NewReader("\xff\xff"))
	resp, err = hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a bad gRPC reply: %v %v", resp, err)
	}
	resp.Body.Close()
}
