package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// pgFaceColumns selects a face from "face f" in the fields of pgFace; the
// descriptor is last so that callers can replace it by NULL when they do
// not need it.
const pgFaceColumns = `f.key, f.id, f.subject_id, f.collection, f.model_id,
	f.box_x0, f.box_y0, f.box_x1, f.box_y1, f.landmarks, f.quality, f.image_sha256,
	f.state, f.created_at`

// pgFace is a face row as read. JSON columns are read into []byte, which
// keeps a stored JSON null apart from SQL NULL.
type pgFace struct {
	Key         int64   `db:"key"`
	ID          string  `db:"id"`
	SubjectID   string  `db:"subject_id"`
	Collection  string  `db:"collection"`
	ModelID     string  `db:"model_id"`
	BoxX0       int32   `db:"box_x0"`
	BoxY0       int32   `db:"box_y0"`
	BoxX1       int32   `db:"box_x1"`
	BoxY1       int32   `db:"box_y1"`
	Landmarks   []byte  `db:"landmarks"`
	Quality     []byte  `db:"quality"`
	ImageSHA256 *string `db:"image_sha256"`
	State       string  `db:"state"`
	CreatedAt   int64   `db:"created_at"`
	Descriptor  []byte  `db:"descriptor"`
}

func (r pgFace) face() (Face, error) {
	f := Face{
		Key: uint64(r.Key), ID: r.ID, SubjectID: r.SubjectID, Collection: r.Collection, ModelID: r.ModelID,
		Box:       [4]int{int(r.BoxX0), int(r.BoxY0), int(r.BoxX1), int(r.BoxY1)},
		Landmarks: json.RawMessage(r.Landmarks), Quality: json.RawMessage(r.Quality),
		ImageSHA256: textOf(r.ImageSHA256), State: FaceState(r.State), CreatedAt: fromNanos(r.CreatedAt),
	}
	if r.Descriptor != nil {
		var err error
		if f.Descriptor, err = decodeDescriptor(r.Descriptor); err != nil {
			return Face{}, fmt.Errorf("face %s: %w", f.ID, err)
		}
	}
	return f, nil
}

// pgQueryFaces runs a query selecting pgFaceColumns and a descriptor.
func pgQueryFaces(ctx context.Context, q pgQuerier, query string, args ...any) ([]Face, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[pgFace])
	if err != nil {
		return nil, err
	}
	faces := make([]Face, 0, len(rs))
	for _, r := range rs {
		f, err := r.face()
		if err != nil {
			return nil, err
		}
		faces = append(faces, f)
	}
	return faces, nil
}

// pgQueryFace runs a query selecting one face; none is ErrNotFound.
func pgQueryFace(ctx context.Context, q pgQuerier, query string, args ...any) (Face, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return Face{}, err
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[pgFace])
	if err != nil {
		return Face{}, pgNotFound(err)
	}
	return r.face()
}

// InsertFace writes face f of subject f.SubjectID as pending and returns it
// with its ID, Key, State and CreatedAt set, and true.
//
// Enrollment is idempotent: if the subject already has a face from the
// image with f.ImageSHA256 (an empty hash disables the check), that face is
// returned instead, with false; so is the face of a concurrent enrollment
// of the same image that commits first. If that face is being deleted the
// result is ErrConflict: it still holds the (subject, image) slot, and
// re-enrolling the image succeeds once its deletion is finished.
//
// The subject must exist in an active collection (ErrNotFound otherwise);
// f.Collection, if set, must be the subject's.
func (p *Postgres) InsertFace(ctx context.Context, f Face) (Face, bool, error) {
	if err := checkNewFace(f); err != nil {
		return Face{}, false, fmt.Errorf("insert face: %w", err)
	}
	var out Face
	var inserted bool
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		var collection string
		err := tx.QueryRow(ctx,
			`SELECT s.collection FROM subject s JOIN collection c ON c.name = s.collection
			 WHERE s.id = $1 AND c.state = 'active'`, f.SubjectID).Scan(&collection)
		if err != nil {
			return fmt.Errorf("subject %q: %w", f.SubjectID, pgError(pgNotFound(err)))
		}
		if f.Collection != "" && f.Collection != collection {
			return fmt.Errorf("subject %q in collection %q: %w", f.SubjectID, f.Collection, ErrNotFound)
		}
		f.Collection = collection
		out, inserted, err = p.insertFace(ctx, tx, f)
		return err
	})
	if err != nil {
		return Face{}, false, fmt.Errorf("insert face: %w", pgError(err))
	}
	return out, inserted, nil
}

// insertFace is InsertFace within tx, for a subject known to exist in
// the active collection f.Collection.
func (p *Postgres) insertFace(ctx context.Context, tx pgx.Tx, f Face) (Face, bool, error) {
	existing := func() (Face, bool, error) {
		if f.ImageSHA256 == "" {
			return Face{}, false, nil
		}
		got, err := pgQueryFace(ctx, tx, `SELECT `+pgFaceColumns+`, f.descriptor FROM face f
			WHERE f.subject_id = $1 AND f.image_sha256 = $2`, f.SubjectID, f.ImageSHA256)
		if errors.Is(err, ErrNotFound) {
			return Face{}, false, nil
		}
		if err != nil {
			return Face{}, false, err
		}
		if got.State == FaceDeleting {
			return got, true, fmt.Errorf("image %s of subject %q is being deleted: %w", f.ImageSHA256, f.SubjectID, ErrConflict)
		}
		return got, true, nil
	}
	if got, found, err := existing(); found || err != nil {
		return got, false, err
	}
	f.ID = uuid.NewString()
	f.State = FacePending
	f.CreatedAt = p.timestamp()
	// ON CONFLICT covers an enrollment of the same image that commits
	// between the look-up above and this insert: the insert then does
	// nothing, and the face it wrote is looked up again (a statement at
	// READ COMMITTED sees what committed before it started).
	var key int64
	err := tx.QueryRow(ctx,
		`INSERT INTO face (id, subject_id, collection, descriptor, model_id,
			box_x0, box_y0, box_x1, box_y1, landmarks, quality, image_sha256, state, created_at)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		 ON CONFLICT (subject_id, image_sha256) DO NOTHING
		 RETURNING key`,
		f.ID, f.SubjectID, f.Collection, encodeDescriptor(f.Descriptor), f.ModelID,
		f.Box[0], f.Box[1], f.Box[2], f.Box[3], pgJSON(f.Landmarks), pgJSON(f.Quality),
		pgText(f.ImageSHA256), string(f.State), toNanos(f.CreatedAt)).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		if got, found, err := existing(); found || err != nil {
			return got, false, err
		}
		// The conflicting face was deleted again meanwhile: as after a
		// serialization failure, the whole transaction is run again.
		return Face{}, false, &retryableError{errors.New("face of the same image came and went")}
	}
	if err != nil {
		return Face{}, false, pgError(err)
	}
	f.Key = uint64(key)
	return f, true, nil
}

// MarkFacesIndexed records that the vector index holds the faces with
// keys. Only pending faces change: a face marked deleting meanwhile stays
// deleting.
func (p *Postgres) MarkFacesIndexed(ctx context.Context, keys []uint64) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := p.exec(ctx, `UPDATE face SET state = 'indexed' WHERE state = 'pending' AND key = ANY($1)`, pgKeys(keys))
	if err != nil {
		return fmt.Errorf("mark faces indexed: %w", pgError(err))
	}
	return nil
}

// GetFace returns a face (with its descriptor) of an active collection;
// a face being deleted is ErrNotFound.
func (p *Postgres) GetFace(ctx context.Context, collection, faceID string) (Face, error) {
	f, err := pgQueryFace(ctx, p.pool,
		`SELECT `+pgFaceColumns+`, f.descriptor FROM face f JOIN collection c ON c.name = f.collection
		 WHERE f.id = $1 AND f.collection = $2 AND f.state <> 'deleting' AND c.state = 'active'`,
		faceID, collection)
	if err != nil {
		return Face{}, fmt.Errorf("get face %q: %w", faceID, pgError(err))
	}
	return f, nil
}

// ListFaces returns the faces (with descriptors) of a subject of an active
// collection, except faces being deleted, by key.
func (p *Postgres) ListFaces(ctx context.Context, collection, subjectID string) ([]Face, error) {
	var faces []Face
	err := p.inReadTx(ctx, func(tx pgx.Tx) error {
		if _, err := pgGetSubject(ctx, tx, collection, "s.id", subjectID); err != nil {
			return fmt.Errorf("subject %q: %w", subjectID, pgError(err))
		}
		var err error
		faces, err = pgQueryFaces(ctx, tx, `SELECT `+pgFaceColumns+`, f.descriptor FROM face f
			WHERE f.subject_id = $1 AND f.state <> 'deleting' ORDER BY f.key`, subjectID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list faces: %w", pgError(err))
	}
	return faces, nil
}

// pgFaceRef is a resolved key as read.
type pgFaceRef struct {
	Key         int64   `db:"key"`
	FaceID      string  `db:"face_id"`
	SubjectID   string  `db:"subject_id"`
	ExternalID  *string `db:"external_id"`
	DisplayName string  `db:"display_name"`
}

// FaceRefs resolves vector-index hits of an active collection to faces and
// subjects. Only indexed faces are resolved: keys of pending or deleting
// faces, and unknown keys, are absent from the map.
func (p *Postgres) FaceRefs(ctx context.Context, collection string, keys []uint64) (map[uint64]FaceRef, error) {
	refs := make(map[uint64]FaceRef, len(keys))
	if len(keys) == 0 {
		return refs, nil
	}
	rows, err := p.pool.Query(ctx,
		`SELECT f.key, f.id AS face_id, s.id AS subject_id, s.external_id, s.display_name
		 FROM face f
		 JOIN subject s ON s.id = f.subject_id
		 JOIN collection c ON c.name = f.collection
		 WHERE f.collection = $1 AND f.state = 'indexed' AND c.state = 'active' AND f.key = ANY($2)`,
		collection, pgKeys(keys))
	if err == nil {
		var rs []pgFaceRef
		rs, err = pgx.CollectRows(rows, pgx.RowToStructByName[pgFaceRef])
		for _, r := range rs {
			refs[uint64(r.Key)] = FaceRef{Key: uint64(r.Key), FaceID: r.FaceID, SubjectID: r.SubjectID,
				ExternalID: textOf(r.ExternalID), DisplayName: r.DisplayName}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("resolve face keys: %w", pgError(err))
	}
	return refs, nil
}

// MarkFaceDeleting marks a face deleting and returns its key, for the
// caller to remove it from the vector index before DeleteFaces. Marking a
// face already being deleted returns its key again.
func (p *Postgres) MarkFaceDeleting(ctx context.Context, collection, faceID string) (uint64, error) {
	var key int64
	err := retry(ctx, func() error {
		return p.pool.QueryRow(ctx,
			`UPDATE face SET state = 'deleting' WHERE id = $1 AND collection = $2 RETURNING key`,
			faceID, collection).Scan(&key)
	})
	if err != nil {
		return 0, fmt.Errorf("mark face %q deleting: %w", faceID, pgError(pgNotFound(err)))
	}
	return uint64(key), nil
}

// DeleteFaces deletes the faces with keys, whatever their state; unknown
// keys are ignored.
func (p *Postgres) DeleteFaces(ctx context.Context, keys []uint64) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := p.exec(ctx, `DELETE FROM face WHERE key = ANY($1)`, pgKeys(keys)); err != nil {
		return fmt.Errorf("delete faces: %w", pgError(err))
	}
	return nil
}

// PendingFaces returns up to limit (default 100, at most 10000) faces, of
// all collections, written but not confirmed in the vector index, oldest
// first, with descriptors: the reconciler indexes them.
func (p *Postgres) PendingFaces(ctx context.Context, limit int) ([]Face, error) {
	faces, err := pgQueryFaces(ctx, p.pool, pgPendingFacesQuery, unsettledLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list pending faces: %w", pgError(err))
	}
	return faces, nil
}

// DeletingFaces returns up to limit (default 100, at most 10000) faces, of
// all collections, marked deleting, oldest first, without descriptors: the
// reconciler removes them from the index and deletes them.
func (p *Postgres) DeletingFaces(ctx context.Context, limit int) ([]Face, error) {
	faces, err := pgQueryFaces(ctx, p.pool, pgDeletingFacesQuery, unsettledLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list deleting faces: %w", pgError(err))
	}
	return faces, nil
}

// The reconciler's queries. The redundant "state <> 'indexed'" repeats
// the condition of the partial index face_unsettled word for word, so
// that the planner need not prove that "state = 'pending'" implies it
// (TestPostgresReconcilerQueriesUseTheirIndex).
const (
	pgPendingFacesQuery = `SELECT ` + pgFaceColumns + `, f.descriptor FROM face f
		WHERE f.state = 'pending' AND f.state <> 'indexed' ORDER BY f.key LIMIT $1`
	pgDeletingFacesQuery = `SELECT ` + pgFaceColumns + `, NULL::bytea AS descriptor FROM face f
		WHERE f.state = 'deleting' AND f.state <> 'indexed' ORDER BY f.key LIMIT $1`
)

// IndexedKeys returns, in ascending order, the keys of a collection's
// faces that belong in the vector index: pending and indexed ones.
//
// The keys come back as one bigint[] value aggregated from an index-only
// scan in key order, rather than one row per key: a million rows cost the
// client more than the scan.
func (p *Postgres) IndexedKeys(ctx context.Context, collection string) ([]uint64, error) {
	var list []int64
	err := p.pool.QueryRow(ctx, `SELECT coalesce(array_agg(key), '{}') FROM (
			SELECT key FROM face WHERE collection = $1 AND state <> 'deleting' ORDER BY key) k`,
		collection).Scan(&list)
	if err != nil {
		return nil, fmt.Errorf("list indexed keys: %w", pgError(err))
	}
	var keys []uint64
	if len(list) > 0 {
		keys = make([]uint64, len(list))
		for i, k := range list {
			keys[i] = uint64(k)
		}
	}
	// array_agg keeps the order of its sorted input in practice, not by
	// guarantee, which makes this check cheap.
	if !slices.IsSorted(keys) {
		slices.Sort(keys)
	}
	return keys, nil
}

// Vectors returns the descriptors of a collection's faces with keys, by
// key, except faces being deleted; unknown keys are absent.
func (p *Postgres) Vectors(ctx context.Context, collection string, keys []uint64) ([]IndexedVector, error) {
	if len(keys) == 0 {
		return []IndexedVector{}, nil
	}
	vs, err := pgQueryVectors(ctx, p.pool, len(keys), `SELECT key, descriptor FROM face
		WHERE collection = $1 AND state <> 'deleting' AND key = ANY($2) ORDER BY key`,
		collection, pgKeys(keys))
	if err != nil {
		return nil, fmt.Errorf("read vectors: %w", pgError(err))
	}
	if vs == nil {
		vs = []IndexedVector{}
	}
	return vs, nil
}

// ScanVectors returns up to limit (at most 100000) descriptors of a
// collection's pending and indexed faces with keys above afterKey, by key:
// a rebuild of the vector index pages through it, passing the last key it
// got.
func (p *Postgres) ScanVectors(ctx context.Context, collection string, afterKey uint64, limit int) ([]IndexedVector, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("scan vectors: %w: limit %d", ErrInvalid, limit)
	}
	limit = min(limit, maxScanVectors)
	if afterKey > math.MaxInt64 {
		// No key is that large.
		return nil, nil
	}
	vs, err := pgQueryVectors(ctx, p.pool, limit, `SELECT key, descriptor FROM face
		WHERE collection = $1 AND key > $2 AND state <> 'deleting' ORDER BY key LIMIT $3`,
		collection, int64(afterKey), limit)
	if err != nil {
		return nil, fmt.Errorf("scan vectors: %w", pgError(err))
	}
	return vs, nil
}

// pgQueryVectors runs a query returning at most n (key, descriptor) rows.
// The descriptors share one backing array, sized from n and the first
// descriptor, rather than one allocation per row (a rebuild reads a
// million of them), and are decoded straight from the driver's buffer.
func pgQueryVectors(ctx context.Context, q pgQuerier, n int, query string, args ...any) ([]IndexedVector, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	var vs []IndexedVector
	var flat []float32
	var ends []int
	var key int64
	var blob pgtype.DriverBytes
	_, err = pgx.ForEachRow(rows, []any{&key, &blob}, func() error {
		if len(blob)%4 != 0 {
			return fmt.Errorf("face key %d: descriptor of %d bytes is not a float32 array", key, len(blob))
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
		return nil
	})
	if err != nil {
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

// FaceStates returns the state of each face with one of keys, whatever
// its collection; unknown keys are absent. The reconciler asks it about
// vectors the index holds but the store did not list: a face enrolled or
// deleted meanwhile is not drift.
func (p *Postgres) FaceStates(ctx context.Context, keys []uint64) (map[uint64]FaceState, error) {
	states := make(map[uint64]FaceState, len(keys))
	if len(keys) == 0 {
		return states, nil
	}
	rows, err := p.pool.Query(ctx, `SELECT key, state FROM face WHERE key = ANY($1)`, pgKeys(keys))
	if err == nil {
		var key int64
		var st string
		_, err = pgx.ForEachRow(rows, []any{&key, &st}, func() error {
			states[uint64(key)] = FaceState(st)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("read face states: %w", pgError(err))
	}
	return states, nil
}

// ModelCounts returns how many faces of active collections, not being
// deleted, each model made: a vector index holds one model's descriptors,
// so a rebuild must find exactly one.
func (p *Postgres) ModelCounts(ctx context.Context) (map[string]int, error) {
	rows, err := p.pool.Query(ctx, `SELECT f.model_id, count(*) FROM face f
		JOIN collection c ON c.name = f.collection
		WHERE c.state = 'active' AND f.state <> 'deleting' GROUP BY f.model_id`)
	counts := map[string]int{}
	if err == nil {
		var model string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&model, &n}, func() error {
			counts[model] = int(n)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("count faces per model: %w", pgError(err))
	}
	return counts, nil
}
