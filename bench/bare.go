package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
)

// bareServers are the network stack's limit: a net/http server and a grpc-go
// server that read the request and answer fixed bytes of the size Nimbus answers
// the same request with. The reply is swapped before each workload.
type bareServers struct {
	httpURL  string
	grpcAddr string

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

func startBare() (*bareServers, error) {
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

func (b *bareServers) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.httpSrv.Shutdown(ctx)
	b.grpcSrv.Stop()
	<-b.done
	<-b.done
}
