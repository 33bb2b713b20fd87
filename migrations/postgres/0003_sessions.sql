-- Dashboard sessions: a signed-in browser holds a random token in an
-- HttpOnly cookie; the store keeps its sha256 only, with the key it was
-- exchanged for (revoking or deleting the key ends its sessions: the
-- lookup joins the key and checks it is not revoked) and the session's
-- CSRF token, which every change made with the cookie must echo.
CREATE TABLE session (
    id_hash    bytea  NOT NULL PRIMARY KEY,
    key_id     text COLLATE "C" NOT NULL REFERENCES api_key (id) ON DELETE CASCADE,
    csrf       text COLLATE "C" NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL
);

-- Expired sessions are deleted as new ones are made.
CREATE INDEX session_expiry ON session (expires_at);
