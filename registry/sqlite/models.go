package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/registry"
)

const modelCols = `namespace, name, description, labels, serving, latest_version, created_at, updated_at`

func scanModel(row scanner) (registry.Model, error) {
	var (
		m                registry.Model
		labels, serving  string
		created, updated int64
	)
	if err := row.Scan(&m.Namespace, &m.Name, &m.Description, &labels, &serving, &m.LatestVersion, &created, &updated); err != nil {
		return registry.Model{}, err
	}
	var err error
	if m.Labels, err = decodeMap(labels); err != nil {
		return registry.Model{}, fmt.Errorf("decode labels of model %s: %w", m.Name, err)
	}
	if err := json.Unmarshal([]byte(serving), &m.Serving); err != nil {
		return registry.Model{}, fmt.Errorf("decode serving of model %s: %w", m.Name, err)
	}
	m.CreatedAt, m.UpdatedAt = fromNanos(created), fromNanos(updated)
	return m, nil
}

// GetModel returns a model with its aliases.
func (s *Store) GetModel(ctx context.Context, ns, name string) (registry.Model, error) {
	var m registry.Model
	err := s.read(ctx, "get model", func(tx *sql.Tx) error {
		var err error
		m, err = getModel(ctx, tx, ns, name)
		return err
	})
	return m, err
}

func getModel(ctx context.Context, tx *sql.Tx, ns, name string) (registry.Model, error) {
	m, err := scanModel(tx.QueryRowContext(ctx, `SELECT `+modelCols+` FROM models WHERE namespace = ? AND name = ?`, ns, name))
	if errors.Is(err, sql.ErrNoRows) {
		return registry.Model{}, errModelNotFound(ns, name)
	}
	if err != nil {
		return registry.Model{}, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT alias, version, effective FROM aliases WHERE namespace = ? AND model = ?`, ns, name)
	if err != nil {
		return registry.Model{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var alias string
		var v int64
		var eff sql.NullInt64
		if err := rows.Scan(&alias, &v, &eff); err != nil {
			return registry.Model{}, err
		}
		addAlias(&m, alias, v, eff)
	}
	return m, rows.Err()
}

// addAlias records one aliases row in m.
func addAlias(m *registry.Model, alias string, declared int64, effective sql.NullInt64) {
	if m.Aliases == nil {
		m.Aliases = map[string]int64{}
	}
	m.Aliases[alias] = declared
	if effective.Valid && effective.Int64 != declared {
		if m.Effective == nil {
			m.Effective = map[string]int64{}
		}
		m.Effective[alias] = effective.Int64
	}
}

// ListModels pages through a namespace's models by name. The page is one range
// scan of the (namespace, name) primary key; aliases for the whole page come from
// one more range scan, not one query per model.
func (s *Store) ListModels(ctx context.Context, ns string, opt registry.ListOptions) (registry.ModelPage, error) {
	limit := opt.Limit
	switch {
	case limit < 0:
		return registry.ModelPage{}, errs.New(errs.InvalidArgument, "limit %d: must not be negative", limit).WithField("limit")
	case limit == 0:
		limit = registry.DefaultPageSize
	case limit > registry.MaxPageSize:
		limit = registry.MaxPageSize
	}
	q := `SELECT ` + modelCols + ` FROM models WHERE namespace = ? AND name > ?`
	args := []any{ns, opt.After}
	if opt.Prefix != "" {
		// A prefix is a name range, which uses the index (LIKE would not on
		// PostgreSQL without a special operator class, and folds case in SQLite).
		q += ` AND name >= ?`
		args = append(args, opt.Prefix)
		if hi, ok := prefixEnd(opt.Prefix); ok {
			q += ` AND name < ?`
			args = append(args, hi)
		}
	}
	q += ` ORDER BY name LIMIT ?`
	args = append(args, limit+1)

	var page registry.ModelPage
	err := s.read(ctx, "list models", func(tx *sql.Tx) error {
		var err error
		if page.Items, err = queryAll(ctx, tx, scanModel, q, args...); err != nil {
			return err
		}
		if len(page.Items) > limit {
			page.Items = page.Items[:limit]
			page.Next = page.Items[limit-1].Name
		}
		if len(page.Items) == 0 {
			return nil
		}
		return fillAliases(ctx, tx, ns, page.Items)
	})
	if err != nil {
		return registry.ModelPage{}, err
	}
	if page.Items == nil {
		page.Items = []registry.Model{}
	}
	return page, nil
}

// fillAliases loads the aliases of items (sorted by name) with one range query.
func fillAliases(ctx context.Context, tx *sql.Tx, ns string, items []registry.Model) error {
	idx := make(map[string]int, len(items))
	for i, m := range items {
		idx[m.Name] = i
	}
	rows, err := tx.QueryContext(ctx, `SELECT model, alias, version, effective FROM aliases
WHERE namespace = ? AND model >= ? AND model <= ?`, ns, items[0].Name, items[len(items)-1].Name)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var model, alias string
		var v int64
		var eff sql.NullInt64
		if err := rows.Scan(&model, &alias, &v, &eff); err != nil {
			return err
		}
		i, ok := idx[model]
		if !ok {
			continue // in range but filtered out by the prefix
		}
		addAlias(&items[i], alias, v, eff)
	}
	return rows.Err()
}

// prefixEnd returns the smallest string above every string with prefix p, or false
// if there is none (p is all 0xff bytes).
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// UpdateModel changes Description, Labels and Serving of an existing model.
func (s *Store) UpdateModel(ctx context.Context, m registry.Model) (registry.Model, error) {
	labels, err := encodeMap(m.Labels)
	if err != nil {
		return registry.Model{}, err
	}
	serving, err := json.Marshal(m.Serving)
	if err != nil {
		return registry.Model{}, fmt.Errorf("sqlite: update model: encode serving: %w", err)
	}
	var out registry.Model
	err = s.write(ctx, "update model", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE models SET description = ?, labels = ?, serving = ?, updated_at = ?
WHERE namespace = ? AND name = ?`, m.Description, labels, string(serving), time.Now().UnixNano(), m.Namespace, m.Name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errModelNotFound(m.Namespace, m.Name)
		}
		out, err = getModel(ctx, tx, m.Namespace, m.Name)
		return err
	})
	return out, err
}

// DeleteModel removes a model, its versions and aliases.
func (s *Store) DeleteModel(ctx context.Context, ns, name string, force bool) error {
	return s.write(ctx, "delete model", func(tx *sql.Tx) error {
		if !force {
			refs, err := queryStrings(ctx, tx, `SELECT alias FROM aliases WHERE namespace = ? AND model = ? ORDER BY alias`, ns, name)
			if err != nil {
				return err
			}
			if len(refs) > 0 {
				return registry.ModelAliasConflict(name, refs)
			}
		}
		for _, q := range []string{
			`DELETE FROM aliases WHERE namespace = ? AND model = ?`,
			`DELETE FROM versions WHERE namespace = ? AND model = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, ns, name); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM models WHERE namespace = ? AND name = ?`, ns, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errModelNotFound(ns, name)
		}
		return nil
	})
}

// ListNamespaces returns the namespaces that hold at least one model, sorted.
func (s *Store) ListNamespaces(ctx context.Context) ([]string, error) {
	out := []string{}
	err := s.read(ctx, "list namespaces", func(tx *sql.Tx) error {
		nss, err := queryStrings(ctx, tx, `SELECT DISTINCT namespace FROM models ORDER BY namespace`)
		out = append(out, nss...)
		return err
	})
	return out, err
}

// SetAlias points alias at an existing version, moving it if it exists.
func (s *Store) SetAlias(ctx context.Context, ns, model, alias string, version int64) error {
	if alias == "" {
		return errs.New(errs.InvalidArgument, "alias must not be empty").WithField("alias")
	}
	return s.write(ctx, "set alias", func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM versions WHERE namespace = ? AND model = ? AND version = ?`,
			ns, model, version).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return versionMissing(ctx, tx, ns, model, version)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO aliases (namespace, model, alias, version) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, model, alias) DO UPDATE SET version = excluded.version, effective = NULL`, ns, model, alias, version); err != nil {
			return err
		}
		return touchModel(ctx, tx, ns, model)
	})
}

// SetAliasHeld moves alias's declared version and keeps its effective one.
func (s *Store) SetAliasHeld(ctx context.Context, ns, model, alias string, version int64) error {
	if alias == "" {
		return errs.New(errs.InvalidArgument, "alias must not be empty").WithField("alias")
	}
	return s.write(ctx, "set alias", func(tx *sql.Tx) error {
		if err := versionExists(ctx, tx, ns, model, version); err != nil {
			return err
		}
		// The effective version is what served before: the old effective
		// one, else the old declared one (read in the same statement).
		if _, err := tx.ExecContext(ctx, `INSERT INTO aliases (namespace, model, alias, version) VALUES (?, ?, ?, ?)
ON CONFLICT (namespace, model, alias) DO UPDATE SET effective = COALESCE(aliases.effective, aliases.version), version = excluded.version`,
			ns, model, alias, version); err != nil {
			return err
		}
		// Held at the declared version is no hold.
		if _, err := tx.ExecContext(ctx, `UPDATE aliases SET effective = NULL WHERE namespace = ? AND model = ? AND alias = ? AND effective = version`,
			ns, model, alias); err != nil {
			return err
		}
		return touchModel(ctx, tx, ns, model)
	})
}

// SetEffectiveAlias moves an existing alias's effective version.
func (s *Store) SetEffectiveAlias(ctx context.Context, ns, model, alias string, version int64) error {
	return s.write(ctx, "set effective alias", func(tx *sql.Tx) error {
		if err := versionExists(ctx, tx, ns, model, version); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE aliases SET effective = CASE WHEN version = ? THEN NULL ELSE ? END
WHERE namespace = ? AND model = ? AND alias = ?`, version, version, ns, model, alias)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errs.New(errs.NotFound, "model %s has no alias %q", model, alias)
		}
		return touchModel(ctx, tx, ns, model)
	})
}

// versionExists is nil when the version exists (NotFound naming what is
// missing otherwise).
func versionExists(ctx context.Context, tx *sql.Tx, ns, model string, version int64) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM versions WHERE namespace = ? AND model = ? AND version = ?`,
		ns, model, version).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return versionMissing(ctx, tx, ns, model, version)
	}
	return err
}

// DeleteAlias removes an alias (NotFound if it does not exist).
func (s *Store) DeleteAlias(ctx context.Context, ns, model, alias string) error {
	return s.write(ctx, "delete alias", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM aliases WHERE namespace = ? AND model = ? AND alias = ?`, ns, model, alias)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			ok, err := modelExists(ctx, tx, ns, model)
			if err != nil {
				return err
			}
			if !ok {
				return errModelNotFound(ns, model)
			}
			return errs.New(errs.NotFound, "alias %s of model %s not found", alias, model)
		}
		return touchModel(ctx, tx, ns, model)
	})
}

// BlobRefs counts versions, in any namespace, whose artifact is sha256.
func (s *Store) BlobRefs(ctx context.Context, sha256 string) (int, error) {
	var n int
	err := s.read(ctx, "blob refs", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM versions WHERE sha256 = ?`, sha256).Scan(&n)
	})
	return n, err
}

// ReferencedBlobs returns every sha256 some version points to.
func (s *Store) ReferencedBlobs(ctx context.Context) (map[string]struct{}, error) {
	out := map[string]struct{}{}
	err := s.read(ctx, "referenced blobs", func(tx *sql.Tx) error {
		shas, err := queryStrings(ctx, tx, `SELECT DISTINCT sha256 FROM versions`)
		for _, sha := range shas {
			out[sha] = struct{}{}
		}
		return err
	})
	return out, err
}
