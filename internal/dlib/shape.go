package dlib

/*
#include <stdlib.h>
#include "visage_dlib.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// ShapePredictor is dlib's landmark regressor (5 or 68 points). Safe for
// concurrent use, so one instance (about 100 MB for 68 points) serves all
// workers.
type ShapePredictor struct {
	p     unsafe.Pointer
	parts int
}

// LoadShapePredictor reads a shape_predictor_*.dat file.
func LoadShapePredictor(path string) (*ShapePredictor, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg *C.char
	var parts C.int
	p := C.vs_sp_load(cpath, &parts, &msg)
	if p == nil {
		return nil, fmt.Errorf("load shape predictor %s: %w", path, cError(msg))
	}
	return &ShapePredictor{p: p, parts: int(parts)}, nil
}

// NumParts is the number of landmarks the model predicts.
func (s *ShapePredictor) NumParts() int { return s.parts }

// Predict returns the landmarks of the face in box.
func (s *ShapePredictor) Predict(img Image, box Rect) ([]Point, error) {
	ci, err := img.c()
	if err != nil {
		return nil, err
	}
	pts := make([]C.long, 2*s.parts)
	if err := cError(C.vs_sp_predict(s.p, ci, box.c(), &pts[0])); err != nil {
		return nil, fmt.Errorf("predict landmarks: %w", err)
	}
	out := make([]Point, s.parts)
	for i := range out {
		out[i] = Point{X: int(pts[2*i]), Y: int(pts[2*i+1])}
	}
	return out, nil
}

// Close frees the model.
func (s *ShapePredictor) Close() {
	if s.p != nil {
		C.vs_sp_free(s.p)
		s.p = nil
	}
}

// Chip extracts the aligned size×size RGB face chip for a 5- or 68-point
// shape with dlib's get_face_chip_details (padding is the border around
// the face as a fraction of its size; dlib's standard is 0.25).
func Chip(img Image, box Rect, points []Point, size int, padding float64) ([]byte, error) {
	if len(points) != 5 && len(points) != 68 {
		return nil, fmt.Errorf("extract chip: need 5 or 68 landmarks, got %d", len(points))
	}
	ci, err := img.c()
	if err != nil {
		return nil, err
	}
	pts := make([]C.long, 2*len(points))
	for i, p := range points {
		pts[2*i], pts[2*i+1] = C.long(p.X), C.long(p.Y)
	}
	chip := make([]byte, size*size*3)
	if err := cError(C.vs_chip(ci, box.c(), &pts[0], C.int(len(points)), C.long(size), C.double(padding), (*C.uint8_t)(unsafe.Pointer(&chip[0])))); err != nil {
		return nil, fmt.Errorf("extract chip: %w", err)
	}
	return chip, nil
}

// Jitter returns n randomly jittered copies of a 150×150 chip (dlib's
// jitter_image: small rotation, scale, translation and mirroring),
// deterministic for a seed.
func Jitter(chip []byte, n int, seed uint64) ([]byte, error) {
	if len(chip) != ChipBytes || n <= 0 {
		return nil, fmt.Errorf("jitter: want one %d-byte chip and n > 0", ChipBytes)
	}
	out := make([]byte, n*ChipBytes)
	if err := cError(C.vs_jitter((*C.uint8_t)(unsafe.Pointer(&chip[0])), C.int(n), C.uint64_t(seed), (*C.uint8_t)(unsafe.Pointer(&out[0])))); err != nil {
		return nil, fmt.Errorf("jitter: %w", err)
	}
	return out, nil
}
