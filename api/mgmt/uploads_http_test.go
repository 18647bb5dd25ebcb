package mgmt_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/api/mgmt"
)

func TestResumableUploadHTTP(t *testing.T) {
	const data = "0123456789" + "abcdefghij" + "KLMNO"
	sum := digest([]byte(data))
	type step struct {
		method, path, body string
		offset             string // Upload-Offset header
		status             int
		code, field        string
		wantOffset         string // Upload-Offset in the response
	}
	tests := []struct {
		name    string
		steps   []step
		stored  bool
		removed bool // the upload is gone at the end
	}{
		{
			name: "chunks, a stale retry and resume",
			steps: []step{
				{method: "PATCH", body: data[:10], offset: "0", status: 202, wantOffset: "10"},
				// the client lost the response and retries the same chunk
				{method: "PATCH", body: data[:10], offset: "0", status: 409, code: "conflict", field: mgmt.HeaderUploadOffset, wantOffset: "10"},
				{method: "HEAD", status: 200, wantOffset: "10"},
				{method: "GET", status: 200, wantOffset: "10"},
				{method: "PATCH", body: data[10:20], offset: "10", status: 202, wantOffset: "20"},
				{method: "PATCH", body: data[20:], offset: "20", status: 202, wantOffset: "25"},
				{method: "PUT", path: "?sha256=" + sum, status: 201},
				{method: "GET", status: 404, code: "not_found"},
			},
			stored: true, removed: true,
		},
		{
			name: "digest mismatch stores nothing",
			steps: []step{
				{method: "PATCH", body: data, offset: "0", status: 202, wantOffset: "25"},
				{method: "PUT", path: "?sha256=" + strings.Repeat("b", 64), status: 400, code: "invalid_argument", field: "sha256"},
				{method: "GET", status: 404, code: "not_found"},
			},
			stored: false, removed: true,
		},
		{
			name: "finish without digest",
			steps: []step{
				{method: "PATCH", body: data, offset: "0", status: 202, wantOffset: "25"},
				{method: "PUT", status: 400, code: "invalid_argument", field: "sha256"},
				{method: "GET", status: 200, wantOffset: "25"},
			},
		},
		{
			name: "bad offset header",
			steps: []step{
				{method: "PATCH", body: data, offset: "abc", status: 400, code: "invalid_argument", field: mgmt.HeaderUploadOffset},
				{method: "PATCH", body: data, status: 400, code: "invalid_argument", field: mgmt.HeaderUploadOffset},
				{method: "PATCH", body: data, offset: "-1", status: 400, code: "invalid_argument", field: mgmt.HeaderUploadOffset},
				{method: "PATCH", body: data, offset: "99999999999999999999", status: 400, code: "invalid_argument", field: mgmt.HeaderUploadOffset},
				{method: "GET", status: 200, wantOffset: "0"},
			},
		},
		{
			// offset+length would overflow int64 and slip under the limit.
			name: "huge offset",
			steps: []step{
				{method: "PATCH", body: data, offset: "9223372036854775807", status: 413, code: "too_large"},
				{method: "PATCH", body: data, offset: "9223372036854775800", status: 413, code: "too_large"},
				{method: "GET", status: 200, wantOffset: "0"},
			},
		},
		{
			name: "chunk over the blob limit",
			steps: []step{
				{method: "PATCH", body: data, offset: "0", status: 202},
				{method: "PATCH", body: strings.Repeat("z", 40), offset: "25", status: 413, code: "too_large"},
				{method: "GET", status: 200, wantOffset: "25"},
			},
		},
		{
			name: "cancel",
			steps: []step{
				{method: "PATCH", body: data, offset: "0", status: 202},
				{method: "DELETE", status: 204},
				{method: "DELETE", status: 404, code: "not_found"},
			},
			removed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, reg := newTestAPI(t)
			rec := do(h, "POST", "/api/v1/namespaces/default/blobs/uploads", "", nil)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("start: %d %s", rec.Code, rec.Body)
			}
			var st mgmt.UploadStatus
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.ID == "" || st.Offset != 0 {
				t.Fatalf("start body %s: %v", rec.Body, err)
			}
			loc := rec.Header().Get("Location")
			if loc != "/api/v1/namespaces/default/blobs/uploads/"+st.ID {
				t.Fatalf("Location = %q", loc)
			}
			for i, s := range tt.steps {
				hdr := map[string]string{}
				if s.offset != "" {
					hdr[mgmt.HeaderUploadOffset] = s.offset
				}
				rec := do(h, s.method, loc+s.path, s.body, hdr)
				if rec.Code != s.status {
					t.Fatalf("step %d %s: status %d, want %d: %s", i, s.method, rec.Code, s.status, rec.Body)
				}
				if s.code != "" {
					checkError(t, rec, s.code, s.field)
				}
				if got := rec.Header().Get(mgmt.HeaderUploadOffset); s.wantOffset != "" && got != s.wantOffset {
					t.Errorf("step %d %s: Upload-Offset = %q, want %q", i, s.method, got, s.wantOffset)
				}
				if s.method == "HEAD" && rec.Body.Len() != 0 {
					t.Errorf("HEAD has a body")
				}
			}
			if reg.HasBlob(sum) != tt.stored {
				t.Errorf("stored = %v, want %v", reg.HasBlob(sum), tt.stored)
			}
			want := http.StatusOK
			if tt.removed {
				want = http.StatusNotFound
			}
			if rec := do(h, "GET", loc, "", nil); rec.Code != want {
				t.Errorf("upload status at the end = %d, want %d (removed %v)", rec.Code, want, tt.removed)
			}
		})
	}
}

// cutReader yields its bytes, then fails like a connection cut mid-chunk.
type cutReader struct{ r io.Reader }

func (c cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset by peer")
	}
	return n, err
}

// An upload cut mid-chunk and then finished with the whole artifact's digest
// stores nothing, so no version can be created from it.
func TestInterruptedUploadCreatesNoVersion(t *testing.T) {
	const data = "0123456789abcdefghij"
	sum := digest([]byte(data))
	h, reg := newTestAPI(t)
	rec := do(h, "POST", "/api/v1/namespaces/default/blobs/uploads", "", nil)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("start: %d %s", rec.Code, rec.Body)
	}
	loc := rec.Header().Get("Location")

	req := httptest.NewRequest("PATCH", loc, cutReader{strings.NewReader(data[:8])})
	req.Header.Set(mgmt.HeaderUploadOffset, "0")
	req.Header.Set("Content-Type", "application/octet-stream")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("cut chunk: status %d, want 400: %s", rec.Code, rec.Body)
	}
	if rec := do(h, "GET", loc, "", nil); rec.Header().Get(mgmt.HeaderUploadOffset) != "8" {
		t.Errorf("offset after cut = %q, want 8", rec.Header().Get(mgmt.HeaderUploadOffset))
	}

	// The client gives up resuming and finishes anyway.
	rec = do(h, "PUT", loc+"?sha256="+sum, "", nil)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("finish of a partial upload: status %d, want 400: %s", rec.Code, rec.Body)
	}
	if reg.HasBlob(sum) {
		t.Fatal("partial upload stored under the full digest")
	}
	rec = do(h, "POST", "/api/v1/namespaces/default/models/cut/versions", `{"sha256":"`+sum+`"}`, nil)
	if rec.Code < 400 {
		t.Fatalf("create version from a partial upload: status %d: %s", rec.Code, rec.Body)
	}
	if rec := do(h, "GET", "/api/v1/namespaces/default/models/cut/versions", "", nil); rec.Code != http.StatusNotFound {
		t.Errorf("versions of model cut: status %d, want 404: %s", rec.Code, rec.Body)
	}
}
