package gallery

import (
	"context"
	"fmt"
	"image"
	"math"
	"sort"
	"time"

	"github.com/visage/visage/align"
	"github.com/visage/visage/embed"
	"github.com/visage/visage/store"
)

// Decisions of identification.
const (
	DecisionMatch   = "match"
	DecisionUnknown = "unknown"
)

// IdentifyRequest is one identification.
type IdentifyRequest struct {
	Actor      string
	Collection string
	Image      []byte
	// Threshold (a fixed distance) or TargetFPIR overrides the
	// collection's policy when > 0.
	Threshold  float64
	TargetFPIR float64
	// TopK candidates per face (default 5).
	TopK int
	// Mode overrides the service's default match mode when set.
	Mode MatchMode
}

// Candidate is a subject a face may be.
type Candidate struct {
	SubjectID   string
	ExternalID  string
	DisplayName string
	// FaceID is the subject's nearest enrolled face.
	FaceID   string
	Distance float64
	// Score, under a target-FPIR policy, is the similarity normalised
	// against the gallery (decide.go), and FPIR the estimated chance that
	// a stranger's best candidate scores at least as well in this
	// gallery. ProbeCohort and GalleryCohort are the normalisation's
	// terms.
	Score, FPIR                float64
	ProbeCohort, GalleryCohort float64

	faceKey uint64
}

// IdentifiedFace is one face of the probe image and who it is.
type IdentifiedFace struct {
	Box       image.Rectangle
	Quality   align.Quality
	Landmarks []align.Point
	Decision  string
	Match     *Candidate
	// Threshold is the distance within which this face's first candidate
	// would match (for a target policy it depends on the face's cohorts).
	Threshold  float64
	Candidates []Candidate
	// SecondLook reports that the face was described again with its
	// mirror image because its score was near the threshold.
	SecondLook bool
}

// Identification is the answer for one probe image.
type Identification struct {
	Width, Height int
	// Operating is the policy applied and its operating point in this
	// gallery.
	Operating Operating
	Mode      MatchMode
	Faces     []IdentifiedFace
	Timings   Timings
	Search    time.Duration
}

// Identify finds every face of the image and its best candidates in the
// collection, and decides for each whether it is its first candidate:
// under a target-FPIR policy when the candidate's normalised score beats
// the threshold derived for the gallery, under a fixed threshold when it
// is within that distance. One subject is given to at most one face of
// the image: pairs are assigned best first.
func (s *Service) Identify(ctx context.Context, req IdentifyRequest) (*Identification, error) {
	coll, err := s.store.GetCollection(ctx, req.Collection)
	if err != nil {
		return nil, fmt.Errorf("identify: %w", err)
	}
	pol := PolicyOf(coll)
	if req.Threshold != 0 || req.TargetFPIR != 0 {
		pol = Policy{Threshold: req.Threshold, TargetFPIR: req.TargetFPIR}
		if err := checkPolicy(pol); err != nil {
			return nil, err
		}
	}
	topK := req.TopK
	if topK == 0 {
		topK = 5
	}
	if topK < 1 || topK > s.cfg.MaxTopK {
		return nil, &InvalidError{Field: "top_k", Reason: fmt.Sprintf("must be in [1, %d]", s.cfg.MaxTopK)}
	}
	mode := req.Mode
	if mode == "" {
		mode = s.cfg.Mode
	}
	op, err := s.operating(ctx, coll, pol)
	if err != nil {
		return nil, fmt.Errorf("identify: %w", err)
	}
	res, err := s.engine.Faces(ctx, req.Image)
	if err != nil {
		return nil, fmt.Errorf("identify: %w", err)
	}
	out := &Identification{Width: res.Width, Height: res.Height, Operating: op, Mode: mode, Timings: res.Timings}
	src := s.neighbours(req.Collection)
	cands := make([][]Candidate, len(res.Faces))
	second := make([]bool, len(res.Faces))
	search := func(i int) error {
		t0 := time.Now()
		defer func() { out.Search += time.Since(t0) }()
		var err error
		cands[i], err = s.candidates(ctx, src, op, res.Faces[i].Descriptor, topK, mode, req.Collection)
		return err
	}
	for i := range res.Faces {
		if err := search(i); err != nil {
			return nil, err
		}
		if len(cands[i]) == 0 || !op.nearBoundary(cands[i][0]) {
			continue
		}
		t1 := time.Now()
		looked, err := s.engine.SecondLook(ctx, &res.Faces[i])
		if err != nil {
			return nil, fmt.Errorf("identify: second look: %w", err)
		}
		out.Timings.Embed += time.Since(t1)
		if looked {
			second[i] = true
			if err := search(i); err != nil {
				return nil, err
			}
		}
	}
	assigned := assign(cands, op)
	for i, f := range res.Faces {
		idf := IdentifiedFace{Box: f.Box, Quality: f.Quality, Landmarks: f.Landmarks, Decision: DecisionUnknown,
			Candidates: cands[i], SecondLook: second[i], Threshold: op.Distance}
		if len(cands[i]) > 0 {
			idf.Threshold = op.faceDistance(cands[i][0])
		}
		if c, ok := assigned[i]; ok {
			idf.Decision, idf.Match = DecisionMatch, &c
		}
		out.Faces = append(out.Faces, idf)
	}
	matches := 0
	best := make([]float64, 0, len(out.Faces))
	for _, f := range out.Faces {
		if f.Match != nil {
			matches++
		}
		if len(f.Candidates) > 0 {
			best = append(best, round3(f.Candidates[0].Distance))
		}
	}
	detail := map[string]any{"faces": len(out.Faces), "matches": matches, "threshold": round3(op.Distance), "best_distances": best}
	if !pol.Fixed() {
		detail["target_fpir"] = pol.TargetFPIR
		detail["score_threshold"] = round4(op.ScoreThreshold)
	}
	s.audit(ctx, store.Event{Kind: store.EventIdentify, KeyID: req.Actor, Collection: req.Collection, Outcome: fmt.Sprintf("%d/%d matched", matches, len(out.Faces)),
		Detail: jsonDetail(detail)})
	return out, nil
}

// operating derives a policy's operating point for a collection as it is
// now: its number of subjects (kept by the store's counters) and its own
// calibration. A missing or stale calibration is measured in the
// background (Calibrate); meanwhile the prior alone decides.
func (s *Service) operating(ctx context.Context, coll store.Collection, pol Policy) (Operating, error) {
	st, err := s.store.CollectionStats(ctx, coll.Name)
	if err != nil {
		return Operating{}, err
	}
	cal := calibrationOf(coll)
	s.cal.noteSize(coll.Name, int(st.Subjects), cal)
	op := Operate(pol, int(st.Subjects), cal)
	if s.cfg.Tuning != nil {
		op = op.Tuned(*s.cfg.Tuning)
	}
	return op, nil
}

// candidates returns the topK best subjects of a descriptor under op.
func (s *Service) candidates(ctx context.Context, src Neighbours, op Operating, d embed.Descriptor, topK int, mode MatchMode, collection string) ([]Candidate, error) {
	out, err := rank(ctx, src, op, d[:], topK, "")
	if err != nil {
		return nil, fmt.Errorf("identify: %w", err)
	}
	if mode != MatchTemplate {
		return out, nil
	}
	for i := range out {
		faces, err := s.store.ListFaces(ctx, collection, out[i].SubjectID)
		if err != nil {
			return nil, fmt.Errorf("identify: template: %w", err)
		}
		descs := make([]embed.Descriptor, 0, len(faces))
		for _, f := range faces {
			var fd embed.Descriptor
			copy(fd[:], f.Descriptor)
			descs = append(descs, fd)
		}
		if len(descs) == 0 {
			continue
		}
		out[i].Distance = embed.Distance(d, Template(descs))
		if !op.Policy.Fixed() {
			out[i].Score = op.score(Similarity(out[i].Distance), out[i].ProbeCohort, out[i].GalleryCohort)
			out[i].FPIR = op.FPIR(out[i].Score)
		}
	}
	if op.Policy.Fixed() {
		sort.SliceStable(out, func(a, b int) bool { return out[a].Distance < out[b].Distance })
	} else {
		sort.SliceStable(out, func(a, b int) bool { return out[a].Score > out[b].Score })
	}
	return out, nil
}

// storeNeighbours answers decisions from the service's index and store.
type storeNeighbours struct {
	s          *Service
	collection string
}

func (s *Service) neighbours(collection string) Neighbours {
	return storeNeighbours{s: s, collection: collection}
}

// Nearest searches the index and resolves hits to indexed faces; hits of
// faces deleted or not yet confirmed are left out.
func (n storeNeighbours) Nearest(ctx context.Context, q []float32, k int) ([]Neighbour, error) {
	hits, err := n.s.index.Search(ctx, space(n.collection), q, k)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if len(hits) == 0 {
		return nil, nil
	}
	keys := make([]uint64, len(hits))
	for i, h := range hits {
		keys[i] = h.Key
	}
	refs, err := n.s.store.FaceRefs(ctx, n.collection, keys)
	if err != nil {
		return nil, fmt.Errorf("resolve faces: %w", err)
	}
	out := make([]Neighbour, 0, len(hits))
	for _, h := range hits {
		if ref, ok := refs[h.Key]; ok {
			out = append(out, Neighbour{Key: h.Key, FaceID: ref.FaceID, SubjectID: ref.SubjectID, ExternalID: ref.ExternalID,
				DisplayName: ref.DisplayName, Distance: float64(h.Distance)})
		}
	}
	return out, nil
}

// Vectors reads stored descriptors.
func (n storeNeighbours) Vectors(ctx context.Context, keys []uint64) (map[uint64][]float32, error) {
	vs, err := n.s.store.Vectors(ctx, n.collection, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64][]float32, len(vs))
	for _, v := range vs {
		out[v.Key] = v.Descriptor
	}
	return out, nil
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
func round4(v float64) float64 { return math.Round(v*10000) / 10000 }
