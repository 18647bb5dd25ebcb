package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/internal/ratelimit"
)

// CacheTTL is how long a verified token is trusted without asking the store
// again: a token revoked by another process (reset-admin-token) or expired
// stops working within it. Revocations through this Authenticator take effect
// at once.
const CacheTTL = time.Second

// FlushInterval is how often last-used times are written to the store.
const FlushInterval = 5 * time.Second

// maxCached bounds the verified-token cache (it only ever holds valid tokens).
const maxCached = 10000

// BootstrapName names the admin token a server makes on its first start.
const BootstrapName = "bootstrap-admin"

// Options configure an Authenticator.
type Options struct {
	Store Store
	// DefaultLimit is every token's rate limit unless the token has its own.
	DefaultLimit Limit
	Logger       *slog.Logger
	Now          func() time.Time
}

// Authenticator verifies tokens (cached for CacheTTL), manages them, and
// records when each was last used.
type Authenticator struct {
	store Store
	def   Limit
	log   *slog.Logger
	now   func() time.Time

	mu       sync.RWMutex
	cache    map[string]*entry             // by full token string
	limiters map[string]*ratelimit.Limiter // by token id; survive re-verification
}

type entry struct {
	id      *Identity
	expires time.Time // zero: never
	checked time.Time
	used    atomic.Int64 // unix nanos of the last use
	flushed atomic.Int64 // the last use written to the store
}

// New returns an Authenticator over opts.Store.
func New(opts Options) *Authenticator {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Authenticator{
		store: opts.Store, def: opts.DefaultLimit, log: opts.Logger.With("component", "auth"), now: opts.Now,
		cache: map[string]*entry{}, limiters: map[string]*ratelimit.Limiter{},
	}
}

var errInvalid = errs.New(errs.Unauthenticated, "invalid token")

// Authenticate returns the identity of a bearer token. The answer for a valid
// token is cached for CacheTTL; an expired token is refused at once.
func (a *Authenticator) Authenticate(ctx context.Context, tok string) (*Identity, error) {
	now := a.now()
	a.mu.RLock()
	e := a.cache[tok]
	a.mu.RUnlock()
	if e == nil || now.Sub(e.checked) >= CacheTTL || now.Before(e.checked) {
		var err error
		if e, err = a.verify(ctx, tok, now); err != nil {
			return nil, err
		}
	}
	if !e.expires.IsZero() && !now.Before(e.expires) {
		return nil, errs.New(errs.Unauthenticated, "token expired at %s; ask an admin for a new one", e.expires.UTC().Format(time.RFC3339))
	}
	e.used.Store(now.UnixNano())
	return e.id, nil
}

// verify looks the token up in the store and caches it when valid.
func (a *Authenticator) verify(ctx context.Context, tok string, now time.Time) (*entry, error) {
	tid, secret, ok := parseToken(tok)
	if !ok {
		return nil, errInvalid
	}
	t, err := a.store.GetToken(ctx, tid)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, errInvalid
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "tokens cannot be checked right now")
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(t.SecretHash)) != 1 {
		return nil, errInvalid
	}
	switch t.State(now) {
	case "revoked":
		a.drop(tid)
		return nil, errs.New(errs.Unauthenticated, "token %s was revoked", tid)
	case "expired":
		a.drop(tid)
		return nil, errs.New(errs.Unauthenticated, "token expired at %s; ask an admin for a new one", t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	e := &entry{checked: now}
	if t.ExpiresAt != nil {
		e.expires = *t.ExpiresAt
	}
	limit := a.def
	if t.RateLimit != nil {
		limit = *t.RateLimit
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	lim := a.limiters[tid]
	if !lim.Is(limit) {
		lim = ratelimit.NewLimiter(limit, "token "+t.ID)
		a.limiters[tid] = lim
	}
	e.id = &Identity{TokenID: t.ID, Name: t.Name, Role: t.Role, Scopes: t.Scopes, limiter: lim}
	if old := a.cache[tok]; old != nil {
		e.used.Store(old.used.Load())
		e.flushed.Store(old.flushed.Load())
	}
	if len(a.cache) >= maxCached {
		a.cache = map[string]*entry{}
	}
	a.cache[tok] = e
	return e, nil
}

// drop forgets every cached verification of token id.
func (a *Authenticator) drop(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, e := range a.cache {
		if e.id.TokenID == id {
			delete(a.cache, k)
		}
	}
	delete(a.limiters, id)
}

// CreateRequest describes a new token.
type CreateRequest struct {
	Name   string   `json:"name,omitempty"`
	Role   string   `json:"role"`
	Scopes []string `json:"scopes"`
	// ExpiresIn is a duration ("30d", "12h"); "" or "0" never expires.
	ExpiresIn string `json:"expiresIn,omitempty"`
	RateLimit *Limit `json:"rateLimit,omitempty"`
	// Source is the audit source of the change (set by the server).
	Source string `json:"-"`
}

// Created is a new token: its record and, this once, the token itself.
type Created struct {
	Token
	Secret string `json:"token"`
}

// Create makes a token. by must be an admin whose scopes cover the new token's.
func (a *Authenticator) Create(ctx context.Context, by *Identity, req CreateRequest) (Created, error) {
	const op = "auth: create token: %w"
	role, err := ParseRole(req.Role)
	if err != nil {
		return Created{}, fmt.Errorf(op, err)
	}
	scopes, err := ValidateScopes(req.Scopes)
	if err != nil {
		return Created{}, fmt.Errorf(op, err)
	}
	if err := validateTokenName(req.Name); err != nil {
		return Created{}, fmt.Errorf(op, err)
	}
	if by == nil || !by.Role.Grants(PermAdmin) || !by.Covers(scopes) {
		return Created{}, fmt.Errorf(op, errs.New(errs.PermissionDenied,
			"%s may create tokens only within its own scopes (%s)", by.Actor(), strings.Join(by.scopesOrNone(), ",")))
	}
	now := a.now()
	t := Token{Name: req.Name, Role: role, Scopes: scopes, CreatedBy: by.Actor(), CreatedAt: now}
	if req.ExpiresIn != "" && req.ExpiresIn != "0" {
		d, err := ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return Created{}, fmt.Errorf(op, errs.New(errs.InvalidArgument,
				"expires %q: want a positive duration such as 30d, 12h or 1w (0: never)", req.ExpiresIn).WithField("expiresIn"))
		}
		at := now.Add(d)
		t.ExpiresAt = &at
	}
	if req.RateLimit != nil {
		if err := req.RateLimit.Validate(); err != nil {
			return Created{}, fmt.Errorf(op, err)
		}
		t.RateLimit = req.RateLimit
	}
	return a.create(ctx, t, AuditEvent{Actor: by.Actor(), Source: req.Source, Action: "create",
		Summary: fmt.Sprintf("create token %q role %s scopes %s", t.Name, t.Role, strings.Join(t.Scopes, ","))})
}

func (a *Authenticator) create(ctx context.Context, t Token, ev AuditEvent) (Created, error) {
	id, tok, hash, err := newToken()
	if err != nil {
		return Created{}, err
	}
	t.ID, t.SecretHash = id, hash
	if err := a.store.CreateToken(ctx, t, ev); err != nil {
		return Created{}, fmt.Errorf("auth: create token: %w", err)
	}
	a.log.Info("token created", "id", t.ID, "name", t.Name, "role", t.Role, "scopes", t.Scopes, "by", ev.Actor)
	return Created{Token: t, Secret: tok}, nil
}

func (id *Identity) scopesOrNone() []string {
	if id == nil {
		return nil
	}
	return id.Scopes
}

func validateTokenName(name string) error {
	if len(name) > 63 {
		return errs.New(errs.InvalidArgument, "token name: at most 63 characters").WithField("name")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return errs.New(errs.InvalidArgument, "token name: printable characters only").WithField("name")
		}
	}
	return nil
}

// List returns the tokens by's scopes cover, newest first, with last-used
// times not yet flushed filled in.
func (a *Authenticator) List(ctx context.Context, by *Identity) ([]Token, error) {
	ts, err := a.store.ListTokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: list tokens: %w", err)
	}
	pending := a.pending()
	out := ts[:0]
	for _, t := range ts {
		if !by.Covers(t.Scopes) {
			continue
		}
		if at, ok := pending[t.ID]; ok && (t.LastUsedAt == nil || at.After(*t.LastUsedAt)) {
			t.LastUsedAt = &at
		}
		out = append(out, t)
	}
	slices.Reverse(out) // the store lists oldest first
	return out, nil
}

// Revoke revokes token id; it stops working at once on this server and within
// CacheTTL on any other sharing the store.
func (a *Authenticator) Revoke(ctx context.Context, by *Identity, id, source string) (Token, error) {
	const op = "auth: revoke token: %w"
	t, err := a.store.GetToken(ctx, id)
	if err != nil {
		return Token{}, fmt.Errorf(op, err)
	}
	if by == nil || !by.Role.Grants(PermAdmin) || !by.Covers(t.Scopes) {
		return Token{}, fmt.Errorf(op, errs.New(errs.PermissionDenied,
			"%s may revoke only tokens within its own scopes", by.Actor()))
	}
	now := a.now()
	if err := a.store.RevokeToken(ctx, id, now, AuditEvent{Actor: by.Actor(), Source: source, Action: "delete",
		Summary: fmt.Sprintf("revoke token %q", t.Name)}); err != nil {
		return Token{}, fmt.Errorf(op, err)
	}
	a.drop(id)
	if t.RevokedAt == nil {
		t.RevokedAt = &now
	}
	a.log.Info("token revoked", "id", id, "name", t.Name, "by", by.Actor())
	return t, nil
}

// Bootstrap makes the first admin token (scope *) when the store has no token
// at all, and returns it; "" when tokens exist already.
func (a *Authenticator) Bootstrap(ctx context.Context) (string, error) {
	ts, err := a.store.ListTokens(ctx)
	if err != nil {
		return "", fmt.Errorf("auth: bootstrap: %w", err)
	}
	if len(ts) > 0 {
		return "", nil
	}
	c, err := a.bootstrapToken(ctx, "server", "create bootstrap admin token")
	return c.Secret, err
}

// ResetAdmin revokes every bootstrap admin token and makes a new one: the way
// back in for whoever can read the data dir.
func (a *Authenticator) ResetAdmin(ctx context.Context) (string, error) {
	ts, err := a.store.ListTokens(ctx)
	if err != nil {
		return "", fmt.Errorf("auth: reset admin token: %w", err)
	}
	now := a.now()
	for _, t := range ts {
		if t.Bootstrap && t.RevokedAt == nil {
			if err := a.store.RevokeToken(ctx, t.ID, now, AuditEvent{Actor: "server", Source: "reset-admin-token",
				Action: "delete", Summary: "revoke bootstrap admin token (reset-admin-token)"}); err != nil {
				return "", fmt.Errorf("auth: reset admin token: %w", err)
			}
			a.drop(t.ID)
		}
	}
	c, err := a.bootstrapToken(ctx, "reset-admin-token", "create bootstrap admin token (reset-admin-token)")
	return c.Secret, err
}

func (a *Authenticator) bootstrapToken(ctx context.Context, source, summary string) (Created, error) {
	return a.create(ctx, Token{Name: BootstrapName, Role: RoleAdmin, Scopes: []string{AllScopes}, Bootstrap: true,
		CreatedBy: "server", CreatedAt: a.now()}, AuditEvent{Actor: "server", Source: source, Action: "create", Summary: summary})
}

// pending returns last-used times not yet written, by token id.
func (a *Authenticator) pending() map[string]time.Time {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := map[string]time.Time{}
	for _, e := range a.cache {
		if u := e.used.Load(); u > e.flushed.Load() {
			if t := time.Unix(0, u); t.After(out[e.id.TokenID]) {
				out[e.id.TokenID] = t
			}
		}
	}
	return out
}

// Flush writes pending last-used times to the store.
func (a *Authenticator) Flush(ctx context.Context) error {
	used := a.pending()
	if len(used) == 0 {
		return nil
	}
	if err := a.store.TouchTokens(ctx, used); err != nil {
		return fmt.Errorf("auth: record token use: %w", err)
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, e := range a.cache {
		if at, ok := used[e.id.TokenID]; ok && at.UnixNano() > e.flushed.Load() {
			e.flushed.Store(at.UnixNano())
		}
	}
	return nil
}

// Start writes last-used times every FlushInterval until ctx ends, then once
// more. It blocks.
func (a *Authenticator) Start(ctx context.Context) error {
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := a.Flush(context.WithoutCancel(ctx)); err != nil {
				a.log.Warn("last-used times not recorded", "err", err)
			}
			return nil
		case <-t.C:
			if err := a.Flush(ctx); err != nil {
				a.log.Warn("last-used times not recorded", "err", err)
			}
		}
	}
}

// IdentityByID is the identity of token id as it stands now, for work done
// later on behalf of whoever started it (a GitSource syncs as the identity
// that applied it): Unauthenticated when the token was revoked, has expired
// or no longer exists. It carries no rate limit: the work is the server's.
func (a *Authenticator) IdentityByID(ctx context.Context, id string) (*Identity, error) {
	t, err := a.store.GetToken(ctx, id)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, errs.New(errs.Unauthenticated, "token %s no longer exists", id)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "tokens cannot be checked right now")
	}
	switch t.State(a.now()) {
	case "revoked":
		return nil, errs.New(errs.Unauthenticated, "token %s was revoked", id)
	case "expired":
		return nil, errs.New(errs.Unauthenticated, "token %s expired at %s", id, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return &Identity{TokenID: t.ID, Name: t.Name, Role: t.Role, Scopes: t.Scopes}, nil
}
