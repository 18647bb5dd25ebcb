package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/nimbus-ai/nimbus/registry"
)

var _ registry.CostStore = (*Store)(nil)

// ArtifactCost returns the cost recorded for sha256 under runtime.
func (s *Store) ArtifactCost(ctx context.Context, sha256, runtime string) (int64, bool, error) {
	var cost int64
	err := s.read(ctx, "artifact cost", func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT cost FROM artifact_costs WHERE sha256 = ? AND runtime = ?`, sha256, runtime).Scan(&cost)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return cost, true, nil
}

// SetArtifactCost records (or replaces) the cost of sha256 under runtime.
func (s *Store) SetArtifactCost(ctx context.Context, sha256, runtime string, cost int64) error {
	return s.write(ctx, "set artifact cost", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO artifact_costs (sha256, runtime, cost, measured_at) VALUES (?, ?, ?, ?)
ON CONFLICT (sha256, runtime) DO UPDATE SET cost = excluded.cost, measured_at = excluded.measured_at`,
			sha256, runtime, cost, time.Now().UnixNano())
		return err
	})
}

// DeleteArtifactCosts forgets every cost of sha256 (its blob was collected).
func (s *Store) DeleteArtifactCosts(ctx context.Context, sha256 string) error {
	return s.write(ctx, "delete artifact costs", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM artifact_costs WHERE sha256 = ?`, sha256)
		return err
	})
}
