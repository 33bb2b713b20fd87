package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Page sizes of ListSubjects.
const (
	defaultSubjectPage = 50
	maxSubjectPage     = 1000
)

// subjectColumns selects a subject with its face count (faces not being
// deleted) from "subject s".
const subjectColumns = `s.id, s.collection, s.external_id, s.display_name, s.metadata,
	s.created_at, s.updated_at,
	(SELECT count(*) FROM face f WHERE f.subject_id = s.id AND f.state <> 'deleting')`

// CreateSubject adds subject s to its collection, generating its ID when
// empty, and returns it. The collection must be active (ErrNotFound
// otherwise); an external id already used in the collection, or an ID
// already used, is ErrConflict. Nil metadata is stored as {}.
func (s *SQLite) CreateSubject(ctx context.Context, sub Subject) (Subject, error) {
	if sub.ID == "" {
		sub.ID = uuid.NewString()
	}
	meta, err := metadataText(sub.Metadata)
	if err != nil {
		return Subject{}, fmt.Errorf("create subject: %w", err)
	}
	sub.Metadata = json.RawMessage(meta)
	sub.CreatedAt = s.timestamp()
	sub.UpdatedAt = sub.CreatedAt
	sub.FaceCount = 0
	res, err := s.write.ExecContext(ctx,
		`INSERT INTO subject (id, collection, external_id, display_name, name_fold, metadata, created_at, updated_at)
		 SELECT ?, ?, ?, ?, ?, ?, ?, ?
		 WHERE EXISTS (SELECT 1 FROM collection WHERE name = ? AND state = 'active')`,
		sub.ID, sub.Collection, nullString(sub.ExternalID), sub.DisplayName, foldName(sub.DisplayName),
		meta, toNanos(sub.CreatedAt), toNanos(sub.UpdatedAt), sub.Collection)
	if isUniqueViolation(err) {
		return Subject{}, fmt.Errorf("create subject %q: %w", sub.ExternalID, ErrConflict)
	}
	if err != nil {
		return Subject{}, fmt.Errorf("create subject: %w", err)
	}
	if err := oneRow(res); err != nil {
		return Subject{}, fmt.Errorf("create subject: collection %q: %w", sub.Collection, err)
	}
	return sub, nil
}

// GetSubject returns a subject of an active collection with its face
// count.
func (s *SQLite) GetSubject(ctx context.Context, collection, id string) (Subject, error) {
	sub, err := getSubject(ctx, s.read, collection, "s.id = ?", id)
	if err != nil {
		return Subject{}, fmt.Errorf("get subject %q: %w", id, err)
	}
	return sub, nil
}

// GetSubjectByExternalID returns the subject of an active collection that
// has the client's key externalID.
func (s *SQLite) GetSubjectByExternalID(ctx context.Context, collection, externalID string) (Subject, error) {
	if externalID == "" {
		return Subject{}, fmt.Errorf("get subject by external id: %w", ErrNotFound)
	}
	sub, err := getSubject(ctx, s.read, collection, "s.external_id = ?", externalID)
	if err != nil {
		return Subject{}, fmt.Errorf("get subject by external id %q: %w", externalID, err)
	}
	return sub, nil
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// getSubject reads the subject of an active collection matching cond (a
// condition on "s" with one argument).
func getSubject(ctx context.Context, q querier, collection, cond string, arg any) (Subject, error) {
	sub, err := scanSubject(q.QueryRowContext(ctx,
		`SELECT `+subjectColumns+`
		 FROM subject s JOIN collection c ON c.name = s.collection
		 WHERE s.collection = ? AND c.state = 'active' AND `+cond,
		collection, arg))
	return sub, notFound(err)
}

// ListSubjects returns a page of the subjects of an active collection in
// creation order (ties by id), and the cursor of the next page, "" after
// the last. Search matches a case-insensitive substring of the display
// name or a prefix of the external id.
func (s *SQLite) ListSubjects(ctx context.Context, q SubjectQuery) ([]Subject, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultSubjectPage
	}
	limit = min(limit, maxSubjectPage)
	where := []string{"s.collection = ?"}
	args := []any{q.Collection}
	if q.After != "" {
		at, id, err := decodeSubjectCursor(q.After)
		if err != nil {
			return nil, "", fmt.Errorf("list subjects: %w", err)
		}
		// A row value comparison seeks in the (collection, created_at, id)
		// index.
		where = append(where, "(s.created_at, s.id) > (?, ?)")
		args = append(args, at, id)
	}
	if q.Search != "" {
		where = append(where, "(instr(s.name_fold, ?) > 0 OR substr(s.external_id, 1, ?) = ?)")
		args = append(args, foldName(q.Search), utf8.RuneCountInString(q.Search), q.Search)
	}
	// One more row than asked tells whether there is a next page.
	args = append(args, limit+1)
	query := `SELECT ` + subjectColumns + ` FROM subject s
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY s.created_at, s.id LIMIT ?`

	var subs []Subject
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM collection WHERE name = ? AND state = 'active'`, q.Collection).Scan(&one)
		if err != nil {
			return fmt.Errorf("collection %q: %w", q.Collection, notFound(err))
		}
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			sub, err := scanSubject(rows)
			if err != nil {
				return err
			}
			subs = append(subs, sub)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, "", fmt.Errorf("list subjects: %w", err)
	}
	next := ""
	if len(subs) > limit {
		subs = subs[:limit]
		last := subs[limit-1]
		next = encodeSubjectCursor(toNanos(last.CreatedAt), last.ID)
	}
	return subs, next, nil
}

// UpdateSubject applies patch p to a subject of an active collection,
// bumps UpdatedAt and returns the subject. An external id used by another
// subject of the collection is ErrConflict.
func (s *SQLite) UpdateSubject(ctx context.Context, collection, id string, p SubjectPatch) (Subject, error) {
	sets := []string{"updated_at = ?"}
	args := []any{toNanos(s.timestamp())}
	if p.ExternalID != nil {
		sets = append(sets, "external_id = ?")
		args = append(args, nullString(*p.ExternalID))
	}
	if p.DisplayName != nil {
		sets = append(sets, "display_name = ?", "name_fold = ?")
		args = append(args, *p.DisplayName, foldName(*p.DisplayName))
	}
	if p.Metadata != nil {
		meta, err := metadataText(p.Metadata)
		if err != nil {
			return Subject{}, fmt.Errorf("update subject: %w", err)
		}
		sets = append(sets, "metadata = ?")
		args = append(args, meta)
	}
	args = append(args, id, collection, collection)
	var sub Subject
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE subject SET `+strings.Join(sets, ", ")+`
			WHERE id = ? AND collection = ?
			AND EXISTS (SELECT 1 FROM collection WHERE name = ? AND state = 'active')`, args...)
		if isUniqueViolation(err) {
			return ErrConflict
		}
		if err != nil {
			return err
		}
		if err := oneRow(res); err != nil {
			return err
		}
		sub, err = getSubject(ctx, tx, collection, "s.id = ?", id)
		return err
	})
	if err != nil {
		return Subject{}, fmt.Errorf("update subject %q: %w", id, err)
	}
	return sub, nil
}

// MarkSubjectDeleting marks every face of a subject deleting and returns
// their keys (including faces marked by an earlier, interrupted call), for
// the caller to remove from the vector index before DeleteSubject.
func (s *SQLite) MarkSubjectDeleting(ctx context.Context, collection, id string) ([]uint64, error) {
	var keys []uint64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM subject WHERE id = ? AND collection = ?`, id, collection).Scan(&one)
		if err != nil {
			return notFound(err)
		}
		_, err = tx.ExecContext(ctx,
			`UPDATE face SET state = 'deleting' WHERE subject_id = ? AND state <> 'deleting'`, id)
		if err != nil {
			return err
		}
		keys, err = queryKeys(ctx, tx, `SELECT key FROM face WHERE subject_id = ? ORDER BY key`, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mark subject %q deleting: %w", id, err)
	}
	return keys, nil
}

// DeleteSubject deletes a subject and, by cascade, its faces. It does not
// look at the collection's state: it finishes deletions the reconciler
// resumes.
func (s *SQLite) DeleteSubject(ctx context.Context, collection, id string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM subject WHERE id = ? AND collection = ?`, id, collection)
	if err != nil {
		return fmt.Errorf("delete subject %q: %w", id, err)
	}
	if err := oneRow(res); err != nil {
		return fmt.Errorf("delete subject %q: %w", id, err)
	}
	return nil
}

// queryKeys runs a query returning one column of face keys.
func queryKeys(ctx context.Context, q querier, query string, args ...any) ([]uint64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var keys []uint64
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, uint64(k))
	}
	return keys, rows.Err()
}

func scanSubject(r rowScanner) (Subject, error) {
	var sub Subject
	var ext sql.NullString
	var meta string
	var created, updated int64
	if err := r.Scan(&sub.ID, &sub.Collection, &ext, &sub.DisplayName, &meta, &created, &updated, &sub.FaceCount); err != nil {
		return Subject{}, err
	}
	sub.ExternalID = ext.String
	sub.Metadata = json.RawMessage(meta)
	sub.CreatedAt = fromNanos(created)
	sub.UpdatedAt = fromNanos(updated)
	return sub, nil
}

// metadataText validates subject metadata and returns it as stored: {}
// when empty.
func metadataText(m json.RawMessage) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	if !json.Valid(m) {
		return "", fmt.Errorf("metadata: %w: not JSON", ErrInvalid)
	}
	return string(m), nil
}

// foldName is the form display names are searched in. SQLite folds only
// ASCII, so folding happens here, for stored names and search terms alike.
func foldName(s string) string {
	return strings.ToLower(s)
}

// encodeSubjectCursor makes the opaque cursor that follows the subject
// created at nanos with id.
func encodeSubjectCursor(nanos int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(nanos, 10) + ":" + id))
}

// decodeSubjectCursor is the inverse of encodeSubjectCursor.
func decodeSubjectCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", fmt.Errorf("cursor: %w", ErrInvalid)
	}
	at, id, ok := strings.Cut(string(b), ":")
	nanos, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", fmt.Errorf("cursor: %w", ErrInvalid)
	}
	return nanos, id, nil
}
