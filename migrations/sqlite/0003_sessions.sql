-- Dashboard sessions: a signed-in browser holds a random token in an
-- HttpOnly cookie; the store keeps its sha256 only, with the key it was
-- exchanged for (revoking or deleting the key ends its sessions: the
-- lookup joins the key and checks it is not revoked) and the session's
-- CSRF token, which every change made with the cookie must echo.
CREATE TABLE session (
    id_hash    BLOB    NOT NULL PRIMARY KEY,
    key_id     TEXT    NOT NULL REFERENCES api_key (id) ON DELETE CASCADE,
    csrf       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Expired sessions are deleted as new ones are made.
CREATE INDEX session_expiry ON session (expires_at);
