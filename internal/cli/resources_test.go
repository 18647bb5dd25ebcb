package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/internal/system"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/blob"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	nruntime "github.com/nimbus-ai/nimbus/runtime"
	"github.com/nimbus-ai/nimbus/runtime/onnx"
	"github.com/nimbus-ai/nimbus/spec"
	"github.com/nimbus-ai/nimbus/spec/source"
)

// These tests drive the commands against the real server side of the
// declarative resources: the management API (mgmt.NewHandler) over the apply
// engine (apply.Engine), a real registry with its SQLite store and blob store,
// and the SQLite audit log. Artifacts are the committed test models, fetched
// through file:// sources. Only what needs a serving process is stood in for:
// the router (no routes) and the live state status reports (fakeObserver).

// resourceServer is a running management API with declarative resources.
type resourceServer struct {
	url    string
	dbPath string
	store  *sqlite.Store
	obs    *fakeObserver
	rec    *recorder
	clock  *clock
	// triggers are the counts running triggers report (none run here).
	triggers fakeTriggers
}

type fakeTriggers map[string]spec.TriggerCounts

func (f fakeTriggers) TriggerCounts(ns, name string) (spec.TriggerCounts, bool) {
	c, ok := f[ns+"/"+name]
	return c, ok
}

// recorder keeps what reached the server: apply and delete bodies, the change
// source of mutating requests, the query of events requests.
type recorder struct {
	mu      sync.Mutex
	applied []spec.Request // every apply and delete-by-files body, in order
	sources []string       // Nimbus-Change-Source of every mutating request
	queries []string       // raw query of every events request
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/events"):
			rec.queries = append(rec.queries, r.URL.RawQuery)
		case r.Method != http.MethodGet:
			rec.sources = append(rec.sources, r.Header.Get(client.ChangeSourceHeader))
			if r.URL.Path == "/api/v1/apply" || r.URL.Path == "/api/v1/delete" {
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(b))
				var req spec.Request
				_ = json.Unmarshal(b, &req)
				rec.applied = append(rec.applied, req)
			}
		}
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (rec *recorder) eventQueries() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.queries)
}

func (rec *recorder) changeSources() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.sources)
}

func (rec *recorder) applies() []spec.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.applied)
}

// clock stamps audit events: the first at base, each next one a minute later.
type clock struct {
	mu   sync.Mutex
	base time.Time
	n    int
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.base.Add(time.Duration(c.n) * time.Minute)
	c.n++
	return t
}

// at is the time of the i-th event (from 0).
func (c *clock) at(i int) time.Time { return c.base.Add(time.Duration(i) * time.Minute) }

// fakeObserver is the live serving state status reports: version residency
// states and a service's router counters.
type fakeObserver struct {
	mu     sync.Mutex
	states map[string]string             // namespace/model/version
	stats  map[string]apply.ServiceStats // namespace/name
}

func (o *fakeObserver) VersionState(_ context.Context, ns, model string, version int64) (string, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.states[fmt.Sprintf("%s/%s/%d", ns, model, version)], ""
}

func (o *fakeObserver) ServiceStats(ns, name string) (apply.ServiceStats, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st, ok := o.stats[ns+"/"+name]
	return st, ok
}

// newResourceServer starts the management API over a fresh data dir. Its
// audit events are stamped from three hours ago on, a minute apart.
func newResourceServer(t *testing.T) *resourceServer {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	s := &resourceServer{
		dbPath:   filepath.Join(dir, "nimbus.db"),
		obs:      &fakeObserver{states: map[string]string{}, stats: map[string]apply.ServiceStats{}},
		rec:      &recorder{},
		clock:    &clock{base: time.Now().Add(-3 * time.Hour).Truncate(time.Second).UTC()},
		triggers: fakeTriggers{},
	}
	store, err := sqlite.Open(ctx, s.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s.store = store
	blobs, err := blob.NewFS(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(store, blobs, map[string]nruntime.Inspector{"onnx": onnx.Inspector{}}, log)
	engine := apply.NewEngine(apply.Options{
		Registry: reg, Resources: store, Audit: store, Observer: s.obs, Logger: log, Now: s.clock.now, Triggers: s.triggers,
		Fetcher: system.NewFetcher(source.New(source.Options{AllowedDir: modelsDir})),
	})
	h := openMgmt(reg, mgmt.Options{Logger: log, UploadDir: filepath.Join(dir, "uploads"), Resources: engine, Audit: store})
	srv := httptest.NewServer(s.rec.wrap(h))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// events lists the whole audit log.
func (s *resourceServer) events(t *testing.T) []audit.Event {
	t.Helper()
	evs, err := s.store.ListEvents(context.Background(), audit.Query{Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// appendEvents adds events to the audit log, as other changes would.
func (s *resourceServer) appendEvents(t *testing.T, evs ...audit.Event) {
	t.Helper()
	for _, e := range evs {
		if _, err := s.store.AppendEvent(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// backdate makes every model and resource created ago, as if applied then.
func (s *resourceServer) backdate(t *testing.T, ago time.Duration) {
	t.Helper()
	db, err := sql.Open("sqlite", s.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := time.Now().Add(-ago).UnixNano()
	for _, table := range []string{"models", "resources"} {
		if _, err := db.Exec(`UPDATE `+table+` SET created_at = ?`, at); err != nil {
			t.Fatal(err)
		}
	}
}

// modelsDir holds the committed test models, the server's --source-dir here.
var modelsDir = func() string {
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata", "models"))
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		panic(err)
	}
	return dir
}()

// testArtifact is a committed model as a file:// source.
type testArtifact struct{ uri, sha256 string }

func artifact(name string) testArtifact {
	p := filepath.Join(modelsDir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	return testArtifact{uri: "file://" + filepath.ToSlash(p), sha256: hex.EncodeToString(sum[:])}
}

var (
	// Two versions of one model: the same signature, different weights.
	artifactV3, artifactV4 = artifact("fraud_v1.onnx"), artifact("fraud_v2.onnx")

	modelYAML = `apiVersion: nimbus.dev/v1
kind: Model
metadata:
  name: fraud-detector
spec:
  versions:
    - version: 3
      source: {uri: "` + artifactV3.uri + `", sha256: "` + artifactV3.sha256 + `"}
    - version: 4
      source: {uri: "` + artifactV4.uri + `", sha256: "` + artifactV4.sha256 + `"}
  aliases: {champion: 3, challenger: 4}
`
)

const serviceYAML = `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata:
  name: fraud
spec:
  traffic:
    - {model: fraud-detector@champion, weight: 90}
    - {model: fraud-detector@challenger, weight: 10}
`

// runIn runs nimbus against server with stdin.
func runIn(t *testing.T, server string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--server", server}, args...), strings.NewReader(stdin), &out, &errb,
		func(string) string { return "" })
	return result{out.String(), errb.String(), code}
}

// writeTree writes files (path → content) under a new directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sourcesOf lists the change source the server recorded for each event.
func sourcesOf(evs []audit.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Source)
	}
	return out
}

func TestApply(t *testing.T) {
	s := newResourceServer(t)
	file := modelFile(t, "fraud.yaml", modelYAML+"---\n"+serviceYAML)

	steps := []struct {
		name string
		args []string
		file string
		want string
	}{
		{"dry run of new", []string{"--dry-run"}, file,
			"model.nimbus.dev/fraud-detector created (dry run)\ninferenceservice.nimbus.dev/fraud created (dry run)\n"},
		{"create", nil, file, "model.nimbus.dev/fraud-detector created\ninferenceservice.nimbus.dev/fraud created\n"},
		{"again", nil, file, "model.nimbus.dev/fraud-detector unchanged\ninferenceservice.nimbus.dev/fraud unchanged\n"},
		{"change", nil, modelFile(t, "fraud.yaml", modelYAML+"---\n"+strings.Replace(strings.Replace(serviceYAML, "90", "50", 1), "10}", "50}", 1)),
			"model.nimbus.dev/fraud-detector unchanged\ninferenceservice.nimbus.dev/fraud configured\n"},
	}
	for _, s2 := range steps {
		t.Run(s2.name, func(t *testing.T) {
			if out := cli(t, s.url, append([]string{"apply", "-f", s2.file, "-n", "payments"}, s2.args...)...); out != s2.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, s2.want)
			}
		})
	}
	if stored, err := s.store.GetResource(context.Background(), spec.KindInferenceService, "payments", "fraud"); err != nil || stored.Generation != 2 {
		t.Errorf("stored service: %+v, %v", stored, err)
	}
	// One call with every file, the namespace, and the source for the audit log.
	applied := s.rec.applies()
	last := applied[len(applied)-1]
	if len(last.Files) != 1 || !strings.HasSuffix(last.Files[0].Name, "fraud.yaml") || last.Namespace != "payments" || last.DryRun {
		t.Errorf("apply request = %+v", last)
	}
	if want := []string{"cli", "cli", "cli", "cli"}; !slices.Equal(s.rec.changeSources(), want) {
		t.Errorf("change sources = %q", s.rec.changeSources())
	}
	// The server took the source from the header the client sent: the audit
	// log has the three changes, each from the CLI.
	evs := s.events(t)
	var actions []string
	for _, e := range evs {
		actions = append(actions, e.Action+" "+e.Kind)
	}
	if want := []string{"create Model", "create InferenceService", "update InferenceService"}; !slices.Equal(actions, want) {
		t.Errorf("audit log = %q, want %q", actions, want)
	}
	if got := sourcesOf(evs); !slices.Equal(got, []string{"cli", "cli", "cli"}) {
		t.Errorf("recorded sources = %q", got)
	}

	var res client.ApplyResult
	out := cli(t, s.url, "apply", "-f", file, "-n", "payments", "--dry-run", "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json %q: %v", out, err)
	}
	if len(res.Results) != 2 {
		t.Fatalf("json result: %+v", res)
	}
	want := client.ApplyResult{DryRun: true, Results: []client.ResourceResult{
		{Kind: "Model", Namespace: "payments", Name: "fraud-detector", Action: "unchanged", Generation: 1},
		{Kind: "InferenceService", Namespace: "payments", Name: "fraud", Action: "configured", Generation: 3,
			Diff: res.Results[1].Diff},
	}}
	if diff := cmp.Diff(want, res); diff != "" || !strings.Contains(res.Results[1].Diff, "-      weight: 50\n+      weight: 90\n") {
		t.Errorf("json result (-want +got):\n%s\ndiff:\n%s", diff, res.Results[1].Diff)
	}
}

func TestApplyRefused(t *testing.T) {
	s := newResourceServer(t)
	bad := writeTree(t, map[string]string{
		"a/model.yaml": modelYAML,
		"b/svc.yaml": serviceYAML + "---\napiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: x}\n" +
			"spec:\n  traffic: [{model: m, weight: 90}]\n---\napiVersion: nimbus.dev/v1\nkind: Pipeline\nmetadata: {name: t}\n",
	})
	r := runCLI(t, nil, "--server", s.url, "apply", "-f", bad)
	svc := filepath.ToSlash(filepath.Join(bad, "b", "svc.yaml"))
	// Every problem of every file, as file:line: field: message, one per line.
	lines := strings.Split(r.err, "\n")
	if r.code != 1 || r.out != "" || len(lines) != 4 ||
		lines[0] != svc+":14: spec.traffic: weights sum to 90, must be 100" ||
		lines[1] != svc+`:17: kind: unknown kind "Pipeline"; known kinds: Connection, GitSource, InferenceService, Model, Trigger` ||
		lines[2] != "Error: apply refused: 2 problems; nothing was changed" {
		t.Errorf("exit %d\nstdout: %s\nstderr:\n%s", r.code, r.out, r.err)
	}
	// Nothing was stored, nothing recorded.
	for _, kind := range []string{"models", "isvc"} {
		if out := cli(t, s.url, "get", kind, "-A", "-o", "json"); out != "{\n  \"items\": []\n}\n" {
			t.Errorf("stored %s from a refused apply: %s", kind, out)
		}
	}
	if evs := s.events(t); len(evs) != 0 {
		t.Errorf("a refused apply was recorded: %+v", evs)
	}

	// Scripts get the errors as JSON too.
	r = runCLI(t, nil, "--server", s.url, "apply", "-f", bad, "-o", "json")
	var got struct{ Errors []spec.FieldError }
	if err := json.Unmarshal([]byte(r.out), &got); r.code != 1 || err != nil || len(got.Errors) != 2 ||
		got.Errors[0].Line != 14 || got.Errors[1].Line != 17 {
		t.Errorf("json: exit %d, %v\n%s", r.code, err, r.out)
	}

	// A stale resourceVersion is a conflict, reported the same way.
	cli(t, s.url, "apply", "-f", modelFile(t, "m.yaml", modelYAML))
	stale := strings.Replace(modelYAML, "name: fraud-detector", "name: fraud-detector\n  resourceVersion: \"7\"", 1)
	r = runIn(t, s.url, stale, "apply", "-f", "-")
	if r.code != 1 || r.err != "stdin:5: metadata.resourceVersion: Model default/fraud-detector was changed (resourceVersion 7, now 1); get it again and retry\n"+
		"Error: apply refused: 1 problem; nothing was changed\n" {
		t.Errorf("conflict: exit %d\nstderr: %s", r.code, r.err)
	}
}

// mkfifo makes a named pipe, or skips the test where that cannot be done.
func mkfifo(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("mkfifo", path).CombinedOutput(); err != nil {
		t.Skipf("mkfifo: %v %s", err, out)
	}
}

// within fails the test if f does not return in time (a read that blocks).
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still running after %s", d)
	}
}

func TestApplyInputs(t *testing.T) {
	s := newResourceServer(t)
	churnJSON := `{"apiVersion": "nimbus.dev/v1", "kind": "Model", "metadata": {"name": "churn"},
		"spec": {"versions": [{"version": 1, "source": {"uri": "` + artifactV3.uri + `", "sha256": "` + artifactV3.sha256 + `"}}]}}`
	dir := writeTree(t, map[string]string{
		"z-service.yml":          serviceYAML,
		"models/fraud.yaml":      modelYAML,
		"models/deep/other.json": churnJSON,
		"models/README.md":       "# not a resource",
		"models/model.onnx":      "binary",
		".git/config.yaml":       "not: ours",
		"models/.hidden.yaml":    "kind: Nope",
	})
	// A named pipe in a directory is no resource file: reading it would wait
	// for a writer forever.
	mkfifo(t, filepath.Join(dir, "models", "pipe.yaml"))
	var r result
	within(t, 30*time.Second, func() { r = runIn(t, s.url, "", "apply", "-f", dir) })
	want := "model.nimbus.dev/churn created\nmodel.nimbus.dev/fraud-detector created\ninferenceservice.nimbus.dev/fraud created\n"
	if r.code != 0 || r.out != want {
		t.Errorf("directory apply: exit %d\n%s\nwant:\n%s\nstderr: %s", r.code, r.out, want, r.err)
	}
	var names []string
	for _, file := range s.rec.applies()[0].Files {
		names = append(names, strings.TrimPrefix(file.Name, filepath.ToSlash(dir)+"/"))
	}
	if diff := cmp.Diff([]string{"models/deep/other.json", "models/fraud.yaml", "z-service.yml"}, names); diff != "" {
		t.Errorf("files sent (-want +got):\n%s", diff)
	}

	// stdin, together with a file, in one call.
	r = runIn(t, s.url, serviceYAML, "apply", "-f", "-", "-f", filepath.Join(dir, "models", "fraud.yaml"))
	if r.code != 0 || r.out != "model.nimbus.dev/fraud-detector unchanged\ninferenceservice.nimbus.dev/fraud unchanged\n" {
		t.Errorf("stdin: exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
	}
	applied := s.rec.applies()
	if last := applied[len(applied)-1]; len(last.Files) != 2 || last.Files[0].Name != "stdin" || last.Files[0].Content != serviceYAML {
		t.Errorf("stdin request = %+v", last)
	}

	// A file named "stdin" is not taken for stdin, nor is a file named twice
	// (or named and found in a directory) sent twice.
	t.Run("file named stdin", func(t *testing.T) {
		t.Chdir(writeTree(t, map[string]string{"stdin": serviceYAML, "fraud.yaml": modelYAML}))
		r := runIn(t, s.url, churnJSON, "apply", "-f", "-", "-f", "stdin", "-f", "./stdin", "-f", "fraud.yaml", "-f", ".")
		if r.code != 0 || r.out != "model.nimbus.dev/churn unchanged\nmodel.nimbus.dev/fraud-detector unchanged\ninferenceservice.nimbus.dev/fraud unchanged\n" {
			t.Errorf("exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
		}
		applied := s.rec.applies()
		var names []string
		for _, f := range applied[len(applied)-1].Files {
			names = append(names, f.Name)
		}
		if want := []string{"stdin", "./stdin", "fraud.yaml"}; !slices.Equal(names, want) {
			t.Errorf("files sent = %q, want %q", names, want)
		}
	})

	// A named pipe given by name is read, as "-f <(command)" hands one over.
	t.Run("named pipe", func(t *testing.T) {
		pipe := filepath.Join(t.TempDir(), "svc.yaml")
		mkfifo(t, pipe)
		written := make(chan error, 1)
		go func() { written <- os.WriteFile(pipe, []byte(serviceYAML), 0o600) }()
		var r result
		within(t, 30*time.Second, func() { r = runIn(t, s.url, "", "apply", "-f", pipe) })
		if r.code != 0 || r.out != "inferenceservice.nimbus.dev/fraud unchanged\n" {
			t.Errorf("exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
		}
		// Had the command not read the pipe, this reader lets the writer finish.
		if f, err := os.OpenFile(pipe, os.O_RDWR, 0); err == nil {
			defer f.Close()
		}
		if err := <-written; err != nil {
			t.Error(err)
		}
	})

	// Empty input is the server's to refuse, and it says so: nothing changes.
	events := len(s.events(t))
	empty := writeTree(t, map[string]string{"empty.yaml": "# nothing yet\n---\n", "docs/notes.txt": "x"})
	for name, tt := range map[string]struct {
		stdin string
		args  []string
	}{
		"empty stdin":        {"", []string{"apply", "-f", "-"}},
		"empty file":         {"", []string{"apply", "-f", filepath.Join(empty, "empty.yaml")}},
		"empty file to diff": {"", []string{"diff", "-f", filepath.Join(empty, "empty.yaml")}},
		"comments on stdin":  {"# nothing\n---\n---\n", []string{"delete", "-f", "-"}},
	} {
		r := runIn(t, s.url, tt.stdin, tt.args...)
		code := 1
		if tt.args[0] == "diff" {
			code = 2
		}
		if r.code != code || !strings.HasPrefix(r.err, "no resources found in the input\nError: ") {
			t.Errorf("%s: exit %d (want %d)\nstderr: %s", name, r.code, code, r.err)
		}
	}
	if n := len(s.events(t)); n != events {
		t.Errorf("empty input changed something: %d events, were %d", n, events)
	}

	calls := len(s.rec.applies())
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		errHas string
	}{
		{"no -f", "", []string{"apply"}, 2, "no input: give -f FILE"},
		{"directory without resources", "", []string{"apply", "-f", filepath.Join(empty, "docs")}, 1, "no *.yaml, *.yml or *.json files under"},
		{"missing file", "", []string{"apply", "-f", filepath.Join(empty, "nope.yaml")}, 1, "no such file or directory"},
		{"stdin twice", "x: 1", []string{"apply", "-f", "-", "-f", "-"}, 2, "given twice"},
		{"stray argument", "", []string{"apply", "fraud.yaml"}, 2, "unknown command"},
		{"device", "", []string{"apply", "-f", os.DevNull}, 1, "read " + os.DevNull + ": not a regular file (a character device)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runIn(t, s.url, tt.stdin, tt.args...)
			if r.code != tt.code || !strings.Contains(r.err, tt.errHas) {
				t.Errorf("exit %d (want %d)\nstderr: %s", r.code, tt.code, r.err)
			}
		})
	}
	if len(s.rec.applies()) != calls {
		t.Errorf("bad input reached the server")
	}
}

func TestDiff(t *testing.T) {
	s := newResourceServer(t)
	cli(t, s.url, "apply", "-f", modelFile(t, "model.yaml", modelYAML))
	file := modelFile(t, "svc.yaml", serviceYAML)
	before := s.events(t)

	// The diff is the server's, under a header naming the resource.
	dry, err := client.New(s.url).Apply(context.Background(), []client.ApplyFile{{Name: "svc.yaml", Content: serviceYAML}},
		client.ApplyOptions{DryRun: true})
	if err != nil || len(dry.Results) != 1 {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	if d := dry.Results[0].Diff; !strings.HasPrefix(d, "--- /dev/null\n+++ applied\n") ||
		!strings.Contains(d, "\n+    - model: fraud-detector@champion\n+      weight: 90\n") {
		t.Fatalf("server diff:\n%s", d)
	}
	r := runIn(t, s.url, "", "diff", "-f", file)
	want := "diff -u -N live/default/inferenceservice.nimbus.dev/fraud applied/default/inferenceservice.nimbus.dev/fraud\n" +
		strings.TrimSuffix(dry.Results[0].Diff, "\n") + "\n"
	if r.code != 1 || r.out != want || r.err != "" {
		t.Errorf("new: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.out, want, r.err)
	}
	if _, err := s.store.GetResource(context.Background(), spec.KindInferenceService, "default", "fraud"); err == nil ||
		len(s.events(t)) != len(before) || !s.rec.applies()[2].DryRun {
		t.Errorf("diff changed something: %v, %+v", err, s.rec.applies())
	}

	cli(t, s.url, "apply", "-f", file)
	if r := runIn(t, s.url, "", "diff", "-f", file); r.code != 0 || r.out != "" || r.err != "" {
		t.Errorf("in sync: exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
	}

	changed := strings.Replace(strings.Replace(serviceYAML, "90", "80", 1), "10}", "20}", 1)
	r = runIn(t, s.url, changed, "diff", "-f", "-")
	if r.code != 1 || !strings.HasPrefix(r.out, "diff -u -N live/default/inferenceservice.nimbus.dev/fraud applied/default/inferenceservice.nimbus.dev/fraud\n--- live\n+++ applied\n@@ ") ||
		!strings.Contains(r.out, "\n-      weight: 90\n+      weight: 80\n") {
		t.Errorf("changed: exit %d\nstdout:\n%s", r.code, r.out)
	}
	r = runIn(t, s.url, changed, "diff", "-f", "-", "-o", "json")
	var res client.ApplyResult
	if err := json.Unmarshal([]byte(r.out), &res); r.code != 1 || err != nil || !res.DryRun || res.Results[0].Action != "configured" {
		t.Errorf("json: exit %d, %v\n%s", r.code, err, r.out)
	}

	// Errors are >1, unlike differences.
	invalid := modelFile(t, "bad.yaml", "apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {}\n")
	for name, args := range map[string][]string{
		"invalid":     {"diff", "-f", invalid},
		"no input":    {"diff"},
		"missing":     {"diff", "-f", filepath.Join(t.TempDir(), "nope.yaml")},
		"unreachable": {"--server", "http://127.0.0.1:1", "diff", "-f", file},
	} {
		if r := runIn(t, s.url, "", args...); r.code != 2 || !strings.Contains(r.err, "Error: ") {
			t.Errorf("%s: exit %d\nstderr: %s", name, r.code, r.err)
		}
	}
	if r := runIn(t, s.url, "", "diff", "-f", invalid); r.err != filepath.ToSlash(invalid)+":3: metadata.name: required\nError: diff: 1 problem in the input\n" {
		t.Errorf("invalid: stderr %s", r.err)
	}

	// The diff header is left alone when the server writes one.
	var b bytes.Buffer
	(&app{stdout: &b}).writeDiffs(&client.ApplyResult{Results: []client.ResourceResult{
		{Kind: "Model", Namespace: "default", Name: "m", Action: "configured", Diff: "--- a/m\n+++ b/m\n@@ -1 +1 @@\n-x\n+y"},
		{Kind: "Model", Namespace: "default", Name: "n", Action: "unchanged"},
	}})
	if b.String() != "diff -u -N live/default/model.nimbus.dev/m applied/default/model.nimbus.dev/m\n--- a/m\n+++ b/m\n@@ -1 +1 @@\n-x\n+y\n" {
		t.Errorf("server diff:\n%s", b.String())
	}
	// And written where it has none.
	b.Reset()
	(&app{stdout: &b}).writeDiffs(&client.ApplyResult{Results: []client.ResourceResult{
		{Kind: "Model", Namespace: "default", Name: "m", Action: "created", Diff: "+x"},
	}})
	if b.String() != "diff -u -N live/default/model.nimbus.dev/m applied/default/model.nimbus.dev/m\n--- /dev/null\n+++ applied\n+x\n" {
		t.Errorf("headerless diff:\n%s", b.String())
	}
}

// servedFixture applies, in namespace default, the model fraud-detector
// (generation 2, labelled) and the service fraud (generation 3, with a shadow)
// whose router serves generation 2 and counted traffic, its challenger still
// loading; and in namespace retail a model and a service, both churn, that
// nothing serves. Everything was created two hours ago.
func servedFixture(t *testing.T) *resourceServer {
	t.Helper()
	s := newResourceServer(t)
	model := strings.Replace(modelYAML, "  name: fraud-detector\n", "  name: fraud-detector\n  labels: {team: payments}\n", 1)
	svc := func(champion, challenger int, rest string) string {
		return strings.Replace(strings.Replace(serviceYAML, "weight: 90}", fmt.Sprintf("weight: %d}", champion), 1),
			"weight: 10}", fmt.Sprintf("weight: %d}", challenger), 1) + rest
	}
	churn := artifactV3
	for _, step := range []struct{ ns, doc string }{
		{"default", strings.Replace(model, "{champion: 3, challenger: 4}", "{champion: 3}", 1)},
		{"default", model},
		{"default", svc(100, 0, "")},
		{"default", svc(50, 50, "")},
		{"default", svc(90, 10, "  shadow: {model: fraud-detector@4, percent: 100}\n  timeout: 500ms\n  routing: {stickyBy: header}\n")},
		{"retail", `{"apiVersion": "nimbus.dev/v1", "kind": "Model", "metadata": {"name": "churn"},
			"spec": {"versions": [{"version": 1, "source": {"uri": "` + churn.uri + `", "sha256": "` + churn.sha256 + `"}}]}}`},
		{"retail", "apiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: churn}\nspec:\n  traffic: [{model: churn, weight: 100}]\n"},
	} {
		cli(t, s.url, "apply", "-f", modelFile(t, "step.yaml", step.doc), "-n", step.ns)
	}
	s.backdate(t, 2*time.Hour)
	s.obs.states["default/fraud-detector/4"] = "loading"
	s.obs.stats["default/fraud"] = apply.ServiceStats{
		Generation: 2,
		Targets: []apply.TargetStats{
			{Target: "fraud-detector@champion", Requests: 900, Errors: 1, Latency: 900 * 1250 * time.Microsecond},
			{Target: "fraud-detector@challenger", Requests: 100, Latency: 100 * 2500 * time.Microsecond},
		},
		Shadow: &spec.ShadowStatus{Sent: 1000, Dropped: 2, Compared: 998, ExactMatch: 990, MaxAbsDiff: 0.125},
	}
	return s
}

func TestGetResources(t *testing.T) {
	s := servedFixture(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"models", []string{"get", "models"},
			"NAME            VERSIONS  ALIASES                  READY  AGE\n" +
				"fraud-detector  2         challenger=4,champion=3  True   2h\n"},
		{"models wide", []string{"get", "model", "-o", "wide"},
			"NAME            VERSIONS  ALIASES                  READY  AGE  GENERATION\n" +
				"fraud-detector  2         challenger=4,champion=3  True   2h   2\n"},
		{"services", []string{"get", "isvc"},
			"NAME   TRAFFIC                                                  READY  AGE\n" +
				"fraud  fraud-detector@champion=90,fraud-detector@challenger=10  False  2h\n"},
		{"services wide", []string{"get", "inferenceservices", "-o", "wide"},
			"NAME   TRAFFIC                                                  READY  AGE  SHADOW                 REQUESTS  GENERATION  ROLLOUT\n" +
				"fraud  fraud-detector@champion=90,fraud-detector@challenger=10  False  2h   fraud-detector@4=100%  900,100   3           -\n"},
		{"all namespaces", []string{"get", "isvc", "-A"},
			"NAMESPACE  NAME   TRAFFIC                                                  READY  AGE\n" +
				"default    fraud  fraud-detector@champion=90,fraud-detector@challenger=10  False  2h\n" +
				"retail     churn  churn=100                                                True   2h\n"},
		{"one", []string{"get", "isvc", "churn", "-n", "retail"},
			"NAME   TRAFFIC    READY  AGE\nchurn  churn=100  True   2h\n"},
		{"kind/name", []string{"get", "inferenceservice.nimbus.dev/churn", "-n", "retail"},
			"NAME   TRAFFIC    READY  AGE\nchurn  churn=100  True   2h\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out := cli(t, s.url, tt.args...); out != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tt.want)
			}
		})
	}

	r := runCLI(t, nil, "--server", s.url, "get", "models", "-n", "empty")
	if r.code != 0 || r.out != "" || r.err != "No models found in namespace \"empty\".\n" {
		t.Errorf("empty: exit %d, stdout %q, stderr %q", r.code, r.out, r.err)
	}
	if out := cli(t, s.url, "get", "models", "-n", "empty", "-o", "json"); out != "{\n  \"items\": []\n}\n" {
		t.Errorf("empty json: %q", out)
	}

	var svc spec.InferenceService
	if err := json.Unmarshal([]byte(cli(t, s.url, "get", "isvc", "fraud", "-o", "json")), &svc); err != nil ||
		svc.Status == nil || svc.Status.Traffic[0].Requests != 900 || *svc.Spec.Traffic[0].Weight != 90 {
		t.Errorf("json: %v %+v", err, svc)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(cli(t, s.url, "get", "isvc", "-A", "-o", "json")), &list); err != nil || len(list.Items) != 2 {
		t.Errorf("list json: %v %d", err, len(list.Items))
	}

	for name, tt := range map[string]struct {
		args   []string
		code   int
		errHas string
	}{
		"not found":      {[]string{"get", "isvc", "nope"}, 1, `Error: get inferenceservice.nimbus.dev/nope: inferenceservice nope not found in namespace default`},
		"unknown kind":   {[]string{"get", "pipelines"}, 2, `unknown kind "pipelines"`},
		"no kind":        {[]string{"get"}, 2, "accepts between 1 and 2 arg(s)"},
		"name with -A":   {[]string{"get", "isvc", "fraud", "-A"}, 2, "--all-namespaces lists"},
		"wide elsewhere": {[]string{"models", "list", "-o", "wide"}, 2, "nimbus models list does not support --output wide"},
		"bad kind/name":  {[]string{"get", "isvc/"}, 2, `want KIND/NAME`},
	} {
		if r := runCLI(t, nil, append([]string{"--server", s.url}, tt.args...)...); r.code != tt.code || !strings.Contains(r.err, tt.errHas) {
			t.Errorf("%s: exit %d (want %d)\nstderr: %s", name, r.code, tt.code, r.err)
		}
	}
}

// The table of resources whose server sent no status and no creation time:
// dashes, not zeros.
func TestRenderResourcesWithoutStatus(t *testing.T) {
	w := 100
	var b bytes.Buffer
	err := (&app{stdout: &b, output: "table"}).print(nil, func(tb *table) {
		renderResources(tb, spec.KindInferenceService, []spec.Object{&spec.InferenceService{
			Metadata: spec.ObjectMeta{Name: "churn", Namespace: "retail", Generation: 1},
			Spec:     spec.ServiceSpec{Traffic: []spec.TrafficTarget{{Model: "churn", Weight: &w}}},
		}}, time.Now(), true, true)
	})
	want := "NAMESPACE  NAME   TRAFFIC    READY  AGE  SHADOW  REQUESTS  GENERATION  ROLLOUT\n" +
		"retail     churn  churn=100  -      -    -       -         1           -\n"
	if err != nil || b.String() != want {
		t.Errorf("table (%v):\n%s\nwant:\n%s", err, b.String(), want)
	}
}

// get -o yaml is what apply takes back without a change, for one resource or
// a whole list.
func TestGetYAMLRoundTrip(t *testing.T) {
	s := servedFixture(t)
	events := len(s.events(t))
	for _, args := range [][]string{
		{"get", "isvc", "fraud", "-o", "yaml"},
		{"get", "model", "fraud-detector", "-o", "yaml"},
		{"get", "isvc", "-A", "-o", "yaml"},
		{"get", "models", "-A", "-o", "yaml"},
	} {
		yml := cli(t, s.url, args...)
		if !strings.HasPrefix(yml, "apiVersion: nimbus.dev/v1\nkind: ") {
			t.Errorf("%v:\n%s", args, yml)
		}
		path := modelFile(t, "out.yaml", yml)
		out := cli(t, s.url, "apply", "-f", path)
		if strings.Count(out, " unchanged\n") != strings.Count(out, "\n") || out == "" {
			t.Errorf("%v re-applied:\n%s\nyaml:\n%s", args, out, yml)
		}
	}
	yml := cli(t, s.url, "get", "isvc", "fraud", "-o", "yaml")
	for _, want := range []string{"\n  name: fraud\n", "\n  timeout: 500ms\n", "\n    - model: fraud-detector@champion\n      weight: 90\n", "\nstatus:\n"} {
		if !strings.Contains(yml, want) {
			t.Errorf("yaml lacks %q:\n%s", want, yml)
		}
	}
	if evs := s.events(t); len(evs) != events {
		t.Errorf("re-applying changed something: %+v", evs[events:])
	}
}

func TestDeleteResources(t *testing.T) {
	s := servedFixture(t)
	if out := cli(t, s.url, "delete", "isvc", "fraud"); out != "inferenceservice.nimbus.dev/fraud deleted\n" {
		t.Errorf("by name: %q", out)
	}
	if out := cli(t, s.url, "delete", "inferenceservice.nimbus.dev/churn", "-n", "retail", "-o", "json"); !strings.Contains(out, `"action": "deleted"`) {
		t.Errorf("kind/name json: %q", out)
	}

	// Several names: the failures are reported, the rest deleted.
	cli(t, s.url, "apply", "-f", modelFile(t, "m.yaml", strings.Replace(modelYAML, "fraud-detector", "churn", 1)))
	r := runCLI(t, nil, "--server", s.url, "delete", "model", "nope", "churn")
	if r.code != 1 || r.out != "model.nimbus.dev/churn deleted\n" ||
		r.err != "Error: delete model.nimbus.dev/nope: model nope not found in namespace default\n" {
		t.Errorf("partial: exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
	}

	// By file: all or nothing.
	file := modelFile(t, "both.yaml", modelYAML+"---\n"+serviceYAML)
	r = runCLI(t, nil, "--server", s.url, "delete", "-f", file)
	if r.code != 1 || r.err != filepath.ToSlash(file)+":16: metadata.name: inferenceservice fraud not found in namespace default\n"+
		"Error: delete refused: 1 problem; nothing was changed\n" {
		t.Errorf("missing by file: exit %d\nstderr: %s", r.code, r.err)
	}
	if _, err := client.New(s.url).GetResource(context.Background(), "model", "default", "fraud-detector"); err != nil {
		t.Errorf("a refused delete deleted the model: %v", err)
	}
	cli(t, s.url, "apply", "-f", file)
	if out := cli(t, s.url, "delete", "-f", file); out != "inferenceservice.nimbus.dev/fraud deleted\nmodel.nimbus.dev/fraud-detector deleted\n" {
		t.Errorf("by file: %q", out)
	}
	for _, kind := range []string{"models", "isvc"} {
		if out := cli(t, s.url, "get", kind, "-n", "default", "-o", "json"); out != "{\n  \"items\": []\n}\n" {
			t.Errorf("left: %s", out)
		}
	}
	for _, src := range s.rec.changeSources() {
		if src != "cli" {
			t.Errorf("change source %q", src)
		}
	}
	evs := s.events(t)
	var deletes []string
	for _, e := range evs {
		if e.Action == audit.ActionDelete {
			deletes = append(deletes, e.Source+" "+e.Kind+" "+e.Namespace+"/"+e.Name)
		}
	}
	if want := []string{
		"cli InferenceService default/fraud", "cli InferenceService retail/churn", "cli Model default/churn",
		"cli InferenceService default/fraud", "cli Model default/fraud-detector",
	}; !slices.Equal(deletes, want) {
		t.Errorf("deletes recorded = %q, want %q", deletes, want)
	}

	for name, args := range map[string][]string{
		"nothing":   {"delete"},
		"kind only": {"delete", "isvc"},
		"both":      {"delete", "isvc", "x", "-f", file},
	} {
		if r := runCLI(t, nil, append([]string{"--server", s.url}, args...)...); r.code != 2 {
			t.Errorf("%s: exit %d\nstderr: %s", name, r.code, r.err)
		}
	}
}

func TestDescribe(t *testing.T) {
	s := servedFixture(t)
	var evs []audit.Event
	for i := range 11 {
		evs = append(evs, audit.Event{Time: time.Date(2025, 1, 3, 0, i, 0, 0, time.UTC), Actor: "ci@example.com",
			Source: "api", Action: "update", Kind: spec.KindInferenceService, Namespace: "default", Name: "fraud",
			Generation: int64(2 + i), Summary: fmt.Sprintf("traffic change %d", i)})
	}
	// Later events of other resources are not fraud's latest.
	for _, e := range []audit.Event{
		{Kind: spec.KindModel, Namespace: "default", Name: "fraud", Summary: "another kind"},
		{Kind: spec.KindInferenceService, Namespace: "retail", Name: "fraud", Summary: "another namespace"},
		{Kind: spec.KindInferenceService, Namespace: "default", Name: "fraud2", Summary: "another name"},
	} {
		e.Time, e.Actor, e.Source, e.Action, e.Generation = time.Date(2025, 1, 4, 0, 0, 0, 0, time.UTC), "local", "cli", "update", 2
		evs = append(evs, e)
	}
	s.appendEvents(t, evs...)
	svc, err := client.New(s.url).GetResource(context.Background(), "isvc", "default", "fraud")
	if err != nil {
		t.Fatal(err)
	}

	queries := len(s.rec.eventQueries())
	out := cli(t, s.url, "describe", "isvc", "fraud")
	want := `Name:         fraud
Namespace:    default
Kind:         InferenceService
Labels:       -
Annotations:  -
Created:      ` + formatTime(*svc.GetMeta().CreationTimestamp) + `
Generation:   3 (observed 2)
URL:          /v2/models/fraud/infer
Timeout:      500ms
Sticky by:    header

Traffic:
  TARGET                     WEIGHT  VERSION  REQUESTS  SHARE  ERRORS  MEAN
  fraud-detector@champion    90      3        900       90.0%  1       1.25ms
  fraud-detector@challenger  10      4        100       10.0%  0       2.50ms

Shadow:  fraud-detector@4=100%
  SENT   ERRORS  DROPPED  COMPARED  EXACT-MATCH  MAX-ABS-DIFF
  1000   0       2        998       99.2%        0.125

Conditions:
  TYPE         STATUS  REASON       MESSAGE
  Ready        False   NotObserved  the router serves generation 2
  Progressing  True    Loading      fraud-detector@challenger loading
  Degraded     False   -            -

Events:
  TIME                  ACTOR           SOURCE  ACTION  SUMMARY
`
	for i := 1; i <= 10; i++ {
		want += fmt.Sprintf("  2025-01-03T00:%02d:00Z  ci@example.com  api     update  traffic change %d\n", i, i)
	}
	if out != want {
		t.Errorf("describe isvc:\n%s\nwant:\n%s", out, want)
	}
	// The latest events of this resource, in one request.
	if q := s.rec.eventQueries()[queries:]; !slices.Equal(q, []string{"kind=InferenceService&latest=true&limit=10&name=fraud"}) {
		t.Errorf("events queries %q", q)
	}

	out = cli(t, s.url, "describe", "model.nimbus.dev/fraud-detector")
	for _, want := range []string{
		"Labels:       team=payments\n",
		"Aliases:      challenger=4,champion=3\n",
		"Serving:      - (not managed by apply)\n",
		"Generation:   2 (observed 2)\n",
		"  VERSION  FORMAT  SHA256        ALIASES     SOURCE\n",
		"  3        onnx    " + artifactV3.sha256[:12] + "  champion    " + artifactV3.uri + "\n",
		"  4        onnx    " + artifactV4.sha256[:12] + "  challenger  " + artifactV4.uri + "\n",
		"  Ready     True    Registered  2 versions registered; they load on demand\n",
		"  Degraded  False   -           -\n",
		// The applies that made it, oldest first.
		"  TIME                  ACTOR  SOURCE  ACTION  SUMMARY\n  " + formatTime(s.clock.at(0)) + "  local  cli     create  ",
		"\n  " + formatTime(s.clock.at(1)) + "  local  cli     update  ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe model lacks %q:\n%s", want, out)
		}
	}

	out = cli(t, s.url, "describe", "isvc", "churn", "-n", "retail")
	for _, want := range []string{"  churn   100     1        0         0.0%   0       -\n", "Shadow:  <none>\n",
		"  Ready        True    Routing  1 targets; versions load on first request\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe unserved lacks %q:\n%s", want, out)
		}
	}

	var d struct {
		Resource spec.InferenceService
		Events   []audit.Event
	}
	if err := json.Unmarshal([]byte(cli(t, s.url, "describe", "isvc", "fraud", "-o", "json")), &d); err != nil ||
		d.Resource.Metadata.Name != "fraud" || len(d.Events) != 10 || d.Events[9].Summary != "traffic change 10" {
		t.Errorf("json: %v %+v", err, d)
	}
	if r := runCLI(t, nil, "--server", s.url, "describe", "isvc"); r.code != 2 {
		t.Errorf("no name: exit %d %s", r.code, r.err)
	}
	if r := runCLI(t, nil, "--server", s.url, "describe", "isvc", "nope"); r.code != 1 || !strings.Contains(r.err, `inferenceservice nope not found`) {
		t.Errorf("missing: exit %d %s", r.code, r.err)
	}
}

// describe of a resource whose server sent no status, nor traffic counters,
// nor events: what is declared, and "<none>".
func TestRenderDescriptionWithoutStatus(t *testing.T) {
	w := 100
	var b bytes.Buffer
	err := (&app{stdout: &b, output: "table"}).print(nil, func(tb *table) {
		renderDescription(tb, &spec.InferenceService{
			TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindInferenceService},
			Metadata: spec.ObjectMeta{Name: "churn", Namespace: "retail", Generation: 1},
			Spec:     spec.ServiceSpec{Traffic: []spec.TrafficTarget{{Model: "churn", Weight: &w}}},
		}, nil)
	})
	want := `Name:         churn
Namespace:    retail
Kind:         InferenceService
Labels:       -
Annotations:  -
Created:      -
Generation:   1 (observed 0)
URL:          -
Timeout:      none
Sticky by:    -

Traffic:
  TARGET  WEIGHT  VERSION  REQUESTS  SHARE  ERRORS  MEAN
  churn   100     -        -         -      -       -

Shadow:  <none>

Conditions:  <none>

Events:  <none>
`
	if err != nil || b.String() != want {
		t.Errorf("describe (%v):\n%s\nwant:\n%s", err, b.String(), want)
	}
}

func TestEvents(t *testing.T) {
	s := newResourceServer(t)
	cli(t, s.url, "apply", "-f", modelFile(t, "m.yaml", modelYAML))
	cli(t, s.url, "apply", "-f", modelFile(t, "svc.yaml", serviceYAML))
	cli(t, s.url, "apply", "-f", modelFile(t, "m.yaml", modelYAML), "-n", "payments")
	cli(t, s.url, "delete", "isvc", "fraud")
	at := func(i int) string { return formatTime(s.clock.at(i)) }
	evs := s.events(t)
	if len(evs) != 4 {
		t.Fatalf("audit log: %+v", evs)
	}
	summary := func(id int) string { return evs[id-1].Summary }

	want := "TIME                  ID  ACTOR  SOURCE  ACTION  KIND              NAMESPACE/NAME          GEN  SUMMARY\n" +
		at(0) + "  1   local  cli     create  Model             default/fraud-detector  1    " + summary(1) + "\n" +
		at(1) + "  2   local  cli     create  InferenceService  default/fraud           1    " + summary(2) + "\n" +
		at(3) + "  4   local  cli     delete  InferenceService  default/fraud           -    " + summary(4) + "\n"
	if out := cli(t, s.url, "events"); out != want {
		t.Errorf("events:\n%s\nwant:\n%s", out, want)
	}
	tests := []struct {
		name   string
		args   []string
		ids    []int64
		query  string
		header bool
	}{
		{"all namespaces", []string{"-A"}, []int64{1, 2, 3, 4}, "latest=true&limit=50", true},
		{"kind", []string{"-A", "--kind", "models"}, []int64{1, 3}, "kind=Model&latest=true&limit=50", true},
		{"name", []string{"--name", "fraud", "--kind", "isvc"}, []int64{2, 4}, "kind=InferenceService&latest=true&limit=50&name=fraud", true},
		{"namespace", []string{"-n", "payments"}, []int64{3}, "latest=true&limit=50", true},
		{"latest", []string{"-A", "--limit", "2"}, []int64{3, 4}, "latest=true&limit=2", true},
		{"latest of a kind", []string{"--kind", "isvc", "--limit", "1"}, []int64{4}, "kind=InferenceService&latest=true&limit=1", true},
		{"after", []string{"-A", "--after", "1", "--limit", "1"}, []int64{2}, "after=1&limit=1", true},
		{"other kind", []string{"-A", "--kind", "Trigger"}, nil, "kind=Trigger&latest=true&limit=50", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			queries := len(s.rec.eventQueries())
			var got []audit.Event
			if err := json.Unmarshal([]byte(cli(t, s.url, append([]string{"events", "-o", "json"}, tt.args...)...)), &got); err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if !slices.Equal(ids, tt.ids) {
				t.Errorf("ids = %v, want %v", ids, tt.ids)
			}
			// One request.
			if q := s.rec.eventQueries()[queries:]; !slices.Equal(q, []string{tt.query}) {
				t.Errorf("queries = %q, want [%q]", q, tt.query)
			}
			r := runCLI(t, nil, append([]string{"--server", s.url, "events"}, tt.args...)...)
			if strings.HasPrefix(r.out, "TIME") != tt.header || (!tt.header && r.err != "No events found.\n") {
				t.Errorf("table: %q, stderr %q", r.out, r.err)
			}
		})
	}

	since := s.clock.at(0).Add(90 * time.Second).Format(time.RFC3339)
	if out := cli(t, s.url, "events", "-A", "--since", since, "-o", "json"); !strings.Contains(out, `"id": 3`) ||
		!strings.Contains(out, `"id": 4`) || strings.Contains(out, `"id": 2`) {
		t.Errorf("since: %s", out)
	}
	if out := cli(t, s.url, "events", "-A", "--since", "1h"); out != "" {
		t.Errorf("since 1h (events are 3h old): %q", out)
	}

	out := cli(t, s.url, "events", "--diff", "--kind", "isvc")
	want = "event 2  " + at(1) + "  local via cli  create InferenceService default/fraud generation 1\n" +
		"    " + summary(2) + "\n" + evs[1].Diff + "\n" +
		"event 4  " + at(3) + "  local via cli  delete InferenceService default/fraud\n" +
		"    " + summary(4) + "\n" + evs[3].Diff
	if out != want || !strings.HasSuffix(evs[1].Diff, "\n") || !strings.HasPrefix(evs[1].Diff, "--- /dev/null\n+++ applied\n") {
		t.Errorf("--diff:\n%s\nwant:\n%s", out, want)
	}

	for name, args := range map[string][]string{
		"bad limit": {"events", "--limit", "5000"},
		"bad since": {"events", "--since", "yesterday"},
		"argument":  {"events", "fraud"},
	} {
		if r := runCLI(t, nil, append([]string{"--server", s.url}, args...)...); r.code != 2 {
			t.Errorf("%s: exit %d\nstderr: %s", name, r.code, r.err)
		}
	}
}

// Without --after, events shows the latest --limit of a log longer than that,
// asked for in one request.
func TestLatestEvents(t *testing.T) {
	s := newResourceServer(t)
	var evs []audit.Event
	for i := range 60 {
		evs = append(evs, audit.Event{Time: time.Date(2025, 1, 3, 0, i, 0, 0, time.UTC), Action: "update", Kind: spec.KindModel,
			Namespace: "default", Name: "m", Summary: fmt.Sprintf("change %d", i)})
	}
	s.appendEvents(t, evs...)
	var got []audit.Event
	if err := json.Unmarshal([]byte(cli(t, s.url, "events", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != defaultEventLimit || got[0].ID != 11 || got[len(got)-1].ID != 60 {
		t.Errorf("got %d events, %d..%d; want the latest %d, 11..60", len(got), got[0].ID, got[len(got)-1].ID, defaultEventLimit)
	}
	if q := s.rec.eventQueries(); !slices.Equal(q, []string{"latest=true&limit=50"}) {
		t.Errorf("queries = %q", q)
	}
}

func TestFormatAge(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Minute, "0s"},
		{42 * time.Second, "42s"},
		{5*time.Minute + 30*time.Second, "5m"},
		{3 * time.Hour, "3h"},
		{47 * time.Hour, "47h"},
		{12 * 24 * time.Hour, "12d"},
	}
	for _, tt := range tests {
		ts := now.Add(-tt.ago)
		if got := formatAge(&ts, now); got != tt.want {
			t.Errorf("formatAge(-%v) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := formatAge(nil, now); got != "-" {
		t.Errorf("nil: %q", got)
	}
}
