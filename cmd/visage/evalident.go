package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/index"
	"github.com/visage/visage/store"
)

// identProtocol is the open-set protocol on a tree <person>/<photos>:
// people with more than K photos are enrolled from their first K (by
// name) and probe with their other photos (a seeded choice, capped per
// person); people with at most K photos are never enrolled and probe with
// their first photo (a seeded sample when capped).
type identProtocol struct {
	root     string
	enrolled []identPerson
	// mated and strangers are probe photos (paths under root).
	mated     []identProbe
	strangers []identProbe
}

type identPerson struct {
	name    string
	gallery []string
}

type identProbe struct {
	person, path string
}

// inPart reports whether a person belongs to part i of n (a hash of the
// name), so that a tree splits into parts to tune on and to confirm on.
func inPart(person string, part, parts int) bool {
	if parts <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(person))
	return int(h.Sum32()%uint32(parts)) == part
}

// parsePart reads "i/n" (0 ≤ i < n); "" is the whole tree.
func parsePart(s string) (part, parts int, err error) {
	if s == "" {
		return 0, 1, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("--part %q: want i/n with 0 <= i < n", s)
	}
	return i, n, nil
}

func buildIdentProtocol(root string, k, matedCap, strangersCap int, seed uint64, part, parts int) (*identProtocol, error) {
	people, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	p := &identProtocol{root: root}
	var singles []identProbe
	for _, d := range people {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") || !inPart(d.Name(), part, parts) {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, err
		}
		var photos []string
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				photos = append(photos, filepath.Join(d.Name(), e.Name()))
			}
		}
		sort.Strings(photos)
		switch {
		case len(photos) > k:
			p.enrolled = append(p.enrolled, identPerson{name: d.Name(), gallery: photos[:k]})
			rest := slices.Clone(photos[k:])
			rng.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
			for _, ph := range rest[:min(matedCap, len(rest))] {
				p.mated = append(p.mated, identProbe{d.Name(), ph})
			}
		case len(photos) > 0:
			singles = append(singles, identProbe{d.Name(), photos[0]})
		}
	}
	if strangersCap > 0 && len(singles) > strangersCap {
		rng.Shuffle(len(singles), func(i, j int) { singles[i], singles[j] = singles[j], singles[i] })
		singles = singles[:strangersCap]
		sort.Slice(singles, func(i, j int) bool { return singles[i].person < singles[j].person })
	}
	p.strangers = singles
	if len(p.enrolled) == 0 {
		return nil, fmt.Errorf("no person in %s has more than %d photos", root, k)
	}
	return p, nil
}

// probeOutcome is one probe's answer: its first candidate's statistic
// (score under a target policy, minus the distance under a fixed one;
// -Inf when no face or no candidate), whether that candidate is right,
// and whether the service answered match.
type probeOutcome struct {
	mated, right, match bool
	stat                float64
}

// runEvalIdentification runs the open-set protocol through the service's
// own code: an embedded deployment in a temporary directory (SQLite, the
// HNSW index), enrollment and identification calls, the service's
// calibration and decisions.
func runEvalIdentification(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("eval identification", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var ef engineFlags
	ef.register(fs, runtime.NumCPU())
	images := fs.String("images", "", "tree <person>/<photos>")
	k := fs.Int("gallery", 1, "photos enrolled per person (people with more than this many are enrolled)")
	matedCap := fs.Int("mated-per-person", 1, "mated probes per enrolled person at most (a seeded choice of their other photos)")
	strangersCap := fs.Int("strangers", 0, "never-enrolled probes at most (a seeded sample; 0: all)")
	seed := fs.Uint64("seed", 1, "seed of the probe choices")
	partFlag := fs.String("part", "", "only the people of part i/n of the tree (by a hash of the name): tune on one part, confirm on another")
	targetFPIR := fs.Float64("target-fpir", gallery.DefaultTargetFPIR, "the collection's target FPIR (the service's default policy)")
	threshold := fs.Float64("threshold", 0, "decide by this fixed distance instead of a target FPIR")
	detCSV := fs.String("det-csv", "", "write the DET curve (threshold, fpir, fnir) to this CSV file")
	detSVG := fs.String("det-svg", "", "write the DET curve to this SVG file")
	cohorts := fs.String("cohort-weights", "", "probe,gallery cohort weights instead of the default 0.25,0.5 (0,0: raw similarity); for measuring levers: the default decision is then not calibrated")
	secondLook := fs.Bool("second-look", true, "describe probes near the threshold again with their mirror image")
	sizes := fs.String("sizes", "", "instead of the protocol: the default decision in galleries of these sizes (e.g. 100,1000,3000), one photo per person, held in memory")
	repeats := fs.Int("repeats", 3, "with --sizes: random galleries per size")
	writePrior := fs.String("write-prior", "", "measure the prior by gallery size on this tree and write it as Go source to this file (gallery/calibration_lfw.go)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *images == "" || *k < 1 || *matedCap < 1 {
		return fmt.Errorf("usage: visage eval identification --images DIR [--gallery K] [--part i/n] [--det-csv FILE] [--det-svg FILE]")
	}
	part, parts, err := parsePart(*partFlag)
	if err != nil {
		return err
	}
	cfg, err := ef.config()
	if err != nil {
		return err
	}
	if *writePrior != "" {
		return writeLFWPrior(ctx, env, cfg, *images, part, parts, *partFlag, *writePrior)
	}
	if *sizes != "" {
		return runOperatingPoints(ctx, env, cfg, *images, part, parts, *sizes, *targetFPIR, max(1, *repeats))
	}
	pol := gallery.Policy{TargetFPIR: *targetFPIR}
	if *threshold > 0 {
		pol = gallery.Policy{Threshold: *threshold}
	}
	proto, err := buildIdentProtocol(*images, *k, *matedCap, *strangersCap, *seed, part, parts)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "protocol: %d people to enroll (%d photos each), %d mated probes, %d strangers\n",
		len(proto.enrolled), *k, len(proto.mated), len(proto.strangers))

	eng, err := gallery.OpenEngine(cfg)
	if err != nil {
		return err
	}
	defer eng.Close()
	dir, err := os.MkdirTemp("", "visage-eval-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "visage.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	idx, err := index.OpenHNSW(filepath.Join(dir, "hnsw"), embed.Dim, index.DefaultHNSWParams())
	if err != nil {
		return err
	}
	defer idx.Close()
	scfg := gallery.DefaultServiceConfig()
	if *cohorts != "" || !*secondLook {
		t := gallery.DefaultTuning()
		if *cohorts != "" {
			a, b, ok := strings.Cut(*cohorts, ",")
			pw, err1 := strconv.ParseFloat(a, 64)
			gw, err2 := strconv.ParseFloat(b, 64)
			if !ok || err1 != nil || err2 != nil {
				return fmt.Errorf("--cohort-weights %q: want two numbers, probe,gallery", *cohorts)
			}
			t.ProbeCohortWeight, t.GalleryCohortWeight = pw, gw
		}
		if !*secondLook {
			t.SecondLookBand = 0
		}
		scfg.Tuning = &t
	}
	svc := gallery.NewService(eng, st, idx, scfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer svc.Close()
	const coll = "eval"
	if _, err := svc.CreateCollection(ctx, coll, pol); err != nil {
		return err
	}

	// Enrollment: each person's gallery photos through the enroll use case.
	enrolled := make([]bool, len(proto.enrolled))
	var done atomic.Int64
	prog := newProgress(env, "enroll", len(proto.enrolled))
	err = gallery.Concurrently(ctx, 2*cfg.Workers, proto.enrolled, func(ctx context.Context, i int, p identPerson) error {
		sub, err := st.CreateSubject(ctx, store.Subject{Collection: coll, ExternalID: p.name})
		if err != nil {
			return err
		}
		photos := make([][]byte, len(p.gallery))
		for j, ph := range p.gallery {
			if photos[j], err = os.ReadFile(filepath.Join(proto.root, ph)); err != nil {
				return err
			}
		}
		res, err := svc.Enroll(ctx, "eval", coll, sub.ID, photos)
		if err != nil {
			return err
		}
		for _, r := range res {
			enrolled[i] = enrolled[i] || r.Status == gallery.StatusEnrolled
		}
		prog.tick(done.Add(1))
		return nil
	})
	if err != nil {
		return err
	}
	prog.finish()
	isEnrolled := map[string]bool{}
	for i, p := range proto.enrolled {
		if enrolled[i] {
			isEnrolled[p.name] = true
		} else {
			// Nothing enrolled: the person leaves the protocol (as a
			// client's refused enrollment would), subject and all.
			if sub, err := st.GetSubjectByExternalID(ctx, coll, p.name); err == nil {
				if err := svc.DeleteSubject(ctx, "eval", coll, sub.ID); err != nil {
					return err
				}
			}
		}
	}
	cal, err := svc.Calibrate(ctx, coll)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "calibration: %d subjects, %d proxy probes, median score %.4f, proxy FPIR %.4f\n", cal.Subjects, cal.Samples, cal.Median, cal.Above)

	var probes []identProbe
	var mated []bool
	for _, m := range proto.mated {
		if isEnrolled[m.person] {
			probes, mated = append(probes, m), append(mated, true)
		}
	}
	for _, s := range proto.strangers {
		probes, mated = append(probes, s), append(mated, false)
	}
	outs := make([]probeOutcome, len(probes))
	done.Store(0)
	prog = newProgress(env, "identify", len(probes))
	var operating atomic.Value
	err = gallery.Concurrently(ctx, 2*cfg.Workers, probes, func(ctx context.Context, i int, pr identProbe) error {
		data, err := os.ReadFile(filepath.Join(proto.root, pr.path))
		if err != nil {
			return err
		}
		out := probeOutcome{mated: mated[i], stat: math.Inf(-1)}
		res, err := svc.Identify(ctx, gallery.IdentifyRequest{Actor: "eval", Collection: coll, Image: data})
		switch {
		case err != nil && gallery.ErrorCode(err) == "internal":
			return fmt.Errorf("%s: %w", pr.path, err)
		case err != nil:
			// An image the engine refuses is a probe without a face.
		default:
			operating.Store(res.Operating)
			if f := centreFace(res); f != nil && len(f.Candidates) > 0 {
				top := f.Candidates[0]
				out.right = mated[i] && top.ExternalID == pr.person
				out.match = f.Decision == gallery.DecisionMatch && f.Match != nil && f.Match.SubjectID == top.SubjectID
				out.stat = top.Score
				if res.Operating.Policy.Fixed() {
					out.stat = -top.Distance
				}
			}
		}
		outs[i] = out
		prog.tick(done.Add(1))
		return nil
	})
	if err != nil {
		return err
	}
	prog.finish()
	op, _ := operating.Load().(gallery.Operating)
	rep := summarise(outs)
	if rep.mated == 0 || rep.strangers == 0 {
		return errors.New("no mated probe or no stranger: nothing to measure")
	}
	if op.Policy.Fixed() {
		fmt.Fprintf(env.stdout, "policy threshold=%.4f\n", op.Policy.Threshold)
	} else {
		fmt.Fprintf(env.stdout, "policy target_fpir=%g subjects=%d score_threshold=%.4f typical_distance=%.4f\n", op.Policy.TargetFPIR, op.Subjects, op.ScoreThreshold, op.Distance)
	}
	for _, at := range []float64{0.001, 0.01, 0.05} {
		t, fnir := rep.fnirAt(at)
		fmt.Fprintf(env.stdout, "fnir_at_fpir=%g fnir=%.4f threshold=%.4f\n", at, fnir, t)
	}
	if *detCSV != "" {
		if err := os.WriteFile(*detCSV, detCSVBytes(rep.det()), 0o644); err != nil {
			return err
		}
	}
	if *detSVG != "" {
		target := 0.0
		if !op.Policy.Fixed() {
			target = op.Policy.TargetFPIR
		}
		if err := os.WriteFile(*detSVG, detSVGBytes([]detSeries{{"this run", rep.det()}}, target), 0o644); err != nil {
			return err
		}
	}
	_, fnir1 := rep.fnirAt(0.01)
	fmt.Fprintf(env.stdout, "identification gallery=%d mated=%d strangers=%d rank1=%.4f fnir_at_fpir1=%.4f default_fpir=%.4f default_fnir=%.4f\n",
		len(isEnrolled), rep.mated, rep.strangers, rep.rank1, fnir1, rep.defaultFPIR, rep.defaultFNIR)
	return nil
}

// centreFace is the face whose box centre is nearest the image centre:
// the person a portrait of a tree like LFW is labelled with.
func centreFace(res *gallery.Identification) *gallery.IdentifiedFace {
	var best *gallery.IdentifiedFace
	bestD := math.Inf(1)
	for i := range res.Faces {
		b := res.Faces[i].Box
		dx := float64(b.Min.X+b.Max.X)/2 - float64(res.Width)/2
		dy := float64(b.Min.Y+b.Max.Y)/2 - float64(res.Height)/2
		if d := dx*dx + dy*dy; d < bestD {
			best, bestD = &res.Faces[i], d
		}
	}
	return best
}

// identReport summarises probe outcomes.
type identReport struct {
	mated, strangers         int
	rank1                    float64
	defaultFPIR, defaultFNIR float64
	// matedStats are mated probes' statistics (-Inf when their first
	// candidate is wrong: no threshold matches them right); strangerStats
	// strangers', both sorted decreasing.
	matedStats, strangerStats []float64
}

func summarise(outs []probeOutcome) identReport {
	var r identReport
	fp, fn, right := 0, 0, 0
	for _, o := range outs {
		if o.mated {
			r.mated++
			s := math.Inf(-1)
			if o.right {
				right++
				s = o.stat
			}
			if !(o.right && o.match) {
				fn++
			}
			r.matedStats = append(r.matedStats, s)
		} else {
			r.strangers++
			if o.match {
				fp++
			}
			r.strangerStats = append(r.strangerStats, o.stat)
		}
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(r.matedStats)))
	sort.Sort(sort.Reverse(sort.Float64Slice(r.strangerStats)))
	if r.mated > 0 {
		r.rank1, r.defaultFNIR = float64(right)/float64(r.mated), float64(fn)/float64(r.mated)
	}
	if r.strangers > 0 {
		r.defaultFPIR = float64(fp) / float64(r.strangers)
	}
	return r
}

// fnirAt is the FNIR at the strictest threshold that lets at most a share
// fpir of strangers through (a probe passes when its statistic exceeds
// the threshold), and that threshold.
func (r identReport) fnirAt(fpir float64) (threshold, fnir float64) {
	n := int(math.Floor(fpir * float64(len(r.strangerStats))))
	threshold = r.strangerStats[min(n, len(r.strangerStats)-1)]
	miss := 0
	for _, s := range r.matedStats {
		if !(s > threshold) {
			miss++
		}
	}
	return threshold, float64(miss) / float64(len(r.matedStats))
}

// detPoint is one operating point of a DET curve.
type detPoint struct{ threshold, fpir, fnir float64 }

// det is the curve at every stranger statistic: each threshold that
// changes the FPIR.
func (r identReport) det() []detPoint {
	var out []detPoint
	m := 0 // mated statistics above the threshold
	for i, t := range r.strangerStats {
		if i+1 < len(r.strangerStats) && r.strangerStats[i+1] == t {
			continue
		}
		if math.IsInf(t, -1) {
			break
		}
		for m < len(r.matedStats) && r.matedStats[m] > t {
			m++
		}
		out = append(out, detPoint{threshold: t, fpir: float64(i+1) / float64(len(r.strangerStats)),
			fnir: 1 - float64(m)/float64(len(r.matedStats))})
	}
	// The strictest point: no stranger through.
	first := 0
	for first < len(r.matedStats) && len(r.strangerStats) > 0 && r.matedStats[first] > r.strangerStats[0] {
		first++
	}
	return append([]detPoint{{threshold: r.strangerStats[0], fpir: 0, fnir: 1 - float64(first)/float64(len(r.matedStats))}}, out...)
}

func detCSVBytes(pts []detPoint) []byte {
	var b strings.Builder
	b.WriteString("threshold,fpir,fnir\n")
	for _, p := range pts {
		fmt.Fprintf(&b, "%.6f,%.6f,%.6f\n", p.threshold, p.fpir, p.fnir)
	}
	return []byte(b.String())
}

// detSeries is one labelled DET curve.
type detSeries struct {
	label string
	pts   []detPoint
}

// detSVGBytes draws DET curves: FPIR on a log axis from 0.1% to 100%,
// FNIR linear, and the target FPIR when > 0.
func detSVGBytes(series []detSeries, target float64) []byte {
	const w, h, ml, mb, mt, mr = 560, 400, 60, 45, 20, 20
	x := func(f float64) float64 {
		f = math.Max(f, 1e-3)
		return ml + (math.Log10(f)+3)/3*(w-ml-mr)
	}
	y := func(f float64) float64 { return mt + (1-f)*(h-mt-mb) }
	colors := []string{"#1f5fbf", "#d9822b", "#2e8b57", "#8e44ad", "#c0392b", "#555"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	for _, f := range []float64{0.001, 0.01, 0.1, 1} {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%g%%</text>`+"\n", x(f), mt, x(f), h-mb, x(f), h-mb+15, f*100)
	}
	for _, f := range []float64{0, 0.2, 0.4, 0.6, 0.8, 1} {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n", ml, y(f), w-mr, y(f), ml-5, y(f)+4, f*100)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">FPIR (strangers answered match)</text>`+"\n", (w+ml)/2, h-8)
	fmt.Fprintf(&b, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">FNIR (enrolled people missed)</text>`+"\n", h/2, h/2)
	if target > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#c33" stroke-dasharray="4 3"/><text x="%.1f" y="%d" fill="#c33">target %g</text>`+"\n",
			x(target), mt, x(target), h-mb, x(target)+4, h-mb-6, target)
	}
	for si, sr := range series {
		color := colors[si%len(colors)]
		var path strings.Builder
		lastX, lastY := -1.0, -1.0
		for i, p := range sr.pts {
			px, py := x(p.fpir), y(p.fnir)
			if i > 0 && i < len(sr.pts)-1 && px-lastX < 2 && math.Abs(py-lastY) < 1 {
				continue // steps under a pixel or two: keep the file small
			}
			lastX, lastY = px, py
			cmd := "L"
			if path.Len() == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, px, py)
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.TrimSpace(path.String()), color)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d">%s</text>`+"\n",
			w-mr-200, mt+12+16*si, w-mr-180, mt+12+16*si, color, w-mr-175, mt+16+16*si, sr.label)
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// readDETCSV reads a curve written by --det-csv.
func readDETCSV(path string) ([]detPoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var pts []detPoint
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if i == 0 {
			continue
		}
		var p detPoint
		if _, err := fmt.Sscanf(line, "%g,%g,%g", &p.threshold, &p.fpir, &p.fnir); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
		pts = append(pts, p)
	}
	return pts, nil
}

// runEvalDET draws DET curves written by eval identification into one
// SVG: visage eval det --svg OUT LABEL=FILE.csv...
func runEvalDET(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("eval det", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	out := fs.String("svg", "", "SVG file to write")
	target := fs.Float64("target-fpir", 0, "mark this FPIR")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return fmt.Errorf("usage: visage eval det --svg OUT LABEL=FILE.csv...")
	}
	var series []detSeries
	for _, a := range fs.Args() {
		label, path, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%q: want LABEL=FILE.csv", a)
		}
		pts, err := readDETCSV(path)
		if err != nil {
			return err
		}
		series = append(series, detSeries{label, pts})
	}
	return os.WriteFile(*out, detSVGBytes(series, *target), 0o644)
}
