package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
)

// TestRoleGrants is the role table, written out: what each role may do.
func TestRoleGrants(t *testing.T) {
	want := map[Role][]Perm{
		RoleAdmin:    {PermOpen, PermAuthenticated, PermMetadata, PermInfer, PermRead, PermWrite, PermAdmin},
		RoleDeployer: {PermOpen, PermAuthenticated, PermMetadata, PermInfer, PermRead, PermWrite},
		RoleInvoker:  {PermOpen, PermAuthenticated, PermMetadata, PermInfer},
		RoleViewer:   {PermOpen, PermAuthenticated, PermMetadata, PermRead},
	}
	all := []Perm{PermOpen, PermAuthenticated, PermMetadata, PermInfer, PermRead, PermWrite, PermAdmin}
	for role, perms := range want {
		for _, p := range all {
			granted := false
			for _, q := range perms {
				granted = granted || q == p
			}
			if role.Grants(p) != granted {
				t.Errorf("%s grants %s = %v, want %v", role, p, role.Grants(p), granted)
			}
		}
	}
	if Role("root").Grants(PermRead) {
		t.Error("an unknown role grants something")
	}
}

func TestAuthorize(t *testing.T) {
	deployer := &Identity{TokenID: "aaaaaaaaaaaa", Name: "ci", Role: RoleDeployer, Scopes: []string{"payments"}}
	admin := &Identity{TokenID: "bbbbbbbbbbbb", Role: RoleAdmin, Scopes: []string{AllScopes}}
	nsAdmin := &Identity{TokenID: "cccccccccccc", Role: RoleAdmin, Scopes: []string{"payments"}}
	tests := []struct {
		name string
		id   *Identity
		rule Rule
		ns   string
		want errs.Kind // Internal means allowed
	}{
		{"open without token", nil, Open, "x", errs.Internal},
		{"no token", nil, Needs(PermRead), "payments", errs.Unauthenticated},
		{"own namespace", deployer, Needs(PermWrite), "payments", errs.Internal},
		{"other namespace", deployer, Needs(PermWrite), "fraud", errs.PermissionDenied},
		{"role lacks perm", deployer, Needs(PermAdmin), "payments", errs.PermissionDenied},
		{"cluster rule, namespaced token", nsAdmin, NeedsCluster(PermAdmin), "", errs.PermissionDenied},
		{"cluster rule, * token", admin, NeedsCluster(PermAdmin), "", errs.Internal},
		{"any namespace", deployer, NeedsAny(PermWrite), "", errs.Internal},
		{"any namespace, role lacks perm", deployer, NeedsAny(PermAdmin), "", errs.PermissionDenied},
		{"* covers every namespace", admin, Needs(PermWrite), "whatever", errs.Internal},
		{"authenticated", deployer, Authenticated, "", errs.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.id != nil {
				ctx = WithIdentity(ctx, tt.id)
			}
			err := Authorize(ctx, tt.rule, tt.ns)
			got := errs.Internal
			if err != nil {
				got = errs.KindOf(err)
			}
			if got != tt.want {
				t.Fatalf("Authorize = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
	// The refusal names who, what and where, so a user knows which token to ask for.
	err := Authorize(WithIdentity(context.Background(), deployer), Needs(PermWrite), "fraud")
	if msg := errs.PublicMessage(err); msg != "ci (token/aaaaaaaaaaaa) (role deployer, scopes payments) may not change resources in namespace fraud" {
		t.Errorf("denial message = %q", msg)
	}
	// A refused token's reason is what a route that needs one answers.
	ctx := WithFailure(context.Background(), errs.New(errs.Unauthenticated, "token expired"))
	if err := Authorize(ctx, Needs(PermRead), "x"); errs.PublicMessage(err) != "token expired" {
		t.Errorf("failure = %v", err)
	}
	if err := Authorize(ctx, Open, "x"); err != nil {
		t.Errorf("open route with a refused token: %v", err)
	}
}

func TestCovers(t *testing.T) {
	a := &Identity{Role: RoleAdmin, Scopes: []string{"a", "b"}}
	for _, tt := range []struct {
		scopes []string
		want   bool
	}{{[]string{"a"}, true}, {[]string{"a", "b"}, true}, {[]string{"c"}, false}, {[]string{AllScopes}, false}, {[]string{"a", "c"}, false}} {
		if got := a.Covers(tt.scopes); got != tt.want {
			t.Errorf("%v covers %v = %v, want %v", a.Scopes, tt.scopes, got, tt.want)
		}
	}
	if !(&Identity{Scopes: []string{AllScopes}}).Covers([]string{AllScopes, "x"}) {
		t.Error("* does not cover everything")
	}
}

func TestTokenFormat(t *testing.T) {
	id, tok, hash, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) != tokenLen || len(id) != idLen {
		t.Fatalf("token %q id %q", tok, id)
	}
	gotID, secret, ok := parseToken(tok)
	if !ok || gotID != id || hashSecret(secret) != hash {
		t.Fatalf("parse %q = %q %q %v", tok, gotID, secret, ok)
	}
	if IDOf(tok) != id {
		t.Errorf("IDOf = %q", IDOf(tok))
	}
	bad := []string{"", "nimbus_", tok[:len(tok)-1], tok + "a", strings.Replace(tok, "nimbus_", "nimbux_", 1),
		tok[:len(TokenPrefix)] + "ABCDEF012345" + tok[len(TokenPrefix)+idLen:], strings.ToUpper(tok),
		tok[:len(TokenPrefix)+idLen] + "-" + tok[len(TokenPrefix)+idLen+1:], tok[:len(tok)-1] + "1"}
	for _, b := range bad {
		if _, _, ok := parseToken(b); ok {
			t.Errorf("parseToken(%q) accepted", b)
		}
	}
	_, tok2, _, _ := newToken()
	if tok2 == tok {
		t.Error("two tokens are equal")
	}
}

func FuzzParseToken(f *testing.F) {
	_, tok, _, _ := newToken()
	f.Add(tok)
	f.Add("nimbus_0123456789ab_" + strings.Repeat("a", secretLen))
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := parseToken(s)
		if ok && TokenPrefix+id+"_"+secret != s {
			t.Fatalf("parse %q = %q %q does not round-trip", s, id, secret)
		}
	})
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "1w": 7 * 24 * time.Hour, "12h": 12 * time.Hour, "1d12h": 36 * time.Hour,
		"2w3d": 17 * 24 * time.Hour, "90m": 90 * time.Minute, "1.5d": 36 * time.Hour,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "x", "1y", "-1d", "3d2w", "1e9d"} {
		if _, err := ParseDuration(in); err == nil && in != "" {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

func TestValidateScopes(t *testing.T) {
	got, err := ValidateScopes([]string{"b", "a", "b"})
	if err != nil || strings.Join(got, ",") != "a,b" {
		t.Errorf("= %v, %v", got, err)
	}
	if got, _ := ValidateScopes([]string{"a", AllScopes}); strings.Join(got, ",") != AllScopes {
		t.Errorf("* with others = %v", got)
	}
	for _, bad := range [][]string{nil, {""}, {"Bad Name"}, {"../x"}} {
		if _, err := ValidateScopes(bad); errs.KindOf(err) != errs.InvalidArgument {
			t.Errorf("ValidateScopes(%q) = %v", bad, err)
		}
	}
}
