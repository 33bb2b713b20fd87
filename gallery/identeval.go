package gallery

import (
	"fmt"
	"math"
	"sort"

	"github.com/visage/visage/embed"
)

// MatchMode is how a probe face is compared with an enrolled subject.
type MatchMode string

// Match modes. MatchFaces compares the probe with each of the subject's
// faces and keeps the nearest; MatchTemplate compares it with one
// template per subject: the normalised mean of its descriptors.
const (
	MatchFaces    MatchMode = "faces"
	MatchTemplate MatchMode = "template"
)

// ParseMatchMode checks a mode name.
func ParseMatchMode(s string) (MatchMode, error) {
	switch MatchMode(s) {
	case MatchFaces, MatchTemplate:
		return MatchMode(s), nil
	}
	return "", fmt.Errorf("parse match mode %q: want faces or template", s)
}

// Template is the L2-normalised mean of descriptors: a subject's single
// representative for template matching.
func Template(ds []embed.Descriptor) embed.Descriptor {
	var sum [embed.Dim]float64
	for _, d := range ds {
		for i, v := range d {
			sum[i] += float64(v)
		}
	}
	var norm float64
	for _, v := range sum {
		norm += v * v
	}
	norm = math.Sqrt(norm)
	var t embed.Descriptor
	if norm == 0 {
		return t
	}
	for i, v := range sum {
		t[i] = float32(v / norm)
	}
	return t
}

// SubjectDistance is the distance between a probe and a subject's faces
// under a match mode.
func SubjectDistance(mode MatchMode, probe embed.Descriptor, faces []embed.Descriptor) float64 {
	if mode == MatchTemplate {
		return embed.Distance(probe, Template(faces))
	}
	best := math.Inf(1)
	for _, f := range faces {
		best = math.Min(best, embed.Distance(probe, f))
	}
	return best
}

// Labeled is a descriptor with the person it shows.
type Labeled struct {
	Person string
	Desc   embed.Descriptor
}

// IdentEval is an open-set identification result for one match mode.
type IdentEval struct {
	Mode MatchMode
	// Mated probes are held-out photos of enrolled people; non-mated
	// probes are photos of people with a single photo, never enrolled.
	Mated, NonMated int
	// Rank1 is the share of mated probes whose nearest subject is right.
	Rank1 float64
	// Threshold, FNIR and FPIR describe the operating point asked for:
	// FNIR is the share of mated probes not matched to their own subject
	// at the threshold, FPIR the share of non-mated probes matched to
	// anyone.
	Threshold, FNIR, FPIR float64
	// FNIRAtFPIR1 and FNIRAtFPIR5 compare modes independently of
	// threshold scales: the threshold is set so that 1% (5%) of non-mated
	// probes match.
	FNIRAtFPIR1, FNIRAtFPIR5 float64
	// ThresholdAtFPIR1 and ThresholdAtFPIR5 are those thresholds.
	ThresholdAtFPIR1, ThresholdAtFPIR5 float64
}

// EvaluateIdentification runs leave-one-out open-set identification:
// every person with two or more photos is enrolled; each of their photos
// in turn is the probe against a gallery holding all other photos; people
// with one photo are non-mated probes against the full gallery.
func EvaluateIdentification(samples []Labeled, mode MatchMode, threshold float64) IdentEval {
	byPerson := map[string][]int{}
	for i, s := range samples {
		byPerson[s.Person] = append(byPerson[s.Person], i)
	}
	var enrolled []string
	for p, idx := range byPerson {
		if len(idx) >= 2 {
			enrolled = append(enrolled, p)
		}
	}
	sort.Strings(enrolled)
	descsOf := func(person string, skip int) []embed.Descriptor {
		var ds []embed.Descriptor
		for _, i := range byPerson[person] {
			if i != skip {
				ds = append(ds, samples[i].Desc)
			}
		}
		return ds
	}
	nearest := func(probe int) (string, float64) {
		best, bestD := "", math.Inf(1)
		for _, p := range enrolled {
			if d := SubjectDistance(mode, samples[probe].Desc, descsOf(p, probe)); d < bestD {
				best, bestD = p, d
			}
		}
		return best, bestD
	}

	res := IdentEval{Mode: mode, Threshold: threshold}
	type mated struct {
		right bool
		d     float64
	}
	var ms []mated
	var nonMated []float64
	for i, s := range samples {
		who, d := nearest(i)
		if len(byPerson[s.Person]) >= 2 {
			ms = append(ms, mated{right: who == s.Person, d: d})
		} else {
			nonMated = append(nonMated, d)
		}
	}
	res.Mated, res.NonMated = len(ms), len(nonMated)
	fnirAt := func(t float64) float64 {
		if len(ms) == 0 {
			return 0
		}
		miss := 0
		for _, m := range ms {
			if !m.right || m.d > t {
				miss++
			}
		}
		return float64(miss) / float64(len(ms))
	}
	right := 0
	for _, m := range ms {
		if m.right {
			right++
		}
	}
	if len(ms) > 0 {
		res.Rank1 = float64(right) / float64(len(ms))
	}
	res.FNIR = fnirAt(threshold)
	if len(nonMated) > 0 {
		fp := 0
		for _, d := range nonMated {
			if d <= threshold {
				fp++
			}
		}
		res.FPIR = float64(fp) / float64(len(nonMated))
		sort.Float64s(nonMated)
		// The largest threshold at which at most the given share of
		// non-mated probes match.
		at := func(share float64) float64 {
			n := int(math.Floor(share * float64(len(nonMated))))
			if n >= len(nonMated) {
				return nonMated[len(nonMated)-1]
			}
			return math.Nextafter(nonMated[n], math.Inf(-1))
		}
		res.ThresholdAtFPIR1, res.ThresholdAtFPIR5 = at(0.01), at(0.05)
		res.FNIRAtFPIR1 = fnirAt(res.ThresholdAtFPIR1)
		res.FNIRAtFPIR5 = fnirAt(res.ThresholdAtFPIR5)
	}
	return res
}
