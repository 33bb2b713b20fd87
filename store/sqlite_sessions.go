package store

import (
	"context"
	"database/sql"
	"fmt"
)

// CreateSession stores a new session, with CreatedAt set to now, and
// deletes the expired ones and the key's oldest beyond MaxSessionsPerKey.
// Its key must exist (ErrNotFound otherwise).
func (s *SQLite) CreateSession(ctx context.Context, sess Session) (Session, error) {
	if err := checkNewSession(sess); err != nil {
		return Session{}, fmt.Errorf("create session: %w", err)
	}
	sess.CreatedAt = s.timestamp()
	sess.ExpiresAt = fromNanos(toNanos(sess.ExpiresAt))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM session WHERE expires_at <= ?`, toNanos(sess.CreatedAt)); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx,
			`INSERT INTO session (id_hash, key_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			sess.IDHash, sess.KeyID, sess.CSRF, toNanos(sess.CreatedAt), toNanos(sess.ExpiresAt))
		if isForeignKeyViolation(err) {
			return fmt.Errorf("key %q: %w", sess.KeyID, ErrNotFound)
		}
		if isUniqueViolation(err) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, trimSessions, sess.KeyID, MaxSessionsPerKey)
		return err
	})
	if err != nil {
		return Session{}, fmt.Errorf("create session: %w", err)
	}
	return sess, nil
}

// GetSession returns the live session whose token hashes to idHash, with
// its key: an unknown or expired session, or one whose key is revoked, is
// ErrNotFound.
func (s *SQLite) GetSession(ctx context.Context, idHash []byte) (SessionKey, error) {
	var out SessionKey
	var created, expires int64
	err := s.read.QueryRowContext(ctx,
		`SELECT id_hash, key_id, csrf, created_at, expires_at FROM session WHERE id_hash = ? AND expires_at > ?`,
		idHash, toNanos(s.timestamp())).Scan(&out.Session.IDHash, &out.Session.KeyID, &out.Session.CSRF, &created, &expires)
	if err != nil {
		return SessionKey{}, fmt.Errorf("get session: %w", notFound(err))
	}
	out.Session.CreatedAt, out.Session.ExpiresAt = fromNanos(created), fromNanos(expires)
	if out.Key, err = s.GetKey(ctx, out.Session.KeyID); err != nil {
		return SessionKey{}, fmt.Errorf("get session: %w", err)
	}
	if out.Key.RevokedAt != nil {
		return SessionKey{}, fmt.Errorf("get session: key %q revoked: %w", out.Key.ID, ErrNotFound)
	}
	return out, nil
}

// DeleteSession ends a session; an unknown one is not an error.
func (s *SQLite) DeleteSession(ctx context.Context, idHash []byte) error {
	if _, err := s.write.ExecContext(ctx, `DELETE FROM session WHERE id_hash = ?`, idHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
