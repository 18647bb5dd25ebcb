package mgmt_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/api/mgmt/mgmttest"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var (
	artifact    = []byte("0123456789abcdef-fake-onnx")
	artifactSHA = digest(artifact)
)

// newTestAPI returns a handler over a fake holding default/churn v1 (champion)
// and v2, and default/iris v1.
func newTestAPI(t *testing.T) (http.Handler, *mgmttest.Registry) {
	t.Helper()
	ctx := context.Background()
	reg := mgmttest.New(tensor.Signature{})
	if _, err := reg.PutBlob(ctx, strings.NewReader(string(artifact)), ""); err != nil {
		t.Fatal(err)
	}
	for _, req := range []registry.CreateVersionRequest{
		{Namespace: "default", Model: "churn", SHA256: artifactSHA, Aliases: []string{"champion"}},
		{Namespace: "default", Model: "churn", SHA256: artifactSHA},
		{Namespace: "default", Model: "iris", SHA256: artifactSHA},
	} {
		if _, err := reg.CreateVersion(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	h := mgmtOpen(reg, mgmt.Options{
		Logger:       slog.New(slog.DiscardHandler),
		UploadDir:    t.TempDir(),
		MaxBodyBytes: 256,
		MaxBlobBytes: 64,
	})
	return h, reg
}

func do(h http.Handler, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	switch {
	case strings.Contains(path, "/blobs") && body != "":
		req.Header.Set("Content-Type", "application/octet-stream")
	case strings.HasPrefix(body, "{"):
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

type errBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

func TestRoutes(t *testing.T) {
	const m = "/api/v1/namespaces/default/models"
	tests := []struct {
		name      string
		method    string
		path      string
		body      string
		hdr       map[string]string
		status    int
		code      string // error code, when status >= 400
		field     string
		bodyHas   string // substring of a successful body
		wantEmpty bool
	}{
		{name: "namespaces", method: "GET", path: "/api/v1/namespaces", status: 200, bodyHas: `"items":["default"]`},
		{name: "list", method: "GET", path: m, status: 200, bodyHas: `"name":"iris"`},
		{name: "list page", method: "GET", path: m + "?limit=1", status: 200, bodyHas: `"next":"churn"`},
		{name: "list after", method: "GET", path: m + "?limit=1&after=churn", status: 200, bodyHas: `"name":"iris"`},
		{name: "list prefix", method: "GET", path: m + "?prefix=ir", status: 200, bodyHas: `"iris"`},
		{name: "list bad limit", method: "GET", path: m + "?limit=x", status: 400, code: "invalid_argument", field: "limit"},
		{name: "get model", method: "GET", path: m + "/churn", status: 200, bodyHas: `"aliases":{"champion":1}`},
		{name: "get missing model", method: "GET", path: m + "/nope", status: 404, code: "not_found"},
		{name: "patch model", method: "PATCH", path: m + "/churn", body: `{"description":"d","labels":{"team":"x"}}`, status: 200, bodyHas: `"labels":{"team":"x"}`},
		{name: "patch unknown field", method: "PATCH", path: m + "/churn", body: `{"descr":"d"}`, status: 400, code: "invalid_argument"},
		{name: "patch empty body", method: "PATCH", path: m + "/churn", status: 400, code: "invalid_argument"},
		{name: "patch too large", method: "PATCH", path: m + "/churn", body: `{"description":"` + strings.Repeat("x", 300) + `"}`, status: 413, code: "too_large"},
		{name: "get serving", method: "GET", path: m + "/churn/serving", status: 200, bodyHas: `{}`},
		{name: "put serving", method: "PUT", path: m + "/churn/serving", body: `{"threads":2,"interOpThreads":1}`, status: 200, bodyHas: `{"threads":2,"interOpThreads":1}`},
		{name: "put bad serving", method: "PUT", path: m + "/churn/serving", body: `{"threads":-1}`, status: 400, code: "invalid_argument", field: "threads"},
		{name: "list versions", method: "GET", path: m + "/churn/versions", status: 200, bodyHas: `"version":2`},
		{name: "create version", method: "POST", path: m + "/churn/versions", body: `{"sha256":"` + artifactSHA + `","aliases":["next"]}`, status: 201, bodyHas: `"version":3`},
		{name: "create version unknown blob", method: "POST", path: m + "/churn/versions", body: `{"sha256":"` + strings.Repeat("0", 64) + `"}`, status: 400, code: "invalid_argument", field: "sha256"},
		{name: "create duplicate version", method: "POST", path: m + "/churn/versions", body: `{"version":1,"sha256":"` + artifactSHA + `"}`, status: 409, code: "already_exists"},
		{name: "get version", method: "GET", path: m + "/churn/versions/2", status: 200, bodyHas: `"version":2`},
		{name: "get version by alias", method: "GET", path: m + "/churn/versions/champion", status: 200, bodyHas: `"version":1`},
		{name: "get missing version", method: "GET", path: m + "/churn/versions/9", status: 404, code: "not_found"},
		{name: "delete aliased version", method: "DELETE", path: m + "/churn/versions/1", status: 409, code: "conflict"},
		{name: "delete aliased version forced", method: "DELETE", path: m + "/churn/versions/1?force=true", status: 204, wantEmpty: true},
		{name: "delete version bad force", method: "DELETE", path: m + "/churn/versions/2?force=maybe", status: 400, code: "invalid_argument", field: "force"},
		{name: "delete version not a number", method: "DELETE", path: m + "/churn/versions/x", status: 400, code: "invalid_argument", field: "version"},
		{name: "delete version", method: "DELETE", path: m + "/iris/versions/1", status: 204, wantEmpty: true},
		{name: "put version serving", method: "PUT", path: m + "/churn/versions/2/serving", body: `{"threads":4}`, status: 200, bodyHas: `"serving":{"threads":4}`},
		{name: "delete version serving", method: "DELETE", path: m + "/churn/versions/2/serving", status: 200},
		{name: "set alias", method: "PUT", path: m + "/churn/aliases/challenger", body: `{"version":2}`, status: 200, bodyHas: `"challenger":2`},
		{name: "set alias missing version", method: "PUT", path: m + "/churn/aliases/challenger", body: `{"version":7}`, status: 404, code: "not_found"},
		{name: "set alias zero version", method: "PUT", path: m + "/churn/aliases/challenger", body: `{}`, status: 400, code: "invalid_argument", field: "version"},
		{name: "set numeric alias", method: "PUT", path: m + "/churn/aliases/12", body: `{"version":2}`, status: 400, code: "invalid_argument", field: "alias"},
		{name: "delete missing alias", method: "DELETE", path: m + "/churn/aliases/nope", status: 404, code: "not_found"},
		{name: "delete alias", method: "DELETE", path: m + "/churn/aliases/champion", status: 204, wantEmpty: true},
		{name: "delete aliased model", method: "DELETE", path: m + "/churn", status: 409, code: "conflict"},
		{name: "delete model forced", method: "DELETE", path: m + "/churn?force=1", status: 204, wantEmpty: true},
		{name: "gc", method: "POST", path: "/api/v1/gc", status: 200, bodyHas: `"removed":[]`},
		{name: "unknown route", method: "GET", path: "/api/v1/nothing", status: 404, code: "not_found"},
		{name: "wrong method", method: "POST", path: m + "/churn", status: 405, code: "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newTestAPI(t)
			rec := do(h, tt.method, tt.path, tt.body, tt.hdr)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.wantEmpty && rec.Body.Len() != 0 {
				t.Errorf("body = %q, want empty", rec.Body)
			}
			if tt.status >= 400 {
				checkError(t, rec, tt.code, tt.field)
				return
			}
			if !strings.Contains(rec.Body.String(), tt.bodyHas) {
				t.Errorf("body %s does not contain %s", rec.Body, tt.bodyHas)
			}
		})
	}
}

func checkError(t *testing.T, rec *httptest.ResponseRecorder, code, field string) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e errBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	if e.Error.Code != code || e.Error.Field != field || e.Error.Message == "" {
		t.Errorf("error = %+v, want code %q field %q and a message", e.Error, code, field)
	}
}

func TestPatchKeepsUnsetFields(t *testing.T) {
	h, reg := newTestAPI(t)
	for _, body := range []string{`{"description":"first","labels":{"a":"b"}}`, `{"description":"second"}`} {
		if rec := do(h, "PATCH", "/api/v1/namespaces/default/models/iris", body, nil); rec.Code != 200 {
			t.Fatalf("PATCH %s: %d %s", body, rec.Code, rec.Body)
		}
	}
	m, err := reg.GetModel(context.Background(), "default", "iris")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "b"}, m.Labels); diff != "" || m.Description != "second" {
		t.Errorf("model = %q %v; labels diff (-want +got):\n%s", m.Description, m.Labels, diff)
	}
}

func TestArtifact(t *testing.T) {
	h, _ := newTestAPI(t)
	const p = "/api/v1/namespaces/default/models/churn/versions/champion/artifact"
	tests := []struct {
		name   string
		hdr    map[string]string
		status int
		body   string
	}{
		{name: "whole", status: 200, body: string(artifact)},
		{name: "range", hdr: map[string]string{"Range": "bytes=2-5"}, status: 206, body: string(artifact[2:6])},
		{name: "not modified", hdr: map[string]string{"If-None-Match": `"sha256:` + artifactSHA + `"`}, status: 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(h, "GET", p, "", tt.hdr)
			if rec.Code != tt.status || rec.Body.String() != tt.body {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body, tt.status, tt.body)
			}
			if got := rec.Header().Get("ETag"); got != `"sha256:`+artifactSHA+`"` {
				t.Errorf("ETag = %q", got)
			}
		})
	}
	rec := do(h, "GET", p, "", nil)
	if got := rec.Header().Get("Content-Length"); got != "26" {
		t.Errorf("Content-Length = %q, want 26", got)
	}
}

func TestPostBlob(t *testing.T) {
	body := "hello blob"
	sum := digest([]byte(body))
	tests := []struct {
		name   string
		path   string
		body   string
		hdr    map[string]string
		status int
		code   string
	}{
		{name: "no digest", path: "", body: body, status: 201},
		{name: "header digest", body: body, hdr: map[string]string{mgmt.HeaderContentSHA256: sum}, status: 201},
		{name: "query digest", path: "?sha256=" + sum, body: body, status: 201},
		{name: "digest mismatch", path: "?sha256=" + strings.Repeat("a", 64), body: body, status: 400, code: "invalid_argument"},
		{name: "malformed digest", path: "?sha256=xyz", body: body, status: 400, code: "invalid_argument"},
		{name: "too large", body: strings.Repeat("x", 65), status: 413, code: "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, reg := newTestAPI(t)
			rec := do(h, "POST", "/api/v1/namespaces/default/blobs"+tt.path, tt.body, tt.hdr)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status >= 400 {
				checkError(t, rec, tt.code, errFieldFor(tt.code))
				if reg.HasBlob(sum) {
					t.Error("a refused blob was stored")
				}
				return
			}
			var info registry.BlobInfo
			if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil {
				t.Fatal(err)
			}
			if info.SHA256 != sum || info.Size != int64(len(body)) || !reg.HasBlob(sum) {
				t.Errorf("info = %+v, stored %v", info, reg.HasBlob(sum))
			}
		})
	}
}

func errFieldFor(code string) string {
	if code == "invalid_argument" {
		return "sha256"
	}
	return ""
}

// TestJSONErrorsSayWhatIsWrong: the caller's own JSON mistakes are quoted
// back (the message is explicit, not the decoder's wrapped cause).
func TestJSONErrorsSayWhatIsWrong(t *testing.T) {
	const m = "/api/v1/namespaces/default/models/churn"
	for body, want := range map[string]string{
		`{"descr":"d"}`:       `invalid JSON body: json: unknown field "descr"`,
		`{"description":`:     `invalid JSON body: unexpected EOF`,
		`{"description":7}`:   `invalid JSON body: json: cannot unmarshal number into Go struct field`,
		`{"description" "d"}`: `invalid JSON body: invalid character '"' after object key`,
	} {
		h, _ := newTestAPI(t)
		rec := do(h, "PATCH", m, body, nil)
		var e errBody
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != 400 || !strings.HasPrefix(e.Error.Message, want) {
			t.Errorf("%s: %d %s, want 400 %q", body, rec.Code, rec.Body, want)
		}
	}
}
