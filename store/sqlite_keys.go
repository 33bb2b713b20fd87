package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

const keyColumns = `id, name, hash, role, collection, created_at, last_used_at, revoked_at`

// CreateKey stores a new API key (unused, not revoked) and returns it with
// CreatedAt set if it was zero. The caller generates ID and Hash; an ID in
// use is ErrConflict.
func (s *SQLite) CreateKey(ctx context.Context, k APIKey) (APIKey, error) {
	k, err := newKey(k, s.timestamp())
	if err != nil {
		return APIKey{}, err
	}
	_, err = s.write.ExecContext(ctx,
		`INSERT INTO api_key (id, name, hash, role, collection, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Hash, string(k.Role), nullString(k.Collection), toNanos(k.CreatedAt))
	if isUniqueViolation(err) {
		return APIKey{}, fmt.Errorf("create key %q: %w", k.ID, ErrConflict)
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("create key: %w", err)
	}
	return k, nil
}

// GetKey returns an API key, revoked or not: the caller checks RevokedAt.
func (s *SQLite) GetKey(ctx context.Context, id string) (APIKey, error) {
	k, err := scanKey(s.read.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_key WHERE id = ?`, id))
	if err != nil {
		return APIKey{}, fmt.Errorf("get key %q: %w", id, notFound(err))
	}
	return k, nil
}

// ListKeys returns all API keys, revoked ones included, oldest first.
func (s *SQLite) ListKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_key ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var keys []APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return keys, nil
}

// RevokeKey revokes an API key. Revoking it again keeps the first
// revocation time.
func (s *SQLite) RevokeKey(ctx context.Context, id string) error {
	res, err := s.write.ExecContext(ctx,
		`UPDATE api_key SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, toNanos(s.timestamp()), id)
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	if err := oneRow(res); err != nil {
		return fmt.Errorf("revoke key %q: %w", id, err)
	}
	return nil
}

// TouchKey records that a key was used at time at. It is one small write;
// callers throttle it rather than calling it on every request. A zero at
// means now.
func (s *SQLite) TouchKey(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = s.timestamp()
	}
	res, err := s.write.ExecContext(ctx, `UPDATE api_key SET last_used_at = ? WHERE id = ?`, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("touch key: %w", err)
	}
	if err := oneRow(res); err != nil {
		return fmt.Errorf("touch key %q: %w", id, err)
	}
	return nil
}

// CountKeys returns the number of keys not revoked; zero means the
// service has not been set up with an admin key yet.
func (s *SQLite) CountKeys(ctx context.Context) (int, error) {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM api_key WHERE revoked_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count keys: %w", err)
	}
	return n, nil
}

func scanKey(r rowScanner) (APIKey, error) {
	var k APIKey
	var role string
	var collection sql.NullString
	var created int64
	var used, revoked sql.NullInt64
	if err := r.Scan(&k.ID, &k.Name, &k.Hash, &role, &collection, &created, &used, &revoked); err != nil {
		return APIKey{}, err
	}
	k.Role = Role(role)
	k.Collection = collection.String
	k.CreatedAt = fromNanos(created)
	k.LastUsedAt = nullNanos(used)
	k.RevokedAt = nullNanos(revoked)
	return k, nil
}
