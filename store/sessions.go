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

// checkNewSession validates a session to be created.
func checkNewSession(s Session) error {
	if len(s.IDHash) == 0 || s.KeyID == "" || s.CSRF == "" || s.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: a session needs an id hash, a key, a CSRF token and an expiry", ErrInvalid)
	}
	return nil
}
