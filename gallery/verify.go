package gallery

import (
	"context"
	"fmt"
	"math"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/store"
)

// VerifyRequest compares the largest face of Image with the largest face
// of Other, or, when Other is empty, with every face of a subject.
type VerifyRequest struct {
	Actor      string
	Image      []byte
	Other      []byte
	Collection string
	SubjectID  string
	// Threshold (a fixed distance) or TargetFMR overrides the default
	// target false-match rate when > 0.
	Threshold float64
	TargetFMR float64
}

// FaceDistance is the distance to one enrolled face.
type FaceDistance struct {
	FaceID   string
	Distance float64
}

// Verification is the answer of a verification.
type Verification struct {
	Match    bool
	Distance float64
	// Threshold is the distance within which the faces match: the fixed
	// one, or the one that holds the false-match rate at TargetFMR (for a
	// subject of several faces, over all of them).
	Threshold float64
	TargetFMR float64
	// FMR estimates the chance that a different person would be this
	// close (to any of the subject's faces).
	FMR float64
	// Faces are the probe's chosen face and, for two images, the other's.
	Faces []Face
	// SubjectFaces are the distances to each of the subject's faces.
	SubjectFaces []FaceDistance
	Timings      []Timings
}

// Verify decides whether two faces are the same person.
func (s *Service) Verify(ctx context.Context, req VerifyRequest) (*Verification, error) {
	if req.Threshold != 0 && req.TargetFMR != 0 {
		return nil, &InvalidError{Field: "threshold", Reason: "give a threshold or a target_fmr, not both"}
	}
	if req.Threshold != 0 {
		if err := checkThreshold(req.Threshold); err != nil {
			return nil, err
		}
	}
	target := s.cfg.VerifyTargetFMR
	if req.TargetFMR != 0 {
		if !(req.TargetFMR > 0 && req.TargetFMR <= 0.5) {
			return nil, &InvalidError{Field: "target_fmr", Reason: "must be in (0, 0.5]"}
		}
		target = req.TargetFMR
	}
	var subjectFaces []store.Face
	var err error
	if req.Other == nil {
		if req.SubjectID == "" || req.Collection == "" {
			return nil, &InvalidError{Field: "other", Reason: "give a second image, or a collection and subject"}
		}
		if _, err := s.store.GetCollection(ctx, req.Collection); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if _, err := s.store.GetSubject(ctx, req.Collection, req.SubjectID); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if subjectFaces, err = s.store.ListFaces(ctx, req.Collection, req.SubjectID); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if len(subjectFaces) == 0 {
			return nil, &InvalidError{Field: "subject_id", Reason: "the subject has no enrolled face"}
		}
	}
	a, ta, err := s.onlyFace(ctx, req.Image)
	if err != nil {
		return nil, fmt.Errorf("verify: image: %w", err)
	}
	// The pair's kind and the subject's number of faces fix how the
	// false-match rate grows with distance.
	fmr, comparisons := ProbePairFMR, 1
	if req.Other == nil {
		fmr, comparisons = EnrolledPairFMR, len(subjectFaces)
	}
	out := &Verification{Faces: []Face{a}, Timings: []Timings{ta}}
	if req.Threshold != 0 {
		out.Threshold = req.Threshold
	} else {
		out.TargetFMR = target
		out.Threshold = fmr.Distance(target / float64(comparisons))
	}
	if req.Other != nil {
		b, tb, err := s.onlyFace(ctx, req.Other)
		if err != nil {
			return nil, fmt.Errorf("verify: other image: %w", err)
		}
		out.Faces = append(out.Faces, b)
		out.Timings = append(out.Timings, tb)
		out.Distance = embed.Distance(a.Descriptor, b.Descriptor)
	} else {
		out.Distance = math.Inf(1)
		for _, f := range subjectFaces {
			var d embed.Descriptor
			copy(d[:], f.Descriptor)
			dist := embed.Distance(a.Descriptor, d)
			out.SubjectFaces = append(out.SubjectFaces, FaceDistance{FaceID: f.ID, Distance: dist})
			out.Distance = math.Min(out.Distance, dist)
		}
	}
	out.Match = out.Distance <= out.Threshold
	out.FMR = min(1, float64(comparisons)*fmr.FMR(out.Distance))
	outcome := "no_match"
	if out.Match {
		outcome = "match"
	}
	ev := store.Event{Kind: "verify", KeyID: req.Actor, Outcome: outcome}
	if req.Other == nil {
		ev.Collection, ev.SubjectID = req.Collection, req.SubjectID
	}
	ev.Detail = jsonDetail(map[string]any{"distance": round3(out.Distance), "threshold": round3(out.Threshold), "fmr": out.FMR})
	s.audit(ctx, ev)
	return out, nil
}

// onlyFace returns an image's largest face, refusing images where several
// faces are about as large.
func (s *Service) onlyFace(ctx context.Context, data []byte) (Face, Timings, error) {
	res, err := s.engine.Faces(ctx, data)
	if err != nil {
		return Face{}, Timings{}, err
	}
	top, err := Largest(res.Faces, s.cfg.TieRatio)
	if err != nil {
		return Face{}, res.Timings, err
	}
	if len(top) > 1 {
		return Face{}, res.Timings, fmt.Errorf("%d faces: %w", len(top), ErrTooManyFaces)
	}
	return top[0], res.Timings, nil
}

// Detect runs the engine and stores nothing.
func (s *Service) Detect(ctx context.Context, data []byte) (*Result, error) {
	res, err := s.engine.Faces(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	return res, nil
}
