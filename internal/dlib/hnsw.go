package dlib

/*
#include <stdlib.h>
#include "hnsw.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// ErrGraphFull means an HNSW graph has no room for a new label: resize it.
var ErrGraphFull = errors.New("hnsw graph is full")

// HNSW is hnswlib's hierarchical navigable small world graph over
// squared Euclidean distance, labels being uint64. Add, Delete and Search
// are safe for concurrent use with each other; Resize, Save, Labels and
// Free need exclusive access (Labels and Save only against Add and
// Delete).
type HNSW struct {
	p   unsafe.Pointer
	dim int
}

// NewHNSW creates an empty graph for dim-dimensional vectors with room
// for maxElements; m and efConstruction are hnswlib's M and
// ef_construction; seed fixes the random levels.
func NewHNSW(dim, maxElements, m, efConstruction int, seed uint64) (*HNSW, error) {
	if dim <= 0 || maxElements < 0 || m < 2 || efConstruction <= 0 {
		return nil, fmt.Errorf("create hnsw graph: invalid parameters dim=%d max=%d M=%d efConstruction=%d", dim, maxElements, m, efConstruction)
	}
	var msg *C.char
	p := C.vs_hnsw_new(C.int(dim), C.size_t(maxElements), C.int(m), C.int(efConstruction), C.uint64_t(seed), &msg)
	if p == nil {
		return nil, cError(msg)
	}
	return &HNSW{p: p, dim: dim}, nil
}

// LoadHNSW reads a graph written by Save, with room for at least
// maxElements; it refuses a graph of another dimension or a damaged one.
func LoadHNSW(path string, dim, maxElements int) (*HNSW, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var msg *C.char
	p := C.vs_hnsw_load(cpath, C.int(dim), C.size_t(maxElements), &msg)
	if p == nil {
		return nil, fmt.Errorf("load hnsw graph %s: %w", path, cError(msg))
	}
	return &HNSW{p: p, dim: dim}, nil
}

// Dim is the vectors' dimension.
func (h *HNSW) Dim() int { return h.dim }

// Add inserts label's vector, or replaces it in place (a deleted label
// comes back). It returns ErrGraphFull, changing nothing, when a new label
// finds no room.
func (h *HNSW) Add(label uint64, vec []float32) error {
	if len(vec) != h.dim {
		return fmt.Errorf("add to hnsw graph: %d values, want %d", len(vec), h.dim)
	}
	var msg *C.char
	switch C.vs_hnsw_add(h.p, C.uint64_t(label), (*C.float)(unsafe.Pointer(&vec[0])), &msg) {
	case C.VS_HNSW_OK:
		return nil
	case C.VS_HNSW_FULL:
		return ErrGraphFull
	default:
		return fmt.Errorf("add to hnsw graph: %w", cError(msg))
	}
}

// Delete marks label deleted and reports whether it was live.
func (h *HNSW) Delete(label uint64) bool {
	return C.vs_hnsw_delete(h.p, C.uint64_t(label)) == 1
}

// Search writes the nearest live labels and their squared distances,
// nearest first, into labels and dists (their common length is k),
// exploring max(ef, k) candidates; it returns how many it wrote.
func (h *HNSW) Search(q []float32, ef int, labels []uint64, dists []float32) (int, error) {
	if len(q) != h.dim {
		return 0, fmt.Errorf("search hnsw graph: %d values, want %d", len(q), h.dim)
	}
	k := min(len(labels), len(dists))
	if k == 0 {
		return 0, nil
	}
	var msg *C.char
	n := C.vs_hnsw_search(h.p, (*C.float)(unsafe.Pointer(&q[0])), C.int(k), C.int(ef),
		(*C.uint64_t)(unsafe.Pointer(&labels[0])), (*C.float)(unsafe.Pointer(&dists[0])), &msg)
	if n < 0 {
		return 0, fmt.Errorf("search hnsw graph: %w", cError(msg))
	}
	return int(n), nil
}

// Resize sets the room to maxElements (at least the elements held).
func (h *HNSW) Resize(maxElements int) error {
	if err := cError(C.vs_hnsw_resize(h.p, C.size_t(maxElements))); err != nil {
		return fmt.Errorf("resize hnsw graph: %w", err)
	}
	return nil
}

// Save writes the graph to path in hnswlib's format (not synced).
func (h *HNSW) Save(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	if err := cError(C.vs_hnsw_save(h.p, cpath)); err != nil {
		return fmt.Errorf("save hnsw graph: %w", err)
	}
	return nil
}

// Live is the number of live (not deleted) labels.
func (h *HNSW) Live() int { return int(C.vs_hnsw_live(h.p)) }

// Size is the number of elements, deleted ones included: each holds room.
func (h *HNSW) Size() int { return int(C.vs_hnsw_size(h.p)) }

// Capacity is the room: Size can grow to it before a Resize.
func (h *HNSW) Capacity() int { return int(C.vs_hnsw_capacity(h.p)) }

// Labels returns every live label, in insertion order.
func (h *HNSW) Labels() []uint64 {
	out := make([]uint64, h.Live())
	if len(out) == 0 {
		return out
	}
	n := C.vs_hnsw_labels(h.p, (*C.uint64_t)(unsafe.Pointer(&out[0])), C.size_t(len(out)))
	return out[:int(n)]
}

// Vector copies label's vector into out (Dim values) and reports whether
// the label is live.
func (h *HNSW) Vector(label uint64, out []float32) bool {
	if len(out) < h.dim {
		return false
	}
	return C.vs_hnsw_vector(h.p, C.uint64_t(label), (*C.float)(unsafe.Pointer(&out[0]))) == 1
}

// Free releases the graph; h must not be used afterwards.
func (h *HNSW) Free() {
	if h.p != nil {
		C.vs_hnsw_free(h.p)
		h.p = nil
	}
}
