// Package grpcapi serves the Open Inference Protocol v2 gRPC service
// (inference.GRPCInferenceService) over a small Backend interface. Handlers are thin:
// they convert protobuf messages to serving types (RequestFromProto,
// ResponseToProto), call the Backend, and map errors once through internal/errs.
// NewGRPCServer builds a grpc.Server with Nimbus's message size limit, the standard
// health service and server reflection.
package grpcapi

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/api/oip"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/limits"
	"github.com/nimbus-ai/nimbus/serving"
	"github.com/nimbus-ai/nimbus/telemetry"
	"github.com/nimbus-ai/nimbus/tensor"
)

// DefaultMaxMessageBytes is the request and response size limit when
// Options.MaxMessageBytes is 0. It matches the REST body limit so a request that
// fits one protocol fits the other (gRPC's own default is 4 MiB).
const DefaultMaxMessageBytes = oip.DefaultMaxBodyBytes

// NamespaceMetadataKey is the incoming gRPC metadata key that selects the namespace.
const NamespaceMetadataKey = "nimbus-namespace"

// RoutingKeyMetadataKey keeps a caller of an InferenceService on one target.
const RoutingKeyMetadataKey = "nimbus-routing-key"

// TargetMetadataKey is the response header naming the model and version that
// answered a request to an InferenceService ("fraud-detector@4").
const TargetMetadataKey = "nimbus-target"

// ColdStartMetadataKey is the response header of answers that waited for
// their version to load: the wait in milliseconds ("12.345"), as REST's
// Nimbus-Cold-Start.
const ColdStartMetadataKey = "nimbus-cold-start"

// DefaultNamespace is used when a request carries no namespace metadata; it is the
// namespace of the REST API's un-prefixed routes.
const DefaultNamespace = oip.DefaultNamespace

// ServiceName is the fully qualified name of the inference service, as the health and
// reflection services report it.
const ServiceName = "inference.GRPCInferenceService"

// Backend is what the gRPC service needs from the serving layer.
type Backend interface {
	// ResolveInputs checks that a request's model and version exist before its
	// tensors are converted, and returns the inputs it expects when they are
	// known (see serving.Manager.ResolveInputs).
	ResolveInputs(ctx context.Context, ns, model, version string) (inputs []tensor.TensorSpec, known bool, err error)
	Infer(ctx context.Context, req *serving.InferRequest) (*serving.InferResponse, error)
	ModelMetadata(ctx context.Context, ns, model, version string) (*serving.ModelMetadata, error)
	ModelReady(ctx context.Context, ns, model, version string) (bool, error)
	ServerReady(ctx context.Context) bool
	ServerMetadata() serving.ServerMetadata
}

// Options configure the gRPC service and server.
type Options struct {
	// Authorize runs after panic recovery and before the in-flight budget
	// admits a call, so an unauthorized caller is refused as such and holds
	// none of the budget.
	Authorize []grpc.UnaryServerInterceptor
	// MaxMessageBytes limits received and sent messages; 0 means DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Metrics records every ModelInfer; nil records nothing.
	Metrics *telemetry.Metrics
	// Logger logs internal errors and recovered panics; nil discards.
	Logger *slog.Logger
	// Health is the health service NewGRPCServer registers, with "" and ServiceName
	// set to SERVING. Pass health.NewServer() to keep a handle and call its Shutdown
	// method when draining, which turns every service NOT_SERVING. If nil,
	// NewGRPCServer makes one the caller cannot reach.
	Health *health.Server
	// Budget bounds the bytes requests in flight hold together (messages and
	// what decoding them allocates); nil is unlimited. Shared with REST.
	Budget *limits.Budget
	// MaxConcurrentStreams bounds the RPCs one connection runs at once; 0
	// means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// HandshakeTimeout bounds how long a new connection may take to send its
	// HTTP/2 preface and settings; 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// KeepaliveMinTime is the shortest interval between a client's pings;
	// closer pings are strikes, and the third closes the connection
	// (GOAWAY ENHANCE_YOUR_CALM "too_many_pings"). 0 means DefaultKeepaliveMinTime.
	KeepaliveMinTime time.Duration
}

// Connection limits of NewGRPCServer.
const (
	DefaultMaxConcurrentStreams = 256
	DefaultHandshakeTimeout     = 10 * time.Second
	// DefaultKeepaliveMinTime is the shortest ping interval grpc-go clients
	// may configure (they raise anything lower to 10s).
	DefaultKeepaliveMinTime = 10 * time.Second
	// keepaliveTime and keepaliveTimeout: an idle connection is pinged every
	// keepaliveTime and closed when the ping is not answered in keepaliveTimeout,
	// so dead peers do not hold connections.
	keepaliveTime    = 2 * time.Minute
	keepaliveTimeout = 20 * time.Second
)

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (o Options) maxBytes() int {
	if o.MaxMessageBytes > 0 {
		return o.MaxMessageBytes
	}
	return DefaultMaxMessageBytes
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Server implements inference.GRPCInferenceService over a Backend.
type Server struct {
	pb.UnimplementedGRPCInferenceServiceServer

	b       Backend
	metrics *telemetry.Metrics
	log     *slog.Logger
}

var _ pb.GRPCInferenceServiceServer = (*Server)(nil)

// New returns the inference service for b.
func New(b Backend, opts Options) *Server {
	return &Server{b: b, metrics: opts.Metrics, log: opts.logger().With("component", "grpcapi")}
}

// Register registers the inference service on g.
func (s *Server) Register(g *grpc.Server) { pb.RegisterGRPCInferenceServiceServer(g, s) }

// NewGRPCServer returns a grpc.Server whose receive and send limits are
// opts.MaxMessageBytes, with connection limits (concurrent streams per
// connection, a handshake timeout, keepalive pings of idle connections and
// enforcement against clients that ping too often), a codec that bounds and
// budgets what decoding a ModelInferRequest allocates (see admitter), a
// panic-recovering interceptor, the grpc.health.v1 service (see Options.Health)
// and server reflection registered. extra options (TLS, auth interceptors) are
// appended; their interceptors run after these. Register the inference service
// with Server.Register.
func NewGRPCServer(opts Options, extra ...grpc.ServerOption) *grpc.Server {
	log := opts.logger().With("component", "grpcapi")
	max := opts.maxBytes()
	adm := newAdmitter(opts.Budget)
	sopts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(max),
		grpc.MaxSendMsgSize(max),
		grpc.MaxConcurrentStreams(orDefault(opts.MaxConcurrentStreams, DefaultMaxConcurrentStreams)),
		grpc.ConnectionTimeout(orDefault(opts.HandshakeTimeout, DefaultHandshakeTimeout)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: orDefault(opts.KeepaliveMinTime, DefaultKeepaliveMinTime),
			// Clients that keep idle connections alive are well-behaved as long
			// as they respect MinTime.
			PermitWithoutStream: true,
		}),
		grpc.ForceServerCodecV2(adm),
		grpc.ChainUnaryInterceptor(append(append([]grpc.UnaryServerInterceptor{recoverUnary(log)}, opts.Authorize...), adm.admit)...),
	}, extra...)
	g := grpc.NewServer(sopts...)
	hs := opts.Health
	if hs == nil {
		hs = health.NewServer()
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	reflection.Register(g)
	return g
}

// recoverUnary turns a handler panic into codes.Internal so one bad request cannot
// take the process down; the stack goes to the log, not the client.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in gRPC handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
		}()
		return h(ctx, req)
	}
}

// namespace reads the namespace from incoming metadata. ValueFromIncomingContext
// copies only this key's values, where FromIncomingContext would copy every header
// on every request.
func namespace(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, NamespaceMetadataKey); len(v) > 0 && v[0] != "" {
		return v[0]
	}
	return DefaultNamespace
}

// errNoName answers ModelReady and ModelMetadata requests without a model name.
var errNoName = status.Error(codes.InvalidArgument, "name is required")

// toStatus maps err to a gRPC status with the user-safe message; internal causes are
// logged, never sent.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	k := errs.KindOf(err)
	if k == errs.Internal {
		s.log.ErrorContext(ctx, "gRPC request failed", "method", method, "err", err)
	}
	return errs.GRPC(ctx, err)
}

// ServerLive reports that the process answers requests.
func (s *Server) ServerLive(context.Context, *pb.ServerLiveRequest) (*pb.ServerLiveResponse, error) {
	return &pb.ServerLiveResponse{Live: true}, nil
}

// ServerReady reports whether the backend is ready.
func (s *Server) ServerReady(ctx context.Context, _ *pb.ServerReadyRequest) (*pb.ServerReadyResponse, error) {
	return &pb.ServerReadyResponse{Ready: s.b.ServerReady(ctx)}, nil
}

// ModelReady reports whether a model version is ready in the request's namespace.
func (s *Server) ModelReady(ctx context.Context, req *pb.ModelReadyRequest) (*pb.ModelReadyResponse, error) {
	if req.GetName() == "" {
		return nil, errNoName
	}
	ok, err := s.b.ModelReady(ctx, namespace(ctx), req.GetName(), req.GetVersion())
	if err != nil {
		return nil, s.toStatus(ctx, "ModelReady", err)
	}
	return &pb.ModelReadyResponse{Ready: ok}, nil
}

// ServerMetadata returns the server's name, version and extensions.
func (s *Server) ServerMetadata(context.Context, *pb.ServerMetadataRequest) (*pb.ServerMetadataResponse, error) {
	m := s.b.ServerMetadata()
	return &pb.ServerMetadataResponse{Name: m.Name, Version: m.Version, Extensions: m.Extensions}, nil
}

// ModelMetadata returns a model's platform, versions and signature.
func (s *Server) ModelMetadata(ctx context.Context, req *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	if req.GetName() == "" {
		return nil, errNoName
	}
	m, err := s.b.ModelMetadata(ctx, namespace(ctx), req.GetName(), req.GetVersion())
	if err != nil {
		return nil, s.toStatus(ctx, "ModelMetadata", err)
	}
	if m == nil {
		return nil, s.toStatus(ctx, "ModelMetadata", errs.New(errs.Internal, "backend returned no metadata"))
	}
	return ModelMetadataToProto(m), nil
}

// ModelMetadataToProto converts model metadata. A value OIP cannot carry (a
// TensorSpec whose Kind is neither "" nor "tensor", such as an ONNX sequence of maps)
// is still listed, with datatype "", so clients see the model's whole signature while
// knowing they cannot request it.
func ModelMetadataToProto(m *serving.ModelMetadata) *pb.ModelMetadataResponse {
	return &pb.ModelMetadataResponse{
		Name:     m.Name,
		Versions: m.Versions,
		Platform: m.Platform,
		Inputs:   specsToProto(m.Inputs),
		Outputs:  specsToProto(m.Outputs),
	}
}

func specsToProto(specs []tensor.TensorSpec) []*pb.ModelMetadataResponse_TensorMetadata {
	out := make([]*pb.ModelMetadataResponse_TensorMetadata, 0, len(specs))
	for _, sp := range specs {
		dt := ""
		if sp.Supported() && sp.DataType.Valid() {
			dt = sp.DataType.String()
		}
		out = append(out, &pb.ModelMetadataResponse_TensorMetadata{Name: sp.Name, Datatype: dt, Shape: sp.Shape})
	}
	return out
}

// ModelInfer converts the request, runs it on the backend and answers in the form
// the request used: raw_output_contents for raw_input_contents, else typed contents.
func (s *Server) ModelInfer(ctx context.Context, req *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	start := time.Now()
	ns := namespace(ctx)
	resp, version, err := s.infer(ctx, ns, req)
	code := codes.OK
	if err != nil {
		err = s.toStatus(ctx, "ModelInfer", err)
		code = status.Code(err)
	}
	s.metrics.ObserveRequest(ns, req.GetModelName(), version, "grpc", code.String(), time.Since(start))
	return resp, err
}

// infer returns the response and the version that answered ("" if none). The
// model is resolved before the tensors are converted, and each input is
// checked against its signature before its data is.
func (s *Server) infer(ctx context.Context, ns string, req *pb.ModelInferRequest) (*pb.ModelInferResponse, string, error) {
	var check func(i int, t *tensor.Tensor) error
	if model := req.GetModelName(); model != "" {
		inputs, known, err := s.b.ResolveInputs(ctx, ns, model, req.GetModelVersion())
		if err != nil {
			return nil, "", fmt.Errorf("infer %s/%s: %w", ns, model, err)
		}
		if known {
			check = func(i int, t *tensor.Tensor) error { return serving.CheckInput(model, inputs, i, t) }
		}
	}
	ir, err := requestFromProto(req, check)
	if err != nil {
		return nil, "", err
	}
	ir.Namespace = ns
	if v := metadata.ValueFromIncomingContext(ctx, RoutingKeyMetadataKey); len(v) > 0 {
		ir.RoutingKey = v[0]
	}
	res, err := s.b.Infer(ctx, ir)
	if err != nil {
		return nil, "", fmt.Errorf("infer %s/%s: %w", ns, ir.Model, err)
	}
	if res == nil {
		return nil, "", errs.New(errs.Internal, "backend returned no response")
	}
	out, err := ResponseToProto(res, len(req.GetRawInputContents()) > 0)
	if err != nil {
		return nil, res.ModelVersion, err
	}
	if out.Id == "" {
		out.Id = req.GetId() // the spec echoes the id whether or not the backend did
	}
	// Best effort: a header can only fail once headers were sent.
	if res.Target != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs(TargetMetadataKey, res.Target))
	}
	if res.ColdStart > 0 {
		_ = grpc.SetHeader(ctx, metadata.Pairs(ColdStartMetadataKey, strconv.FormatFloat(float64(res.ColdStart.Microseconds())/1000, 'f', 3, 64)))
	}
	return out, res.ModelVersion, nil
}
