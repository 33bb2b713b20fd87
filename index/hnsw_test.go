package index

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// testParams keep the tests quick; the recall thresholds below are
// measured with them.
func testParams() HNSWParams { return HNSWParams{M: 16, EfConstruction: 100, EfSearch: 64} }

func newTestHNSW(t *testing.T, p HNSWParams) *HNSW {
	t.Helper()
	h, err := NewHNSW(dim, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func openTestHNSW(t *testing.T, dir string) *HNSW {
	t.Helper()
	h, err := OpenHNSW(dir, dim, testParams())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// clustered draws unit vectors around a few centres, as descriptors of a
// few people, each photographed many times.
func clustered(r *rand.Rand, centres [][]float32, spread float64) []float32 {
	c := centres[r.IntN(len(centres))]
	v := make([]float32, dim)
	var n float64
	for i := range v {
		x := float64(c[i]) + spread*r.NormFloat64()
		v[i] = float32(x)
		n += x * x
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / math.Sqrt(n))
	}
	return v
}

func upsertAll(t *testing.T, idx Index, space string, items []Item) {
	t.Helper()
	if err := idx.Upsert(context.Background(), space, items); err != nil {
		t.Fatal(err)
	}
}

func lenOf(t *testing.T, idx Index, space string) int {
	t.Helper()
	n, err := idx.Len(context.Background(), space)
	if err != nil {
		t.Fatalf("Len(%q): %v", space, err)
	}
	return n
}

func spacesOf(t *testing.T, idx Index) []string {
	t.Helper()
	s, err := idx.Spaces(context.Background())
	if err != nil {
		t.Fatalf("Spaces: %v", err)
	}
	return s
}

// recallAt10 is the share of exact top-10 neighbours that h finds.
func recallAt10(t *testing.T, h *HNSW, exact *Flat, space string, queries [][]float32) float64 {
	t.Helper()
	ctx := context.Background()
	hit := 0
	for _, q := range queries {
		want, err := exact.Search(ctx, space, q, 10)
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.Search(ctx, space, q, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d matches, want %d", len(got), len(want))
		}
		for _, m := range got {
			if slices.ContainsFunc(want, func(w Match) bool { return w.Key == m.Key }) {
				hit++
			}
		}
	}
	return float64(hit) / float64(10*len(queries))
}

func TestHNSWRecall(t *testing.T) {
	centres := func(r *rand.Rand, n int) [][]float32 {
		out := make([][]float32, n)
		for i := range out {
			out[i] = randomUnit(r)
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		ef        int
		gen       func(r *rand.Rand, cs [][]float32) []float32
		minRecall float64 // least recall@10 accepted
	}{
		{"random", 64, func(r *rand.Rand, _ [][]float32) []float32 { return randomUnit(r) }, 0.50},
		{"random, high ef", 400, func(r *rand.Rand, _ [][]float32) []float32 { return randomUnit(r) }, 0.95},
		{"clustered", 64, func(r *rand.Rand, cs [][]float32) []float32 { return clustered(r, cs, 0.05) }, 0.95},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, 12))
			cs := centres(r, 50)
			p := testParams()
			p.EfSearch = tc.ef
			h := newTestHNSW(t, p)
			exact := NewFlat(dim)
			items := make([]Item, 10_000)
			for i := range items {
				items[i] = Item{Key: uint64(i) * 3, Vector: tc.gen(r, cs)}
			}
			upsertAll(t, h, "s", items)
			upsertAll(t, exact, "s", items)
			queries := make([][]float32, 200)
			for i := range queries {
				queries[i] = tc.gen(r, cs)
			}
			rec := recallAt10(t, h, exact, "s", queries)
			t.Logf("recall@10 = %.3f", rec)
			if rec < tc.minRecall {
				t.Errorf("recall@10 = %.3f, want >= %.2f", rec, tc.minRecall)
			}
		})
	}
}

func TestHNSWUpsertReplaces(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	h := newTestHNSW(t, testParams())
	items := make([]Item, 2000)
	for i := range items {
		items[i] = Item{Key: uint64(i), Vector: randomUnit(r)}
	}
	upsertAll(t, h, "s", items)
	for _, key := range []uint64{0, 999, 1999} {
		old, fresh := items[key].Vector, randomUnit(r)
		upsertAll(t, h, "s", []Item{{Key: key, Vector: fresh}})
		got, err := h.Search(ctx, "s", fresh, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != (Match{Key: key, Distance: 0}) {
			t.Errorf("search for key %d's new vector: %v", key, got)
		}
		got, err = h.Search(ctx, "s", old, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0].Key == key && got[0].Distance == 0 {
			t.Errorf("key %d still found at its old vector", key)
		}
	}
	if n := lenOf(t, h, "s"); n != len(items) {
		t.Errorf("Len = %d after replacements, want %d", n, len(items))
	}
}

func TestHNSWDeletedNeverReturned(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		keepOf int // one key in keepOf stays
	}{
		{"half deleted", 2},
		{"95% deleted", 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, 6))
			h := newTestHNSW(t, testParams())
			const n = 4000
			items := make([]Item, n)
			var doomed []uint64
			for i := range items {
				items[i] = Item{Key: uint64(i), Vector: randomUnit(r)}
				if i%tc.keepOf != 0 {
					doomed = append(doomed, uint64(i))
				}
			}
			upsertAll(t, h, "s", items)
			if err := h.Delete(ctx, "s", doomed); err != nil {
				t.Fatal(err)
			}
			live := n - len(doomed)
			if got := lenOf(t, h, "s"); got != live {
				t.Fatalf("Len = %d, want %d", got, live)
			}
			for _, k := range []int{10, 100} {
				for range 50 {
					// Queries at deleted vectors: their own key would rank first.
					q := items[doomed[r.IntN(len(doomed))]].Vector
					got, err := h.Search(ctx, "s", q, k)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != k {
						t.Fatalf("k=%d: %d matches with %d live vectors", k, len(got), live)
					}
					for _, m := range got {
						if m.Key%uint64(tc.keepOf) != 0 {
							t.Fatalf("deleted key %d returned", m.Key)
						}
					}
				}
			}
		})
	}
}

func TestHNSWSaveLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(9, 10))
	h := openTestHNSW(t, dir)
	spaces := []string{"faces/a", "faces/b/../x", "", "faces/é"}
	for i, space := range spaces {
		items := make([]Item, 1500+i*100)
		for j := range items {
			items[j] = Item{Key: uint64(j*7 + i), Vector: randomUnit(r)}
		}
		upsertAll(t, h, space, items)
	}
	if err := h.Delete(ctx, "faces/a", []uint64{0, 7, 14}); err != nil {
		t.Fatal(err)
	}
	if err := h.Save(ctx); err != nil {
		t.Fatal(err)
	}
	queries := make([][]float32, 50)
	for i := range queries {
		queries[i] = randomUnit(r)
	}

	loaded := openTestHNSW(t, dir)
	if got, want := spacesOf(t, loaded), spacesOf(t, h); !slices.Equal(got, want) {
		t.Fatalf("Spaces after load = %q, want %q", got, want)
	}
	for _, space := range spaces {
		want, err := h.Keys(ctx, space)
		if err != nil {
			t.Fatal(err)
		}
		got, err := loaded.Keys(ctx, space)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) || lenOf(t, loaded, space) != lenOf(t, h, space) {
			t.Fatalf("%q: %d keys after load, want %d", space, len(got), len(want))
		}
		for _, q := range queries {
			a, err := h.Search(ctx, space, q, 10)
			if err != nil {
				t.Fatal(err)
			}
			b, err := loaded.Search(ctx, space, q, 10)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a, b) {
				t.Fatalf("%q: results differ after load:\n%v\n%v", space, a, b)
			}
		}
	}
	// A loaded space keeps working: deletions were loaded, and it grows.
	more := make([]Item, 3000)
	for j := range more {
		more[j] = Item{Key: uint64(1e6 + j), Vector: randomUnit(r)}
	}
	upsertAll(t, loaded, "faces/a", more)
	if got, want := lenOf(t, loaded, "faces/a"), lenOf(t, h, "faces/a")+len(more); got != want {
		t.Errorf("Len after growing a loaded space = %d, want %d", got, want)
	}
}

func TestHNSWSaveWritesOnlyChangedSpaces(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 1))
	h := openTestHNSW(t, dir)
	upsertAll(t, h, "a", []Item{{Key: 1, Vector: randomUnit(r)}})
	upsertAll(t, h, "b", []Item{{Key: 1, Vector: randomUnit(r)}})
	if err := h.Save(ctx); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, fileOf("a")), filepath.Join(dir, fileOf("b"))
	for _, p := range []string{a, b} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Delete(ctx, "b", []uint64{1}); err != nil {
		t.Fatal(err)
	}
	if err := h.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unchanged space a was saved again (%v)", err)
	}
	if _, err := os.Stat(b); err != nil {
		t.Errorf("changed space b was not saved: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want b's snapshot only", len(entries))
	}
}

func TestHNSWDrop(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(2, 2))
	h := openTestHNSW(t, dir)
	upsertAll(t, h, "a", []Item{{Key: 1, Vector: randomUnit(r)}})
	upsertAll(t, h, "b", []Item{{Key: 1, Vector: randomUnit(r)}})
	if err := h.Save(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := h.Drop(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	if got := spacesOf(t, h); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Spaces after Drop = %q", got)
	}
	if got, err := h.Search(ctx, "a", randomUnit(r), 5); err != nil || len(got) != 0 || lenOf(t, h, "a") != 0 {
		t.Errorf("dropped space: Search = %v, %v; Len = %d", got, err, lenOf(t, h, "a"))
	}
	if _, err := os.Stat(filepath.Join(dir, fileOf("a"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dropped space's snapshot remains (%v)", err)
	}
	if got := spacesOf(t, openTestHNSW(t, dir)); !slices.Equal(got, []string{"b"}) {
		t.Errorf("Spaces after reopening = %q", got)
	}
	v := randomUnit(r)
	upsertAll(t, h, "a", []Item{{Key: 2, Vector: v}})
	if got, err := h.Search(ctx, "a", v, 5); err != nil || !slices.Equal(got, []Match{{Key: 2}}) {
		t.Errorf("re-created space: Search = %v, %v", got, err)
	}
}

func TestOpenHNSWSetsAsideBadSnapshots(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(4, 4))
	other := t.TempDir()
	h, err := OpenHNSW(other, 64, testParams())
	if err != nil {
		t.Fatal(err)
	}
	small := make([]float32, 64)
	small[0] = 1
	upsertAll(t, h, "wrong-dim", []Item{{Key: 1, Vector: small}})
	if err := h.Save(ctx); err != nil {
		t.Fatal(err)
	}
	h.Close()

	dir := t.TempDir()
	good := openTestHNSW(t, dir)
	upsertAll(t, good, "good", []Item{{Key: 1, Vector: randomUnit(r)}})
	if err := good.Save(ctx); err != nil {
		t.Fatal(err)
	}
	wrongDim, err := os.ReadFile(filepath.Join(other, fileOf("wrong-dim")))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		fileOf("wrong-dim"):           wrongDim,
		fileOf("garbage"):             []byte("not a graph"),
		fileOf("stale") + tmpExt:      []byte("half written"),
		"space-zz" + snapshotExt:      []byte("not a space name"),
		fileOf("truncated"):           nil,
		fileOf("good") + ".unrelated": []byte("left alone"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	loaded := openTestHNSW(t, dir)
	if got := spacesOf(t, loaded); !slices.Equal(got, []string{"good"}) {
		t.Errorf("Spaces = %q, want only the good one", got)
	}
	for _, name := range []string{fileOf("wrong-dim"), fileOf("garbage"), fileOf("truncated")} {
		if _, err := os.Stat(filepath.Join(dir, name+".bad")); err != nil {
			t.Errorf("%s was not set aside: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, fileOf("stale")+tmpExt)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unfinished save not removed (%v)", err)
	}
}

func TestHNSWClosed(t *testing.T) {
	ctx := context.Background()
	h := newTestHNSW(t, testParams())
	upsertAll(t, h, "a", []Item{{Key: 1, Vector: make([]float32, dim)}})
	h.Close()
	if err := h.Upsert(ctx, "a", []Item{{Key: 2, Vector: make([]float32, dim)}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Upsert after Close: %v", err)
	}
	if _, err := h.Search(ctx, "a", make([]float32, dim), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Search after Close: %v", err)
	}
	if n, err := h.Len(ctx, "a"); !errors.Is(err, ErrClosed) || n != 0 {
		t.Errorf("Len after Close = %d, %v", n, err)
	}
	if s, err := h.Spaces(ctx); !errors.Is(err, ErrClosed) || len(s) != 0 {
		t.Errorf("Spaces after Close = %q, %v", s, err)
	}
}

// TestHNSWConcurrentUse runs upserts (growing the graph well past its
// first room), replacements, deletions, searches and saves at once; run
// it with -race. The end state must be exactly what was done.
func TestHNSWConcurrentUse(t *testing.T) {
	ctx := context.Background()
	h := openTestHNSW(t, t.TempDir())
	const writers, perWriter = 4, 1500
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < perWriter; i += 50 {
				batch := make([]Item, 50)
				for j := range batch {
					batch[j] = Item{Key: uint64(w*perWriter + i + j), Vector: randomUnit(r)}
				}
				if err := h.Upsert(ctx, "s", batch); err != nil {
					t.Error(err)
					return
				}
				// Replace one, delete every third of the batch.
				if err := h.Upsert(ctx, "s", []Item{{Key: batch[1].Key, Vector: randomUnit(r)}}); err != nil {
					t.Error(err)
					return
				}
				var doomed []uint64
				for j := 0; j < len(batch); j += 3 {
					doomed = append(doomed, batch[j].Key)
				}
				if err := h.Delete(ctx, "s", doomed); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for s := range 2 {
		readers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(s), 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := h.Search(ctx, "s", randomUnit(r), 10)
				if err != nil {
					t.Error(err)
					return
				}
				// Deleted keys may show while their batch is in flight;
				// the end state is checked below.
				for i := 1; i < len(got); i++ {
					if got[i].Distance < got[i-1].Distance || got[i].Key == got[i-1].Key {
						t.Errorf("results out of order or repeated: %v", got)
						return
					}
				}
				if n, err := h.Len(ctx, "s"); err != nil || n > writers*perWriter {
					t.Errorf("Len = %d, %v: more than was ever added, or an error", n, err)
					return
				}
			}
		})
	}
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := h.Save(ctx); err != nil {
				t.Error(err)
				return
			}
			if _, err := h.Keys(ctx, "s"); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()

	var want []uint64
	for k := range uint64(writers * perWriter) {
		if k%perWriter%50%3 != 0 {
			want = append(want, k)
		}
	}
	keys, err := h.Keys(ctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, want) {
		t.Fatalf("Keys: %d keys, want %d", len(keys), len(want))
	}
	r := rand.New(rand.NewPCG(9, 9))
	for range 100 {
		got, err := h.Search(ctx, "s", randomUnit(r), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 10 {
			t.Fatalf("%d matches, want 10", len(got))
		}
		for _, m := range got {
			if m.Key%perWriter%50%3 == 0 {
				t.Fatalf("deleted key %d returned", m.Key)
			}
		}
	}
}
