package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// CreateCollection creates collection c and returns it with CreatedAt set.
// A name in use, even by a collection being deleted, is ErrConflict.
func (s *SQLite) CreateCollection(ctx context.Context, c Collection) (Collection, error) {
	c.CreatedAt = s.timestamp()
	_, err := s.write.ExecContext(ctx,
		`INSERT INTO collection (name, threshold, target_fpir, state, created_at) VALUES (?, ?, ?, 'active', ?)`,
		c.Name, c.Threshold, c.TargetFPIR, toNanos(c.CreatedAt))
	if isUniqueViolation(err) {
		return Collection{}, fmt.Errorf("create collection %q: %w", c.Name, ErrConflict)
	}
	if err != nil {
		return Collection{}, fmt.Errorf("create collection: %w", err)
	}
	c.Calibration = nil
	return c, nil
}

// GetCollection returns the active collection name; one that is absent or
// being deleted is ErrNotFound.
func (s *SQLite) GetCollection(ctx context.Context, name string) (Collection, error) {
	c, err := scanCollection(s.read.QueryRowContext(ctx,
		`SELECT `+collectionColumns+` FROM collection WHERE name = ? AND state = 'active'`, name))
	if err != nil {
		return Collection{}, fmt.Errorf("get collection %q: %w", name, notFound(err))
	}
	return c, nil
}

// ListCollections returns the active collections by name.
func (s *SQLite) ListCollections(ctx context.Context) ([]Collection, error) {
	rows, err := s.read.QueryContext(ctx,
		`SELECT `+collectionColumns+` FROM collection WHERE state = 'active' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var cs []Collection
	for rows.Next() {
		c, err := scanCollection(rows)
		if err != nil {
			return nil, fmt.Errorf("list collections: %w", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	return cs, nil
}

// UpdateCollectionPolicy sets how an active collection decides "match"
// (a fixed threshold or a target FPIR, the other 0) and returns the
// collection.
func (s *SQLite) UpdateCollectionPolicy(ctx context.Context, name string, threshold, targetFPIR float64) (Collection, error) {
	c, err := scanCollection(s.write.QueryRowContext(ctx,
		`UPDATE collection SET threshold = ?, target_fpir = ? WHERE name = ? AND state = 'active'
		 RETURNING `+collectionColumns, threshold, targetFPIR, name))
	if err != nil {
		return Collection{}, fmt.Errorf("update collection %q: %w", name, notFound(err))
	}
	return c, nil
}

// SetCollectionCalibration stores the service's measurement of an active
// collection (JSON, stored as given).
func (s *SQLite) SetCollectionCalibration(ctx context.Context, name string, calibration json.RawMessage) error {
	if !json.Valid(calibration) {
		return fmt.Errorf("set calibration of %q: %w: not JSON", name, ErrInvalid)
	}
	res, err := s.write.ExecContext(ctx, `UPDATE collection SET calibration = ? WHERE name = ? AND state = 'active'`, string(calibration), name)
	if err != nil {
		return fmt.Errorf("set calibration of %q: %w", name, err)
	}
	if err := oneRow(res); err != nil {
		return fmt.Errorf("set calibration of %q: %w", name, err)
	}
	return nil
}

// MarkCollectionDeleting hides a collection from reads and writes until
// DeleteCollection removes it. Marking a collection already being deleted
// is not an error.
func (s *SQLite) MarkCollectionDeleting(ctx context.Context, name string) error {
	res, err := s.write.ExecContext(ctx, `UPDATE collection SET state = 'deleting' WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("mark collection deleting: %w", err)
	}
	if err := oneRow(res); err != nil {
		return fmt.Errorf("mark collection %q deleting: %w", name, err)
	}
	return nil
}

// DeletingCollections returns the names of collections marked deleting,
// for the reconciler to finish.
func (s *SQLite) DeletingCollections(ctx context.Context) ([]string, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT name FROM collection WHERE state = 'deleting' ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list deleting collections: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list deleting collections: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deleting collections: %w", err)
	}
	return names, nil
}

// DeleteCollection removes a collection with its subjects and faces, in
// batches of rows (deleteBatch), each its own short write transaction, so
// that other writers (enrollments elsewhere) get the lock between batches
// instead of waiting for a million-row delete. If it is interrupted the collection row
// stays (deleted last), so calling it again finishes the job.
func (s *SQLite) DeleteCollection(ctx context.Context, name string) error {
	var one int
	err := s.read.QueryRowContext(ctx, `SELECT 1 FROM collection WHERE name = ?`, name).Scan(&one)
	if err != nil {
		return fmt.Errorf("delete collection %q: %w", name, notFound(err))
	}
	// Batches, so that other writers wait for one batch at a time, not
	// for the whole collection (a million import items take seconds).
	batched := []struct{ what, query string }{
		{"import items", `DELETE FROM import_item WHERE (job_id, seq) IN (SELECT i.job_id, i.seq FROM import_item i
			JOIN import_job j ON j.id = i.job_id WHERE j.collection = ? LIMIT ?)`},
		{"faces", `DELETE FROM face WHERE key IN (SELECT key FROM face WHERE collection = ? LIMIT ?)`},
		{"subjects", `DELETE FROM subject WHERE id IN (SELECT id FROM subject WHERE collection = ? LIMIT ?)`},
	}
	for _, b := range batched {
		for {
			res, err := s.write.ExecContext(ctx, b.query, name, s.deleteBatch)
			if err != nil {
				return fmt.Errorf("delete collection %q %s: %w", name, b.what, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("delete collection %q %s: %w", name, b.what, err)
			}
			if n < int64(s.deleteBatch) {
				break
			}
		}
	}
	res, err := s.write.ExecContext(ctx, `DELETE FROM collection WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete collection %q: %w", name, err)
	}
	if err := oneRow(res); err != nil {
		return fmt.Errorf("delete collection %q: %w", name, err)
	}
	return nil
}

// rowScanner is what *sql.Row and *sql.Rows have in common.
type rowScanner interface {
	Scan(dest ...any) error
}

// collectionColumns are what scanCollection reads.
const collectionColumns = `name, threshold, target_fpir, calibration, created_at`

func scanCollection(r rowScanner) (Collection, error) {
	var c Collection
	var created int64
	var cal sql.NullString
	if err := r.Scan(&c.Name, &c.Threshold, &c.TargetFPIR, &cal, &created); err != nil {
		return Collection{}, err
	}
	if cal.Valid {
		c.Calibration = json.RawMessage(cal.String)
	}
	c.CreatedAt = fromNanos(created)
	return c, nil
}

// oneRow returns ErrNotFound unless res affected at least one row.
func oneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}
