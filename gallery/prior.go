package gallery

import (
	"math"
	"sort"
)

// Prior is the calibration measured on lfw-open: for galleries of given
// sizes, how strangers score (see decide.go). `visage eval identification
// --write-prior` measures it and writes calibration_lfw.go.
type Prior struct {
	// Points are gallery sizes, increasing.
	Points []PriorPoint
	// MedianSlope is the growth of the median proxy score per doubling
	// of the gallery beyond the last point (an extrapolation).
	MedianSlope float64
}

// PriorPoint is the calibration of one gallery size.
type PriorPoint struct {
	Subjects int
	// Median is the median score of strangers-by-proxy (enrolled faces
	// probing the rest of the gallery), the quantity a collection
	// measures of itself; strangers' own median is within 0.001 of it.
	Median float64
	// ProbeCohort and GalleryCohort are strangers' median cohorts.
	ProbeCohort, GalleryCohort float64
	// Delta[i] is the score strangers exceed with probability
	// PriorLevels[i], minus Median.
	Delta []float64
}

// PriorLevels are the FPIR levels a prior point holds, decreasing. Those
// below 1% are extrapolated from the 1–10% tail when measured (a sample
// of strangers cannot show them directly).
var PriorLevels = []float64{0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002, 0.001}

// at interpolates the calibration at n subjects (linearly in log n;
// beyond the last point the median grows by MedianSlope per doubling).
func (p *Prior) at(n int) PriorPoint {
	n = max(n, 1)
	pts := p.Points
	if n <= pts[0].Subjects {
		return pts[0]
	}
	last := pts[len(pts)-1]
	if n >= last.Subjects {
		out := last
		out.Subjects = n
		out.Median += p.MedianSlope * math.Log2(float64(n)/float64(last.Subjects))
		return out
	}
	i := sort.Search(len(pts), func(i int) bool { return pts[i].Subjects >= n })
	a, b := pts[i-1], pts[i]
	f := math.Log(float64(n)/float64(a.Subjects)) / math.Log(float64(b.Subjects)/float64(a.Subjects))
	lerp := func(x, y float64) float64 { return x + f*(y-x) }
	out := PriorPoint{Subjects: n, Median: lerp(a.Median, b.Median), ProbeCohort: lerp(a.ProbeCohort, b.ProbeCohort),
		GalleryCohort: lerp(a.GalleryCohort, b.GalleryCohort), Delta: make([]float64, len(a.Delta))}
	for k := range a.Delta {
		out.Delta[k] = lerp(a.Delta[k], b.Delta[k])
	}
	return out
}

// delta is the score above the median that strangers exceed with
// probability target (log-linear between levels, exponential tail beyond
// the last).
func (pt PriorPoint) delta(target float64) float64 {
	lv := PriorLevels
	lt := math.Log(target)
	for i := 1; i < len(lv); i++ {
		if target >= lv[i] {
			f := (lt - math.Log(lv[i-1])) / (math.Log(lv[i]) - math.Log(lv[i-1]))
			return pt.Delta[i-1] + f*(pt.Delta[i]-pt.Delta[i-1])
		}
	}
	if target > lv[0] {
		return pt.Delta[0]
	}
	k := len(lv) - 1
	slope := (pt.Delta[k] - pt.Delta[k-1]) / (math.Log(lv[k]) - math.Log(lv[k-1]))
	return pt.Delta[k] + slope*(lt-math.Log(lv[k]))
}

// fpir inverts delta: the probability that a stranger scores above the
// median by more than x.
func (pt PriorPoint) fpir(x float64) float64 {
	lv := PriorLevels
	seg := func(i int) float64 { // log level at x on the segment i-1..i
		f := (x - pt.Delta[i-1]) / (pt.Delta[i] - pt.Delta[i-1])
		return math.Log(lv[i-1]) + f*(math.Log(lv[i])-math.Log(lv[i-1]))
	}
	var l float64
	switch {
	case x <= pt.Delta[0]:
		l = seg(1)
	case x >= pt.Delta[len(lv)-1]:
		l = seg(len(lv) - 1)
	default:
		i := sort.SearchFloat64s(pt.Delta, x)
		l = seg(max(i, 1))
	}
	return math.Min(1, math.Max(1e-9, math.Exp(l)))
}

// FMRCurve is the false-match rate of one kind of comparison as a
// function of distance, measured on lfw-open pairs of different people:
// Distances[i] is the distance below which a pair of different people
// falls with probability FMRLevels[i].
type FMRCurve struct {
	Distances []float64
}

// FMRLevels are the false-match rates an FMRCurve holds, decreasing.
var FMRLevels = []float64{0.1, 0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001, 0.00003, 0.00001}

// Distance is the distance threshold at false-match rate fmr (log-linear
// between levels, extended linearly beyond).
func (c FMRCurve) Distance(fmr float64) float64 {
	lf := math.Log(fmr)
	k := 1
	for k < len(FMRLevels)-1 && fmr < FMRLevels[k] {
		k++
	}
	a, b := math.Log(FMRLevels[k-1]), math.Log(FMRLevels[k])
	return math.Max(0, c.Distances[k-1]+(lf-a)/(b-a)*(c.Distances[k]-c.Distances[k-1]))
}

// FMR is the estimated false-match rate at distance d.
func (c FMRCurve) FMR(d float64) float64 {
	k := 1
	for k < len(FMRLevels)-1 && d < c.Distances[k] {
		k++
	}
	a, b := math.Log(FMRLevels[k-1]), math.Log(FMRLevels[k])
	l := a + (d-c.Distances[k-1])/(c.Distances[k]-c.Distances[k-1])*(b-a)
	return math.Min(1, math.Max(1e-9, math.Exp(l)))
}
