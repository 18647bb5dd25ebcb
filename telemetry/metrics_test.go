package telemetry

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestUnresolvedModelsShareOneSeries(t *testing.T) {
	m := NewMetrics()
	for _, name := range []string{"a", "b", "c"} {
		m.ObserveRequest("default", name, "", "rest", "404", time.Millisecond)
	}
	m.ObserveRequest("default", "real", "3", "rest", "200", time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	if !strings.Contains(text, `nimbus_requests_total{code="404",model="",namespace="",protocol="rest",version=""} 3`) {
		t.Errorf("unresolved requests not aggregated:\n%s", grep(text, "nimbus_requests_total"))
	}
	if !strings.Contains(text, `nimbus_requests_total{code="200",model="real",namespace="default",protocol="rest",version="3"} 1`) {
		t.Errorf("resolved request missing:\n%s", grep(text, "nimbus_requests_total"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestVersionSeriesGoAwayOnUnload(t *testing.T) {
	m := NewMetrics()
	vm := m.ForVersion("default", "m", "1")
	vm.ObserveBatch(4)
	vm.SetQueueDepth(2)
	m.ObserveRequest("default", "m", "1", "rest", "200", time.Millisecond)
	m.ObserveRequest("default", "other", "2", "rest", "200", time.Millisecond)
	scrape := func() string {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	before := scrape()
	for _, want := range []string{`nimbus_batch_size_count{model="m"`, `nimbus_requests_total{code="200",model="m"`, `nimbus_queue_depth{model="m"`} {
		if !strings.Contains(before, want) {
			t.Fatalf("missing %s before unload", want)
		}
	}
	vm.Delete()
	after := scrape()
	if strings.Contains(after, `model="m"`) {
		t.Errorf("series of the unloaded version remain:\n%s", grep(after, `model="m"`))
	}
	if !strings.Contains(after, `model="other"`) {
		t.Error("another version's series were deleted")
	}
}

// TestGitSyncAgeNeverGoesBack: a failed pass reports the last applied
// commit's time, older than the last good pass: the age stays that of the
// latest good sync.
func TestGitSyncAgeNeverGoesBack(t *testing.T) {
	m := NewMetrics()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	m.git.now = func() time.Time { return now }
	m.GitSynced("default", "src", now.Add(-time.Minute))
	m.GitSynced("default", "src", now.Add(-72*time.Hour))
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if want := `nimbus_gitsource_last_sync_age_seconds{gitsource="src",namespace="default"} 60`; !strings.Contains(string(body), want) {
		t.Fatalf("want %s:\n%s", want, grep(string(body), "nimbus_gitsource_last_sync_age_seconds"))
	}
}
