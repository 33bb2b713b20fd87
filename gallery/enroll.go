package gallery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

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
		if err != nil && r.Code == "" {
			// Not the image's fault: a store or index failure.
			return nil, err
		}
		results[i] = r
		detail := map[string]any{"status": r.Status}
		if r.Code != "" {
			detail["code"] = r.Code
			detail["reasons"] = r.Reasons
		}
		s.audit(ctx, store.Event{Kind: "enroll", KeyID: actor, Collection: collection, SubjectID: subjectID, FaceID: r.Face.ID,
			Outcome: r.Status, Detail: jsonDetail(detail)})
	}
	return results, nil
}

func (s *Service) enrollOne(ctx context.Context, collection, subjectID string, data []byte) (EnrollResult, error) {
	reject := func(err error) (EnrollResult, error) {
		r := EnrollResult{Status: StatusRejected, Err: err, Code: ErrorCode(err)}
		var q *QualityError
		if errors.As(err, &q) {
			r.Reasons = q.Reasons
		}
		return r, err
	}
	res, err := s.engine.Faces(ctx, data)
	if err != nil {
		if ErrorCode(err) == "internal" {
			return EnrollResult{}, fmt.Errorf("enroll: %w", err)
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
		r, err := reject(&QualityError{Reasons: reasons})
		r.Quality = &face.Quality
		r.Timings = res.Timings
		return r, err
	}
	sum := sha256.Sum256(data)
	pts := make([][2]int, len(face.Landmarks))
	for i, p := range face.Landmarks {
		pts[i] = [2]int{p.X, p.Y}
	}
	lm, _ := json.Marshal(pts)
	q, _ := json.Marshal(face.Quality)
	f, created, err := s.store.InsertFace(ctx, store.Face{
		SubjectID:   subjectID,
		Collection:  collection,
		Descriptor:  face.Descriptor[:],
		ModelID:     s.engine.ModelID(),
		Box:         [4]int{face.Box.Min.X, face.Box.Min.Y, face.Box.Max.X, face.Box.Max.Y},
		Landmarks:   lm,
		Quality:     q,
		ImageSHA256: hex.EncodeToString(sum[:]),
	})
	if err != nil {
		return EnrollResult{}, fmt.Errorf("enroll: store face: %w", err)
	}
	r := EnrollResult{Status: StatusEnrolled, Face: f, Quality: &face.Quality, Timings: res.Timings}
	if !created {
		r.Status = StatusExists
	}
	// A face the subject already had may still be pending if a previous
	// attempt failed between the two steps; finishing it is harmless.
	if f.State != store.FaceIndexed {
		vec := f.Descriptor
		if len(vec) == 0 {
			vec = face.Descriptor[:] // the same image gives the same descriptor
		}
		if err := s.index.Upsert(ctx, space(collection), []index.Item{{Key: f.Key, Vector: vec}}); err != nil {
			if created {
				s.unstore(ctx, f)
			}
			return EnrollResult{}, fmt.Errorf("enroll: index face: %w", err)
		}
		if err := s.store.MarkFacesIndexed(ctx, []uint64{f.Key}); err != nil {
			return EnrollResult{}, fmt.Errorf("enroll: mark face indexed: %w", err)
		}
		if err := s.checkNotDeleted(ctx, collection, f); err != nil {
			return EnrollResult{}, err
		}
		r.Face.State = store.FaceIndexed
	}
	return r, nil
}

// checkNotDeleted makes sure a face just marked indexed was not deleted
// (with its subject, say) while its vector was being written: that
// deletion may have removed the vector before it was written, and then
// nothing else would. Its vector is removed again, and the enrollment
// fails as if the subject had been deleted first.
func (s *Service) checkNotDeleted(ctx context.Context, collection string, f store.Face) error {
	states, err := s.store.FaceStates(ctx, []uint64{f.Key})
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	if states[f.Key] == store.FaceIndexed {
		return nil
	}
	if err := s.index.Delete(context.WithoutCancel(ctx), space(collection), []uint64{f.Key}); err != nil {
		s.rec.deferWork()
		s.log.Warn("remove the vector of a face deleted during its enrollment; the reconciler will", "face", f.ID, "err", err)
	}
	return fmt.Errorf("enroll: subject %q was deleted during the enrollment: %w", f.SubjectID, store.ErrNotFound)
}

// unstore deletes the row of a face whose vector could not be written, so
// that a failed enrollment leaves nothing behind: the client may retry
// it. Should the vector have been written after all (the answer was lost),
// it belongs to no face; identification ignores it and the reconciler
// removes it. If the row cannot be deleted either, it stays pending and
// the reconciler indexes it; a retry of the same image returns that face.
func (s *Service) unstore(ctx context.Context, f store.Face) {
	if err := s.store.DeleteFaces(context.WithoutCancel(ctx), []uint64{f.Key}); err != nil {
		s.log.Error("delete the row of a face that was not indexed", "face", f.ID, "err", err)
	}
}

func jsonDetail(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
