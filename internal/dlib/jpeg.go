package dlib

/*
#include <stdlib.h>
#include "visage_dlib.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// Errors of DecodeJPEG that callers branch on.
var (
	// ErrJPEGCMYK means a four-component JPEG, which libjpeg cannot turn
	// into RGB; decode it another way.
	ErrJPEGCMYK = errors.New("four-component (CMYK/YCCK) JPEG")
	// ErrJPEGCorrupt means libjpeg found an error or truncated data.
	ErrJPEGCorrupt = errors.New("corrupt JPEG")
	// ErrJPEGTooLarge means the header declares more than maxPixels.
	ErrJPEGTooLarge = errors.New("JPEG exceeds the pixel limit")
)

// DecodeJPEG decodes a JPEG to packed RGB with libjpeg and the same
// settings as dlib's own loader, so the pixels equal what dlib-based tools
// (go-face among them) compute from the same file. It refuses truncated
// data, which libjpeg would otherwise pad with grey.
func DecodeJPEG(data []byte, maxPixels int64) (pix []byte, width, height int, err error) {
	if len(data) == 0 {
		return nil, 0, 0, fmt.Errorf("decode jpeg: %w: empty", ErrJPEGCorrupt)
	}
	var out *C.uint8_t
	var w, h C.long
	msg := C.vs_jpeg_decode((*C.uint8_t)(unsafe.Pointer(&data[0])), C.size_t(len(data)), C.long(maxPixels), &out, &w, &h)
	if msg != nil {
		text := cError(msg).Error()
		switch {
		case strings.HasPrefix(text, "cmyk:"):
			return nil, 0, 0, ErrJPEGCMYK
		case strings.HasPrefix(text, "too_large:"):
			return nil, 0, 0, ErrJPEGTooLarge
		default:
			return nil, 0, 0, fmt.Errorf("decode jpeg: %w: %s", ErrJPEGCorrupt, strings.TrimPrefix(text, "corrupt: "))
		}
	}
	defer C.free(unsafe.Pointer(out))
	n := int(w) * int(h) * 3
	pix = make([]byte, n)
	copy(pix, unsafe.Slice((*byte)(unsafe.Pointer(out)), n))
	return pix, int(w), int(h), nil
}
