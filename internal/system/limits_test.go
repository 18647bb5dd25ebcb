package system

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/config"
)

// TestDribblingClientIsCutOff: the server's readTimeout reaches the inference
// route — a client sending its body one byte at a time is answered 408 and
// disconnected once the allowance is spent, instead of holding the connection.
func TestDribblingClientIsCutOff(t *testing.T) {
	const allowance = 400 * time.Millisecond
	s, _ := startSystem(t, func(c *config.Config) { c.ReadTimeout = allowance }, nil)
	conn, err := net.Dial("tcp", s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	type answer struct {
		resp *http.Response
		err  error
		at   time.Duration
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
		}
		got <- answer{resp, err, time.Since(start)}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	bound := allowance + 2*time.Second
	for {
		select {
		case a := <-got:
			if a.err != nil || a.resp.StatusCode != http.StatusRequestTimeout || !a.resp.Close {
				t.Fatalf("answer after %s: %v %v; want 408 closing the connection", a.at, a.resp, a.err)
			}
			if a.at > bound {
				t.Fatalf("answered after %s, more than %s", a.at, bound)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
				t.Fatalf("the connection is still open after the 408: %v", err)
			}
			return
		case <-tick.C:
			if time.Since(start) > bound {
				t.Fatalf("no answer %s after the body began (readTimeout %s)", time.Since(start), allowance)
			}
			conn.Write([]byte{' '})
		}
	}
}

// TestInflightBudgetIsSharedByRESTAndGRPC: maxInflightBytes reaches both
// protocols through one budget — while it is held, REST answers 429 with
// Retry-After and gRPC RESOURCE_EXHAUSTED; once it is free both serve.
func TestInflightBudgetIsSharedByRESTAndGRPC(t *testing.T) {
	s, _ := startSystem(t, func(c *config.Config) { c.MaxInflightBytes = "64MiB" }, nil)
	if s.Inflight.Limit() != 64<<20 {
		t.Fatalf("budget = %d bytes, want 64 MiB", s.Inflight.Limit())
	}
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewGRPCInferenceServiceClient(conn)
	infer := func() (int, codes.Code) {
		resp, err := http.Post("http://"+s.HTTPAddr()+"/v2/models/m/infer", "application/json", strings.NewReader(inferBody))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		_, err = client.ModelInfer(context.Background(), &pb.ModelInferRequest{ModelName: "m",
			Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
				Contents: &pb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}})
		return resp.StatusCode, status.Code(err)
	}
	if err := s.Inflight.Reserve(64 << 20); err != nil {
		t.Fatal(err)
	}
	if rest, g := infer(); rest != http.StatusTooManyRequests || g != codes.ResourceExhausted {
		t.Fatalf("with the budget held: REST %d, gRPC %v; want 429 and RESOURCE_EXHAUSTED", rest, g)
	}
	s.Inflight.Release(64 << 20)
	if rest, g := infer(); rest != http.StatusOK || g != codes.OK {
		t.Fatalf("with the budget free: REST %d, gRPC %v", rest, g)
	}
	if used := s.Inflight.Used(); used != 0 {
		t.Fatalf("%d bytes still reserved after both answered", used)
	}
}
