package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// pgImportJob is an import job row as read (importJobColumns).
type pgImportJob struct {
	ID         string  `db:"id"`
	Collection string  `db:"collection"`
	KeyID      *string `db:"key_id"`
	Source     []byte  `db:"source"`
	State      string  `db:"state"`
	Total      int     `db:"total"`
	Done       int     `db:"done"`
	Enrolled   int     `db:"enrolled"`
	Skipped    int     `db:"skipped"`
	Failed     int     `db:"failed"`
	Error      *string `db:"error"`
	CreatedAt  int64   `db:"created_at"`
	StartedAt  *int64  `db:"started_at"`
	FinishedAt *int64  `db:"finished_at"`
	UpdatedAt  int64   `db:"updated_at"`
}

func (r pgImportJob) job() ImportJob {
	return ImportJob{
		ID: r.ID, Collection: r.Collection, KeyID: textOf(r.KeyID), Source: json.RawMessage(r.Source),
		State: ImportState(r.State), Total: r.Total, Done: r.Done, Enrolled: r.Enrolled, Skipped: r.Skipped,
		Failed: r.Failed, Error: textOf(r.Error), CreatedAt: fromNanos(r.CreatedAt),
		StartedAt: timeOf(r.StartedAt), FinishedAt: timeOf(r.FinishedAt), UpdatedAt: fromNanos(r.UpdatedAt),
	}
}

// pgImportItem is an import item row as read (importItemColumns).
type pgImportItem struct {
	JobID       string  `db:"job_id"`
	Seq         int     `db:"seq"`
	Path        string  `db:"path"`
	ExternalID  *string `db:"external_id"`
	DisplayName string  `db:"display_name"`
	Metadata    []byte  `db:"metadata"`
	State       string  `db:"state"`
	Code        *string `db:"code"`
	Reason      *string `db:"reason"`
	SubjectID   *string `db:"subject_id"`
	FaceID      *string `db:"face_id"`
}

func (r pgImportItem) item() ImportItem {
	return ImportItem{
		JobID: r.JobID, Seq: r.Seq, Path: r.Path, ExternalID: textOf(r.ExternalID), DisplayName: r.DisplayName,
		Metadata: json.RawMessage(pgJSON(r.Metadata)), State: ItemState(r.State), Code: textOf(r.Code),
		Reason: textOf(r.Reason), SubjectID: textOf(r.SubjectID), FaceID: textOf(r.FaceID),
	}
}

// pgImportJobs reads the rows of a query selecting importJobColumns.
func pgImportJobs(rows pgx.Rows, err error) ([]ImportJob, error) {
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[pgImportJob])
	if err != nil {
		return nil, err
	}
	var jobs []ImportJob
	for _, r := range rs {
		jobs = append(jobs, r.job())
	}
	return jobs, nil
}

// pgOneImportJob reads the single row of such a query; none is
// ErrNotFound.
func pgOneImportJob(rows pgx.Rows, err error) (ImportJob, error) {
	if err != nil {
		return ImportJob{}, err
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[pgImportJob])
	if err != nil {
		return ImportJob{}, pgNotFound(err)
	}
	return r.job(), nil
}

// pgImportItems reads the rows of a query selecting importItemColumns.
func pgImportItems(rows pgx.Rows, err error) ([]ImportItem, error) {
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[pgImportItem])
	if err != nil {
		return nil, err
	}
	var items []ImportItem
	for _, r := range rs {
		items = append(items, r.item())
	}
	return items, nil
}

// CreateImportJob creates an import job of a collection with its items,
// in one transaction, and returns the job. The job gets an id (unless
// given; one in use is ErrConflict), state queued and total = len(items);
// items get seq from their order and are pending, unless given as skipped
// or failed (with their code), which are counted as done at once. Item
// metadata and the source must be JSON or empty (ErrInvalid otherwise).
// The collection must be active (ErrNotFound otherwise).
//
// The items go in with COPY, row by row from the slice, without building
// a copy of a million items first.
func (p *Postgres) CreateImportJob(ctx context.Context, job ImportJob, items []ImportItem) (ImportJob, error) {
	job, err := newImportJob(job, items, p.timestamp())
	if err != nil {
		return ImportJob{}, fmt.Errorf("create import job: %w", err)
	}
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		var active bool
		err := tx.QueryRow(ctx, `SELECT state = 'active' FROM collection WHERE name = $1`, job.Collection).Scan(&active)
		if (err == nil && !active) || errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("collection %q: %w", job.Collection, ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO import_job (`+importJobColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, NULL, NULL, $12)`,
			job.ID, job.Collection, pgText(job.KeyID), string(job.Source), string(job.State),
			job.Total, job.Done, job.Enrolled, job.Skipped, job.Failed, toNanos(job.CreatedAt), toNanos(job.UpdatedAt))
		if err != nil {
			return fmt.Errorf("job %q: %w", job.ID, err)
		}
		columns := []string{"job_id", "seq", "path", "external_id", "display_name", "metadata", "state",
			"code", "reason", "subject_id", "face_id"}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"import_item"}, columns, pgx.CopyFromSlice(len(items), func(seq int) ([]any, error) {
			it := &items[seq]
			// metadata is copied as text: the json column's binary form
			// is its text, which pgx would otherwise marshal anew.
			return []any{job.ID, seq, it.Path, pgText(it.ExternalID), it.DisplayName, pgText(string(it.Metadata)),
				string(createdItemState(*it)), pgText(it.Code), pgText(it.Reason), pgText(it.SubjectID), pgText(it.FaceID)}, nil
		}))
		if err != nil {
			return fmt.Errorf("copy items: %w", err)
		}
		return nil
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("create import job: %w", pgError(err))
	}
	return job, nil
}

// GetImportJob returns an import job of an active collection.
func (p *Postgres) GetImportJob(ctx context.Context, id string) (ImportJob, error) {
	job, err := pgOneImportJob(p.pool.Query(ctx,
		`SELECT `+importJobColumns+` FROM import_job WHERE id = $1 AND `+jobOfActiveCollection, id))
	if err != nil {
		return ImportJob{}, fmt.Errorf("get import job %q: %w", id, pgError(err))
	}
	return job, nil
}

// ListImportJobs returns up to limit (default 100, at most 1000) import
// jobs of a collection, or of all active collections if collection is
// empty, newest first. A collection that is not active is ErrNotFound.
func (p *Postgres) ListImportJobs(ctx context.Context, collection string, limit int) ([]ImportJob, error) {
	var jobs []ImportJob
	err := p.inReadTx(ctx, func(tx pgx.Tx) error {
		if collection == "" {
			var err error
			jobs, err = pgImportJobs(tx.Query(ctx, `SELECT `+importJobColumns+` FROM import_job
				WHERE `+jobOfActiveCollection+` ORDER BY created_at DESC, id DESC LIMIT $1`, importJobLimit(limit)))
			return err
		}
		var active bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM collection WHERE name = $1 AND state = 'active')`,
			collection).Scan(&active)
		if err != nil {
			return err
		}
		if !active {
			return fmt.Errorf("collection %q: %w", collection, ErrNotFound)
		}
		jobs, err = pgImportJobs(tx.Query(ctx, `SELECT `+importJobColumns+` FROM import_job
			WHERE collection = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, collection, importJobLimit(limit)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list import jobs: %w", pgError(err))
	}
	return jobs, nil
}

// UnfinishedImportJobs returns the queued and running import jobs of
// active collections, oldest first: those to resume at start-up.
func (p *Postgres) UnfinishedImportJobs(ctx context.Context) ([]ImportJob, error) {
	jobs, err := pgImportJobs(p.pool.Query(ctx, `SELECT `+importJobColumns+` FROM import_job
		WHERE state IN ('queued', 'running') AND `+jobOfActiveCollection+` ORDER BY created_at, id`))
	if err != nil {
		return nil, fmt.Errorf("list unfinished import jobs: %w", pgError(err))
	}
	return jobs, nil
}

// pgLockImportJob reads a job of an active collection and locks its row
// until the transaction ends, so that the state it is found in is the
// state it is changed from.
func pgLockImportJob(ctx context.Context, tx pgx.Tx, id string) (ImportJob, error) {
	return pgOneImportJob(tx.Query(ctx, `SELECT `+importJobColumns+` FROM import_job
		WHERE id = $1 AND `+jobOfActiveCollection+` FOR UPDATE`, id))
}

// StartImportJob moves a queued or running job to running and returns it.
// The first start sets StartedAt; a start after a restart keeps it. A
// finished job (done, failed, cancelled) is ErrConflict.
func (p *Postgres) StartImportJob(ctx context.Context, id string) (ImportJob, error) {
	var job ImportJob
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := pgLockImportJob(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur.State.Finished() {
			return fmt.Errorf("%w: job is %s already", ErrConflict, cur.State)
		}
		now := toNanos(p.timestamp())
		job, err = pgOneImportJob(tx.Query(ctx, `UPDATE import_job
			SET state = 'running', started_at = coalesce(started_at, $1), updated_at = $1
			WHERE id = $2 RETURNING `+importJobColumns, now, id))
		return err
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("start import job %q: %w", id, pgError(err))
	}
	return job, nil
}

// FinishImportJob moves a queued or running job to a final state (done,
// failed or cancelled; another is ErrInvalid), with errText as its error
// (why it failed; may be empty), and returns it. A job finished already,
// whatever its state, is ErrConflict, and so is done while items are
// still pending: done means every item has its outcome.
func (p *Postgres) FinishImportJob(ctx context.Context, id string, state ImportState, errText string) (ImportJob, error) {
	if err := checkFinalState(state); err != nil {
		return ImportJob{}, fmt.Errorf("finish import job %q: %w", id, err)
	}
	var job ImportJob
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := pgLockImportJob(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := finishRefusal(cur.State, state, cur.Done, cur.Total); err != nil {
			return err
		}
		now := toNanos(p.timestamp())
		job, err = pgOneImportJob(tx.Query(ctx, `UPDATE import_job
			SET state = $1, error = $2, finished_at = $3, updated_at = $3
			WHERE id = $4 RETURNING `+importJobColumns, string(state), pgText(errText), now, id))
		return err
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("finish import job %q: %w", id, pgError(err))
	}
	// An import appends rows of count differences by the thousand (one
	// per new subject); folding them now spares the first reader of the
	// collection's statistics. A failed fold only leaves them to
	// CollectionStats, so its error does not fail the finished job.
	_ = p.foldCounts(ctx, job.Collection)
	return job, nil
}

// PendingImportItems returns up to limit (default 100, at most 10000)
// pending items of a job with seq > afterSeq (-1 for the first page), in
// seq order: the work a job has left.
func (p *Postgres) PendingImportItems(ctx context.Context, jobID string, afterSeq, limit int) ([]ImportItem, error) {
	var items []ImportItem
	err := p.inReadTx(ctx, func(tx pgx.Tx) error {
		if err := pgJobExists(ctx, tx, jobID); err != nil {
			return err
		}
		var err error
		items, err = pgImportItems(tx.Query(ctx, pgPendingImportItemsQuery, jobID, pgSeq(afterSeq), importItemLimit(limit)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list pending import items of %q: %w", jobID, pgError(err))
	}
	return items, nil
}

// ImportItems returns up to limit (default 100, at most 10000) items of a
// job in the given states (all if none; an unknown state is ErrInvalid)
// with seq > afterSeq (-1 for the first page), in seq order: the failures
// report is ImportItems(job, {failed, skipped}, ...).
func (p *Postgres) ImportItems(ctx context.Context, jobID string, states []ItemState, afterSeq, limit int) ([]ImportItem, error) {
	if err := checkItemStates(states); err != nil {
		return nil, fmt.Errorf("list import items of %q: %w", jobID, err)
	}
	query, args := pgImportItemsQuery(jobID, states, afterSeq, limit)
	var items []ImportItem
	err := p.inReadTx(ctx, func(tx pgx.Tx) error {
		if err := pgJobExists(ctx, tx, jobID); err != nil {
			return err
		}
		var err error
		items, err = pgImportItems(tx.Query(ctx, query, args...))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list import items of %q: %w", jobID, pgError(err))
	}
	return items, nil
}

// pgPendingImportItemsQuery is the runner's queue: a seek into the
// pending range of import_item_open. The redundant "state <> 'enrolled'"
// repeats the condition of that partial index word for word, so that the
// planner need not prove that "state = 'pending'" implies it
// (TestPostgresImportItemQueriesUseTheirIndex).
const pgPendingImportItemsQuery = `SELECT ` + importItemColumns + ` FROM import_item
	WHERE job_id = $1 AND state = 'pending' AND state <> 'enrolled' AND seq > $2 ORDER BY seq LIMIT $3`

// pgImportItemsQuery builds ImportItems's query, as importItemsQuery does
// SQLite's: one range of import_item_open per state, each cut at the
// limit, merged in seq order; the primary key in seq order for a listing
// that includes enrolled items.
func pgImportItemsQuery(jobID string, states []ItemState, afterSeq, limit int) (string, []any) {
	args := pgArgs{}
	job, after, lim := args.add(jobID), args.add(pgSeq(afterSeq)), args.add(importItemLimit(limit))
	if !openStatesOnly(states) {
		query := `SELECT ` + importItemColumns + ` FROM import_item WHERE job_id = ` + job + ` AND seq > ` + after
		if len(states) > 0 {
			texts := make([]string, len(states))
			for i, st := range states {
				texts[i] = string(st)
			}
			query += ` AND state = ANY(` + args.add(texts) + `::text[])`
		}
		return query + ` ORDER BY seq LIMIT ` + lim, args
	}
	var arms []string
	for _, st := range distinctStates(states) {
		arms = append(arms, `SELECT `+importItemColumns+` FROM import_item
			WHERE job_id = `+job+` AND state = `+args.add(string(st))+` AND state <> 'enrolled' AND seq > `+after+`
			ORDER BY seq LIMIT `+lim)
	}
	if len(arms) == 1 {
		return arms[0], args
	}
	return `(` + strings.Join(arms, `) UNION ALL (`) + `) ORDER BY seq LIMIT ` + lim, args
}

// pgSeq clamps a seq cursor to the integer column's range, which the
// cursor of a caller may exceed (and PostgreSQL would refuse).
func pgSeq(seq int) int32 {
	return int32(max(min(seq, 1<<31-1), -1<<31))
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
//
// Concurrent recorders of one item: the second waits for the first's row
// lock and, at READ COMMITTED, then finds the item no longer pending, so
// it neither changes nor counts it; the job's counters are incremented in
// place, by one statement that also waits for the row. The outcomes are
// joined in seq order, which with the plan a batch gets (a nested loop
// over the primary key) locks the items in seq order, so that two batches
// wait for each other rather than deadlock; a deadlock under another plan
// is retried like a serialization failure.
func (p *Postgres) RecordImportItems(ctx context.Context, jobID string, items []ImportItem) (ImportJob, error) {
	items, err := importResults(items)
	if err != nil {
		return ImportJob{}, fmt.Errorf("record import items of %q: %w", jobID, err)
	}
	var job ImportJob
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		if err := pgJobExists(ctx, tx, jobID); err != nil {
			return err
		}
		c, err := pgRecordItems(ctx, tx, jobID, items)
		if err != nil {
			return err
		}
		job, err = p.addImportCounts(ctx, tx, jobID, c)
		return err
	})
	if err != nil {
		return ImportJob{}, fmt.Errorf("record import items of %q: %w", jobID, pgError(err))
	}
	return job, nil
}

// pgRecordItems writes the outcomes of items still pending (see
// RecordImportItems), given in seq order, and returns what they add to
// the job's counts.
func pgRecordItems(ctx context.Context, tx pgx.Tx, jobID string, items []ImportItem) (importCounts, error) {
	var c importCounts
	if len(items) == 0 {
		return c, nil
	}
	seqs := make([]int32, len(items))
	states := make([]string, len(items))
	codes, reasons, subjects, faces := make([]*string, len(items)), make([]*string, len(items)),
		make([]*string, len(items)), make([]*string, len(items))
	for i, it := range items {
		seqs[i], states[i] = pgSeq(it.Seq), string(it.State)
		codes[i], reasons[i], subjects[i], faces[i] = pgText(it.Code), pgText(it.Reason), pgText(it.SubjectID), pgText(it.FaceID)
	}
	err := tx.QueryRow(ctx, `WITH result AS (
			SELECT * FROM unnest($2::integer[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
				AS r (seq, state, code, reason, subject_id, face_id)
			ORDER BY seq
		), recorded AS (
			UPDATE import_item i
			SET state = r.state, code = r.code, reason = r.reason, subject_id = r.subject_id, face_id = r.face_id
			FROM result r
			WHERE i.job_id = $1 AND i.seq = r.seq AND i.state = 'pending'
			RETURNING i.state
		)
		SELECT count(*),
			count(*) FILTER (WHERE state = 'enrolled'),
			count(*) FILTER (WHERE state = 'skipped'),
			count(*) FILTER (WHERE state = 'failed')
		FROM recorded`,
		jobID, seqs, states, codes, reasons, subjects, faces).Scan(&c.done, &c.enrolled, &c.skipped, &c.failed)
	if err != nil {
		return c, err
	}
	if c.done < len(items) {
		// Recorded already, or no such item: only the second is an
		// error, and this count happens only when items were redone.
		var known int
		err := tx.QueryRow(ctx, `SELECT count(*) FROM import_item WHERE job_id = $1 AND seq = ANY($2)`,
			jobID, seqs).Scan(&known)
		if err != nil {
			return c, err
		}
		if known < len(items) {
			return c, fmt.Errorf("%d of %d items: %w", len(items)-known, len(items), ErrNotFound)
		}
	}
	return c, nil
}

// addImportCounts adds c to the job's counts and returns the job.
func (p *Postgres) addImportCounts(ctx context.Context, tx pgx.Tx, jobID string, c importCounts) (ImportJob, error) {
	if c.done == 0 {
		// Nothing changed: the job's updated_at stays.
		return pgOneImportJob(tx.Query(ctx, `SELECT `+importJobColumns+` FROM import_job WHERE id = $1`, jobID))
	}
	return pgOneImportJob(tx.Query(ctx, `UPDATE import_job
		SET done = done + $1, enrolled = enrolled + $2, skipped = skipped + $3, failed = failed + $4, updated_at = $5
		WHERE id = $6 RETURNING `+importJobColumns,
		c.done, c.enrolled, c.skipped, c.failed, toNanos(p.timestamp()), jobID))
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
// Items recorded already (by a run that was redone, or by another replica
// running the same job: batches of one job are serialised) are left as
// they are, and nothing is enrolled for them: a batch written once is
// never written twice, so the counts of a resumed job stay exact. An
// unknown job or item is ErrNotFound, an outcome with a face whose item
// has no external id ErrInvalid, and then nothing of the batch is written.
func (p *Postgres) EnrollImportBatch(ctx context.Context, jobID string, outcomes []ImportOutcome) (ImportBatch, error) {
	outcomes, err := importOutcomes(outcomes)
	if err != nil {
		return ImportBatch{}, fmt.Errorf("enroll import batch of %q: %w", jobID, err)
	}
	var out ImportBatch
	err = p.inTx(ctx, func(tx pgx.Tx) error {
		out = ImportBatch{}
		var collection string
		var keyID *string
		// The job's row is locked first: batches of one job (two replicas
		// running it) then run one after the other. Items alone, locked in
		// seq order, would not do: each transaction also creates subjects
		// and faces the other may need next, and they would deadlock.
		err := tx.QueryRow(ctx, `SELECT collection, key_id FROM import_job WHERE id = $1 AND `+jobOfActiveCollection+`
			FOR UPDATE`, jobID).Scan(&collection, &keyID)
		if err != nil {
			return fmt.Errorf("job %q: %w", jobID, pgNotFound(err))
		}
		for _, o := range outcomes {
			// pgSeq: a seq beyond the integer column is no item, as in
			// SQLite, rather than an argument PostgreSQL refuses.
			items, err := pgImportItems(tx.Query(ctx, `SELECT `+importItemColumns+` FROM import_item
				WHERE job_id = $1 AND seq = $2 FOR UPDATE`, jobID, pgSeq(o.Seq)))
			if err != nil {
				return fmt.Errorf("item %d: %w", o.Seq, err)
			}
			if len(items) == 0 {
				return fmt.Errorf("item %d: %w", o.Seq, ErrNotFound)
			}
			it := items[0]
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
			sub, err := p.importSubject(ctx, tx, collection, it)
			if err != nil {
				return fmt.Errorf("item %d: %w", o.Seq, err)
			}
			f := *o.Face
			f.SubjectID, f.Collection = sub, collection
			face, created, err := p.insertFace(ctx, tx, f)
			it, status, err := importedItem(it, sub, face, created, err)
			if err != nil {
				return fmt.Errorf("item %d: %w", o.Seq, err)
			}
			out.Items = append(out.Items, it)
			if status == "" {
				continue
			}
			_, err = tx.Exec(ctx,
				`INSERT INTO event (at, kind, key_id, collection, subject_id, face_id, outcome, detail)
				 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				toNanos(p.timestamp()), EventEnroll, keyID, collection, sub, face.ID, status,
				string(importEnrollDetail(status, jobID, o.Seq)))
			if err != nil {
				return fmt.Errorf("item %d: audit: %w", o.Seq, err)
			}
			out.Faces = append(out.Faces, face)
		}
		c, err := pgRecordItems(ctx, tx, jobID, out.Items)
		if err != nil {
			return err
		}
		out.Job, err = p.addImportCounts(ctx, tx, jobID, c)
		return err
	})
	if err != nil {
		return ImportBatch{}, fmt.Errorf("enroll import batch of %q: %w", jobID, pgError(err))
	}
	return out, nil
}

// importSubject returns the id of the subject of an import item, creating
// it if the collection has none of that external id.
func (p *Postgres) importSubject(ctx context.Context, tx pgx.Tx, collection string, it ImportItem) (string, error) {
	find := func() (string, error) {
		var id string
		err := tx.QueryRow(ctx, `SELECT id FROM subject WHERE collection = $1 AND external_id = $2`,
			collection, it.ExternalID).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", nil
		}
		return id, err
	}
	if id, err := find(); id != "" || err != nil {
		return id, err
	}
	meta, err := metadataText(it.Metadata)
	if err != nil {
		return "", fmt.Errorf("subject %q: %w", it.ExternalID, err)
	}
	id, now := uuid.NewString(), toNanos(p.timestamp())
	// ON CONFLICT: another transaction created the subject meanwhile; at
	// READ COMMITTED the look-up after it sees that subject.
	tag, err := tx.Exec(ctx,
		`INSERT INTO subject (id, collection, external_id, display_name, name_fold, metadata, created_at, updated_at)
		 VALUES ($1, $2, $3, $4, $5, $6::json, $7, $8)
		 ON CONFLICT (collection, external_id) DO NOTHING`,
		id, collection, it.ExternalID, it.DisplayName, foldName(it.DisplayName), meta, now, now)
	if err != nil {
		return "", fmt.Errorf("create subject %q: %w", it.ExternalID, err)
	}
	if tag.RowsAffected() == 1 {
		return id, nil
	}
	if id, err := find(); id != "" || err != nil {
		return id, err
	}
	return "", &retryableError{fmt.Errorf("subject %q came and went", it.ExternalID)}
}

// pgJobExists returns ErrNotFound unless the job exists in an active
// collection.
func pgJobExists(ctx context.Context, tx pgx.Tx, jobID string) error {
	var exists bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM import_job WHERE id = $1 AND `+jobOfActiveCollection+`)`,
		jobID).Scan(&exists)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("job %q: %w", jobID, ErrNotFound)
	}
	return nil
}
