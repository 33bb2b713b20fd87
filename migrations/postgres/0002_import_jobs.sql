-- Batch import jobs: a job per import (an archive, a folder, a manifest)
-- and one row per photo of it, so that a job survives a restart, resumes
-- where it stopped and reports what happened to every photo. It mirrors
-- sqlite/0002_import_jobs.sql.
--
-- Conventions as in 0001: times are bigint Unix nanoseconds, UTC; empty
-- optional strings are NULL; compared or ordered text is COLLATE "C"; JSON
-- is json, kept as given.

CREATE TABLE import_job (
    id          text COLLATE "C" NOT NULL PRIMARY KEY,
    collection  text COLLATE "C" NOT NULL REFERENCES collection (name) ON DELETE CASCADE,
    -- The API key that started the job; NULL for jobs started otherwise.
    key_id      text COLLATE "C",
    -- A JSON description of what is imported, stored as given.
    source      json    NOT NULL DEFAULT '{}',
    state       text    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    total       integer NOT NULL DEFAULT 0,
    done        integer NOT NULL DEFAULT 0,
    enrolled    integer NOT NULL DEFAULT 0,
    skipped     integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    -- Why the job failed as a whole (its items' reasons are on the items).
    error       text,
    created_at  bigint  NOT NULL,
    started_at  bigint,
    finished_at bigint,
    updated_at  bigint  NOT NULL,
    -- The counters move together, in one statement per batch of results;
    -- a mismatch would be a bug that made the reported counts wrong.
    CHECK (done = enrolled + skipped + failed AND done <= total)
);

-- Jobs of a collection newest first, and the index the cascade from a
-- deleted collection needs. The job table holds one row per import, so
-- the listing of all jobs and the start-up scan for unfinished ones read
-- it whole rather than keep more indexes.
CREATE INDEX import_job_collection ON import_job (collection, created_at, id);

-- subject_id and face_id are not foreign keys: an item's record outlives
-- the subject or face it enrolled, which may be deleted later. The
-- primary key is also the index of the cascade from a deleted job.
CREATE TABLE import_item (
    job_id       text COLLATE "C" NOT NULL REFERENCES import_job (id) ON DELETE CASCADE,
    seq          integer NOT NULL,
    path         text COLLATE "C" NOT NULL DEFAULT '',
    external_id  text COLLATE "C",
    display_name text    NOT NULL DEFAULT '',
    metadata     json,
    state        text    NOT NULL CHECK (state IN ('pending', 'enrolled', 'skipped', 'failed')),
    code         text COLLATE "C",
    reason       text,
    subject_id   text COLLATE "C",
    face_id      text COLLATE "C",
    PRIMARY KEY (job_id, seq)
);

-- The items a job still has to do (pending) and those to report (skipped,
-- failed), each state in seq order: the runner's queue and the failures
-- listing seek straight to their state's range, however many items of
-- other states the job holds (a failures page during a large job does not
-- walk its pending items). A listing of several states reads one range
-- per state and merges them (pgImportItemsQuery). Partial, because
-- enrolled items, normally nearly all of them, are never looked up by
-- state: their entries leave the index as they are recorded (and vacuum
-- reclaims them), so it shrinks to the failures as the job progresses.
-- Queries repeat "state <> 'enrolled'" so that the planner sees they
-- match the condition (TestPostgresImportItemQueriesUseTheirIndex).
CREATE INDEX import_item_open ON import_item (job_id, state, seq) WHERE state <> 'enrolled';
