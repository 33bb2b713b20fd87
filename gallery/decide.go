package gallery

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
)

// Open-set decisions. Every number that says how identification decides
// lives in this file and in calibration_lfw.go; docs/benchmarks.md ("Open-set
// identification") has the measurements behind them.
//
// A probe face is compared with a collection's subjects by cosine
// similarity s (1 − d²/2 for unit descriptors at distance d) to each
// subject's nearest face. The nearest subject is the candidate; alone, its
// similarity says little in a large gallery, where the best of hundreds of
// strangers is close too. So the decision uses a score normalised against
// the gallery itself:
//
//	score = s − w(N) · (0.25·cp + 0.5·cg)        (DefaultTuning)
//
// cp is the mean similarity of the probe to its CohortSize next-nearest
// other subjects (how close this probe is to people in general); cg the
// mean similarity of the candidate's matched face to its CohortSize
// nearest other subjects (how close that enrolled face is to people in
// general: some faces attract every stranger). w(N) grows from 0 at
// CohortFloor subjects to 1 at CohortFull: in small galleries the cohorts
// are a few random people and only add noise.
//
// Under a target-FPIR policy the score threshold is the score a stranger
// exceeds with that probability in a gallery of N subjects: measured on
// lfw-open (the prior, by gallery size), moved by the collection's own
// strangers-by-proxy (its enrolled faces, each probing the others:
// Calibrate). Each candidate's FPIR is the estimated chance that a stranger
// scores at least as well in this gallery.
const (
	// CohortSize is the number of nearest other subjects a cohort averages.
	CohortSize = 3
	// CohortFloor and CohortFull bound the ramp of w(N).
	CohortFloor = 30
	CohortFull  = 1000
	// DefaultTargetFPIR is a new collection's policy: 1% of strangers may
	// be answered match.
	DefaultTargetFPIR = 0.01
	// DefaultTargetFMR is verification's default: 0.1% of pairs of
	// different people may be answered match.
	DefaultTargetFMR = 0.001
	// calibrationShrink is the number of proxy samples at which a
	// collection's own median counts as much as the prior's.
	calibrationShrink = 50
)

// Tuning holds the decision's weights. The prior (calibration_lfw.go) was
// measured with DefaultTuning; another tuning serves evaluation of the
// levers only (its thresholds are not calibrated).
type Tuning struct {
	// ProbeCohortWeight and GalleryCohortWeight weigh the two cohorts.
	ProbeCohortWeight, GalleryCohortWeight float64
	// SecondLookBand: a probe whose score falls within this distance of
	// the score threshold is described again with its mirror image (one
	// more network pass) before the decision. The mirror pass moves a
	// score by less than 0.01 in 99% of probes, so decisions outside the
	// band would not change; inside it the mirrored descriptor decides
	// (docs/benchmarks.md: as good as mirroring every probe).
	SecondLookBand float64
}

// DefaultTuning is the tuning chosen on lfw-open's tuning part.
func DefaultTuning() Tuning {
	return Tuning{ProbeCohortWeight: 0.25, GalleryCohortWeight: 0.5, SecondLookBand: 0.01}
}

// Policy is how a collection, or one request, decides "match".
type Policy struct {
	// TargetFPIR, when > 0, is the share of strangers (people not
	// enrolled) that may be answered match; the score threshold is derived
	// for the gallery as it is.
	TargetFPIR float64 `json:"target_fpir,omitempty"`
	// Threshold, when > 0, is a fixed distance: a face matches its nearest
	// subject when it is at most this far, whatever the gallery.
	Threshold float64 `json:"threshold,omitempty"`
}

// Fixed reports whether p is a fixed distance threshold.
func (p Policy) Fixed() bool { return p.Threshold > 0 }

func checkPolicy(p Policy) error {
	switch {
	case p.Threshold != 0 && p.TargetFPIR != 0:
		return &InvalidError{Field: "threshold", Reason: "give a threshold or a target_fpir, not both"}
	case p.Threshold != 0:
		return checkThreshold(p.Threshold)
	case !(p.TargetFPIR > 0 && p.TargetFPIR <= 0.5):
		return &InvalidError{Field: "target_fpir", Reason: "must be in (0, 0.5]"}
	}
	return nil
}

// Similarity is the cosine similarity of unit descriptors at Euclidean
// distance d.
func Similarity(d float64) float64 { return 1 - d*d/2 }

// distanceOf inverts Similarity.
func distanceOf(s float64) float64 { return math.Sqrt(math.Max(0, 2*(1-s))) }

// CohortWeight is w(N): 0 up to CohortFloor subjects, 1 from CohortFull,
// linear in log N between.
func CohortWeight(subjects int) float64 {
	if subjects <= CohortFloor {
		return 0
	}
	if subjects >= CohortFull {
		return 1
	}
	return math.Log(float64(subjects)/CohortFloor) / math.Log(float64(CohortFull)/CohortFloor)
}

// score is the normalised score of a candidate at similarity s with
// probe cohort cp and gallery cohort cg.
func (op Operating) score(s, cp, cg float64) float64 {
	return s - op.offset(cp, cg)
}

// offset is what the cohorts take off a similarity.
func (op Operating) offset(cp, cg float64) float64 {
	return CohortWeight(op.Subjects) * (op.tuning.ProbeCohortWeight*cp + op.tuning.GalleryCohortWeight*cg)
}

// Calibration is a collection's own strangers-by-proxy: a sample of its
// enrolled faces, each probing the rest of the collection (its own subject
// left out) as a stranger would. Calibrate measures it.
type Calibration struct {
	// Subjects is the collection's size when measured.
	Subjects int `json:"subjects"`
	// Samples is the number of proxy probes.
	Samples int `json:"samples"`
	// Median is their median score.
	Median float64 `json:"median"`
	// ProbeCohort and GalleryCohort are their median cohort similarities:
	// what a typical probe's cohorts are, to state the threshold as a
	// distance.
	ProbeCohort   float64 `json:"probe_cohort"`
	GalleryCohort float64 `json:"gallery_cohort"`
	// Above is the share of proxy probes scoring above the threshold that
	// was in force when measured: the collection's own estimate of FPIR.
	Above float64 `json:"above"`
}

// Operating is a policy made concrete for a gallery: what a score must
// reach to match, and what that means.
type Operating struct {
	Policy Policy
	// Subjects is the gallery's size.
	Subjects int
	// ScoreThreshold is the score a match must exceed (target policy).
	ScoreThreshold float64
	// Distance is the distance threshold: the fixed one, or for a target
	// policy the distance at which a typical probe's nearest subject
	// matches (each face's own is in its decision).
	Distance float64
	// shift moves the prior's scores to this collection's (see
	// Calibration).
	shift  float64
	tuning Tuning
	// cp and cg are a typical probe's cohorts.
	cp, cg float64
}

// Operate derives the operating point of policy p for a gallery of n
// subjects with its own calibration (nil when not measured yet).
func Operate(p Policy, n int, cal *Calibration) Operating {
	op := Operating{Policy: p, Subjects: n, tuning: DefaultTuning()}
	if p.Fixed() {
		op.Distance = p.Threshold
		return op
	}
	pt := lfwPrior.at(n)
	cp, cg := pt.ProbeCohort, pt.GalleryCohort
	if cal != nil && cal.Samples > 0 {
		// The collection's median against the prior's at the size it
		// was measured, trusted in proportion to its samples.
		at := lfwPrior.at(cal.Subjects)
		trust := CalibrationTrust(cal.Samples)
		op.shift = trust * (cal.Median - at.Median)
		cp = trust*cal.ProbeCohort + (1-trust)*cp
		cg = trust*cal.GalleryCohort + (1-trust)*cg
	}
	op.ScoreThreshold = pt.Median + op.shift + pt.delta(p.TargetFPIR)
	op.cp, op.cg = cp, cg
	op.Distance = distanceOf(op.ScoreThreshold + op.offset(cp, cg))
	return op
}

// Tuned returns op deciding with tuning t (for evaluating levers).
func (op Operating) Tuned(t Tuning) Operating {
	op.tuning = t
	if !op.Policy.Fixed() {
		op.Distance = distanceOf(op.ScoreThreshold + op.offset(op.cp, op.cg))
	}
	return op
}

// CalibrationTrust is the weight of a collection's own median measured
// from samples proxy probes against the prior's.
func CalibrationTrust(samples int) float64 {
	return float64(samples) / float64(samples+calibrationShrink)
}

// FPIR estimates the chance that a stranger's best candidate scores at
// least score in this gallery.
func (op Operating) FPIR(score float64) float64 {
	pt := lfwPrior.at(op.Subjects)
	return pt.fpir(score - pt.Median - op.shift)
}

// accepts reports whether a candidate matches under op.
func (op Operating) accepts(c Candidate) bool {
	if op.Policy.Fixed() {
		return c.Distance <= op.Policy.Threshold
	}
	return c.Score > op.ScoreThreshold
}

// nearBoundary reports whether a second look could change c's decision.
func (op Operating) nearBoundary(c Candidate) bool {
	return !op.Policy.Fixed() && math.Abs(c.Score-op.ScoreThreshold) < op.tuning.SecondLookBand
}

// faceDistance is the distance at which candidate c would match, given
// its cohorts.
func (op Operating) faceDistance(c Candidate) float64 {
	if op.Policy.Fixed() {
		return op.Policy.Threshold
	}
	return distanceOf(op.ScoreThreshold + op.offset(c.ProbeCohort, c.GalleryCohort))
}

// Neighbour is one enrolled face near a query vector, with its subject.
type Neighbour struct {
	Key         uint64
	FaceID      string
	SubjectID   string
	ExternalID  string
	DisplayName string
	Distance    float64
}

// Neighbours is what decisions need of a gallery: its faces nearest a
// vector, and the vectors of faces. The service answers from its vector
// index and store; evaluation from memory, with the same decision code.
type Neighbours interface {
	// Nearest returns up to k faces nearest q, nearest first.
	Nearest(ctx context.Context, q []float32, k int) ([]Neighbour, error)
	// Vectors returns the stored descriptors of faces by key.
	Vectors(ctx context.Context, keys []uint64) (map[uint64][]float32, error)
}

// searchDepth is how many faces a search asks for to find topK distinct
// subjects plus a cohort, in the usual case of a few faces per subject.
func searchDepth(topK int) int { return min(max((topK+CohortSize)*8, 32), 512) }

// subjectsOf groups faces nearest first into subjects, each at its
// nearest face, leaving out the subject exclude.
func subjectsOf(hits []Neighbour, exclude string) []Candidate {
	seen := map[string]bool{}
	var out []Candidate
	for _, h := range hits {
		if h.SubjectID == exclude || seen[h.SubjectID] {
			continue
		}
		seen[h.SubjectID] = true
		out = append(out, Candidate{SubjectID: h.SubjectID, ExternalID: h.ExternalID, DisplayName: h.DisplayName,
			FaceID: h.FaceID, faceKey: h.Key, Distance: h.Distance})
	}
	return out
}

// probeCohort is the mean similarity of the CohortSize nearest subjects
// other than cands[i].
func probeCohort(cands []Candidate, i int) float64 {
	var sum float64
	n := 0
	for j := 0; j < len(cands) && n < CohortSize; j++ {
		if j != i {
			sum += Similarity(cands[j].Distance)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// galleryCohorts sets the gallery cohort of each candidate: the mean
// similarity of its matched face to the CohortSize nearest faces of other
// subjects. The searches run concurrently (a remote index answers them in
// parallel).
func galleryCohorts(ctx context.Context, src Neighbours, cands []Candidate) error {
	if len(cands) == 0 {
		return nil
	}
	keys := make([]uint64, len(cands))
	for i, c := range cands {
		keys[i] = c.faceKey
	}
	vecs, err := src.Vectors(ctx, keys)
	if err != nil {
		return fmt.Errorf("gallery cohort: %w", err)
	}
	errs := make([]error, len(cands))
	done := make(chan int, len(cands))
	for i := range cands {
		go func() {
			defer func() { done <- i }()
			v, ok := vecs[cands[i].faceKey]
			if !ok {
				return // deleted meanwhile: no cohort, no penalty
			}
			hits, err := src.Nearest(ctx, v, searchDepth(0))
			if err != nil {
				errs[i] = err
				return
			}
			others := subjectsOf(hits, cands[i].SubjectID)
			var sum float64
			n := 0
			for _, o := range others[:min(CohortSize, len(others))] {
				sum += Similarity(o.Distance)
				n++
			}
			if n > 0 {
				cands[i].GalleryCohort = sum / float64(n)
			}
		}()
	}
	for range cands {
		<-done
	}
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("gallery cohort: %w", err)
		}
	}
	return nil
}

// Rank is the decision code identification runs for one probe
// descriptor: its topK candidate subjects in the gallery src under op,
// best first, each with its distance and, for a target policy, its
// cohorts, score and FPIR. exclude leaves a subject out (a proxy probe's
// own). Evaluation calls it on galleries held in memory.
func Rank(ctx context.Context, src Neighbours, op Operating, q []float32, topK int, exclude string) ([]Candidate, error) {
	return rank(ctx, src, op, q, topK, exclude)
}

// Accepts reports whether op answers match for a face whose first
// candidate is c.
func (op Operating) Accepts(c Candidate) bool { return op.accepts(c) }

// rank implements Rank.
func rank(ctx context.Context, src Neighbours, op Operating, q []float32, topK int, exclude string) ([]Candidate, error) {
	hits, err := src.Nearest(ctx, q, searchDepth(topK))
	if err != nil {
		return nil, err
	}
	all := subjectsOf(hits, exclude)
	cands := slices.Clone(all[:min(topK, len(all))])
	if op.Policy.Fixed() {
		return cands, nil
	}
	for i := range cands {
		cands[i].ProbeCohort = probeCohort(all, i)
	}
	if CohortWeight(op.Subjects) > 0 && op.tuning.GalleryCohortWeight != 0 {
		if err := galleryCohorts(ctx, src, cands); err != nil {
			return nil, err
		}
	}
	for i := range cands {
		c := &cands[i]
		c.Score = op.score(Similarity(c.Distance), c.ProbeCohort, c.GalleryCohort)
		c.FPIR = op.FPIR(c.Score)
	}
	// Cohorts may reorder near-equal candidates: best score first.
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].Score > cands[b].Score })
	return cands, nil
}

// assign gives each face at most one subject and each subject at most one
// face, best pairs first (nearest for a fixed threshold, highest score for
// a target), among pairs op accepts.
func assign(cands [][]Candidate, op Operating) map[int]Candidate {
	type pair struct {
		face int
		c    Candidate
	}
	var pairs []pair
	for i, cs := range cands {
		for _, c := range cs {
			if op.accepts(c) {
				pairs = append(pairs, pair{i, c})
			}
		}
	}
	better := func(a, b Candidate) bool {
		if op.Policy.Fixed() {
			return a.Distance < b.Distance
		}
		return a.Score > b.Score
	}
	sort.SliceStable(pairs, func(a, b int) bool { return better(pairs[a].c, pairs[b].c) })
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
