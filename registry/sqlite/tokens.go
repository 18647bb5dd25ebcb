package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-ai/nimbus/audit"
	"github.com/nimbus-ai/nimbus/auth"
	"github.com/nimbus-ai/nimbus/internal/errs"
)

// Tokens live in the registry database, so a token change and its audit event
// commit together.
var _ auth.Store = (*Store)(nil)

const tokenCols = `id, name, role, scopes, secret_hash, bootstrap, rate_limit, created_by, created_at, expires_at, revoked_at, last_used_at`

func scanToken(row scanner) (auth.Token, error) {
	var (
		t                          auth.Token
		scopes                     string
		limit                      sql.NullString
		bootstrap                  int
		created                    int64
		expires, revoked, lastUsed sql.NullInt64
	)
	if err := row.Scan(&t.ID, &t.Name, &t.Role, &scopes, &t.SecretHash, &bootstrap, &limit, &t.CreatedBy,
		&created, &expires, &revoked, &lastUsed); err != nil {
		return auth.Token{}, err
	}
	if err := json.Unmarshal([]byte(scopes), &t.Scopes); err != nil {
		return auth.Token{}, fmt.Errorf("decode scopes of token %s: %w", t.ID, err)
	}
	if limit.Valid {
		t.RateLimit = new(auth.Limit)
		if err := json.Unmarshal([]byte(limit.String), t.RateLimit); err != nil {
			return auth.Token{}, fmt.Errorf("decode rate limit of token %s: %w", t.ID, err)
		}
	}
	t.Bootstrap = bootstrap != 0
	t.CreatedAt = fromNanos(created)
	t.ExpiresAt, t.RevokedAt, t.LastUsedAt = optTime(expires), optTime(revoked), optTime(lastUsed)
	return t, nil
}

func optTime(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

func optNanos(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

// tokenEvent is the audit event of a change to token id.
func tokenEvent(id string, ev auth.AuditEvent) audit.Event {
	return audit.Event{Actor: ev.Actor, Source: ev.Source, Action: ev.Action, Kind: "Token", Name: id, Summary: ev.Summary}
}

// CreateToken stores t and its audit event in one transaction.
func (s *Store) CreateToken(ctx context.Context, t auth.Token, ev auth.AuditEvent) error {
	scopes, err := json.Marshal(t.Scopes)
	if err != nil {
		return fmt.Errorf("sqlite: create token: encode scopes: %w", err)
	}
	var limit any
	if t.RateLimit != nil {
		b, err := json.Marshal(t.RateLimit)
		if err != nil {
			return fmt.Errorf("sqlite: create token: encode rate limit: %w", err)
		}
		limit = string(b)
	}
	bootstrap := 0
	if t.Bootstrap {
		bootstrap = 1
	}
	return s.write(ctx, "create token", func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE id = ?`, t.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return errs.New(errs.AlreadyExists, "token %s already exists", t.ID)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Name, string(t.Role), string(scopes), t.SecretHash, bootstrap, limit, t.CreatedBy,
			t.CreatedAt.UnixNano(), optNanos(t.ExpiresAt), optNanos(t.RevokedAt), optNanos(t.LastUsedAt)); err != nil {
			return err
		}
		_, err := insertEvent(ctx, tx, tokenEvent(t.ID, ev))
		return err
	})
}

// GetToken returns one token (NotFound if absent).
func (s *Store) GetToken(ctx context.Context, id string) (auth.Token, error) {
	var t auth.Token
	err := s.read(ctx, "get token", func(tx *sql.Tx) error {
		var err error
		t, err = scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return errs.New(errs.NotFound, "token %s not found", id)
		}
		return err
	})
	return t, err
}

// ListTokens returns every token, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]auth.Token, error) {
	var out []auth.Token
	err := s.read(ctx, "list tokens", func(tx *sql.Tx) error {
		var err error
		out, err = queryAll(ctx, tx, scanToken, `SELECT `+tokenCols+` FROM tokens ORDER BY created_at, id`)
		return err
	})
	return out, err
}

// RevokeToken marks a token revoked (keeping the first revocation time) and
// records the event in the same transaction.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time, ev auth.AuditEvent) error {
	return s.write(ctx, "revoke token", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, at.UnixNano(), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errs.New(errs.NotFound, "token %s not found", id)
		}
		_, err = insertEvent(ctx, tx, tokenEvent(id, ev))
		return err
	})
}

// TouchTokens records last-used times; a time older than the stored one is
// ignored.
func (s *Store) TouchTokens(ctx context.Context, used map[string]time.Time) error {
	return s.write(ctx, "touch tokens", func(tx *sql.Tx) error {
		for id, at := range used {
			if _, err := tx.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`,
				at.UnixNano(), id, at.UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
}
