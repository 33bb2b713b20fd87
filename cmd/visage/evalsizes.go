package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/visage/visage/gallery"
)

// sizePerson is one person of a tree for operating points: the
// descriptor they would enroll with, a probe of another photo (mated),
// and a probe they give as a stranger when not enrolled (or, enrolled,
// with their own subject left out).
type sizePerson struct {
	name           string
	enroll         []float32
	mated, strange []float32
}

// runOperatingPoints measures the default decision in galleries of the
// given sizes built from a tree, one photo per person: people with a
// second photo first (they give the mated probes), then people with one
// as distractors. Every person not enrolled probes as a stranger, and so
// does every enrolled one with their own subject left out (a gallery of
// one fewer), so that strangers are plentiful at every size. The
// galleries are held in memory and decided on by the service's code
// (gallery.Rank, MeasureProxies, Operate).
func runOperatingPoints(ctx context.Context, env *cliEnv, cfg gallery.EngineConfig, root string, part, parts int, sizesFlag string, target float64, repeats int) error {
	var sizes []int
	for _, f := range strings.Split(sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--sizes %q: want gallery sizes such as 100,1000,3000", sizesFlag)
		}
		sizes = append(sizes, n)
	}
	photos, err := describeTree(ctx, env, cfg, root, part, parts)
	if err != nil {
		return err
	}
	byName := map[string]*sizePerson{}
	var people []*sizePerson
	for _, ph := range photos {
		p := byName[ph.person]
		if p == nil {
			p = &sizePerson{name: ph.person}
			byName[ph.person] = p
			people = append(people, p)
		}
		switch {
		case p.enroll == nil && ph.enroll != nil:
			p.enroll = ph.enroll
			if p.strange == nil {
				p.strange = ph.probe
			}
		case p.enroll != nil && p.mated == nil && ph.probe != nil:
			p.mated = ph.probe
		case p.strange == nil && ph.probe != nil:
			p.strange = ph.probe
		}
	}
	var withMated, distractors []*sizePerson
	for _, p := range people {
		switch {
		case p.enroll != nil && p.mated != nil:
			withMated = append(withMated, p)
		case p.enroll != nil:
			distractors = append(distractors, p)
		}
	}
	fmt.Fprintf(env.stderr, "operating points: %d people, %d enrollable with a second photo, %d more enrollable\n", len(people), len(withMated), len(distractors))
	pol := gallery.Policy{TargetFPIR: target}
	rng := rand.New(rand.NewPCG(3, 0))
	fmt.Fprintf(env.stdout, "subjects  mated  strangers  score_threshold  distance  default_fpir  default_fnir  fnir@fpir0.1%%  fnir@fpir1%%  fnir@fpir5%%\n")
	for _, n := range sizes {
		if n > len(withMated)+len(distractors) {
			fmt.Fprintf(env.stderr, "operating points: %d subjects is more than the %d enrollable people; skipped\n", n, len(withMated)+len(distractors))
			continue
		}
		var agg struct {
			mated, strangers                      int
			scoreT, dist, fpir, fnir, f01, f1, f5 float64
		}
		for r := 0; r < repeats; r++ {
			// The gallery: as many people with a second photo as fit, at
			// random, then distractors.
			m := rng.Perm(len(withMated))
			d := rng.Perm(len(distractors))
			var in []*sizePerson
			for _, i := range m[:min(n, len(m))] {
				in = append(in, withMated[i])
			}
			for _, i := range d[:n-len(in)] {
				in = append(in, distractors[i])
			}
			mem := &memGallery{}
			enrolled := map[string]bool{}
			for _, p := range in {
				mem.add(p.name, p.enroll)
				enrolled[p.name] = true
			}
			var proxies []gallery.ProxyProbe
			for _, i := range rng.Perm(len(mem.faces))[:min(300, len(mem.faces))] {
				proxies = append(proxies, gallery.ProxyProbe{Vector: mem.faces[i].vec, SubjectID: mem.faces[i].subject})
			}
			cal, err := gallery.MeasureProxies(ctx, mem, pol, n, proxies)
			if err != nil {
				return err
			}
			op := gallery.Operate(pol, n, &cal)
			var outs []probeOutcome
			for _, p := range people {
				if enrolled[p.name] && p.mated != nil {
					cands, err := gallery.Rank(ctx, mem, op, p.mated, 1, "")
					if err != nil {
						return err
					}
					o := probeOutcome{mated: true, stat: math.Inf(-1)}
					if len(cands) > 0 {
						o.right, o.match, o.stat = cands[0].SubjectID == p.name, op.Accepts(cands[0]), cands[0].Score
					}
					outs = append(outs, o)
				}
				if p.strange == nil {
					continue
				}
				exclude := ""
				if enrolled[p.name] {
					exclude = p.name
				}
				cands, err := gallery.Rank(ctx, mem, op, p.strange, 1, exclude)
				if err != nil {
					return err
				}
				o := probeOutcome{stat: math.Inf(-1)}
				if len(cands) > 0 {
					o.match, o.stat = op.Accepts(cands[0]), cands[0].Score
				}
				outs = append(outs, o)
			}
			rep := summarise(outs)
			_, f01 := rep.fnirAt(0.001)
			_, f1 := rep.fnirAt(0.01)
			_, f5 := rep.fnirAt(0.05)
			agg.mated += rep.mated
			agg.strangers += rep.strangers
			for _, x := range []struct {
				sum *float64
				v   float64
			}{{&agg.scoreT, op.ScoreThreshold}, {&agg.dist, op.Distance}, {&agg.fpir, rep.defaultFPIR}, {&agg.fnir, rep.defaultFNIR},
				{&agg.f01, f01}, {&agg.f1, f1}, {&agg.f5, f5}} {
				*x.sum += x.v / float64(repeats)
			}
		}
		fmt.Fprintf(env.stdout, "%8d  %5d  %9d  %15.4f  %8.4f  %12.4f  %12.4f  %13.4f  %11.4f  %11.4f\n",
			n, agg.mated/repeats, agg.strangers/repeats, agg.scoreT, agg.dist, agg.fpir, agg.fnir, agg.f01, agg.f1, agg.f5)
	}
	// Beyond the tree: the prior's score threshold, extrapolated (its
	// distance depends on the cohorts of a gallery that size, which only
	// the collection's own calibration measures).
	for _, n := range []int{10000, 100000, 1000000} {
		op := gallery.Operate(pol, n, nil)
		fmt.Fprintf(env.stdout, "%8d  (extrapolated prior: score_threshold %.4f)\n", n, op.ScoreThreshold)
	}
	return nil
}
