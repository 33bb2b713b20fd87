package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// maxScanVectors bounds a page of ScanVectors, whose memory is allocated
// up front.
const maxScanVectors = 100000

// Limits of PendingFaces and DeletingFaces.
const (
	defaultUnsettledFaces = 100
	maxUnsettledFaces     = 10000
)

// faceColumns selects a face from "face f"; the descriptor is last so
// that callers can replace it by NULL when they do not need it.
const faceColumns = `f.key, f.id, f.subject_id, f.collection, f.model_id,
	f.box_x0, f.box_y0, f.box_x1, f.box_y1, f.landmarks, f.quality, f.image_sha256,
	f.state, f.created_at`

// InsertFace writes face f of subject f.SubjectID as pending and returns it
// with its ID, Key, State and CreatedAt set, and true.
//
// Enrollment is idempotent: if the subject already has a face from the
// image with f.ImageSHA256 (an empty hash disables the check), that face is
// returned instead, with false. If that face is being deleted the result is
// ErrConflict: it still holds the (subject, image) slot, and re-enrolling
// the image succeeds once its deletion is finished.
//
// The subject must exist in an active collection (ErrNotFound otherwise);
// f.Collection, if set, must be the subject's.
func (s *SQLite) InsertFace(ctx context.Context, f Face) (Face, bool, error) {
	if err := checkNewFace(f); err != nil {
		return Face{}, false, fmt.Errorf("insert face: %w", err)
	}
	var out Face
	inserted := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var collection string
		err := tx.QueryRowContext(ctx,
			`SELECT s.collection FROM subject s JOIN collection c ON c.name = s.collection
			 WHERE s.id = ? AND c.state = 'active'`, f.SubjectID).Scan(&collection)
		if err != nil {
			return fmt.Errorf("subject %q: %w", f.SubjectID, notFound(err))
		}
		if f.Collection != "" && f.Collection != collection {
			return fmt.Errorf("subject %q in collection %q: %w", f.SubjectID, f.Collection, ErrNotFound)
		}
		f.Collection = collection
		out, inserted, err = s.insertFace(ctx, tx, f)
		return err
	})
	if err != nil {
		return Face{}, false, fmt.Errorf("insert face: %w", err)
	}
	return out, inserted, nil
}

// insertFace is InsertFace within tx, for a subject known to exist in
// the active collection f.Collection.
func (s *SQLite) insertFace(ctx context.Context, tx *sql.Tx, f Face) (Face, bool, error) {
	if f.ImageSHA256 != "" {
		existing, err := scanFace(tx.QueryRowContext(ctx,
			`SELECT `+faceColumns+`, f.descriptor FROM face f WHERE f.subject_id = ? AND f.image_sha256 = ?`,
			f.SubjectID, f.ImageSHA256))
		if err == nil {
			if existing.State == FaceDeleting {
				return existing, false, fmt.Errorf("image %s of subject %q is being deleted: %w", f.ImageSHA256, f.SubjectID, ErrConflict)
			}
			return existing, false, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return Face{}, false, err
		}
	}
	f.ID = uuid.NewString()
	f.State = FacePending
	f.CreatedAt = s.timestamp()
	var key int64
	err := tx.QueryRowContext(ctx,
		`INSERT INTO face (id, subject_id, collection, descriptor, model_id,
			box_x0, box_y0, box_x1, box_y1, landmarks, quality, image_sha256, state, created_at)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING key`,
		f.ID, f.SubjectID, f.Collection, encodeDescriptor(f.Descriptor), f.ModelID,
		f.Box[0], f.Box[1], f.Box[2], f.Box[3], nullJSON(f.Landmarks), nullJSON(f.Quality),
		nullString(f.ImageSHA256), string(f.State), toNanos(f.CreatedAt)).Scan(&key)
	if isUniqueViolation(err) {
		return Face{}, false, ErrConflict
	}
	if err != nil {
		return Face{}, false, err
	}
	f.Key = uint64(key)
	return f, true, nil
}

// MarkFacesIndexed records that the vector index holds the faces with
// keys. Only pending faces change: a face marked deleting meanwhile stays
// deleting.
func (s *SQLite) MarkFacesIndexed(ctx context.Context, keys []uint64) error {
	if len(keys) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return batches(keys, func(part []uint64) error {
			_, err := tx.ExecContext(ctx, `UPDATE face SET state = 'indexed'
				WHERE state = 'pending' AND key IN (`+placeholders(len(part))+`)`, keyArgs(part)...)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("mark faces indexed: %w", err)
	}
	return nil
}

// GetFace returns a face (with its descriptor) of an active collection;
// a face being deleted is ErrNotFound.
func (s *SQLite) GetFace(ctx context.Context, collection, faceID string) (Face, error) {
	f, err := scanFace(s.read.QueryRowContext(ctx,
		`SELECT `+faceColumns+`, f.descriptor FROM face f JOIN collection c ON c.name = f.collection
		 WHERE f.id = ? AND f.collection = ? AND f.state <> 'deleting' AND c.state = 'active'`,
		faceID, collection))
	if err != nil {
		return Face{}, fmt.Errorf("get face %q: %w", faceID, notFound(err))
	}
	return f, nil
}

// ListFaces returns the faces (with descriptors) of a subject of an active
// collection, except faces being deleted, by key.
func (s *SQLite) ListFaces(ctx context.Context, collection, subjectID string) ([]Face, error) {
	var faces []Face
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		if _, err := getSubject(ctx, tx, collection, "s.id = ?", subjectID); err != nil {
			return fmt.Errorf("subject %q: %w", subjectID, err)
		}
		var err error
		faces, err = queryFaces(ctx, tx, `SELECT `+faceColumns+`, f.descriptor FROM face f
			WHERE f.subject_id = ? AND f.state <> 'deleting' ORDER BY f.key`, subjectID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list faces: %w", err)
	}
	return faces, nil
}

// FaceRefs resolves vector-index hits of an active collection to faces and
// subjects. Only indexed faces are resolved: keys of pending or deleting
// faces, and unknown keys, are absent from the map.
func (s *SQLite) FaceRefs(ctx context.Context, collection string, keys []uint64) (map[uint64]FaceRef, error) {
	refs := make(map[uint64]FaceRef, len(keys))
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		return batches(keys, func(part []uint64) error {
			rows, err := tx.QueryContext(ctx,
				`SELECT f.key, f.id, s.id, s.external_id, s.display_name
				 FROM face f
				 JOIN subject s ON s.id = f.subject_id
				 JOIN collection c ON c.name = f.collection
				 WHERE f.collection = ? AND f.state = 'indexed' AND c.state = 'active'
				 AND f.key IN (`+placeholders(len(part))+`)`,
				append([]any{collection}, keyArgs(part)...)...)
			if err != nil {
				return err
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				var r FaceRef
				var key int64
				var ext sql.NullString
				if err := rows.Scan(&key, &r.FaceID, &r.SubjectID, &ext, &r.DisplayName); err != nil {
					return err
				}
				r.Key = uint64(key)
				r.ExternalID = ext.String
				refs[r.Key] = r
			}
			return rows.Err()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("resolve face keys: %w", err)
	}
	return refs, nil
}

// MarkFaceDeleting marks a face deleting and returns its key, for the
// caller to remove it from the vector index before DeleteFaces. Marking a
// face already being deleted returns its key again.
func (s *SQLite) MarkFaceDeleting(ctx context.Context, collection, faceID string) (uint64, error) {
	var key int64
	err := s.write.QueryRowContext(ctx,
		`UPDATE face SET state = 'deleting' WHERE id = ? AND collection = ? RETURNING key`,
		faceID, collection).Scan(&key)
	if err != nil {
		return 0, fmt.Errorf("mark face %q deleting: %w", faceID, notFound(err))
	}
	return uint64(key), nil
}

// DeleteFaces deletes the faces with keys, whatever their state; unknown
// keys are ignored.
func (s *SQLite) DeleteFaces(ctx context.Context, keys []uint64) error {
	if len(keys) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		return batches(keys, func(part []uint64) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM face WHERE key IN (`+placeholders(len(part))+`)`, keyArgs(part)...)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("delete faces: %w", err)
	}
	return nil
}

// PendingFaces returns up to limit (default 100, at most 10000) faces, of
// all collections, written but not confirmed in the vector index, oldest
// first, with descriptors: the reconciler indexes them.
func (s *SQLite) PendingFaces(ctx context.Context, limit int) ([]Face, error) {
	faces, err := queryFaces(ctx, s.read, pendingFacesQuery, unsettledLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list pending faces: %w", err)
	}
	return faces, nil
}

// DeletingFaces returns up to limit (default 100, at most 10000) faces, of
// all collections, marked deleting, oldest first, without descriptors: the
// reconciler removes them from the index and deletes them.
func (s *SQLite) DeletingFaces(ctx context.Context, limit int) ([]Face, error) {
	faces, err := queryFaces(ctx, s.read, deletingFacesQuery, unsettledLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list deleting faces: %w", err)
	}
	return faces, nil
}

// The reconciler's queries. The redundant "state <> 'indexed'" repeats
// the condition of the partial index face_unsettled: SQLite uses a partial
// index only when the query's WHERE contains its condition, and does not
// infer it from "state = 'pending'". Without it each reconciler pass would
// read the whole face table (TestReconcilerQueriesUseTheirIndex).
const (
	pendingFacesQuery = `SELECT ` + faceColumns + `, f.descriptor FROM face f
		WHERE f.state = 'pending' AND f.state <> 'indexed' ORDER BY f.key LIMIT ?`
	deletingFacesQuery = `SELECT ` + faceColumns + `, NULL FROM face f
		WHERE f.state = 'deleting' AND f.state <> 'indexed' ORDER BY f.key LIMIT ?`
)

func unsettledLimit(limit int) int {
	if limit <= 0 {
		return defaultUnsettledFaces
	}
	return min(limit, maxUnsettledFaces)
}

// IndexedKeys returns, in ascending order, the keys of a collection's
// faces that belong in the vector index: pending and indexed ones.
//
// It reads only the covering (collection, key, state) index, in chunks of
// s.keysChunk keys that SQLite joins into one text value each: one row per
// key through database/sql costs more than the index walk itself (about
// 450 ms against 280 ms for 1M keys; see BenchmarkIndexedKeys1M).
// Chunks bound the size of one value and let a large collection's read
// be spread over several statements.
func (s *SQLite) IndexedKeys(ctx context.Context, collection string) ([]uint64, error) {
	var keys []uint64
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		var after int64
		for {
			var list sql.NullString
			var last sql.NullInt64
			err := tx.QueryRowContext(ctx, `SELECT group_concat(key), max(key) FROM (
					SELECT key FROM face INDEXED BY face_collection_key
					WHERE collection = ? AND key > ? AND state <> 'deleting' ORDER BY key LIMIT ?
				)`, collection, after, s.keysChunk).Scan(&list, &last)
			if err != nil {
				return err
			}
			if !last.Valid {
				return nil
			}
			for field := range strings.SplitSeq(list.String, ",") {
				k, err := strconv.ParseUint(field, 10, 64)
				if err != nil {
					return fmt.Errorf("parse key %q: %w", field, err)
				}
				keys = append(keys, k)
			}
			after = last.Int64
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list indexed keys: %w", err)
	}
	// group_concat's order is not specified; the chunks are ordered, and
	// within one chunk the index order is kept in practice, which makes
	// this check cheap.
	if !slices.IsSorted(keys) {
		slices.Sort(keys)
	}
	return keys, nil
}

// Vectors returns the descriptors of a collection's faces with keys, by
// key, except faces being deleted; unknown keys are absent.
func (s *SQLite) Vectors(ctx context.Context, collection string, keys []uint64) ([]IndexedVector, error) {
	vs := make([]IndexedVector, 0, len(keys))
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		return batches(keys, func(part []uint64) error {
			got, err := queryVectors(ctx, tx, len(part), `SELECT key, descriptor FROM face
				WHERE collection = ? AND state <> 'deleting' AND key IN (`+placeholders(len(part))+`)
				ORDER BY key`, append([]any{collection}, keyArgs(part)...)...)
			vs = append(vs, got...)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read vectors: %w", err)
	}
	return vs, nil
}

// ScanVectors returns up to limit (at most 100000) descriptors of a collection's pending
// and indexed faces with keys above afterKey, by key: a rebuild of the
// vector index pages through it, passing the last key it got.
func (s *SQLite) ScanVectors(ctx context.Context, collection string, afterKey uint64, limit int) ([]IndexedVector, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("scan vectors: %w: limit %d", ErrInvalid, limit)
	}
	limit = min(limit, maxScanVectors)
	vs, err := queryVectors(ctx, s.read, limit, `SELECT key, descriptor FROM face INDEXED BY face_collection_key
		WHERE collection = ? AND key > ? AND state <> 'deleting' ORDER BY key LIMIT ?`,
		collection, int64(afterKey), limit)
	if err != nil {
		return nil, fmt.Errorf("scan vectors: %w", err)
	}
	return vs, nil
}

// queryVectors runs a query returning at most n (key, descriptor) rows.
// The descriptors share one backing array, sized from n and the first
// descriptor, rather than one allocation per row: a rebuild reads a
// million of them.
func queryVectors(ctx context.Context, q querier, n int, query string, args ...any) ([]IndexedVector, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var vs []IndexedVector
	var flat []float32
	var ends []int
	for rows.Next() {
		var key int64
		var blob sql.RawBytes
		if err := rows.Scan(&key, &blob); err != nil {
			return nil, err
		}
		if len(blob)%4 != 0 {
			return nil, fmt.Errorf("face key %d: descriptor of %d bytes is not a float32 array", key, len(blob))
		}
		if flat == nil {
			flat = make([]float32, 0, n*len(blob)/4)
			vs = make([]IndexedVector, 0, n)
			ends = make([]int, 0, n)
		}
		for i := 0; i < len(blob); i += 4 {
			flat = append(flat, math.Float32frombits(binary.LittleEndian.Uint32(blob[i:])))
		}
		vs = append(vs, IndexedVector{Key: uint64(key)})
		ends = append(ends, len(flat))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	start := 0
	for i, end := range ends {
		// The capacity limit keeps an append to one descriptor from
		// overwriting the next.
		vs[i].Descriptor = flat[start:end:end]
		start = end
	}
	return vs, nil
}

func queryFaces(ctx context.Context, q querier, query string, args ...any) ([]Face, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var faces []Face
	for rows.Next() {
		f, err := scanFace(rows)
		if err != nil {
			return nil, err
		}
		faces = append(faces, f)
	}
	return faces, rows.Err()
}

// scanFace scans faceColumns followed by the descriptor (or NULL).
func scanFace(r rowScanner) (Face, error) {
	var f Face
	var key, created int64
	var landmarks, quality, sha sql.NullString
	var state string
	var blob []byte
	err := r.Scan(&key, &f.ID, &f.SubjectID, &f.Collection, &f.ModelID,
		&f.Box[0], &f.Box[1], &f.Box[2], &f.Box[3], &landmarks, &quality, &sha,
		&state, &created, &blob)
	if err != nil {
		return Face{}, err
	}
	f.Key = uint64(key)
	f.Landmarks = rawJSON(landmarks)
	f.Quality = rawJSON(quality)
	f.ImageSHA256 = sha.String
	f.State = FaceState(state)
	f.CreatedAt = fromNanos(created)
	if blob != nil {
		if f.Descriptor, err = decodeDescriptor(blob); err != nil {
			return Face{}, fmt.Errorf("face %s: %w", f.ID, err)
		}
	}
	return f, nil
}

// FaceStates returns the state of each face with one of keys, whatever
// its collection; unknown keys are absent. The reconciler asks it about
// vectors the index holds but the store did not list: a face enrolled or
// deleted meanwhile is not drift.
func (s *SQLite) FaceStates(ctx context.Context, keys []uint64) (map[uint64]FaceState, error) {
	states := make(map[uint64]FaceState, len(keys))
	err := s.inReadTx(ctx, func(tx *sql.Tx) error {
		return batches(keys, func(part []uint64) error {
			rows, err := tx.QueryContext(ctx, `SELECT key, state FROM face WHERE key IN (`+placeholders(len(part))+`)`, keyArgs(part)...)
			if err != nil {
				return err
			}
			defer func() { _ = rows.Close() }()
			for rows.Next() {
				var key int64
				var st string
				if err := rows.Scan(&key, &st); err != nil {
					return err
				}
				states[uint64(key)] = FaceState(st)
			}
			return rows.Err()
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read face states: %w", err)
	}
	return states, nil
}

// ModelCounts returns how many faces of active collections, not being
// deleted, each model made: a vector index holds one model's descriptors,
// so a rebuild must find exactly one.
func (s *SQLite) ModelCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT f.model_id, count(*) FROM face f
		JOIN collection c ON c.name = f.collection
		WHERE c.state = 'active' AND f.state <> 'deleting' GROUP BY f.model_id`)
	if err != nil {
		return nil, fmt.Errorf("count faces per model: %w", err)
	}
	defer func() { _ = rows.Close() }()
	counts := map[string]int{}
	for rows.Next() {
		var model string
		var n int
		if err := rows.Scan(&model, &n); err != nil {
			return nil, fmt.Errorf("count faces per model: %w", err)
		}
		counts[model] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count faces per model: %w", err)
	}
	return counts, nil
}
