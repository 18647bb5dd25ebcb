package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
	"github.com/nimbus-ai/nimbus/registry/storetest"
)

// -update regenerates testdata/schema1.db. Only needed if the fixture is lost: it
// must stay a database written at schema version 1, whatever the latest is.
var update = flag.Bool("update", false, "regenerate testdata fixtures")

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) registry.Store { return newStore(t) })
}

func TestOpenMigratesToLatest(t *testing.T) {
	s := newStore(t)
	defer s.Close()
	v, err := currentVersion(context.Background(), s.r)
	if err != nil {
		t.Fatal(err)
	}
	if v != SchemaVersion() || v < 2 {
		t.Errorf("schema version = %d, want %d (>= 2)", v, SchemaVersion())
	}
}

func TestOpenTwiceIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	ctx := context.Background()
	for i := range 3 {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if _, err := s.CreateVersion(ctx, registry.Version{Namespace: "default", Model: "m", Format: "onnx", SHA256: storetest.Digest(i)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	newer := SchemaVersion() + 1 // whatever the latest migration is
	if _, err := s.w.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (?, 0)`, newer); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(ctx, path)
	want := fmt.Sprintf("data dir schema version %d is newer than this nimbus supports (%d); upgrade nimbus", newer, SchemaVersion())
	if !errors.Is(err, errs.ErrFailedPrecondition) || !strings.Contains(err.Error(), want) {
		t.Errorf("Open = %v, want FailedPrecondition containing %q", err, want)
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, p := range []string{"", "x.db?mode=ro", "file:x.db", ":memory:"} {
		if _, err := Open(context.Background(), p); !errors.Is(err, errs.ErrInvalid) {
			t.Errorf("Open(%q) = %v, want InvalidArgument", p, err)
		}
	}
}

// TestUpgradeFromSchema1 opens a database written by the first schema and checks
// it is migrated with its data intact.
func TestUpgradeFromSchema1(t *testing.T) {
	fixture := filepath.Join("testdata", "schema1.db")
	if *update {
		writeSchema1Fixture(t, fixture)
	}
	path := filepath.Join(t.TempDir(), "registry.db")
	copyFile(t, fixture, path)

	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(schema 1 database): %v", err)
	}
	defer s.Close()
	if v, err := currentVersion(ctx, s.r); err != nil || v != SchemaVersion() {
		t.Errorf("schema version after upgrade = %d, %v; want %d", v, err, SchemaVersion())
	}
	m, err := s.GetModel(ctx, "default", "fraud")
	if err != nil {
		t.Fatalf("GetModel: %v", err)
	}
	if m.Description != "fixture model" || m.Labels["team"] != "risk" || m.LatestVersion != 1 || m.Aliases["champion"] != 1 {
		t.Errorf("model after upgrade = %+v", m)
	}
	v, err := s.GetVersion(ctx, "default", "fraud", 1)
	if err != nil {
		t.Fatalf("GetVersion: %v", err)
	}
	if v.SHA256 != storetest.Digest(0) || v.Size != 1234 || v.Signature.Inputs[0].Name != "x" || v.Lineage["run"] != "r1" {
		t.Errorf("version after upgrade = %+v", v)
	}
	// The upgraded database keeps working: the counter continues.
	nv, err := s.CreateVersion(ctx, registry.Version{Namespace: "default", Model: "fraud", Format: "onnx", SHA256: storetest.Digest(1)})
	if err != nil || nv.Version != 2 {
		t.Errorf("CreateVersion after upgrade = %d, %v; want 2", nv.Version, err)
	}
	if n, err := s.BlobRefs(ctx, storetest.Digest(0)); err != nil || n != 1 {
		t.Errorf("BlobRefs = %d, %v", n, err)
	}
}

// writeSchema1Fixture writes a database at schema version 1 with raw SQL (the
// Store's queries may assume later schemas) in rollback-journal mode so it is one file.
func writeSchema1Fixture(t *testing.T, path string) {
	t.Helper()
	os.Remove(path)
	db, err := sql.Open("sqlite", path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := migrate(ctx, db, 1); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO models (namespace, name, description, labels, serving, latest_version, created_at, updated_at)
VALUES ('default', 'fraud', 'fixture model', '{"team":"risk"}', '{"threads":2}', 1, ?, ?)`, []any{created, created}},
		{`INSERT INTO versions (namespace, model, version, format, sha256, size, signature, description, source, lineage, serving, created_at)
VALUES ('default', 'fraud', 1, 'onnx', ?, 1234,
'{"inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[{"name":"y","datatype":"INT64","shape":[-1]}]}',
'', 'push', '{"run":"r1"}', NULL, ?)`, []any{storetest.Digest(0), created}},
		{`INSERT INTO aliases (namespace, model, alias, version) VALUES ('default', 'fraud', 'champion', 1)`, nil},
	} {
		if _, err := db.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := currentVersion(ctx, db); err != nil || v != 1 {
		t.Fatalf("fixture schema version = %d, %v", v, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatalf("open fixture (regenerate with go test -run TestUpgradeFromSchema1 -update): %v", err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMigrationsNumbered(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 {
		t.Fatalf("%d migrations, want >= 2", len(ms))
	}
}

const bigN = 10_000

// seedMany inserts n models in one transaction: the store API would take one
// fsynced transaction per model, and the point here is reading, not writing.
func seedMany(tb testing.TB, s *Store, n int) {
	tb.Helper()
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO models (namespace, name, latest_version, created_at, updated_at) VALUES (?, ?, 0, 0, 0)`)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		for _, ns := range []string{"default", "other"} {
			if _, err := stmt.ExecContext(ctx, ns, fmt.Sprintf("model-%05d", i)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

func TestListModelsLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 20,000 rows")
	}
	s := newStore(t)
	defer s.Close()
	seedMany(t, s, bigN)
	ctx := context.Background()

	p, err := s.ListModels(ctx, "default", registry.ListOptions{Limit: 100, After: "model-05000"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 100 || p.Items[0].Name != "model-05001" || p.Items[99].Name != "model-05100" || p.Next != "model-05100" {
		t.Errorf("page = %d items %s..%s next %q", len(p.Items), p.Items[0].Name, p.Items[len(p.Items)-1].Name, p.Next)
	}

	// The query is an index range scan, not a table scan.
	rows, err := s.r.QueryContext(ctx, `EXPLAIN QUERY PLAN SELECT `+modelCols+` FROM models
WHERE namespace = ? AND name > ? ORDER BY name LIMIT ?`, "default", "model-05000", 101)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "; "); !strings.Contains(p, "SEARCH models USING INDEX") || strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("query plan %q: want an index search without sorting", p)
	}

	// Walking all pages sees each model exactly once.
	seen, opt := 0, registry.ListOptions{Limit: registry.MaxPageSize}
	for {
		p, err := s.ListModels(ctx, "default", opt)
		if err != nil {
			t.Fatal(err)
		}
		seen += len(p.Items)
		if p.Next == "" {
			break
		}
		opt.After = p.Next
	}
	if seen != bigN {
		t.Errorf("walked %d models, want %d", seen, bigN)
	}
}

func BenchmarkListModelsPage(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "registry.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	seedMany(b, s, bigN)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		after := fmt.Sprintf("model-%05d", (i*137)%(bigN-100))
		p, err := s.ListModels(ctx, "default", registry.ListOptions{Limit: 100, After: after})
		if err != nil || len(p.Items) != 100 {
			b.Fatalf("ListModels: %d items, %v", len(p.Items), err)
		}
	}
}
