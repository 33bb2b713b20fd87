// Package align places landmarks on detected faces (dlib's 5- or 68-point
// shape predictor), cuts the canonical 150×150 chip the ResNet expects,
// and judges whether a face is good enough to recognise (quality).
package align

import (
	"fmt"
	"image"

	"github.com/visage/visage/internal/dlib"
	"github.com/visage/visage/internal/imageio"
)

// Chip geometry of dlib's face recognition model: 150×150, 25% padding.
const (
	ChipSize    = dlib.ChipSize
	ChipPadding = 0.25
)

// Point is a landmark in full-resolution pixel coordinates.
type Point struct{ X, Y int }

// Landmarker predicts landmarks with one shared dlib shape predictor; safe
// for concurrent use (dlib's predictor is read-only once loaded).
type Landmarker struct {
	sp *dlib.ShapePredictor
}

// NewLandmarker loads a 5- or 68-point shape_predictor_*.dat.
func NewLandmarker(path string) (*Landmarker, error) {
	sp, err := dlib.LoadShapePredictor(path)
	if err != nil {
		return nil, err
	}
	if n := sp.NumParts(); n != 5 && n != 68 {
		sp.Close()
		return nil, fmt.Errorf("load landmarks %s: %d-point models are not supported (want 5 or 68)", path, n)
	}
	return &Landmarker{sp: sp}, nil
}

// Points is the number of landmarks per face (5 or 68).
func (l *Landmarker) Points() int { return l.sp.NumParts() }

// Landmarks returns the landmarks of the face in box.
func (l *Landmarker) Landmarks(img *imageio.Image, box image.Rectangle) ([]Point, error) {
	pts, err := l.sp.Predict(view(img), rect(box))
	if err != nil {
		return nil, err
	}
	out := make([]Point, len(pts))
	for i, p := range pts {
		out[i] = Point(p)
	}
	return out, nil
}

// Close frees the model once no call is running.
func (l *Landmarker) Close() { l.sp.Close() }

// Chip cuts the aligned 150×150 RGB chip (padding 0.25) for a face's
// landmarks.
func Chip(img *imageio.Image, box image.Rectangle, pts []Point) ([]byte, error) {
	dp := make([]dlib.Point, len(pts))
	for i, p := range pts {
		dp[i] = dlib.Point(p)
	}
	return dlib.Chip(view(img), rect(box), dp, ChipSize, ChipPadding)
}

func view(img *imageio.Image) dlib.Image {
	return dlib.Image{Pix: img.Pix, Width: img.Width, Height: img.Height}
}

// rect converts a half-open box to dlib's inclusive rectangle.
func rect(r image.Rectangle) dlib.Rect {
	return dlib.Rect{Left: r.Min.X, Top: r.Min.Y, Right: r.Max.X - 1, Bottom: r.Max.Y - 1}
}
