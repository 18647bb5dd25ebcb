package client_test

// These tests hold the client to the REST contract of the declarative
// resources with canned answers; the end-to-end tests against the real server
// live in e2e/.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/spec"
)

// seen is one request as the canned server got it.
type seen struct {
	Method, Path, Query, Source, Body string
}

// canned answers every request with status and body, and records it.
type canned struct {
	mu     sync.Mutex
	reqs   []seen
	status int
	body   string
}

func (c *canned) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.reqs = append(c.reqs, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get(client.ChangeSourceHeader), string(b)})
	status, body := c.status, c.body
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func (c *canned) last(t *testing.T) seen {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	return c.reqs[len(c.reqs)-1]
}

func cannedServer(t *testing.T, status int, body string, opts ...client.Option) (*client.Client, *canned) {
	t.Helper()
	h := &canned{status: status, body: body}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return client.New(srv.URL, opts...), h
}

func TestApply(t *testing.T) {
	answer := `{"dryRun":true,"results":[
		{"kind":"Model","namespace":"default","name":"fraud-detector","action":"created","generation":1,"diff":"--- a\n+++ b\n"},
		{"kind":"InferenceService","namespace":"default","name":"fraud","action":"unchanged","generation":3}]}`
	c, h := cannedServer(t, http.StatusOK, answer, client.WithChangeSource("cli"))
	files := []client.ApplyFile{{Name: "fraud/model.yaml", Content: "kind: Model\n"}}
	got, err := c.Apply(context.Background(), files, client.ApplyOptions{Namespace: "payments", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := &client.ApplyResult{DryRun: true, Results: []client.ResourceResult{
		{Kind: "Model", Namespace: "default", Name: "fraud-detector", Action: "created", Generation: 1, Diff: "--- a\n+++ b\n"},
		{Kind: "InferenceService", Namespace: "default", Name: "fraud", Action: "unchanged", Generation: 3},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	if !got.Changed() {
		t.Error("Changed() = false with a created resource")
	}
	r := h.last(t)
	wantReq := seen{Method: "POST", Path: "/api/v1/apply", Source: "cli",
		Body: `{"files":[{"name":"fraud/model.yaml","content":"kind: Model\n"}],"namespace":"payments","dryRun":true}`}
	if diff := cmp.Diff(wantReq, r); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
}

func TestDeleteFiles(t *testing.T) {
	c, h := cannedServer(t, http.StatusOK, `{"results":[{"kind":"InferenceService","namespace":"default","name":"fraud","action":"deleted"}]}`)
	got, err := c.DeleteFiles(context.Background(), nil, client.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := &client.ApplyResult{Results: []client.ResourceResult{{Kind: "InferenceService", Namespace: "default", Name: "fraud", Action: "deleted"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	// Without WithChangeSource no header is sent; no files is an empty list.
	if r := h.last(t); r.Path != "/api/v1/delete" || r.Source != "" || r.Body != `{"files":[]}` {
		t.Errorf("request = %+v", r)
	}
}

func TestApplyErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantApply bool
		wantMsg   string
		notFound  bool
	}{
		{
			name:   "invalid",
			status: http.StatusBadRequest,
			body: `{"errors":[
				{"file":"svc.yaml","line":7,"kind":"InferenceService","name":"fraud","field":"spec.traffic[1].weight","message":"weights must sum to 100, got 90","code":"invalid_argument"},
				{"file":"model.yaml","message":"no documents"},
				{"kind":"Model","name":"churn","field":"spec.aliases.champion","message":"version 9 is not declared"},
				{"line":3,"code":"invalid_argument"}]}`,
			wantApply: true,
			wantMsg: "svc.yaml:7: spec.traffic[1].weight: weights must sum to 100, got 90\n" +
				"model.yaml: no documents\n" +
				"model/churn: spec.aliases.champion: version 9 is not declared\n" +
				"line 3: invalid_argument",
		},
		{
			name:      "conflict",
			status:    http.StatusConflict,
			body:      `{"errors":[{"file":"m.yaml","line":4,"field":"metadata.resourceVersion","message":"is 3, stored 4","code":"conflict"}]}`,
			wantApply: true,
			wantMsg:   "m.yaml:4: metadata.resourceVersion: is 3, stored 4",
		},
		{
			name:      "missing on delete",
			status:    http.StatusNotFound,
			body:      `{"errors":[{"file":"m.yaml","line":1,"message":"model \"x\" not found","code":"not_found"}]}`,
			wantApply: true,
			wantMsg:   `m.yaml:1: model "x" not found`,
			notFound:  true,
		},
		{
			name:    "plain API error",
			status:  http.StatusForbidden,
			body:    `{"error":{"code":"forbidden","message":"token lacks write"}}`,
			wantMsg: "token lacks write",
		},
		{
			name:    "server error with errors is not an ApplyError",
			status:  http.StatusInternalServerError,
			body:    `{"errors":[{"message":"x"}]}`,
			wantMsg: `{"errors":[{"message":"x"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := cannedServer(t, tt.status, tt.body)
			_, err := c.Apply(context.Background(), []client.ApplyFile{{Name: "a.yaml", Content: "x"}}, client.ApplyOptions{})
			if err == nil {
				t.Fatal("no error")
			}
			var ae *client.ApplyError
			if errors.As(err, &ae) != tt.wantApply {
				t.Fatalf("ApplyError = %v for %T %v", !tt.wantApply, err, err)
			}
			if ae != nil && ae.Status != tt.status {
				t.Errorf("status = %d", ae.Status)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("message:\n%s\nwant:\n%s", err, tt.wantMsg)
			}
			if client.IsNotFound(err) != tt.notFound {
				t.Errorf("IsNotFound = %v", !tt.notFound)
			}
		})
	}
}

func TestNormalizeKind(t *testing.T) {
	tests := []struct {
		in, kind, plural string
	}{
		{"model", "Model", "models"},
		{"Models", "Model", "models"},
		{"MODEL", "Model", "models"},
		{"model.nimbus.dev", "Model", "models"},
		{"inferenceservice", "InferenceService", "inferenceservices"},
		{"InferenceServices", "InferenceService", "inferenceservices"},
		{"isvc", "InferenceService", "inferenceservices"},
		{"ISVC", "InferenceService", "inferenceservices"},
		{"inferenceservice.nimbus.dev", "InferenceService", "inferenceservices"},
		{"pipeline", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		kind, plural, err := client.NormalizeKind(tt.in)
		if kind != tt.kind || plural != tt.plural || (err != nil) != (tt.kind == "") {
			t.Errorf("NormalizeKind(%q) = %q, %q, %v", tt.in, kind, plural, err)
		}
	}
}

const svcJSON = `{"apiVersion":"nimbus.dev/v1","kind":"InferenceService",
	"metadata":{"name":"fraud","namespace":"payments","generation":2,"resourceVersion":"5"},
	"spec":{"traffic":[{"model":"fraud-detector@champion","weight":100}],"timeout":"500ms"},
	"status":{"observedGeneration":2,"conditions":[{"type":"Ready","status":"True"}],
		"traffic":[{"model":"fraud-detector@champion","weight":100,"version":3,"requests":10,"errors":0,"share":1}]}}`

const modelJSON = `{"apiVersion":"nimbus.dev/v1","kind":"Model","metadata":{"name":"fraud-detector","namespace":"payments"},
	"spec":{"versions":[{"version":3,"format":"onnx","source":{"uri":"file:///m/3.onnx","sha256":"abc"}}],"aliases":{"champion":3}}}`

func TestGetResource(t *testing.T) {
	c, h := cannedServer(t, http.StatusOK, svcJSON, client.WithChangeSource("cli"))
	obj, err := c.GetResource(context.Background(), "isvc", "payments", "fraud")
	if err != nil {
		t.Fatal(err)
	}
	svc, ok := obj.(*spec.InferenceService)
	if !ok {
		t.Fatalf("got %T", obj)
	}
	w := 100
	want := &spec.InferenceService{
		TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindInferenceService},
		Metadata: spec.ObjectMeta{Name: "fraud", Namespace: "payments", Generation: 2, ResourceVersion: "5"},
		Spec: spec.ServiceSpec{
			Traffic: []spec.TrafficTarget{{Model: "fraud-detector@champion", Weight: &w}},
			Timeout: 500 * 1e6,
		},
		Status: &spec.ServiceStatus{
			ObservedGeneration: 2,
			Conditions:         []spec.Condition{{Type: "Ready", Status: "True"}},
			Traffic:            []spec.TrafficStatus{{Model: "fraud-detector@champion", Weight: 100, Version: 3, Requests: 10, Share: 1}},
		},
	}
	if diff := cmp.Diff(want, svc); diff != "" {
		t.Errorf("service (-want +got):\n%s", diff)
	}
	// A GET is not a change: no source header.
	if r := h.last(t); r.Method != "GET" || r.Path != "/api/v1/namespaces/payments/resources/inferenceservices/fraud" || r.Source != "" {
		t.Errorf("request = %+v", r)
	}

	c, _ = cannedServer(t, http.StatusOK, modelJSON)
	obj, err = c.GetResource(context.Background(), "Model", "payments", "fraud-detector")
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := obj.(*spec.Model); !ok || m.Spec.Aliases["champion"] != 3 || m.Spec.Versions[0].Source.SHA256 != "abc" {
		t.Errorf("model = %#v", obj)
	}

	c, _ = cannedServer(t, http.StatusNotFound, `{"error":{"code":"not_found","message":"inferenceservice \"x\" not found"}}`)
	if _, err := c.GetResource(context.Background(), "isvc", "", "x"); !client.IsNotFound(err) {
		t.Errorf("missing: %v", err)
	}
	if _, err := c.GetResource(context.Background(), "pipeline", "", "x"); err == nil || !strings.Contains(err.Error(), "unknown kind") {
		t.Errorf("bad kind: %v", err)
	}
}

func TestListResources(t *testing.T) {
	c, h := cannedServer(t, http.StatusOK, `{"items":[`+modelJSON+`,`+svcJSON+`]}`)
	objs, err := c.ListResources(context.Background(), "models", "payments", false)
	if err != nil {
		t.Fatal(err)
	}
	// Each item decodes as the kind it says it is.
	if len(objs) != 2 || objs[0].GetKind() != spec.KindModel || objs[1].GetKind() != spec.KindInferenceService ||
		objs[1].GetMeta().Name != "fraud" {
		t.Errorf("objects = %#v", objs)
	}
	if r := h.last(t); r.Path != "/api/v1/namespaces/payments/resources/models" {
		t.Errorf("path = %s", r.Path)
	}

	if _, err := c.ListResources(context.Background(), "isvc", "payments", true); err != nil {
		t.Fatal(err)
	}
	if r := h.last(t); r.Path != "/api/v1/resources/inferenceservices" {
		t.Errorf("all namespaces path = %s", r.Path)
	}
	if _, err := c.ListResources(context.Background(), "isvc", "", false); err != nil {
		t.Fatal(err)
	}
	if r := h.last(t); r.Path != "/api/v1/namespaces/default/resources/inferenceservices" {
		t.Errorf("default namespace path = %s", r.Path)
	}

	c, _ = cannedServer(t, http.StatusOK, `{"items":[]}`)
	if objs, err := c.ListResources(context.Background(), "isvc", "x", false); err != nil || objs == nil || len(objs) != 0 {
		t.Errorf("empty list = %#v, %v", objs, err)
	}
}

func TestDeleteResource(t *testing.T) {
	c, h := cannedServer(t, http.StatusOK, `{"kind":"InferenceService","namespace":"a b","name":"fraud","action":"deleted"}`, client.WithChangeSource("cli"))
	if err := c.DeleteResource(context.Background(), "inferenceservice", "a b", "fraud", false); err != nil {
		t.Fatal(err)
	}
	if r := h.last(t); r.Method != "DELETE" || r.Path != "/api/v1/namespaces/a%20b/resources/inferenceservices/fraud" || r.Source != "cli" {
		t.Errorf("request = %+v", r)
	}
}

func TestEvents(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	c, h := cannedServer(t, http.StatusOK, `{"items":[{"id":7,"time":"2025-01-02T03:04:05Z","actor":"local","source":"cli",
		"action":"update","kind":"InferenceService","namespace":"payments","name":"fraud","generation":3,
		"summary":"traffic fraud-detector@challenger 10 -> 50","diff":"-a\n+b\n"}]}`)
	got, err := c.Events(context.Background(), audit.Query{Namespace: "payments", Kind: "InferenceService", Name: "fraud",
		After: 6, Limit: 10, Since: at})
	if err != nil {
		t.Fatal(err)
	}
	want := []audit.Event{{ID: 7, Time: at, Actor: "local", Source: "cli", Action: "update", Kind: "InferenceService",
		Namespace: "payments", Name: "fraud", Generation: 3, Summary: "traffic fraud-detector@challenger 10 -> 50", Diff: "-a\n+b\n"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	r := h.last(t)
	if r.Path != "/api/v1/namespaces/payments/events" ||
		r.Query != "after=6&kind=InferenceService&limit=10&name=fraud&since=2025-01-02T03%3A04%3A05Z" {
		t.Errorf("request = %+v", r)
	}

	// Latest asks for the newest events.
	if _, err := c.Events(context.Background(), audit.Query{Kind: "Model", Limit: 50, Latest: true}); err != nil {
		t.Fatal(err)
	}
	if r := h.last(t); r.Path != "/api/v1/events" || r.Query != "kind=Model&latest=true&limit=50" {
		t.Errorf("latest request = %+v", r)
	}

	c, h = cannedServer(t, http.StatusOK, `{"items":null}`)
	got, err = c.Events(context.Background(), audit.Query{})
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("no events = %#v, %v", got, err)
	}
	if r := h.last(t); r.Path != "/api/v1/events" || r.Query != "" {
		t.Errorf("request = %+v", r)
	}
}

// The change source rides on every mutating call, including the older ones.
func TestChangeSourceOnMutations(t *testing.T) {
	c, h := cannedServer(t, http.StatusOK, `{}`, client.WithChangeSource("cli"))
	ctx := context.Background()
	calls := []func() error{
		func() error { _, err := c.Apply(ctx, nil, client.ApplyOptions{}); return err },
		func() error { _, err := c.DeleteFiles(ctx, nil, client.ApplyOptions{}); return err },
		func() error { return c.DeleteResource(ctx, "model", "default", "m", false) },
		func() error { return c.DeleteAlias(ctx, "default", "m", "champion") },
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if r := h.last(t); r.Source != "cli" {
			t.Errorf("call %d (%s %s): source %q", i, r.Method, r.Path, r.Source)
		}
	}
	if _, err := c.Events(ctx, audit.Query{}); err != nil {
		t.Fatal(err)
	}
	if r := h.last(t); r.Source != "" {
		t.Errorf("GET carries source %q", r.Source)
	}
}

// ApplyResult encodes as the server's answer does, for -o json.
func TestApplyResultJSON(t *testing.T) {
	b, err := json.Marshal(client.ApplyResult{Results: []client.ResourceResult{{Kind: "Model", Namespace: "default", Name: "m", Action: "unchanged"}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"dryRun":false,"results":[{"kind":"Model","namespace":"default","name":"m","action":"unchanged"}]}`; string(b) != want {
		t.Errorf("json = %s", b)
	}
}
