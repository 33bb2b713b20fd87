package index

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
)

// Item is one indexed descriptor.
type Item struct {
	// ID identifies the face (unique across the index).
	ID string
	// Subject and Collection are what searches filter and report on.
	Subject    string
	Collection string
	Vector     []float32
}

// Match is a search result.
type Match struct {
	ID       string
	Subject  string
	Distance float32 // Euclidean, not squared
}

// Filter narrows a search or a deletion; empty fields match everything
// (Collection is required for Search).
type Filter struct {
	Collection string
	Subject    string
}

// ErrDimension means a vector's length differs from the index's.
var ErrDimension = errors.New("vector has the wrong dimension")

// Flat is an exact index: a search compares the query with every vector
// of the collection. Safe for concurrent use.
type Flat struct {
	dim int

	mu    sync.RWMutex
	colls map[string]*segment
	where map[string]string // face id → collection
}

// segment holds one collection's vectors contiguously, so a search scans
// one slice.
type segment struct {
	ids      []string
	subjects []string
	vecs     []float32
	pos      map[string]int
}

// NewFlat returns an empty exact index for dim-dimensional vectors.
func NewFlat(dim int) *Flat {
	return &Flat{dim: dim, colls: map[string]*segment{}, where: map[string]string{}}
}

// Upsert adds items, replacing any with the same ID (also across
// collections).
func (f *Flat) Upsert(ctx context.Context, items []Item) error {
	for _, it := range items {
		if len(it.Vector) != f.dim {
			return fmt.Errorf("upsert %s: %w (%d, want %d)", it.ID, ErrDimension, len(it.Vector), f.dim)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, it := range items {
		if c, ok := f.where[it.ID]; ok && c != it.Collection {
			f.colls[c].remove(it.ID)
		}
		s := f.colls[it.Collection]
		if s == nil {
			s = &segment{pos: map[string]int{}}
			f.colls[it.Collection] = s
		}
		if i, ok := s.pos[it.ID]; ok {
			s.subjects[i] = it.Subject
			copy(s.vecs[i*f.dim:], it.Vector)
		} else {
			s.pos[it.ID] = len(s.ids)
			s.ids = append(s.ids, it.ID)
			s.subjects = append(s.subjects, it.Subject)
			s.vecs = append(s.vecs, it.Vector...)
		}
		f.where[it.ID] = it.Collection
	}
	return nil
}

// Delete removes the faces with these IDs; unknown IDs are ignored, so a
// retried deletion succeeds.
func (f *Flat) Delete(ctx context.Context, ids []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if c, ok := f.where[id]; ok {
			f.colls[c].remove(id)
			delete(f.where, id)
		}
	}
	return nil
}

// DeleteWhere removes every face matching the filter (a subject, or a
// whole collection) and returns how many it removed.
func (f *Flat) DeleteWhere(ctx context.Context, flt Filter) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for name, s := range f.colls {
		if flt.Collection != "" && name != flt.Collection {
			continue
		}
		var doomed []string
		for i, id := range s.ids {
			if flt.Subject == "" || s.subjects[i] == flt.Subject {
				doomed = append(doomed, id)
			}
		}
		for _, id := range doomed {
			s.remove(id)
			delete(f.where, id)
		}
		n += len(doomed)
	}
	return n, nil
}

// remove swaps the last entry into the removed one's place.
func (s *segment) remove(id string) {
	i, ok := s.pos[id]
	if !ok {
		return
	}
	last := len(s.ids) - 1
	dim := len(s.vecs) / len(s.ids)
	if i != last {
		s.ids[i], s.subjects[i] = s.ids[last], s.subjects[last]
		copy(s.vecs[i*dim:(i+1)*dim], s.vecs[last*dim:])
		s.pos[s.ids[i]] = i
	}
	s.ids, s.subjects, s.vecs = s.ids[:last], s.subjects[:last], s.vecs[:last*dim]
	delete(s.pos, id)
}

// Len is the number of faces in a collection ("" counts all).
func (f *Flat) Len(collection string) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if collection == "" {
		return len(f.where)
	}
	if s := f.colls[collection]; s != nil {
		return len(s.ids)
	}
	return 0
}

// Search returns the k nearest faces of the filter's collection (and
// subject, if set), nearest first.
func (f *Flat) Search(ctx context.Context, q []float32, k int, flt Filter) ([]Match, error) {
	if len(q) != f.dim {
		return nil, fmt.Errorf("search: %w (%d, want %d)", ErrDimension, len(q), f.dim)
	}
	if k <= 0 {
		return nil, nil
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := f.colls[flt.Collection]
	if s == nil {
		return nil, nil
	}
	top := make(maxHeap, 0, k+1)
	for i := range s.ids {
		if flt.Subject != "" && s.subjects[i] != flt.Subject {
			continue
		}
		d := squaredDistance(q, s.vecs[i*f.dim:(i+1)*f.dim])
		if len(top) < k {
			heap.Push(&top, candidate{i, d})
		} else if d < top[0].d {
			top[0] = candidate{i, d}
			heap.Fix(&top, 0)
		}
		if i%4096 == 4095 && ctx.Err() != nil {
			return nil, fmt.Errorf("search: %w", ctx.Err())
		}
	}
	sort.Slice(top, func(a, b int) bool { return top[a].d < top[b].d })
	out := make([]Match, len(top))
	for j, c := range top {
		out[j] = Match{ID: s.ids[c.i], Subject: s.subjects[c.i], Distance: float32(math.Sqrt(float64(c.d)))}
	}
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
	i int
	d float32
}

// maxHeap keeps the k best candidates with the worst on top.
type maxHeap []candidate

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(a, b int) bool { return h[a].d > h[b].d }
func (h maxHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(candidate)) }
func (h *maxHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
