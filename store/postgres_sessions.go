package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CreateSession stores a new session, with CreatedAt set to now, and
// deletes the expired ones and the key's oldest beyond MaxSessionsPerKey.
// Its key must exist (ErrNotFound otherwise).
func (p *Postgres) CreateSession(ctx context.Context, sess Session) (Session, error) {
	if err := checkNewSession(sess); err != nil {
		return Session{}, fmt.Errorf("create session: %w", err)
	}
	sess.CreatedAt = p.timestamp()
	sess.ExpiresAt = fromNanos(toNanos(sess.ExpiresAt))
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM session WHERE expires_at <= $1`, toNanos(sess.CreatedAt)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx,
			`INSERT INTO session (id_hash, key_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			sess.IDHash, sess.KeyID, sess.CSRF, toNanos(sess.CreatedAt), toNanos(sess.ExpiresAt))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, trimSessions, sess.KeyID, MaxSessionsPerKey)
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("create session: %w", pgError(err))
	}
	return sess, nil
}

// GetSession returns the live session whose token hashes to idHash, with
// its key: an unknown or expired session, or one whose key is revoked, is
// ErrNotFound.
func (p *Postgres) GetSession(ctx context.Context, idHash []byte) (SessionKey, error) {
	var out SessionKey
	var created, expires int64
	err := p.pool.QueryRow(ctx,
		`SELECT id_hash, key_id, csrf, created_at, expires_at FROM session WHERE id_hash = $1 AND expires_at > $2`,
		idHash, toNanos(p.timestamp())).Scan(&out.Session.IDHash, &out.Session.KeyID, &out.Session.CSRF, &created, &expires)
	if err != nil {
		return SessionKey{}, fmt.Errorf("get session: %w", pgError(pgNotFound(err)))
	}
	out.Session.CreatedAt, out.Session.ExpiresAt = fromNanos(created), fromNanos(expires)
	if out.Key, err = p.GetKey(ctx, out.Session.KeyID); err != nil {
		return SessionKey{}, fmt.Errorf("get session: %w", err)
	}
	if out.Key.RevokedAt != nil {
		return SessionKey{}, fmt.Errorf("get session: key %q revoked: %w", out.Key.ID, ErrNotFound)
	}
	return out, nil
}

// DeleteSession ends a session; an unknown one is not an error.
func (p *Postgres) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := p.exec(ctx, `DELETE FROM session WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", pgError(err))
	}
	return nil
}
