// Package gallery is Visage's core: the pipeline that turns image bytes
// into faces with descriptors, and the use cases built on it.
package gallery

import (
	"context"
	"errors"
	"fmt"
	"image"
	"sort"
	"sync"
	"time"

	"github.com/visage/visage/align"
	"github.com/visage/visage/detect"
	"github.com/visage/visage/embed"
	"github.com/visage/visage/internal/imageio"
)

// Detector finds face boxes in an image.
type Detector interface {
	Detect(ctx context.Context, img *imageio.Image) ([]detect.Box, error)
}

// Landmarker places landmarks on a face box.
type Landmarker interface {
	Landmarks(img *imageio.Image, box image.Rectangle) ([]align.Point, error)
}

// Embedder turns aligned chips into descriptors.
type Embedder interface {
	Embed(ctx context.Context, chips [][]byte) ([]embed.Descriptor, error)
	ModelID() string
}

// Face is one face found in an image.
type Face struct {
	Box        image.Rectangle  `json:"-"`
	Score      float64          `json:"score"`
	Detector   string           `json:"detector"`
	Landmarks  []align.Point    `json:"landmarks"`
	Quality    align.Quality    `json:"quality"`
	Descriptor embed.Descriptor `json:"-"`
}

// Timings are the pipeline's per-stage wall times for one image.
type Timings struct {
	Decode, Detect, Align, Embed time.Duration
}

// Result is what the pipeline found in one image.
type Result struct {
	Width, Height int
	Format        string
	Faces         []Face
	Timings       Timings
}

// ErrNoFace is returned by Pipeline.Largest when an image holds no face.
var ErrNoFace = errors.New("no face found")

// Pipeline runs detection, landmark alignment and embedding; safe for
// concurrent use.
type Pipeline struct {
	limits imageio.Limits
	det    Detector
	lm     Landmarker
	emb    Embedder
}

// NewPipeline assembles a pipeline from its stages.
func NewPipeline(limits imageio.Limits, det Detector, lm Landmarker, emb Embedder) *Pipeline {
	return &Pipeline{limits: limits, det: det, lm: lm, emb: emb}
}

// ModelID identifies the descriptors this pipeline produces.
func (p *Pipeline) ModelID() string { return p.emb.ModelID() }

// Limits are the decoding limits in force.
func (p *Pipeline) Limits() imageio.Limits { return p.limits }

// Faces decodes data and returns every face with its descriptor, most
// confident detection first. Decoding errors carry imageio's codes.
func (p *Pipeline) Faces(ctx context.Context, data []byte) (*Result, error) {
	t0 := time.Now()
	img, err := imageio.Decode(data, p.limits)
	if err != nil {
		return nil, err
	}
	res, err := p.FacesIn(ctx, img)
	if err != nil {
		return nil, err
	}
	res.Format = img.Format
	res.Timings.Decode = time.Since(t0) - res.Timings.Detect - res.Timings.Align - res.Timings.Embed
	return res, nil
}

// FacesIn runs the pipeline on a decoded image.
func (p *Pipeline) FacesIn(ctx context.Context, img *imageio.Image) (*Result, error) {
	res := &Result{Width: img.Width, Height: img.Height}
	t := time.Now()
	boxes, err := p.det.Detect(ctx, img)
	if err != nil {
		return nil, err
	}
	res.Timings.Detect = time.Since(t)
	return p.describe(ctx, img, boxes, res)
}

// FacesAt runs alignment and embedding on given boxes (no detection), for
// callers that know where the face is.
func (p *Pipeline) FacesAt(ctx context.Context, img *imageio.Image, boxes []detect.Box) (*Result, error) {
	return p.describe(ctx, img, boxes, &Result{Width: img.Width, Height: img.Height})
}

func (p *Pipeline) describe(ctx context.Context, img *imageio.Image, boxes []detect.Box, res *Result) (*Result, error) {
	t := time.Now()
	res.Faces = make([]Face, len(boxes))
	chips := make([][]byte, len(boxes))
	for i, b := range boxes {
		pts, err := p.lm.Landmarks(img, b.Rect)
		if err != nil {
			return nil, fmt.Errorf("align face %d: %w", i, err)
		}
		chip, err := align.Chip(img, b.Rect, pts)
		if err != nil {
			return nil, fmt.Errorf("align face %d: %w", i, err)
		}
		chips[i] = chip
		res.Faces[i] = Face{
			Box: b.Rect, Score: b.Score, Detector: b.Detector, Landmarks: pts,
			Quality: align.Measure(b.Rect, b.Score, pts, chip),
		}
	}
	res.Timings.Align = time.Since(t)
	if len(chips) == 0 {
		return res, nil
	}
	t = time.Now()
	ds, err := p.emb.Embed(ctx, chips)
	if err != nil {
		return nil, err
	}
	for i := range ds {
		res.Faces[i].Descriptor = ds[i]
	}
	res.Timings.Embed = time.Since(t)
	return res, nil
}

// Largest returns the face with the largest box; ErrNoFace if none. When
// several faces are within tie (a fraction, e.g. 0.1) of the largest area,
// all of them are returned so the caller can refuse the ambiguity.
func Largest(faces []Face, tie float64) ([]Face, error) {
	if len(faces) == 0 {
		return nil, ErrNoFace
	}
	sorted := append([]Face(nil), faces...)
	sort.SliceStable(sorted, func(i, j int) bool { return area(sorted[i].Box) > area(sorted[j].Box) })
	top := float64(area(sorted[0].Box))
	n := 1
	for n < len(sorted) && float64(area(sorted[n].Box)) >= top*(1-tie) {
		n++
	}
	return sorted[:n], nil
}

func area(r image.Rectangle) int { return r.Dx() * r.Dy() }

// Concurrently runs fn on items with n goroutines and returns the first
// error; used by batch tools (evaluation, import).
func Concurrently[T any](ctx context.Context, n int, items []T, fn func(ctx context.Context, i int, item T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i, items[i]); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range items {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return first
}
