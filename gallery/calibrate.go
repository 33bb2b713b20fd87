package gallery

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"

	"github.com/visage/visage/store"
)

// calibrationSamples is how many enrolled faces a calibration probes:
// enough to place the median within about 0.001 of the score scale.
const calibrationSamples = 300

// Calibrate measures a collection's own strangers-by-proxy and stores the
// measurement: up to calibrationSamples enrolled faces each probe the rest
// of the collection, their own subject left out, with the same decision
// code as identification. Their scores are distributed as strangers'
// (docs/benchmarks.md, "Open-set identification": medians within 0.001 on
// lfw-open), so their median moves the prior to this collection, and the
// share of them the policy in force accepts estimates its FPIR here.
func (s *Service) Calibrate(ctx context.Context, collection string) (Calibration, error) {
	coll, err := s.store.GetCollection(ctx, collection)
	if err != nil {
		return Calibration{}, fmt.Errorf("calibrate: %w", err)
	}
	st, err := s.store.CollectionStats(ctx, collection)
	if err != nil {
		return Calibration{}, fmt.Errorf("calibrate: %w", err)
	}
	n := int(st.Subjects)
	keys, err := s.store.IndexedKeys(ctx, collection)
	if err != nil {
		return Calibration{}, fmt.Errorf("calibrate: %w", err)
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", collection, len(keys))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0))
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	keys = keys[:min(len(keys), calibrationSamples)]
	refs, err := s.store.FaceRefs(ctx, collection, keys)
	if err != nil {
		return Calibration{}, fmt.Errorf("calibrate: %w", err)
	}
	src := s.neighbours(collection)
	vecs, err := src.Vectors(ctx, keys)
	if err != nil {
		return Calibration{}, fmt.Errorf("calibrate: %w", err)
	}
	probes := make([]ProxyProbe, 0, len(keys))
	for _, k := range keys {
		if ref, ok := refs[k]; ok && vecs[k] != nil {
			probes = append(probes, ProxyProbe{Vector: vecs[k], SubjectID: ref.SubjectID})
		}
	}
	pol := PolicyOf(coll)
	cal, err := MeasureProxies(ctx, src, pol, n, probes)
	if err != nil {
		return Calibration{}, fmt.Errorf("calibrate %s: %w", collection, err)
	}
	b, err := json.Marshal(cal)
	if err != nil {
		return Calibration{}, fmt.Errorf("calibrate: %w", err)
	}
	if err := s.store.SetCollectionCalibration(ctx, collection, b); err != nil {
		return Calibration{}, fmt.Errorf("calibrate: %w", err)
	}
	return cal, nil
}

// ProxyProbe is an enrolled face probing its gallery as a stranger.
type ProxyProbe struct {
	Vector    []float32
	SubjectID string
}

// MeasureProxies scores proxy probes against a gallery of n subjects
// (each leaving its own subject out) and summarises them as a
// Calibration, with the share the policy pol accepts.
func MeasureProxies(ctx context.Context, src Neighbours, pol Policy, n int, probes []ProxyProbe) (Calibration, error) {
	scoring := Operate(Policy{TargetFPIR: DefaultTargetFPIR}, n, nil)
	var scores, cps, cgs, dists []float64
	for _, p := range probes {
		cands, err := rank(ctx, src, scoring, p.Vector, 1, p.SubjectID)
		if err != nil {
			return Calibration{}, err
		}
		if len(cands) == 0 {
			continue // a gallery of one subject has no stranger for it
		}
		c := cands[0]
		scores, cps, cgs, dists = append(scores, c.Score), append(cps, c.ProbeCohort), append(cgs, c.GalleryCohort), append(dists, c.Distance)
	}
	cal := Calibration{Subjects: n, Samples: len(scores)}
	if len(scores) == 0 {
		return cal, nil
	}
	cal.Median, cal.ProbeCohort, cal.GalleryCohort = median(scores), median(cps), median(cgs)
	op := Operate(pol, n, &cal)
	above := 0
	for i := range scores {
		if op.accepts(Candidate{Distance: dists[i], Score: scores[i]}) {
			above++
		}
	}
	cal.Above = float64(above) / float64(len(scores))
	return cal, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// calibrationOf reads a collection's stored calibration; nil when none
// or unreadable (the prior then decides alone).
func calibrationOf(c store.Collection) *Calibration {
	if len(c.Calibration) == 0 {
		return nil
	}
	var cal Calibration
	if err := json.Unmarshal(c.Calibration, &cal); err != nil {
		return nil
	}
	return &cal
}

// stale reports whether a calibration measured at m subjects no longer
// describes a collection of n: 5% more or fewer subjects, or any change
// below 20.
func stale(cal *Calibration, n int) bool {
	if cal == nil {
		return n > 1
	}
	d := n - cal.Subjects
	if d < 0 {
		d = -d
	}
	return d > 0 && d >= max(1, cal.Subjects/20)
}

// calibrator recalibrates collections in the background as their size
// drifts, one collection at a time, so that identification never waits
// for it.
type calibrator struct {
	s       *Service
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	pending map[string]bool
	wg      sync.WaitGroup
	sem     chan struct{}
}

func newCalibrator(s *Service) *calibrator {
	ctx, cancel := context.WithCancel(context.Background())
	return &calibrator{s: s, ctx: ctx, cancel: cancel, pending: map[string]bool{}, sem: make(chan struct{}, 1)}
}

// noteSize starts a calibration of a collection of n subjects whose
// calibration is missing or stale, unless one is under way.
func (c *calibrator) noteSize(collection string, n int, cal *Calibration) {
	if !stale(cal, n) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[collection] || c.ctx.Err() != nil {
		return
	}
	c.pending[collection] = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.pending, collection)
			c.mu.Unlock()
		}()
		select {
		case c.sem <- struct{}{}:
		case <-c.ctx.Done():
			return
		}
		defer func() { <-c.sem }()
		if _, err := c.s.Calibrate(c.ctx, collection); err != nil && c.ctx.Err() == nil {
			c.s.log.Warn("calibrate collection", slog.String("collection", collection), slog.Any("err", err))
		}
	}()
}

// close stops background calibrations and waits for them.
func (c *calibrator) close() {
	c.cancel()
	c.wg.Wait()
}

// Close stops the service's background work (calibrations under way are
// cancelled); call it once no request is running.
func (s *Service) Close() { s.cal.close() }
