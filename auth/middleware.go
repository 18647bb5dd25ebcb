package auth

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// Guard attaches identities to requests: the bearer token's when auth is on,
// Anonymous when it is off. Routes then ask Authorize.
type Guard struct {
	// a is nil when auth is off.
	a *Authenticator
}

// NewGuard returns a Guard over a; nil a means auth is off (every request is
// Anonymous, an admin of everything).
func NewGuard(a *Authenticator) *Guard { return &Guard{a: a} }

// Enabled reports whether requests need tokens.
func (g *Guard) Enabled() bool { return g.a != nil }

// bearer returns the token of an "Authorization: Bearer <token>" value.
func bearer(h string) (string, bool) {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", h != ""
}

// identify returns ctx carrying the caller's identity, or the reason it has
// none. A request without a token gets neither: routes that need one say so.
func (g *Guard) identify(ctx context.Context, header string) context.Context {
	if g.a == nil {
		return WithIdentity(ctx, Anonymous)
	}
	tok, present := bearer(header)
	switch {
	case tok != "":
	case present:
		return WithFailure(ctx, errs.New(errs.Unauthenticated, "the Authorization header must be \"Bearer <token>\""))
	default:
		return ctx
	}
	id, err := g.a.Authenticate(ctx, tok)
	if err != nil {
		return WithFailure(ctx, err)
	}
	return WithIdentity(ctx, id)
}

// HTTP returns next with each request's identity in its context.
func (g *Guard) HTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(g.identify(r.Context(), r.Header.Get("Authorization"))))
	})
}

// GRPCRules maps full method names ("/inference.GRPCInferenceService/ModelInfer")
// to what they need; nsOf reads the namespace a call is about. A method
// missing from the map is refused: a new service cannot be served unguarded.
type GRPCRules struct {
	Methods map[string]Rule
	NSOf    func(ctx context.Context) string
}

func (g *Guard) grpcAuthorize(ctx context.Context, rules GRPCRules, method string) (context.Context, error) {
	rule, ok := rules.Methods[method]
	if !ok {
		return ctx, status.Errorf(errs.PermissionDenied.GRPCCode(), "method %s has no access rule; refused", method)
	}
	if rule.Perm == PermOpen {
		return ctx, nil
	}
	var header string
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		header = v[0]
	}
	ctx = g.identify(ctx, header)
	ns := ""
	if rules.NSOf != nil {
		ns = rules.NSOf(ctx)
	}
	if err := Authorize(ctx, rule, ns); err != nil {
		return ctx, errs.GRPC(ctx, err)
	}
	return ctx, nil
}

// UnaryInterceptor authorizes unary calls by rules.
func (g *Guard) UnaryInterceptor(rules GRPCRules) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		ctx, err := g.grpcAuthorize(ctx, rules, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// StreamInterceptor authorizes streaming calls (health Watch, reflection) by rules.
func (g *Guard) StreamInterceptor(rules GRPCRules) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		ctx, err := g.grpcAuthorize(ss.Context(), rules, info.FullMethod)
		if err != nil {
			return err
		}
		return next(srv, &identityStream{ServerStream: ss, ctx: ctx})
	}
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identityStream) Context() context.Context { return s.ctx }
