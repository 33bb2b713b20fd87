package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ImportSubjects writes new subjects and their faces (as pending) into a
// collection in one transaction, far faster than one call per row; the
// caller then indexes the returned faces and marks them indexed, as for an
// enrollment. Any conflict (an existing external id) aborts the whole
// batch with ErrConflict.
//
// The rows go in with COPY. COPY returns no generated keys, so the faces'
// keys are drawn from the face key sequence first, in one statement, and
// copied with the rows (COPY writes identity columns as given).
func (p *Postgres) ImportSubjects(ctx context.Context, collection string, items []SubjectFaces) ([]Face, error) {
	var out []Face
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		out = nil
		var active bool
		err := tx.QueryRow(ctx, `SELECT state = 'active' FROM collection WHERE name = $1`, collection).Scan(&active)
		if (err == nil && !active) || errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("collection %q: %w", collection, ErrNotFound)
		}
		if err != nil {
			return err
		}
		now := p.timestamp()
		subjects := make([][]any, 0, len(items))
		nFaces := 0
		for _, it := range items {
			sub := it.Subject
			if sub.ID == "" {
				sub.ID = uuid.NewString()
			}
			meta, err := metadataText(sub.Metadata)
			if err != nil {
				return fmt.Errorf("subject %q: %w", sub.ExternalID, err)
			}
			for _, f := range it.Faces {
				if len(f.Descriptor) == 0 {
					return fmt.Errorf("subject %q: %w: empty descriptor", sub.ExternalID, ErrInvalid)
				}
			}
			subjects = append(subjects, []any{sub.ID, collection, pgText(sub.ExternalID), sub.DisplayName,
				foldName(sub.DisplayName), meta, toNanos(now), toNanos(now)})
			nFaces += len(it.Faces)
		}
		keys, err := pgNewFaceKeys(ctx, tx, nFaces)
		if err != nil {
			return err
		}
		faces := make([][]any, 0, nFaces)
		out = make([]Face, 0, nFaces)
		for i, it := range items {
			subjectID := subjects[i][0].(string)
			for _, f := range it.Faces {
				f.Key, f.ID, f.SubjectID, f.Collection, f.State, f.CreatedAt = keys[len(out)], uuid.NewString(), subjectID, collection, FacePending, now
				faces = append(faces, []any{int64(f.Key), f.ID, f.SubjectID, f.Collection, encodeDescriptor(f.Descriptor), f.ModelID,
					f.Box[0], f.Box[1], f.Box[2], f.Box[3], pgJSON(f.Landmarks), pgJSON(f.Quality),
					pgText(f.ImageSHA256), string(f.State), toNanos(f.CreatedAt)})
				out = append(out, f)
			}
		}
		subjectColumns := []string{"id", "collection", "external_id", "display_name", "name_fold",
			"metadata", "created_at", "updated_at"}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"subject"}, subjectColumns, pgx.CopyFromRows(subjects)); err != nil {
			return importError("subjects", err)
		}
		faceColumns := []string{"key", "id", "subject_id", "collection", "descriptor", "model_id",
			"box_x0", "box_y0", "box_x1", "box_y1", "landmarks", "quality", "image_sha256", "state", "created_at"}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"face"}, faceColumns, pgx.CopyFromRows(faces)); err != nil {
			return importError("faces", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import subjects: %w", pgError(err))
	}
	return out, nil
}

// pgNewFaceKeys draws n keys from the face key sequence, ascending, so
// that an import's faces get increasing keys in their order, as one
// INSERT after the other would give them.
func pgNewFaceKeys(ctx context.Context, tx pgx.Tx, n int) ([]uint64, error) {
	if n == 0 {
		return nil, nil
	}
	var drawn []int64
	err := tx.QueryRow(ctx, `SELECT array_agg(nextval(pg_get_serial_sequence('face', 'key')))
		FROM generate_series(1, $1)`, n).Scan(&drawn)
	if err != nil {
		return nil, fmt.Errorf("draw face keys: %w", pgError(err))
	}
	slices.Sort(drawn)
	keys := make([]uint64, len(drawn))
	for i, k := range drawn {
		keys[i] = uint64(k)
	}
	return keys, nil
}

// importError maps the error of copying rows. COPY stops at the first
// conflict without saying which item it came from, so the server's detail
// (the conflicting key's values) is kept in the message: imports are run
// by operators, who need to know which subject to fix.
func importError(what string, err error) error {
	var e *pgconn.PgError
	if errors.As(err, &e) && e.Code == pgUniqueViolation {
		return fmt.Errorf("copy %s: %s: %w", what, e.Detail, ErrConflict)
	}
	return fmt.Errorf("copy %s: %w", what, pgError(err))
}
