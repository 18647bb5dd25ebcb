package cli

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/api/mgmt/mgmttest"
	"github.com/nimbus-ai/nimbus/residency"
)

// statusServer serves the management API with a fake residency answering the
// status routes. The CLI's other tests run against the same handler over a
// fake registry; a real server (internal/testutil) cannot be used here yet
// because the serving layer's Status is not wired into it. rep == nil serves
// no residency at all, as a server without it would.
func statusServer(t *testing.T, rep *residency.Report) string {
	t.Helper()
	opts := mgmt.Options{Logger: slog.New(slog.DiscardHandler), UploadDir: t.TempDir()}
	if rep != nil {
		opts.Residency = &mgmttest.Residency{Report: *rep}
	}
	srv := httptest.NewServer(openMgmt(mgmttest.New(testSig), opts))
	t.Cleanup(srv.Close)
	return srv.URL
}

// statusReport has versions last used 5 minutes and 2 hours before it was
// built: whole minutes and hours, so the relative times the CLI prints do not
// change while a test runs.
func statusReport() residency.Report {
	now := time.Now()
	return residency.Report{
		Memory: residency.Memory{BudgetBytes: 2 << 30, UsedBytes: 12 << 20, Resident: 1, ProcessRSSBytes: 81 << 20},
		Versions: []residency.VersionStatus{
			{
				Namespace: "default", Model: "churn", Version: 1, Aliases: []string{"champion"}, State: residency.Ready,
				MemoryBytes: 12 << 20, Instances: 2, MinInstances: 1, MaxInstances: 4, TargetConcurrency: 8, InFlight: 3,
				LastUsed: now.Add(-5 * time.Minute), LoadedAt: now.Add(-time.Hour), LoadDuration: 180 * time.Millisecond,
				Loads: 1, ColdStarts: 1,
			},
			{
				Namespace: "default", Model: "churn", Version: 2, State: residency.Failed,
				Reason: "artifact sha256 mismatch", MaxInstances: 1, Loads: 0,
			},
			{
				Namespace: "default", Model: "iris", Version: 1, State: residency.Evicted,
				Reason: "unloaded to make room under the memory budget", MemoryBytes: 300 << 10, MaxInstances: 1,
				LastUsed: now.Add(-2 * time.Hour), Loads: 1, Evictions: 1,
			},
			{Namespace: "other", Model: "fraud", Version: 7, State: residency.Loading, MaxInstances: 2},
		},
	}
}

func TestStatusTable(t *testing.T) {
	rep := statusReport()
	srv := statusServer(t, &rep)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "namespace",
			args: []string{"models", "status"},
			want: `memory: 12.0 MiB used of 2.0 GiB budget (1 resident), process RSS 81.0 MiB
MODEL  VERSION  ALIASES   STATE    MEMORY     INSTANCES  INFLIGHT  LAST-USED  REASON
churn  1        champion  ready    12.0 MiB   2/1..4     3         5m ago     -
churn  2        -         failed   -          0/0..1     0         never      artifact sha256 mismatch
iris   1        -         evicted  300.0 KiB  0/0..1     0         2h ago     unloaded to make room under the memory budget
`,
		},
		{
			name: "one model",
			args: []string{"models", "status", "iris"},
			want: `memory: 12.0 MiB used of 2.0 GiB budget (1 resident), process RSS 81.0 MiB
MODEL  VERSION  ALIASES  STATE    MEMORY     INSTANCES  INFLIGHT  LAST-USED  REASON
iris   1        -        evicted  300.0 KiB  0/0..1     0         2h ago     unloaded to make room under the memory budget
`,
		},
		{
			name: "namespace flag",
			args: []string{"-n", "other", "models", "status"},
			want: `memory: 12.0 MiB used of 2.0 GiB budget (1 resident), process RSS 81.0 MiB
MODEL  VERSION  ALIASES  STATE    MEMORY  INSTANCES  INFLIGHT  LAST-USED  REASON
fraud  7        -        loading  -       0/0..2     0         never      -
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out := cli(t, srv, tt.args...); out != tt.want {
				t.Errorf("table:\n%s\nwant:\n%s", out, tt.want)
			}
		})
	}

	// A namespace without models: the memory summary, no table, a note on stderr.
	r := runCLI(t, nil, "--server", srv, "-n", "empty", "models", "status")
	if r.code != 0 || r.out != "memory: 12.0 MiB used of 2.0 GiB budget (1 resident), process RSS 81.0 MiB\n" ||
		r.err != "No model versions in namespace \"empty\".\n" {
		t.Errorf("empty namespace: exit %d\nstdout: %q\nstderr: %q", r.code, r.out, r.err)
	}
	var empty residency.Report
	if err := json.Unmarshal([]byte(cli(t, srv, "-n", "empty", "models", "status", "-o", "json")), &empty); err != nil ||
		empty.Versions == nil || len(empty.Versions) != 0 {
		t.Errorf("empty namespace json = %+v, %v; want an empty versions list", empty, err)
	}
}

func TestStatusJSONAndYAML(t *testing.T) {
	rep := statusReport()
	srv := statusServer(t, &rep)

	var got residency.Report
	out := cli(t, srv, "models", "status", "churn", "-o", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json %q: %v", out, err)
	}
	want := residency.Report{Memory: rep.Memory, Versions: rep.Versions[:2]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("json report (-want +got):\n%s", diff)
	}

	yml := cli(t, srv, "models", "status", "-o", "yaml")
	for _, want := range []string{"budgetBytes: 2147483648", "state: evicted", "loadDurationNs: 180000000", "coldStarts: 1"} {
		if !strings.Contains(yml, want) {
			t.Errorf("yaml lacks %q:\n%s", want, yml)
		}
	}
}

func TestStatusErrors(t *testing.T) {
	rep := statusReport()
	srv := statusServer(t, &rep)
	tests := []struct {
		name   string
		server string
		args   []string
		code   int
		errHas string
	}{
		{name: "unknown model", server: srv, args: []string{"models", "status", "nope"}, code: 1,
			errHas: `Error: model status: model "nope" not found in namespace "default"`},
		{name: "server without residency", server: statusServer(t, nil), args: []string{"models", "status"}, code: 1,
			errHas: "Error: model status: residency status is unavailable on this server"},
		{name: "two models", server: srv, args: []string{"models", "status", "a", "b"}, code: 2,
			errHas: "accepts at most 1 arg(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, nil, append([]string{"--server", tt.server}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.err, tt.errHas) || r.out != "" {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant stderr to contain %q", r.code, tt.code, r.out, r.err, tt.errHas)
			}
		})
	}
}

func TestStatusHelp(t *testing.T) {
	r := runCLI(t, nil, "models", "status", "--help")
	for _, want := range []string{"status [MODEL]", "Examples:", "nimbus models status churn", "evicted", "current/min..max"} {
		if r.code != 0 || !strings.Contains(r.out, want) {
			t.Errorf("help (exit %d) lacks %q:\n%s", r.code, want, r.out)
		}
	}
}

func TestFormatMemory(t *testing.T) {
	tests := []struct {
		m    residency.Memory
		want string
	}{
		{
			m:    residency.Memory{BudgetBytes: 2 << 30, UsedBytes: 12<<20 + 300<<10, Resident: 3, ProcessRSSBytes: 81 << 20},
			want: "memory: 12.3 MiB used of 2.0 GiB budget (3 resident), process RSS 81.0 MiB",
		},
		{
			m:    residency.Memory{UsedBytes: 512, Resident: 1, ProcessRSSBytes: 1 << 30},
			want: "memory: 512 B used, no budget (1 resident), process RSS 1.0 GiB",
		},
		{
			m:    residency.Memory{},
			want: "memory: 0 B used, no budget (0 resident), process RSS unknown",
		},
	}
	for _, tt := range tests {
		if got := formatMemory(tt.m); got != tt.want {
			t.Errorf("formatMemory(%+v) = %q, want %q", tt.m, got, tt.want)
		}
	}
}

func TestFormatAgo(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now.Add(time.Minute), "just now"}, // server clock ahead
		{now.Add(-400 * time.Millisecond), "just now"},
		{now.Add(-3 * time.Second), "3s ago"},
		{now.Add(-59*time.Second - 900*time.Millisecond), "59s ago"},
		{now.Add(-5*time.Minute - 30*time.Second), "5m ago"},
		{now.Add(-2 * time.Hour), "2h ago"},
		{now.Add(-47 * time.Hour), "47h ago"},
		{now.Add(-72 * time.Hour), "3d ago"},
	}
	for _, tt := range tests {
		if got := formatAgo(tt.t, now); got != tt.want {
			t.Errorf("formatAgo(now-%s) = %q, want %q", now.Sub(tt.t), got, tt.want)
		}
	}
}
