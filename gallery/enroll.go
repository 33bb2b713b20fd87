package gallery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/visage/visage/align"
	"github.com/visage/visage/index"
	"github.com/visage/visage/store"
)

// Enrollment statuses of one image.
const (
	StatusEnrolled = "enrolled" // a new face was stored
	StatusExists   = "exists"   // the same image was already enrolled for the subject
	StatusRejected = "rejected" // see Code and Reasons
)

// EnrollResult is the outcome for one image of an enrollment.
type EnrollResult struct {
	Status string
	Face   store.Face
	// Quality is the chosen face's quality (also for quality rejections).
	Quality *align.Quality
	// Code is the stable error code of a rejected image (bad image codes,
	// no_face, too_many_faces, quality_rejected); Reasons lists the failed
	// quality gates.
	Code    string
	Reasons []string
	Err     error
	Timings Timings
}

// Enroll adds one face per image to a subject: the largest face, refused
// when another is about as large, and refused when it fails the quality
// gates. Enrolling an image the subject already has returns the existing
// face. Results are per image, in order.
func (s *Service) Enroll(ctx context.Context, actor, collection, subjectID string, images [][]byte) ([]EnrollResult, error) {
	if _, err := s.store.GetSubject(ctx, collection, subjectID); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	results := make([]EnrollResult, len(images))
	for i, data := range images {
		r, err := s.enrollOne(ctx, collection, subjectID, data)
		if err != nil {
			// Not the image's fault (a refused image is a result): the
			// engine, the store or the index failed.
			return nil, err
		}
		results[i] = r
		detail := map[string]any{"status": r.Status}
		if r.Code != "" {
			detail["code"] = r.Code
			detail["reasons"] = r.Reasons
		}
		s.audit(ctx, store.Event{Kind: store.EventEnroll, KeyID: actor, Collection: collection, SubjectID: subjectID, FaceID: r.Face.ID,
			Outcome: r.Status, Detail: jsonDetail(detail)})
	}
	return results, nil
}

func (s *Service) enrollOne(ctx context.Context, collection, subjectID string, data []byte) (EnrollResult, error) {
	p, err := s.prepareFace(ctx, data)
	if err != nil || p.rejected != nil {
		return p.result, err
	}
	face := p.face
	face.SubjectID, face.Collection = subjectID, collection
	f, created, err := s.store.InsertFace(ctx, face)
	if err != nil {
		s.outcomeUnknown(err)
		return EnrollResult{}, fmt.Errorf("enroll: store face: %w", err)
	}
	r := p.result
	r.Status, r.Face = StatusEnrolled, f
	if !created {
		r.Status = StatusExists
	}
	// A face the subject already had may still be pending if a previous
	// attempt failed between the two steps; finishing it is harmless.
	if f.State != store.FaceIndexed {
		vec := f.Descriptor
		if len(vec) == 0 {
			vec = face.Descriptor // the same image gives the same descriptor
		}
		if err := s.index.Upsert(ctx, space(collection), []index.Item{{Key: f.Key, Vector: vec}}); err != nil {
			if created {
				s.unstore(ctx, f)
			}
			return EnrollResult{}, fmt.Errorf("enroll: index face: %w", err)
		}
		gone, err := s.settleIndexed(ctx, collection, []uint64{f.Key})
		if err != nil {
			return EnrollResult{}, fmt.Errorf("enroll: %w", err)
		}
		if len(gone) > 0 {
			return EnrollResult{}, fmt.Errorf("enroll: subject %q was deleted during the enrollment: %w", f.SubjectID, store.ErrNotFound)
		}
		r.Face.State = store.FaceIndexed
	}
	return r, nil
}

// prepared is an image made ready for enrollment: the face to store
// (without its subject), or why the image is refused.
type prepared struct {
	face store.Face
	// result carries the quality and timings, and for a refused image its
	// status, code and reasons.
	result   EnrollResult
	rejected error
}

// prepareFace runs the engine on an image and picks the face to enroll:
// the largest, refused when another is about as large or when it fails
// the quality gates. An error is not the image's fault (the engine
// failed); a refusal is in rejected.
func (s *Service) prepareFace(ctx context.Context, data []byte) (prepared, error) {
	reject := func(err error) (prepared, error) {
		r := EnrollResult{Status: StatusRejected, Err: err, Code: ErrorCode(err)}
		var q *QualityError
		if errors.As(err, &q) {
			r.Reasons = q.Reasons
		}
		return prepared{result: r, rejected: err}, nil
	}
	res, err := s.engine.Locate(ctx, data)
	if err != nil {
		if ErrorCode(err) == "internal" {
			return prepared{}, fmt.Errorf("enroll: %w", err)
		}
		return reject(err)
	}
	top, err := Largest(res.Faces, s.cfg.TieRatio)
	if err != nil {
		return reject(err)
	}
	if len(top) > 1 {
		return reject(fmt.Errorf("enroll: %d faces: %w", len(top), ErrTooManyFaces))
	}
	face := top[0]
	if reasons := s.cfg.Gates.Check(face.Quality); len(reasons) > 0 {
		p, _ := reject(&QualityError{Reasons: reasons})
		p.result.Quality = &face.Quality
		p.result.Timings = res.Timings
		return p, nil
	}
	// Only the face kept is described, with the enrollment variant.
	took, err := s.engine.DescribeForEnrollment(ctx, &face)
	if err != nil {
		return prepared{}, fmt.Errorf("enroll: %w", err)
	}
	res.Timings.Embed += took
	sum := sha256.Sum256(data)
	pts := make([][2]int, len(face.Landmarks))
	for i, p := range face.Landmarks {
		pts[i] = [2]int{p.X, p.Y}
	}
	lm, _ := json.Marshal(pts)
	q, _ := json.Marshal(face.Quality)
	return prepared{
		face: store.Face{
			Descriptor:  face.Descriptor[:],
			ModelID:     s.engine.ModelID(),
			Box:         [4]int{face.Box.Min.X, face.Box.Min.Y, face.Box.Max.X, face.Box.Max.Y},
			Landmarks:   lm,
			Quality:     q,
			ImageSHA256: hex.EncodeToString(sum[:]),
		},
		result: EnrollResult{Quality: &face.Quality, Timings: res.Timings},
	}, nil
}

// indexFaces writes the vectors of stored faces of a collection that are
// still pending and marks them indexed (see settleIndexed).
func (s *Service) indexFaces(ctx context.Context, collection string, faces []store.Face) error {
	items := make([]index.Item, 0, len(faces))
	keys := make([]uint64, 0, len(faces))
	for _, f := range faces {
		// A face may come twice (two photos of one image in a batch).
		if f.State == store.FacePending && len(f.Descriptor) > 0 && !slices.Contains(keys, f.Key) {
			items = append(items, index.Item{Key: f.Key, Vector: f.Descriptor})
			keys = append(keys, f.Key)
		}
	}
	if len(items) == 0 {
		return nil
	}
	if err := s.index.Upsert(ctx, space(collection), items); err != nil {
		return fmt.Errorf("index faces: %w", err)
	}
	if _, err := s.settleIndexed(ctx, collection, keys); err != nil {
		return fmt.Errorf("index faces: %w", err)
	}
	return nil
}

// settleIndexed marks faces whose vectors were just written indexed, and
// returns the keys of those deleted meanwhile (with their subject, say):
// that deletion may have removed their vectors before they were written,
// and then nothing else would, so they are removed again here.
//
// Should the store fail here (the database went down), the faces stay
// pending with their vectors written: identification does not name them
// yet, and the reconciler, told to run soon, marks them indexed.
func (s *Service) settleIndexed(ctx context.Context, collection string, keys []uint64) ([]uint64, error) {
	if err := s.store.MarkFacesIndexed(ctx, keys); err != nil {
		s.rec.deferWork()
		return nil, fmt.Errorf("mark faces indexed: %w", err)
	}
	states, err := s.store.FaceStates(ctx, keys)
	if err != nil {
		s.rec.deferWork()
		return nil, err
	}
	var gone []uint64
	for _, k := range keys {
		if states[k] != store.FaceIndexed {
			gone = append(gone, k)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	if err := s.index.Delete(context.WithoutCancel(ctx), space(collection), gone); err != nil {
		s.rec.deferWork()
		s.log.Warn("remove the vectors of faces deleted during their enrollment; the reconciler will", "faces", len(gone), "err", err)
	}
	return gone, nil
}

// unstore deletes the row of a face whose vector could not be written, so
// that a failed enrollment leaves nothing behind: the client may retry
// it. Should the vector have been written after all (the answer was lost),
// it belongs to no face; identification ignores it and the reconciler
// removes it. If the row cannot be deleted either, it stays pending and
// the reconciler indexes it; a retry of the same image returns that face.
func (s *Service) unstore(ctx context.Context, f store.Face) {
	if err := s.store.DeleteFaces(context.WithoutCancel(ctx), []uint64{f.Key}); err != nil {
		s.rec.deferWork()
		s.log.Error("delete the row of a face that was not indexed", "face", f.ID, "err", err)
	}
}

// outcomeUnknown notes a store write that failed because the database
// could not be reached: if the connection broke while the write committed,
// it may have taken effect unseen, leaving work only the reconciler does
// (a pending face to index, vectors of deleted rows to remove), so the
// reconciler is told to run soon.
func (s *Service) outcomeUnknown(err error) {
	if errors.Is(err, store.ErrUnavailable) {
		s.rec.deferWork()
	}
}

func jsonDetail(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
