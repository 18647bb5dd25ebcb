package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/api/mgmt/mgmttest"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/tensor"
)

func newServer(t *testing.T) (*httptest.Server, *mgmttest.Registry) {
	t.Helper()
	reg := mgmttest.New(tensor.Signature{})
	h := openMgmt(reg, mgmt.Options{Logger: slog.New(slog.DiscardHandler), UploadDir: t.TempDir()})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, reg
}

func writeFile(t *testing.T, data string) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256([]byte(data))
	return path, hex.EncodeToString(s[:])
}

// flaky fails chosen PATCH requests, either before the server sees them or
// after it has stored the chunk (the answer is lost).
type flaky struct {
	mu     sync.Mutex
	n      int
	before map[int]bool // PATCH number → fail without sending
	after  map[int]bool // PATCH number → send, then fail
}

func (f *flaky) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPatch {
		return http.DefaultTransport.RoundTrip(r)
	}
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if f.before[n] {
		return nil, errors.New("connection refused")
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && f.after[n] {
		resp.Body.Close()
		return nil, errors.New("connection reset")
	}
	return resp, err
}

func TestPushFile(t *testing.T) {
	data := strings.Repeat("0123456789", 10) + "xyz" // 103 bytes, 11 chunks of 10
	tests := []struct {
		name    string
		before  map[int]bool
		after   map[int]bool
		retries int
		wantErr bool
	}{
		{name: "clean"},
		{name: "lost request", before: map[int]bool{2: true, 5: true}, retries: 3},
		{name: "lost answer resumes from server offset", after: map[int]bool{3: true, 4: true}, retries: 3},
		{name: "gives up", before: map[int]bool{2: true, 3: true, 4: true}, retries: 2, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, reg := newServer(t)
			path, sum := writeFile(t, data)
			c := client.New(srv.URL,
				client.WithHTTPClient(&http.Client{Transport: &flaky{before: tt.before, after: tt.after}}),
				client.WithChunkSize(10),
				client.WithRetries(tt.retries, 0))
			var last, total int64
			v, err := c.PushFile(context.Background(), "default", "churn", path,
				registry.CreateVersionRequest{Aliases: []string{"champion"}, Lineage: map[string]string{"run": "7"}},
				func(done, tot int64) { last, total = done, tot })
			if tt.wantErr {
				if err == nil {
					t.Fatal("push succeeded, want an error")
				}
				if reg.HasBlob(sum) {
					t.Error("failed push stored a blob")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.SHA256 != sum || v.Size != int64(len(data)) || v.Version != 1 || v.Source != "push" || v.Lineage["run"] != "7" {
				t.Errorf("version = %+v", v)
			}
			if last != total || total != int64(len(data)) {
				t.Errorf("progress ended at %d/%d", last, total)
			}
			m, err := c.GetModel(context.Background(), "default", "churn")
			if err != nil || m.Aliases["champion"] != 1 {
				t.Errorf("model = %+v, %v", m, err)
			}
		})
	}
}

func TestPushEmptyFile(t *testing.T) {
	srv, _ := newServer(t)
	path, sum := writeFile(t, "")
	v, err := client.New(srv.URL).PushFile(context.Background(), "default", "empty", path, registry.CreateVersionRequest{}, nil)
	if err != nil || v.SHA256 != sum {
		t.Fatalf("push empty = %+v, %v", v, err)
	}
}

func TestManagementCalls(t *testing.T) {
	ctx := context.Background()
	srv, _ := newServer(t)
	c := client.New(srv.URL + "/")
	info, err := c.PutBlob(ctx, "default", strings.NewReader("abc"), 3, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		for range 2 {
			if _, err := c.CreateVersion(ctx, registry.CreateVersionRequest{Namespace: "default", Model: name, SHA256: info.SHA256}); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, err := c.ListAllModels(ctx, "default", registry.ListOptions{Limit: 2})
	if err != nil || len(all) != 3 {
		t.Fatalf("ListAllModels = %d models, %v", len(all), err)
	}
	page, err := c.ListModels(ctx, "default", registry.ListOptions{Limit: 1, After: "a"})
	if err != nil || len(page.Items) != 1 || page.Items[0].Name != "b" || page.Next != "b" {
		t.Fatalf("ListModels = %+v, %v", page, err)
	}
	if _, err := c.SetAlias(ctx, "default", "a", "champion", 1); err != nil {
		t.Fatal(err)
	}
	v, err := c.GetVersion(ctx, "default", "a", "champion")
	if err != nil || v.Version != 1 {
		t.Fatalf("GetVersion(champion) = %+v, %v", v, err)
	}
	var buf strings.Builder
	if n, err := c.DownloadArtifact(ctx, "default", "a", "1", &buf); err != nil || n != 3 || buf.String() != "abc" {
		t.Fatalf("DownloadArtifact = %d %q, %v", n, buf.String(), err)
	}
	if s, err := c.SetServing(ctx, "default", "a", registry.ServingConfig{Threads: 2}); err != nil || s.Threads != 2 {
		t.Fatalf("SetServing = %+v, %v", s, err)
	}
	if v, err := c.SetVersionServing(ctx, "default", "a", 2, &registry.ServingConfig{InterOpThreads: 3}); err != nil || v.Serving == nil || v.Serving.InterOpThreads != 3 {
		t.Fatalf("SetVersionServing = %+v, %v", v, err)
	}
	if v, err := c.SetVersionServing(ctx, "default", "a", 2, nil); err != nil || v.Serving != nil {
		t.Fatalf("clear SetVersionServing = %+v, %v", v, err)
	}
	desc := "hello"
	if m, err := c.UpdateModel(ctx, "default", "a", client.ModelPatch{Description: &desc}); err != nil || m.Description != desc {
		t.Fatalf("UpdateModel = %+v, %v", m, err)
	}
	err = c.DeleteVersion(ctx, "default", "a", 1, false)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "conflict" {
		t.Fatalf("DeleteVersion of aliased version = %v", err)
	}
	if err := c.DeleteAlias(ctx, "default", "a", "champion"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteModel(ctx, "default", "a", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetModel(ctx, "default", "a"); !client.IsNotFound(err) {
		t.Fatalf("GetModel after delete = %v", err)
	}
	ns, err := c.Namespaces(ctx)
	if err != nil || !cmp.Equal(ns, []string{"default"}) {
		t.Fatalf("Namespaces = %v, %v", ns, err)
	}
	if _, err := c.PutBlob(ctx, "default", strings.NewReader("orphan"), -1, ""); err != nil {
		t.Fatal(err)
	}
	removed, err := c.GC(ctx)
	if err != nil || len(removed) != 1 {
		t.Fatalf("GC = %v, %v", removed, err)
	}
}

func TestAPIErrorDecoding(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   client.APIError
		text   string
	}{
		{
			name: "management", status: 400,
			body: `{"error":{"code":"invalid_argument","message":"bad name","field":"name"}}`,
			want: client.APIError{Status: 400, Code: "invalid_argument", Message: "bad name", Field: "name"},
			text: "bad name (field name)",
		},
		{
			name: "oip", status: 400, body: `{"error":"input x expects shape [-1,4] FP32, got [1,3]"}`,
			want: client.APIError{Status: 400, Message: "input x expects shape [-1,4] FP32, got [1,3]"},
			text: "input x expects shape [-1,4] FP32, got [1,3]",
		},
		{
			name: "plain text", status: 502, body: "bad gateway\n",
			want: client.APIError{Status: 502, Message: "bad gateway"}, text: "bad gateway",
		},
		{
			name: "empty", status: 503,
			want: client.APIError{Status: 503}, text: "server answered 503 Service Unavailable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			_, err := client.New(srv.URL).GetModel(context.Background(), "default", "m")
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *APIError", err)
			}
			if diff := cmp.Diff(tt.want, *ae); diff != "" {
				t.Errorf("APIError (-want +got):\n%s", diff)
			}
			if ae.Error() != tt.text {
				t.Errorf("Error() = %q, want %q", ae.Error(), tt.text)
			}
		})
	}
}
