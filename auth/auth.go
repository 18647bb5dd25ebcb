// Package auth decides who calls Nimbus and what they may do: API tokens (random
// secrets shown once, stored hashed) carrying a role and the namespaces it applies
// to, the permission every route needs, per-token rate limits, and the identity a
// request carries through its context into the audit log. It knows nothing of
// HTTP routes or gRPC methods: the API packages declare a Rule per route and ask
// Authorize.
package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/ratelimit"
)

// Limit is a rate limit (a token bucket); the zero Limit is unlimited.
type Limit = ratelimit.Limit

// ParseLimit reads "RPS" or "RPS:BURST" ("100", "50:200"; "" or "0": unlimited).
func ParseLimit(s string) (Limit, error) { return ratelimit.Parse(s) }

// Role is what a token may do, within its scopes.
type Role string

// Roles, from most to least powerful.
const (
	// RoleAdmin may do everything in its scopes, including tokens and (with
	// scope "*") server-wide operations such as garbage collection.
	RoleAdmin Role = "admin"
	// RoleDeployer manages models and services (later triggers and sources),
	// reads everything and may call inference.
	RoleDeployer Role = "deployer"
	// RoleInvoker calls inference and reads model metadata, nothing else.
	RoleInvoker Role = "invoker"
	// RoleViewer reads: the management API, events, status, metrics.
	RoleViewer Role = "viewer"
)

// Roles lists every role, most powerful first.
var Roles = []Role{RoleAdmin, RoleDeployer, RoleInvoker, RoleViewer}

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(Roles, r) {
		return r, nil
	}
	return "", errs.New(errs.InvalidArgument, "role %q: want one of admin, deployer, invoker, viewer", s).WithField("role")
}

// Perm is what a request needs.
type Perm uint8

// Permissions. A route needs exactly one.
const (
	// PermOpen needs no token (health checks).
	PermOpen Perm = iota
	// PermAuthenticated needs any valid token (who am I).
	PermAuthenticated
	// PermMetadata reads OIP server and model metadata and readiness.
	PermMetadata
	// PermInfer runs inference.
	PermInfer
	// PermRead reads the management API: models, versions, resources, events, status, metrics.
	PermRead
	// PermWrite changes models, versions, aliases, serving settings, blobs and resources.
	PermWrite
	// PermAdmin manages tokens and runs server-wide maintenance.
	PermAdmin
)

var permNames = [...]string{
	PermOpen: "open", PermAuthenticated: "authenticated", PermMetadata: "read metadata",
	PermInfer: "run inference", PermRead: "read", PermWrite: "change resources", PermAdmin: "administer",
}

func (p Perm) String() string {
	if int(p) < len(permNames) {
		return permNames[p]
	}
	return fmt.Sprintf("perm(%d)", p)
}

// rolePerms is the bit set of permissions each role grants.
var rolePerms = map[Role]uint32{
	RoleViewer:   bits(PermAuthenticated, PermMetadata, PermRead),
	RoleInvoker:  bits(PermAuthenticated, PermMetadata, PermInfer),
	RoleDeployer: bits(PermAuthenticated, PermMetadata, PermInfer, PermRead, PermWrite),
	RoleAdmin:    bits(PermAuthenticated, PermMetadata, PermInfer, PermRead, PermWrite, PermAdmin),
}

func bits(ps ...Perm) uint32 {
	var b uint32
	for _, p := range ps {
		b |= 1 << p
	}
	return b
}

// Grants reports whether role r includes permission p.
func (r Role) Grants(p Perm) bool { return p == PermOpen || rolePerms[r]&(1<<p) != 0 }

// AllScopes is the scope that covers every namespace and the server itself.
const AllScopes = "*"

// Scope says which namespace a Rule's permission applies to.
type Scope uint8

const (
	// InNamespace: the request's namespace (path, metadata) must be in scope.
	InNamespace Scope = iota
	// Cluster: the request is about the whole server; scope "*" is needed.
	Cluster
	// AnyNamespace: the permission in at least one namespace lets the request
	// through; the handler then filters what it returns, or checks each
	// namespace the request touches (apply, delete, cluster-wide lists).
	AnyNamespace
)

// Rule is what one route needs.
type Rule struct {
	Perm  Perm
	Scope Scope
}

// Common rules.
var (
	Open          = Rule{Perm: PermOpen}
	Authenticated = Rule{Perm: PermAuthenticated, Scope: AnyNamespace}
)

// Needs returns the rule for perm in the request's namespace.
func Needs(p Perm) Rule { return Rule{Perm: p} }

// NeedsCluster returns the rule for perm on the whole server.
func NeedsCluster(p Perm) Rule { return Rule{Perm: p, Scope: Cluster} }

// NeedsAny returns the rule for perm in some namespace; the handler checks each.
func NeedsAny(p Perm) Rule { return Rule{Perm: p, Scope: AnyNamespace} }

func (r Rule) String() string {
	switch r.Scope {
	case Cluster:
		return r.Perm.String() + " (server-wide)"
	case AnyNamespace:
		return r.Perm.String() + " (some namespace)"
	}
	return r.Perm.String()
}

// Identity is who makes a request.
type Identity struct {
	// TokenID is the token's public id; "" for the anonymous identity of a
	// server running with auth off.
	TokenID string
	Name    string
	Role    Role
	// Scopes are namespaces, or "*" for all.
	Scopes []string
	// limiter is the token's rate limit; nil means none.
	limiter *ratelimit.Limiter
}

// Anonymous is the identity of every request when auth is off: an admin of
// everything, recorded in the audit log as "local".
var Anonymous = &Identity{Name: "local", Role: RoleAdmin, Scopes: []string{AllScopes}}

// Actor names the identity in the audit log: "local" without a token, else the
// token id with its name ("ci (token/3f9a0c1d2e4b)").
func (id *Identity) Actor() string {
	switch {
	case id == nil || id.TokenID == "":
		return "local"
	case id.Name == "":
		return "token/" + id.TokenID
	}
	return id.Name + " (token/" + id.TokenID + ")"
}

// InScope reports whether namespace ns is in the identity's scopes; "" (the
// server itself) only with "*".
func (id *Identity) InScope(ns string) bool {
	for _, s := range id.Scopes {
		if s == AllScopes || (ns != "" && s == ns) {
			return true
		}
	}
	return false
}

// Can reports whether the identity may do p in namespace ns ("" for the server).
func (id *Identity) Can(p Perm, ns string) bool {
	if p == PermOpen {
		return true
	}
	return id != nil && id.Role.Grants(p) && id.InScope(ns)
}

// Covers reports whether every scope of other is within id's scopes: an admin
// may create, list and revoke only tokens it covers.
func (id *Identity) Covers(scopes []string) bool {
	for _, s := range scopes {
		if !id.InScope(s) {
			return false
		}
	}
	return true
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the request's identity, or nil when it has none (no token).
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

type failureKey struct{}

// WithFailure returns ctx carrying why the request's token was refused, so a
// route that needs a token answers with the reason while open routes still serve.
func WithFailure(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, failureKey{}, err)
}

// Authorize checks ctx's identity against rule for namespace ns, once per
// request (it also spends one unit of the token's rate limit). Without an
// identity it is Unauthenticated (with the reason the token was refused, if
// one was sent); with one that lacks the permission, PermissionDenied; over
// the token's rate limit, ResourceExhausted with a retry hint.
func Authorize(ctx context.Context, rule Rule, ns string) error {
	if err := check(ctx, rule, ns); err != nil {
		return err
	}
	if rule.Perm == PermOpen {
		return nil
	}
	return FromContext(ctx).limiter.Allow(time.Now())
}

// check is Authorize without the rate limit.
func check(ctx context.Context, rule Rule, ns string) error {
	if rule.Perm == PermOpen {
		return nil
	}
	id := FromContext(ctx)
	if id == nil {
		if err, ok := ctx.Value(failureKey{}).(error); ok {
			return err
		}
		return errs.New(errs.Unauthenticated, "this endpoint needs a token: send \"Authorization: Bearer <token>\" (nimbus login, or the bootstrap token in <data-dir>/admin.token)")
	}
	var ok bool
	switch rule.Scope {
	case Cluster:
		ok = id.Can(rule.Perm, "")
	case AnyNamespace:
		ok = id.Role.Grants(rule.Perm) && len(id.Scopes) > 0
	default:
		ok = id.Can(rule.Perm, ns)
	}
	if ok {
		return nil
	}
	return Denied(id, rule, ns)
}

// Denied is the PermissionDenied error for id lacking rule in ns.
func Denied(id *Identity, rule Rule, ns string) error {
	where := "in namespace " + ns
	switch {
	case rule.Scope == Cluster || ns == "":
		where = "server-wide (needs scope *)"
	case rule.Scope == AnyNamespace:
		where = "in any namespace"
	}
	return errs.New(errs.PermissionDenied, "%s (role %s, scopes %s) may not %s %s",
		id.Actor(), id.Role, strings.Join(id.Scopes, ","), rule.Perm, where)
}

// CanNamespace checks p in a namespace a handler found in the request (an
// apply's documents, a list's query) after the route's rule let it through; it
// spends nothing of the rate limit.
func CanNamespace(ctx context.Context, p Perm, ns string) error {
	return check(ctx, Rule{Perm: p}, ns)
}
