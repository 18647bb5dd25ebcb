package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
)

// bareServers are the network stack's limit: a net/http server and a grpc-go
// server that read the request and answer fixed bytes of the size Nimbus answers
// the same request with. The reply is swapped before each workload.
type bareServers struct {
	httpURL  string
	grpcAddr string
	// remote: the servers run in a child process (pinned mode, pinned.go);
	// replies are set through its control path.
	remote bool

	httpReply atomic.Pointer[[]byte]
	grpcReply atomic.Pointer[pb.ModelInferResponse]

	httpSrv *http.Server
	grpcSrv *grpc.Server
	done    chan struct{}
}

// bareGRPC answers ModelInfer with a fixed response and nothing else.
type bareGRPC struct {
	pb.UnimplementedGRPCInferenceServiceServer
	b *bareServers
}

func (g bareGRPC) ModelInfer(context.Context, *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	return g.b.grpcReply.Load(), nil
}

// bareControlPath is where a bare server child takes its replies (PUT; the
// gRPC one as a marshalled ModelInferResponse with ?kind=grpc).
const bareControlPath = "/__nimbusbench/reply"

func startBare() (*bareServers, error) { return startBareWith(false) }

// controlClient keeps no idle connection to the bare child (its control
// path is used once per workload).
var controlClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// setReplies makes the bare servers answer these bytes (REST) and this
// response (gRPC).
func (b *bareServers) setReplies(ctx context.Context, httpReply []byte, grpcReply *pb.ModelInferResponse) error {
	if !b.remote {
		b.httpReply.Store(&httpReply)
		b.grpcReply.Store(proto.CloneOf(grpcReply))
		return nil
	}
	g, err := proto.Marshal(grpcReply)
	if err != nil {
		return err
	}
	for _, r := range []struct {
		query string
		body  []byte
	}{{"", httpReply}, {"?kind=grpc", g}} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, b.httpURL+bareControlPath+r.query, bytes.NewReader(r.body))
		if err != nil {
			return err
		}
		resp, err := controlClient.Do(req)
		if err != nil {
			return fmt.Errorf("set the bare servers' reply: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("set the bare servers' reply: %s", resp.Status)
		}
	}
	return nil
}

func startBareWith(control bool) (*bareServers, error) {
	b := &bareServers{done: make(chan struct{}, 2)}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hl.Close()
		return nil, err
	}
	b.httpURL = "http://" + hl.Addr().String()
	b.grpcAddr = gl.Addr().String()
	empty := []byte{}
	b.httpReply.Store(&empty)
	b.grpcReply.Store(&pb.ModelInferResponse{})

	b.httpSrv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if control && r.Method == http.MethodPut && r.URL.Path == bareControlPath {
				b.control(w, r)
				return
			}
			io.Copy(io.Discard, r.Body)
			reply := *b.httpReply.Load()
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", strconv.Itoa(len(reply)))
			w.WriteHeader(http.StatusOK)
			w.Write(reply)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	b.grpcSrv = grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	pb.RegisterGRPCInferenceServiceServer(b.grpcSrv, bareGRPC{b: b})
	go func() {
		b.httpSrv.Serve(hl) // returns ErrServerClosed after close
		b.done <- struct{}{}
	}()
	go func() {
		b.grpcSrv.Serve(gl)
		b.done <- struct{}{}
	}()
	return b, nil
}

// control sets a reply (the child process's side of setReplies).
func (b *bareServers) control(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Query().Get("kind") == "grpc" {
		resp := &pb.ModelInferResponse{}
		if err := proto.Unmarshal(body, resp); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.grpcReply.Store(resp)
	} else {
		b.httpReply.Store(&body)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (b *bareServers) close() {
	if b.remote {
		return // the child process is stopped with the env
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.httpSrv.Shutdown(ctx)
	b.grpcSrv.Stop()
	<-b.done
	<-b.done
}
