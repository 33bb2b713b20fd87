-- Batch import jobs: a job per import (an archive, a folder, a manifest)
-- and one row per photo of it, so that a job survives a restart, resumes
-- where it stopped and reports what happened to every photo.
--
-- Conventions as in 0001: times are INTEGER unix nanoseconds, UTC; empty
-- optional strings are NULL.

CREATE TABLE import_job (
    id          TEXT    NOT NULL PRIMARY KEY,
    collection  TEXT    NOT NULL REFERENCES collection (name) ON DELETE CASCADE,
    -- The API key that started the job; NULL for jobs started otherwise.
    key_id      TEXT,
    -- A JSON description of what is imported, stored as given.
    source      TEXT    NOT NULL DEFAULT '{}',
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    total       INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    enrolled    INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    -- Why the job failed as a whole (its items' reasons are on the items).
    error       TEXT,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    updated_at  INTEGER NOT NULL,
    -- The counters move together, in one statement per batch of results;
    -- a mismatch would be a bug that made the reported counts wrong.
    CHECK (done = enrolled + skipped + failed AND done <= total)
);

-- Jobs of a collection newest first, and the index the cascade from a
-- deleted collection needs. The job table holds one row per import, so
-- the listing of all jobs and the start-up scan for unfinished ones read
-- it whole rather than keep more indexes.
CREATE INDEX import_job_collection ON import_job (collection, created_at, id);

-- WITHOUT ROWID: the rows live in the primary key's B-tree, in (job_id,
-- seq) order, so a job's items are written by appending and read in seq
-- order without a second copy of the key.
--
-- subject_id and face_id are not foreign keys: an item's record outlives
-- the subject or face it enrolled, which may be deleted later.
CREATE TABLE import_item (
    job_id       TEXT    NOT NULL REFERENCES import_job (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    path         TEXT    NOT NULL DEFAULT '',
    external_id  TEXT,
    display_name TEXT    NOT NULL DEFAULT '',
    metadata     TEXT,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'enrolled', 'skipped', 'failed')),
    code         TEXT,
    reason       TEXT,
    subject_id   TEXT,
    face_id      TEXT,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

-- The items a job still has to do (pending) and those to report (skipped,
-- failed), each state in seq order: the runner's queue and the failures
-- listing seek straight to their state's range, however many items of
-- other states the job holds (a failures page during a large job does not
-- walk its pending items). A listing of several states reads one range
-- per state and merges them (importItemsQuery). Partial, because enrolled
-- items, normally nearly all of them, are never looked up by state: their
-- entries leave the index as they are recorded, so it shrinks to the
-- failures as the job progresses. Queries repeat "state <> 'enrolled'",
-- without which SQLite does not use a partial index
-- (TestImportItemQueriesUseTheirIndex).
CREATE INDEX import_item_open ON import_item (job_id, state, seq) WHERE state <> 'enrolled';
