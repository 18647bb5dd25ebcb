package errs

import (
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// PushbackTrailer is gRPC's retry pushback trailer (gRFC A6): how many
// milliseconds a client should wait before it tries again.
const PushbackTrailer = "grpc-retry-pushback-ms"

// GRPC returns err as a gRPC status with its public message. An error with
// a retry hint (RetryAfter: an overloaded queue, a rate limit, a model
// still loading) also sets the grpc-retry-pushback-ms trailer on the RPC
// of ctx — the gRPC form of REST's Retry-After.
func GRPC(ctx context.Context, err error) error {
	if ra := RetryAfterOf(err); ra > 0 {
		// Outside a server RPC there is no trailer to set: the status stands alone.
		_ = grpc.SetTrailer(ctx, metadata.Pairs(PushbackTrailer, strconv.FormatInt(max(1, ra.Milliseconds()), 10)))
	}
	return status.Error(KindOf(err).GRPCCode(), PublicMessage(err))
}
