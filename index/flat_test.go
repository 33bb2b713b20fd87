package index

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// The contract's tests (exactness, ties, deletions, spaces, dimensions,
// concurrency) are the conformance suite's, run in conformance_test.go.

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
