package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// pgCollection is a collection row as read.
type pgCollection struct {
	Name        string  `db:"name"`
	Threshold   float64 `db:"threshold"`
	TargetFPIR  float64 `db:"target_fpir"`
	Calibration *string `db:"calibration"`
	CreatedAt   int64   `db:"created_at"`
}

// pgCollectionColumns are pgCollection's columns.
const pgCollectionColumns = `name, threshold, target_fpir, calibration::text AS calibration, created_at`

func (r pgCollection) collection() Collection {
	c := Collection{Name: r.Name, Threshold: r.Threshold, TargetFPIR: r.TargetFPIR, CreatedAt: fromNanos(r.CreatedAt)}
	if r.Calibration != nil {
		c.Calibration = json.RawMessage(*r.Calibration)
	}
	return c
}

// collectCollections reads the rows of a query selecting pgCollection's
// columns.
func collectCollections(rows pgx.Rows, err error) ([]Collection, error) {
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[pgCollection])
	if err != nil {
		return nil, err
	}
	var cs []Collection
	for _, r := range rs {
		cs = append(cs, r.collection())
	}
	return cs, nil
}

// oneCollection reads the single row of such a query; none is ErrNotFound.
func oneCollection(rows pgx.Rows, err error) (Collection, error) {
	if err != nil {
		return Collection{}, err
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[pgCollection])
	if err != nil {
		return Collection{}, pgNotFound(err)
	}
	return r.collection(), nil
}

// CreateCollection creates collection c and returns it with CreatedAt set.
// A name in use, even by a collection being deleted, is ErrConflict.
func (p *Postgres) CreateCollection(ctx context.Context, c Collection) (Collection, error) {
	c.CreatedAt = p.timestamp()
	_, err := p.exec(ctx,
		`INSERT INTO collection (name, threshold, target_fpir, state, created_at) VALUES ($1, $2, $3, 'active', $4)`,
		c.Name, c.Threshold, c.TargetFPIR, toNanos(c.CreatedAt))
	if err != nil {
		return Collection{}, fmt.Errorf("create collection %q: %w", c.Name, pgError(err))
	}
	c.Calibration = nil
	return c, nil
}

// GetCollection returns the active collection name; one that is absent or
// being deleted is ErrNotFound.
func (p *Postgres) GetCollection(ctx context.Context, name string) (Collection, error) {
	c, err := oneCollection(p.pool.Query(ctx,
		`SELECT `+pgCollectionColumns+` FROM collection WHERE name = $1 AND state = 'active'`, name))
	if err != nil {
		return Collection{}, fmt.Errorf("get collection %q: %w", name, pgError(err))
	}
	return c, nil
}

// ListCollections returns the active collections by name.
func (p *Postgres) ListCollections(ctx context.Context) ([]Collection, error) {
	cs, err := collectCollections(p.pool.Query(ctx,
		`SELECT `+pgCollectionColumns+` FROM collection WHERE state = 'active' ORDER BY name`))
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", pgError(err))
	}
	return cs, nil
}

// UpdateCollectionPolicy sets how an active collection decides "match"
// (a fixed threshold or a target FPIR, the other 0) and returns the
// collection.
func (p *Postgres) UpdateCollectionPolicy(ctx context.Context, name string, threshold, targetFPIR float64) (Collection, error) {
	var c Collection
	err := retry(ctx, func() error {
		var err error
		c, err = oneCollection(p.pool.Query(ctx,
			`UPDATE collection SET threshold = $1, target_fpir = $2 WHERE name = $3 AND state = 'active'
			 RETURNING `+pgCollectionColumns, threshold, targetFPIR, name))
		return err
	})
	if err != nil {
		return Collection{}, fmt.Errorf("update collection %q: %w", name, pgError(err))
	}
	return c, nil
}

// SetCollectionCalibration stores the service's measurement of an active
// collection (JSON, stored as given).
func (p *Postgres) SetCollectionCalibration(ctx context.Context, name string, calibration json.RawMessage) error {
	if !json.Valid(calibration) {
		return fmt.Errorf("set calibration of %q: %w: not JSON", name, ErrInvalid)
	}
	n, err := p.exec(ctx, `UPDATE collection SET calibration = $1 WHERE name = $2 AND state = 'active'`, string(calibration), name)
	if err != nil {
		return fmt.Errorf("set calibration of %q: %w", name, pgError(err))
	}
	if n == 0 {
		return fmt.Errorf("set calibration of %q: %w", name, ErrNotFound)
	}
	return nil
}

// MarkCollectionDeleting hides a collection from reads and writes until
// DeleteCollection removes it. Marking a collection already being deleted
// is not an error.
func (p *Postgres) MarkCollectionDeleting(ctx context.Context, name string) error {
	n, err := p.exec(ctx, `UPDATE collection SET state = 'deleting' WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("mark collection deleting: %w", pgError(err))
	}
	if n == 0 {
		return fmt.Errorf("mark collection %q deleting: %w", name, ErrNotFound)
	}
	return nil
}

// DeletingCollections returns the names of collections marked deleting,
// for the reconciler to finish.
func (p *Postgres) DeletingCollections(ctx context.Context) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT name FROM collection WHERE state = 'deleting' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list deleting collections: %w", pgError(err))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list deleting collections: %w", pgError(err))
	}
	return names, nil
}

// DeleteCollection removes a collection with its subjects and faces, in
// batches of rows (deleteBatch), each its own short transaction: a
// million-row delete in one would hold its locks and its WAL until the
// end. If it is interrupted the collection row stays (deleted last), so
// calling it again finishes the job.
//
// Faces go in key order from the last key deleted, so that a batch does
// not walk again the index entries of the faces deleted before it (they
// stay in the index until vacuum).
func (p *Postgres) DeleteCollection(ctx context.Context, name string) error {
	var exists bool
	err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM collection WHERE name = $1)`, name).Scan(&exists)
	if err != nil {
		return fmt.Errorf("delete collection %q: %w", name, pgError(err))
	}
	if !exists {
		return fmt.Errorf("delete collection %q: %w", name, ErrNotFound)
	}
	var after int64
	for {
		var n int64
		var last *int64
		err := retry(ctx, func() error {
			return p.pool.QueryRow(ctx, `WITH gone AS (
					DELETE FROM face WHERE key IN (
						SELECT key FROM face WHERE collection = $1 AND key > $2 ORDER BY key LIMIT $3)
					RETURNING key)
				SELECT count(*), max(key) FROM gone`, name, after, p.deleteBatch).Scan(&n, &last)
		})
		if err != nil {
			return fmt.Errorf("delete collection %q faces: %w", name, pgError(err))
		}
		if last != nil {
			after = *last
		}
		if n < int64(p.deleteBatch) {
			break
		}
	}
	for {
		n, err := p.exec(ctx, `DELETE FROM subject WHERE id IN (
				SELECT id FROM subject WHERE collection = $1 LIMIT $2)`, name, p.deleteBatch)
		if err != nil {
			return fmt.Errorf("delete collection %q subjects: %w", name, pgError(err))
		}
		if n < int64(p.deleteBatch) {
			break
		}
	}
	n, err := p.exec(ctx, `DELETE FROM collection WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("delete collection %q: %w", name, pgError(err))
	}
	if n == 0 {
		return fmt.Errorf("delete collection %q: %w", name, ErrNotFound)
	}
	return nil
}
