-- Initial schema of the scale-out metadata store. It mirrors
-- sqlite/0001_init.sql so that both stores behave alike:
--
-- Times are bigint Unix nanoseconds, UTC: timestamptz keeps microseconds,
-- and the store returns the nanoseconds it was given (subject page cursors
-- carry them).
--
-- Empty optional strings (subject.external_id, face.image_sha256,
-- api_key.collection, ...) are NULL, so that UNIQUE constraints ignore them.
--
-- Text that is compared, ordered or unique has COLLATE "C": byte order, as
-- in SQLite, whatever the database's default locale (orders of names and
-- ids, page cursors), and cheaper comparisons in the indexes.
--
-- JSON columns are json, not jsonb: json keeps the text as given, which the
-- store returns unchanged.

CREATE TABLE collection (
    name       text COLLATE "C" NOT NULL PRIMARY KEY,
    threshold  double precision NOT NULL,
    state      text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deleting')),
    created_at bigint NOT NULL
);

CREATE TABLE subject (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    collection   text COLLATE "C" NOT NULL REFERENCES collection (name) ON DELETE CASCADE,
    external_id  text COLLATE "C",
    display_name text NOT NULL DEFAULT '',
    -- Lower-cased display_name, computed by the application: PostgreSQL's
    -- lower() depends on the collation (ASCII only under "C"), and both
    -- stores must fold alike.
    name_fold    text COLLATE "C" NOT NULL DEFAULT '',
    metadata     json NOT NULL DEFAULT '{}',
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL,
    UNIQUE (collection, external_id)
);

-- Pages of subjects walk this index in (created_at, id) order, seeking to
-- the cursor with a row comparison.
CREATE INDEX subject_page ON subject (collection, created_at, id);

-- key is the vector-index key. An identity column draws from a sequence,
-- which never hands out a value twice, even after the row with the largest
-- key was deleted: an index snapshot older than the store may still hold
-- the old key. ALWAYS refuses keys given in an INSERT; bulk imports draw
-- theirs from the sequence and COPY them.
CREATE TABLE face (
    key          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           text COLLATE "C" NOT NULL UNIQUE,
    subject_id   text COLLATE "C" NOT NULL REFERENCES subject (id) ON DELETE CASCADE,
    collection   text COLLATE "C" NOT NULL,
    -- float32 little endian, 4 bytes per dimension, as in SQLite: 512
    -- bytes for 128 dimensions, stored inline (under the TOAST threshold).
    descriptor   bytea   NOT NULL,
    model_id     text    NOT NULL,
    box_x0       integer NOT NULL,
    box_y0       integer NOT NULL,
    box_x1       integer NOT NULL,
    box_y1       integer NOT NULL,
    landmarks    json,
    quality      json,
    image_sha256 text COLLATE "C",
    state        text    NOT NULL CHECK (state IN ('pending', 'indexed', 'deleting')),
    created_at   bigint  NOT NULL,
    -- Also the index that cascading deletes of subjects use.
    UNIQUE (subject_id, image_sha256)
);

-- One index serves the per-collection scans: key lists (index-only, in key
-- order, state filtered inside the index), rebuild pages (seek to the
-- cursor key) and counts by state.
CREATE INDEX face_collection_key ON face (collection, key, state);

-- Faces counted per subject (face counts) without reading the rows.
CREATE INDEX face_subject_state ON face (subject_id, state);

-- The reconciler's work queue: pending and deleting faces are few, so a
-- partial index keeps it small however large the gallery grows. Its
-- queries repeat the condition, so that the planner sees they match it.
CREATE INDEX face_unsettled ON face (state, key) WHERE state <> 'indexed';

CREATE TABLE api_key (
    id           text COLLATE "C" NOT NULL PRIMARY KEY,
    name         text   NOT NULL DEFAULT '',
    hash         bytea  NOT NULL,
    role         text   NOT NULL CHECK (role IN ('admin', 'enroll', 'identify', 'read')),
    collection   text COLLATE "C",
    created_at   bigint NOT NULL,
    last_used_at bigint,
    revoked_at   bigint
);

CREATE TABLE event (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         bigint NOT NULL,
    kind       text COLLATE "C" NOT NULL,
    key_id     text COLLATE "C",
    collection text COLLATE "C",
    subject_id text COLLATE "C",
    face_id    text COLLATE "C",
    outcome    text NOT NULL DEFAULT '',
    detail     json
);

-- Events are listed newest first, that is by descending id; each filter
-- column leads an index ending in id so a filtered page stops after Limit
-- entries instead of sorting every match.
CREATE INDEX event_kind ON event (kind, id);
CREATE INDEX event_key ON event (key_id, id);
CREATE INDEX event_collection ON event (collection, id);

-- Enrollments per day read only successful enrollment events.
CREATE INDEX event_enrolled ON event (collection, at) WHERE kind = 'enroll' AND outcome = 'enrolled';
