package index

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/visage/visage/internal/dlib"
)

// HNSWParams are an HNSW graph's parameters, as hnswlib names them.
type HNSWParams struct {
	// M is the number of links a vector keeps per layer (2M on the bottom
	// layer): more links, better recall per visited vector, more memory
	// (8M bytes per vector) and slower building.
	M int
	// EfConstruction is how many candidates an insertion explores: the
	// graph's quality, paid for in build time.
	EfConstruction int
	// EfSearch is how many candidates a search explores (at least k):
	// recall against latency.
	EfSearch int
}

// DefaultHNSWParams are chosen from `visage bench index` on a million
// face-descriptor-like vectors (docs/benchmarks.md, "Vector index").
func DefaultHNSWParams() HNSWParams {
	return HNSWParams{M: 32, EfConstruction: 100, EfSearch: 640}
}

func (p HNSWParams) validate() error {
	if p.M < 2 || p.M > 256 || p.EfConstruction < 1 || p.EfSearch < 1 {
		return fmt.Errorf("invalid HNSW parameters %+v", p)
	}
	return nil
}

// ErrClosed means the index was closed.
var ErrClosed = errors.New("index is closed")

const (
	// initialRoom is a new space's room; it doubles when full.
	initialRoom = 1024
	// maxSpaceName keeps a snapshot's file name (hex doubles it) within
	// the 255 bytes file systems allow.
	maxSpaceName = 120
	snapshotExt  = ".hnsw"
	tmpExt       = ".tmp"
	graphSeed    = 100
)

// HNSW is the embedded approximate index: one hnswlib graph per space,
// kept in memory and written to snapshot files by Save. Searches run in
// parallel with each other and with upserts and deletes; only growing a
// full graph stops a space's searches, briefly. Safe for concurrent use.
//
// A snapshot may be older than the metadata store (the process may die
// between two saves): whoever opens it reconciles with Keys.
type HNSW struct {
	dim      int
	p        HNSWParams
	efSearch atomic.Int64
	dir      string // "" keeps everything in memory

	// files serialises Save with the removal of a dropped space's
	// snapshot; it is taken before mu.
	files sync.Mutex

	mu     sync.RWMutex
	spaces map[string]*graph
	closed bool
}

// graph is one space's hnswlib graph and its locks.
type graph struct {
	// edit is shared by upserts and deletes and exclusive for what must
	// see the graph still: writing a snapshot, listing keys, freeing.
	edit sync.RWMutex
	// room is shared by every use of g and exclusive for resizing and
	// freeing, which move or release its memory.
	room sync.RWMutex
	g    *dlib.HNSW // nil once dropped or closed

	// changes counts edits; saved is its value at the last snapshot.
	changes atomic.Uint64
	saved   atomic.Uint64
}

// NewHNSW returns an empty in-memory HNSW index for dim-dimensional
// vectors; its Save does nothing.
func NewHNSW(dim int, p HNSWParams) (*HNSW, error) {
	if dim <= 0 {
		return nil, fmt.Errorf("create HNSW index: invalid dimension %d", dim)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("create HNSW index: %w", err)
	}
	h := &HNSW{dim: dim, p: p, spaces: map[string]*graph{}}
	h.efSearch.Store(int64(p.EfSearch))
	return h, nil
}

// OpenHNSW returns an HNSW index that keeps its snapshots in dir, with
// every snapshot found there loaded. A snapshot that cannot be read is
// renamed with a ".bad" suffix and logged, not fatal: the index is
// derived data, and reconciliation with the store re-adds what it held.
// Snapshots keep the M and EfConstruction they were built with.
func OpenHNSW(dir string, dim int, p HNSWParams) (*HNSW, error) {
	h, err := NewHNSW(dim, p)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, fmt.Errorf("open HNSW index: no directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open HNSW index: %w", err)
	}
	h.dir = dir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open HNSW index: %w", err)
	}
	type snapshot struct{ space, path string }
	var todo []snapshot
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case strings.HasSuffix(name, tmpExt):
			// A save the process did not finish.
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("open HNSW index: %w", err)
			}
		case strings.HasSuffix(name, snapshotExt) && e.Type().IsRegular():
			space, ok := spaceOf(name)
			if !ok {
				slog.Warn("hnsw: ignoring a file that is not a snapshot", "path", path)
				continue
			}
			todo = append(todo, snapshot{space, path})
		}
	}
	// Loading is mostly building hnswlib's label map: one space per core.
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := make(chan snapshot)
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Go(func() {
			for s := range next {
				g, err := dlib.LoadHNSW(s.path, dim, 0)
				if err != nil {
					slog.Warn("hnsw: setting aside an unreadable snapshot", "space", s.space, "path", s.path, "err", err)
					if err := os.Rename(s.path, s.path+".bad"); err != nil {
						slog.Warn("hnsw: cannot set the snapshot aside", "path", s.path, "err", err)
					}
					continue
				}
				mu.Lock()
				h.spaces[s.space] = &graph{g: g}
				mu.Unlock()
			}
		})
	}
	for _, s := range todo {
		next <- s
	}
	close(next)
	wg.Wait()
	return h, nil
}

// fileOf names space's snapshot: hex keeps any space name a safe,
// distinct file name.
func fileOf(space string) string { return "space-" + hex.EncodeToString([]byte(space)) + snapshotExt }

func spaceOf(file string) (string, bool) {
	s, ok := strings.CutPrefix(strings.TrimSuffix(file, snapshotExt), "space-")
	if !ok {
		return "", false
	}
	b, err := hex.DecodeString(s)
	return string(b), err == nil
}

// SetEfSearch changes how many candidates later searches explore (at
// least k); benchmarks sweep it.
func (h *HNSW) SetEfSearch(ef int) { h.efSearch.Store(int64(max(ef, 1))) }

// Params are the parameters new spaces are built with and the current
// EfSearch.
func (h *HNSW) Params() HNSWParams {
	p := h.p
	p.EfSearch = int(h.efSearch.Load())
	return p
}

// lookup returns space's graph, creating it if asked.
func (h *HNSW) lookup(space string, create bool) (*graph, error) {
	h.mu.RLock()
	g, closed := h.spaces[space], h.closed
	h.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if g != nil || !create {
		return g, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if g = h.spaces[space]; g == nil {
		hg, err := dlib.NewHNSW(h.dim, initialRoom, h.p.M, h.p.EfConstruction, graphSeed)
		if err != nil {
			return nil, err
		}
		g = &graph{g: hg}
		h.spaces[space] = g
	}
	return g, nil
}

// Upsert adds items to space, replacing the vectors of keys already
// there (the last of repeated keys wins); a large batch is inserted by
// all cores. A batch with a vector of the wrong dimension changes
// nothing; otherwise it is not atomic. An upsert that races with the
// space's Drop may land before it, and be dropped.
func (h *HNSW) Upsert(ctx context.Context, space string, items []Item) error {
	for _, it := range items {
		if len(it.Vector) != h.dim {
			return fmt.Errorf("upsert key %d: %w (%d, want %d)", it.Key, ErrDimension, len(it.Vector), h.dim)
		}
	}
	if len(space) > maxSpaceName {
		return fmt.Errorf("upsert: space name longer than %d bytes", maxSpaceName)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	items = lastOfEachKey(items)
	g, err := h.lookup(space, true)
	if err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	g.edit.RLock()
	defer g.edit.RUnlock()
	if g.g == nil {
		return nil
	}
	defer g.changes.Add(1)
	g.room.RLock()
	need := g.g.Size() + len(items)
	short := need > g.g.Capacity()
	g.room.RUnlock()
	if short {
		if err := g.grow(need); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
	}
	workers := 1
	if len(items) >= 256 {
		workers = runtime.GOMAXPROCS(0)
	}
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(items) {
					return
				}
				if i%1024 == 1023 && ctx.Err() != nil {
					errs[w] = ctx.Err()
					return
				}
				if err := g.add(items[i]); err != nil {
					errs[w] = fmt.Errorf("key %d: %w", items[i].Key, err)
					next.Store(int64(len(items)))
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	return nil
}

// lastOfEachKey drops all but the last item of each key, so that
// parallel insertion cannot reorder two vectors of one key.
func lastOfEachKey(items []Item) []Item {
	if len(items) < 2 {
		return items
	}
	last := make(map[uint64]int, len(items))
	for i, it := range items {
		last[it.Key] = i
	}
	if len(last) == len(items) {
		return items
	}
	out := make([]Item, 0, len(last))
	for i, it := range items {
		if last[it.Key] == i {
			out = append(out, it)
		}
	}
	return out
}

// add inserts one item (the caller holds edit), growing the graph when
// a concurrent upsert took the room reserved.
func (g *graph) add(it Item) error {
	for {
		g.room.RLock()
		err := g.g.Add(it.Key, it.Vector)
		capacity := g.g.Capacity()
		g.room.RUnlock()
		if !errors.Is(err, dlib.ErrGraphFull) {
			return err
		}
		if err := g.grow(capacity + 1); err != nil {
			return err
		}
	}
}

// grow makes room for at least n elements, doubling at least.
func (g *graph) grow(n int) error {
	g.room.Lock()
	defer g.room.Unlock()
	if c := g.g.Capacity(); c < n {
		return g.g.Resize(max(n, 2*c))
	}
	return nil
}

// Delete removes keys from space; unknown keys are ignored. hnswlib only
// marks them: their room is kept, and reused if the key comes back.
func (h *HNSW) Delete(ctx context.Context, space string, keys []uint64) error {
	g, err := h.lookup(space, false)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if g == nil {
		return nil
	}
	g.edit.RLock()
	defer g.edit.RUnlock()
	g.room.RLock()
	defer g.room.RUnlock()
	if g.g == nil {
		return nil
	}
	deleted := false
	for _, k := range keys {
		if g.g.Delete(k) {
			deleted = true
		}
	}
	if deleted {
		g.changes.Add(1)
	}
	return nil
}

// Drop removes the whole space and its snapshot; an unknown space is not
// an error.
func (h *HNSW) Drop(ctx context.Context, space string) error {
	h.files.Lock()
	defer h.files.Unlock()
	h.mu.Lock()
	g := h.spaces[space]
	delete(h.spaces, space)
	h.mu.Unlock()
	if g != nil {
		g.free()
	}
	if h.dir == "" {
		return nil
	}
	if err := os.Remove(filepath.Join(h.dir, fileOf(space))); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("drop %q: %w", space, err)
	}
	if err := syncDir(h.dir); err != nil {
		return fmt.Errorf("drop %q: %w", space, err)
	}
	return nil
}

// free releases the graph once nothing uses it.
func (g *graph) free() {
	g.edit.Lock()
	defer g.edit.Unlock()
	g.room.Lock()
	defer g.room.Unlock()
	if g.g != nil {
		g.g.Free()
		g.g = nil
	}
}

// Search returns the k nearest vectors of space to q, nearest first
// (equal distances by ascending key), exploring max(EfSearch, k)
// candidates.
func (h *HNSW) Search(ctx context.Context, space string, q []float32, k int) ([]Match, error) {
	if len(q) != h.dim {
		return nil, fmt.Errorf("search: %w (%d, want %d)", ErrDimension, len(q), h.dim)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	g, err := h.lookup(space, false)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if g == nil || k <= 0 {
		return []Match{}, nil
	}
	g.room.RLock()
	defer g.room.RUnlock()
	if g.g == nil {
		return []Match{}, nil
	}
	// Bounded by the space's size, so that a huge k allocates no more
	// than the space holds (Size, not Live, which waits for deletions and
	// replacements in progress).
	k = min(k, g.g.Size())
	if k == 0 {
		return []Match{}, nil
	}
	labels := make([]uint64, k)
	dists := make([]float32, k)
	n, err := g.g.Search(q, max(int(h.efSearch.Load()), k), labels, dists)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	out := make([]Match, n)
	for i := range out {
		out[i] = Match{Key: labels[i], Distance: float32(math.Sqrt(float64(dists[i])))}
	}
	sortMatches(out)
	return out, nil
}

// Keys returns every key of space in ascending order. It waits for the
// space's upserts and deletes in progress and holds new ones back while
// it reads (about 10 ms per million keys).
func (h *HNSW) Keys(ctx context.Context, space string) ([]uint64, error) {
	g, err := h.lookup(space, false)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if g == nil {
		return []uint64{}, nil
	}
	g.edit.Lock()
	defer g.edit.Unlock()
	if g.g == nil {
		return []uint64{}, nil
	}
	keys := g.g.Labels()
	slices.Sort(keys)
	return keys, nil
}

// Spaces lists the spaces in ascending order, those emptied by Delete
// included; it fails only once the index is closed.
func (h *HNSW) Spaces(ctx context.Context) ([]string, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return nil, ErrClosed
	}
	out := make([]string, 0, len(h.spaces))
	for name := range h.spaces {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

// Len is the number of vectors in space; it fails only once the index is
// closed.
func (h *HNSW) Len(ctx context.Context, space string) (int, error) {
	g, err := h.lookup(space, false)
	if err != nil {
		return 0, err
	}
	if g == nil {
		return 0, nil
	}
	g.room.RLock()
	defer g.room.RUnlock()
	if g.g == nil {
		return 0, nil
	}
	return g.g.Live(), nil
}

// Save writes a snapshot of every space changed since the last save,
// each atomically (a temporary file, synced, renamed over the old one,
// the directory synced). A space's upserts and deletes wait while its
// graph is copied to the file (about 0.5 s per million vectors), not
// while it is synced; searches never wait. An in-memory index has nothing
// to save.
func (h *HNSW) Save(ctx context.Context) error {
	if h.dir == "" {
		return nil
	}
	h.files.Lock()
	defer h.files.Unlock()
	h.mu.RLock()
	names := make([]string, 0, len(h.spaces))
	graphs := make([]*graph, 0, len(h.spaces))
	for name, g := range h.spaces {
		names = append(names, name)
		graphs = append(graphs, g)
	}
	h.mu.RUnlock()
	var errs []error
	for i, g := range graphs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("save: %w", err)
		}
		if err := h.save(names[i], g); err != nil {
			errs = append(errs, fmt.Errorf("save %q: %w", names[i], err))
		}
	}
	return errors.Join(errs...)
}

// save writes one space's snapshot if it changed (the caller holds
// files).
func (h *HNSW) save(space string, g *graph) error {
	path := filepath.Join(h.dir, fileOf(space))
	tmp := path + tmpExt
	g.edit.Lock()
	version := g.changes.Load()
	if g.g == nil || version == g.saved.Load() {
		g.edit.Unlock()
		return nil
	}
	err := g.g.Save(tmp)
	g.edit.Unlock()
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(h.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	g.saved.Store(version)
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close frees every graph without saving (call Save first to keep
// changes); later calls fail with ErrClosed.
func (h *HNSW) Close() error {
	h.files.Lock()
	defer h.files.Unlock()
	h.mu.Lock()
	graphs := h.spaces
	h.spaces, h.closed = map[string]*graph{}, true
	h.mu.Unlock()
	for _, g := range graphs {
		g.free()
	}
	return nil
}
