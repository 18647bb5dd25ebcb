package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/api/mgmt/mgmttest"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/residency"
	"github.com/nimbus-ai/nimbus/tensor"
)

// statusServer serves the management API with res answering the status routes.
func statusServer(t *testing.T, res mgmt.Residency) *client.Client {
	t.Helper()
	h := openMgmt(mgmttest.New(tensor.Signature{}), mgmt.Options{
		Logger: slog.New(slog.DiscardHandler), UploadDir: t.TempDir(), Residency: res,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return client.New(srv.URL)
}

func TestStatus(t *testing.T) {
	mem := residency.Memory{BudgetBytes: 1 << 30, UsedBytes: 5 << 20, Resident: 1, ProcessRSSBytes: 64 << 20}
	churn := residency.VersionStatus{
		Namespace: "default", Model: "churn", Version: 3, Aliases: []string{"champion"}, State: residency.Ready,
		MemoryBytes: 5 << 20, Instances: 1, MinInstances: 1, MaxInstances: 2, InFlight: 1,
		LastUsed: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), LoadDuration: time.Second, Loads: 1, ColdStarts: 1,
	}
	iris := residency.VersionStatus{Namespace: "default", Model: "iris", Version: 1, State: residency.Evicted, MaxInstances: 1, Evictions: 1}
	// A model whose name needs escaping in the path.
	odd := residency.VersionStatus{Namespace: "team a", Model: "a/b", Version: 1, State: residency.Loading}
	c := statusServer(t, &mgmttest.Residency{Report: residency.Report{Memory: mem, Versions: []residency.VersionStatus{churn, iris, odd}}})

	tests := []struct {
		name      string
		ns, model string
		want      residency.Report
		notFound  bool
	}{
		{name: "namespace", ns: "default", want: residency.Report{Memory: mem, Versions: []residency.VersionStatus{churn, iris}}},
		{name: "model", ns: "default", model: "iris", want: residency.Report{Memory: mem, Versions: []residency.VersionStatus{iris}}},
		{name: "escaped names", ns: "team a", model: "a/b", want: residency.Report{Memory: mem, Versions: []residency.VersionStatus{odd}}},
		{name: "unknown model", ns: "default", model: "nope", notFound: true},
		{name: "namespace without models", ns: "nope", want: residency.Report{Memory: mem, Versions: []residency.VersionStatus{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Status(context.Background(), tt.ns, tt.model)
			if tt.notFound {
				if !client.IsNotFound(err) {
					t.Fatalf("Status = %+v, %v; want a not-found error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatusUnavailable(t *testing.T) {
	_, err := statusServer(t, nil).Status(context.Background(), "default", "")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "unavailable" || ae.Message != "residency status is unavailable on this server" {
		t.Fatalf("Status without residency = %v (%+v), want a 503 unavailable APIError", err, ae)
	}
}
