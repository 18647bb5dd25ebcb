package sqlite

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/internal/errs"
)

// The audit log lives in the registry database so a change and its record can
// share a backup; the table refuses UPDATE and DELETE (see migration 0003).
var _ audit.Log = (*Store)(nil)

const eventCols = `id, time, actor, source, action, kind, namespace, name, generation, summary, diff`

func scanEvent(row scanner) (audit.Event, error) {
	var (
		e  audit.Event
		at int64
	)
	if err := row.Scan(&e.ID, &at, &e.Actor, &e.Source, &e.Action, &e.Kind, &e.Namespace, &e.Name,
		&e.Generation, &e.Summary, &e.Diff); err != nil {
		return audit.Event{}, err
	}
	e.Time = fromNanos(at)
	return e, nil
}

// AppendEvent stores e and returns it with its ID and, if e.Time was zero, the
// time it was recorded. IDs only grow: AUTOINCREMENT never hands out a number
// twice, so "after id N" is a stable cursor for paging and following.
func (s *Store) AppendEvent(ctx context.Context, e audit.Event) (audit.Event, error) {
	if e.Action == "" {
		return audit.Event{}, errs.New(errs.InvalidArgument, "audit event: action must not be empty")
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = fromNanos(e.Time.UnixNano())
	err := s.write(ctx, "append event", func(tx *sql.Tx) error {
		var err error
		e, err = insertEvent(ctx, tx, e)
		return err
	})
	if err != nil {
		return audit.Event{}, err
	}
	return e, nil
}

// insertEvent appends e inside tx, filling in ID and, if zero, Time.
func insertEvent(ctx context.Context, tx *sql.Tx, e audit.Event) (audit.Event, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = fromNanos(e.Time.UnixNano())
	err := tx.QueryRowContext(ctx, `INSERT INTO audit_events
(time, actor, source, action, kind, namespace, name, generation, summary, diff)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		e.Time.UnixNano(), e.Actor, e.Source, e.Action, e.Kind, e.Namespace, e.Name,
		e.Generation, e.Summary, e.Diff).Scan(&e.ID)
	return e, err
}

// ListEvents returns the events q selects, oldest (lowest ID) first, at most
// q.Limit of them (audit.DefaultLimit when 0, capped at audit.MaxLimit): the
// oldest that match, or with q.Latest the newest.
func (s *Store) ListEvents(ctx context.Context, q audit.Query) ([]audit.Event, error) {
	limit := q.Limit
	switch {
	case limit < 0:
		return nil, errs.New(errs.InvalidArgument, "limit %d must not be negative", limit).WithField("limit")
	case limit == 0:
		limit = audit.DefaultLimit
	case limit > audit.MaxLimit:
		limit = audit.MaxLimit
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if q.Namespace != "" {
		add("namespace = ?", q.Namespace)
	}
	if q.Namespaces != nil {
		if len(q.Namespaces) == 0 {
			return []audit.Event{}, nil
		}
		where = append(where, "namespace IN (?"+strings.Repeat(", ?", len(q.Namespaces)-1)+")")
		for _, ns := range q.Namespaces {
			args = append(args, ns)
		}
	}
	if q.Kind != "" {
		add("kind = ?", q.Kind)
	}
	if q.Name != "" {
		add("name = ?", q.Name)
	}
	if !q.Since.IsZero() {
		add("time >= ?", q.Since.UnixNano())
	}
	if q.After > 0 {
		add("id > ?", q.After)
	}
	query := `SELECT ` + eventCols + ` FROM audit_events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	if q.Latest {
		query += ` ORDER BY id DESC LIMIT ?`
	} else {
		query += ` ORDER BY id LIMIT ?`
	}
	args = append(args, limit)

	out := []audit.Event{}
	err := s.read(ctx, "list events", func(tx *sql.Tx) error {
		es, err := queryAll(ctx, tx, scanEvent, query, args...)
		out = append(out, es...)
		return err
	})
	if err != nil {
		return nil, err
	}
	if q.Latest {
		slices.Reverse(out)
	}
	return out, nil
}
