package store

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/google/uuid"
)

// SubjectFaces is a subject with faces whose descriptors are already
// computed: the unit of a bulk import.
type SubjectFaces struct {
	Subject Subject
	Faces   []Face
}

// ImportSubjects writes new subjects and their faces (as pending) into a
// collection in one transaction, far faster than one call per row; the
// caller then indexes the returned faces and marks them indexed, as for an
// enrollment. Any conflict (an existing external id) aborts the whole
// batch with ErrConflict.
func (s *SQLite) ImportSubjects(ctx context.Context, collection string, items []SubjectFaces) ([]Face, error) {
	var out []Face
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var state string
		if err := tx.QueryRowContext(ctx, `SELECT state FROM collection WHERE name = ?`, collection).Scan(&state); err != nil || state != "active" {
			return fmt.Errorf("collection %q: %w", collection, ErrNotFound)
		}
		subStmt, err := tx.PrepareContext(ctx, `INSERT INTO subject
			(id, collection, external_id, display_name, name_fold, metadata, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer subStmt.Close()
		faceStmt, err := tx.PrepareContext(ctx, `INSERT INTO face (id, subject_id, collection, descriptor, model_id,
			box_x0, box_y0, box_x1, box_y1, landmarks, quality, image_sha256, state, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING key`)
		if err != nil {
			return err
		}
		defer faceStmt.Close()
		now := s.timestamp()
		for _, it := range items {
			sub := it.Subject
			if sub.ID == "" {
				sub.ID = uuid.NewString()
			}
			meta, err := metadataText(sub.Metadata)
			if err != nil {
				return fmt.Errorf("subject %q: %w", sub.ExternalID, err)
			}
			_, err = subStmt.ExecContext(ctx, sub.ID, collection, nullString(sub.ExternalID), sub.DisplayName, foldName(sub.DisplayName),
				meta, toNanos(now), toNanos(now))
			if isUniqueViolation(err) {
				return fmt.Errorf("subject %q: %w", sub.ExternalID, ErrConflict)
			}
			if err != nil {
				return err
			}
			for _, f := range it.Faces {
				if len(f.Descriptor) == 0 {
					return fmt.Errorf("subject %q: %w: empty descriptor", sub.ExternalID, ErrInvalid)
				}
				f.ID, f.SubjectID, f.Collection, f.State, f.CreatedAt = uuid.NewString(), sub.ID, collection, FacePending, now
				var key int64
				err := faceStmt.QueryRowContext(ctx, f.ID, f.SubjectID, f.Collection, encodeDescriptor(f.Descriptor), f.ModelID,
					f.Box[0], f.Box[1], f.Box[2], f.Box[3], nullJSON(f.Landmarks), nullJSON(f.Quality),
					nullString(f.ImageSHA256), string(f.State), toNanos(f.CreatedAt)).Scan(&key)
				if isUniqueViolation(err) {
					return fmt.Errorf("subject %q image %s: %w", sub.ExternalID, f.ImageSHA256, ErrConflict)
				}
				if err != nil {
					return err
				}
				f.Key = uint64(key)
				out = append(out, f)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import subjects: %w", err)
	}
	return out, nil
}
