package index

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
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

// bruteForce is the obviously correct answer Flat must reproduce.
func bruteForce(items map[string]Item, q []float32, k int, f Filter) []Match {
	var all []Match
	for _, it := range items {
		if it.Collection != f.Collection || (f.Subject != "" && it.Subject != f.Subject) {
			continue
		}
		var s float64
		for i := range q {
			d := float64(q[i] - it.Vector[i])
			s += d * d
		}
		all = append(all, Match{ID: it.ID, Subject: it.Subject, Distance: float32(math.Sqrt(s))})
	}
	sort.Slice(all, func(a, b int) bool { return all[a].Distance < all[b].Distance })
	if len(all) > k {
		all = all[:k]
	}
	return all
}

// sameMatches compares a search result with the brute-force one: the
// same distances rank by rank, and every returned face real, of the right
// subject and at the distance reported (ties may come in any order).
func sameMatches(t *testing.T, items map[string]Item, f Filter, got, want []Match) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d matches, want %d", len(got), len(want))
	}
	seen := map[string]bool{}
	for i := range got {
		if math.Abs(float64(got[i].Distance-want[i].Distance)) > 1e-5 {
			t.Fatalf("match %d at distance %v, want %v", i, got[i].Distance, want[i].Distance)
		}
		it, ok := items[got[i].ID]
		if !ok || seen[got[i].ID] || it.Subject != got[i].Subject || it.Collection != f.Collection ||
			(f.Subject != "" && it.Subject != f.Subject) {
			t.Fatalf("match %d = %+v: unknown, repeated, or outside the filter", i, got[i])
		}
		seen[got[i].ID] = true
	}
}

func TestFlatMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	idx := NewFlat(dim)
	items := map[string]Item{}
	for i := 0; i < 3000; i++ {
		it := Item{ID: fmt.Sprintf("face-%d", i), Subject: fmt.Sprintf("subj-%d", i%300), Collection: []string{"a", "b"}[i%2], Vector: randomUnit(r)}
		items[it.ID] = it
		if err := idx.Upsert(ctx, []Item{it}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name string) {
		t.Run(name, func(t *testing.T) {
			for _, f := range []Filter{{Collection: "a"}, {Collection: "b"}, {Collection: "a", Subject: "subj-10"}, {Collection: "none"}} {
				for _, k := range []int{1, 10, 5000} {
					q := randomUnit(r)
					got, err := idx.Search(ctx, q, k, f)
					if err != nil {
						t.Fatal(err)
					}
					sameMatches(t, items, f, got, bruteForce(items, q, k, f))
				}
			}
			if n := idx.Len(""); n != len(items) {
				t.Errorf("Len = %d, want %d", n, len(items))
			}
		})
	}
	check("after inserts")

	// Replace some vectors, move one face to the other collection, delete.
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("face-%d", i*7)
		it := items[id]
		it.Vector = randomUnit(r)
		if i == 0 {
			it.Collection = "b"
		}
		items[id] = it
		if err := idx.Upsert(ctx, []Item{it}); err != nil {
			t.Fatal(err)
		}
	}
	var doomed []string
	for i := 1; i < 3000; i += 11 {
		doomed = append(doomed, fmt.Sprintf("face-%d", i))
		delete(items, fmt.Sprintf("face-%d", i))
	}
	if err := idx.Delete(ctx, append(doomed, "no-such-face")); err != nil {
		t.Fatal(err)
	}
	check("after replacements and deletions")

	n, err := idx.DeleteWhere(ctx, Filter{Collection: "a", Subject: "subj-20"})
	if err != nil || n == 0 {
		t.Fatalf("DeleteWhere subject: %d, %v", n, err)
	}
	for id, it := range items {
		if it.Collection == "a" && it.Subject == "subj-20" {
			delete(items, id)
		}
	}
	check("after deleting a subject")

	n, err = idx.DeleteWhere(ctx, Filter{Collection: "b"})
	if err != nil || n != idx.Len("")-idx.Len("a")+n || idx.Len("b") != 0 {
		t.Fatalf("DeleteWhere collection: %d, %v; b still has %d", n, err, idx.Len("b"))
	}
	for id, it := range items {
		if it.Collection == "b" {
			delete(items, id)
		}
	}
	check("after deleting a collection")
}

func TestFlatRejectsWrongDimension(t *testing.T) {
	idx := NewFlat(dim)
	ctx := context.Background()
	if err := idx.Upsert(ctx, []Item{{ID: "x", Collection: "a", Vector: make([]float32, 3)}}); !errors.Is(err, ErrDimension) {
		t.Errorf("Upsert: %v, want ErrDimension", err)
	}
	if _, err := idx.Search(ctx, make([]float32, 5), 3, Filter{Collection: "a"}); !errors.Is(err, ErrDimension) {
		t.Errorf("Search: %v, want ErrDimension", err)
	}
	if idx.Len("") != 0 {
		t.Error("a rejected item was stored")
	}
}

func TestFlatConcurrentUse(t *testing.T) {
	idx := NewFlat(dim)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; i < 200; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := idx.Upsert(ctx, []Item{{ID: id, Subject: "s", Collection: "c", Vector: randomUnit(r)}}); err != nil {
					t.Error(err)
					return
				}
				if _, err := idx.Search(ctx, randomUnit(r), 5, Filter{Collection: "c"}); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					idx.Delete(ctx, []string{id})
				}
			}
		}(w)
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
				items[i] = Item{ID: fmt.Sprint(i), Subject: "s", Collection: "c", Vector: randomUnit(r)}
			}
			if err := idx.Upsert(context.Background(), items); err != nil {
				b.Fatal(err)
			}
			q := randomUnit(r)
			for b.Loop() {
				if _, err := idx.Search(context.Background(), q, 10, Filter{Collection: "c"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
