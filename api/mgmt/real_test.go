package mgmt_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-ai/nimbus/api/mgmt"
	"github.com/nimbus-ai/nimbus/apply"
	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/testutil"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/sqlite"
	"github.com/nimbus-ai/nimbus/runtime"
)

// realAPI is the management handler over the real registry, resource engine
// and audit log on SQLite in a temp dir, wired as internal/system does.
type realAPI struct {
	h     http.Handler
	reg   *registry.Registry
	store *sqlite.Store
	res   *apply.Engine
	// token is the bootstrap admin token; h sends it when a request has none.
	token string
}

func newRealAPI(t *testing.T) *realAPI {
	t.Helper()
	return newRealAPIWith(t, func(s *sqlite.Store) audit.Log { return s })
}

// newRealAPIWith is newRealAPI with the audit log auditLog makes of the store.
func newRealAPIWith(t *testing.T, auditLog func(*sqlite.Store) audit.Log) *realAPI {
	t.Helper()
	store, blobs := testutil.Stores(t)
	log := slog.New(slog.DiscardHandler)
	reg := registry.New(store, blobs, map[string]runtime.Inspector{"onnx": testutil.FixedInspector{}}, log)
	events := auditLog(store)
	reg.SetAuditLog(events)
	res := apply.NewEngine(apply.Options{Registry: reg, Resources: store, Audit: events, Logger: log})
	authn := auth.New(auth.Options{Store: store, Logger: log})
	tok, err := authn.Bootstrap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	guarded := auth.NewGuard(authn).HTTP(mgmt.NewHandler(reg, mgmt.Options{Logger: log, UploadDir: t.TempDir(),
		Resources: res, Audit: events, Tokens: authn}))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		guarded.ServeHTTP(w, r)
	})
	return &realAPI{h: h, reg: reg, store: store, res: res, token: tok}
}

// push stores content and creates a version of model from it.
func (a *realAPI) push(t *testing.T, model, content string, aliases ...string) registry.Version {
	t.Helper()
	ctx := context.Background()
	info, err := a.reg.PutBlob(ctx, strings.NewReader(content), "")
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.reg.CreateVersion(ctx, registry.CreateVersionRequest{Model: model, SHA256: info.SHA256, Aliases: aliases})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestConcurrentPatchesKeepEachOther: a PATCH of the description and one of
// the labels, racing, both take effect (issue 10, defect 5: the handler read
// the model, merged and wrote it back outside any lock, so one was lost).
func TestConcurrentPatchesKeepEachOther(t *testing.T) {
	a := newRealAPI(t)
	a.push(t, "fraud", "bytes")
	const path = "/api/v1/namespaces/default/models/fraud"
	for i := range 50 {
		var wg sync.WaitGroup
		for _, body := range []string{
			fmt.Sprintf(`{"description":"d%d"}`, i),
			fmt.Sprintf(`{"labels":{"round":"%d"}}`, i),
		} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if rec := do(a.h, "PATCH", path, body, nil); rec.Code != 200 {
					t.Errorf("PATCH %s: %d %s", body, rec.Code, rec.Body)
				}
			}()
		}
		wg.Wait()
		m, err := a.reg.GetModel(context.Background(), "default", "fraud")
		if err != nil {
			t.Fatal(err)
		}
		if m.Description != fmt.Sprintf("d%d", i) || m.Labels["round"] != fmt.Sprint(i) {
			t.Fatalf("round %d: description %q, labels %v: a concurrent patch was lost", i, m.Description, m.Labels)
		}
	}
}
