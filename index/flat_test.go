package index

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

const dim = 128

func randomUnit(r *rand.Rand) []float32 {
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

// bruteForce is the obviously correct answer: every vector of the space
// ranked by its float64 distance, ties by key.
func bruteForce(space map[uint64][]float32, q []float32, k int) []Match {
	all := make([]Match, 0, len(space))
	for key, v := range space {
		var s float64
		for i := range q {
			d := float64(q[i]) - float64(v[i])
			s += d * d
		}
		all = append(all, Match{Key: key, Distance: float32(math.Sqrt(s))})
	}
	sortMatches(all)
	return all[:min(k, len(all))]
}

// sameMatches compares a search for q with the brute-force one: the same
// distances rank by rank (within float32 rounding), every key real, not
// repeated, at the distance reported, and the order by distance, then key.
func sameMatches(t *testing.T, space map[uint64][]float32, q []float32, got, want []Match) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d matches, want %d", len(got), len(want))
	}
	seen := map[uint64]bool{}
	for i, m := range got {
		if math.Abs(float64(m.Distance-want[i].Distance)) > 1e-5 {
			t.Fatalf("match %d at distance %v, want %v", i, m.Distance, want[i].Distance)
		}
		v, ok := space[m.Key]
		if !ok || seen[m.Key] {
			t.Fatalf("match %d = %+v: unknown or repeated key", i, m)
		}
		if d := bruteForce(map[uint64][]float32{m.Key: v}, q, 1)[0].Distance; math.Abs(float64(m.Distance-d)) > 1e-5 {
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

// model mirrors what an index should hold, space by space.
type model map[string]map[uint64][]float32

func (m model) upsert(space string, items []Item) {
	if m[space] == nil {
		m[space] = map[uint64][]float32{}
	}
	for _, it := range items {
		m[space][it.Key] = it.Vector
	}
}

// checkAgainst compares every observable of idx with the model: spaces,
// lengths, keys and exact searches for several k.
func checkAgainst(t *testing.T, idx Index, m model, r *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	var names []string
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	if got := idx.Spaces(); !slices.Equal(got, names) {
		t.Fatalf("Spaces = %q, want %q", got, names)
	}
	for _, name := range append(names, "no-such-space") {
		space := m[name]
		if n := idx.Len(name); n != len(space) {
			t.Errorf("Len(%q) = %d, want %d", name, n, len(space))
		}
		keys, err := idx.Keys(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var want []uint64
		for k := range space {
			want = append(want, k)
		}
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Fatalf("Keys(%q): %d keys, want %d (or different ones)", name, len(keys), len(want))
		}
		for _, k := range []int{1, 10, len(space) + 5} {
			q := randomUnit(r)
			got, err := idx.Search(ctx, name, q, k)
			if err != nil {
				t.Fatal(err)
			}
			sameMatches(t, space, q, got, bruteForce(space, q, k))
		}
	}
}

func TestFlatMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	idx := NewFlat(dim)
	m := model{}
	for i := range 3000 {
		space := []string{"faces/a", "faces/b"}[i%2]
		it := Item{Key: uint64(i), Vector: randomUnit(r)}
		m.upsert(space, []Item{it})
		if err := idx.Upsert(ctx, space, []Item{it}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("after inserts", func(t *testing.T) { checkAgainst(t, idx, m, r) })

	// The same key in two spaces is two vectors; a batch repeating a key
	// keeps the last.
	batch := []Item{{Key: 0, Vector: randomUnit(r)}, {Key: 7, Vector: randomUnit(r)}, {Key: 7, Vector: randomUnit(r)}}
	m.upsert("faces/b", batch)
	if err := idx.Upsert(ctx, "faces/b", batch); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i += 29 {
		space := []string{"faces/a", "faces/b"}[i%2]
		it := Item{Key: uint64(i), Vector: randomUnit(r)}
		m.upsert(space, []Item{it})
		if err := idx.Upsert(ctx, space, []Item{it}); err != nil {
			t.Fatal(err)
		}
	}
	var doomed []uint64
	for i := 1; i < 3000; i += 11 {
		doomed = append(doomed, uint64(i))
		delete(m["faces/a"], uint64(i))
	}
	if err := idx.Delete(ctx, "faces/a", append(doomed, 1<<60)); err != nil {
		t.Fatal(err)
	}
	if err := idx.Delete(ctx, "no-such-space", doomed); err != nil {
		t.Fatal(err)
	}
	t.Run("after replacements and deletions", func(t *testing.T) { checkAgainst(t, idx, m, r) })

	if err := idx.Drop(ctx, "faces/b"); err != nil {
		t.Fatal(err)
	}
	if err := idx.Drop(ctx, "faces/b"); err != nil {
		t.Fatalf("second Drop: %v", err)
	}
	delete(m, "faces/b")
	t.Run("after dropping a space", func(t *testing.T) { checkAgainst(t, idx, m, r) })
}

func TestFlatTiesByKey(t *testing.T) {
	ctx := context.Background()
	idx := NewFlat(dim)
	v := randomUnit(rand.New(rand.NewPCG(5, 6)))
	for _, k := range []uint64{9, 3, 7, 1} {
		if err := idx.Upsert(ctx, "s", []Item{{Key: k, Vector: v}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := idx.Search(ctx, "s", v, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Match{{1, 0}, {3, 0}, {7, 0}}; !slices.Equal(got, want) {
		t.Errorf("Search = %v, want %v", got, want)
	}
}

func TestFlatRejectsWrongDimension(t *testing.T) {
	idx := NewFlat(dim)
	ctx := context.Background()
	ok := Item{Key: 1, Vector: make([]float32, dim)}
	if err := idx.Upsert(ctx, "a", []Item{ok, {Key: 2, Vector: make([]float32, 3)}}); !errors.Is(err, ErrDimension) {
		t.Errorf("Upsert: %v, want ErrDimension", err)
	}
	if _, err := idx.Search(ctx, "a", make([]float32, 5), 3); !errors.Is(err, ErrDimension) {
		t.Errorf("Search: %v, want ErrDimension", err)
	}
	if idx.Len("a") != 0 || len(idx.Spaces()) != 0 {
		t.Error("a rejected batch was stored in part")
	}
}

func TestFlatConcurrentUse(t *testing.T) {
	idx := NewFlat(dim)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range 200 {
				key := uint64(w*1000 + i)
				if err := idx.Upsert(ctx, "c", []Item{{Key: key, Vector: randomUnit(r)}}); err != nil {
					t.Error(err)
					return
				}
				if _, err := idx.Search(ctx, "c", randomUnit(r), 5); err != nil {
					t.Error(err)
					return
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
	if got, want := idx.Len("c"), 8*(200-67); got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
}

// BenchmarkFlatSearch is exact top-10 search on random unit vectors, one
// core: the baseline approximate indexes are compared with.
func BenchmarkFlatSearch(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, 4))
			idx := NewFlat(dim)
			items := make([]Item, n)
			for i := range items {
				items[i] = Item{Key: uint64(i), Vector: randomUnit(r)}
			}
			if err := idx.Upsert(context.Background(), "c", items); err != nil {
				b.Fatal(err)
			}
			q := randomUnit(r)
			for b.Loop() {
				if _, err := idx.Search(context.Background(), "c", q, 10); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
