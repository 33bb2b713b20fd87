// Package indextest is the conformance suite of index.Index: every
// implementation runs it, so that the gallery may rely on the contract
// whichever index it is given.
//
// The suite needs exact results on small spaces (at most about a thousand
// vectors): an approximate index runs it with parameters that make its
// search exhaustive.
package indextest

import (
	"context"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/visage/visage/index"
)

// Opener returns a new, empty index of dim-dimensional vectors for one
// test, released when the test ends.
type Opener func(t *testing.T) index.Index

// Run runs the conformance suite, each case on an index from open.
func Run(t *testing.T, dim int, open Opener) {
	s := suite{dim: dim, open: open}
	for _, tc := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"MatchesBruteForce", s.matchesBruteForce},
		{"TiesByKey", s.tiesByKey},
		{"UpsertReplaces", s.upsertReplaces},
		{"DeleteIgnoresUnknownKeys", s.deleteIgnoresUnknownKeys},
		{"DeletedNeverReturned", s.deletedNeverReturned},
		{"ReAddAfterDelete", s.reAddAfterDelete},
		{"Drop", s.drop},
		{"UnknownSpace", s.unknownSpace},
		{"SpacesIndependent", s.spacesIndependent},
		{"KeysAscending", s.keysAscending},
		{"WrongDimension", s.wrongDimension},
		{"EmptyBatches", s.emptyBatches},
		{"ConcurrentUse", s.concurrentUse},
	} {
		t.Run(tc.name, tc.run)
	}
}

type suite struct {
	dim  int
	open Opener
}

// RandomUnit returns a random unit vector of dimension dim, as dlib's
// descriptors are after L2 normalisation.
func RandomUnit(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	var n float64
	for i := range v {
		x := r.NormFloat64()
		v[i] = float32(x)
		n += x * x
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / math.Sqrt(n))
	}
	return v
}

func (s suite) unit(r *rand.Rand) []float32 { return RandomUnit(r, s.dim) }

// Model mirrors what an index should hold, space by space.
type Model map[string]map[uint64][]float32

// Upsert records items in space.
func (m Model) Upsert(space string, items []index.Item) {
	if m[space] == nil {
		m[space] = map[uint64][]float32{}
	}
	for _, it := range items {
		m[space][it.Key] = it.Vector
	}
}

// BruteForce is the obviously correct answer: every vector of the space
// ranked by its float64 distance to q, ties by key, the first k.
func BruteForce(space map[uint64][]float32, q []float32, k int) []index.Match {
	all := make([]index.Match, 0, len(space))
	for key, v := range space {
		var s float64
		for i := range q {
			d := float64(q[i]) - float64(v[i])
			s += d * d
		}
		all = append(all, index.Match{Key: key, Distance: float32(math.Sqrt(s))})
	}
	slices.SortFunc(all, func(a, b index.Match) int {
		if a.Distance != b.Distance {
			if a.Distance < b.Distance {
				return -1
			}
			return 1
		}
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	return all[:min(k, len(all))]
}

// tolerance allows for float32 rounding in distances of unit vectors.
const tolerance = 1e-5

// SameMatches compares a search for q in space with the brute-force
// answer: the same distances rank by rank (within float32 rounding),
// every key real, not repeated and at the distance reported, in order of
// distance, then key.
func SameMatches(t *testing.T, space map[uint64][]float32, q []float32, got, want []index.Match) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d matches, want %d", len(got), len(want))
	}
	seen := map[uint64]bool{}
	for i, m := range got {
		if math.Abs(float64(m.Distance-want[i].Distance)) > tolerance {
			t.Fatalf("match %d at distance %v, want %v", i, m.Distance, want[i].Distance)
		}
		v, ok := space[m.Key]
		if !ok || seen[m.Key] {
			t.Fatalf("match %d = %+v: unknown or repeated key", i, m)
		}
		if d := BruteForce(map[uint64][]float32{m.Key: v}, q, 1)[0].Distance; math.Abs(float64(m.Distance-d)) > tolerance {
			t.Fatalf("match %d = %+v: the key is at distance %v", i, m, d)
		}
		seen[m.Key] = true
	}
	for i := 1; i < len(got); i++ {
		if got[i].Distance < got[i-1].Distance || (got[i].Distance == got[i-1].Distance && got[i].Key < got[i-1].Key) {
			t.Fatalf("matches %d and %d out of order: %+v, %+v", i-1, i, got[i-1], got[i])
		}
	}
}

// CheckAgainst compares every observable of idx with the model: spaces,
// lengths, keys, and searches for several k. Spaces emptied by Delete may
// be listed or not.
func CheckAgainst(t *testing.T, idx index.Index, m Model, r *rand.Rand, dim int) {
	t.Helper()
	ctx := context.Background()
	var names []string
	for name, space := range m {
		if len(space) > 0 {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	listed, err := idx.Spaces(ctx)
	if err != nil {
		t.Fatalf("Spaces: %v", err)
	}
	for _, name := range listed {
		if _, ok := m[name]; !ok {
			t.Fatalf("Spaces = %q: %q never held vectors or was dropped", listed, name)
		}
	}
	if got := slices.DeleteFunc(slices.Clone(listed), func(n string) bool { return len(m[n]) == 0 }); !slices.Equal(got, names) {
		t.Fatalf("Spaces = %q, want %q (and maybe emptied ones)", listed, names)
	}
	for _, name := range append(slices.Sorted(maps.Keys(m)), "no-such-space") {
		space := m[name]
		n, err := idx.Len(ctx, name)
		if err != nil {
			t.Fatalf("Len(%q): %v", name, err)
		}
		if n != len(space) {
			t.Errorf("Len(%q) = %d, want %d", name, n, len(space))
		}
		keys, err := idx.Keys(ctx, name)
		if err != nil {
			t.Fatalf("Keys(%q): %v", name, err)
		}
		want := []uint64{}
		for k := range space {
			want = append(want, k)
		}
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Fatalf("Keys(%q): %d keys, want %d (or different ones)", name, len(keys), len(want))
		}
		for _, k := range []int{1, 10, len(space) + 5} {
			q := RandomUnit(r, dim)
			got, err := idx.Search(ctx, name, q, k)
			if err != nil {
				t.Fatalf("Search(%q, k=%d): %v", name, k, err)
			}
			SameMatches(t, space, q, got, BruteForce(space, q, k))
		}
	}
}

func upsert(t *testing.T, idx index.Index, m Model, space string, items ...index.Item) {
	t.Helper()
	if err := idx.Upsert(context.Background(), space, items); err != nil {
		t.Fatalf("Upsert(%q, %d items): %v", space, len(items), err)
	}
	if m != nil {
		m.Upsert(space, items)
	}
}

func search(t *testing.T, idx index.Index, space string, q []float32, k int) []index.Match {
	t.Helper()
	got, err := idx.Search(context.Background(), space, q, k)
	if err != nil {
		t.Fatalf("Search(%q, k=%d): %v", space, k, err)
	}
	return got
}

func keys(t *testing.T, idx index.Index, space string) []uint64 {
	t.Helper()
	got, err := idx.Keys(context.Background(), space)
	if err != nil {
		t.Fatalf("Keys(%q): %v", space, err)
	}
	return got
}

func length(t *testing.T, idx index.Index, space string) int {
	t.Helper()
	n, err := idx.Len(context.Background(), space)
	if err != nil {
		t.Fatalf("Len(%q): %v", space, err)
	}
	return n
}

func (s suite) matchesBruteForce(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	idx := s.open(t)
	m := Model{}
	spaces := []string{"faces/a", "faces/b"}
	var batch [2][]index.Item
	for i := range 1000 {
		batch[i%2] = append(batch[i%2], index.Item{Key: uint64(i), Vector: s.unit(r)})
	}
	for i, space := range spaces {
		// One by one, then in a batch: both paths insert.
		for _, it := range batch[i][:20] {
			upsert(t, idx, m, space, it)
		}
		upsert(t, idx, m, space, batch[i][20:]...)
	}
	t.Run("after inserts", func(t *testing.T) { CheckAgainst(t, idx, m, r, s.dim) })

	// The same key in two spaces is two vectors; a batch repeating a key
	// keeps the last.
	upsert(t, idx, m, "faces/b", index.Item{Key: 0, Vector: s.unit(r)}, index.Item{Key: 7, Vector: s.unit(r)}, index.Item{Key: 7, Vector: s.unit(r)})
	for i := 0; i < 1000; i += 29 {
		upsert(t, idx, m, spaces[i%2], index.Item{Key: uint64(i), Vector: s.unit(r)})
	}
	var doomed []uint64
	for i := 1; i < 1000; i += 6 {
		doomed = append(doomed, uint64(i))
		delete(m["faces/a"], uint64(i))
	}
	if err := idx.Delete(ctx, "faces/a", append(doomed, 1<<60)); err != nil {
		t.Fatal(err)
	}
	if err := idx.Delete(ctx, "no-such-space", doomed); err != nil {
		t.Fatal(err)
	}
	t.Run("after replacements and deletions", func(t *testing.T) { CheckAgainst(t, idx, m, r, s.dim) })

	back := []index.Item{{Key: 1, Vector: s.unit(r)}, {Key: 7, Vector: s.unit(r)}}
	upsert(t, idx, m, "faces/a", back...)
	for range 2 {
		if err := idx.Drop(ctx, "faces/b"); err != nil {
			t.Fatal(err)
		}
	}
	delete(m, "faces/b")
	t.Run("after re-adding and dropping a space", func(t *testing.T) { CheckAgainst(t, idx, m, r, s.dim) })
}

func (s suite) tiesByKey(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	idx := s.open(t)
	v := s.unit(r)
	for _, k := range []uint64{9, 3, 7, 1} {
		upsert(t, idx, nil, "s", index.Item{Key: k, Vector: v})
	}
	// A farther vector, so that ties are not the whole space.
	upsert(t, idx, nil, "s", index.Item{Key: 0, Vector: s.unit(r)})
	for _, tc := range []struct {
		k    int
		want []uint64
	}{
		{0, []uint64{}},
		{1, []uint64{1}},
		{3, []uint64{1, 3, 7}},
		{4, []uint64{1, 3, 7, 9}},
		{1000, []uint64{1, 3, 7, 9, 0}},
		{math.MaxInt, []uint64{1, 3, 7, 9, 0}},
	} {
		got := search(t, idx, "s", v, tc.k)
		keys := make([]uint64, len(got))
		for i, m := range got {
			keys[i] = m.Key
			if i < 4 && m.Distance != 0 {
				t.Errorf("k=%d: match %d at distance %v, want 0", tc.k, i, m.Distance)
			}
		}
		if !slices.Equal(keys, tc.want) {
			t.Errorf("k=%d: keys %v, want %v", tc.k, keys, tc.want)
		}
	}
}

func (s suite) upsertReplaces(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	idx := s.open(t)
	items := make([]index.Item, 300)
	for i := range items {
		items[i] = index.Item{Key: uint64(i), Vector: s.unit(r)}
	}
	upsert(t, idx, nil, "s", items...)
	for _, key := range []uint64{0, 150, 299} {
		old, fresh := items[key].Vector, s.unit(r)
		upsert(t, idx, nil, "s", index.Item{Key: key, Vector: fresh})
		if got := search(t, idx, "s", fresh, 1); len(got) != 1 || got[0] != (index.Match{Key: key}) {
			t.Errorf("search for key %d's new vector: %v", key, got)
		}
		if got := search(t, idx, "s", old, 1); len(got) == 1 && got[0].Key == key && got[0].Distance == 0 {
			t.Errorf("key %d still found at its old vector", key)
		}
	}
	if n := length(t, idx, "s"); n != len(items) {
		t.Errorf("Len = %d after replacements, want %d", n, len(items))
	}
}

func (s suite) deleteIgnoresUnknownKeys(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 7))
	idx := s.open(t)
	upsert(t, idx, nil, "s", index.Item{Key: 1, Vector: s.unit(r)}, index.Item{Key: 2, Vector: s.unit(r)})
	for _, tc := range []struct {
		name  string
		space string
		keys  []uint64
	}{
		{"unknown keys", "s", []uint64{3, 1 << 40, math.MaxUint64}},
		{"unknown space", "other", []uint64{1, 2}},
		{"twice", "s", []uint64{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := idx.Delete(ctx, tc.space, tc.keys); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		})
	}
	if got := keys(t, idx, "s"); !slices.Equal(got, []uint64{1}) {
		t.Errorf("Keys = %v, want [1]", got)
	}
}

func (s suite) deletedNeverReturned(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	idx := s.open(t)
	const n = 600
	items := make([]index.Item, n)
	var doomed []uint64
	for i := range items {
		items[i] = index.Item{Key: uint64(i), Vector: s.unit(r)}
		if i%3 != 0 {
			doomed = append(doomed, uint64(i))
		}
	}
	upsert(t, idx, nil, "s", items...)
	if err := idx.Delete(ctx, "s", doomed); err != nil {
		t.Fatal(err)
	}
	live := n - len(doomed)
	if got := length(t, idx, "s"); got != live {
		t.Fatalf("Len = %d, want %d", got, live)
	}
	for _, k := range []int{10, live + 1} {
		for range 20 {
			// Queries at deleted vectors: their own key would rank first.
			q := items[doomed[r.IntN(len(doomed))]].Vector
			got := search(t, idx, "s", q, k)
			if len(got) != min(k, live) {
				t.Fatalf("k=%d: %d matches with %d live vectors", k, len(got), live)
			}
			for _, m := range got {
				if m.Key%3 != 0 {
					t.Fatalf("deleted key %d returned", m.Key)
				}
			}
		}
	}
}

func (s suite) reAddAfterDelete(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	idx := s.open(t)
	items := make([]index.Item, 200)
	for i := range items {
		items[i] = index.Item{Key: uint64(i), Vector: s.unit(r)}
	}
	upsert(t, idx, nil, "s", items...)
	if err := idx.Delete(ctx, "s", []uint64{42, 43}); err != nil {
		t.Fatal(err)
	}
	fresh := s.unit(r)
	upsert(t, idx, nil, "s", index.Item{Key: 42, Vector: fresh})
	if got := search(t, idx, "s", fresh, 1); len(got) != 1 || got[0] != (index.Match{Key: 42}) {
		t.Errorf("re-added key: Search = %v", got)
	}
	ks := keys(t, idx, "s")
	if len(ks) != 199 || !slices.Contains(ks, 42) || slices.Contains(ks, 43) {
		t.Errorf("Keys: %d keys, 42 present %v, 43 present %v", len(ks), slices.Contains(ks, 42), slices.Contains(ks, 43))
	}
}

func (s suite) drop(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(2, 2))
	idx := s.open(t)
	upsert(t, idx, nil, "a", index.Item{Key: 1, Vector: s.unit(r)}, index.Item{Key: 2, Vector: s.unit(r)})
	upsert(t, idx, nil, "b", index.Item{Key: 1, Vector: s.unit(r)})
	for _, space := range []string{"a", "a", "never"} {
		if err := idx.Drop(ctx, space); err != nil {
			t.Fatalf("Drop(%q): %v", space, err)
		}
	}
	if got, err := idx.Spaces(ctx); err != nil || !slices.Equal(got, []string{"b"}) {
		t.Errorf("Spaces after Drop = %q, %v", got, err)
	}
	if got := search(t, idx, "a", s.unit(r), 5); len(got) != 0 {
		t.Errorf("dropped space: Search = %v", got)
	}
	if n, ks := length(t, idx, "a"), keys(t, idx, "a"); n != 0 || len(ks) != 0 {
		t.Errorf("dropped space: Len = %d, Keys = %v", n, ks)
	}
	if n := length(t, idx, "b"); n != 1 {
		t.Errorf("other space: Len = %d after Drop, want 1", n)
	}
	v := s.unit(r)
	upsert(t, idx, nil, "a", index.Item{Key: 2, Vector: v})
	if got := search(t, idx, "a", v, 5); !slices.Equal(got, []index.Match{{Key: 2}}) {
		t.Errorf("re-created space: Search = %v", got)
	}
}

func (s suite) unknownSpace(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	idx := s.open(t)
	upsert(t, idx, nil, "known", index.Item{Key: 1, Vector: s.unit(r)})
	got := search(t, idx, "unknown", s.unit(r), 10)
	if got == nil || len(got) != 0 {
		t.Errorf("Search = %#v, want an empty, non-nil result", got)
	}
	if ks := keys(t, idx, "unknown"); len(ks) != 0 {
		t.Errorf("Keys = %v", ks)
	}
	if n := length(t, idx, "unknown"); n != 0 {
		t.Errorf("Len = %d", n)
	}
}

func (s suite) spacesIndependent(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(9, 1))
	idx := s.open(t)
	names := []string{"faces/a", "faces/é b"}
	vecs := map[string][]float32{}
	for _, name := range names {
		vecs[name] = s.unit(r)
		upsert(t, idx, nil, name, index.Item{Key: 5, Vector: vecs[name]}, index.Item{Key: 6, Vector: s.unit(r)})
	}
	for _, name := range names {
		if got := search(t, idx, name, vecs[name], 1); !slices.Equal(got, []index.Match{{Key: 5}}) {
			t.Errorf("%q: Search = %v, want key 5 at 0", name, got)
		}
	}
	if err := idx.Delete(ctx, names[0], []uint64{5}); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, idx, names[1]); !slices.Equal(got, []uint64{5, 6}) {
		t.Errorf("a deletion in %q changed %q: Keys = %v", names[0], names[1], got)
	}
	if err := idx.Drop(ctx, names[1]); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, idx, names[0]); !slices.Equal(got, []uint64{6}) {
		t.Errorf("dropping %q changed %q: Keys = %v", names[1], names[0], got)
	}
	if got, err := idx.Spaces(ctx); err != nil || !slices.Equal(got, names[:1]) {
		t.Errorf("Spaces = %q, %v; want %q", got, err, names[:1])
	}
}

func (s suite) keysAscending(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	idx := s.open(t)
	want := []uint64{0, 1, 2, 1000, 1 << 32, 1<<63 - 1, 1 << 63, 1<<63 + 5, math.MaxUint64}
	shuffled := slices.Clone(want)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, k := range shuffled {
		upsert(t, idx, nil, "s", index.Item{Key: k, Vector: s.unit(r)})
	}
	if got := keys(t, idx, "s"); !slices.Equal(got, want) {
		t.Errorf("Keys = %v, want %v", got, want)
	}
	// Large keys come back from searches intact.
	v := s.unit(r)
	upsert(t, idx, nil, "s", index.Item{Key: math.MaxUint64 - 1, Vector: v})
	if got := search(t, idx, "s", v, 1); !slices.Equal(got, []index.Match{{Key: math.MaxUint64 - 1}}) {
		t.Errorf("Search = %v, want key %d", got, uint64(math.MaxUint64-1))
	}
}

func (s suite) wrongDimension(t *testing.T) {
	ctx := context.Background()
	idx := s.open(t)
	ok := index.Item{Key: 1, Vector: make([]float32, s.dim)}
	for _, tc := range []struct {
		name  string
		items []index.Item
	}{
		{"short", []index.Item{ok, {Key: 2, Vector: make([]float32, 3)}}},
		{"long", []index.Item{{Key: 2, Vector: make([]float32, s.dim+1)}, ok}},
		{"empty", []index.Item{{Key: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := idx.Upsert(ctx, "a", tc.items); !errors.Is(err, index.ErrDimension) {
				t.Errorf("Upsert: %v, want ErrDimension", err)
			}
		})
	}
	if _, err := idx.Search(ctx, "a", make([]float32, 5), 3); !errors.Is(err, index.ErrDimension) {
		t.Errorf("Search: %v, want ErrDimension", err)
	}
	if n := length(t, idx, "a"); n != 0 {
		t.Errorf("a rejected batch was stored in part: Len = %d", n)
	}
	if got, err := idx.Spaces(ctx); err != nil || len(got) != 0 {
		t.Errorf("Spaces = %q, %v after rejected batches", got, err)
	}
}

func (s suite) emptyBatches(t *testing.T) {
	ctx := context.Background()
	idx := s.open(t)
	if err := idx.Upsert(ctx, "a", nil); err != nil {
		t.Errorf("Upsert of nothing: %v", err)
	}
	if err := idx.Delete(ctx, "a", nil); err != nil {
		t.Errorf("Delete of nothing: %v", err)
	}
	if n := length(t, idx, "a"); n != 0 {
		t.Errorf("Len = %d", n)
	}
}

// concurrentUse runs upserts, searches and deletes at once (run it with
// -race); the end state must be exactly what was done.
func (s suite) concurrentUse(t *testing.T) {
	ctx := context.Background()
	idx := s.open(t)
	const workers, perWorker = 4, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range perWorker {
				key := uint64(w*1000 + i)
				if err := idx.Upsert(ctx, "c", []index.Item{{Key: key, Vector: s.unit(r)}}); err != nil {
					t.Error(err)
					return
				}
				got, err := idx.Search(ctx, "c", s.unit(r), 5)
				if err != nil {
					t.Error(err)
					return
				}
				for j := 1; j < len(got); j++ {
					if got[j].Distance < got[j-1].Distance || got[j].Key == got[j-1].Key {
						t.Errorf("results out of order or repeated: %v", got)
						return
					}
				}
				if i%3 == 0 {
					if err := idx.Delete(ctx, "c", []uint64{key}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	var want []uint64
	for w := range workers {
		for i := range perWorker {
			if i%3 != 0 {
				want = append(want, uint64(w*1000+i))
			}
		}
	}
	if got := keys(t, idx, "c"); !slices.Equal(got, want) {
		t.Errorf("Keys: %d keys, want %d", len(got), len(want))
	}
	if n := length(t, idx, "c"); n != len(want) {
		t.Errorf("Len = %d, want %d", n, len(want))
	}
}
