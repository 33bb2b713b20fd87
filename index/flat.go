package index

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
)

// Flat is an exact index: a search compares the query with every vector
// of the space. Safe for concurrent use.
type Flat struct {
	dim int

	mu     sync.RWMutex
	spaces map[string]*segment
}

// segment holds one space's vectors contiguously, so a search scans one
// slice.
type segment struct {
	keys []uint64
	vecs []float32
	pos  map[uint64]int
}

// NewFlat returns an empty exact index for dim-dimensional vectors.
func NewFlat(dim int) *Flat {
	return &Flat{dim: dim, spaces: map[string]*segment{}}
}

// Dim is the vectors' dimension.
func (f *Flat) Dim() int { return f.dim }

// Upsert adds items to space, replacing the vectors of keys already there
// (the last of repeated keys wins). A batch with a vector of the wrong
// dimension changes nothing.
func (f *Flat) Upsert(ctx context.Context, space string, items []Item) error {
	for _, it := range items {
		if len(it.Vector) != f.dim {
			return fmt.Errorf("upsert key %d: %w (%d, want %d)", it.Key, ErrDimension, len(it.Vector), f.dim)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.spaces[space]
	if s == nil {
		s = &segment{pos: map[uint64]int{}}
		f.spaces[space] = s
	}
	for _, it := range items {
		if i, ok := s.pos[it.Key]; ok {
			copy(s.vecs[i*f.dim:(i+1)*f.dim], it.Vector)
			continue
		}
		s.pos[it.Key] = len(s.keys)
		s.keys = append(s.keys, it.Key)
		s.vecs = append(s.vecs, it.Vector...)
	}
	return nil
}

// Delete removes keys from space; unknown keys are ignored.
func (f *Flat) Delete(ctx context.Context, space string, keys []uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.spaces[space]; s != nil {
		for _, k := range keys {
			s.remove(k, f.dim)
		}
	}
	return nil
}

// Drop removes the whole space; an unknown space is not an error.
func (f *Flat) Drop(ctx context.Context, space string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.spaces, space)
	return nil
}

// remove swaps the last entry into the removed one's place, keeping the
// vectors contiguous.
func (s *segment) remove(key uint64, dim int) {
	i, ok := s.pos[key]
	if !ok {
		return
	}
	last := len(s.keys) - 1
	if i != last {
		s.keys[i] = s.keys[last]
		copy(s.vecs[i*dim:(i+1)*dim], s.vecs[last*dim:])
		s.pos[s.keys[i]] = i
	}
	s.keys, s.vecs = s.keys[:last], s.vecs[:last*dim]
	delete(s.pos, key)
}

// Len is the number of vectors in space; it never fails.
func (f *Flat) Len(ctx context.Context, space string) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if s := f.spaces[space]; s != nil {
		return len(s.keys), nil
	}
	return 0, nil
}

// Spaces lists the spaces in ascending order, those emptied by Delete
// included; it never fails.
func (f *Flat) Spaces(ctx context.Context) ([]string, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]string, 0, len(f.spaces))
	for name := range f.spaces {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

// Keys returns every key of space in ascending order.
func (f *Flat) Keys(ctx context.Context, space string) ([]uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.spaces[space]
	if s == nil {
		return []uint64{}, nil
	}
	out := slices.Clone(s.keys)
	slices.Sort(out)
	return out, nil
}

// Search returns the k nearest vectors of space to q, nearest first
// (equal distances by ascending key).
func (f *Flat) Search(ctx context.Context, space string, q []float32, k int) ([]Match, error) {
	if len(q) != f.dim {
		return nil, fmt.Errorf("search: %w (%d, want %d)", ErrDimension, len(q), f.dim)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.spaces[space]
	if s == nil || k <= 0 {
		return []Match{}, nil
	}
	k = min(k, len(s.keys))
	top := make(maxHeap, 0, k+1)
	for i, key := range s.keys {
		c := candidate{key: key, d: squaredDistance(q, s.vecs[i*f.dim:(i+1)*f.dim])}
		if len(top) < k {
			heap.Push(&top, c)
		} else if c.better(top[0]) {
			top[0] = c
			heap.Fix(&top, 0)
		}
		if i%4096 == 4095 && ctx.Err() != nil {
			return nil, fmt.Errorf("search: %w", ctx.Err())
		}
	}
	out := make([]Match, len(top))
	for j, c := range top {
		out[j] = Match{Key: c.key, Distance: float32(math.Sqrt(float64(c.d)))}
	}
	sortMatches(out)
	return out, nil
}

func squaredDistance(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0, d1, d2, d3 := a[i]-b[i], a[i+1]-b[i+1], a[i+2]-b[i+2], a[i+3]-b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

type candidate struct {
	key uint64
	d   float32 // squared distance
}

// better orders candidates by distance, then key: the order of results.
func (c candidate) better(o candidate) bool {
	return c.d < o.d || (c.d == o.d && c.key < o.key)
}

// maxHeap keeps the k best candidates with the worst on top.
type maxHeap []candidate

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(a, b int) bool { return h[b].better(h[a]) }
func (h maxHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(candidate)) }
func (h *maxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
