package gallery

import (
	"testing"

	"github.com/visage/visage/embed"
)

func TestAssignGivesEachSubjectOneFace(t *testing.T) {
	c := func(subject string, d float64) Candidate { return Candidate{SubjectID: subject, Distance: d} }
	tests := []struct {
		name      string
		cands     [][]Candidate
		threshold float64
		want      map[int]string
	}{
		{"distinct best subjects", [][]Candidate{{c("a", 0.2)}, {c("b", 0.3)}}, 0.4, map[int]string{0: "a", 1: "b"}},
		{"nearer face wins a shared subject, the other takes its next", [][]Candidate{{c("a", 0.30), c("b", 0.35)}, {c("a", 0.25)}}, 0.4, map[int]string{0: "b", 1: "a"}},
		{"loser with no other candidate is unknown", [][]Candidate{{c("a", 0.30)}, {c("a", 0.25)}}, 0.4, map[int]string{1: "a"}},
		{"next candidate over the threshold is not taken", [][]Candidate{{c("a", 0.30), c("b", 0.45)}, {c("a", 0.25)}}, 0.4, map[int]string{1: "a"}},
		{"nothing within the threshold", [][]Candidate{{c("a", 0.5)}}, 0.4, map[int]string{}},
		{"no faces", nil, 0.4, map[int]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := assign(tc.cands, Operate(Policy{Threshold: tc.threshold}, 10, nil))
			if len(got) != len(tc.want) {
				t.Fatalf("assigned %v, want %v", got, tc.want)
			}
			for face, subject := range tc.want {
				if got[face].SubjectID != subject {
					t.Errorf("face %d: %q, want %q", face, got[face].SubjectID, subject)
				}
			}
		})
	}
}

// Under a target policy pairs are taken by score, the highest first.
func TestAssignByScore(t *testing.T) {
	op := Operating{Policy: Policy{TargetFPIR: 0.01}, ScoreThreshold: 0.25}
	c := func(subject string, score float64) Candidate { return Candidate{SubjectID: subject, Score: score} }
	got := assign([][]Candidate{{c("a", 0.30), c("b", 0.28)}, {c("a", 0.32), c("c", 0.2)}}, op)
	if got[0].SubjectID != "b" || got[1].SubjectID != "a" {
		t.Errorf("assigned %v, want face 0 b, face 1 a", got)
	}
	if got := assign([][]Candidate{{c("a", 0.25)}}, op); len(got) != 0 {
		t.Errorf("a score equal to the threshold matched: %v", got)
	}
}

func TestTemplateIsTheNormalisedMean(t *testing.T) {
	var a, b embed.Descriptor
	a[0], b[1] = 1, 1
	tpl := Template([]embed.Descriptor{a, b})
	if d := embed.Distance(tpl, tpl); d != 0 {
		t.Fatalf("distance to itself %v", d)
	}
	want := float32(1 / 1.4142135)
	if tpl[0] < want-1e-6 || tpl[0] > want+1e-6 || tpl[1] != tpl[0] || tpl[2] != 0 {
		t.Errorf("template %v…, want (%v, %v, 0…)", tpl[:3], want, want)
	}
	if got := SubjectDistance(MatchFaces, a, []embed.Descriptor{a, b}); got != 0 {
		t.Errorf("faces mode: distance to an enrolled copy %v, want 0", got)
	}
	if got := SubjectDistance(MatchTemplate, a, []embed.Descriptor{a, b}); got <= 0 {
		t.Errorf("template mode: distance %v, want > 0", got)
	}
}

func TestEvaluateIdentification(t *testing.T) {
	d := func(i int) embed.Descriptor {
		var x embed.Descriptor
		x[i] = 1
		return x
	}
	near := func(i int) embed.Descriptor {
		x := d(i)
		x[i+1] = 0.1
		return x
	}
	samples := []Labeled{
		{"p", d(0)}, {"p", near(0)},
		{"q", d(10)}, {"q", near(10)},
		{"stranger", d(20)},
	}
	r := EvaluateIdentification(samples, MatchFaces, 0.5)
	if r.Mated != 4 || r.NonMated != 1 || r.Rank1 != 1 || r.FNIR != 0 || r.FPIR != 0 {
		t.Errorf("%+v", r)
	}
	r = EvaluateIdentification(samples, MatchFaces, 0.05)
	if r.FNIR != 1 {
		t.Errorf("at a threshold below every mated distance: FNIR %v, want 1", r.FNIR)
	}
}
