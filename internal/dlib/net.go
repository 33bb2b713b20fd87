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

// Net is dlib's face recognition ResNet (150×150 chip → 128-D
// descriptor). Not safe for concurrent use: one per worker.
type Net struct{ p unsafe.Pointer }

// LoadNet reads dlib_face_recognition_resnet_model_v1.dat.
func LoadNet(path string) (*Net, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg *C.char
	p := C.vs_net_load(cpath, &msg)
	if p == nil {
		return nil, fmt.Errorf("load face network %s: %w", path, cError(msg))
	}
	return &Net{p: p}, nil
}

// Embed computes one descriptor per chip; chips holds n chips back to
// back and is processed as one batch.
func (n *Net) Embed(chips []byte) ([][DescriptorLen]float32, error) {
	if len(chips) == 0 || len(chips)%ChipBytes != 0 {
		return nil, fmt.Errorf("embed: %d bytes is not a whole number of chips", len(chips))
	}
	count := len(chips) / ChipBytes
	out := make([][DescriptorLen]float32, count)
	msg := C.vs_net_embed(n.p, (*C.uint8_t)(unsafe.Pointer(&chips[0])), C.int(count), (*C.float)(unsafe.Pointer(&out[0][0])))
	if err := cError(msg); err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	return out, nil
}

// Close frees the network.
func (n *Net) Close() {
	if n.p != nil {
		C.vs_net_free(n.p)
		n.p = nil
	}
}

// BuildNet fills dlib's ResNet with weights given in the face-api
// manifest's tensor order (values concatenated, sizes per tensor) and
// writes it to path in dlib's serialisation format.
func BuildNet(values []float32, sizes []int, path string) error {
	if len(values) == 0 || len(sizes) == 0 {
		return fmt.Errorf("build network: no weights")
	}
	csizes := make([]C.long, len(sizes))
	for i, s := range sizes {
		csizes[i] = C.long(s)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	msg := C.vs_net_build((*C.float)(unsafe.Pointer(&values[0])), &csizes[0], C.int(len(sizes)), cpath)
	if err := cError(msg); err != nil {
		return fmt.Errorf("build network: %w", err)
	}
	return nil
}
