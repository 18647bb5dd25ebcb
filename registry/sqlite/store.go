// Package sqlite is the registry's metadata Store on an embedded SQLite database
// (modernc.org/sqlite, no cgo): the default for a single node. The schema is
// versioned by embedded migrations and written in portable SQL so a PostgreSQL
// store can share it; registry/storetest holds the behaviour both must show.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store implements registry.Store on SQLite.
//
// Writes go through one connection whose transactions begin IMMEDIATE: writers
// queue in database/sql instead of racing for SQLite's lock, and a transaction
// never upgrades a read lock to a write lock, which is what deadlocks (SQLITE_BUSY)
// deferred transactions under concurrency. Other processes on the same file wait
// up to busy_timeout. Reads use a separate pool and, in WAL mode, never wait for
// the writer.
type Store struct {
	w *sql.DB // exactly one connection; every write transaction
	r *sql.DB // read-only pool
}

var _ registry.Store = (*Store)(nil)

const busyTimeoutMS = 5000

// Open opens (creating if needed) the database at path and migrates it to the
// latest schema. A database written by a newer nimbus is refused (FailedPrecondition).
func Open(ctx context.Context, path string) (*Store, error) {
	w, err := openWriter(path)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, w, 0); err != nil {
		w.Close()
		return nil, fmt.Errorf("open registry database %s: %w", path, err)
	}
	r, err := openReader(path)
	if err != nil {
		w.Close()
		return nil, err
	}
	return &Store{w: w, r: r}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

func checkPath(path string) error {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		return errs.New(errs.InvalidArgument, "registry database path %q: must be a plain file path without '?' or '#'", path)
	}
	return nil
}

// openWriter opens the single write connection. synchronous=FULL makes every
// committed transaction durable: a version must not vanish after a push returned.
func openWriter(path string) (*sql.DB, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	db, err := openDB(path, "_journal_mode=WAL&_synchronous=FULL&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

func openReader(path string) (*sql.DB, error) {
	db, err := openDB(path, "_query_only=1")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	return db, nil
}

// openDB opens path with the options every connection needs plus extra.
func openDB(path, extra string) (*sql.DB, error) {
	dsn := fmt.Sprintf("%s?_busy_timeout=%d&_foreign_keys=1&%s", path, busyTimeoutMS, extra)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open registry database %s: %w", path, err)
	}
	return db, nil
}

// txKey keys the transaction an Atomic call puts in its ctx.
type txKey struct{}

// txState is one Atomic transaction as seen at one nesting depth: every call
// whose ctx carries it runs on tx, inside a savepoint named after depth.
type txState struct {
	s     *Store
	tx    *sql.Tx
	depth int
}

// txOf returns the transaction of this store that ctx carries, or nil.
func (s *Store) txOf(ctx context.Context) *txState {
	if st, ok := ctx.Value(txKey{}).(*txState); ok && st.s == s {
		return st
	}
	return nil
}

// Atomic runs fn in one immediate write transaction: every call of this store
// made with the ctx fn receives, registry metadata, resources and audit events
// alike, runs on that transaction, so they commit together or not at all. A
// call inside it (and a nested Atomic) runs in a savepoint: when it fails, what
// it wrote is undone and the rest of the transaction stands. The writer has one
// connection, so transactions run one at a time (serializable) and a write made
// with another ctx waits until this one ends.
func (s *Store) Atomic(ctx context.Context, fn func(ctx context.Context) error) error {
	if st := s.txOf(ctx); st != nil {
		inner := &txState{s: s, tx: st.tx, depth: st.depth + 1}
		return inner.savepoint(ctx, func() error { return fn(context.WithValue(ctx, txKey{}, inner)) })
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: atomic: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit; undoes everything on error or panic
	if err := fn(context.WithValue(ctx, txKey{}, &txState{s: s, tx: tx})); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: atomic: commit: %w", err)
	}
	return nil
}

// savepoint runs fn inside SAVEPOINT sp<depth>: fn's writes are released into
// the transaction on success and rolled back on error (SQL written to run on
// PostgreSQL too, where a failed statement would otherwise poison the
// transaction). A panic in fn rolls them back too before it goes on: a caller
// that recovers it must not commit half of what fn did, nor find the
// savepoint still open.
func (st *txState) savepoint(ctx context.Context, fn func() error) error {
	name := fmt.Sprintf("sp%d", st.depth)
	if _, err := st.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", err)
	}
	returned := false
	defer func() {
		if !returned {
			_ = st.undo(ctx, name) // the panic is what the caller hears about
		}
	}()
	err := fn()
	returned = true
	if err != nil {
		if undoErr := st.undo(ctx, name); undoErr != nil {
			return errors.Join(err, undoErr)
		}
		return err
	}
	if _, err := st.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name); err != nil {
		return fmt.Errorf("sqlite: release savepoint: %w", err)
	}
	return nil
}

// undo rolls back what was written since savepoint name, and closes it.
func (st *txState) undo(ctx context.Context, name string) error {
	if _, err := st.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+name); err != nil {
		return fmt.Errorf("sqlite: roll back to savepoint: %w", err)
	}
	if _, err := st.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name); err != nil {
		return fmt.Errorf("sqlite: release savepoint: %w", err)
	}
	return nil
}

// write runs fn in an immediate transaction on the writer connection, or in a
// savepoint of the Atomic transaction ctx carries. fn must use tx only: the
// writer has one connection, so s.w inside fn would wait forever.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if st := s.txOf(ctx); st != nil {
		inner := &txState{s: s, tx: st.tx, depth: st.depth + 1}
		return inner.savepoint(ctx, func() error {
			if err := fn(st.tx); err != nil {
				return wrapOp(op, err)
			}
			return nil
		})
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", op, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if err := fn(tx); err != nil {
		return wrapOp(op, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: commit: %w", op, err)
	}
	return nil
}

// read runs fn in a read transaction, so multi-query reads see one snapshot;
// inside an Atomic transaction it reads that transaction, its own writes included.
func (s *Store) read(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if st := s.txOf(ctx); st != nil {
		if err := fn(st.tx); err != nil {
			return wrapOp(op, err)
		}
		return nil
	}
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: begin: %w", op, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	if err := fn(tx); err != nil {
		return wrapOp(op, err)
	}
	return nil
}

// wrapOp prefixes unclassified errors; classified ones carry their own user message.
func wrapOp(op string, err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

func errModelNotFound(ns, name string) error {
	return errs.New(errs.NotFound, "model %s not found in namespace %s", name, ns)
}

func errVersionNotFound(name string, v int64) error {
	return errs.New(errs.NotFound, "version %d of model %s not found", v, name)
}

func checkKey(ns, name string) error {
	if ns == "" || name == "" {
		return errs.New(errs.InvalidArgument, "namespace and model name must not be empty")
	}
	return nil
}

// modelExists reports whether the model row exists.
func modelExists(ctx context.Context, tx *sql.Tx, ns, name string) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM models WHERE namespace = ? AND name = ?`, ns, name).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// versionMissing returns the NotFound error for a version lookup that found nothing,
// naming the model instead when the model itself is missing.
func versionMissing(ctx context.Context, tx *sql.Tx, ns, name string, v int64) error {
	ok, err := modelExists(ctx, tx, ns, name)
	if err != nil {
		return err
	}
	if !ok {
		return errModelNotFound(ns, name)
	}
	return errVersionNotFound(name, v)
}

// CreateVersion records v, creating the model row if needed. Version 0 takes
// latest_version+1; an explicit number must be above every number ever assigned
// (numbers are never reused, so a client holding "fraud:3" never silently gets a
// different artifact): an existing number is AlreadyExists, a lower one Conflict.
func (s *Store) CreateVersion(ctx context.Context, v registry.Version) (registry.Version, error) {
	if err := checkKey(v.Namespace, v.Model); err != nil {
		return registry.Version{}, err
	}
	if v.Version < 0 {
		return registry.Version{}, errs.New(errs.InvalidArgument, "version %d: must not be negative", v.Version)
	}
	if v.Version > registry.MaxVersion {
		return registry.Version{}, registry.ValidateVersion(v.Version)
	}
	if v.SHA256 == "" || v.Format == "" {
		return registry.Version{}, errs.New(errs.InvalidArgument, "version needs a format and a sha256")
	}
	now := time.Now()
	if v.CreatedAt.IsZero() {
		v.CreatedAt = now
	}
	v.CreatedAt = fromNanos(v.CreatedAt.UnixNano())
	sig, err := json.Marshal(v.Signature)
	if err != nil {
		return registry.Version{}, fmt.Errorf("sqlite: create version: encode signature: %w", err)
	}
	lineage, err := encodeMap(v.Lineage)
	if err != nil {
		return registry.Version{}, err
	}
	serving, err := encodeServing(v.Serving)
	if err != nil {
		return registry.Version{}, err
	}
	err = s.write(ctx, "create version", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO models (namespace, name, created_at, updated_at)
VALUES (?, ?, ?, ?) ON CONFLICT (namespace, name) DO NOTHING`, v.Namespace, v.Model, now.UnixNano(), now.UnixNano()); err != nil {
			return err
		}
		if v.Version == 0 {
			// One statement reads and bumps the counter, so this stays atomic on
			// PostgreSQL under READ COMMITTED too (the UPDATE locks the row). It
			// stops at MaxVersion: the counter never overflows (in SQLite an
			// INTEGER past 2^63-1 silently becomes a REAL).
			err := tx.QueryRowContext(ctx, `UPDATE models SET latest_version = latest_version + 1, updated_at = ?
WHERE namespace = ? AND name = ? AND latest_version < ? RETURNING latest_version`,
				now.UnixNano(), v.Namespace, v.Model, registry.MaxVersion).Scan(&v.Version)
			if errors.Is(err, sql.ErrNoRows) {
				return registry.VersionsExhausted(v.Model)
			}
			if err != nil {
				return err
			}
		} else {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM versions WHERE namespace = ? AND model = ? AND version = ?`,
				v.Namespace, v.Model, v.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return errs.New(errs.AlreadyExists, "version %d of model %s already exists", v.Version, v.Model)
			}
			res, err := tx.ExecContext(ctx, `UPDATE models SET latest_version = ?, updated_at = ?
WHERE namespace = ? AND name = ? AND latest_version < ?`, v.Version, now.UnixNano(), v.Namespace, v.Model, v.Version)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				var latest int64
				if err := tx.QueryRowContext(ctx, `SELECT latest_version FROM models WHERE namespace = ? AND name = ?`,
					v.Namespace, v.Model).Scan(&latest); err != nil {
					return err
				}
				return errs.New(errs.Conflict,
					"version %d of model %s: numbers must be above the latest version ever assigned (%d); version numbers are never reused",
					v.Version, v.Model, latest)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO versions (namespace, model, version, format, sha256, size, signature,
description, source, lineage, serving, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			v.Namespace, v.Model, v.Version, v.Format, v.SHA256, v.Size, string(sig),
			v.Description, v.Source, lineage, serving, v.CreatedAt.UnixNano())
		return err
	})
	if err != nil {
		return registry.Version{}, err
	}
	return v, nil
}

const versionCols = `namespace, model, version, format, sha256, size, signature, description, source, lineage, serving, created_at`

type scanner interface{ Scan(dest ...any) error }

func scanVersion(row scanner) (registry.Version, error) {
	var (
		v            registry.Version
		sig, lineage string
		serving      sql.NullString
		created      int64
	)
	if err := row.Scan(&v.Namespace, &v.Model, &v.Version, &v.Format, &v.SHA256, &v.Size, &sig,
		&v.Description, &v.Source, &lineage, &serving, &created); err != nil {
		return registry.Version{}, err
	}
	if err := json.Unmarshal([]byte(sig), &v.Signature); err != nil {
		return registry.Version{}, fmt.Errorf("decode signature of %s version %d: %w", v.Model, v.Version, err)
	}
	var err error
	if v.Lineage, err = decodeMap(lineage); err != nil {
		return registry.Version{}, fmt.Errorf("decode lineage of %s version %d: %w", v.Model, v.Version, err)
	}
	if serving.Valid {
		v.Serving = new(registry.ServingConfig)
		if err := json.Unmarshal([]byte(serving.String), v.Serving); err != nil {
			return registry.Version{}, fmt.Errorf("decode serving of %s version %d: %w", v.Model, v.Version, err)
		}
	}
	v.CreatedAt = fromNanos(created)
	return v, nil
}

// GetVersion returns one version.
func (s *Store) GetVersion(ctx context.Context, ns, model string, version int64) (registry.Version, error) {
	var v registry.Version
	err := s.read(ctx, "get version", func(tx *sql.Tx) error {
		var err error
		v, err = scanVersion(tx.QueryRowContext(ctx, `SELECT `+versionCols+` FROM versions
WHERE namespace = ? AND model = ? AND version = ?`, ns, model, version))
		if errors.Is(err, sql.ErrNoRows) {
			return versionMissing(ctx, tx, ns, model, version)
		}
		return err
	})
	return v, err
}

// ListVersions returns a model's versions, oldest first (NotFound if the model is missing).
func (s *Store) ListVersions(ctx context.Context, ns, model string) ([]registry.Version, error) {
	var out []registry.Version
	err := s.read(ctx, "list versions", func(tx *sql.Tx) error {
		ok, err := modelExists(ctx, tx, ns, model)
		if err != nil {
			return err
		}
		if !ok {
			return errModelNotFound(ns, model)
		}
		out, err = queryAll(ctx, tx, scanVersion, `SELECT `+versionCols+` FROM versions
WHERE namespace = ? AND model = ? ORDER BY version`, ns, model)
		return err
	})
	return out, err
}

// DeleteVersion removes a version and the aliases pointing to it; without force
// an alias pointing to it refuses the delete. The check shares the transaction
// with the delete, so an alias set meanwhile is never dropped unnoticed. The
// aliases are deleted explicitly rather than by the foreign key cascade so the
// behaviour does not depend on foreign_keys being enabled.
func (s *Store) DeleteVersion(ctx context.Context, ns, model string, version int64, force bool) error {
	return s.write(ctx, "delete version", func(tx *sql.Tx) error {
		if !force {
			refs, err := queryStrings(ctx, tx, `SELECT alias FROM aliases WHERE namespace = ? AND model = ? AND (version = ? OR effective = ?)
ORDER BY alias`, ns, model, version, version)
			if err != nil {
				return err
			}
			if len(refs) > 0 {
				return registry.AliasConflict(model, version, refs)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM aliases WHERE namespace = ? AND model = ? AND version = ?`,
			ns, model, version); err != nil {
			return err
		}
		// An alias whose rollout had not moved off this version serves its
		// declared one now.
		if _, err := tx.ExecContext(ctx, `UPDATE aliases SET effective = NULL WHERE namespace = ? AND model = ? AND effective = ?`,
			ns, model, version); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM versions WHERE namespace = ? AND model = ? AND version = ?`,
			ns, model, version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return versionMissing(ctx, tx, ns, model, version)
		}
		return touchModel(ctx, tx, ns, model)
	})
}

// SetVersionServing sets or (nil) clears a version's serving override.
func (s *Store) SetVersionServing(ctx context.Context, ns, model string, version int64, sc *registry.ServingConfig) error {
	serving, err := encodeServing(sc)
	if err != nil {
		return err
	}
	return s.write(ctx, "set version serving", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE versions SET serving = ? WHERE namespace = ? AND model = ? AND version = ?`,
			serving, ns, model, version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return versionMissing(ctx, tx, ns, model, version)
		}
		return nil
	})
}

// queryAll runs q and scans every row with scan.
func queryAll[T any](ctx context.Context, tx *sql.Tx, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// queryStrings returns the single text column of every row q selects.
func queryStrings(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]string, error) {
	return queryAll(ctx, tx, func(row scanner) (string, error) {
		var s string
		err := row.Scan(&s)
		return s, err
	}, q, args...)
}

func touchModel(ctx context.Context, tx *sql.Tx, ns, name string) error {
	_, err := tx.ExecContext(ctx, `UPDATE models SET updated_at = ? WHERE namespace = ? AND name = ?`,
		time.Now().UnixNano(), ns, name)
	return err
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// encodeMap stores nil and empty maps alike as "{}".
func encodeMap(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("sqlite: encode map: %w", err)
	}
	return string(b), nil
}

// decodeMap returns nil for an empty map so values round-trip the way they were
// most likely written (omitempty).
func decodeMap(s string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

func encodeServing(sc *registry.ServingConfig) (any, error) {
	if sc == nil {
		return nil, nil
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return nil, fmt.Errorf("sqlite: encode serving: %w", err)
	}
	return string(b), nil
}
