package grpcapi

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/limits"
)

// MaxDecodeFactor bounds what decoding a ModelInferRequest may allocate:
// MaxDecodeFactor times the message's size, plus decodeSlack, as inferCost
// estimates it from the wire bytes before anything is decoded. Protobuf itself
// sets the floor for honest requests: a one-byte int64 varint becomes 8 bytes,
// and short strings in bytes_contents cost a 24-byte header and an allocation
// each (about 11× for words of a few letters). Tiny bytes_contents elements
// (up to ~60×), thousands of parameters or unpacked numbers are refused past
// it; raw_input_contents takes at most 7×.
const MaxDecodeFactor = 16

// decodeSlack lets small messages carry whatever structure they like.
const decodeSlack = 64 << 10

// admission is the verdict on one ModelInferRequest, passed from the codec that
// decoded it to the first interceptor: what it holds in the in-flight budget,
// or why it was refused.
type admission struct {
	hold limits.Hold
	err  error
}

// admitter is the server's codec — protobuf for every message — and its first
// unary interceptor. A ModelInferRequest is checked before protobuf decodes it:
// its decoding cost is estimated from the wire bytes (inferCost), refused past
// MaxDecodeFactor, and reserved in the in-flight budget with the message itself
// until the RPC ends. A codec error would reach the client as INTERNAL, so a
// refusal is handed to the interceptor, which answers it with its own code.
type admitter struct {
	proto   encoding.CodecV2
	budget  *limits.Budget
	pending sync.Map // *pb.ModelInferRequest -> *admission
}

var _ encoding.CodecV2 = (*admitter)(nil)

func newAdmitter(budget *limits.Budget) *admitter {
	return &admitter{proto: encoding.GetCodecV2("proto"), budget: budget}
}

func (a *admitter) Name() string { return a.proto.Name() }

func (a *admitter) Marshal(v any) (mem.BufferSlice, error) { return a.proto.Marshal(v) }

func (a *admitter) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*pb.ModelInferRequest)
	if !ok {
		return a.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	adm := &admission{hold: a.budget.NewHold()}
	size := int64(len(b))
	if cost := inferCost(b); cost > MaxDecodeFactor*size+decodeSlack {
		adm.err = status.Errorf(codes.ResourceExhausted,
			"decoded, this %s message would take about %s, more than %d× its size; send BYTES tensors in raw_input_contents, numbers packed, and fewer parameters",
			config.FormatBytes(size), config.FormatBytes(cost), MaxDecodeFactor)
	} else if err := adm.hold.Reserve(size + cost); err != nil {
		adm.err = err // answered in admit, where the RPC's trailer can carry its retry hint
	} else if err := proto.Unmarshal(b, req); err != nil {
		adm.hold.Release()
		return err
	}
	a.pending.Store(req, adm)
	return nil
}

// admit answers a refused ModelInferRequest, and releases what an admitted one
// holds once its RPC has been answered.
func (a *admitter) admit(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	r, ok := req.(*pb.ModelInferRequest)
	if !ok {
		return next(ctx, req)
	}
	v, ok := a.pending.LoadAndDelete(r)
	if !ok {
		return next(ctx, req)
	}
	adm := v.(*admission)
	defer adm.hold.Release()
	if adm.err != nil {
		if _, isStatus := status.FromError(adm.err); isStatus {
			return nil, adm.err
		}
		return nil, errs.GRPC(ctx, adm.err)
	}
	return next(ctx, req)
}
