package index_test

import (
	"testing"

	"github.com/visage/visage/index"
	"github.com/visage/visage/index/indextest"
)

const dim = 128

func TestFlatConformance(t *testing.T) {
	indextest.Run(t, dim, func(t *testing.T) index.Index { return index.NewFlat(dim) })
}

func TestHNSWConformance(t *testing.T) {
	indextest.Run(t, dim, func(t *testing.T) index.Index {
		// An ef above the suite's space sizes makes the search exhaustive,
		// so exact.
		h, err := index.NewHNSW(dim, index.HNSWParams{M: 16, EfConstruction: 100, EfSearch: 2000})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	})
}
