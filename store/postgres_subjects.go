package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// pgSubjectColumns selects a subject with its face count (faces not being
// deleted) from "subject s", in the fields of pgSubject.
const pgSubjectColumns = `s.id, s.collection, s.external_id, s.display_name, s.metadata,
	s.created_at, s.updated_at,
	(SELECT count(*) FROM face f WHERE f.subject_id = s.id AND f.state <> 'deleting') AS face_count`

// pgSubject is a subject row as read.
type pgSubject struct {
	ID          string  `db:"id"`
	Collection  string  `db:"collection"`
	ExternalID  *string `db:"external_id"`
	DisplayName string  `db:"display_name"`
	Metadata    []byte  `db:"metadata"`
	CreatedAt   int64   `db:"created_at"`
	UpdatedAt   int64   `db:"updated_at"`
	FaceCount   int64   `db:"face_count"`
}

func (r pgSubject) subject() Subject {
	return Subject{
		ID: r.ID, Collection: r.Collection, ExternalID: textOf(r.ExternalID), DisplayName: r.DisplayName,
		Metadata: json.RawMessage(r.Metadata), FaceCount: int(r.FaceCount),
		CreatedAt: fromNanos(r.CreatedAt), UpdatedAt: fromNanos(r.UpdatedAt),
	}
}

// CreateSubject adds subject s to its collection, generating its ID when
// empty, and returns it. The collection must be active (ErrNotFound
// otherwise); an external id already used in the collection, or an ID
// already used, is ErrConflict. Nil metadata is stored as {}.
func (p *Postgres) CreateSubject(ctx context.Context, sub Subject) (Subject, error) {
	if sub.ID == "" {
		sub.ID = uuid.NewString()
	}
	meta, err := metadataText(sub.Metadata)
	if err != nil {
		return Subject{}, fmt.Errorf("create subject: %w", pgError(err))
	}
	sub.Metadata = json.RawMessage(meta)
	sub.CreatedAt = p.timestamp()
	sub.UpdatedAt = sub.CreatedAt
	sub.FaceCount = 0
	// The collection's row supplies the collection column only if the
	// collection is active. The parameters are typed: in INSERT ...
	// SELECT, PostgreSQL does not infer them from the target columns.
	n, err := p.exec(ctx,
		`INSERT INTO subject (id, collection, external_id, display_name, name_fold, metadata, created_at, updated_at)
		 SELECT $1::text, name, $3::text, $4::text, $5::text, $6::json, $7::bigint, $8::bigint
		 FROM collection WHERE name = $2 AND state = 'active'`,
		sub.ID, sub.Collection, pgText(sub.ExternalID), sub.DisplayName, foldName(sub.DisplayName),
		meta, toNanos(sub.CreatedAt), toNanos(sub.UpdatedAt))
	if err != nil {
		return Subject{}, fmt.Errorf("create subject %q: %w", sub.ExternalID, pgError(err))
	}
	if n == 0 {
		return Subject{}, fmt.Errorf("create subject: collection %q: %w", sub.Collection, ErrNotFound)
	}
	return sub, nil
}

// GetSubject returns a subject of an active collection with its face
// count.
func (p *Postgres) GetSubject(ctx context.Context, collection, id string) (Subject, error) {
	sub, err := pgGetSubject(ctx, p.pool, collection, "s.id", id)
	if err != nil {
		return Subject{}, fmt.Errorf("get subject %q: %w", id, pgError(err))
	}
	return sub, nil
}

// GetSubjectByExternalID returns the subject of an active collection that
// has the client's key externalID.
func (p *Postgres) GetSubjectByExternalID(ctx context.Context, collection, externalID string) (Subject, error) {
	if externalID == "" {
		return Subject{}, fmt.Errorf("get subject by external id: %w", ErrNotFound)
	}
	sub, err := pgGetSubject(ctx, p.pool, collection, "s.external_id", externalID)
	if err != nil {
		return Subject{}, fmt.Errorf("get subject by external id %q: %w", externalID, pgError(err))
	}
	return sub, nil
}

// pgGetSubject reads the subject of an active collection whose column
// (of "s") equals value.
func pgGetSubject(ctx context.Context, q pgQuerier, collection, column string, value any) (Subject, error) {
	rows, err := q.Query(ctx, `SELECT `+pgSubjectColumns+`
		FROM subject s JOIN collection c ON c.name = s.collection
		WHERE s.collection = $1 AND c.state = 'active' AND `+column+` = $2`, collection, value)
	if err != nil {
		return Subject{}, err
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[pgSubject])
	if err != nil {
		return Subject{}, pgNotFound(err)
	}
	return r.subject(), nil
}

// pgActiveCollection returns ErrNotFound unless collection is active.
func pgActiveCollection(ctx context.Context, q pgQuerier, collection string) error {
	var active bool
	err := q.QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM collection WHERE name = $1 AND state = 'active')`, collection).Scan(&active)
	if err != nil {
		return err
	}
	if !active {
		return fmt.Errorf("collection %q: %w", collection, ErrNotFound)
	}
	return nil
}

// ListSubjects returns a page of the subjects of an active collection in
// creation order (ties by id), and the cursor of the next page, "" after
// the last. Search matches a case-insensitive substring of the display
// name or a prefix of the external id.
func (p *Postgres) ListSubjects(ctx context.Context, q SubjectQuery) ([]Subject, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultSubjectPage
	}
	limit = min(limit, maxSubjectPage)
	var args pgArgs
	where := []string{"s.collection = " + args.add(q.Collection)}
	if q.After != "" {
		at, id, err := decodeSubjectCursor(q.After)
		if err != nil {
			return nil, "", fmt.Errorf("list subjects: %w", pgError(err))
		}
		// A row comparison seeks in the (collection, created_at, id) index.
		where = append(where, fmt.Sprintf("(s.created_at, s.id) > (%s, %s)", args.add(at), args.add(id)))
	}
	if q.Search != "" {
		where = append(where, fmt.Sprintf("(strpos(s.name_fold, %s) > 0 OR starts_with(s.external_id, %s))",
			args.add(foldName(q.Search)), args.add(q.Search)))
	}
	// One more row than asked tells whether there is a next page.
	query := `SELECT ` + pgSubjectColumns + ` FROM subject s
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY s.created_at, s.id LIMIT ` + args.add(limit+1)

	var subs []Subject
	err := p.inReadTx(ctx, func(tx pgx.Tx) error {
		if err := pgActiveCollection(ctx, tx, q.Collection); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[pgSubject])
		if err != nil {
			return err
		}
		subs = make([]Subject, 0, len(rs))
		for _, r := range rs {
			subs = append(subs, r.subject())
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list subjects: %w", pgError(err))
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
func (p *Postgres) UpdateSubject(ctx context.Context, collection, id string, patch SubjectPatch) (Subject, error) {
	var args pgArgs
	sets := []string{"updated_at = " + args.add(toNanos(p.timestamp()))}
	if patch.ExternalID != nil {
		sets = append(sets, "external_id = "+args.add(pgText(*patch.ExternalID)))
	}
	if patch.DisplayName != nil {
		sets = append(sets, "display_name = "+args.add(*patch.DisplayName), "name_fold = "+args.add(foldName(*patch.DisplayName)))
	}
	if patch.Metadata != nil {
		meta, err := metadataText(patch.Metadata)
		if err != nil {
			return Subject{}, fmt.Errorf("update subject: %w", pgError(err))
		}
		sets = append(sets, "metadata = "+args.add(meta))
	}
	query := `UPDATE subject SET ` + strings.Join(sets, ", ") + `
		WHERE id = ` + args.add(id) + ` AND collection = ` + args.add(collection) + `
		AND EXISTS (SELECT 1 FROM collection WHERE name = subject.collection AND state = 'active')`
	var sub Subject
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, query, args...)
		if err != nil {
			return pgError(err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		sub, err = pgGetSubject(ctx, tx, collection, "s.id", id)
		return err
	})
	if err != nil {
		return Subject{}, fmt.Errorf("update subject %q: %w", id, pgError(err))
	}
	return sub, nil
}

// MarkSubjectDeleting marks every face of a subject deleting and returns
// their keys (including faces marked by an earlier, interrupted call), for
// the caller to remove from the vector index before DeleteSubject.
func (p *Postgres) MarkSubjectDeleting(ctx context.Context, collection, id string) ([]uint64, error) {
	var keys []uint64
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		var exists bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM subject WHERE id = $1 AND collection = $2)`,
			id, collection).Scan(&exists)
		if err != nil {
			return err
		}
		if !exists {
			return ErrNotFound
		}
		// One statement, so one snapshot: the faces it marks and those
		// marked before, and no face inserted meanwhile that it did not
		// mark.
		rows, err := tx.Query(ctx, `WITH marked AS (
				UPDATE face SET state = 'deleting' WHERE subject_id = $1 AND state <> 'deleting' RETURNING key)
			SELECT key FROM marked
			UNION
			SELECT key FROM face WHERE subject_id = $1 AND state = 'deleting'
			ORDER BY key`, id)
		if err != nil {
			return err
		}
		keys, err = collectKeys(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mark subject %q deleting: %w", id, pgError(err))
	}
	return keys, nil
}

// DeleteSubject deletes a subject and, by cascade, its faces. It does not
// look at the collection's state: it finishes deletions the reconciler
// resumes.
func (p *Postgres) DeleteSubject(ctx context.Context, collection, id string) error {
	n, err := p.exec(ctx, `DELETE FROM subject WHERE id = $1 AND collection = $2`, id, collection)
	if err != nil {
		return fmt.Errorf("delete subject %q: %w", id, pgError(err))
	}
	if n == 0 {
		return fmt.Errorf("delete subject %q: %w", id, ErrNotFound)
	}
	return nil
}

// collectKeys reads a query returning one column of face keys.
func collectKeys(rows pgx.Rows) ([]uint64, error) {
	var keys []uint64
	var key int64
	_, err := pgx.ForEachRow(rows, []any{&key}, func() error {
		keys = append(keys, uint64(key))
		return nil
	})
	return keys, err
}
