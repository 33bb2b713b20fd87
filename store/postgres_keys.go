package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgKey is an API key row as read.
type pgKey struct {
	ID         string  `db:"id"`
	Name       string  `db:"name"`
	Hash       []byte  `db:"hash"`
	Role       string  `db:"role"`
	Collection *string `db:"collection"`
	CreatedAt  int64   `db:"created_at"`
	LastUsedAt *int64  `db:"last_used_at"`
	RevokedAt  *int64  `db:"revoked_at"`
}

func (r pgKey) key() APIKey {
	return APIKey{
		ID: r.ID, Name: r.Name, Hash: r.Hash, Role: Role(r.Role), Collection: textOf(r.Collection),
		CreatedAt: fromNanos(r.CreatedAt), LastUsedAt: timeOf(r.LastUsedAt), RevokedAt: timeOf(r.RevokedAt),
	}
}

// CreateKey stores a new API key (unused, not revoked) and returns it with
// CreatedAt set if it was zero. The caller generates ID and Hash; an ID in
// use is ErrConflict.
func (p *Postgres) CreateKey(ctx context.Context, k APIKey) (APIKey, error) {
	k, err := newKey(k, p.timestamp())
	if err != nil {
		return APIKey{}, err
	}
	_, err = p.exec(ctx,
		`INSERT INTO api_key (id, name, hash, role, collection, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		k.ID, k.Name, k.Hash, string(k.Role), pgText(k.Collection), toNanos(k.CreatedAt))
	if err != nil {
		return APIKey{}, fmt.Errorf("create key %q: %w", k.ID, pgError(err))
	}
	return k, nil
}

// GetKey returns an API key, revoked or not: the caller checks RevokedAt.
func (p *Postgres) GetKey(ctx context.Context, id string) (APIKey, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_key WHERE id = $1`, id)
	var r pgKey
	if err == nil {
		r, err = pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[pgKey])
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("get key %q: %w", id, pgError(pgNotFound(err)))
	}
	return r.key(), nil
}

// ListKeys returns all API keys, revoked ones included, oldest first.
func (p *Postgres) ListKeys(ctx context.Context) ([]APIKey, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+keyColumns+` FROM api_key ORDER BY created_at, id`)
	var rs []pgKey
	if err == nil {
		rs, err = pgx.CollectRows(rows, pgx.RowToStructByName[pgKey])
	}
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", pgError(err))
	}
	var keys []APIKey
	for _, r := range rs {
		keys = append(keys, r.key())
	}
	return keys, nil
}

// RevokeKey revokes an API key. Revoking it again keeps the first
// revocation time.
func (p *Postgres) RevokeKey(ctx context.Context, id string) error {
	n, err := p.exec(ctx, `UPDATE api_key SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2`,
		toNanos(p.timestamp()), id)
	if err != nil {
		return fmt.Errorf("revoke key: %w", pgError(err))
	}
	if n == 0 {
		return fmt.Errorf("revoke key %q: %w", id, ErrNotFound)
	}
	return nil
}

// TouchKey records that a key was used at time at. It is one small write;
// callers throttle it rather than calling it on every request. A zero at
// means now.
func (p *Postgres) TouchKey(ctx context.Context, id string, at time.Time) error {
	if at.IsZero() {
		at = p.timestamp()
	}
	n, err := p.exec(ctx, `UPDATE api_key SET last_used_at = $1 WHERE id = $2`, toNanos(at), id)
	if err != nil {
		return fmt.Errorf("touch key: %w", pgError(err))
	}
	if n == 0 {
		return fmt.Errorf("touch key %q: %w", id, ErrNotFound)
	}
	return nil
}

// CountKeys returns the number of keys not revoked; zero means the
// service has not been set up with an admin key yet.
func (p *Postgres) CountKeys(ctx context.Context) (int, error) {
	var n int
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM api_key WHERE revoked_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count keys: %w", pgError(err))
	}
	return n, nil
}
