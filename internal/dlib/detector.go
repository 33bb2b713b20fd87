package dlib

/*
#include <stdlib.h>
#include "visage_dlib.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// HOG is dlib's frontal face detector (HOG + linear SVM, five
// sub-detectors). Not safe for concurrent use.
type HOG struct{ p unsafe.Pointer }

// NewHOG builds the detector; it needs no model file.
func NewHOG() (*HOG, error) {
	p := C.vs_hog_new()
	if p == nil {
		return nil, errors.New("create HOG detector")
	}
	return &HOG{p: p}, nil
}

// Detect runs the detector on img resized to width×height (no resize when
// equal) and returns boxes in that frame. adjust lowers (negative) or
// raises the SVM threshold.
func (d *HOG) Detect(img Image, width, height int, adjust float64) ([]Rect, error) {
	ci, err := img.c()
	if err != nil {
		return nil, err
	}
	buf := make([]C.vs_rect, maxDetections)
	var msg *C.char
	n := C.vs_hog_detect(d.p, ci, C.long(width), C.long(height), C.double(adjust), &buf[0], maxDetections, &msg)
	if n < 0 {
		return nil, fmt.Errorf("hog detect: %w", cError(msg))
	}
	return rects(buf, n), nil
}

// Close frees the detector.
func (d *HOG) Close() {
	if d.p != nil {
		C.vs_hog_free(d.p)
		d.p = nil
	}
}

// CNN is dlib's MMOD convolutional face detector. Not safe for concurrent
// use; it needs gigabytes for large images, so callers downscale.
type CNN struct{ p unsafe.Pointer }

// LoadCNN reads mmod_human_face_detector.dat.
func LoadCNN(path string) (*CNN, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg *C.char
	p := C.vs_cnn_load(cpath, &msg)
	if p == nil {
		return nil, fmt.Errorf("load cnn detector %s: %w", path, cError(msg))
	}
	return &CNN{p: p}, nil
}

// Detect runs the CNN on img resized to width×height.
func (d *CNN) Detect(img Image, width, height int, adjust float64) ([]Rect, error) {
	ci, err := img.c()
	if err != nil {
		return nil, err
	}
	buf := make([]C.vs_rect, maxDetections)
	var msg *C.char
	n := C.vs_cnn_detect(d.p, ci, C.long(width), C.long(height), C.double(adjust), &buf[0], maxDetections, &msg)
	if n < 0 {
		return nil, fmt.Errorf("cnn detect: %w", cError(msg))
	}
	return rects(buf, n), nil
}

// Close frees the network.
func (d *CNN) Close() {
	if d.p != nil {
		C.vs_cnn_free(d.p)
		d.p = nil
	}
}
