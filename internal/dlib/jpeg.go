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
)

// DecodeJPEG decodes a JPEG of width×height (read from its header by the
// caller, who has checked its size) to packed RGB with libjpeg and the same
// settings as dlib's own loader, so the pixels equal what dlib-based tools
// (go-face among them) compute from the same file. It refuses truncated
// data, which libjpeg would otherwise pad with grey.
func DecodeJPEG(data []byte, width, height int) ([]byte, error) {
	if len(data) == 0 || width <= 0 || height <= 0 {
		return nil, fmt.Errorf("decode jpeg: %w: empty", ErrJPEGCorrupt)
	}
	pix := make([]byte, width*height*3)
	msg := C.vs_jpeg_decode((*C.uint8_t)(unsafe.Pointer(&data[0])), C.size_t(len(data)),
		(*C.uint8_t)(unsafe.Pointer(&pix[0])), C.long(width), C.long(height))
	if msg != nil {
		text := cError(msg).Error()
		if strings.HasPrefix(text, "cmyk:") {
			return nil, ErrJPEGCMYK
		}
		return nil, fmt.Errorf("decode jpeg: %w: %s", ErrJPEGCorrupt, strings.TrimPrefix(text, "corrupt: "))
	}
	return pix, nil
}
