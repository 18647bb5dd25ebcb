package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/nimbus-ai/nimbus/api/inferencepb"
	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/config"
	"github.com/nimbus-ai/nimbus/internal/cli"
	"github.com/nimbus-ai/nimbus/internal/cliconfig"
	"github.com/nimbus-ai/nimbus/internal/system"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/spec"
)

const mlpRequest = `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0.3,12,1,0]}]}`

// createToken makes a token with the admin's CLI and returns it.
func createToken(t *testing.T, srv *testutil.Server, args ...string) auth.CreatedView {
	t.Helper()
	var c auth.CreatedView
	out := mustCLI(t, srv, append([]string{"tokens", "create", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Secret == "" {
		t.Fatalf("tokens create: %v\n%s", err, out)
	}
	return c
}

// as sends a request with token tok ("" sends none).
func as(t *testing.T, tok, method, url, contentType, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	h := append([]string{"Authorization", ""}, hdr...)
	if tok != "" {
		h[1] = "Bearer " + tok
	}
	return do(t, method, url, contentType, []byte(body), h...)
}

// TestWalkthroughFirstStartWithAuth: README walkthrough 1 with auth on. The
// first start makes an admin token in DATA/admin.token (0600) and, on
// loopback, a CLI context; the CLI then needs nothing but its config file.
func TestWalkthroughFirstStartWithAuth(t *testing.T) {
	cliCfg := filepath.Join(t.TempDir(), "nimbus", "config.yaml")
	srv := testutil.StartServer(t, func(c *config.Config) { c.CLIConfig = cliCfg })
	st, err := os.Stat(filepath.Join(srv.DataDir, system.AdminTokenFile))
	if err != nil || st.Mode().Perm() != 0o600 || srv.Token == "" {
		t.Fatalf("admin.token: %v %v", st, err)
	}
	f, err := cliconfig.Load(cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	cur, ok := f.Current()
	if !ok || cur.Server != srv.URL || cur.Token != srv.Token {
		t.Fatalf("CLI context = %+v (file %+v)", cur, f)
	}
	if st, _ := os.Stat(cliCfg); st.Mode().Perm() != 0o600 {
		t.Errorf("CLI config mode %v, want 0600", st.Mode().Perm())
	}
	// The CLI with only its config file: no NIMBUS_SERVER, no NIMBUS_TOKEN.
	env := map[string]string{cliconfig.EnvPath: cliCfg}
	run := func(args ...string) (string, string, int) {
		var out, errb strings.Builder
		code := cli.Run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
		return out.String(), errb.String(), code
	}
	if out, errOut, code := run("models", "push", testutil.Model("mlp"), "--name", "churn", "--alias", "champion"); code != 0 {
		t.Fatalf("push: %d %s %s", code, out, errOut)
	}
	if out, errOut, code := run("predict", "churn", "--data", `{"x": [[0.3, 12, 1, 0]]}`); code != 0 || !strings.Contains(out, "y") {
		t.Fatalf("predict: %d %s %s", code, out, errOut)
	}
	if out, _, code := run("whoami", "-o", "json"); code != 0 || !strings.Contains(out, `"role": "admin"`) {
		t.Fatalf("whoami: %s", out)
	}
	// Without a token: 401 with a challenge and a message that says how; health stays open.
	code, hdr, body := as(t, "", "POST", srv.URL+"/v2/models/churn/infer", "application/json", mlpRequest)
	if code != 401 || hdr.Get("WWW-Authenticate") == "" || !strings.Contains(string(body), "admin.token") {
		t.Fatalf("no token: %d %v %s", code, hdr, body)
	}
	for _, p := range []string{"/v2/health/live", "/v2/health/ready", "/healthz"} {
		if code, _, _ := as(t, "", "GET", srv.URL+p, "", ""); code != 200 {
			t.Errorf("GET %s without a token: %d", p, code)
		}
	}
	// A CLI without a token says how to get one.
	env = map[string]string{"NIMBUS_SERVER": srv.URL}
	if _, errOut, code := run("models", "list"); code != 1 || !strings.Contains(errOut, "nimbus login") {
		t.Errorf("CLI without token: %d %s", code, errOut)
	}
	// A restart does not make another token, and the file keeps working.
	srv.Stop()
	srv2 := testutil.StartServer(t, func(c *config.Config) { c.DataDir = srv.DataDir; c.CLIConfig = cliCfg })
	if srv2.Token != srv.Token {
		t.Fatal("the bootstrap token changed on restart")
	}
}

// TestTokenLifecycle: a scoped invoker calls inference and nothing else; a
// revoked token stops at once; an expired one at its expiry; the list shows
// last use and never a secret.
func TestTokenLifecycle(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "churn", "--alias", "champion")
	app := createToken(t, srv, "--role", "invoker", "--scope", "default", "--name", "app")
	infer := func(tok string) int {
		code, _, _ := as(t, tok, "POST", srv.URL+"/v2/models/churn/infer", "application/json", mlpRequest)
		return code
	}
	if code := infer(app.Secret); code != 200 {
		t.Fatalf("invoker infers: %d", code)
	}
	if code, _, body := as(t, app.Secret, "GET", srv.URL+"/api/v1/namespaces/default/models", "", ""); code != 403 ||
		!strings.Contains(string(body), "app (token/"+app.ID+") (role invoker, scopes default) may not read in namespace default") {
		t.Fatalf("invoker lists models: %d %s", code, body)
	}
	// Listing: state and last use, never the secret or its hash.
	out := mustCLI(t, srv, "tokens", "list", "-o", "json")
	if strings.Contains(out, app.Secret[len(auth.TokenPrefix)+13:]) || strings.Contains(out, "secretHash") {
		t.Fatalf("token list leaks: %s", out)
	}
	var list []auth.TokenView
	json.Unmarshal([]byte(out), &list)
	if len(list) != 2 || list[0].ID != app.ID || list[0].LastUsedAt == nil || list[0].State != "active" {
		t.Fatalf("list: %+v", list)
	}
	mustCLI(t, srv, "tokens", "revoke", app.ID)
	if code := infer(app.Secret); code != 401 {
		t.Fatalf("revoked token: %d", code)
	}
	short := createToken(t, srv, "--role", "invoker", "--scope", "default", "--expires", "1s")
	if code := infer(short.Secret); code != 200 {
		t.Fatalf("fresh short token: %d", code)
	}
	testutil.Eventually(t, 3*time.Second, func() bool { return infer(short.Secret) == 401 }, "an expired token kept working")
}

// TestResetAdminTokenWhileRunning: reset-admin-token on the data dir, from
// another process's view of the database, revokes the old bootstrap token for
// the running server within a second and the new one works.
func TestResetAdminTokenWhileRunning(t *testing.T) {
	srv := testutil.StartServer(t)
	old := srv.Token
	var out strings.Builder
	if code := cli.Run(context.Background(), []string{"server", "reset-admin-token", "--data-dir", srv.DataDir}, &out, &out,
		func(string) string { return "" }); code != 0 {
		t.Fatalf("reset-admin-token: %d %s", code, out.String())
	}
	b, err := os.ReadFile(filepath.Join(srv.DataDir, system.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	fresh := strings.TrimSpace(string(b))
	whoami := func(tok string) int {
		code, _, _ := as(t, tok, "GET", srv.URL+"/api/v1/whoami", "", "")
		return code
	}
	start := time.Now()
	testutil.Eventually(t, 2*auth.CacheTTL, func() bool { return whoami(old) == 401 }, "the old admin token kept working")
	t.Logf("old token refused %s after the reset", time.Since(start).Round(time.Millisecond))
	if fresh == old || whoami(fresh) != 200 {
		t.Fatalf("new admin token: %d", whoami(fresh))
	}
}

func TestAuthOffOnlyOnLoopback(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir, cfg.Auth, cfg.HTTPAddr, cfg.GRPCAddr, cfg.CLIConfig = t.TempDir(), "off", "0.0.0.0:0", "", "none"
	if _, err := system.New(context.Background(), cfg, "test", slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "auth=off is refused on a non-loopback address") {
		t.Fatalf("auth off on 0.0.0.0: %v", err)
	}
	srv := testutil.StartServer(t, func(c *config.Config) { c.Auth = "off" })
	if srv.Token != "" {
		t.Fatal("auth off made a token")
	}
	if _, err := os.Stat(filepath.Join(srv.DataDir, system.AdminTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin.token with auth off: %v", err)
	}
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m")
	var evs []audit.Event
	json.Unmarshal([]byte(mustCLI(t, srv, "events", "-o", "json")), &evs)
	if len(evs) == 0 || evs[0].Actor != "local" {
		t.Fatalf("actor with auth off: %+v", evs)
	}
}

// TestCrossSiteRequestsRefused: a page on another site cannot drive the server
// even with auth off (where no token stands in its way): a text/plain body
// (a CORS "simple request") is refused, as is any cross-origin request, a
// DNS-rebound Host, and CORS headers go to configured origins only.
func TestCrossSiteRequestsRefused(t *testing.T) {
	srv := testutil.StartServer(t, func(c *config.Config) {
		c.Auth = "off"
		c.CORSAllowedOrigins = []string{"https://ui.example.com"}
	})
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m", "--alias", "champion")
	doc := "apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: m}\nspec: {}\n"
	body, _ := json.Marshal(spec.Request{Files: []spec.File{{Name: "x.yaml", Content: doc}}})
	exists := func() bool {
		code, _, _ := as(t, "", "GET", srv.URL+"/api/v1/namespaces/default/models/m", "", "")
		return code == 200
	}
	for _, tc := range []struct {
		name, ct string
		hdr      []string
		status   int
	}{
		{"text/plain body", "text/plain", nil, 415},
		{"form body", "application/x-www-form-urlencoded", nil, 415},
		{"no content type", "", nil, 415},
		{"cross-origin page", "application/json", []string{"Origin", "https://evil.example"}, 403},
		{"DNS rebinding", "application/json", []string{"Host", "evil.example"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+"/api/v1/delete", strings.NewReader(string(body)))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				if tc.hdr[i] == "Host" {
					req.Host = tc.hdr[i+1]
				} else {
					req.Header.Set(tc.hdr[i], tc.hdr[i+1])
				}
			}
			resp, err := testutil.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("status %d (ACAO %q), want %d", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), tc.status)
			}
			if !exists() {
				t.Fatal("the model was deleted")
			}
		})
	}
	// The configured origin: a preflight answered with CORS headers, and the
	// request itself carries them.
	code, hdr, _ := as(t, "", "OPTIONS", srv.URL+"/api/v1/namespaces/default/models", "", "",
		"Origin", "https://ui.example.com", "Access-Control-Request-Method", "GET")
	if code != 204 || hdr.Get("Access-Control-Allow-Origin") != "https://ui.example.com" || !strings.Contains(hdr.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight of the allowed origin: %d %v", code, hdr)
	}
	code, hdr, _ = as(t, "", "GET", srv.URL+"/api/v1/namespaces/default/models", "", "", "Origin", "https://ui.example.com")
	if code != 200 || hdr.Get("Access-Control-Allow-Origin") != "https://ui.example.com" {
		t.Fatalf("allowed origin: %d %v", code, hdr)
	}
	if code, hdr, _ := as(t, "", "GET", srv.URL+"/api/v1/namespaces/default/models", "", ""); code != 200 || hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("no Origin: %d ACAO %q", code, hdr.Get("Access-Control-Allow-Origin"))
	}
}

// TestRateLimits: a token over its own limit gets 429 with Retry-After on
// REST and RESOURCE_EXHAUSTED on gRPC; an InferenceService over its
// spec.rateLimit gets 429. Refill is 1 per 1000 s: nothing refills meanwhile.
func TestRateLimits(t *testing.T) {
	srv := testutil.StartServer(t)
	mustCLI(t, srv, "models", "push", testutil.Model("mlp"), "--name", "m", "--alias", "champion")
	lim := createToken(t, srv, "--role", "invoker", "--scope", "default", "--rate-limit", "0.001:2")
	for range 5 { // health checks need no token and spend none of its limit
		if code, _, _ := as(t, lim.Secret, "GET", srv.URL+"/v2/health/ready", "", ""); code != 200 {
			t.Fatalf("health: %d", code)
		}
	}
	for i := range 2 {
		if code, _, body := as(t, lim.Secret, "POST", srv.URL+"/v2/models/m/infer", "application/json", mlpRequest); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	code, hdr, body := as(t, lim.Secret, "POST", srv.URL+"/v2/models/m/infer", "application/json", mlpRequest)
	if code != 429 || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), "rate limit of token "+lim.ID) {
		t.Fatalf("over the token's limit: %d %v %s", code, hdr, body)
	}
	conn, err := grpc.NewClient(srv.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(testutil.GRPCToken(lim.Secret)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var trailer metadata.MD
	_, err = pb.NewGRPCInferenceServiceClient(conn).ModelMetadata(context.Background(), &pb.ModelMetadataRequest{Name: "m"}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.ResourceExhausted || len(trailer.Get("grpc-retry-pushback-ms")) != 1 {
		t.Fatalf("gRPC over the limit: %v, trailer %v (want grpc-retry-pushback-ms)", err, trailer)
	}
	// Other tokens are not affected.
	if code, _, _ := as(t, srv.Token, "POST", srv.URL+"/v2/models/m/infer", "application/json", mlpRequest); code != 200 {
		t.Fatalf("admin: %d", code)
	}

	svc := "apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: svc}\nspec:\n  traffic: [{model: m}]\n  rateLimit: {requestsPerSecond: 0.001, burst: 1}\n"
	if code, _, body := as(t, srv.Token, "POST", srv.URL+"/api/v1/apply", "application/yaml", svc); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	if code, _, body := as(t, srv.Token, "POST", srv.URL+"/v2/models/svc/infer", "application/json", mlpRequest); code != 200 {
		t.Fatalf("service, first request: %d %s", code, body)
	}
	code, hdr, body = as(t, srv.Token, "POST", srv.URL+"/v2/models/svc/infer", "application/json", mlpRequest)
	if code != 429 || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), "inference service default/svc") {
		t.Fatalf("over the service's limit: %d %v %s", code, hdr, body)
	}
}

func TestMetricsNeedAViewerOfEverything(t *testing.T) {
	srv := testutil.StartServer(t)
	prom := createToken(t, srv, "--role", "viewer", "--scope", "*", "--name", "prometheus")
	scoped := createToken(t, srv, "--role", "viewer", "--scope", "default")
	for tok, want := range map[string]int{"": 401, prom.Secret: 200, scoped.Secret: 403} {
		if code, _, _ := as(t, tok, "GET", srv.URL+"/metrics", "", ""); code != want {
			t.Errorf("GET /metrics: %d, want %d", code, want)
		}
	}
	open := testutil.StartServer(t, func(c *config.Config) { c.MetricsAuth = "off" })
	if code, _, body := as(t, "", "GET", open.URL+"/metrics", "", ""); code != 200 || !strings.Contains(string(body), "nimbus_") {
		t.Errorf("--metrics-auth=off: %d", code)
	}
}

// TestScopesAcrossNamespaces: a deployer of one namespace cannot apply into
// another, not even as part of a file that also touches its own (nothing of the
// request happens); cluster-wide lists show it only its own namespace; nobody
// can claim the GitOps controller's change source.
func TestScopesAcrossNamespaces(t *testing.T) {
	srv := testutil.StartServer(t)
	for _, ns := range []string{"team-a", "team-b"} {
		mustCLI(t, srv, "-n", ns, "models", "push", testutil.Model("mlp"), "--name", "m", "--alias", "champion")
		svc := fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: svc, namespace: %s}\nspec: {traffic: [{model: m}]}\n", ns)
		if code, _, body := as(t, srv.Token, "POST", srv.URL+"/api/v1/apply", "application/yaml", svc); code != 200 {
			t.Fatalf("apply %s: %d %s", ns, code, body)
		}
	}
	a := createToken(t, srv, "--role", "deployer", "--scope", "team-a", "--name", "a")
	both := `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: new, namespace: team-a}
spec: {traffic: [{model: m}]}
---
apiVersion: nimbus.dev/v1
kind: InferenceService
metadata: {name: new, namespace: team-b}
spec: {traffic: [{model: m}]}
`
	code, _, body := as(t, a.Secret, "POST", srv.URL+"/api/v1/apply", "application/yaml", both)
	if code != 403 || !strings.Contains(string(body), "team-b") || strings.Contains(string(body), `"namespace team-a`) {
		t.Fatalf("apply across namespaces: %d %s", code, body)
	}
	if code, _, _ := as(t, srv.Token, "GET", srv.URL+"/api/v1/namespaces/team-a/resources/isvc/new", "", ""); code != 404 {
		t.Fatalf("half of a refused apply happened: %d", code)
	}
	// Cluster-wide lists hold team-a only.
	env := map[string]string{"NIMBUS_SERVER": srv.URL, "NIMBUS_TOKEN": a.Secret}
	var out strings.Builder
	if code := cli.Run(context.Background(), []string{"get", "isvc", "-A", "-o", "json"}, &out, &out, func(k string) string { return env[k] }); code != 0 {
		t.Fatalf("get -A: %s", out.String())
	}
	if !strings.Contains(out.String(), "team-a") || strings.Contains(out.String(), "team-b") {
		t.Fatalf("get isvc -A as team-a's deployer: %s", out.String())
	}
	var evs struct{ Items []audit.Event }
	code, _, body = as(t, a.Secret, "GET", srv.URL+"/api/v1/events", "", "")
	if json.Unmarshal(body, &evs); code != 200 || len(evs.Items) == 0 {
		t.Fatalf("events: %d %s", code, body)
	}
	for _, e := range evs.Items {
		if e.Namespace != "team-a" {
			t.Fatalf("event of %q shown to team-a's deployer: %+v", e.Namespace, e)
		}
	}
	if code, _, _ := as(t, a.Secret, "GET", srv.URL+"/api/v1/events?namespace=team-b", "", ""); code != 403 {
		t.Fatalf("events of team-b: %d", code)
	}
	code, _, body = as(t, a.Secret, "GET", srv.URL+"/api/v1/namespaces", "", "")
	if code != 200 || strings.Contains(string(body), "team-b") || !strings.Contains(string(body), "team-a") {
		t.Fatalf("namespaces: %d %s", code, body)
	}
	// A caller may name cli or api as its source, never gitops.
	svc := "apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: svc2, namespace: team-a}\nspec: {traffic: [{model: m}]}\n"
	if code, _, body := as(t, a.Secret, "POST", srv.URL+"/api/v1/apply", "application/yaml", svc, "Nimbus-Change-Source", "gitops"); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	code, _, body = as(t, srv.Token, "GET", srv.URL+"/api/v1/namespaces/team-a/events?name=svc2", "", "")
	json.Unmarshal(body, &evs)
	if code != 200 || len(evs.Items) != 1 || evs.Items[0].Source != "api" || evs.Items[0].Actor != "a (token/"+a.ID+")" {
		t.Fatalf("claimed source: %+v", evs.Items)
	}
}

// TestRefusedApplyFetchesNothing: an apply that is refused because of one of
// its documents (its namespace denied to the caller's token, a decode or
// validation error, a missing target) fetches the source of no other
// document, https:// or file://: every document is authorized and every check
// that needs no artifact runs before the first fetch. Before, a document that
// failed validation let the sources of the others be fetched (and stored), and
// one both denied and invalid was not authorized at all.
func TestRefusedApplyFetchesNothing(t *testing.T) {
	dir, sha := sourceDir(t)
	srv := testutil.StartServer(t, func(c *config.Config) { c.SourceDir = dir })
	var conns atomic.Int32
	src := httptest.NewUnstartedServer(http.NotFoundHandler())
	src.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	src.Config.ErrorLog = log.New(io.Discard, "", 0) // the server does not trust its certificate
	src.StartTLS()
	t.Cleanup(src.Close)
	tok := createToken(t, srv, "--role", "deployer", "--scope", "team-a", "--name", "a")

	model := func(uri string) string {
		return fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {name: m, namespace: team-a}\nspec:\n"+
			"  versions: [{version: 1, source: {uri: %q, sha256: %s}}]\n", uri, sha["fraud_v1"])
	}
	service := func(ns, spec string) string {
		return fmt.Sprintf("apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: svc, namespace: %s}\nspec: %s\n", ns, spec)
	}
	sources := map[string]string{"https": model(src.URL + "/m.onnx"), "file": model("file://" + dir + "/fraud_v1.onnx")}
	for _, tc := range []struct {
		name, second string
		code         int
		says         string
	}{
		{"denied namespace", service("team-b", "{traffic: [{model: m}]}"), 403, "team-b"},
		{"decode error", service("team-a", "{traffic: [{model: m}], bogus: 1}"), 400, "bogus"},
		{"validation error", service("team-a", "{traffic: [{model: m, weight: 500}]}"), 400, "must be 0..100"},
		{"denied and invalid", service("team-b", "{traffic: [{model: m}], bogus: 1}"), 403, "team-b"},
		{"missing target", service("team-a", "{traffic: [{model: nope}]}"), 404, "model nope does not exist"},
	} {
		for scheme, first := range sources {
			code, _, body := as(t, tok.Secret, "POST", srv.URL+"/api/v1/apply", "application/yaml", first+"---\n"+tc.second)
			if code != tc.code || !strings.Contains(string(body), tc.says) {
				t.Errorf("%s after a %s source: %d %s; want %d saying %q", tc.name, scheme, code, body, tc.code, tc.says)
			}
		}
	}
	ctx := context.Background()
	if n := conns.Load(); n != 0 {
		t.Errorf("refused applies connected to the https source %d times", n)
	}
	if blobs, err := srv.Sys.Registry.Blobs().List(ctx); err != nil || len(blobs) != 0 {
		t.Errorf("refused applies stored %d blobs (%v): a file:// source was read", len(blobs), err)
	}

	// The same documents alone are fetched: the test sees a fetch.
	if code, _, body := as(t, tok.Secret, "POST", srv.URL+"/api/v1/apply", "application/yaml", sources["https"]); code != 400 || conns.Load() == 0 {
		t.Errorf("apply of the https source alone: %d %s, %d connections; want a failed fetch", code, body, conns.Load())
	}
	if code, _, body := as(t, tok.Secret, "POST", srv.URL+"/api/v1/apply", "application/yaml", sources["file"]); code != 200 {
		t.Errorf("apply of the file source alone: %d %s", code, body)
	}
	if blobs, err := srv.Sys.Registry.Blobs().List(ctx); err != nil || len(blobs) != 1 {
		t.Errorf("stored %d blobs (%v), want the file source's", len(blobs), err)
	}
}
