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

// GetStatus returns what controllers last observed of a resource (NotFound if
// nothing was recorded).
func (s *Store) GetStatus(ctx context.Context, kind, ns, name string) (spec.Status, error) {
	if err := checkResourceKey(kind, ns, name); err != nil {
		return spec.Status{}, err
	}
	var st spec.Status
	err := s.read(ctx, "get status", func(tx *sql.Tx) error {
		var conds, details string
		var updated int64
		err := tx.QueryRowContext(ctx, `SELECT observed_generation, conditions, details, updated_at FROM resource_status
WHERE kind = ? AND namespace = ? AND name = ?`, kind, ns, name).Scan(&st.ObservedGeneration, &conds, &details, &updated)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.New(errs.NotFound, "no status recorded for %s", resourceRef(kind, ns, name))
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(conds), &st.Conditions); err != nil {
			return fmt.Errorf("decode conditions of %s: %w", resourceRef(kind, ns, name), err)
		}
		if details != "{}" && details != "" {
			st.Details = json.RawMessage(details)
		}
		st.UpdatedAt = fromNanos(updated)
		return nil
	})
	return st, err
}

// PutStatus records st for a resource that exists (NotFound otherwise, so a
// controller racing a delete leaves no orphan row). It touches neither the
// resource's resourceVersion nor its generation.
func (s *Store) PutStatus(ctx context.Context, kind, ns, name string, st spec.Status) error {
	if err := checkResourceKey(kind, ns, name); err != nil {
		return err
	}
	conds, err := json.Marshal(st.Conditions)
	if err != nil {
		return fmt.Errorf("encode conditions: %w", err)
	}
	if st.Conditions == nil {
		conds = []byte("[]")
	}
	details := "{}"
	if len(st.Details) > 0 {
		if !json.Valid(st.Details) {
			return errs.New(errs.InvalidArgument, "%s: status details are not valid JSON", resourceRef(kind, ns, name))
		}
		details = string(st.Details)
	}
	now := time.Now().UnixNano()
	return s.write(ctx, "put status", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO resource_status (kind, namespace, name, observed_generation, conditions, details, updated_at)
SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM resources WHERE kind = ? AND namespace = ? AND name = ?)
ON CONFLICT (kind, namespace, name) DO UPDATE SET observed_generation = excluded.observed_generation,
  conditions = excluded.conditions, details = excluded.details, updated_at = excluded.updated_at`,
			kind, ns, name, st.ObservedGeneration, string(conds), details, now, kind, ns, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errResourceNotFound(kind, ns, name)
		}
		return nil
	})
}
