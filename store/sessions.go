package store

import (
	"fmt"
	"time"
)

// Session is a signed-in dashboard browser: the sha256 of the token its
// cookie holds, the API key it was exchanged for, and its CSRF token.
type Session struct {
	IDHash    []byte
	KeyID     string
	CSRF      string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// SessionKey is a live session with its key (not revoked).
type SessionKey struct {
	Session Session
	Key     APIKey
}

// MaxSessionsPerKey is how many live sessions one key may have: creating
// one more ends the key's oldest, so that signing in in a loop cannot fill
// the table.
const MaxSessionsPerKey = 16

// trimSessions deletes a key's sessions beyond the newest
// MaxSessionsPerKey; both dialects take it as is.
const trimSessions = `DELETE FROM session WHERE key_id = $1 AND id_hash NOT IN (
	SELECT id_hash FROM session WHERE key_id = $1 ORDER BY created_at DESC, id_hash DESC LIMIT $2)`

// checkNewSession validates a session to be created.
func checkNewSession(s Session) error {
	if len(s.IDHash) == 0 || s.KeyID == "" || s.CSRF == "" || s.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: a session needs an id hash, a key, a CSRF token and an expiry", ErrInvalid)
	}
	return nil
}
