package index

import (
	"cmp"
	"context"
	"errors"
	"slices"
)

// Item is one vector to index under its key.
type Item struct {
	// Key identifies the vector within its space; the gallery uses the
	// face's numeric id, so the metadata store can say what belongs.
	Key    uint64
	Vector []float32
}

// Match is a search result.
type Match struct {
	Key      uint64
	Distance float32 // Euclidean, not squared (dlib's thresholds are plain distances)
}

// ErrDimension means a vector's length differs from the index's.
var ErrDimension = errors.New("vector has the wrong dimension")

// Index is what the gallery needs from a vector index. A space is an
// independent set of vectors (the gallery keeps one per collection); it
// comes into being with its first Upsert. Every method is safe for
// concurrent use.
type Index interface {
	// Upsert adds items to space, replacing the vectors of keys already
	// there. It is not atomic: after an error some items may be indexed.
	Upsert(ctx context.Context, space string, items []Item) error
	// Delete removes keys from space; unknown keys are ignored, so a
	// retried deletion succeeds.
	Delete(ctx context.Context, space string, keys []uint64) error
	// Drop removes a whole space; an unknown space is not an error.
	Drop(ctx context.Context, space string) error
	// Search returns the k nearest vectors of space to q, nearest first
	// (equal distances by ascending key); an unknown or empty space gives
	// no matches and no error.
	Search(ctx context.Context, space string, q []float32, k int) ([]Match, error)
	// Keys returns every key in space in ascending order, for
	// reconciliation with the metadata store.
	Keys(ctx context.Context, space string) ([]uint64, error)
	// Spaces lists the spaces that hold vectors, in ascending order; a
	// space emptied by Delete may be listed or not, a dropped one is not.
	Spaces(ctx context.Context) ([]string, error)
	// Len is the number of vectors in space.
	Len(ctx context.Context, space string) (int, error)
}

var (
	_ Index = (*Flat)(nil)
	_ Index = (*HNSW)(nil)
	_ Index = (*Qdrant)(nil)
)

// sortMatches orders matches by distance, then key, so that results do
// not depend on an index's internal order.
func sortMatches(m []Match) {
	slices.SortFunc(m, func(a, b Match) int {
		if c := cmp.Compare(a.Distance, b.Distance); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
}
