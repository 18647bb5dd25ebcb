package mgmt_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/api/mgmt/mgmttest"
	"github.com/nimbus-ai/nimbus/residency"
	"github.com/nimbus-ai/nimbus/tensor"
)

var (
	statusMemory = residency.Memory{BudgetBytes: 2 << 30, UsedBytes: 12 << 20, Resident: 1, ProcessRSSBytes: 81 << 20}
	churnV1      = residency.VersionStatus{
		Namespace: "default", Model: "churn", Version: 1, Aliases: []string{"champion"},
		State: residency.Ready, MemoryBytes: 12 << 20,
		Instances: 2, MinInstances: 1, MaxInstances: 4, TargetConcurrency: 8, InFlight: 3,
		LastUsed:     time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		LoadedAt:     time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC),
		LoadDuration: 250 * time.Millisecond,
		Loads:        2, ColdStarts: 1, Evictions: 1,
	}
	churnV2 = residency.VersionStatus{
		Namespace: "default", Model: "churn", Version: 2, State: residency.Failed,
		Reason: "artifact sha256 mismatch", MaxInstances: 1,
	}
	irisV1 = residency.VersionStatus{
		Namespace: "default", Model: "iris", Version: 1, State: residency.Idle, MaxInstances: 1, IdleUnloads: 1,
	}
	otherV1 = residency.VersionStatus{Namespace: "other", Model: "churn", Version: 1, State: residency.Evicted}
)

func newStatusAPI(t *testing.T, res mgmt.Residency) http.Handler {
	t.Helper()
	return mgmtOpen(mgmttest.New(tensor.Signature{}), mgmt.Options{
		Logger:    slog.New(slog.DiscardHandler),
		UploadDir: t.TempDir(),
		Residency: res,
	})
}

func TestStatus(t *testing.T) {
	fake := &mgmttest.Residency{Report: residency.Report{
		Memory:   statusMemory,
		Versions: []residency.VersionStatus{churnV1, churnV2, irisV1, otherV1},
	}}
	const ns = "/api/v1/namespaces/default"
	tests := []struct {
		name   string
		path   string
		status int
		want   residency.Report // when status is 200
		code   string           // when status >= 400
		msgHas string
	}{
		{
			name: "namespace", path: ns + "/status", status: 200,
			want: residency.Report{Memory: statusMemory, Versions: []residency.VersionStatus{churnV1, churnV2, irisV1}},
		},
		{
			name: "model", path: ns + "/models/churn/status", status: 200,
			want: residency.Report{Memory: statusMemory, Versions: []residency.VersionStatus{churnV1, churnV2}},
		},
		{name: "unknown model", path: ns + "/models/nope/status", status: 404, code: "not_found", msgHas: `model "nope" not found`},
		{
			name: "namespace without models", path: "/api/v1/namespaces/nope/status", status: 200,
			want: residency.Report{Memory: statusMemory, Versions: []residency.VersionStatus{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := do(newStatusAPI(t, fake), "GET", tt.path, "", nil)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status >= 400 {
				checkError(t, rec, tt.code, "")
				var e errBody
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error.Message, tt.msgHas) {
					t.Errorf("message %q lacks %q (%v)", e.Error.Message, tt.msgHas, err)
				}
				return
			}
			var got residency.Report
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStatusWireNames pins the JSON names clients read, independent of the
// Go struct that both sides share.
func TestStatusWireNames(t *testing.T) {
	fake := &mgmttest.Residency{Report: residency.Report{Memory: statusMemory, Versions: []residency.VersionStatus{churnV1, irisV1}}}
	rec := do(newStatusAPI(t, fake), "GET", "/api/v1/namespaces/default/status", "", nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var body struct {
		Memory   map[string]any   `json:"memory"`
		Versions []map[string]any `json:"versions"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	wantMemory := map[string]any{"budgetBytes": float64(2 << 30), "usedBytes": float64(12 << 20), "resident": 1.0, "processRSSBytes": float64(81 << 20)}
	if diff := cmp.Diff(wantMemory, body.Memory); diff != "" {
		t.Errorf("memory (-want +got):\n%s", diff)
	}
	if len(body.Versions) != 2 {
		t.Fatalf("versions = %v", body.Versions)
	}
	ready := body.Versions[0]
	for k, want := range map[string]any{
		"namespace": "default", "model": "churn", "version": 1.0, "aliases": []any{"champion"}, "state": "ready",
		"memoryBytes": float64(12 << 20), "instances": 2.0, "minInstances": 1.0, "maxInstances": 4.0,
		"targetConcurrency": 8.0, "inFlight": 3.0, "lastUsed": "2025-01-02T03:04:05Z", "loadedAt": "2025-01-02T03:00:00Z",
		"loadDurationNs": float64(250 * time.Millisecond), "loads": 2.0, "coldStarts": 1.0, "evictions": 1.0, "idleUnloads": 0.0,
	} {
		if !cmp.Equal(ready[k], want) {
			t.Errorf("versions[0].%s = %v, want %v", k, ready[k], want)
		}
	}
	// A version never used and not resident leaves the times out rather than
	// writing the zero time.
	for _, k := range []string{"lastUsed", "loadedAt", "loadDurationNs", "reason", "aliases"} {
		if v, ok := body.Versions[1][k]; ok {
			t.Errorf("versions[1].%s = %v, want it omitted", k, v)
		}
	}
}

func TestStatusEmptyVersionsIsAList(t *testing.T) {
	rec := do(newStatusAPI(t, emptyResidency{}), "GET", "/api/v1/namespaces/default/status", "", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"versions":[]`) {
		t.Errorf("got %d %s, want 200 with \"versions\":[]", rec.Code, rec.Body)
	}
}

func TestStatusWithoutResidency(t *testing.T) {
	h := newStatusAPI(t, nil)
	for _, p := range []string{"/api/v1/namespaces/default/status", "/api/v1/namespaces/default/models/churn/status"} {
		rec := do(h, "GET", p, "", nil)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("GET %s = %d, want 503; body %s", p, rec.Code, rec.Body)
		}
		checkError(t, rec, "unavailable", "")
		if !strings.Contains(rec.Body.String(), "residency status is unavailable on this server") {
			t.Errorf("GET %s body %s does not say why", p, rec.Body)
		}
	}
}

// emptyResidency answers every namespace with no versions and a nil slice,
// which the handler must still write as a JSON list.
type emptyResidency struct{}

func (emptyResidency) Status(_ context.Context, _, _ string) (residency.Report, error) {
	return residency.Report{}, nil
}
