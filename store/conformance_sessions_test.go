package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

func testSessions(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	setClock(t, s, func() time.Time { return now })
	_, err := s.CreateKey(ctx, APIKey{ID: "admin1", Name: "ops", Hash: []byte{1}, Role: RoleAdmin})
	noErr(t, "create key", err)
	_, err = s.CreateKey(ctx, APIKey{ID: "read1", Name: "viewer", Hash: []byte{2}, Role: RoleRead, Collection: "staff"})
	noErr(t, "create key", err)

	sess := Session{IDHash: []byte("h-admin"), KeyID: "admin1", CSRF: "c-1", ExpiresAt: now.Add(time.Hour)}
	created, err := s.CreateSession(ctx, sess)
	noErr(t, "create session", err)
	if !created.CreatedAt.Equal(now) || !created.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Errorf("created %+v", created)
	}

	t.Run("get returns the session and its key", func(t *testing.T) {
		got, err := s.GetSession(ctx, []byte("h-admin"))
		noErr(t, "get", err)
		if !bytes.Equal(got.Session.IDHash, sess.IDHash) || got.Session.KeyID != "admin1" || got.Session.CSRF != "c-1" ||
			!got.Session.ExpiresAt.Equal(sess.ExpiresAt) || !got.Session.CreatedAt.Equal(now) {
			t.Errorf("session %+v", got.Session)
		}
		if got.Key.ID != "admin1" || got.Key.Role != RoleAdmin || got.Key.Name != "ops" {
			t.Errorf("key %+v", got.Key)
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			sess Session
			want error
		}{
			{"unknown key", Session{IDHash: []byte("x"), KeyID: "nobody", CSRF: "c", ExpiresAt: now.Add(time.Hour)}, ErrNotFound},
			{"token taken", Session{IDHash: []byte("h-admin"), KeyID: "read1", CSRF: "c", ExpiresAt: now.Add(time.Hour)}, ErrConflict},
			{"no hash", Session{KeyID: "admin1", CSRF: "c", ExpiresAt: now.Add(time.Hour)}, ErrInvalid},
			{"no csrf", Session{IDHash: []byte("y"), KeyID: "admin1", ExpiresAt: now.Add(time.Hour)}, ErrInvalid},
			{"no expiry", Session{IDHash: []byte("y"), KeyID: "admin1", CSRF: "c"}, ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.CreateSession(ctx, tt.sess)
				wantErr(t, "create", err, tt.want)
			})
		}
		_, err := s.GetSession(ctx, []byte("never made"))
		wantErr(t, "get unknown", err, ErrNotFound)
	})

	t.Run("expiry", func(t *testing.T) {
		_, err := s.CreateSession(ctx, Session{IDHash: []byte("h-short"), KeyID: "read1", CSRF: "c-2", ExpiresAt: now.Add(time.Minute)})
		noErr(t, "create", err)
		_, err = s.GetSession(ctx, []byte("h-short"))
		noErr(t, "get before expiry", err)
		later := now.Add(time.Minute)
		setClock(t, s, func() time.Time { return later })
		defer setClock(t, s, func() time.Time { return now })
		_, err = s.GetSession(ctx, []byte("h-short"))
		wantErr(t, "get at expiry", err, ErrNotFound)
		// The next session made deletes the expired one.
		if n := countRows(t, s, "session", "key_id = 'read1'"); n != 1 {
			t.Fatalf("%d sessions of read1 before the sweep, want 1", n)
		}
		_, err = s.CreateSession(ctx, Session{IDHash: []byte("h-later"), KeyID: "admin1", CSRF: "c-3", ExpiresAt: later.Add(time.Hour)})
		noErr(t, "create", err)
		if n := countRows(t, s, "session", "key_id = 'read1'"); n != 0 {
			t.Errorf("%d expired sessions left after a new one was made, want 0", n)
		}
	})

	t.Run("delete", func(t *testing.T) {
		_, err := s.CreateSession(ctx, Session{IDHash: []byte("h-bye"), KeyID: "admin1", CSRF: "c", ExpiresAt: now.Add(time.Hour)})
		noErr(t, "create", err)
		noErr(t, "delete", s.DeleteSession(ctx, []byte("h-bye")))
		_, err = s.GetSession(ctx, []byte("h-bye"))
		wantErr(t, "get deleted", err, ErrNotFound)
		noErr(t, "delete again", s.DeleteSession(ctx, []byte("h-bye")))
	})

	t.Run("a key keeps only its newest sessions", func(t *testing.T) {
		_, err := s.CreateKey(ctx, APIKey{ID: "admin2", Name: "loop", Hash: []byte{3}, Role: RoleAdmin})
		noErr(t, "create key", err)
		defer setClock(t, s, func() time.Time { return now })
		const extra = 4
		for i := range MaxSessionsPerKey + extra {
			at := now.Add(time.Duration(i) * time.Second)
			setClock(t, s, func() time.Time { return at })
			_, err := s.CreateSession(ctx, Session{IDHash: fmt.Appendf(nil, "loop-%d", i), KeyID: "admin2", CSRF: "c", ExpiresAt: at.Add(time.Hour)})
			noErr(t, "create", err)
		}
		if n := countRows(t, s, "session", "key_id = 'admin2'"); n != MaxSessionsPerKey {
			t.Fatalf("%d sessions of admin2, want %d", n, MaxSessionsPerKey)
		}
		for i := range MaxSessionsPerKey + extra {
			_, err := s.GetSession(ctx, fmt.Appendf(nil, "loop-%d", i))
			if i < extra {
				wantErr(t, fmt.Sprintf("oldest session %d", i), err, ErrNotFound)
			} else {
				noErr(t, fmt.Sprintf("session %d", i), err)
			}
		}
		if _, err := s.GetSession(ctx, []byte("h-admin")); err != nil {
			t.Errorf("another key's session was ended: %v", err)
		}
	})

	t.Run("revoking the key ends its sessions", func(t *testing.T) {
		noErr(t, "revoke", s.RevokeKey(ctx, "admin1"))
		_, err := s.GetSession(ctx, []byte("h-admin"))
		wantErr(t, "get after revoke", err, ErrNotFound)
	})
}
