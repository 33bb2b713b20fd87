package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Page sizes of ListEvents and TopSubjects.
const (
	defaultEventPage = 100
	maxEventPage     = 1000
	defaultTop       = 10
	maxTop           = 1000
)

// AppendEvent appends an audit event and returns it with its ID, and At
// set to now if it was zero.
func (s *SQLite) AppendEvent(ctx context.Context, e Event) (Event, error) {
	if len(e.Detail) > 0 && !json.Valid(e.Detail) {
		return Event{}, fmt.Errorf("append event: %w: detail not JSON", ErrInvalid)
	}
	if e.At.IsZero() {
		e.At = s.timestamp()
	}
	e.At = fromNanos(toNanos(e.At))
	err := s.write.QueryRowContext(ctx,
		`INSERT INTO event (at, kind, key_id, collection, subject_id, face_id, outcome, detail)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		toNanos(e.At), e.Kind, nullString(e.KeyID), nullString(e.Collection), nullString(e.SubjectID),
		nullString(e.FaceID), e.Outcome, nullJSON(e.Detail)).Scan(&e.ID)
	if err != nil {
		return Event{}, fmt.Errorf("append event: %w", err)
	}
	return e, nil
}

// ListEvents returns the events matching q, newest (highest ID) first; the
// last ID of a page is the Before of the next.
func (s *SQLite) ListEvents(ctx context.Context, q EventQuery) ([]Event, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultEventPage
	}
	limit = min(limit, maxEventPage)
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if q.Kind != "" {
		add("kind = ?", q.Kind)
	}
	if q.KeyID != "" {
		add("key_id = ?", q.KeyID)
	}
	if q.Collection != "" {
		add("collection = ?", q.Collection)
	}
	if !q.Since.IsZero() {
		add("at >= ?", toNanos(q.Since))
	}
	if !q.Until.IsZero() {
		add("at < ?", toNanos(q.Until))
	}
	if q.Before > 0 {
		add("id < ?", q.Before)
	}
	query := `SELECT id, at, kind, key_id, collection, subject_id, face_id, outcome, detail FROM event`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var events []Event
	for rows.Next() {
		var e Event
		var at int64
		var keyID, collection, subjectID, faceID, detail sql.NullString
		if err := rows.Scan(&e.ID, &at, &e.Kind, &keyID, &collection, &subjectID, &faceID, &e.Outcome, &detail); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.At = fromNanos(at)
		e.KeyID, e.Collection, e.SubjectID, e.FaceID = keyID.String, collection.String, subjectID.String, faceID.String
		e.Detail = rawJSON(detail)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return events, nil
}

// CollectionStats returns the counts of an active collection. Faces being
// deleted are not counted; LastEnrollAt is the creation time of its newest
// face; DescriptorBytes assumes, as the vector index does, that all the
// collection's descriptors have one length.
func (s *SQLite) CollectionStats(ctx context.Context, name string) (CollectionStats, error) {
	st := CollectionStats{Collection: name}
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM collection WHERE name = ? AND state = 'active'`, name).Scan(&one)
		if err != nil {
			return fmt.Errorf("collection %q: %w", name, notFound(err))
		}
		var last sql.NullInt64
		var oneDescriptor int64
		// The counts are kept by triggers (migration 0007): counting the
		// faces takes 60-100 ms at 100,000. The descriptor volume is the
		// count times the size of one descriptor, because a collection's
		// descriptors all have the dimension of its vector index.
		err = tx.QueryRowContext(ctx, `SELECT n.subjects, n.faces, n.pending_faces,
			coalesce((SELECT length(descriptor) FROM face WHERE collection = ?1 AND state <> 'deleting' ORDER BY key DESC LIMIT 1), 0),
			(SELECT created_at FROM face WHERE collection = ?1 AND state <> 'deleting' ORDER BY key DESC LIMIT 1)
			FROM collection_count n WHERE n.collection = ?1`,
			name).Scan(&st.Subjects, &st.Faces, &st.PendingFaces, &oneDescriptor, &last)
		if err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		st.DescriptorBytes = st.Faces * oneDescriptor
		st.LastEnrollAt = nullNanos(last)
		return nil
	})
	if err != nil {
		return CollectionStats{}, fmt.Errorf("collection stats: %w", err)
	}
	return st, nil
}

// TopSubjects returns up to limit (default 10, at most 1000) subjects of a
// collection that have faces, most faces first (faces being deleted not
// counted).
func (s *SQLite) TopSubjects(ctx context.Context, collection string, limit int) ([]SubjectCount, error) {
	if limit <= 0 {
		limit = defaultTop
	}
	limit = min(limit, maxTop)
	// MATERIALIZED counts each subject's faces once; inlined, the count
	// would be evaluated for the filter and again for the result.
	rows, err := s.read.QueryContext(ctx, `WITH counts AS MATERIALIZED (
			SELECT s.id, s.external_id, s.display_name,
				(SELECT count(*) FROM face f WHERE f.subject_id = s.id AND f.state <> 'deleting') AS n
			FROM subject s WHERE s.collection = ?
		)
		SELECT id, external_id, display_name, n FROM counts WHERE n > 0 ORDER BY n DESC, id LIMIT ?`, collection, limit)
	if err != nil {
		return nil, fmt.Errorf("top subjects: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var top []SubjectCount
	for rows.Next() {
		var c SubjectCount
		var ext sql.NullString
		if err := rows.Scan(&c.SubjectID, &ext, &c.DisplayName, &c.Faces); err != nil {
			return nil, fmt.Errorf("top subjects: %w", err)
		}
		c.ExternalID = ext.String
		top = append(top, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("top subjects: %w", err)
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
func (s *SQLite) EnrollmentsPerDay(ctx context.Context, collection string, since time.Time) ([]DayCount, error) {
	first, partial, from, to := splitAt(since, dayNanos)
	var days []DayCount
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		days = nil
		if partial {
			where, args := "kind = ? AND outcome = ? AND at >= ? AND at < ?", []any{EventEnroll, OutcomeEnrolled, from, to}
			if collection != "" {
				where, args = where+" AND collection = ?", append(args, collection)
			}
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM event WHERE `+where, args...).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				days = append(days, DayCount{Day: dayName(first - 1), Count: n})
			}
		}
		where, args := "day >= ?", []any{first}
		if collection != "" {
			where, args = where+" AND collection = ?", append(args, collection)
		}
		rows, err := tx.QueryContext(ctx, `SELECT day, sum(count) FROM enroll_day WHERE `+where+` GROUP BY day ORDER BY day`, args...)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var day, n int64
			if err := rows.Scan(&day, &n); err != nil {
				return err
			}
			days = append(days, DayCount{Day: dayName(day), Count: n})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("enrollments per day: %w", err)
	}
	return days, nil
}

// IdentificationStats describes a collection's identifications since a
// time (see IdentificationStats). Whole hours are read from the counters a
// trigger keeps as identify events are written (migration 0006); the
// part of an hour before them, if since falls inside one, from the events.
func (s *SQLite) IdentificationStats(ctx context.Context, collection string, since time.Time) (IdentificationStats, error) {
	first, partial, from, to := splitAt(since, hourNanos)
	var out IdentificationStats
	bins := map[int64]int64{}
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		out, bins = IdentificationStats{}, map[int64]int64{}
		if partial {
			var n, faces int64
			err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(json_extract(detail, '$.faces')), 0)
				FROM event INDEXED BY event_identified
				WHERE kind = 'identify' AND collection = ? AND at >= ? AND at < ?`, collection, from, to).Scan(&n, &faces)
			if err != nil {
				return err
			}
			if n > 0 {
				out.Hours = append(out.Hours, HourCount{Hour: hourOf(first - 1), Count: n, Faces: faces})
			}
			if err := scanBins(ctx, tx, bins, `SELECT CAST(j.value / ? AS INTEGER) AS b, count(*)
				FROM event e INDEXED BY event_identified, json_each(e.detail, '$.best_distances') j
				WHERE e.kind = 'identify' AND e.collection = ? AND e.at >= ? AND e.at < ? AND j.type IN ('real', 'integer')
				GROUP BY b`, DistanceBinWidth, collection, from, to); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT hour, count, faces FROM identify_hour
			WHERE collection = ? AND hour >= ? ORDER BY hour`, collection, first)
		if err != nil {
			return err
		}
		for rows.Next() {
			var h HourCount
			var hour int64
			if err := rows.Scan(&hour, &h.Count, &h.Faces); err != nil {
				_ = rows.Close()
				return err
			}
			h.Hour = hourOf(hour)
			out.Hours = append(out.Hours, h)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		return scanBins(ctx, tx, bins, `SELECT bin, sum(count) FROM identify_bin WHERE collection = ? AND hour >= ? GROUP BY bin`,
			collection, first)
	})
	if err != nil {
		return IdentificationStats{}, fmt.Errorf("identification stats: %w", err)
	}
	for _, h := range out.Hours {
		out.Identifications += h.Count
		out.Faces += h.Faces
	}
	out.Distances = distanceBins(bins, DistanceBinWidth)
	return out, nil
}

// scanBins adds a query's (bin, count) rows to bins.
func scanBins(ctx context.Context, tx *sql.Tx, bins map[int64]int64, query string, args ...any) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var b, n int64
		if err := rows.Scan(&b, &n); err != nil {
			return err
		}
		bins[b] += n
	}
	return rows.Err()
}
