package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/client"
	"github.com/nimbus-ai/nimbus/spec"
)

// fakeResources is an in-memory stand-in for the server side of the
// declarative-resources REST contract, just enough to drive the commands:
// apply validates a few rules (known kind, a name, traffic weights summing to
// 100, a matching resourceVersion) with file:line errors, keeps objects and
// records audit events. Its diffs are one line per spec, not real ones. The
// end-to-end tests against the real server live in e2e/.
type fakeResources struct {
	mu      sync.Mutex
	objs    map[string]spec.Object // by kind/namespace/name
	events  []audit.Event
	applied []applyRequest // every apply and delete body, in order
	sources []string       // Nimbus-Change-Source of every mutating request
	queries []string       // raw query of every events request
	now     time.Time
}

type applyRequest struct {
	Files     []client.ApplyFile `json:"files"`
	Namespace string             `json:"namespace"`
	DryRun    bool               `json:"dryRun"`
}

func newFakeResources(t *testing.T) (*fakeResources, string) {
	t.Helper()
	f := &fakeResources{objs: map[string]spec.Object{}, now: time.Now().Add(-3 * time.Hour).Truncate(time.Second).UTC()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/apply", func(w http.ResponseWriter, r *http.Request) { f.apply(w, r, false) })
	mux.HandleFunc("POST /api/v1/delete", func(w http.ResponseWriter, r *http.Request) { f.apply(w, r, true) })
	mux.HandleFunc("GET /api/v1/resources/{kind}", f.list)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/resources/{kind}", f.list)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/resources/{kind}/{name}", f.get)
	mux.HandleFunc("DELETE /api/v1/namespaces/{ns}/resources/{kind}/{name}", f.deleteOne)
	mux.HandleFunc("GET /api/v1/events", f.listEvents)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/events", f.listEvents)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func objKey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func replyError(w http.ResponseWriter, status int, code, msg string) {
	reply(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// specJSON is what apply compares: labels and spec.
func specJSON(o spec.Object) string {
	var s any
	switch o := o.(type) {
	case *spec.Model:
		s = o.Spec
	case *spec.InferenceService:
		s = o.Spec
	}
	b, _ := json.Marshal(map[string]any{"labels": o.GetMeta().Labels, "spec": s})
	return string(b)
}

// decodeDocs reads a file's documents with the real decoder and adds the
// fake's own checks, reported at the document's (or the field's) line.
func decodeDocs(file client.ApplyFile, ns string) ([]spec.Object, []spec.FieldError) {
	docs, errs := spec.Decode(file.Name, []byte(file.Content))
	var objs []spec.Object
	for _, doc := range docs {
		fe := func(field, msg string) {
			line := doc.Line
			if l := doc.Lines[field]; l > 0 {
				line = l
			}
			errs = append(errs, spec.FieldError{File: file.Name, Line: line, Field: field, Message: msg, Code: "invalid_argument"})
		}
		meta := doc.Object.GetMeta()
		if meta.Name == "" {
			fe("metadata.name", "is required")
			continue
		}
		if meta.Namespace == "" {
			meta.Namespace = ns
		}
		if svc, ok := doc.Object.(*spec.InferenceService); ok {
			sum := 0
			for _, tt := range svc.Spec.Traffic {
				if tt.Weight != nil {
					sum += *tt.Weight
				}
			}
			if sum != 100 {
				fe("spec.traffic", fmt.Sprintf("weights must sum to 100, got %d", sum))
				continue
			}
		}
		objs = append(objs, doc.Object)
	}
	return objs, errs
}

func (f *fakeResources) apply(w http.ResponseWriter, r *http.Request, del bool) {
	var req applyRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		replyError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return
	}
	ns := req.Namespace
	if ns == "" {
		ns = "default"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, req)
	f.sources = append(f.sources, r.Header.Get(client.ChangeSourceHeader))

	var objs []spec.Object
	var errs []spec.FieldError
	status := http.StatusBadRequest
	for _, file := range req.Files {
		o, e := decodeDocs(file, ns)
		objs, errs = append(objs, o...), append(errs, e...)
	}
	if len(objs) == 0 && len(errs) == 0 {
		errs = append(errs, spec.FieldError{Message: "no documents", Code: "invalid_argument"})
	}
	for _, o := range objs {
		m := o.GetMeta()
		old, ok := f.objs[objKey(o.GetKind(), m.Namespace, m.Name)]
		switch {
		case del && !ok:
			status = http.StatusNotFound
			errs = append(errs, spec.FieldError{Kind: o.GetKind(), Name: m.Name, Message: "not found", Code: "not_found"})
		case !del && ok && m.ResourceVersion != "" && m.ResourceVersion != old.GetMeta().ResourceVersion:
			status = http.StatusConflict
			errs = append(errs, spec.FieldError{Kind: o.GetKind(), Name: m.Name, Field: "metadata.resourceVersion",
				Message: fmt.Sprintf("is %s, stored %s", m.ResourceVersion, old.GetMeta().ResourceVersion), Code: "conflict"})
		}
	}
	if len(errs) > 0 {
		reply(w, status, map[string]any{"errors": errs})
		return
	}

	res := client.ApplyResult{DryRun: req.DryRun, Results: []client.ResourceResult{}}
	for _, o := range objs {
		m := o.GetMeta()
		key := objKey(o.GetKind(), m.Namespace, m.Name)
		old, exists := f.objs[key]
		rr := client.ResourceResult{Kind: o.GetKind(), Namespace: m.Namespace, Name: m.Name}
		action := audit.ActionUpdate
		switch {
		case del:
			rr.Action, action = client.ActionDeleted, audit.ActionDelete
		case !exists:
			rr.Action, rr.Generation, action = client.ActionCreated, 1, audit.ActionCreate
			rr.Diff = "+" + specJSON(o) + "\n"
		case specJSON(old) == specJSON(o):
			rr.Action, rr.Generation = client.ActionUnchanged, old.GetMeta().Generation
		default:
			rr.Action, rr.Generation = client.ActionConfigured, old.GetMeta().Generation+1
			rr.Diff = "-" + specJSON(old) + "\n+" + specJSON(o) + "\n"
		}
		res.Results = append(res.Results, rr)
		if req.DryRun || rr.Action == client.ActionUnchanged {
			continue
		}
		if del {
			delete(f.objs, key)
		} else {
			f.store(o, old)
		}
		f.record(action, o.GetKind(), m.Namespace, m.Name, rr.Generation, rr.Diff, r)
	}
	reply(w, http.StatusOK, res)
}

// store keeps o as the new state of old (nil for a new resource): server-set
// metadata is the server's, the status stays.
func (f *fakeResources) store(o, old spec.Object) {
	m := o.GetMeta()
	m.Generation, m.ResourceVersion, m.CreationTimestamp = 1, "1", &f.now
	if old != nil {
		om := old.GetMeta()
		rv, _ := strconv.Atoi(om.ResourceVersion)
		m.Generation, m.ResourceVersion, m.CreationTimestamp = om.Generation+1, strconv.Itoa(rv+1), om.CreationTimestamp
		switch o := o.(type) {
		case *spec.Model:
			o.Status = old.(*spec.Model).Status
		case *spec.InferenceService:
			o.Status = old.(*spec.InferenceService).Status
		}
	}
	f.objs[objKey(o.GetKind(), m.Namespace, m.Name)] = o
}

func (f *fakeResources) record(action, kind, ns, name string, gen int64, diff string, r *http.Request) {
	f.events = append(f.events, audit.Event{
		ID: int64(len(f.events) + 1), Time: f.now.Add(time.Duration(len(f.events)) * time.Minute),
		Actor: audit.LocalActor, Source: r.Header.Get(client.ChangeSourceHeader), Action: action,
		Kind: kind, Namespace: ns, Name: name, Generation: gen, Summary: action + " " + name, Diff: diff,
	})
}

// seed stores objects as they are, status and all.
func (f *fakeResources) seed(objs ...spec.Object) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range objs {
		m := o.GetMeta()
		f.objs[objKey(o.GetKind(), m.Namespace, m.Name)] = o
	}
}

func (f *fakeResources) kindOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	kind, _, err := client.NormalizeKind(r.PathValue("kind"))
	if err != nil {
		replyError(w, http.StatusNotFound, "not_found", err.Error())
		return "", false
	}
	return kind, true
}

func (f *fakeResources) list(w http.ResponseWriter, r *http.Request) {
	kind, ok := f.kindOf(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k, o := range f.objs {
		if o.GetKind() == kind && (r.PathValue("ns") == "" || o.GetMeta().Namespace == r.PathValue("ns")) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	items := []spec.Object{}
	for _, k := range keys {
		items = append(items, f.objs[k])
	}
	reply(w, http.StatusOK, map[string]any{"items": items})
}

func (f *fakeResources) get(w http.ResponseWriter, r *http.Request) {
	kind, ok := f.kindOf(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.objs[objKey(kind, r.PathValue("ns"), r.PathValue("name"))]
	if !ok {
		replyError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s %q not found", strings.ToLower(kind), r.PathValue("name")))
		return
	}
	reply(w, http.StatusOK, o)
}

func (f *fakeResources) deleteOne(w http.ResponseWriter, r *http.Request) {
	kind, ok := f.kindOf(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sources = append(f.sources, r.Header.Get(client.ChangeSourceHeader))
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if _, ok := f.objs[objKey(kind, ns, name)]; !ok {
		replyError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%s %q not found", strings.ToLower(kind), name))
		return
	}
	delete(f.objs, objKey(kind, ns, name))
	f.record(audit.ActionDelete, kind, ns, name, 0, "", r)
	reply(w, http.StatusOK, client.ResourceResult{Kind: kind, Namespace: ns, Name: name, Action: client.ActionDeleted})
}

func (f *fakeResources) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns := r.PathValue("ns")
	if ns == "" {
		ns = q.Get("namespace")
	}
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit == 0 {
		limit = audit.DefaultLimit
	}
	var since time.Time
	if s := q.Get("since"); s != "" {
		var err error
		if since, err = time.Parse(time.RFC3339, s); err != nil {
			replyError(w, http.StatusBadRequest, "invalid_argument", err.Error())
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, r.URL.RawQuery)
	items := []audit.Event{}
	for _, e := range f.events {
		if e.ID <= after || (ns != "" && e.Namespace != ns) || (q.Get("kind") != "" && e.Kind != q.Get("kind")) ||
			(q.Get("name") != "" && e.Name != q.Get("name")) || e.Time.Before(since) {
			continue
		}
		if len(items) == limit {
			break
		}
		items = append(items, e)
	}
	reply(w, http.StatusOK, map[string]any{"items": items})
}

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

const (
	modelYAML = `apiVersion: nimbus.dev/v1
kind: Model
metadata:
  name: fraud-detector
spec:
  versions:
    - version: 3
      source: {uri: "file:///models/fraud-v3.onnx", sha256: "3333333333333333333333333333333333333333333333333333333333333333"}
    - version: 4
      source: {uri: "file:///models/fraud-v4.onnx", sha256: "4444444444444444444444444444444444444444444444444444444444444444"}
  aliases: {champion: 3, challenger: 4}
`
	serviceYAML = `apiVersion: nimbus.dev/v1
kind: InferenceService
metadata:
  name: fraud
spec:
  traffic:
    - {model: fraud-detector@champion, weight: 90}
    - {model: fraud-detector@challenger, weight: 10}
`
)

func TestApply(t *testing.T) {
	f, srv := newFakeResources(t)
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
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if out := cli(t, srv, append([]string{"apply", "-f", s.file, "-n", "payments"}, s.args...)...); out != s.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, s.want)
			}
		})
	}
	if f.objs[objKey(spec.KindInferenceService, "payments", "fraud")].GetMeta().Generation != 2 {
		t.Errorf("stored service: %+v", f.objs[objKey(spec.KindInferenceService, "payments", "fraud")])
	}
	// One call with every file, the namespace, and the source for the audit log.
	last := f.applied[len(f.applied)-1]
	if len(last.Files) != 1 || !strings.HasSuffix(last.Files[0].Name, "fraud.yaml") || last.Namespace != "payments" || last.DryRun {
		t.Errorf("apply request = %+v", last)
	}
	if want := []string{"cli", "cli", "cli", "cli"}; !slices.Equal(f.sources, want) {
		t.Errorf("change sources = %q", f.sources)
	}

	var res client.ApplyResult
	out := cli(t, srv, "apply", "-f", file, "-n", "payments", "--dry-run", "-o", "json")
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json %q: %v", out, err)
	}
	want := client.ApplyResult{DryRun: true, Results: []client.ResourceResult{
		{Kind: "Model", Namespace: "payments", Name: "fraud-detector", Action: "unchanged", Generation: 1},
		{Kind: "InferenceService", Namespace: "payments", Name: "fraud", Action: "configured", Generation: 3,
			Diff: res.Results[1].Diff},
	}}
	if diff := cmp.Diff(want, res); diff != "" || res.Results[1].Diff == "" {
		t.Errorf("json result (-want +got):\n%s", diff)
	}
}

func TestApplyRefused(t *testing.T) {
	f, srv := newFakeResources(t)
	bad := writeTree(t, map[string]string{
		"a/model.yaml": modelYAML,
		"b/svc.yaml": serviceYAML + "---\napiVersion: nimbus.dev/v1\nkind: InferenceService\nmetadata: {name: x}\n" +
			"spec:\n  traffic: [{model: m, weight: 90}]\n---\napiVersion: nimbus.dev/v1\nkind: Trigger\nmetadata: {name: t}\n",
	})
	r := runCLI(t, nil, "--server", srv, "apply", "-f", bad)
	svc := filepath.ToSlash(filepath.Join(bad, "b", "svc.yaml"))
	// Every problem of every file, as file:line: field: message, one per line.
	lines := strings.Split(r.err, "\n")
	if r.code != 1 || r.out != "" || len(lines) != 4 ||
		lines[0] != svc+`:17: kind: unknown kind "Trigger"; known kinds: InferenceService, Model` ||
		lines[1] != svc+":14: spec.traffic: weights must sum to 100, got 90" ||
		lines[2] != "Error: apply refused: 2 problems; nothing was changed" {
		t.Errorf("exit %d\nstdout: %s\nstderr:\n%s", r.code, r.out, r.err)
	}
	if len(f.objs) != 0 {
		t.Errorf("stored %d objects from a refused apply", len(f.objs))
	}

	// Scripts get the errors as JSON too.
	r = runCLI(t, nil, "--server", srv, "apply", "-f", bad, "-o", "json")
	var got struct{ Errors []spec.FieldError }
	if err := json.Unmarshal([]byte(r.out), &got); r.code != 1 || err != nil || len(got.Errors) != 2 || got.Errors[1].Line != 14 {
		t.Errorf("json: exit %d, %v\n%s", r.code, err, r.out)
	}

	// A stale resourceVersion is a conflict, reported the same way.
	cli(t, srv, "apply", "-f", modelFile(t, "m.yaml", modelYAML))
	stale := strings.Replace(modelYAML, "name: fraud-detector", "name: fraud-detector\n  resourceVersion: \"7\"", 1)
	r = runIn(t, srv, stale, "apply", "-f", "-")
	if r.code != 1 || r.err != "model/fraud-detector: metadata.resourceVersion: is 7, stored 1\nError: apply refused: 1 problem; nothing was changed\n" {
		t.Errorf("conflict: exit %d\nstderr: %s", r.code, r.err)
	}
}

func TestApplyInputs(t *testing.T) {
	f, srv := newFakeResources(t)
	dir := writeTree(t, map[string]string{
		"z-service.yml":          serviceYAML,
		"models/fraud.yaml":      modelYAML,
		"models/deep/other.json": `{"apiVersion": "nimbus.dev/v1", "kind": "Model", "metadata": {"name": "churn"}, "spec": {}}`,
		"models/README.md":       "# not a resource",
		"models/model.onnx":      "binary",
		".git/config.yaml":       "not: ours",
		"models/.hidden.yaml":    "kind: Nope",
	})
	out := cli(t, srv, "apply", "-f", dir)
	want := "model.nimbus.dev/churn created\nmodel.nimbus.dev/fraud-detector created\ninferenceservice.nimbus.dev/fraud created\n"
	if out != want {
		t.Errorf("directory apply:\n%s\nwant:\n%s", out, want)
	}
	var names []string
	for _, file := range f.applied[0].Files {
		names = append(names, strings.TrimPrefix(file.Name, filepath.ToSlash(dir)+"/"))
	}
	if diff := cmp.Diff([]string{"models/deep/other.json", "models/fraud.yaml", "z-service.yml"}, names); diff != "" {
		t.Errorf("files sent (-want +got):\n%s", diff)
	}

	// stdin, together with a file, in one call.
	r := runIn(t, srv, serviceYAML, "apply", "-f", "-", "-f", filepath.Join(dir, "models", "fraud.yaml"))
	if r.code != 0 || r.out != "inferenceservice.nimbus.dev/fraud unchanged\nmodel.nimbus.dev/fraud-detector unchanged\n" {
		t.Errorf("stdin: exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
	}
	if last := f.applied[len(f.applied)-1]; len(last.Files) != 2 || last.Files[0].Name != "stdin" || last.Files[0].Content != serviceYAML {
		t.Errorf("stdin request = %+v", last)
	}

	calls := len(f.applied)
	empty := writeTree(t, map[string]string{"empty.yaml": "# nothing yet\n---\n", "docs/notes.txt": "x"})
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		errHas string
	}{
		{"no -f", "", []string{"apply"}, 2, "no input: give -f FILE"},
		{"empty stdin", "", []string{"apply", "-f", "-"}, 1, "no resources in stdin: the input holds no YAML or JSON document"},
		{"empty file", "", []string{"apply", "-f", filepath.Join(empty, "empty.yaml")}, 1, "the input holds no YAML or JSON document"},
		{"directory without resources", "", []string{"apply", "-f", filepath.Join(empty, "docs")}, 1, "no *.yaml, *.yml or *.json files under"},
		{"missing file", "", []string{"apply", "-f", filepath.Join(empty, "nope.yaml")}, 1, "no such file or directory"},
		{"stdin twice", "x: 1", []string{"apply", "-f", "-", "-f", "-"}, 2, "given twice"},
		{"stray argument", "", []string{"apply", "fraud.yaml"}, 2, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runIn(t, srv, tt.stdin, tt.args...)
			if r.code != tt.code || !strings.Contains(r.err, tt.errHas) {
				t.Errorf("exit %d (want %d)\nstderr: %s", r.code, tt.code, r.err)
			}
		})
	}
	if len(f.applied) != calls {
		t.Errorf("bad input reached the server")
	}
}

func TestDiff(t *testing.T) {
	f, srv := newFakeResources(t)
	file := modelFile(t, "svc.yaml", serviceYAML)

	r := runIn(t, srv, "", "diff", "-f", file)
	want := "diff -u -N live/default/inferenceservice.nimbus.dev/fraud applied/default/inferenceservice.nimbus.dev/fraud\n" +
		"--- /dev/null\n+++ applied\n+" +
		`{"labels":null,"spec":{"traffic":[{"model":"fraud-detector@champion","weight":90},{"model":"fraud-detector@challenger","weight":10}]}}` + "\n"
	if r.code != 1 || r.out != want || r.err != "" {
		t.Errorf("new: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.out, want, r.err)
	}
	if len(f.objs) != 0 || !f.applied[0].DryRun {
		t.Errorf("diff changed something: %+v", f.applied)
	}

	cli(t, srv, "apply", "-f", file)
	if r := runIn(t, srv, "", "diff", "-f", file); r.code != 0 || r.out != "" || r.err != "" {
		t.Errorf("in sync: exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
	}

	changed := strings.Replace(strings.Replace(serviceYAML, "90", "80", 1), "10}", "20}", 1)
	r = runIn(t, srv, changed, "diff", "-f", "-")
	if r.code != 1 || !strings.HasPrefix(r.out, "diff -u -N live/default/inferenceservice.nimbus.dev/fraud applied/default/inferenceservice.nimbus.dev/fraud\n--- live\n+++ applied\n-{") ||
		!strings.Contains(r.out, `"weight":80`) {
		t.Errorf("changed: exit %d\nstdout:\n%s", r.code, r.out)
	}
	r = runIn(t, srv, changed, "diff", "-f", "-", "-o", "json")
	var res client.ApplyResult
	if err := json.Unmarshal([]byte(r.out), &res); r.code != 1 || err != nil || !res.DryRun || res.Results[0].Action != "configured" {
		t.Errorf("json: exit %d, %v\n%s", r.code, err, r.out)
	}

	// Errors are >1, unlike differences.
	for name, args := range map[string][]string{
		"invalid":     {"diff", "-f", modelFile(t, "bad.yaml", "apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {}\n")},
		"no input":    {"diff"},
		"missing":     {"diff", "-f", filepath.Join(t.TempDir(), "nope.yaml")},
		"unreachable": {"--server", "http://127.0.0.1:1", "diff", "-f", file},
	} {
		if r := runIn(t, srv, "", args...); r.code != 2 || !strings.Contains(r.err, "Error: ") {
			t.Errorf("%s: exit %d\nstderr: %s", name, r.code, r.err)
		}
	}
	if r := runIn(t, srv, "", "diff", "-f", modelFile(t, "bad.yaml", "apiVersion: nimbus.dev/v1\nkind: Model\nmetadata: {}\n")); !strings.HasSuffix(r.err, "bad.yaml:1: metadata.name: is required\nError: diff: 1 problem in the input\n") {
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
}

// servedFixture seeds a model and a service with status in two namespaces.
func servedFixture(t *testing.T) (*fakeResources, string) {
	t.Helper()
	f, srv := newFakeResources(t)
	created := time.Now().Add(-2 * time.Hour)
	w90, w10, p100 := 90, 10, 100
	f.seed(
		&spec.Model{
			TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindModel},
			Metadata: spec.ObjectMeta{Name: "fraud-detector", Namespace: "default", Generation: 2, ResourceVersion: "4", CreationTimestamp: &created,
				Labels: map[string]string{"team": "payments"}},
			Spec: spec.ModelSpec{
				Versions: []spec.ModelVersion{
					{Version: 3, Format: "onnx", Source: spec.Source{URI: "file:///models/fraud-v3.onnx", SHA256: strings.Repeat("3", 64)}},
					{Version: 4, Format: "onnx", Source: spec.Source{URI: "file:///models/fraud-v4.onnx", SHA256: strings.Repeat("4", 64)}},
				},
				Aliases: map[string]int64{"champion": 3, "challenger": 4},
			},
			Status: &spec.ModelStatus{ObservedGeneration: 2, Conditions: []spec.Condition{{Type: "Ready", Status: "True", Reason: "Loaded"}}},
		},
		&spec.InferenceService{
			TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindInferenceService},
			Metadata: spec.ObjectMeta{Name: "fraud", Namespace: "default", Generation: 3, ResourceVersion: "5", CreationTimestamp: &created},
			Spec: spec.ServiceSpec{
				Traffic: []spec.TrafficTarget{{Model: "fraud-detector@champion", Weight: &w90}, {Model: "fraud-detector@challenger", Weight: &w10}},
				Shadow:  &spec.ShadowTarget{Model: "fraud-detector@4", Percent: &p100},
				Timeout: 500 * 1e6,
				Routing: &spec.Routing{StickyBy: "header"},
			},
			Status: &spec.ServiceStatus{
				ObservedGeneration: 2,
				URL:                "http://127.0.0.1:8080/v2/models/fraud",
				Conditions: []spec.Condition{
					{Type: "Ready", Status: "True", Reason: "Serving"},
					{Type: "Progressing", Status: "True", Reason: "NewGeneration", Message: "generation 3 is being rolled out"},
				},
				Traffic: []spec.TrafficStatus{
					{Model: "fraud-detector@champion", Weight: 90, Version: 3, Requests: 900, Errors: 1, Share: 0.9, MeanMS: 1.25},
					{Model: "fraud-detector@challenger", Weight: 10, Version: 4, Requests: 100, Share: 0.1, MeanMS: 2.5},
				},
				Shadow: &spec.ShadowStatus{Model: "fraud-detector@4", Sent: 1000, Dropped: 2, Compared: 998, ExactMatch: 990, MaxAbsDiff: 0.125},
			},
		},
		&spec.InferenceService{
			TypeMeta: spec.TypeMeta{APIVersion: spec.APIVersion, Kind: spec.KindInferenceService},
			Metadata: spec.ObjectMeta{Name: "churn", Namespace: "retail", Generation: 1, ResourceVersion: "1"},
			Spec:     spec.ServiceSpec{Traffic: []spec.TrafficTarget{{Model: "churn", Weight: &p100}}},
		},
	)
	return f, srv
}

func TestGetResources(t *testing.T) {
	_, srv := servedFixture(t)
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
				"fraud  fraud-detector@champion=90,fraud-detector@challenger=10  True   2h\n"},
		{"services wide", []string{"get", "inferenceservices", "-o", "wide"},
			"NAME   TRAFFIC                                                  READY  AGE  SHADOW                 REQUESTS  GENERATION\n" +
				"fraud  fraud-detector@champion=90,fraud-detector@challenger=10  True   2h   fraud-detector@4=100%  900,100   3\n"},
		{"all namespaces", []string{"get", "isvc", "-A"},
			"NAMESPACE  NAME   TRAFFIC                                                  READY  AGE\n" +
				"default    fraud  fraud-detector@champion=90,fraud-detector@challenger=10  True   2h\n" +
				"retail     churn  churn=100                                                -      -\n"},
		{"one", []string{"get", "isvc", "churn", "-n", "retail"},
			"NAME   TRAFFIC    READY  AGE\nchurn  churn=100  -      -\n"},
		{"kind/name", []string{"get", "inferenceservice.nimbus.dev/churn", "-n", "retail"},
			"NAME   TRAFFIC    READY  AGE\nchurn  churn=100  -      -\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if out := cli(t, srv, tt.args...); out != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", out, tt.want)
			}
		})
	}

	r := runCLI(t, nil, "--server", srv, "get", "models", "-n", "empty")
	if r.code != 0 || r.out != "" || r.err != "No models found in namespace \"empty\".\n" {
		t.Errorf("empty: exit %d, stdout %q, stderr %q", r.code, r.out, r.err)
	}
	if out := cli(t, srv, "get", "models", "-n", "empty", "-o", "json"); out != "{\n  \"items\": []\n}\n" {
		t.Errorf("empty json: %q", out)
	}

	var svc spec.InferenceService
	if err := json.Unmarshal([]byte(cli(t, srv, "get", "isvc", "fraud", "-o", "json")), &svc); err != nil ||
		svc.Status.Traffic[0].Requests != 900 || *svc.Spec.Traffic[0].Weight != 90 {
		t.Errorf("json: %v %+v", err, svc)
	}
	var list struct{ Items []json.RawMessage }
	if err := json.Unmarshal([]byte(cli(t, srv, "get", "isvc", "-A", "-o", "json")), &list); err != nil || len(list.Items) != 2 {
		t.Errorf("list json: %v %d", err, len(list.Items))
	}

	for name, tt := range map[string]struct {
		args   []string
		code   int
		errHas string
	}{
		"not found":      {[]string{"get", "isvc", "nope"}, 1, `Error: get inferenceservice.nimbus.dev/nope: inferenceservice "nope" not found`},
		"unknown kind":   {[]string{"get", "triggers"}, 2, `unknown kind "triggers"`},
		"no kind":        {[]string{"get"}, 2, "accepts between 1 and 2 arg(s)"},
		"name with -A":   {[]string{"get", "isvc", "fraud", "-A"}, 2, "--all-namespaces lists"},
		"wide elsewhere": {[]string{"models", "list", "-o", "wide"}, 2, "nimbus models list does not support --output wide"},
		"bad kind/name":  {[]string{"get", "isvc/"}, 2, `want KIND/NAME`},
	} {
		if r := runCLI(t, nil, append([]string{"--server", srv}, tt.args...)...); r.code != tt.code || !strings.Contains(r.err, tt.errHas) {
			t.Errorf("%s: exit %d (want %d)\nstderr: %s", name, r.code, tt.code, r.err)
		}
	}
}

// get -o yaml is what apply takes back without a change, for one resource or
// a whole list.
func TestGetYAMLRoundTrip(t *testing.T) {
	f, srv := servedFixture(t)
	for _, args := range [][]string{
		{"get", "isvc", "fraud", "-o", "yaml"},
		{"get", "model", "fraud-detector", "-o", "yaml"},
		{"get", "isvc", "-A", "-o", "yaml"},
	} {
		yml := cli(t, srv, args...)
		if !strings.HasPrefix(yml, "apiVersion: nimbus.dev/v1\nkind: ") {
			t.Errorf("%v:\n%s", args, yml)
		}
		path := modelFile(t, "out.yaml", yml)
		out := cli(t, srv, "apply", "-f", path)
		if strings.Count(out, " unchanged\n") != strings.Count(out, "\n") || out == "" {
			t.Errorf("%v re-applied:\n%s\nyaml:\n%s", args, out, yml)
		}
	}
	yml := cli(t, srv, "get", "isvc", "fraud", "-o", "yaml")
	for _, want := range []string{"\n  name: fraud\n", "\n  timeout: 500ms\n", "\n    - model: fraud-detector@champion\n      weight: 90\n", "\nstatus:\n"} {
		if !strings.Contains(yml, want) {
			t.Errorf("yaml lacks %q:\n%s", want, yml)
		}
	}
	if len(f.events) != 0 {
		t.Errorf("re-applying changed something: %+v", f.events)
	}
}

func TestDeleteResources(t *testing.T) {
	f, srv := servedFixture(t)
	if out := cli(t, srv, "delete", "isvc", "fraud"); out != "inferenceservice.nimbus.dev/fraud deleted\n" {
		t.Errorf("by name: %q", out)
	}
	if out := cli(t, srv, "delete", "inferenceservice.nimbus.dev/churn", "-n", "retail", "-o", "json"); !strings.Contains(out, `"action": "deleted"`) {
		t.Errorf("kind/name json: %q", out)
	}

	// Several names: the failures are reported, the rest deleted.
	cli(t, srv, "apply", "-f", modelFile(t, "m.yaml", strings.Replace(modelYAML, "fraud-detector", "churn", 1)))
	r := runCLI(t, nil, "--server", srv, "delete", "model", "nope", "churn")
	if r.code != 1 || r.out != "model.nimbus.dev/churn deleted\n" ||
		r.err != "Error: delete model.nimbus.dev/nope: model \"nope\" not found\n" {
		t.Errorf("partial: exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
	}

	// By file: all or nothing.
	file := modelFile(t, "both.yaml", modelYAML+"---\n"+serviceYAML)
	r = runCLI(t, nil, "--server", srv, "delete", "-f", file)
	if r.code != 1 || r.err != "inferenceservice/fraud: not found\nError: delete refused: 1 problem; nothing was changed\n" {
		t.Errorf("missing by file: exit %d\nstderr: %s", r.code, r.err)
	}
	if _, ok := f.objs[objKey(spec.KindModel, "default", "fraud-detector")]; !ok {
		t.Error("a refused delete deleted the model")
	}
	cli(t, srv, "apply", "-f", file)
	if out := cli(t, srv, "delete", "-f", file); out != "model.nimbus.dev/fraud-detector deleted\ninferenceservice.nimbus.dev/fraud deleted\n" {
		t.Errorf("by file: %q", out)
	}
	if len(f.objs) != 0 {
		t.Errorf("left: %v", f.objs)
	}
	for _, s := range f.sources {
		if s != "cli" {
			t.Errorf("change source %q", s)
		}
	}

	for name, args := range map[string][]string{
		"nothing":   {"delete"},
		"kind only": {"delete", "isvc"},
		"both":      {"delete", "isvc", "x", "-f", file},
	} {
		if r := runCLI(t, nil, append([]string{"--server", srv}, args...)...); r.code != 2 {
			t.Errorf("%s: exit %d\nstderr: %s", name, r.code, r.err)
		}
	}
}

func TestDescribe(t *testing.T) {
	f, srv := servedFixture(t)
	for i, e := range []audit.Event{
		{Action: "create", Kind: spec.KindInferenceService, Namespace: "default", Name: "fraud", Generation: 1, Summary: "created"},
		{Action: "update", Kind: spec.KindModel, Namespace: "default", Name: "fraud", Generation: 2, Summary: "another kind"},
		{Action: "update", Kind: spec.KindInferenceService, Namespace: "retail", Name: "fraud", Generation: 2, Summary: "another namespace"},
	} {
		e.ID, e.Time, e.Actor, e.Source = int64(i+1), time.Date(2025, 1, 2, 3, 4, 5+i, 0, time.UTC), "local", "cli"
		f.events = append(f.events, e)
	}
	for i := range 11 {
		f.events = append(f.events, audit.Event{ID: int64(4 + i), Time: time.Date(2025, 1, 3, 0, i, 0, 0, time.UTC), Actor: "ci@example.com",
			Source: "api", Action: "update", Kind: spec.KindInferenceService, Namespace: "default", Name: "fraud",
			Generation: int64(2 + i), Summary: fmt.Sprintf("traffic change %d", i)})
	}

	out := cli(t, srv, "describe", "isvc", "fraud")
	want := `Name:         fraud
Namespace:    default
Kind:         InferenceService
Labels:       -
Annotations:  -
Created:      ` + formatTime(*f.objs[objKey(spec.KindInferenceService, "default", "fraud")].GetMeta().CreationTimestamp) + `
Generation:   3 (observed 2)
URL:          http://127.0.0.1:8080/v2/models/fraud
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
  TYPE         STATUS  REASON         MESSAGE
  Ready        True    Serving        -
  Progressing  True    NewGeneration  generation 3 is being rolled out

Events:
  TIME                  ACTOR           SOURCE  ACTION  SUMMARY
`
	for i := 1; i <= 10; i++ {
		want += fmt.Sprintf("  2025-01-03T00:%02d:00Z  ci@example.com  api     update  traffic change %d\n", i, i)
	}
	if out != want {
		t.Errorf("describe isvc:\n%s\nwant:\n%s", out, want)
	}
	// The events were asked for this resource, in pages from the start.
	if q := f.queries[0]; q != "kind=InferenceService&limit=1000&name=fraud" {
		t.Errorf("events query %q", q)
	}

	out = cli(t, srv, "describe", "model.nimbus.dev/fraud-detector")
	for _, want := range []string{
		"Labels:       team=payments\n",
		"Aliases:      challenger=4,champion=3\n",
		"Serving:      - (not managed by apply)\n",
		"Generation:   2 (observed 2)\n",
		"  VERSION  FORMAT  SHA256        ALIASES     SOURCE\n",
		"  3        onnx    333333333333  champion    file:///models/fraud-v3.onnx\n",
		"  4        onnx    444444444444  challenger  file:///models/fraud-v4.onnx\n",
		"  Ready  True    Loaded  -\n",
		"Events:  <none>\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe model lacks %q:\n%s", want, out)
		}
	}

	out = cli(t, srv, "describe", "isvc", "churn", "-n", "retail")
	for _, want := range []string{"  churn   100     -        -         -      -       -\n", "Shadow:  <none>\n", "Conditions:  <none>\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe unserved lacks %q:\n%s", want, out)
		}
	}

	var d struct {
		Resource spec.InferenceService
		Events   []audit.Event
	}
	if err := json.Unmarshal([]byte(cli(t, srv, "describe", "isvc", "fraud", "-o", "json")), &d); err != nil ||
		d.Resource.Metadata.Name != "fraud" || len(d.Events) != 10 || d.Events[9].Summary != "traffic change 10" {
		t.Errorf("json: %v %+v", err, d)
	}
	if r := runCLI(t, nil, "--server", srv, "describe", "isvc"); r.code != 2 {
		t.Errorf("no name: exit %d %s", r.code, r.err)
	}
	if r := runCLI(t, nil, "--server", srv, "describe", "isvc", "nope"); r.code != 1 || !strings.Contains(r.err, `inferenceservice "nope" not found`) {
		t.Errorf("missing: exit %d %s", r.code, r.err)
	}
}

func TestEvents(t *testing.T) {
	f, srv := newFakeResources(t)
	cli(t, srv, "apply", "-f", modelFile(t, "svc.yaml", serviceYAML))
	cli(t, srv, "apply", "-f", modelFile(t, "m.yaml", modelYAML), "-n", "payments")
	cli(t, srv, "delete", "isvc", "fraud")
	at := func(i int) string { return formatTime(f.now.Add(time.Duration(i) * time.Minute)) }

	want := "TIME                  ID  ACTOR  SOURCE  ACTION  KIND              NAMESPACE/NAME  GEN  SUMMARY\n" +
		at(0) + "  1   local  cli     create  InferenceService  default/fraud   1    create fraud\n" +
		at(2) + "  3   local  cli     delete  InferenceService  default/fraud   -    delete fraud\n"
	if out := cli(t, srv, "events"); out != want {
		t.Errorf("events:\n%s\nwant:\n%s", out, want)
	}
	tests := []struct {
		name   string
		args   []string
		ids    []int64
		query  string
		header bool
	}{
		{"all namespaces", []string{"-A"}, []int64{1, 2, 3}, "limit=1000", true},
		{"kind", []string{"-A", "--kind", "models"}, []int64{2}, "kind=Model&limit=1000", true},
		{"name", []string{"--name", "fraud", "--kind", "isvc"}, []int64{1, 3}, "kind=InferenceService&limit=1000&name=fraud", true},
		{"namespace", []string{"-n", "payments"}, []int64{2}, "limit=1000", true},
		{"latest", []string{"-A", "--limit", "2"}, []int64{2, 3}, "limit=1000", true},
		{"after", []string{"-A", "--after", "1", "--limit", "1"}, []int64{2}, "after=1&limit=1", true},
		{"other kind", []string{"-A", "--kind", "Trigger"}, nil, "kind=Trigger&limit=1000", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []audit.Event
			if err := json.Unmarshal([]byte(cli(t, srv, append([]string{"events", "-o", "json"}, tt.args...)...)), &got); err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if !slices.Equal(ids, tt.ids) {
				t.Errorf("ids = %v, want %v", ids, tt.ids)
			}
			if q := f.queries[len(f.queries)-1]; q != tt.query {
				t.Errorf("query = %q, want %q", q, tt.query)
			}
			r := runCLI(t, nil, append([]string{"--server", srv, "events"}, tt.args...)...)
			if strings.HasPrefix(r.out, "TIME") != tt.header || (!tt.header && r.err != "No events found.\n") {
				t.Errorf("table: %q, stderr %q", r.out, r.err)
			}
		})
	}

	since := f.now.Add(90 * time.Second).Format(time.RFC3339)
	if out := cli(t, srv, "events", "-A", "--since", since, "-o", "json"); !strings.Contains(out, `"id": 3`) || strings.Contains(out, `"id": 2`) {
		t.Errorf("since: %s", out)
	}
	if out := cli(t, srv, "events", "-A", "--since", "1h"); out != "" {
		t.Errorf("since 1h (events are 3h old): %q", out)
	}

	out := cli(t, srv, "events", "--diff")
	want = "event 1  " + at(0) + "  local via cli  create InferenceService default/fraud generation 1\n" +
		"    create fraud\n+" + specJSON(mustDecode(t, serviceYAML)) + "\n\n" +
		"event 3  " + at(2) + "  local via cli  delete InferenceService default/fraud\n    delete fraud\n"
	if out != want {
		t.Errorf("--diff:\n%s\nwant:\n%s", out, want)
	}

	for name, args := range map[string][]string{
		"bad limit": {"events", "--limit", "5000"},
		"bad since": {"events", "--since", "yesterday"},
		"argument":  {"events", "fraud"},
	} {
		if r := runCLI(t, nil, append([]string{"--server", srv}, args...)...); r.code != 2 {
			t.Errorf("%s: exit %d\nstderr: %s", name, r.code, r.err)
		}
	}
}

func mustDecode(t *testing.T, doc string) spec.Object {
	t.Helper()
	objs, errs := decodeDocs(client.ApplyFile{Name: "x", Content: doc}, "default")
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatalf("decode: %v", errs)
	}
	return objs[0]
}

// lastEvents pages through the log and keeps the latest.
func TestLastEvents(t *testing.T) {
	f, srv := newFakeResources(t)
	for i := range 2500 {
		f.events = append(f.events, audit.Event{ID: int64(i + 1), Action: "update"})
	}
	got, err := lastEvents(context.Background(), client.New(srv), audit.Query{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != 2498 || got[2].ID != 2500 {
		t.Errorf("got %+v", got)
	}
	if want := []string{"limit=1000", "after=1000&limit=1000", "after=2000&limit=1000"}; !slices.Equal(f.queries, want) {
		t.Errorf("queries = %q", f.queries)
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
