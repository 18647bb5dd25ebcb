package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

// TokenPrefix starts every Nimbus token, so secret scanners can find leaked ones.
const TokenPrefix = "nimbus_"

// A token is TokenPrefix + id + "_" + secret: id is 12 hex digits (public: lists,
// revocation, the audit log), secret 52 base32 letters (256 bits). Only the
// secret's SHA-256 is stored; a fast hash is right for a random secret of that
// size (nothing to brute-force), and keeps verification cheap.
const (
	idLen     = 12
	secretLen = 52
	tokenLen  = len(TokenPrefix) + idLen + 1 + secretLen
)

var secretEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Token is a stored API token. The secret itself is never stored.
type Token struct {
	ID     string   `json:"id"`
	Name   string   `json:"name,omitempty"`
	Role   Role     `json:"role"`
	Scopes []string `json:"scopes"`
	// SecretHash is the hex SHA-256 of the secret part; never sent to clients.
	SecretHash string `json:"-"`
	// Bootstrap marks the admin token the server made on its first start (and
	// reset-admin-token remakes).
	Bootstrap bool `json:"bootstrap,omitempty"`
	// RateLimit overrides the server's per-token default; nil keeps it.
	RateLimit  *Limit     `json:"rateLimit,omitempty"`
	CreatedBy  string     `json:"createdBy,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
}

// State is "active", "expired" or "revoked" at now.
func (t Token) State(now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "revoked"
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return "expired"
	}
	return "active"
}

// TokenView is a token as the API shows it: never its secret or hash.
type TokenView struct {
	Token
	State string `json:"state"`
}

// ViewOf is t as the API shows it at now.
func ViewOf(t Token, now time.Time) TokenView { return TokenView{Token: t, State: t.State(now)} }

// CreatedView is the answer to a token creation: the only time the token
// itself is shown.
type CreatedView struct {
	TokenView
	Secret string `json:"token"`
}

// Whoami describes the caller.
type Whoami struct {
	Actor   string   `json:"actor"`
	TokenID string   `json:"tokenId,omitempty"`
	Name    string   `json:"name,omitempty"`
	Role    Role     `json:"role"`
	Scopes  []string `json:"scopes"`
	// AuthEnabled is false on a server running with auth off.
	AuthEnabled bool `json:"authEnabled"`
}

// Store persists tokens. Implementations return errs kinds NotFound and
// AlreadyExists and are safe for concurrent use. Each change records its audit
// event in the same transaction.
type Store interface {
	CreateToken(ctx context.Context, t Token, ev AuditEvent) error
	GetToken(ctx context.Context, id string) (Token, error)
	ListTokens(ctx context.Context) ([]Token, error)
	// RevokeToken sets RevokedAt (NotFound if absent; revoking twice keeps the
	// first time).
	RevokeToken(ctx context.Context, id string, at time.Time, ev AuditEvent) error
	// TouchTokens records last-used times (ids that no longer exist are skipped).
	TouchTokens(ctx context.Context, used map[string]time.Time) error
}

// AuditEvent is what a token change records: who did it and a summary. The
// store fills in the time, kind ("Token") and the token id as the name.
type AuditEvent struct {
	Actor, Source, Action, Summary string
}

// newToken returns a fresh id and the full token string.
func newToken() (id, token, secretHash string, err error) {
	b := make([]byte, idLen/2+32)
	if _, err := rand.Read(b); err != nil {
		return "", "", "", fmt.Errorf("auth: generate token: %w", err)
	}
	id = hex.EncodeToString(b[:idLen/2])
	secret := secretEncoding.EncodeToString(b[idLen/2:])
	return id, TokenPrefix + id + "_" + secret, hashSecret(secret), nil
}

// parseToken splits a token into id and secret; ok is false for anything that
// is not shaped like one.
func parseToken(tok string) (id, secret string, ok bool) {
	if len(tok) != tokenLen || !strings.HasPrefix(tok, TokenPrefix) || tok[len(TokenPrefix)+idLen] != '_' {
		return "", "", false
	}
	id = tok[len(TokenPrefix) : len(TokenPrefix)+idLen]
	secret = tok[len(TokenPrefix)+idLen+1:]
	for i := range len(id) {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", "", false
		}
	}
	for i := range len(secret) {
		if c := secret[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return "", "", false
		}
	}
	return id, secret, true
}

// IDOf returns the public id of a token string, or "" if it is not one.
func IDOf(tok string) string {
	id, _, _ := parseToken(tok)
	return id
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ValidateScopes checks scope names: "*" or namespace names, at least one,
// without duplicates. It returns them sorted.
func ValidateScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, errs.New(errs.InvalidArgument, "a token needs at least one scope: a namespace, or * for all").WithField("scopes")
	}
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		s = strings.TrimSpace(s)
		if s != AllScopes {
			if err := registry.ValidateNamespace(s); err != nil {
				return nil, errs.New(errs.InvalidArgument, "scope %q: want * or a namespace name (%s)", s, errs.PublicMessage(err)).WithField("scopes")
			}
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	if slices.Contains(out, AllScopes) {
		out = []string{AllScopes}
	}
	return out, nil
}

// ParseDuration is time.ParseDuration that also takes days and weeks ("30d",
// "2w", "1d12h"), as token expiries are usually written.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	var total time.Duration
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if i := strings.Index(s, unit.suffix); i > 0 {
			n, err := strconv.ParseFloat(s[:i], 64)
			if err != nil || n < 0 || n > 1e5 {
				return 0, fmt.Errorf("invalid duration %q", orig)
			}
			total += time.Duration(n * float64(unit.d))
			s = s[i+1:]
		}
	}
	if s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: want e.g. 30d, 12h or 1w", orig)
		}
		total += d
	}
	return total, nil
}
