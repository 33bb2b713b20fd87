// Package detect finds faces in decoded images: dlib's HOG detector by
// default, its CNN (MMOD) detector when a model file is configured. Both
// run on a resized copy (downscaled so large photos stay fast, upscaled so
// small faces are still found) and report boxes in the full-resolution
// frame.
package detect

import (
	"context"
	"fmt"
	"image"
	"math"
	"sort"

	"github.com/visage/visage/internal/dlib"
	"github.com/visage/visage/internal/imageio"
)

// Detector names, as reported in Box.Detector.
const (
	HOGName = "hog"
	CNNName = "cnn"
)

// Box is one detected face in full-resolution pixel coordinates.
type Box struct {
	// Rect is the face box (Max exclusive); it may extend past the image
	// edge for faces cut by the frame.
	Rect image.Rectangle
	// Score is the detector's confidence (HOG: SVM margin, about 0 at
	// the decision threshold; CNN: MMOD score).
	Score float64
	// Detector is HOGName or CNNName.
	Detector string
	// Pose is HOG's sub-detector: 0 frontal, 1 looking left, 2 looking
	// right, 3 and 4 frontal but rotated. Always 0 for the CNN.
	Pose int
}

// Options configure a detector.
type Options struct {
	// MaxSide is the longest side, in pixels, of the copy the detector
	// scans; larger images are downscaled to it. 0 scans full resolution.
	MaxSide int
	// MaxUpsample is the largest factor by which small images are
	// enlarged, so that faces smaller than the detector's 80 px window are
	// found. 1 disables upsampling.
	MaxUpsample float64
	// UpsampleTo is the longest side small images are enlarged towards
	// (never beyond MaxUpsample): it bounds the cost of upsampling.
	UpsampleTo int
	// AdjustThreshold shifts the detector's decision threshold (negative
	// finds more, less certain faces).
	AdjustThreshold float64
	// Workers is how many detections may run at once (one dlib detector
	// each).
	Workers int
	// Retry scans an image once more when the first scan finds no face:
	// at twice the scale (the copy's longer side at most RetryMaxSide, or
	// the first scan's if larger) and with the threshold lowered by
	// RetryAdjust. Only images without a face pay for it.
	Retry        bool
	RetryMaxSide int
	RetryAdjust  float64
}

// DefaultOptions are HOG's defaults: a 1024 px scan copy (see
// docs/benchmarks.md for the speed/recall measurements behind it), and
// images smaller than 640 px enlarged towards it by up to 2× (dlib's
// "upsample once"), so 40 px faces in thumbnails are found; an image
// where that finds nothing is scanned again at twice the scale (up to
// 2048 px) and a threshold lowered by 0.3, which finds 34 of the 45 faces
// of lfw-open the first scan misses (docs/benchmarks.md, "Open-set
// identification").
func DefaultOptions() Options {
	return Options{MaxSide: 1024, MaxUpsample: 2, UpsampleTo: 640, Workers: 1, Retry: true, RetryMaxSide: 2048, RetryAdjust: -0.3}
}

// ScanSize returns the size of the copy scanned for an image of w×h and
// the factor from full resolution to it.
func (o Options) ScanSize(w, h int) (sw, sh int, scale float64) {
	long := math.Max(float64(w), float64(h))
	scale = 1
	if o.MaxSide > 0 && long > float64(o.MaxSide) {
		scale = float64(o.MaxSide) / long
	} else if o.MaxUpsample > 1 && o.UpsampleTo > 0 {
		scale = math.Max(1, math.Min(o.MaxUpsample, float64(o.UpsampleTo)/long))
	}
	if scale == 1 {
		return w, h, 1
	}
	sw = max(1, int(math.Round(float64(w)*scale)))
	sh = max(1, int(math.Round(float64(h)*scale)))
	return sw, sh, scale
}

// scanner is what one worker's dlib detector does.
type scanner interface {
	Detect(img dlib.Image, width, height int, adjust float64) ([]dlib.Rect, error)
	Close()
}

// Detector is a pool of dlib detectors of one kind; safe for concurrent
// use.
type Detector struct {
	name string
	opts Options
	free chan scanner
}

// NewHOG returns a pool of HOG detectors.
func NewHOG(opts Options) (*Detector, error) {
	return newDetector(HOGName, opts, func() (scanner, error) { return dlib.NewHOG() })
}

// NewCNN returns a pool of CNN detectors loaded from path
// (mmod_human_face_detector.dat). It never scans twice: the CNN's memory
// grows with the scan's pixels (2.5 GiB at 1920×1280).
func NewCNN(path string, opts Options) (*Detector, error) {
	opts.Retry = false
	return newDetector(CNNName, opts, func() (scanner, error) { return dlib.LoadCNN(path) })
}

func newDetector(name string, opts Options, load func() (scanner, error)) (*Detector, error) {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	d := &Detector{name: name, opts: opts, free: make(chan scanner, opts.Workers)}
	for i := 0; i < opts.Workers; i++ {
		s, err := load()
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("create %s detector: %w", name, err)
		}
		d.free <- s
	}
	return d, nil
}

// Name is HOGName or CNNName.
func (d *Detector) Name() string { return d.name }

// Options returns the detector's configuration.
func (d *Detector) Options() Options { return d.opts }

// Detect returns the faces in img, most confident first.
func (d *Detector) Detect(ctx context.Context, img *imageio.Image) ([]Box, error) {
	var s scanner
	select {
	case s = <-d.free:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for %s detector: %w", d.name, ctx.Err())
	}
	defer func() { d.free <- s }()

	sw, sh, scale := d.opts.ScanSize(img.Width, img.Height)
	view := dlib.Image{Pix: img.Pix, Width: img.Width, Height: img.Height}
	rects, err := s.Detect(view, sw, sh, d.opts.AdjustThreshold)
	if err != nil {
		return nil, fmt.Errorf("detect faces: %w", err)
	}
	if len(rects) == 0 && d.opts.Retry {
		long := float64(max(img.Width, img.Height))
		rs := math.Min(2*scale, math.Max(float64(d.opts.RetryMaxSide), long*scale)/long)
		if rs > scale {
			scale = rs
			sw, sh = max(1, int(math.Round(float64(img.Width)*scale))), max(1, int(math.Round(float64(img.Height)*scale)))
			if rects, err = s.Detect(view, sw, sh, d.opts.AdjustThreshold+d.opts.RetryAdjust); err != nil {
				return nil, fmt.Errorf("detect faces (second scan): %w", err)
			}
		}
	}
	boxes := make([]Box, len(rects))
	for i, r := range rects {
		boxes[i] = Box{
			Rect: image.Rect(
				int(math.Round(float64(r.Left)/scale)), int(math.Round(float64(r.Top)/scale)),
				int(math.Round(float64(r.Right+1)/scale)), int(math.Round(float64(r.Bottom+1)/scale))),
			Score:    r.Score,
			Detector: d.name,
			Pose:     r.Kind,
		}
	}
	sort.SliceStable(boxes, func(i, j int) bool { return boxes[i].Score > boxes[j].Score })
	return boxes, nil
}

// Close frees every detector in the pool; call it once no Detect runs.
func (d *Detector) Close() {
	for {
		select {
		case s := <-d.free:
			s.Close()
		default:
			return
		}
	}
}

// IoU is the intersection over union of two boxes (0 when disjoint).
func IoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	inter := in.Dx() * in.Dy()
	union := a.Dx()*a.Dy() + b.Dx()*b.Dy() - inter
	if union <= 0 {
		return 0
	}
	return float64(inter) / float64(union)
}

// Matches reports whether any box overlaps r with IoU ≥ 0.5, the usual
// criterion for "the same face".
func Matches(r image.Rectangle, boxes []Box) bool {
	for _, b := range boxes {
		if IoU(r, b.Rect) >= 0.5 {
			return true
		}
	}
	return false
}
