package gallery

import (
	"context"
	"math"
	"sort"
	"testing"

	"github.com/visage/visage/embed"
)

// TestDerivedThresholdFollowsTheGallery: under a target FPIR the distance
// a typical probe must be within shrinks as the gallery grows (more
// strangers' nearest subjects to beat), the operating point's own FPIR
// estimate is the target, and a stricter target gives a stricter
// threshold.
func TestDerivedThresholdFollowsTheGallery(t *testing.T) {
	prev := math.Inf(1)
	for _, n := range []int{1, 3, 10, 30, 100, 300, 1000, 3000, 100000} {
		op := Operate(Policy{TargetFPIR: 0.01}, n, nil)
		if !(op.Distance < prev) {
			t.Errorf("%d subjects: distance threshold %.4f, not below %.4f of the smaller gallery", n, op.Distance, prev)
		}
		prev = op.Distance
		if got := op.FPIR(op.ScoreThreshold); math.Abs(got-0.01) > 1e-6 {
			t.Errorf("%d subjects: FPIR at the threshold %.6f, want 0.01", n, got)
		}
		strict := Operate(Policy{TargetFPIR: 0.001}, n, nil)
		if !(strict.ScoreThreshold > op.ScoreThreshold) || !(strict.Distance < op.Distance) {
			t.Errorf("%d subjects: target 0.1%% threshold %.4f (distance %.4f) not stricter than 1%%'s %.4f (%.4f)",
				n, strict.ScoreThreshold, strict.Distance, op.ScoreThreshold, op.Distance)
		}
		for _, s := range []float64{op.ScoreThreshold - 0.05, op.ScoreThreshold - 0.01, op.ScoreThreshold + 0.01, op.ScoreThreshold + 0.05} {
			if lo, hi := op.FPIR(s+0.001), op.FPIR(s); !(lo <= hi) {
				t.Errorf("%d subjects: FPIR(%.3f) = %g above FPIR(%.3f) = %g", n, s+0.001, lo, s, hi)
			}
		}
	}
	// One subject: the threshold is verification's at the same rate.
	one := Operate(Policy{TargetFPIR: 0.01}, 1, nil)
	if d := EnrolledPairFMR.Distance(0.01); math.Abs(one.Distance-d) > 0.02 {
		t.Errorf("one subject at 1%%: distance %.4f, verification's at FMR 1%% %.4f", one.Distance, d)
	}
}

// TestCalibrationMovesTheThreshold: a collection whose strangers-by-proxy
// score higher than lfw-open's (people who look more alike, a harder
// population) gets a stricter threshold, in proportion to how many
// proxies measured it; a fixed threshold is left alone.
func TestCalibrationMovesTheThreshold(t *testing.T) {
	base := Operate(Policy{TargetFPIR: 0.01}, 500, nil)
	pt := lfwPrior.at(500)
	harder := Operate(Policy{TargetFPIR: 0.01}, 500, &Calibration{Subjects: 500, Samples: 300, Median: pt.Median + 0.02})
	if want := base.ScoreThreshold + 0.02*CalibrationTrust(300); math.Abs(harder.ScoreThreshold-want) > 1e-9 {
		t.Errorf("score threshold %.5f, want %.5f", harder.ScoreThreshold, want)
	}
	few := Operate(Policy{TargetFPIR: 0.01}, 500, &Calibration{Subjects: 500, Samples: 5, Median: pt.Median + 0.02})
	if !(few.ScoreThreshold > base.ScoreThreshold && few.ScoreThreshold < harder.ScoreThreshold) {
		t.Errorf("5 proxies moved the threshold to %.5f (none %.5f, 300 %.5f)", few.ScoreThreshold, base.ScoreThreshold, harder.ScoreThreshold)
	}
	if f := Operate(Policy{Threshold: 0.4}, 500, &Calibration{Subjects: 500, Samples: 300, Median: 1}); f.Distance != 0.4 {
		t.Errorf("fixed threshold moved to %v", f.Distance)
	}
}

func TestFMRCurveRoundTrip(t *testing.T) {
	for _, c := range []FMRCurve{ProbePairFMR, EnrolledPairFMR} {
		for _, fmr := range []float64{0.05, 0.01, 0.001, 0.0001} {
			d := c.Distance(fmr)
			if got := c.FMR(d); math.Abs(math.Log(got/fmr)) > 1e-6 {
				t.Errorf("FMR(Distance(%g) = %.4f) = %g", fmr, d, got)
			}
		}
		if !(c.Distance(0.001) < c.Distance(0.01)) {
			t.Errorf("stricter FMR, larger distance: %v", c.Distances)
		}
	}
}

func TestPolicyChecks(t *testing.T) {
	for _, tc := range []struct {
		p  Policy
		ok bool
	}{
		{Policy{TargetFPIR: 0.01}, true},
		{Policy{Threshold: 0.4}, true},
		{Policy{}, false},
		{Policy{Threshold: 0.4, TargetFPIR: 0.01}, false},
		{Policy{TargetFPIR: 0.6}, false},
		{Policy{TargetFPIR: -0.01}, false},
		{Policy{Threshold: 5}, false},
	} {
		if err := checkPolicy(tc.p); (err == nil) != tc.ok {
			t.Errorf("checkPolicy(%+v) = %v", tc.p, err)
		}
	}
}

func TestStaleCalibration(t *testing.T) {
	for _, tc := range []struct {
		cal  *Calibration
		n    int
		want bool
	}{
		{nil, 0, false}, {nil, 1, false}, {nil, 2, true},
		{&Calibration{Subjects: 10}, 10, false}, {&Calibration{Subjects: 10}, 11, true},
		{&Calibration{Subjects: 1000}, 1049, false}, {&Calibration{Subjects: 1000}, 1050, true}, {&Calibration{Subjects: 1000}, 950, true},
	} {
		if got := stale(tc.cal, tc.n); got != tc.want {
			t.Errorf("stale(%+v, %d) = %v", tc.cal, tc.n, got)
		}
	}
}

// memNeighbours is a gallery in memory for the decision code's tests.
type memNeighbours struct {
	subjects []string
	vecs     [][]float32
}

func (m *memNeighbours) Nearest(_ context.Context, q []float32, k int) ([]Neighbour, error) {
	var out []Neighbour
	for i, v := range m.vecs {
		out = append(out, Neighbour{Key: uint64(i + 1), FaceID: m.subjects[i], SubjectID: m.subjects[i], ExternalID: m.subjects[i],
			Distance: embed.Distance(embed.Descriptor(q), embed.Descriptor(v))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Distance < out[j].Distance })
	return out[:min(k, len(out))], nil
}

func (m *memNeighbours) Vectors(_ context.Context, keys []uint64) (map[uint64][]float32, error) {
	out := map[uint64][]float32{}
	for _, k := range keys {
		out[k] = m.vecs[k-1]
	}
	return out, nil
}

func unit(seed int) []float32 {
	v := make([]float32, embed.Dim)
	x := uint64(seed)*2654435761 + 1
	var n float64
	for i := range v {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		v[i] = float32(int64(x%2001)-1000) / 1000
		n += float64(v[i]) * float64(v[i])
	}
	for i := range v {
		v[i] /= float32(math.Sqrt(n))
	}
	return v
}

// TestRankScoresAgainstCohorts checks the score's arithmetic on a small
// gallery: the similarity minus the weighted cohorts, the probe's cohort
// of the next subjects, the candidate face's of its own nearest others;
// a subject left out is never a candidate nor in a cohort.
func TestRankScoresAgainstCohorts(t *testing.T) {
	m := &memNeighbours{}
	for i := 0; i < 60; i++ {
		m.subjects = append(m.subjects, string(rune('A'+i%26))+string(rune('a'+i/26)))
		m.vecs = append(m.vecs, unit(i+1))
	}
	n := len(m.vecs)
	op := Operate(Policy{TargetFPIR: 0.01}, n, nil)
	q := m.vecs[7]
	cands, err := Rank(context.Background(), m, op, q, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	if cands[0].SubjectID != m.subjects[7] || cands[0].Distance > 1e-6 {
		t.Fatalf("first candidate %+v, want %s at 0", cands[0], m.subjects[7])
	}
	all, _ := m.Nearest(context.Background(), q, n)
	wantCP := (Similarity(all[1].Distance) + Similarity(all[2].Distance) + Similarity(all[3].Distance)) / 3
	if math.Abs(cands[0].ProbeCohort-wantCP) > 1e-9 {
		t.Errorf("probe cohort %.6f, want %.6f", cands[0].ProbeCohort, wantCP)
	}
	// The candidate is the probe's own vector: its nearest others are the
	// probe's.
	if math.Abs(cands[0].GalleryCohort-wantCP) > 1e-9 {
		t.Errorf("gallery cohort %.6f, want %.6f", cands[0].GalleryCohort, wantCP)
	}
	w := CohortWeight(n)
	want := 1 - w*(0.25*wantCP+0.5*wantCP)
	if math.Abs(cands[0].Score-want) > 1e-6 || cands[0].FPIR != op.FPIR(cands[0].Score) {
		t.Errorf("score %.6f (FPIR %g), want %.6f", cands[0].Score, cands[0].FPIR, want)
	}
	left, err := Rank(context.Background(), m, op, q, 3, m.subjects[7])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range left {
		if c.SubjectID == m.subjects[7] {
			t.Errorf("the subject left out is a candidate: %+v", c)
		}
	}
	if math.Abs(left[0].ProbeCohort-(Similarity(all[2].Distance)+Similarity(all[3].Distance)+Similarity(all[4].Distance))/3) > 1e-9 {
		t.Errorf("probe cohort with the own subject left out: %.6f", left[0].ProbeCohort)
	}
}
