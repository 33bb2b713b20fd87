package gallery

import (
	"context"
	"fmt"
	"image"
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
	// Threshold overrides the collection's when > 0.
	Threshold float64
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
}

// IdentifiedFace is one face of the probe image and who it is.
type IdentifiedFace struct {
	Box        image.Rectangle
	Quality    align.Quality
	Landmarks  []align.Point
	Decision   string
	Match      *Candidate
	Candidates []Candidate
}

// Identification is the answer for one probe image.
type Identification struct {
	Width, Height int
	Threshold     float64
	Mode          MatchMode
	Faces         []IdentifiedFace
	Timings       Timings
	Search        time.Duration
}

// Identify finds every face of the image and its best candidates in the
// collection. A face matches its nearest candidate within the threshold,
// but one subject is given to at most one face of the image: pairs are
// assigned nearest first.
func (s *Service) Identify(ctx context.Context, req IdentifyRequest) (*Identification, error) {
	coll, err := s.store.GetCollection(ctx, req.Collection)
	if err != nil {
		return nil, fmt.Errorf("identify: %w", err)
	}
	threshold := coll.Threshold
	if req.Threshold != 0 {
		if err := checkThreshold(req.Threshold); err != nil {
			return nil, err
		}
		threshold = req.Threshold
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
	res, err := s.engine.Faces(ctx, req.Image)
	if err != nil {
		return nil, fmt.Errorf("identify: %w", err)
	}
	out := &Identification{Width: res.Width, Height: res.Height, Threshold: threshold, Mode: mode, Timings: res.Timings}
	t0 := time.Now()
	cands := make([][]Candidate, len(res.Faces))
	for i, f := range res.Faces {
		if cands[i], err = s.candidates(ctx, req.Collection, f.Descriptor, topK, mode); err != nil {
			return nil, err
		}
	}
	out.Search = time.Since(t0)
	assigned := assign(cands, threshold)
	for i, f := range res.Faces {
		idf := IdentifiedFace{Box: f.Box, Quality: f.Quality, Landmarks: f.Landmarks, Decision: DecisionUnknown, Candidates: cands[i]}
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
	s.audit(ctx, store.Event{Kind: store.EventIdentify, KeyID: req.Actor, Collection: req.Collection, Outcome: fmt.Sprintf("%d/%d matched", matches, len(out.Faces)),
		Detail: jsonDetail(map[string]any{"faces": len(out.Faces), "matches": matches, "threshold": threshold, "best_distances": best})})
	return out, nil
}

// candidates returns the topK nearest subjects of a descriptor.
func (s *Service) candidates(ctx context.Context, collection string, d embed.Descriptor, topK int, mode MatchMode) ([]Candidate, error) {
	// Several hits may share a subject; ask for enough faces to find topK
	// distinct subjects in the usual case of a few faces per subject.
	k := min(max(topK*8, 32), 512)
	hits, err := s.index.Search(ctx, space(collection), d[:], k)
	if err != nil {
		return nil, fmt.Errorf("identify: search: %w", err)
	}
	if len(hits) == 0 {
		return nil, nil
	}
	keys := make([]uint64, len(hits))
	for i, h := range hits {
		keys[i] = h.Key
	}
	refs, err := s.store.FaceRefs(ctx, collection, keys)
	if err != nil {
		return nil, fmt.Errorf("identify: resolve faces: %w", err)
	}
	bySubject := map[string]int{}
	var out []Candidate
	for _, h := range hits {
		ref, ok := refs[h.Key]
		if !ok {
			continue // deleted or not yet confirmed
		}
		if _, seen := bySubject[ref.SubjectID]; seen {
			continue // hits are nearest first
		}
		bySubject[ref.SubjectID] = len(out)
		out = append(out, Candidate{SubjectID: ref.SubjectID, ExternalID: ref.ExternalID, DisplayName: ref.DisplayName, FaceID: ref.FaceID, Distance: float64(h.Distance)})
	}
	if mode == MatchTemplate {
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
			if len(descs) > 0 {
				out[i].Distance = embed.Distance(d, Template(descs))
			}
		}
		sort.SliceStable(out, func(a, b int) bool { return out[a].Distance < out[b].Distance })
	}
	if len(out) > topK {
		out = out[:topK]
	}
	return out, nil
}

// assign gives each face at most one subject and each subject at most one
// face, nearest pairs first, among pairs within the threshold.
func assign(cands [][]Candidate, threshold float64) map[int]Candidate {
	type pair struct {
		face int
		c    Candidate
	}
	var pairs []pair
	for i, cs := range cands {
		for _, c := range cs {
			if c.Distance <= threshold {
				pairs = append(pairs, pair{i, c})
			}
		}
	}
	sort.SliceStable(pairs, func(a, b int) bool { return pairs[a].c.Distance < pairs[b].c.Distance })
	out := map[int]Candidate{}
	taken := map[string]bool{}
	for _, p := range pairs {
		if _, done := out[p.face]; done || taken[p.c.SubjectID] {
			continue
		}
		out[p.face] = p.c
		taken[p.c.SubjectID] = true
	}
	return out
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }
