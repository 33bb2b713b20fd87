package main

import (
	"container/heap"
	"context"
	"fmt"
	"go/format"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/visage/visage/align"
	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
)

// priorSizes are the gallery sizes the prior is measured at (and the
// largest the tree allows).
var priorSizes = []int{1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000}

// priorPhoto is one photo's descriptors: the enrollment variant's of the
// face enrollment would keep, the probe variant's of the face nearest the
// centre.
type priorPhoto struct {
	person        string
	enroll, probe []float32
}

// writeLFWPrior measures how strangers score in galleries of each size of
// priorSizes built from the tree's people (of one part: tune there,
// confirm on the rest), with the service's decision code (gallery.Rank,
// gallery.MeasureProxies) on galleries held in memory, and the
// false-match rates of verification, and writes them as Go source.
func writeLFWPrior(ctx context.Context, env *cliEnv, cfg gallery.EngineConfig, root string, part, parts int, partFlag, out string) error {
	photos, err := describeTree(ctx, env, cfg, root, part, parts)
	if err != nil {
		return err
	}
	// Each person enrolls with their first enrollable photo and, when not
	// enrolled, probes with their first photo that has a face.
	byName := map[string]*priorPerson{}
	var all []*priorPerson
	for _, ph := range photos {
		p := byName[ph.person]
		if p == nil {
			p = &priorPerson{name: ph.person}
			byName[ph.person] = p
			all = append(all, p)
		}
		if p.enroll == nil && ph.enroll != nil {
			p.enroll = ph.enroll
		}
		if p.probe == nil && ph.probe != nil {
			p.probe = ph.probe
		}
	}
	var enrollable []*priorPerson
	for _, p := range all {
		if p.enroll != nil {
			enrollable = append(enrollable, p)
		}
	}
	// The largest gallery leaves 300 people to be strangers.
	largest := len(enrollable) - 300
	if largest < 2 {
		return fmt.Errorf("prior: %d enrollable people is too few", len(enrollable))
	}
	sizes := slices.DeleteFunc(slices.Clone(priorSizes), func(n int) bool { return n >= largest })
	sizes = append(sizes, largest)
	fmt.Fprintf(env.stderr, "prior: %d people, %d enrollable; sizes %v\n", len(all), len(enrollable), sizes)

	rng := rand.New(rand.NewPCG(14, 0))
	var points []gallery.PriorPoint
	for _, n := range sizes {
		// Repeats: enough strangers for the tail at every size.
		repeats := min(60, max(4, 6000/max(1, len(all)-n)+3000/n))
		type repeat struct {
			median  float64
			samples int
			scores  []float64
		}
		var reps []repeat
		var cps, cgs []float64
		for r := 0; r < repeats; r++ {
			perm := rng.Perm(len(enrollable))
			mem := &memGallery{}
			in := map[string]bool{}
			for _, i := range perm[:n] {
				p := enrollable[i]
				mem.add(p.name, p.enroll)
				in[p.name] = true
			}
			var proxies []gallery.ProxyProbe
			for _, f := range mem.faces[:min(len(mem.faces), 300)] {
				proxies = append(proxies, gallery.ProxyProbe{Vector: f.vec, SubjectID: f.subject})
			}
			cal, err := gallery.MeasureProxies(ctx, mem, gallery.Policy{TargetFPIR: gallery.DefaultTargetFPIR}, n, proxies)
			if err != nil {
				return err
			}
			op := gallery.Operate(gallery.Policy{TargetFPIR: gallery.DefaultTargetFPIR}, n, nil)
			rep := repeat{median: cal.Median, samples: cal.Samples}
			for _, p := range all {
				if in[p.name] || p.probe == nil {
					continue
				}
				cands, err := gallery.Rank(ctx, mem, op, p.probe, 1, "")
				if err != nil {
					return err
				}
				if len(cands) == 0 {
					continue
				}
				rep.scores = append(rep.scores, cands[0].Score)
				cps, cgs = append(cps, cands[0].ProbeCohort), append(cgs, cands[0].GalleryCohort)
			}
			reps = append(reps, rep)
		}
		// The prior's median; then strangers' scores relative to the
		// median a collection of this size would use: its own, shrunk
		// towards the prior's as gallery.Operate does.
		var medians []float64
		for _, rp := range reps {
			if rp.samples > 0 {
				medians = append(medians, rp.median)
			}
		}
		prior := mean(medians)
		var rel []float64
		for _, rp := range reps {
			trust := gallery.CalibrationTrust(rp.samples)
			m := prior + trust*(rp.median-prior)
			for _, sc := range rp.scores {
				rel = append(rel, sc-m)
			}
		}
		pt := gallery.PriorPoint{Subjects: n, Median: prior, ProbeCohort: medianOf(cps), GalleryCohort: medianOf(cgs),
			Delta: tailQuantiles(rel, gallery.PriorLevels)}
		fmt.Fprintf(env.stderr, "prior: N=%d repeats=%d strangers=%d median=%.4f delta(1%%)=%.4f\n", n, repeats, len(rel), pt.Median, pt.Delta[7])
		points = append(points, pt)
	}
	// Beyond the largest gallery the median is extrapolated: its growth
	// per doubling, measured with the full cohort weight on galleries of
	// a quarter, half and all of the largest size.
	var sx, sy []float64
	for _, n := range []int{largest / 4, largest / 2, largest} {
		var ms []float64
		for r := 0; r < 4; r++ {
			perm := rng.Perm(len(enrollable))
			mem := &memGallery{}
			for _, i := range perm[:n] {
				mem.add(enrollable[i].name, enrollable[i].enroll)
			}
			var proxies []gallery.ProxyProbe
			for _, f := range mem.faces[:min(len(mem.faces), 300)] {
				proxies = append(proxies, gallery.ProxyProbe{Vector: f.vec, SubjectID: f.subject})
			}
			cal, err := gallery.MeasureProxies(ctx, mem, gallery.Policy{TargetFPIR: gallery.DefaultTargetFPIR}, gallery.CohortFull, proxies)
			if err != nil {
				return err
			}
			ms = append(ms, cal.Median)
		}
		sx, sy = append(sx, math.Log2(float64(n))), append(sy, mean(ms))
	}
	_, slope := linearFit(sx, sy)
	slope = math.Max(0, slope)
	fmt.Fprintf(env.stderr, "prior: median growth per doubling at full cohort weight %.5f (sizes %d..%d)\n", slope, largest/4, largest)
	probePairs, enrolledPairs := fmrCurves(all)
	return writePriorSource(out, partFlag, points, slope, probePairs, enrolledPairs)
}

// describeTree describes every photo of a tree's part as the service
// would: the enrollment variant's descriptor of the face enrollment would
// keep (none when it would refuse the photo), and the probe's of the face
// nearest the centre after a second look (the decisions that matter are
// near a threshold, where identification takes one). Photos are in name
// order, person by person.
func describeTree(ctx context.Context, env *cliEnv, cfg gallery.EngineConfig, root string, part, parts int) ([]priorPhoto, error) {
	people, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	type job struct{ person, path string }
	var jobs []job
	for _, d := range people {
		if !d.IsDir() || !inPart(d.Name(), part, parts) {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				jobs = append(jobs, job{d.Name(), filepath.Join(root, d.Name(), e.Name())})
			}
		}
	}
	eng, err := gallery.OpenEngine(cfg)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	photos := make([]priorPhoto, len(jobs))
	gates := align.EnrollGates()
	var done atomic.Int64
	prog := newProgress(env, "describe", len(jobs))
	err = gallery.Concurrently(ctx, 2*cfg.Workers, jobs, func(ctx context.Context, i int, j job) error {
		defer func() { prog.tick(done.Add(1)) }()
		photos[i].person = j.person
		data, err := os.ReadFile(j.path)
		if err != nil {
			return err
		}
		res, err := eng.Faces(ctx, data)
		if err != nil {
			return nil // a photo the engine refuses takes no part
		}
		if c := centreOf(res); c >= 0 {
			// The probe as it is decided near a threshold: with the second
			// look's mirror pass (identification describes every probe whose
			// score falls near its threshold so).
			f := res.Faces[c]
			if _, err := eng.SecondLook(ctx, &f); err != nil {
				return err
			}
			photos[i].probe = slices.Clone(f.Descriptor[:])
		}
		top, err := gallery.Largest(res.Faces, 0.1)
		if err != nil || len(top) > 1 || len(gates.Check(top[0].Quality)) > 0 {
			return nil
		}
		f := top[0]
		if _, err := eng.DescribeForEnrollment(ctx, &f); err != nil {
			return err
		}
		photos[i].enroll = slices.Clone(f.Descriptor[:])
		return nil
	})
	if err != nil {
		return nil, err
	}
	prog.finish()
	return photos, nil
}

// priorPerson is one person of the tree: the descriptors enrollment and
// a probe would make of their photos.
type priorPerson struct {
	name          string
	enroll, probe []float32
}

func centreOf(res *gallery.Result) int {
	best, bestD := -1, math.Inf(1)
	for i, f := range res.Faces {
		dx := float64(f.Box.Min.X+f.Box.Max.X)/2 - float64(res.Width)/2
		dy := float64(f.Box.Min.Y+f.Box.Max.Y)/2 - float64(res.Height)/2
		if d := dx*dx + dy*dy; d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[len(s)/2]
}

// tailQuantiles returns, for each level p, the value a sample exceeds with
// probability p. A level with fewer than 20 samples beyond it is
// extrapolated: an exponential tail fitted to the four smallest levels
// that have enough.
func tailQuantiles(xs []float64, levels []float64) []float64 {
	s := slices.Clone(xs)
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	out := make([]float64, len(levels))
	var fx, fy []float64 // (log p, quantile) of the levels measured
	for i, p := range levels {
		out[i] = s[min(len(s)-1, int(p*float64(len(s))))]
		if p*float64(len(s)) >= 20 {
			fx, fy = append(fx, math.Log(p)), append(fy, out[i])
		}
	}
	if len(fx) > 4 {
		fx, fy = fx[len(fx)-4:], fy[len(fy)-4:]
	}
	if len(fx) >= 2 {
		a, b := linearFit(fx, fy)
		for i, p := range levels {
			if p*float64(len(s)) < 20 {
				out[i] = a + b*math.Log(p)
			}
		}
	}
	for i := 1; i < len(out); i++ { // quantiles never decrease as p does
		out[i] = math.Max(out[i], out[i-1]+1e-6)
	}
	return out
}

// linearFit is the least-squares line y = a + b·x.
func linearFit(x, y []float64) (a, b float64) {
	n := float64(len(x))
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx, sy, sxx, sxy = sx+x[i], sy+y[i], sxx+x[i]*x[i], sxy+x[i]*y[i]
	}
	b = (n*sxy - sx*sy) / (n*sxx - sx*sx)
	return (sy - b*sx) / n, b
}

// fmrCurves measures verification's false-match rates on every pair of
// different people: probe against probe, and probe against an enrolled
// face.
func fmrCurves(people []*priorPerson) (probePairs, enrolledPairs gallery.FMRCurve) {
	var pp, pe []float64
	for i, a := range people {
		if a.probe == nil {
			continue
		}
		for j, b := range people {
			if i == j {
				continue
			}
			if j > i && b.probe != nil {
				pp = append(pp, embed.Distance(embed.Descriptor(a.probe), embed.Descriptor(b.probe)))
			}
			if b.enroll != nil {
				pe = append(pe, embed.Distance(embed.Descriptor(a.probe), embed.Descriptor(b.enroll)))
			}
		}
	}
	// A pair matches when its distance is at most the threshold: the
	// quantiles of minus the distance, as tailQuantiles takes upper tails.
	curve := func(ds []float64) gallery.FMRCurve {
		neg := make([]float64, len(ds))
		for i, d := range ds {
			neg[i] = -d
		}
		q := tailQuantiles(neg, gallery.FMRLevels)
		c := gallery.FMRCurve{Distances: make([]float64, len(q))}
		for i, v := range q {
			c.Distances[i] = -v
		}
		return c
	}
	return curve(pp), curve(pe)
}

// memGallery is a gallery held in memory: exact nearest neighbours.
type memGallery struct {
	faces []memFace
}

type memFace struct {
	key     uint64
	subject string
	vec     []float32
}

func (m *memGallery) add(subject string, vec []float32) {
	m.faces = append(m.faces, memFace{key: uint64(len(m.faces) + 1), subject: subject, vec: vec})
}

// Nearest returns the k faces nearest q.
func (m *memGallery) Nearest(_ context.Context, q []float32, k int) ([]gallery.Neighbour, error) {
	h := &neighbourHeap{}
	for _, f := range m.faces {
		d := embed.Distance(embed.Descriptor(q), embed.Descriptor(f.vec))
		if h.Len() < k {
			heap.Push(h, gallery.Neighbour{Key: f.key, FaceID: f.subject, SubjectID: f.subject, ExternalID: f.subject, Distance: d})
		} else if d < (*h)[0].Distance {
			(*h)[0] = gallery.Neighbour{Key: f.key, FaceID: f.subject, SubjectID: f.subject, ExternalID: f.subject, Distance: d}
			heap.Fix(h, 0)
		}
	}
	out := slices.Clone(*h)
	sort.Slice(out, func(i, j int) bool { return out[i].Distance < out[j].Distance })
	return out, nil
}

// Vectors returns the faces' descriptors.
func (m *memGallery) Vectors(_ context.Context, keys []uint64) (map[uint64][]float32, error) {
	out := make(map[uint64][]float32, len(keys))
	for _, k := range keys {
		if k >= 1 && int(k) <= len(m.faces) {
			out[k] = m.faces[k-1].vec
		}
	}
	return out, nil
}

// neighbourHeap is a max-heap by distance: the k nearest so far.
type neighbourHeap []gallery.Neighbour

func (h neighbourHeap) Len() int           { return len(h) }
func (h neighbourHeap) Less(i, j int) bool { return h[i].Distance > h[j].Distance }
func (h neighbourHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *neighbourHeap) Push(x any)        { *h = append(*h, x.(gallery.Neighbour)) }
func (h *neighbourHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// writePriorSource writes the prior as a Go file of package gallery.
func writePriorSource(path, part string, pts []gallery.PriorPoint, slope float64, probePairs, enrolledPairs gallery.FMRCurve) error {
	var b strings.Builder
	cmd := "visage eval identification --images ../shared/testdata/lfw-open/images"
	if part != "" {
		cmd += " --part " + part
	}
	fmt.Fprintf(&b, "// Code generated by `%s --write-prior gallery/calibration_lfw.go`; DO NOT EDIT.\n\n", cmd)
	b.WriteString("package gallery\n\n")
	b.WriteString("// lfwPrior is how strangers score in galleries of lfw-open people of\n// the tuning part, by gallery size (see Prior).\n")
	b.WriteString("var lfwPrior = &Prior{\n\tPoints: []PriorPoint{\n")
	for _, p := range pts {
		fmt.Fprintf(&b, "\t\t{Subjects: %d, Median: %.5f, ProbeCohort: %.5f, GalleryCohort: %.5f, Delta: []float64{", p.Subjects, p.Median, p.ProbeCohort, p.GalleryCohort)
		for i, d := range p.Delta {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%.5f", d)
		}
		b.WriteString("}},\n")
	}
	fmt.Fprintf(&b, "\t},\n\tMedianSlope: %.5f,\n}\n\n", slope)
	b.WriteString("// ProbePairFMR is the false-match rate of two probes (two images\n// compared), EnrolledPairFMR of a probe and an enrolled face, measured on\n// every pair of different people of the tuning part.\nvar (\n")
	for _, c := range []struct {
		name string
		c    gallery.FMRCurve
	}{{"ProbePairFMR", probePairs}, {"EnrolledPairFMR", enrolledPairs}} {
		fmt.Fprintf(&b, "\t%s = FMRCurve{Distances: []float64{", c.name)
		for i, d := range c.c.Distances {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%.5f", d)
		}
		b.WriteString("}}\n")
	}
	b.WriteString(")\n")
	src, err := format.Source([]byte(b.String()))
	if err != nil {
		return err
	}
	return os.WriteFile(path, src, 0o644)
}
