-- Initial schema of the embedded metadata store.
--
-- Times are INTEGER unix nanoseconds, UTC. Empty optional strings
-- (subject.external_id, face.image_sha256, api_key.collection, ...) are
-- stored as NULL so that UNIQUE constraints ignore them.

CREATE TABLE collection (
    name       TEXT    NOT NULL PRIMARY KEY,
    threshold  REAL    NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deleting')),
    created_at INTEGER NOT NULL
);

CREATE TABLE subject (
    id           TEXT    NOT NULL PRIMARY KEY,
    collection   TEXT    NOT NULL REFERENCES collection (name) ON DELETE CASCADE,
    external_id  TEXT,
    display_name TEXT    NOT NULL DEFAULT '',
    -- Lower-cased display_name, computed by the application: SQLite's
    -- lower() and LIKE fold ASCII only.
    name_fold    TEXT    NOT NULL DEFAULT '',
    metadata     TEXT    NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (collection, external_id)
);

-- Pages of subjects walk this index in (created_at, id) order; the search
-- columns are part of it so that a search filters index entries without
-- reading table rows, since a substring match cannot seek.
CREATE INDEX subject_page ON subject (collection, created_at, id, name_fold, external_id);

-- key is the vector-index key. AUTOINCREMENT guarantees that a key is never
-- handed out twice, even after the row with the largest key was deleted:
-- an index snapshot older than the store may still hold the old key.
CREATE TABLE face (
    key          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    subject_id   TEXT    NOT NULL REFERENCES subject (id) ON DELETE CASCADE,
    collection   TEXT    NOT NULL,
    -- float32 little endian, 4 bytes per dimension.
    descriptor   BLOB    NOT NULL,
    model_id     TEXT    NOT NULL,
    box_x0       INTEGER NOT NULL,
    box_y0       INTEGER NOT NULL,
    box_x1       INTEGER NOT NULL,
    box_y1       INTEGER NOT NULL,
    landmarks    TEXT,
    quality      TEXT,
    image_sha256 TEXT,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'indexed', 'deleting')),
    created_at   INTEGER NOT NULL,
    UNIQUE (subject_id, image_sha256)
);

-- One index serves the per-collection scans: key lists (covering, in key
-- order, state filtered inside the index), rebuild pages (seek to the
-- cursor key) and counts by state.
CREATE INDEX face_collection_key ON face (collection, key, state);

-- Faces counted per subject (face counts, top subjects) without reading
-- the rows.
CREATE INDEX face_subject_state ON face (subject_id, state);

-- The reconciler's work queue: pending and deleting faces are few, so a
-- partial index keeps it small however large the gallery grows.
CREATE INDEX face_unsettled ON face (state, key) WHERE state <> 'indexed';

CREATE TABLE api_key (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL DEFAULT '',
    hash         BLOB    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'enroll', 'identify', 'read')),
    collection   TEXT,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

CREATE TABLE event (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    key_id     TEXT,
    collection TEXT,
    subject_id TEXT,
    face_id    TEXT,
    outcome    TEXT    NOT NULL DEFAULT '',
    detail     TEXT
);

-- Events are listed newest first, that is by descending id; each filter
-- column leads an index ending in id so a filtered page stops after Limit
-- entries instead of sorting every match.
CREATE INDEX event_kind ON event (kind, id);
CREATE INDEX event_key ON event (key_id, id);
CREATE INDEX event_collection ON event (collection, id);

-- Enrollments per day read only successful enrollment events.
CREATE INDEX event_enrolled ON event (collection, at) WHERE kind = 'enroll' AND outcome = 'enrolled';
