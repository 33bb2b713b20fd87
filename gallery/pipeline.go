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
	"github.com/visage/visage/internal/admission"
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

// Embedder turns aligned chips into descriptors of a variant.
type Embedder interface {
	EmbedAs(ctx context.Context, chips [][]byte, v embed.Variant) ([]embed.Descriptor, error)
}

// Recipes say how a pipeline makes descriptors: with which network, and
// which augmentation for probes (identification, verification) and for
// faces to be stored. Both variants must lie in one descriptor space.
type Recipes struct {
	Model embed.Model
	// Probe is the variant of identification and verification probes.
	Probe embed.Variant
	// Enroll is the variant of enrolled faces: enrollment happens once,
	// comparisons many times, so it may cost more passes.
	Enroll embed.Variant
}

// Face is one face found in an image.
type Face struct {
	Box        image.Rectangle  `json:"-"`
	Score      float64          `json:"score"`
	Detector   string           `json:"detector"`
	Landmarks  []align.Point    `json:"landmarks"`
	Quality    align.Quality    `json:"quality"`
	Descriptor embed.Descriptor `json:"-"`

	// chip is the aligned face, kept for a second look or for enrollment.
	chip []byte
	// raw is the network's output for the chip alone, when Descriptor is
	// of a plain probe variant: a second look adds the mirror pass to it.
	raw *embed.Descriptor
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
	limits  imageio.Limits
	pixels  *admission.Pool
	det     Detector
	lm      Landmarker
	emb     Embedder
	recipes Recipes
}

// NewPipeline assembles a pipeline from its stages. It refuses recipes
// whose probe and enrollment descriptors could not be compared. Decoded
// images reserve their memory from pixels first (nil: unbounded).
func NewPipeline(limits imageio.Limits, pixels *admission.Pool, det Detector, lm Landmarker, emb Embedder, r Recipes) (*Pipeline, error) {
	if r.Probe.Base() != r.Enroll.Base() {
		return nil, fmt.Errorf("new pipeline: probe variant %s and enrollment variant %s are not comparable (normalisation differs)", r.Probe, r.Enroll)
	}
	return &Pipeline{limits: limits, pixels: pixels, det: det, lm: lm, emb: emb, recipes: r}, nil
}

// ModelID identifies how enrolled faces' descriptors are made; it is
// stored with every face.
func (p *Pipeline) ModelID() string { return p.recipes.Model.ID(p.recipes.Enroll) }

// ProbeModelID identifies how probe descriptors are made.
func (p *Pipeline) ProbeModelID() string { return p.recipes.Model.ID(p.recipes.Probe) }

// Space identifies the descriptor space of everything this pipeline
// makes: the vector index holds one space, and stored faces of another
// cannot be compared (embed.Model.Space).
func (p *Pipeline) Space() string { return p.recipes.Model.Space(p.recipes.Probe) }

// Recipes are the pipeline's descriptor variants.
func (p *Pipeline) Recipes() Recipes { return p.recipes }

// Limits are the decoding limits in force.
func (p *Pipeline) Limits() imageio.Limits { return p.limits }

// Faces decodes data and returns every face with its probe descriptor,
// most confident detection first. Decoding errors carry imageio's codes.
func (p *Pipeline) Faces(ctx context.Context, data []byte) (*Result, error) {
	res, err := p.Locate(ctx, data)
	if err != nil {
		return nil, err
	}
	if err := p.describe(ctx, res, p.recipes.Probe); err != nil {
		return nil, err
	}
	return res, nil
}

// Locate decodes data and returns every face with its landmarks and
// quality but no descriptor, most confident detection first: enrollment
// describes only the face it keeps (DescribeForEnrollment).
//
// The image's memory is reserved from the pipeline's pixel budget after its
// header is checked and before it is decoded, and held until its faces are
// located; when the budget stays spent, Locate fails with
// admission.ErrBusy.
func (p *Pipeline) Locate(ctx context.Context, data []byte) (*Result, error) {
	t0 := time.Now()
	hdr, err := imageio.Inspect(data, p.limits)
	if err != nil {
		return nil, err
	}
	held, err := p.pixels.Acquire(ctx, locateBytes(hdr))
	if err != nil {
		return nil, err
	}
	defer held.Release()
	img, err := hdr.Decode(data)
	if err != nil {
		return nil, err
	}
	res, err := p.locateIn(ctx, img)
	if err != nil {
		return nil, err
	}
	res.Format = img.Format
	res.Timings.Decode = time.Since(t0) - res.Timings.Detect - res.Timings.Align
	return res, nil
}

// locateBytes estimates the memory Locate holds for an image: its decoding
// (imageio.Header.DecodeBytes) and the detector's working copies (a scan
// copy and an enlarged retry, each at most 2048 pixels on a side).
func locateBytes(h imageio.Header) int64 {
	const maxScan = 2048 * 2048
	return h.DecodeBytes() + 2*3*min(int64(h.Width)*int64(h.Height), maxScan)
}

// FacesIn runs the pipeline on a decoded image.
func (p *Pipeline) FacesIn(ctx context.Context, img *imageio.Image) (*Result, error) {
	res, err := p.locateIn(ctx, img)
	if err != nil {
		return nil, err
	}
	if err := p.describe(ctx, res, p.recipes.Probe); err != nil {
		return nil, err
	}
	return res, nil
}

func (p *Pipeline) locateIn(ctx context.Context, img *imageio.Image) (*Result, error) {
	res := &Result{Width: img.Width, Height: img.Height}
	t := time.Now()
	boxes, err := p.det.Detect(ctx, img)
	if err != nil {
		return nil, err
	}
	res.Timings.Detect = time.Since(t)
	if err := p.align(img, boxes, res); err != nil {
		return nil, err
	}
	return res, nil
}

// FacesAt runs alignment and embedding on given boxes (no detection), for
// callers that know where the face is.
func (p *Pipeline) FacesAt(ctx context.Context, img *imageio.Image, boxes []detect.Box) (*Result, error) {
	res := &Result{Width: img.Width, Height: img.Height}
	if err := p.align(img, boxes, res); err != nil {
		return nil, err
	}
	if err := p.describe(ctx, res, p.recipes.Probe); err != nil {
		return nil, err
	}
	return res, nil
}

// DescribeForEnrollment sets a located face's descriptor with the
// enrollment variant and returns the time it took.
func (p *Pipeline) DescribeForEnrollment(ctx context.Context, f *Face) (time.Duration, error) {
	if f.chip == nil {
		return 0, errors.New("describe for enrollment: the face has no chip")
	}
	t := time.Now()
	ds, err := p.emb.EmbedAs(ctx, [][]byte{f.chip}, p.recipes.Enroll)
	if err != nil {
		return 0, err
	}
	f.Descriptor, f.raw = ds[0], nil
	return time.Since(t), nil
}

// SecondLook adds the mirror image's pass to a probe face described with
// a plain variant, making its descriptor exactly the mirror variant's (one
// more network pass). It reports false, changing nothing, when the
// probe variant already augments.
func (p *Pipeline) SecondLook(ctx context.Context, f *Face) (bool, error) {
	if f.raw == nil || f.chip == nil {
		return false, nil
	}
	ds, err := p.emb.EmbedAs(ctx, [][]byte{embed.Mirror(f.chip)}, embed.Variant{})
	if err != nil {
		return false, err
	}
	mv := p.recipes.Probe
	mv.Mirror = true
	f.Descriptor, f.raw = mv.Combine(*f.raw, ds[0]), nil
	return true, nil
}

func (p *Pipeline) align(img *imageio.Image, boxes []detect.Box, res *Result) error {
	t := time.Now()
	res.Faces = make([]Face, len(boxes))
	for i, b := range boxes {
		pts, err := p.lm.Landmarks(img, b.Rect)
		if err != nil {
			return fmt.Errorf("align face %d: %w", i, err)
		}
		chip, err := align.Chip(img, b.Rect, pts)
		if err != nil {
			return fmt.Errorf("align face %d: %w", i, err)
		}
		res.Faces[i] = Face{
			Box: b.Rect, Score: b.Score, Detector: b.Detector, Landmarks: pts,
			Quality: align.Measure(b.Rect, b.Score, pts, chip), chip: chip,
		}
	}
	res.Timings.Align = time.Since(t)
	return nil
}

// describe sets every face's descriptor with variant v. A plain variant
// is computed from the raw pass, which each face keeps for a second look.
func (p *Pipeline) describe(ctx context.Context, res *Result, v embed.Variant) error {
	if len(res.Faces) == 0 {
		return nil
	}
	t := time.Now()
	chips := make([][]byte, len(res.Faces))
	for i, f := range res.Faces {
		chips[i] = f.chip
	}
	plain := v.Base() == v
	ev := v
	if plain {
		ev = embed.Variant{}
	}
	ds, err := p.emb.EmbedAs(ctx, chips, ev)
	if err != nil {
		return err
	}
	for i := range ds {
		if plain {
			raw := ds[i]
			res.Faces[i].raw = &raw
			res.Faces[i].Descriptor = v.Combine(raw)
		} else {
			res.Faces[i].Descriptor = ds[i]
		}
	}
	res.Timings.Embed = time.Since(t)
	return nil
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
