package grpcapi

import (
	"errors"
	"io"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/internal/limits"
)

// TestInflatingMessageIsRefusedBeforeDecoding: a 2 MB message of a million
// empty bytes_contents elements — over 60 MB once protobuf has decoded it — is
// refused RESOURCE_EXHAUSTED, pointing at raw_input_contents, without being
// decoded.
func TestInflatingMessageIsRefusedBeforeDecoding(t *testing.T) {
	h := start(t, Options{})
	ctx := testCtx(t)
	const n = 1 << 20
	req := &pb.ModelInferRequest{ModelName: "echo", Inputs: []*pb.ModelInferRequest_InferInputTensor{{
		Name: "s", Datatype: "BYTES", Shape: []int64{n}, Contents: &pb.InferTensorContents{BytesContents: make([][]byte, n)}}}}
	if _, err := h.client.ModelInfer(ctx, rawOK()); err != nil { // warm the connection
		t.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := h.client.ModelInfer(ctx, req)
	runtime.ReadMemStats(&after)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "raw_input_contents") {
		t.Fatalf("a message inflating 60×: %v, want RESOURCE_EXHAUSTED", err)
	}
	// Client and server both hold the 2 MB message (and the client's 24 MB
	// of empty slices); decoding it would add over 60 MB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 48<<20 {
		t.Fatalf("the round trip allocated %d MB: the message was decoded", alloc>>20)
	}
	if _, err := h.client.ModelInfer(ctx, rawOK()); err != nil {
		t.Fatalf("a request after the refusal: %v", err)
	}
}

// rawOK is a small valid request for the echo model.
func rawOK() *pb.ModelInferRequest {
	return &pb.ModelInferRequest{ModelName: "echo",
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1 << 18}}},
		RawInputContents: [][]byte{make([]byte, 1<<20)}}
}

// TestMessagesReserveTheInflightBudget: while other requests hold the budget,
// a message that does not fit is refused RESOURCE_EXHAUSTED; one larger than
// the whole budget too, saying so; once the budget is free it is served, and
// what it held is returned by the time its answer arrives.
func TestMessagesReserveTheInflightBudget(t *testing.T) {
	budget := limits.NewBudget(4 << 20)
	h := start(t, Options{Budget: budget})
	ctx := testCtx(t)
	if err := budget.Reserve(3 << 20); err != nil {
		t.Fatal(err)
	}
	var trailer metadata.MD
	_, err := h.client.ModelInfer(ctx, rawOK(), grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "maxInflightBytes") {
		t.Fatalf("with the budget held: %v, want RESOURCE_EXHAUSTED", err)
	}
	if p := trailer.Get("grpc-retry-pushback-ms"); len(p) != 1 || p[0] == "" {
		t.Errorf("trailer %v: want grpc-retry-pushback-ms, the REST Retry-After", trailer)
	}
	if budget.Used() != 3<<20 {
		t.Fatalf("a refused request left %d bytes reserved", budget.Used()-3<<20)
	}
	budget.Release(3 << 20)
	if _, err := h.client.ModelInfer(ctx, rawOK()); err != nil {
		t.Fatalf("with the budget free: %v", err)
	}
	if budget.Used() != 0 {
		t.Fatalf("a served request left %d bytes reserved", budget.Used())
	}
	big := rawOK()
	big.Inputs[0].Shape = []int64{5 << 18}
	big.RawInputContents = [][]byte{make([]byte, 5<<20)}
	if _, err := h.client.ModelInfer(ctx, big); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "whole budget") {
		t.Fatalf("a message larger than the whole budget: %v", err)
	}
}

// rawConn opens a TCP connection to a server built by NewGRPCServer(opts).
func rawConn(t *testing.T, opts Options) net.Conn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPCServer(opts)
	New(&fakeBackend{}, opts).Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// handshake sends the client preface and settings and returns a framer after
// reading the server's settings, and the value it set for setting id.
func handshake(t *testing.T, conn net.Conn, id http2.SettingID) (*http2.Framer, uint32) {
	t.Helper()
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's settings: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, _ := sf.Value(id)
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return fr, v
		}
	}
}

// TestAbusivePingsCloseTheConnection: a client that pings more often than the
// enforcement policy allows gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and
// its connection is closed; one that respects the interval keeps it.
func TestAbusivePingsCloseTheConnection(t *testing.T) {
	const minTime = 300 * time.Millisecond
	t.Run("abusive", func(t *testing.T) {
		conn := rawConn(t, Options{KeepaliveMinTime: minTime})
		fr, _ := handshake(t, conn, http2.SettingMaxConcurrentStreams)
		for i := range 5 {
			if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
				break // closed already
			}
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("the connection ended without GOAWAY: %v", err)
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || string(ga.DebugData()) != "too_many_pings" {
					t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", ga.ErrCode, ga.DebugData())
				}
				break
			}
		}
		for { // then the server closes the connection
			if _, err := fr.ReadFrame(); err != nil {
				if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
					t.Fatal("the connection stayed open after GOAWAY")
				}
				return
			}
		}
	})
	t.Run("polite", func(t *testing.T) {
		conn := rawConn(t, Options{KeepaliveMinTime: minTime})
		fr, _ := handshake(t, conn, http2.SettingMaxConcurrentStreams)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := range 4 {
			if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
			for { // its ack
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("ping %d: the connection ended: %v", i, err)
				}
				if _, ok := f.(*http2.GoAwayFrame); ok {
					t.Fatalf("ping %d, %s after the last: GOAWAY", i, minTime+100*time.Millisecond)
				}
				if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == [8]byte{byte(i)} {
					break
				}
			}
			time.Sleep(minTime + 100*time.Millisecond) // the client's own pace: the behaviour under test
		}
	})
}

// TestConnectionLimits: a connection that never sends its HTTP/2 preface is
// closed after the handshake timeout, and the server announces its limit on
// concurrent streams.
func TestConnectionLimits(t *testing.T) {
	const timeout = 300 * time.Millisecond
	conn := rawConn(t, Options{HandshakeTimeout: timeout})
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("a silent connection is still open after %s (handshake timeout %s)", time.Since(start), timeout)
	}
	if took := time.Since(start); took > timeout+2*time.Second {
		t.Fatalf("a silent connection was closed after %s, handshake timeout %s", took, timeout)
	}

	conn = rawConn(t, Options{})
	_, streams := handshake(t, conn, http2.SettingMaxConcurrentStreams)
	if streams != DefaultMaxConcurrentStreams {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", streams, DefaultMaxConcurrentStreams)
	}
}
