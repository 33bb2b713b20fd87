package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgEvent is an event row as read.
type pgEvent struct {
	ID         int64   `db:"id"`
	At         int64   `db:"at"`
	Kind       string  `db:"kind"`
	KeyID      *string `db:"key_id"`
	Collection *string `db:"collection"`
	SubjectID  *string `db:"subject_id"`
	FaceID     *string `db:"face_id"`
	Outcome    string  `db:"outcome"`
	Detail     []byte  `db:"detail"`
}

// AppendEvent appends an audit event and returns it with its ID, and At
// set to now if it was zero.
//
// IDs come from an identity column: they increase in the order events are
// appended, but with concurrent writers not strictly in the order their
// transactions commit, so an event may become visible after one with a
// larger ID.
func (p *Postgres) AppendEvent(ctx context.Context, e Event) (Event, error) {
	if len(e.Detail) > 0 && !json.Valid(e.Detail) {
		return Event{}, fmt.Errorf("append event: %w: detail not JSON", ErrInvalid)
	}
	if e.At.IsZero() {
		e.At = p.timestamp()
	}
	e.At = fromNanos(toNanos(e.At))
	err := retry(ctx, func() error {
		return p.pool.QueryRow(ctx,
			`INSERT INTO event (at, kind, key_id, collection, subject_id, face_id, outcome, detail)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			toNanos(e.At), e.Kind, pgText(e.KeyID), pgText(e.Collection), pgText(e.SubjectID),
			pgText(e.FaceID), e.Outcome, pgJSON(e.Detail)).Scan(&e.ID)
	})
	if err != nil {
		return Event{}, fmt.Errorf("append event: %w", pgError(err))
	}
	return e, nil
}

// ListEvents returns the events matching q, newest (highest ID) first; the
// last ID of a page is the Before of the next.
func (p *Postgres) ListEvents(ctx context.Context, q EventQuery) ([]Event, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultEventPage
	}
	limit = min(limit, maxEventPage)
	var where []string
	var args pgArgs
	if q.Kind != "" {
		where = append(where, "kind = "+args.add(q.Kind))
	}
	if q.KeyID != "" {
		where = append(where, "key_id = "+args.add(q.KeyID))
	}
	if q.Collection != "" {
		where = append(where, "collection = "+args.add(q.Collection))
	}
	if !q.Since.IsZero() {
		where = append(where, "at >= "+args.add(toNanos(q.Since)))
	}
	if !q.Until.IsZero() {
		where = append(where, "at < "+args.add(toNanos(q.Until)))
	}
	if q.Before > 0 {
		where = append(where, "id < "+args.add(q.Before))
	}
	query := `SELECT id, at, kind, key_id, collection, subject_id, face_id, outcome, detail FROM event`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id DESC LIMIT ` + args.add(limit)
	rows, err := p.pool.Query(ctx, query, args...)
	var rs []pgEvent
	if err == nil {
		rs, err = pgx.CollectRows(rows, pgx.RowToStructByName[pgEvent])
	}
	if err != nil {
		return nil, fmt.Errorf("list events: %w", pgError(err))
	}
	var events []Event
	for _, r := range rs {
		events = append(events, Event{
			ID: r.ID, At: fromNanos(r.At), Kind: r.Kind, KeyID: textOf(r.KeyID), Collection: textOf(r.Collection),
			SubjectID: textOf(r.SubjectID), FaceID: textOf(r.FaceID), Outcome: r.Outcome, Detail: json.RawMessage(r.Detail),
		})
	}
	return events, nil
}

// foldCountsAbove is how many rows of differences a collection's counts
// may have in collection_count before CollectionStats folds them into one.
const foldCountsAbove = 64

// CollectionStats returns the counts of an active collection. Faces being
// deleted are not counted; LastEnrollAt is the creation time of its newest
// face; DescriptorBytes assumes, as the vector index does, that all the
// collection's descriptors have one length.
func (p *Postgres) CollectionStats(ctx context.Context, name string) (CollectionStats, error) {
	st := CollectionStats{Collection: name}
	var parts int64
	err := p.inReadTx(ctx, func(tx pgx.Tx) error {
		if err := pgActiveCollection(ctx, tx, name); err != nil {
			return err
		}
		var last *int64
		var oneDescriptor int64
		// The counts are the sum of the differences that triggers append
		// (migration 0007): counting the faces takes 220-380 ms at
		// 100,000. The descriptor volume is the count times the size of
		// the newest descriptor, rather than a sum that would read every
		// row.
		err := tx.QueryRow(ctx, `SELECT
				coalesce(sum(subjects), 0), coalesce(sum(faces), 0), coalesce(sum(pending_faces), 0), count(*),
				coalesce((SELECT octet_length(descriptor) FROM face
					WHERE collection = $1 AND state <> 'deleting' ORDER BY key DESC LIMIT 1), 0),
				(SELECT created_at FROM face WHERE collection = $1 AND state <> 'deleting' ORDER BY key DESC LIMIT 1)
			FROM collection_count WHERE collection = $1`,
			name).Scan(&st.Subjects, &st.Faces, &st.PendingFaces, &parts, &oneDescriptor, &last)
		if err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		st.DescriptorBytes = st.Faces * oneDescriptor
		st.LastEnrollAt = timeOf(last)
		return nil
	})
	if err != nil {
		return CollectionStats{}, fmt.Errorf("collection stats: %w", pgError(err))
	}
	if parts > foldCountsAbove {
		// Housekeeping: the counts are read. A fold that fails leaves
		// the rows for the next read to fold.
		_ = p.foldCounts(ctx, name)
	}
	return st, nil
}

// foldCounts replaces a collection's rows of count differences by their
// sum. Concurrent writers and folds keep the sum exact: the DELETE takes
// only rows its snapshot sees and no other fold has taken, and its sum
// replaces exactly those.
func (p *Postgres) foldCounts(ctx context.Context, name string) error {
	_, err := p.exec(ctx, `WITH gone AS (
			DELETE FROM collection_count WHERE collection = $1 RETURNING subjects, faces, pending_faces)
		INSERT INTO collection_count (collection, subjects, faces, pending_faces)
		SELECT $1, sum(subjects), sum(faces), sum(pending_faces) FROM gone HAVING count(*) > 0`, name)
	if err != nil {
		return fmt.Errorf("fold collection counts: %w", pgError(err))
	}
	return nil
}

// TopSubjects returns up to limit (default 10, at most 1000) subjects of a
// collection that have faces, most faces first (faces being deleted not
// counted), ties by subject id.
func (p *Postgres) TopSubjects(ctx context.Context, collection string, limit int) ([]SubjectCount, error) {
	if limit <= 0 {
		limit = defaultTop
	}
	limit = min(limit, maxTop)
	// The counts come from the faces of the collection (a face's
	// collection is its subject's), so subjects without faces are never
	// read.
	rows, err := p.pool.Query(ctx, `SELECT s.id, s.external_id, s.display_name, n.faces
		FROM (SELECT subject_id, count(*) AS faces FROM face
			WHERE collection = $1 AND state <> 'deleting' GROUP BY subject_id) n
		JOIN subject s ON s.id = n.subject_id
		ORDER BY n.faces DESC, s.id LIMIT $2`, collection, limit)
	var top []SubjectCount
	if err == nil {
		var c SubjectCount
		var ext *string
		_, err = pgx.ForEachRow(rows, []any{&c.SubjectID, &ext, &c.DisplayName, &c.Faces}, func() error {
			c.ExternalID = textOf(ext)
			top = append(top, c)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("top subjects: %w", pgError(err))
	}
	return top, nil
}

// EnrollmentsPerDay counts the faces enrolled into collection ("" for all
// collections) per UTC day from since (zero: from the start), oldest day
// first, leaving out days without enrollments.
//
// The counts come from the audit trail, events of kind EventEnroll with
// outcome OutcomeEnrolled (one per enrolled face), not from the face
// table: they must not shrink when faces or subjects are deleted later.
// Whole days are read from the enroll_day counters that a trigger keeps
// as those events are written (migration 0005).
func (p *Postgres) EnrollmentsPerDay(ctx context.Context, collection string, since time.Time) ([]DayCount, error) {
	first, partial, from, to := splitAt(since, dayNanos)
	var days []DayCount
	err := p.inReadTx(ctx, func(tx pgx.Tx) error {
		days = nil
		if partial {
			var args pgArgs
			where := "kind = " + args.add(EventEnroll) + " AND outcome = " + args.add(OutcomeEnrolled) +
				" AND at >= " + args.add(from) + " AND at < " + args.add(to)
			if collection != "" {
				where += " AND collection = " + args.add(collection)
			}
			var n int64
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM event WHERE `+where, args...).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				days = append(days, DayCount{Day: dayName(first - 1), Count: n})
			}
		}
		var args pgArgs
		where := "day >= " + args.add(first)
		if collection != "" {
			where += " AND collection = " + args.add(collection)
		}
		rows, err := tx.Query(ctx, `SELECT day, sum(count)::bigint FROM enroll_day WHERE `+where+` GROUP BY day ORDER BY day`, args...)
		if err != nil {
			return err
		}
		var day, n int64
		_, err = pgx.ForEachRow(rows, []any{&day, &n}, func() error {
			days = append(days, DayCount{Day: dayName(day), Count: n})
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("enrollments per day: %w", pgError(err))
	}
	return days, nil
}

// IdentificationStats describes a collection's identifications since a
// time (see IdentificationStats). Whole hours are read from the counters a
// trigger keeps as identify events are written (migration 0006); the
// part of an hour before them, if since falls inside one, from the events.
func (p *Postgres) IdentificationStats(ctx context.Context, collection string, since time.Time) (IdentificationStats, error) {
	first, partial, from, to := splitAt(since, hourNanos)
	var out IdentificationStats
	bins := map[int64]int64{}
	err := p.inReadTx(ctx, func(tx pgx.Tx) error {
		out, bins = IdentificationStats{}, map[int64]int64{}
		var b, n int64
		addBin := func() error { bins[b] += n; return nil }
		if partial {
			var faces int64
			err := tx.QueryRow(ctx, `SELECT count(*), coalesce(sum(identify_faces(detail)), 0)::bigint
				FROM event WHERE kind = 'identify' AND collection = $1 AND at >= $2 AND at < $3`, collection, from, to).Scan(&n, &faces)
			if err != nil {
				return err
			}
			if n > 0 {
				out.Hours = append(out.Hours, HourCount{Hour: hourOf(first - 1), Count: n, Faces: faces})
			}
			rows, err := tx.Query(ctx, `SELECT floor(d / $4)::bigint AS b, count(*)
				FROM event e CROSS JOIN LATERAL identify_distances(e.detail) d
				WHERE e.kind = 'identify' AND e.collection = $1 AND e.at >= $2 AND e.at < $3 GROUP BY b`,
				collection, from, to, DistanceBinWidth)
			if err != nil {
				return err
			}
			if _, err := pgx.ForEachRow(rows, []any{&b, &n}, addBin); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT hour, count, faces FROM identify_hour
			WHERE collection = $1 AND hour >= $2 ORDER BY hour`, collection, first)
		if err != nil {
			return err
		}
		var hour, faces int64
		_, err = pgx.ForEachRow(rows, []any{&hour, &n, &faces}, func() error {
			out.Hours = append(out.Hours, HourCount{Hour: hourOf(hour), Count: n, Faces: faces})
			return nil
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT bin, sum(count)::bigint FROM identify_bin WHERE collection = $1 AND hour >= $2 GROUP BY bin`,
			collection, first)
		if err != nil {
			return err
		}
		_, err = pgx.ForEachRow(rows, []any{&b, &n}, addBin)
		return err
	})
	if err != nil {
		return IdentificationStats{}, fmt.Errorf("identification stats: %w", pgError(err))
	}
	for _, h := range out.Hours {
		out.Identifications += h.Count
		out.Faces += h.Faces
	}
	out.Distances = distanceBins(bins, DistanceBinWidth)
	return out, nil
}
