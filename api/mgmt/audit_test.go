package mgmt_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
)

const fraudPath = "/api/v1/namespaces/default/models/fraud"

// imperative is one management call that changes something, with the event it
// must leave.
type imperative struct {
	method, path, body string
	action, kind, name string
	summary            string
	diffHas            string
}

func blobSHA(content string) string {
	h := sha256.Sum256([]byte(content))
	return hex.EncodeToString(h[:])
}

func events(t *testing.T, a *realAPI) []audit.Event {
	t.Helper()
	all, err := a.store.ListEvents(context.Background(), audit.Query{Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var evs []audit.Event
	for _, e := range all {
		if e.Kind != "Token" { // the harness's bootstrap token
			evs = append(evs, e)
		}
	}
	return evs
}

// TestImperativeChangesAreAudited: every imperative change, blob uploads
// included (issue 10, defect 7: they were not audited), records one event
// naming the caller; a refused call records none.
func TestImperativeChangesAreAudited(t *testing.T) {
	a := newRealAPI(t)
	hdr := map[string]string{"Authorization": "Bearer " + a.token, "Nimbus-Change-Source": "cli"}
	sha := blobSHA("model bytes")
	// A resumable upload, finished below.
	rec := do(a.h, "POST", "/api/v1/namespaces/default/blobs/uploads", "", hdr)
	var up struct{ ID string }
	if rec.Code != 202 || json.Unmarshal(rec.Body.Bytes(), &up) != nil {
		t.Fatalf("start upload: %d %s", rec.Code, rec.Body)
	}
	if rec := do(a.h, "PATCH", "/api/v1/namespaces/default/blobs/uploads/"+up.ID, "chunked bytes", map[string]string{"Upload-Offset": "0"}); rec.Code != 202 {
		t.Fatalf("chunk: %d %s", rec.Code, rec.Body)
	}
	calls := []imperative{
		{"POST", "/api/v1/namespaces/default/blobs", "model bytes", "create", "Blob", sha, "upload of 11 bytes", ""},
		{"PUT", "/api/v1/namespaces/default/blobs/uploads/" + up.ID + "?sha256=" + blobSHA("chunked bytes"), "",
			"create", "Blob", blobSHA("chunked bytes"), "resumable upload " + up.ID + " of 13 bytes", ""},
		{"POST", fraudPath + "/versions", `{"sha256":"` + sha + `","aliases":["champion"]}`, "create", "Model", "fraud", "create version", sha},
		{"PUT", fraudPath + "/aliases/challenger", `{"version":1}`, "update", "Model", "fraud", "set alias challenger", `{"version":1}`},
		{"PATCH", fraudPath, `{"description":"d"}`, "update", "Model", "fraud", "update description and labels", `"description":"d"`},
		{"PUT", fraudPath + "/serving", `{"threads":2}`, "update", "Model", "fraud", "set serving settings", `"threads":2`},
		{"PUT", fraudPath + "/versions/1/serving", `{"threads":1}`, "update", "Model", "fraud", "set serving settings of version 1", `"threads":1`},
		{"DELETE", fraudPath + "/versions/1/serving", "", "delete", "Model", "fraud", "clear serving settings of version 1", ""},
		{"DELETE", fraudPath + "/aliases/challenger", "", "delete", "Model", "fraud", "delete alias challenger", ""},
		{"POST", fraudPath + "/versions", `{"sha256":"` + sha + `"}`, "create", "Model", "fraud", "create version", sha},
		{"DELETE", fraudPath + "/versions/2", "", "delete", "Model", "fraud", "delete version 2", ""},
		{"DELETE", fraudPath + "?force=true", "", "delete", "Model", "fraud", "delete model (force=true)", ""},
		{"POST", "/api/v1/gc", "", "delete", "Blob", "", "collect unreferenced blobs", ""},
	}
	for i, c := range calls {
		if rec := do(a.h, c.method, c.path, c.body, hdr); rec.Code >= 300 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, rec.Code, rec.Body)
		}
		evs := events(t, a)
		if len(evs) != i+1 {
			t.Fatalf("after %s %s: %d events, want %d: %+v", c.method, c.path, len(evs), i+1, evs)
		}
		ev := evs[i]
		wantNS := "default"
		if c.path == "/api/v1/gc" {
			wantNS = ""
		}
		if ev.Action != c.action || ev.Kind != c.kind || ev.Name != c.name || ev.Namespace != wantNS ||
			ev.Summary != c.summary || !strings.Contains(ev.Diff, c.diffHas) {
			t.Errorf("%s %s recorded %+v, want %s %s %s %q (diff with %q)", c.method, c.path, ev, c.action, c.kind, c.name, c.summary, c.diffHas)
		}
		if ev.Actor != "bootstrap-admin (token/"+auth.IDOf(a.token)+")" || ev.Source != "cli" {
			t.Errorf("%s %s: actor %q, source %q", c.method, c.path, ev.Actor, ev.Source)
		}
	}
	// Refused calls change nothing and record nothing.
	for _, c := range [][3]string{
		{"DELETE", fraudPath + "/aliases/nope", ""},
		{"POST", "/api/v1/namespaces/default/models/x/versions", `{"sha256":"` + strings.Repeat("0", 64) + `"}`},
		{"POST", "/api/v1/namespaces/default/blobs?sha256=" + strings.Repeat("0", 64), "other bytes"},
	} {
		if rec := do(a.h, c[0], c[1], c[2], hdr); rec.Code < 400 {
			t.Errorf("%s %s: %d, want refused", c[0], c[1], rec.Code)
		}
	}
	if evs := events(t, a); len(evs) != len(calls) {
		t.Errorf("refused calls recorded events: %+v", evs[len(calls):])
	}
}

// appendThenFail writes the event, then reports a failure: the change and
// the event it wrote must both roll back.
type appendThenFail struct{ *sqlite.Store }

var errAuditDown = errors.New("audit log unavailable")

func (f appendThenFail) AppendEvent(ctx context.Context, e audit.Event) (audit.Event, error) {
	if _, err := f.Store.AppendEvent(ctx, e); err != nil {
		return audit.Event{}, err
	}
	return audit.Event{}, errAuditDown
}

// TestFailingAuditFailsTheChange: an imperative change whose event cannot be
// written fails (500) and changes nothing (issue 10, defect 7: events were
// written best-effort after the change, so a change could go unrecorded).
func TestFailingAuditFailsTheChange(t *testing.T) {
	a := newRealAPIWith(t, func(s *sqlite.Store) audit.Log { return appendThenFail{s} })
	ctx := context.Background()
	// Set up without the audit log in the way.
	info, err := a.reg.PutBlob(ctx, strings.NewReader("model bytes"), "")
	if err != nil {
		t.Fatal(err)
	}
	setup := registry.WithoutAudit(ctx)
	if _, err := a.reg.CreateVersion(setup, registry.CreateVersionRequest{Model: "fraud", SHA256: info.SHA256, Aliases: []string{"champion"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.reg.CreateVersion(setup, registry.CreateVersionRequest{Model: "fraud", SHA256: info.SHA256}); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		t.Helper()
		m, err := a.reg.GetModel(ctx, "default", "fraud")
		if err != nil {
			t.Fatal(err)
		}
		vs, err := a.reg.ListVersions(ctx, "default", "fraud")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal([]any{m, vs})
		return string(b)
	}
	want := state()
	for _, c := range [][3]string{
		{"POST", fraudPath + "/versions", `{"sha256":"` + info.SHA256 + `","aliases":["next"]}`},
		{"PUT", fraudPath + "/aliases/challenger", `{"version":2}`},
		{"DELETE", fraudPath + "/aliases/champion", ""},
		{"PATCH", fraudPath, `{"description":"d","labels":{"a":"b"}}`},
		{"PUT", fraudPath + "/serving", `{"threads":2}`},
		{"PUT", fraudPath + "/versions/2/serving", `{"threads":1}`},
		{"DELETE", fraudPath + "/versions/2", ""},
		{"DELETE", fraudPath + "?force=true", ""},
	} {
		rec := do(a.h, c[0], c[1], c[2], nil)
		if rec.Code != 500 {
			t.Errorf("%s %s with a failing audit log: %d %s, want 500", c[0], c[1], rec.Code, rec.Body)
		}
		if got := state(); got != want {
			t.Fatalf("%s %s changed the model although its event failed:\n%s\nwant:\n%s", c[0], c[1], got, want)
		}
	}
	if evs := events(t, a); len(evs) != 0 {
		t.Errorf("events left by failed changes: %+v", evs)
	}
	// Blob files are not transactional: the upload fails, the bytes are left to GC.
	if rec := do(a.h, "POST", "/api/v1/namespaces/default/blobs", "new bytes", nil); rec.Code != 500 {
		t.Errorf("blob upload with a failing audit log: %d %s", rec.Code, rec.Body)
	}
}
