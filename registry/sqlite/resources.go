package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-ai/nimbus/internal/errs"
	"github.com/nimbus-ai/nimbus/spec"
)

var _ spec.ResourceStore = (*Store)(nil)

const resourceCols = `kind, namespace, name, labels, annotations, spec, generation, resource_version, created_at, updated_at, managed_by, applied_by`

func scanResource(row scanner) (spec.StoredResource, error) {
	var (
		r                         spec.StoredResource
		labels, annotations, body string
		created, updated          int64
	)
	if err := row.Scan(&r.Kind, &r.Namespace, &r.Name, &labels, &annotations, &body,
		&r.Generation, &r.ResourceVersion, &created, &updated, &r.ManagedBy, &r.AppliedBy); err != nil {
		return spec.StoredResource{}, err
	}
	var err error
	if r.Labels, err = decodeMap(labels); err != nil {
		return spec.StoredResource{}, fmt.Errorf("decode labels of %s: %w", resourceRef(r.Kind, r.Namespace, r.Name), err)
	}
	if r.Annotations, err = decodeMap(annotations); err != nil {
		return spec.StoredResource{}, fmt.Errorf("decode annotations of %s: %w", resourceRef(r.Kind, r.Namespace, r.Name), err)
	}
	r.Spec = json.RawMessage(body)
	r.CreatedAt, r.UpdatedAt = fromNanos(created), fromNanos(updated)
	return r, nil
}

// resourceRef names a resource in messages: "Model default/fraud-detector".
func resourceRef(kind, ns, name string) string {
	return kind + " " + ns + "/" + name
}

func errResourceNotFound(kind, ns, name string) error {
	return errs.New(errs.NotFound, "%s not found", resourceRef(kind, ns, name))
}

func errResourceChanged(kind, ns, name string, expect, now int64) error {
	return errs.New(errs.Conflict, "%s was changed (resourceVersion %d, now %d); get it again and retry",
		resourceRef(kind, ns, name), expect, now)
}

func checkResourceKey(kind, ns, name string) error {
	if kind == "" || ns == "" || name == "" {
		return errs.New(errs.InvalidArgument, "resource kind, namespace and name must not be empty")
	}
	return nil
}

// GetResource returns one resource (NotFound if absent).
func (s *Store) GetResource(ctx context.Context, kind, ns, name string) (spec.StoredResource, error) {
	if err := checkResourceKey(kind, ns, name); err != nil {
		return spec.StoredResource{}, err
	}
	var r spec.StoredResource
	err := s.read(ctx, "get resource", func(tx *sql.Tx) error {
		var err error
		r, err = scanResource(tx.QueryRowContext(ctx, `SELECT `+resourceCols+` FROM resources
WHERE kind = ? AND namespace = ? AND name = ?`, kind, ns, name))
		if errors.Is(err, sql.ErrNoRows) {
			return errResourceNotFound(kind, ns, name)
		}
		return err
	})
	return r, err
}

// ListResources lists a kind's resources ordered by namespace, then name; ns ""
// lists every namespace. Both are range scans of the primary key.
func (s *Store) ListResources(ctx context.Context, kind, ns string) ([]spec.StoredResource, error) {
	if kind == "" {
		return nil, errs.New(errs.InvalidArgument, "resource kind must not be empty")
	}
	q, args := `SELECT `+resourceCols+` FROM resources WHERE kind = ? ORDER BY namespace, name`, []any{kind}
	if ns != "" {
		q, args = `SELECT `+resourceCols+` FROM resources WHERE kind = ? AND namespace = ? ORDER BY name`, []any{kind, ns}
	}
	out := []spec.StoredResource{}
	err := s.read(ctx, "list resources", func(tx *sql.Tx) error {
		rs, err := queryAll(ctx, tx, scanResource, q, args...)
		out = append(out, rs...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutResource creates (expect 0) or replaces (expect = the stored
// ResourceVersion) a resource. The version check and the write are one
// statement inside one transaction, so of several writers holding the same
// version exactly one wins and the rest get Conflict. Generation, labels,
// annotations and spec are stored as given; the store owns ResourceVersion
// (expect+1), CreatedAt (now on create, kept on replace) and UpdatedAt.
func (s *Store) PutResource(ctx context.Context, r spec.StoredResource, expect int64) (spec.StoredResource, error) {
	if err := checkResourceKey(r.Kind, r.Namespace, r.Name); err != nil {
		return spec.StoredResource{}, err
	}
	if expect < 0 {
		return spec.StoredResource{}, errs.New(errs.InvalidArgument, "%s: resourceVersion %d must not be negative",
			resourceRef(r.Kind, r.Namespace, r.Name), expect)
	}
	if len(r.Spec) == 0 {
		r.Spec = json.RawMessage("{}")
	}
	if !json.Valid(r.Spec) {
		return spec.StoredResource{}, errs.New(errs.InvalidArgument, "%s: spec is not valid JSON",
			resourceRef(r.Kind, r.Namespace, r.Name))
	}
	labels, err := encodeMap(r.Labels)
	if err != nil {
		return spec.StoredResource{}, err
	}
	annotations, err := encodeMap(r.Annotations)
	if err != nil {
		return spec.StoredResource{}, err
	}
	// Returned as GetResource would read them back.
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	if len(r.Annotations) == 0 {
		r.Annotations = nil
	}
	now := time.Now().UnixNano()
	r.ResourceVersion = expect + 1
	r.UpdatedAt = fromNanos(now)
	err = s.write(ctx, "put resource", func(tx *sql.Tx) error {
		if expect == 0 {
			res, err := tx.ExecContext(ctx, `INSERT INTO resources (`+resourceCols+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kind, namespace, name) DO NOTHING`,
				r.Kind, r.Namespace, r.Name, labels, annotations, string(r.Spec), r.Generation, r.ResourceVersion, now, now, r.ManagedBy, r.AppliedBy)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return errs.New(errs.Conflict, "%s already exists", resourceRef(r.Kind, r.Namespace, r.Name))
			}
			r.CreatedAt = r.UpdatedAt
			return nil
		}
		var created int64
		err := tx.QueryRowContext(ctx, `UPDATE resources SET labels = ?, annotations = ?, spec = ?, generation = ?,
resource_version = ?, updated_at = ?, managed_by = ?, applied_by = ?
WHERE kind = ? AND namespace = ? AND name = ? AND resource_version = ? RETURNING created_at`,
			labels, annotations, string(r.Spec), r.Generation, r.ResourceVersion, now, r.ManagedBy, r.AppliedBy,
			r.Kind, r.Namespace, r.Name, expect).Scan(&created)
		if errors.Is(err, sql.ErrNoRows) {
			return staleOrMissing(ctx, tx, r.Kind, r.Namespace, r.Name, expect)
		}
		if err != nil {
			return err
		}
		r.CreatedAt = fromNanos(created)
		return nil
	})
	if err != nil {
		return spec.StoredResource{}, err
	}
	return r, nil
}

// DeleteResource removes a resource (NotFound if absent). A non-zero expect must
// equal the stored ResourceVersion (Conflict otherwise).
func (s *Store) DeleteResource(ctx context.Context, kind, ns, name string, expect int64) error {
	if err := checkResourceKey(kind, ns, name); err != nil {
		return err
	}
	return s.write(ctx, "delete resource", func(tx *sql.Tx) error {
		q, args := `DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?`, []any{kind, ns, name}
		if expect != 0 {
			q, args = q+` AND resource_version = ?`, append(args, expect)
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return staleOrMissing(ctx, tx, kind, ns, name, expect)
		}
		// Its status goes with it (a resource made again starts unobserved).
		_, err = tx.ExecContext(ctx, `DELETE FROM resource_status WHERE kind = ? AND namespace = ? AND name = ?`, kind, ns, name)
		return err
	})
}

// staleOrMissing explains why a write conditioned on resource_version = expect
// matched no row: the resource is gone (NotFound) or has moved on (Conflict).
func staleOrMissing(ctx context.Context, tx *sql.Tx, kind, ns, name string, expect int64) error {
	var cur int64
	err := tx.QueryRowContext(ctx, `SELECT resource_version FROM resources WHERE kind = ? AND namespace = ? AND name = ?`,
		kind, ns, name).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return errResourceNotFound(kind, ns, name)
	}
	if err != nil {
		return err
	}
	return errResourceChanged(kind, ns, name, expect, cur)
}
