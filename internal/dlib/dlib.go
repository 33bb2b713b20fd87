// Package dlib is Visage's only cgo package: it wraps dlib's HOG and CNN
// face detectors, shape predictor, chip extraction and ResNet, and
// libjpeg decoding. Everything above it is plain Go.
//
// Objects that hold a dlib model are not safe for concurrent use unless
// their doc comment says so; the engine gives each worker its own.
package dlib

/*
#cgo CXXFLAGS: -std=c++17 -O3 -Wno-deprecated-declarations
#cgo LDFLAGS: -ldlib -l:libblas.so.3 -l:liblapack.so.3 -ljpeg -ldl
#include <stdlib.h>
#include "visage_dlib.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// ChipSize is the side of the aligned face chip the ResNet takes.
const ChipSize = 150

// ChipBytes is the length of one packed RGB chip.
const ChipBytes = ChipSize * ChipSize * 3

// DescriptorLen is the ResNet descriptor's dimension.
const DescriptorLen = 128

// maxDetections bounds the boxes one detector call returns.
const maxDetections = 1024

// Image is a read-only view of packed 8-bit RGB pixels (len(Pix) ==
// 3*Width*Height). dlib reads it in place for the duration of a call.
type Image struct {
	Pix           []byte
	Width, Height int
}

func (im Image) c() (C.vs_image, error) {
	if im.Width <= 0 || im.Height <= 0 || len(im.Pix) != 3*im.Width*im.Height {
		return C.vs_image{}, fmt.Errorf("invalid image %dx%d with %d bytes", im.Width, im.Height, len(im.Pix))
	}
	return C.vs_image{pix: (*C.uint8_t)(unsafe.Pointer(&im.Pix[0])), width: C.long(im.Width), height: C.long(im.Height)}, nil
}

// Rect is a detection in pixel coordinates (inclusive corners, as dlib's).
type Rect struct {
	Left, Top, Right, Bottom int
	// Score is the detector's confidence (HOG: SVM margin, CNN: MMOD score).
	Score float64
	// Kind is HOG's sub-detector: 0 frontal, 1 left, 2 right, 3 and 4 rotated.
	Kind int
}

func (r Rect) c() C.vs_rect {
	return C.vs_rect{left: C.long(r.Left), top: C.long(r.Top), right: C.long(r.Right), bottom: C.long(r.Bottom), score: C.double(r.Score), kind: C.int(r.Kind)}
}

// Point is a landmark position in pixels.
type Point struct{ X, Y int }

// cError converts and frees an error string returned by the C side.
func cError(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

func rects(buf []C.vs_rect, n C.int) []Rect {
	out := make([]Rect, int(n))
	for i := range out {
		r := buf[i]
		out[i] = Rect{Left: int(r.left), Top: int(r.top), Right: int(r.right), Bottom: int(r.bottom), Score: float64(r.score), Kind: int(r.kind)}
	}
	return out
}
