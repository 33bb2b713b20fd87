package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// importJobColumns selects an import job in the order scanImportJob reads.
const importJobColumns = `id, collection, key_id, source, state, total, done, enrolled, skipped, failed,
	error, created_at, started_at, finished_at, updated_at`

// importItemColumns selects an import item in the order scanImportItem
// reads.
const importItemColumns = `job_id, seq, path, external_id, display_name, metadata, state, code, reason,
	subject_id, face_id`

// jobOfActiveCollection restricts import_job rows to those of active
// collections: the jobs of a collection being deleted are gone for every
// reader and writer, as its subjects are.
const jobOfActiveCollection = `collection IN (SELECT name FROM collection WHERE state = 'active')`

// CreateImportJob creates an import job of a collection with its items,
// in one transaction, and returns the job. The job gets an id (unless
// given; one in use is ErrConflict), state queued and total = len(items);
// items get seq from their order and are pending, unless given as skipped
// or failed (with their code), which are counted as done at once. Item
// metadata and the source must be JSON or empty (ErrInvalid otherwise).
// The collection must be active (ErrNotFound otherwise).
//
// The items go in through prepared multi-row INSERTs in the one write
// transaction: a million items take seconds (about 7 s here), not the
// hours of one commit (and fsync) per item.
func (s *SQLite) CreateImportJob(ctx context.Context, job ImportJob, items []ImportItem) (ImportJob, error) {
	job, err := newImportJob(job, items, s.timestamp())
	if err != nil {
		return ImportJob{}, fmt.Errorf("create import job: %w", err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var state string
		err := tx.QueryRowContext(ctx, `SELECT state FROM collection WHERE name = ?`, job.Collection).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && state != "active") {
			return fmt.Errorf("collection %q: %w", job.Collection, ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO import_job (`+importJobColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL, ?)`,
			job.ID, job.Collection, nullString(job.KeyID), string(job.Source), string(job.State),
			job.Total, job.Done, job.Enrolled, job.Skipped, job.Failed, toNanos(job.CreatedAt), toNanos(job.UpdatedAt))
		if isUniqueViolation(err) {
			return fmt.Errorf("job %q: %w", job.ID, ErrConflict)
		}
		if err != nil {
			return err
		}
		return insertImportItems(ctx, tx, job.ID, items)
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("create import job: %w", err)
	}
	return job, nil
}

// importItemRows is the number of items one INSERT statement writes.
// Each statement costs a fixed overhead in the driver (binding, stepping
// through the C-to-Go translated library) on top of the rows: with 64 rows
// per statement, creating a job inserts about 1.4 times as many items per
// second as with one, 110-145k against 80-100k items/s here
// (BenchmarkCreateImportJob100k). 64 rows bind 704 values, far below
// SQLite's limit of 32766.
const importItemRows = 64

// insertImportItems writes a new job's items: full statements of
// importItemRows rows, prepared once, then one statement for the rest.
func insertImportItems(ctx context.Context, tx *sql.Tx, jobID string, items []ImportItem) error {
	const row = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insert := func(n int) string {
		return `INSERT INTO import_item (` + importItemColumns + `) VALUES ` + strings.Repeat(row+`, `, n-1) + row
	}
	args := make([]any, 0, 11*importItemRows)
	appendRow := func(seq int, it ImportItem) {
		args = append(args, jobID, seq, it.Path, nullString(it.ExternalID), it.DisplayName,
			nullJSON(it.Metadata), string(createdItemState(it)), nullString(it.Code), nullString(it.Reason),
			nullString(it.SubjectID), nullString(it.FaceID))
	}
	full := len(items) / importItemRows * importItemRows
	if full > 0 {
		stmt, err := tx.PrepareContext(ctx, insert(importItemRows))
		if err != nil {
			return err
		}
		defer func() { _ = stmt.Close() }()
		for start := 0; start < full; start += importItemRows {
			args = args[:0]
			for seq := start; seq < start+importItemRows; seq++ {
				appendRow(seq, items[seq])
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				return fmt.Errorf("items %d to %d: %w", start, start+importItemRows-1, err)
			}
		}
	}
	if full == len(items) {
		return nil
	}
	args = args[:0]
	for seq := full; seq < len(items); seq++ {
		appendRow(seq, items[seq])
	}
	if _, err := tx.ExecContext(ctx, insert(len(items)-full), args...); err != nil {
		return fmt.Errorf("items %d to %d: %w", full, len(items)-1, err)
	}
	return nil
}

// GetImportJob returns an import job of an active collection.
func (s *SQLite) GetImportJob(ctx context.Context, id string) (ImportJob, error) {
	job, err := scanImportJob(s.read.QueryRowContext(ctx,
		`SELECT `+importJobColumns+` FROM import_job WHERE id = ? AND `+jobOfActiveCollection, id))
	if err != nil {
		return ImportJob{}, fmt.Errorf("get import job %q: %w", id, notFound(err))
	}
	return job, nil
}

// ListImportJobs returns up to limit (default 100, at most 1000) import
// jobs of a collection, or of all active collections if collection is
// empty, newest first. A collection that is not active is ErrNotFound.
func (s *SQLite) ListImportJobs(ctx context.Context, collection string, limit int) ([]ImportJob, error) {
	var jobs []ImportJob
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		query := `SELECT ` + importJobColumns + ` FROM import_job WHERE ` + jobOfActiveCollection
		args := []any{}
		if collection != "" {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM collection WHERE name = ? AND state = 'active'`, collection).Scan(&one)
			if err != nil {
				return fmt.Errorf("collection %q: %w", collection, notFound(err))
			}
			query = `SELECT ` + importJobColumns + ` FROM import_job WHERE collection = ?`
			args = append(args, collection)
		}
		var err error
		jobs, err = queryImportJobs(ctx, tx, query+` ORDER BY created_at DESC, id DESC LIMIT ?`,
			append(args, importJobLimit(limit))...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list import jobs: %w", err)
	}
	return jobs, nil
}

// UnfinishedImportJobs returns the queued and running import jobs of
// active collections, oldest first: those to resume at start-up.
func (s *SQLite) UnfinishedImportJobs(ctx context.Context) ([]ImportJob, error) {
	jobs, err := queryImportJobs(ctx, s.read, `SELECT `+importJobColumns+` FROM import_job
		WHERE state IN ('queued', 'running') AND `+jobOfActiveCollection+` ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list unfinished import jobs: %w", err)
	}
	return jobs, nil
}

// StartImportJob moves a queued or running job to running and returns it.
// The first start sets StartedAt; a start after a restart keeps it. A
// finished job (done, failed, cancelled) is ErrConflict.
func (s *SQLite) StartImportJob(ctx context.Context, id string) (ImportJob, error) {
	var job ImportJob
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanImportJob(tx.QueryRowContext(ctx,
			`SELECT `+importJobColumns+` FROM import_job WHERE id = ? AND `+jobOfActiveCollection, id))
		if err != nil {
			return notFound(err)
		}
		if cur.State.Finished() {
			return fmt.Errorf("%w: job is %s already", ErrConflict, cur.State)
		}
		now := toNanos(s.timestamp())
		job, err = scanImportJob(tx.QueryRowContext(ctx, `UPDATE import_job
			SET state = 'running', started_at = coalesce(started_at, ?), updated_at = ?
			WHERE id = ? RETURNING `+importJobColumns, now, now, id))
		return err
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("start import job %q: %w", id, err)
	}
	return job, nil
}

// FinishImportJob moves a queued or running job to a final state (done,
// failed or cancelled; another is ErrInvalid), with errText as its error
// (why it failed; may be empty), and returns it. A job finished already,
// whatever its state, is ErrConflict, and so is done while items are
// still pending: done means every item has its outcome.
func (s *SQLite) FinishImportJob(ctx context.Context, id string, state ImportState, errText string) (ImportJob, error) {
	if err := checkFinalState(state); err != nil {
		return ImportJob{}, fmt.Errorf("finish import job %q: %w", id, err)
	}
	var job ImportJob
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanImportJob(tx.QueryRowContext(ctx,
			`SELECT `+importJobColumns+` FROM import_job WHERE id = ? AND `+jobOfActiveCollection, id))
		if err != nil {
			return notFound(err)
		}
		if err := finishRefusal(cur.State, state, cur.Done, cur.Total); err != nil {
			return err
		}
		now := toNanos(s.timestamp())
		job, err = scanImportJob(tx.QueryRowContext(ctx, `UPDATE import_job
			SET state = ?, error = ?, finished_at = ?, updated_at = ?
			WHERE id = ? RETURNING `+importJobColumns, string(state), nullString(errText), now, now, id))
		return err
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("finish import job %q: %w", id, err)
	}
	return job, nil
}

// PendingImportItems returns up to limit (default 100, at most 10000)
// pending items of a job with seq > afterSeq (-1 for the first page), in
// seq order: the work a job has left.
func (s *SQLite) PendingImportItems(ctx context.Context, jobID string, afterSeq, limit int) ([]ImportItem, error) {
	var items []ImportItem
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		if err := sqliteJobExists(ctx, tx, jobID); err != nil {
			return err
		}
		var err error
		items, err = queryImportItems(ctx, tx, pendingImportItemsQuery, jobID, afterSeq, importItemLimit(limit))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list pending import items of %q: %w", jobID, err)
	}
	return items, nil
}

// ImportItems returns up to limit (default 100, at most 10000) items of a
// job in the given states (all if none; an unknown state is ErrInvalid)
// with seq > afterSeq (-1 for the first page), in seq order: the failures
// report is ImportItems(job, {failed, skipped}, ...).
func (s *SQLite) ImportItems(ctx context.Context, jobID string, states []ItemState, afterSeq, limit int) ([]ImportItem, error) {
	if err := checkItemStates(states); err != nil {
		return nil, fmt.Errorf("list import items of %q: %w", jobID, err)
	}
	query, args := importItemsQuery(jobID, states, afterSeq, limit)
	var items []ImportItem
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		if err := sqliteJobExists(ctx, tx, jobID); err != nil {
			return err
		}
		var err error
		items, err = queryImportItems(ctx, tx, query, args...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list import items of %q: %w", jobID, err)
	}
	return items, nil
}

// pendingImportItemsQuery is the runner's queue: a seek into the pending
// range of import_item_open. Without statistics (the store never runs
// ANALYZE) SQLite prefers the primary key, which also yields seq order
// but walks every item recorded already, hence INDEXED BY. The redundant
// "state <> 'enrolled'" repeats the condition of that partial index,
// which SQLite uses only when the query's WHERE contains it
// (TestImportItemQueriesUseTheirIndex).
const pendingImportItemsQuery = `SELECT ` + importItemColumns + ` FROM import_item INDEXED BY import_item_open
	WHERE job_id = ? AND state = 'pending' AND state <> 'enrolled' AND seq > ? ORDER BY seq LIMIT ?`

// openImportItemsQuery reads the items of one state that is never
// enrolled, as pendingImportItemsQuery does, the state bound.
const openImportItemsQuery = `SELECT ` + importItemColumns + ` FROM import_item INDEXED BY import_item_open
	WHERE job_id = ? AND state = ? AND state <> 'enrolled' AND seq > ? ORDER BY seq LIMIT ?`

// importItemsQuery builds ImportItems's query. Items of states that are
// never enrolled are read from import_item_open, one range per state,
// each cut at the limit before they are merged in seq order, so a page
// costs its size times the number of states whatever the job's size. A
// listing that includes enrolled items (or all items) walks the primary
// key in seq order instead, where they are most of the rows.
func importItemsQuery(jobID string, states []ItemState, afterSeq, limit int) (string, []any) {
	limit = importItemLimit(limit)
	if !openStatesOnly(states) {
		query := `SELECT ` + importItemColumns + ` FROM import_item WHERE job_id = ? AND seq > ?`
		args := []any{jobID, afterSeq}
		if len(states) > 0 {
			query += ` AND state IN (` + placeholders(len(states)) + `)`
			for _, st := range states {
				args = append(args, string(st))
			}
		}
		return query + ` ORDER BY seq LIMIT ?`, append(args, limit)
	}
	states = distinctStates(states)
	if len(states) == 1 {
		return openImportItemsQuery, []any{jobID, string(states[0]), afterSeq, limit}
	}
	var arms []string
	var args []any
	for _, st := range states {
		arms = append(arms, `SELECT * FROM (`+openImportItemsQuery+`)`)
		args = append(args, jobID, string(st), afterSeq, limit)
	}
	return strings.Join(arms, ` UNION ALL `) + ` ORDER BY seq LIMIT ?`, append(args, limit)
}

// RecordImportItems records the outcomes of items of a job (each
// identified by its Seq, with its State enrolled, skipped or failed, and
// Code, Reason, SubjectID, FaceID) in one transaction and returns the job
// with its counters updated. Only items still pending change, and each
// is counted once: an outcome recorded already, say by a run before a
// crash whose result was redone, is ignored, which keeps the counts of a
// resumed job exact. A job's items may be recorded after it finished (an
// enrollment in flight when it was cancelled). An unknown job or item is
// ErrNotFound, and nothing of the batch is recorded.
func (s *SQLite) RecordImportItems(ctx context.Context, jobID string, items []ImportItem) (ImportJob, error) {
	items, err := importResults(items)
	if err != nil {
		return ImportJob{}, fmt.Errorf("record import items of %q: %w", jobID, err)
	}
	var job ImportJob
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if err := sqliteJobExists(ctx, tx, jobID); err != nil {
			return err
		}
		c, err := recordItems(ctx, tx, jobID, items)
		if err != nil {
			return err
		}
		job, err = s.addImportCounts(ctx, tx, jobID, c)
		return err
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("record import items of %q: %w", jobID, err)
	}
	return job, nil
}

// recordItems writes the outcomes of items still pending (see
// RecordImportItems) and returns what they add to the job's counts.
func recordItems(ctx context.Context, tx *sql.Tx, jobID string, items []ImportItem) (importCounts, error) {
	var c importCounts
	if len(items) == 0 {
		return c, nil
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE import_item
		SET state = ?, code = ?, reason = ?, subject_id = ?, face_id = ?
		WHERE job_id = ? AND seq = ? AND state = 'pending'`)
	if err != nil {
		return c, err
	}
	defer func() { _ = stmt.Close() }()
	for _, it := range items {
		res, err := stmt.ExecContext(ctx, string(it.State), nullString(it.Code), nullString(it.Reason),
			nullString(it.SubjectID), nullString(it.FaceID), jobID, it.Seq)
		if err != nil {
			return c, fmt.Errorf("item %d: %w", it.Seq, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return c, fmt.Errorf("item %d: %w", it.Seq, err)
		}
		if n == 1 {
			c.add(it.State)
			continue
		}
		// Recorded already, or no such item: only the second is an
		// error, and this lookup happens only for redone items.
		var one int
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM import_item WHERE job_id = ? AND seq = ?`, jobID, it.Seq).Scan(&one)
		if err != nil {
			return c, fmt.Errorf("item %d: %w", it.Seq, notFound(err))
		}
	}
	return c, nil
}

// addImportCounts adds c to the job's counts and returns the job.
func (s *SQLite) addImportCounts(ctx context.Context, tx *sql.Tx, jobID string, c importCounts) (ImportJob, error) {
	if c.done == 0 {
		// Nothing changed: the job's updated_at stays.
		return scanImportJob(tx.QueryRowContext(ctx, `SELECT `+importJobColumns+` FROM import_job WHERE id = ?`, jobID))
	}
	return scanImportJob(tx.QueryRowContext(ctx, `UPDATE import_job
		SET done = done + ?, enrolled = enrolled + ?, skipped = skipped + ?, failed = failed + ?, updated_at = ?
		WHERE id = ? RETURNING `+importJobColumns,
		c.done, c.enrolled, c.skipped, c.failed, toNanos(s.timestamp()), jobID))
}

// EnrollImportBatch writes a batch of an import job's results in one
// transaction: for each outcome with a face, the face is enrolled for the
// item's subject, which is created (with the item's display name and
// metadata) if the collection has no subject of that external id; the
// face is stored pending, or, if the subject has a face from the same
// image already, that face is kept and the item skipped as ItemExists (or
// failed as ItemBeingDeleted if that face is being deleted). Every item's
// outcome is recorded as RecordImportItems does, and each face gets an
// audit event (EventEnroll, outcome "enrolled" or "exists").
//
// Items recorded already (by a run that was redone) are left as they are,
// and nothing is enrolled for them: a batch written once is never
// written twice, so the counts of a resumed job stay exact. An unknown
// job or item is ErrNotFound, an outcome with a face whose item has no
// external id ErrInvalid, and then nothing of the batch is written.
func (s *SQLite) EnrollImportBatch(ctx context.Context, jobID string, outcomes []ImportOutcome) (ImportBatch, error) {
	outcomes, err := importOutcomes(outcomes)
	if err != nil {
		return ImportBatch{}, fmt.Errorf("enroll import batch of %q: %w", jobID, err)
	}
	var out ImportBatch
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		out = ImportBatch{}
		var collection, keyID sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT collection, key_id FROM import_job WHERE id = ? AND `+jobOfActiveCollection,
			jobID).Scan(&collection, &keyID)
		if err != nil {
			return fmt.Errorf("job %q: %w", jobID, notFound(err))
		}
		getItem, err := tx.PrepareContext(ctx, `SELECT `+importItemColumns+` FROM import_item WHERE job_id = ? AND seq = ?`)
		if err != nil {
			return err
		}
		defer func() { _ = getItem.Close() }()
		for _, o := range outcomes {
			it, err := scanImportItem(getItem.QueryRowContext(ctx, jobID, o.Seq))
			if err != nil {
				return fmt.Errorf("item %d: %w", o.Seq, notFound(err))
			}
			if it.State != ItemPending {
				continue
			}
			if o.Face == nil {
				it.State, it.Code, it.Reason = o.State, o.Code, o.Reason
				out.Items = append(out.Items, it)
				continue
			}
			if it.ExternalID == "" {
				return fmt.Errorf("item %d: %w: a face for an item without a subject", o.Seq, ErrInvalid)
			}
			sub, err := s.importSubject(ctx, tx, collection.String, it)
			if err != nil {
				return fmt.Errorf("item %d: %w", o.Seq, err)
			}
			f := *o.Face
			f.SubjectID, f.Collection = sub, collection.String
			face, created, err := s.insertFace(ctx, tx, f)
			it, status, err := importedItem(it, sub, face, created, err)
			if err != nil {
				return fmt.Errorf("item %d: %w", o.Seq, err)
			}
			out.Items = append(out.Items, it)
			if status == "" {
				continue
			}
			_, err = tx.ExecContext(ctx,
				`INSERT INTO event (at, kind, key_id, collection, subject_id, face_id, outcome, detail)
				 VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				toNanos(s.timestamp()), EventEnroll, keyID, collection.String, sub, face.ID, status,
				string(importEnrollDetail(status, jobID, o.Seq)))
			if err != nil {
				return fmt.Errorf("item %d: audit: %w", o.Seq, err)
			}
			out.Faces = append(out.Faces, face)
		}
		c, err := recordItems(ctx, tx, jobID, out.Items)
		if err != nil {
			return err
		}
		out.Job, err = s.addImportCounts(ctx, tx, jobID, c)
		return err
	})
	if err != nil {
		return ImportBatch{}, fmt.Errorf("enroll import batch of %q: %w", jobID, err)
	}
	return out, nil
}

// importSubject returns the id of the subject of an import item, creating
// it if the collection has none of that external id.
func (s *SQLite) importSubject(ctx context.Context, tx *sql.Tx, collection string, it ImportItem) (string, error) {
	var id string
	err := tx.QueryRowContext(ctx, `SELECT id FROM subject WHERE collection = ? AND external_id = ?`,
		collection, it.ExternalID).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("subject %q: %w", it.ExternalID, err)
	}
	meta, err := metadataText(it.Metadata)
	if err != nil {
		return "", fmt.Errorf("subject %q: %w", it.ExternalID, err)
	}
	id, now := uuid.NewString(), toNanos(s.timestamp())
	_, err = tx.ExecContext(ctx,
		`INSERT INTO subject (id, collection, external_id, display_name, name_fold, metadata, created_at, updated_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		id, collection, it.ExternalID, it.DisplayName, foldName(it.DisplayName), meta, now, now)
	if err != nil {
		return "", fmt.Errorf("create subject %q: %w", it.ExternalID, err)
	}
	return id, nil
}

// sqliteJobExists returns ErrNotFound unless the job exists in an active
// collection.
func sqliteJobExists(ctx context.Context, tx *sql.Tx, jobID string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM import_job WHERE id = ? AND `+jobOfActiveCollection, jobID).Scan(&one)
	if err != nil {
		return fmt.Errorf("job %q: %w", jobID, notFound(err))
	}
	return nil
}

// sqlQuerier is what a connection pool and a transaction have in common.
type sqlQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryImportJobs runs a query selecting importJobColumns.
func queryImportJobs(ctx context.Context, q sqlQuerier, query string, args ...any) ([]ImportJob, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var jobs []ImportJob
	for rows.Next() {
		job, err := scanImportJob(rows)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, job)
	}
	return jobs, rows.Err()
}

// queryImportItems runs a query selecting importItemColumns.
func queryImportItems(ctx context.Context, q sqlQuerier, query string, args ...any) ([]ImportItem, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var items []ImportItem
	for rows.Next() {
		it, err := scanImportItem(rows)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

// scanImportItem reads a row of importItemColumns.
func scanImportItem(r rowScanner) (ImportItem, error) {
	var it ImportItem
	var externalID, metadata, code, reason, subjectID, faceID sql.NullString
	var state string
	if err := r.Scan(&it.JobID, &it.Seq, &it.Path, &externalID, &it.DisplayName, &metadata, &state,
		&code, &reason, &subjectID, &faceID); err != nil {
		return ImportItem{}, err
	}
	it.ExternalID, it.Metadata, it.State = externalID.String, json.RawMessage(rawJSON(metadata)), ItemState(state)
	it.Code, it.Reason, it.SubjectID, it.FaceID = code.String, reason.String, subjectID.String, faceID.String
	return it, nil
}

// scanImportJob reads a row of importJobColumns.
func scanImportJob(r rowScanner) (ImportJob, error) {
	var job ImportJob
	var keyID, errText sql.NullString
	var source, state string
	var created, updated int64
	var started, finished sql.NullInt64
	if err := r.Scan(&job.ID, &job.Collection, &keyID, &source, &state, &job.Total, &job.Done, &job.Enrolled,
		&job.Skipped, &job.Failed, &errText, &created, &started, &finished, &updated); err != nil {
		return ImportJob{}, err
	}
	job.KeyID, job.Source, job.State, job.Error = keyID.String, json.RawMessage(source), ImportState(state), errText.String
	job.CreatedAt, job.UpdatedAt = fromNanos(created), fromNanos(updated)
	job.StartedAt, job.FinishedAt = nullNanos(started), nullNanos(finished)
	return job, nil
}
