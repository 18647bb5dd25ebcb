package auth_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newAuth opens a real SQLite store in a temp dir: the tokens live where the
// server keeps them.
func newAuth(t *testing.T) (*auth.Authenticator, *sqlite.Store, *clock) { return newAuthB(t) }

func newAuthB(t testing.TB) (*auth.Authenticator, *sqlite.Store, *clock) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nimbus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	return auth.New(auth.Options{Store: db, Now: c.now}), db, c
}

func mustBootstrap(t testing.TB, a *auth.Authenticator) (string, *auth.Identity) {
	t.Helper()
	tok, err := a.Bootstrap(context.Background())
	if err != nil || tok == "" {
		t.Fatalf("bootstrap: %q %v", tok, err)
	}
	id, err := a.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	return tok, id
}

func TestBootstrapOnce(t *testing.T) {
	a, db, _ := newAuth(t)
	ctx := context.Background()
	_, admin := mustBootstrap(t, a)
	if admin.Role != auth.RoleAdmin || strings.Join(admin.Scopes, ",") != "*" || admin.Name != auth.BootstrapName {
		t.Fatalf("bootstrap identity %+v", admin)
	}
	if tok, err := a.Bootstrap(ctx); tok != "" || err != nil {
		t.Fatalf("second bootstrap: %q %v", tok, err)
	}
	ts, _ := db.ListTokens(ctx)
	if len(ts) != 1 || !ts[0].Bootstrap || ts[0].SecretHash == "" {
		t.Fatalf("tokens: %+v", ts)
	}
}

func TestCreateAuthenticateRevoke(t *testing.T) {
	a, db, c := newAuth(t)
	ctx := context.Background()
	_, admin := mustBootstrap(t, a)
	created, err := a.Create(ctx, admin, auth.CreateRequest{Name: "ci", Role: "deployer", Scopes: []string{"payments", "fraud"}, ExpiresIn: "30d"})
	if err != nil {
		t.Fatal(err)
	}
	if created.ExpiresAt == nil || !created.ExpiresAt.Equal(c.now().Add(30*24*time.Hour)) || created.CreatedBy != admin.Actor() {
		t.Fatalf("created %+v", created.Token)
	}
	// The store never sees the token itself.
	stored, _ := db.GetToken(ctx, created.ID)
	if strings.Contains(stored.SecretHash, created.Secret[len(auth.TokenPrefix)+13:]) || stored.SecretHash == "" {
		t.Fatalf("stored hash %q", stored.SecretHash)
	}
	id, err := a.Authenticate(ctx, created.Secret)
	if err != nil || id.Role != auth.RoleDeployer || strings.Join(id.Scopes, ",") != "fraud,payments" || id.Actor() != "ci (token/"+created.ID+")" {
		t.Fatalf("authenticate: %+v %v", id, err)
	}
	// A wrong secret for a real id is refused, as is garbage.
	wrong := created.Secret[:len(created.Secret)-1] + map[bool]string{true: "b", false: "a"}[strings.HasSuffix(created.Secret, "a")]
	for _, bad := range []string{wrong, "nope", ""} {
		if _, err := a.Authenticate(ctx, bad); errs.KindOf(err) != errs.Unauthenticated {
			t.Errorf("authenticate %q: %v", bad, err)
		}
	}
	// Revoked through this authenticator: refused at once, cache or not.
	if _, err := a.Revoke(ctx, admin, created.ID, "cli"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, created.Secret); errs.KindOf(err) != errs.Unauthenticated || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	// Both changes are in the audit log, by the admin, without the secret.
	evs, err := db.ListEvents(ctx, auditQuery("Token"))
	if err != nil || len(evs) != 3 { // bootstrap, create, revoke
		t.Fatalf("events %+v %v", evs, err)
	}
	for _, e := range evs[1:] {
		if e.Actor != admin.Actor() || e.Name != created.ID || strings.Contains(e.Summary, created.Secret) {
			t.Errorf("event %+v", e)
		}
	}
}

// TestRevokedElsewhereStopsWithinTTL: a token revoked by another process on
// the same database (reset-admin-token, a second server) stops working within
// auth.CacheTTL; an expiry is exact even from the cache.
func TestRevokedElsewhereStopsWithinTTL(t *testing.T) {
	a, db, c := newAuth(t)
	ctx := context.Background()
	_, admin := mustBootstrap(t, a)
	created, err := a.Create(ctx, admin, auth.CreateRequest{Role: "viewer", Scopes: []string{"x"}, ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, created.Secret); err != nil {
		t.Fatal(err)
	}
	other := auth.New(auth.Options{Store: db, Now: c.now})
	if _, err := other.Revoke(ctx, admin, created.ID, "api"); err != nil {
		t.Fatal(err)
	}
	c.add(auth.CacheTTL - time.Millisecond)
	if _, err := a.Authenticate(ctx, created.Secret); err != nil {
		t.Fatalf("within the cache TTL the cached answer stands: %v", err)
	}
	c.add(time.Millisecond)
	if _, err := a.Authenticate(ctx, created.Secret); errs.KindOf(err) != errs.Unauthenticated {
		t.Fatalf("after the TTL: %v", err)
	}

	// Expiry: refused the instant it passes, though cached a moment ago.
	exp, err := a.Create(ctx, admin, auth.CreateRequest{Role: "viewer", Scopes: []string{"x"}, ExpiresIn: "10s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, exp.Secret); err != nil {
		t.Fatal(err)
	}
	c.add(10 * time.Second)
	if _, err := a.Authenticate(ctx, exp.Secret); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
}

func TestAdminsStayWithinTheirScopes(t *testing.T) {
	a, _, c := newAuth(t)
	ctx := context.Background()
	_, root := mustBootstrap(t, a)
	pay, err := a.Create(ctx, root, auth.CreateRequest{Name: "payments-admin", Role: "admin", Scopes: []string{"payments"}})
	if err != nil {
		t.Fatal(err)
	}
	payID, _ := a.Authenticate(ctx, pay.Secret)
	other, err := a.Create(ctx, root, auth.CreateRequest{Role: "viewer", Scopes: []string{"fraud"}})
	if err != nil {
		t.Fatal(err)
	}
	// Within its scopes: yes. Another namespace or *: no.
	c.add(time.Second)
	mine, err := a.Create(ctx, payID, auth.CreateRequest{Role: "invoker", Scopes: []string{"payments"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, scopes := range [][]string{{"fraud"}, {"*"}, {"payments", "fraud"}} {
		if _, err := a.Create(ctx, payID, auth.CreateRequest{Role: "viewer", Scopes: scopes}); errs.KindOf(err) != errs.PermissionDenied {
			t.Errorf("payments admin creates %v: %v", scopes, err)
		}
	}
	if _, err := a.Revoke(ctx, payID, other.ID, "api"); errs.KindOf(err) != errs.PermissionDenied {
		t.Errorf("payments admin revokes a fraud token: %v", err)
	}
	list, err := a.List(ctx, payID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tk := range list {
		ids = append(ids, tk.ID)
	}
	if strings.Join(ids, ",") != mine.ID+","+pay.ID {
		t.Errorf("payments admin lists %v, want %s,%s (newest first)", ids, mine.ID, pay.ID)
	}
	// Only admins make tokens, whatever their scopes.
	dep, _ := a.Create(ctx, root, auth.CreateRequest{Role: "deployer", Scopes: []string{"*"}})
	depID, _ := a.Authenticate(ctx, dep.Secret)
	if _, err := a.Create(ctx, depID, auth.CreateRequest{Role: "viewer", Scopes: []string{"x"}}); errs.KindOf(err) != errs.PermissionDenied {
		t.Errorf("a deployer makes a token: %v", err)
	}
	for _, bad := range []auth.CreateRequest{
		{Role: "root", Scopes: []string{"x"}},
		{Role: "viewer"},
		{Role: "viewer", Scopes: []string{"x"}, ExpiresIn: "-1h"},
		{Role: "viewer", Scopes: []string{"x"}, ExpiresIn: "soon"},
		{Role: "viewer", Scopes: []string{"x"}, Name: strings.Repeat("n", 64)},
		{Role: "viewer", Scopes: []string{"x"}, RateLimit: &auth.Limit{RequestsPerSecond: -1}},
	} {
		if _, err := a.Create(ctx, root, bad); errs.KindOf(err) != errs.InvalidArgument {
			t.Errorf("create %+v: %v", bad, err)
		}
	}
}

func TestLastUsedIsFlushed(t *testing.T) {
	a, db, c := newAuth(t)
	ctx := context.Background()
	tok, admin := mustBootstrap(t, a)
	if ts, _ := a.List(ctx, admin); ts[0].LastUsedAt == nil || !ts[0].LastUsedAt.Equal(c.now()) {
		t.Fatalf("pending last use not listed: %+v", ts[0].LastUsedAt)
	}
	if stored, _ := db.GetToken(ctx, admin.TokenID); stored.LastUsedAt != nil {
		t.Fatal("last use written synchronously")
	}
	c.add(time.Minute)
	if _, err := a.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	stored, _ := db.GetToken(ctx, admin.TokenID)
	if stored.LastUsedAt == nil || !stored.LastUsedAt.Equal(c.now()) {
		t.Fatalf("flushed last use = %v, want %v", stored.LastUsedAt, c.now())
	}
	// Start flushes once more when it stops.
	c.add(time.Minute)
	a.Authenticate(ctx, tok)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- a.Start(runCtx) }()
	cancel()
	<-done
	if stored, _ := db.GetToken(ctx, admin.TokenID); !stored.LastUsedAt.Equal(c.now()) {
		t.Fatalf("last use after Start stopped = %v", stored.LastUsedAt)
	}
}

func TestResetAdmin(t *testing.T) {
	a, _, _ := newAuth(t)
	ctx := context.Background()
	old, admin := mustBootstrap(t, a)
	keep, _ := a.Create(ctx, admin, auth.CreateRequest{Role: "admin", Scopes: []string{"*"}, Name: "ops"})
	tok, err := a.ResetAdmin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, old); errs.KindOf(err) != errs.Unauthenticated {
		t.Fatalf("old bootstrap token after reset: %v", err)
	}
	if id, err := a.Authenticate(ctx, tok); err != nil || id.Role != auth.RoleAdmin {
		t.Fatalf("new admin token: %v", err)
	}
	if _, err := a.Authenticate(ctx, keep.Secret); err != nil {
		t.Fatalf("other admin tokens keep working: %v", err)
	}
}

// TestConcurrentAuthenticate runs the hot path from many goroutines (-race).
func TestConcurrentAuthenticate(t *testing.T) {
	a, _, c := newAuth(t)
	tok, _ := mustBootstrap(t, a)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				if j%50 == 0 && i == 0 {
					c.add(auth.CacheTTL) // force re-verification now and then
				}
				if _, err := a.Authenticate(context.Background(), tok); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func auditQuery(kind string) audit.Query { return audit.Query{Kind: kind} }
