package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/visage/visage/align"
	"github.com/visage/visage/detect"
	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/imageio"
)

// lfwFallbackBox is the box used where no face is detected in an LFW
// image: the mean of the centre-most HOG boxes on the 802 development-fold
// images (of 807) where HOG finds a face, in the 250×250 deep-funneled
// frame: (71.2, 81.0)–(176.9, 186.7).
func lfwFallbackBox() image.Rectangle { return image.Rect(71, 81, 177, 187) }

func runEval(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) > 0 && args[0] == "matching" {
		return runEvalMatching(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "identification" {
		return runEvalIdentification(ctx, env, args[1:])
	}
	if len(args) > 0 && args[0] == "det" {
		return runEvalDET(env, args[1:])
	}
	if len(args) == 0 || args[0] != "lfw" {
		return fmt.Errorf("usage: visage eval lfw --images DIR --pairs FILE [--variants LIST] | eval identification --images DIR [--gallery K] | eval matching --dir DIR...")
	}
	fs := flag.NewFlagSet("eval lfw", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var ef engineFlags
	ef.register(fs, runtime.NumCPU())
	images := fs.String("images", "", "LFW images directory (name/name_NNNN.jpg)")
	pairsPath := fs.String("pairs", "", "pairs file (header FOLDS<TAB>N)")
	variants := fs.String("variants", "", "comma-separated descriptor variants to compare (default: --variant); the last line reports the first")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *images == "" || *pairsPath == "" {
		return fmt.Errorf("--images and --pairs are required")
	}
	pf, err := os.Open(*pairsPath)
	if err != nil {
		return err
	}
	pairs, err := gallery.ParseLFWPairs(pf)
	pf.Close()
	if err != nil {
		return err
	}
	list := []string{ef.variant}
	if *variants != "" {
		list = strings.Split(*variants, ",")
	}
	var vs []embed.Variant
	for _, s := range list {
		v, err := embed.ParseVariant(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		vs = append(vs, v)
	}

	cfg, err := ef.config()
	if err != nil {
		return err
	}
	// Pairs are compared within one variant, so enrollment uses it too.
	cfg.Variant, cfg.EnrollVariant = vs[0], vs[0]
	eng, err := gallery.OpenEngine(cfg)
	if err != nil {
		return err
	}
	defer eng.Close()

	// Unique images, each aligned once; every variant embeds the same chips.
	index := map[string]int{}
	var paths []string
	for _, p := range pairs.Pairs {
		for _, im := range []string{p.A, p.B} {
			if _, ok := index[im]; !ok {
				index[im] = len(paths)
				paths = append(paths, im)
			}
		}
	}
	fmt.Fprintf(env.stderr, "lfw: %d folds, %d pairs, %d images, %d workers\n", pairs.Folds, len(pairs.Pairs), len(paths), cfg.Workers)
	chips := make([][]byte, len(paths))
	var noFace, done atomic.Int64
	prog := newProgress(env, "align", len(paths))
	t0 := time.Now()
	err = gallery.Concurrently(ctx, cfg.Workers, paths, func(ctx context.Context, i int, rel string) error {
		chip, found, err := lfwChip(ctx, eng, filepath.Join(*images, rel))
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if !found {
			noFace.Add(1)
		}
		chips[i] = chip
		prog.tick(done.Add(1))
		return nil
	})
	if err != nil {
		return err
	}
	prog.finish()
	alignTime := time.Since(t0)

	type outcome struct {
		v                      embed.Variant
		mean, std, threshold   float64
		folds                  []gallery.FoldResult
		tar1, tar01, msPerFace float64
	}
	var results []outcome
	for _, v := range vs {
		descs := make([]embed.Descriptor, len(chips))
		pool, err := embed.NewPool(eng.Embedder.Model(), embed.Options{Workers: cfg.Workers, MaxBatch: cfg.MaxBatch, Variant: v})
		if err != nil {
			return err
		}
		var n atomic.Int64
		prog := newProgress(env, "embed "+v.String(), len(chips))
		t := time.Now()
		err = gallery.Concurrently(ctx, cfg.Workers*2, chips, func(ctx context.Context, i int, chip []byte) error {
			d, err := pool.Embed(ctx, [][]byte{chip})
			if err != nil {
				return err
			}
			descs[i] = d[0]
			prog.tick(n.Add(1))
			return nil
		})
		elapsed := time.Since(t)
		pool.Close()
		if err != nil {
			return err
		}
		prog.finish()
		scored := make([]gallery.Scored, len(pairs.Pairs))
		for i, p := range pairs.Pairs {
			scored[i] = gallery.Scored{Distance: embed.Distance(descs[index[p.A]], descs[index[p.B]]), Same: p.Same, Fold: p.Fold}
		}
		folds, mean, std, overall := gallery.CrossValidate(scored, pairs.Folds)
		tar01, _ := gallery.TARAtFAR(scored, 0.001)
		tar1, _ := gallery.TARAtFAR(scored, 0.01)
		results = append(results, outcome{v: v, mean: mean, std: std, threshold: overall, folds: folds, tar01: tar01, tar1: tar1,
			msPerFace: float64(elapsed.Milliseconds()) * float64(cfg.Workers) / float64(len(chips))})
	}

	for _, r := range results {
		for _, f := range r.folds {
			fmt.Fprintf(env.stdout, "variant=%s fold=%d threshold=%.3f accuracy=%.4f\n", r.v, f.Fold, f.Threshold, f.Accuracy)
		}
		fmt.Fprintf(env.stdout, "variant=%s accuracy=%.4f std=%.4f threshold=%.3f tar@far0.1%%=%.4f tar@far1%%=%.4f embed_ms_per_face_per_core=%.1f\n",
			r.v, r.mean, r.std, r.threshold, r.tar01, r.tar1, r.msPerFace)
	}
	fmt.Fprintf(env.stdout, "align: %d images in %s (%d workers)\n", len(paths), alignTime.Round(time.Millisecond), cfg.Workers)
	r := results[0]
	fmt.Fprintf(env.stdout, "lfw folds=%d pairs=%d accuracy=%.4f std=%.4f threshold=%.3f no_face=%d\n",
		pairs.Folds, len(pairs.Pairs), r.mean, r.std, r.threshold, noFace.Load())
	return nil
}

// lfwChip aligns the face nearest the image centre, or the fixed fallback
// box when the detector finds none (reported as found=false).
func lfwChip(ctx context.Context, eng *gallery.Engine, path string) (chip []byte, found bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	img, err := imageio.Decode(data, eng.Limits())
	if err != nil {
		return nil, false, err
	}
	boxes, err := eng.Detector.Detect(ctx, img)
	if err != nil {
		return nil, false, err
	}
	box := detect.Box{Rect: scaleFallback(img), Detector: "fallback"}
	if len(boxes) > 0 {
		found = true
		centre := image.Pt(img.Width/2, img.Height/2)
		best := math.Inf(1)
		for _, b := range boxes {
			c := b.Rect.Min.Add(b.Rect.Max).Div(2).Sub(centre)
			if d := math.Hypot(float64(c.X), float64(c.Y)); d < best {
				best, box = d, b
			}
		}
	}
	pts, err := eng.Landmarker.Landmarks(img, box.Rect)
	if err != nil {
		return nil, false, err
	}
	chip, err = align.Chip(img, box.Rect, pts)
	return chip, found, err
}

// scaleFallback places lfwFallbackBox on an image of any size.
func scaleFallback(img *imageio.Image) image.Rectangle {
	sx, sy := float64(img.Width)/250, float64(img.Height)/250
	r := lfwFallbackBox()
	return image.Rect(int(float64(r.Min.X)*sx), int(float64(r.Min.Y)*sy), int(float64(r.Max.X)*sx), int(float64(r.Max.Y)*sy))
}

// progress prints "stage n/total" lines on stderr about every 2 seconds.
type progress struct {
	env   *cliEnv
	stage string
	total int
	start time.Time
	last  atomic.Int64
}

func newProgress(env *cliEnv, stage string, total int) *progress {
	p := &progress{env: env, stage: stage, total: total, start: time.Now()}
	p.last.Store(time.Now().UnixNano())
	return p
}

func (p *progress) tick(n int64) {
	now := time.Now().UnixNano()
	last := p.last.Load()
	if now-last < int64(2*time.Second) || !p.last.CompareAndSwap(last, now) {
		return
	}
	rate := float64(n) / time.Since(p.start).Seconds()
	fmt.Fprintf(p.env.stderr, "%s: %d/%d (%.0f/s)\n", p.stage, n, p.total, rate)
}

func (p *progress) finish() {
	el := time.Since(p.start)
	fmt.Fprintf(p.env.stderr, "%s: %d/%d done in %s (%.0f/s)\n", p.stage, p.total, p.total, el.Round(time.Millisecond), float64(p.total)/el.Seconds())
}
