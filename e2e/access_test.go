package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/testutil"
)

// Who may call what, written down here independently of the route tables: the
// matrix test below checks every route and method the server registers against
// it, and fails on one it does not list, so a new endpoint cannot be forgotten.
const (
	all     = "admin,deployer,invoker,viewer"
	readers = "admin,deployer,viewer"
	writers = "admin,deployer"
	infer   = "admin,deployer,invoker"
	admins  = "admin"
)

// scope kinds of an expectation.
const (
	open    = "open"    // no token needed
	inNS    = "ns"      // the request's namespace must be in the token's scopes
	cluster = "cluster" // scope * needed
	anyNS   = "any"     // any scope; a namespace the request names must be in scope
	global  = "global"  // any scope, whatever namespace the path names (server metadata)
)

type expect struct{ roles, scope string }

var restExpect = map[string]expect{
	"GET /v2/health/live":    {"", open},
	"GET /v2/health/ready":   {"", open},
	"GET /v2":                {all, global},
	"GET /v2/{$}":            {all, global},
	"GET /v2/models/{model}": {all, inNS},
	"GET /v2/models/{model}/versions/{version}":              {all, inNS},
	"GET /v2/models/{model}/ready":                           {all, inNS},
	"GET /v2/models/{model}/versions/{version}/ready":        {all, inNS},
	"POST /v2/models/{model}/infer":                          {infer, inNS},
	"POST /v2/models/{model}/versions/{version}/infer":       {infer, inNS},
	"POST /v2/repository/index":                              {all, inNS},
	"POST /v2/repository/models/{model}/load":                {writers, inNS},
	"POST /v2/repository/models/{model}/unload":              {writers, inNS},
	"GET /v2/models/stats":                                   {readers, inNS},
	"GET /v2/models/{model}/stats":                           {readers, inNS},
	"GET /v2/models/{model}/versions/{version}/stats":        {readers, inNS},
	"GET /api/v1/namespaces":                                 {readers, anyNS},
	"POST /api/v1/gc":                                        {admins, cluster},
	"GET /api/v1/whoami":                                     {all, anyNS},
	"GET /api/v1/tokens":                                     {admins, anyNS},
	"POST /api/v1/tokens":                                    {admins, anyNS},
	"DELETE /api/v1/tokens/{id}":                             {admins, anyNS},
	"POST /api/v1/apply":                                     {writers, anyNS},
	"POST /api/v1/delete":                                    {writers, anyNS},
	"GET /api/v1/resources/{kind}":                           {readers, anyNS},
	"GET /api/v1/events":                                     {readers, anyNS},
	"GET /api/v1/namespaces/{ns}/resources/{kind}":           {readers, inNS},
	"GET /api/v1/namespaces/{ns}/resources/{kind}/{name}":    {readers, inNS},
	"DELETE /api/v1/namespaces/{ns}/resources/{kind}/{name}": {writers, inNS},
	// A token needs write; a git host's signed webhook needs none (gitops_test.go).
	"POST /api/v1/namespaces/{ns}/resources/gitsources/{name}/sync":                     {writers, inNS},
	"POST /api/v1/namespaces/{ns}/resources/inferenceservices/{name}/rollout/{command}": {writers, inNS},
	"GET /api/v1/namespaces/{ns}/events":                                                {readers, inNS},
	"GET /api/v1/namespaces/{ns}/models":                                                {readers, inNS},
	"GET /api/v1/namespaces/{ns}/status":                                                {readers, inNS},
	"GET /api/v1/namespaces/{ns}/models/{model}":                                        {readers, inNS},
	"PATCH /api/v1/namespaces/{ns}/models/{model}":                                      {writers, inNS},
	"DELETE /api/v1/namespaces/{ns}/models/{model}":                                     {writers, inNS},
	"GET /api/v1/namespaces/{ns}/models/{model}/serving":                                {readers, inNS},
	"PUT /api/v1/namespaces/{ns}/models/{model}/serving":                                {writers, inNS},
	"GET /api/v1/namespaces/{ns}/models/{model}/status":                                 {readers, inNS},
	"GET /api/v1/namespaces/{ns}/models/{model}/versions":                               {readers, inNS},
	"POST /api/v1/namespaces/{ns}/models/{model}/versions":                              {writers, inNS},
	"GET /api/v1/namespaces/{ns}/models/{model}/versions/{version}":                     {readers, inNS},
	"DELETE /api/v1/namespaces/{ns}/models/{model}/versions/{version}":                  {writers, inNS},
	"PUT /api/v1/namespaces/{ns}/models/{model}/versions/{version}/serving":             {writers, inNS},
	"DELETE /api/v1/namespaces/{ns}/models/{model}/versions/{version}/serving":          {writers, inNS},
	"GET /api/v1/namespaces/{ns}/models/{model}/versions/{version}/artifact":            {readers, inNS},
	"PUT /api/v1/namespaces/{ns}/models/{model}/aliases/{alias}":                        {writers, inNS},
	"DELETE /api/v1/namespaces/{ns}/models/{model}/aliases/{alias}":                     {writers, inNS},
	"POST /api/v1/namespaces/{ns}/blobs":                                                {writers, inNS},
	"POST /api/v1/namespaces/{ns}/blobs/uploads":                                        {writers, inNS},
	"GET /api/v1/namespaces/{ns}/blobs/uploads/{id}":                                    {writers, inNS},
	"PATCH /api/v1/namespaces/{ns}/blobs/uploads/{id}":                                  {writers, inNS},
	"PUT /api/v1/namespaces/{ns}/blobs/uploads/{id}":                                    {writers, inNS},
	"DELETE /api/v1/namespaces/{ns}/blobs/uploads/{id}":                                 {writers, inNS},
	"GET /metrics": {readers, cluster},
	"GET /healthz": {"", open},
}

var grpcExpect = map[string]expect{
	"/inference.GRPCInferenceService/ServerLive":                     {"", open},
	"/inference.GRPCInferenceService/ServerReady":                    {"", open},
	"/inference.GRPCInferenceService/ServerMetadata":                 {all, anyNS},
	"/inference.GRPCInferenceService/ModelReady":                     {all, inNS},
	"/inference.GRPCInferenceService/ModelMetadata":                  {all, inNS},
	"/inference.GRPCInferenceService/ModelInfer":                     {infer, inNS},
	"/grpc.health.v1.Health/Check":                                   {"", open},
	"/grpc.health.v1.Health/Watch":                                   {"", open},
	"/grpc.health.v1.Health/List":                                    {"", open},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {all, anyNS},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {all, anyNS},
}

// caller is one token of the matrix.
type caller struct {
	role, scope, token string
}

// allowed says what the expectation predicts for c asking in namespace ns
// ("" when the request names none).
func (e expect) allowed(c *caller, ns string) bool {
	if e.scope == open {
		return true
	}
	if c == nil || !strings.Contains(","+e.roles+",", ","+c.role+",") {
		return false
	}
	switch {
	case c.scope == "*" || e.scope == global:
		return true
	case e.scope == cluster:
		return false
	case ns == "":
		return true
	}
	return ns == c.scope
}

// TestAccessMatrix: every role (scoped to "default", and to *) × every REST
// route and gRPC method the server registers × the token's own namespace and
// another, plus no token at all, gets the allow or deny the table above says.
func TestAccessMatrix(t *testing.T) {
	srv := testutil.StartServer(t)
	callers := []*caller{nil}
	for _, role := range []string{"admin", "deployer", "invoker", "viewer"} {
		for _, scope := range []string{"default", "*"} {
			var c auth.CreatedView
			out := mustCLI(t, srv, "tokens", "create", "--role", role, "--scope", scope, "-o", "json")
			if err := json.Unmarshal([]byte(out), &c); err != nil {
				t.Fatal(err)
			}
			callers = append(callers, &caller{role: role, scope: scope, token: c.Secret})
		}
	}
	// Every route is in the table, and every table entry is a route.
	seen := map[string]bool{}
	for _, rt := range srv.Sys.Routes() {
		key := rt.Method + " " + strings.TrimPrefix(rt.Pattern, "/ns/{namespace}")
		if _, ok := restExpect[key]; !ok {
			t.Errorf("route %s %s is not in the access table of this test: add what it needs", rt.Method, rt.Pattern)
		}
		seen[key] = true
	}
	for key := range restExpect {
		if !seen[key] {
			t.Errorf("access table lists %s, which the server does not register", key)
		}
	}
	checked := 0
	for _, rt := range srv.Sys.Routes() {
		key := rt.Method + " " + strings.TrimPrefix(rt.Pattern, "/ns/{namespace}")
		exp := restExpect[key]
		for _, ns := range namespacesOf(rt.Pattern, exp) {
			for _, c := range callers {
				req := accessRequest(t, srv.URL, rt.Method, rt.Pattern, ns)
				if c != nil {
					req.Header.Set("Authorization", "Bearer "+c.token)
				} else {
					testutil.NoToken(req)
				}
				resp, err := testutil.Client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body := new(bytes.Buffer)
				body.ReadFrom(resp.Body)
				resp.Body.Close()
				refused := resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden
				want := exp.allowed(c, ns)
				if refused == want || (c == nil && !want && resp.StatusCode != http.StatusUnauthorized) ||
					(c != nil && !want && resp.StatusCode != http.StatusForbidden) {
					t.Errorf("%s %s (namespace %q) as %s: %d %s; want allowed=%v",
						req.Method, req.URL.RequestURI(), ns, who(c), resp.StatusCode, strings.TrimSpace(body.String()), want)
				}
				checked++
			}
		}
	}

	// gRPC: every method of every registered service.
	services := srv.Sys.GRPCServices()
	gseen := map[string]bool{}
	conn, err := grpc.NewClient(srv.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials())) // tokens per call
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for svc, info := range services {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			gseen[full] = true
			exp, ok := grpcExpect[full]
			if !ok {
				t.Errorf("gRPC method %s is not in the access table of this test: add what it needs", full)
				continue
			}
			for _, ns := range []string{"default", "other"} {
				if exp.scope != inNS && ns == "other" {
					continue
				}
				for _, c := range callers {
					code := callGRPC(conn, full, m.IsClientStream || m.IsServerStream, ns, c)
					refused := code == codes.Unauthenticated || code == codes.PermissionDenied
					want := exp.allowed(c, map[bool]string{true: ns, false: ""}[exp.scope == inNS])
					if refused == want {
						t.Errorf("gRPC %s (namespace %s) as %s: %v; want allowed=%v", full, ns, who(c), code, want)
					}
					checked++
				}
			}
		}
	}
	for full := range grpcExpect {
		if !gseen[full] {
			t.Errorf("access table lists gRPC method %s, which the server does not serve", full)
		}
	}
	t.Logf("%d calls checked", checked)
}

func who(c *caller) string {
	if c == nil {
		return "no token"
	}
	return c.role + "@" + c.scope
}

// namespacesOf is the namespaces a route is tried in: the token's own and
// another where the request names one, "" where it cannot.
func namespacesOf(pattern string, exp expect) []string {
	switch {
	case strings.Contains(pattern, "{ns}") || strings.HasPrefix(pattern, "/ns/{namespace}"):
		return []string{"default", "other"}
	case exp.scope == inNS: // an un-prefixed OIP route: the default namespace
		return []string{"default"}
	case strings.HasSuffix(pattern, "/apply") || strings.HasSuffix(pattern, "/delete") ||
		strings.HasSuffix(pattern, "/resources/{kind}") || strings.HasSuffix(pattern, "/events"):
		return []string{"", "default", "other"} // ?namespace= or the documents' namespace
	}
	return []string{""}
}

// accessRequest builds a well-formed request for pattern in namespace ns:
// auth is checked before anything else, so what the handler would answer past
// it does not matter, only that it is not a refusal.
func accessRequest(t *testing.T, base, method, pattern, ns string) *http.Request {
	t.Helper()
	path := pattern
	for k, v := range map[string]string{"{ns}": ns, "{namespace}": ns, "{model}": "m", "{version}": "1", "{alias}": "a",
		"{kind}": "isvc", "{name}": "s", "{id}": "0123456789ab", "{command}": "promote", "{$}": ""} {
		path = strings.ReplaceAll(path, k, v)
	}
	var body []byte
	ct := ""
	switch {
	case strings.HasSuffix(path, "/apply") || strings.HasSuffix(path, "/delete"):
		docNS := ns
		if docNS == "" {
			docNS = "default"
		}
		body = fmt.Appendf(nil, "apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: s, namespace: %s}\nspec: {traffic: [{model: m}]}\n", docNS)
		ct = "application/yaml"
	case strings.Contains(path, "/blobs") && (method == "POST" || method == "PATCH") && !strings.HasSuffix(path, "/uploads"):
		body, ct = []byte("x"), "application/octet-stream"
	case method == "POST" || method == "PUT" || method == "PATCH":
		body, ct = []byte("{}"), "application/json"
	}
	if ns != "" && method == "GET" && (strings.HasSuffix(path, "/resources/isvc") || strings.HasSuffix(path, "/events")) &&
		!strings.Contains(pattern, "{ns}") {
		path += "?namespace=" + ns
	}
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	return req
}

// callGRPC calls method with an empty request (every field at its default) as
// c in namespace ns and returns the status code. A stream that is let through
// is given a moment, then cancelled: a refusal comes at once.
func callGRPC(conn *grpc.ClientConn, method string, stream bool, ns string, c *caller) codes.Code {
	md := metadata.Pairs("nimbus-namespace", ns)
	if c != nil {
		md.Set("authorization", "Bearer "+c.token)
	}
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), 2*time.Second)
	defer cancel()
	if !stream {
		return status.Code(conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{}))
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return status.Code(err)
	}
	s.SendMsg(&emptypb.Empty{})
	s.CloseSend()
	err = s.RecvMsg(&emptypb.Empty{})
	if status.Code(err) == codes.DeadlineExceeded {
		return codes.OK // let through and still streaming
	}
	return status.Code(err)
}
