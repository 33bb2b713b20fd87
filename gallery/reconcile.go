package gallery

import (
	"context"
	"fmt"
	"slices"

	"github.com/visage/visage/index"
)

// ReconcileReport counts what Reconcile repaired.
type ReconcileReport struct {
	CollectionsDeleted int `json:"collections_deleted"`
	FacesDeleted       int `json:"faces_deleted"`
	FacesIndexed       int `json:"faces_indexed"`
	VectorsRemoved     int `json:"vectors_removed"`
	VectorsAdded       int `json:"vectors_added"`
}

// Reconcile makes the vector index agree with the store, the source of
// truth: it finishes deletions and enrollments a crash interrupted, then
// compares every collection's keys with the index and removes or adds the
// difference (an index snapshot older than the store, or a lost index).
func (s *Service) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	names, err := s.store.DeletingCollections(ctx)
	if err != nil {
		return rep, fmt.Errorf("reconcile: %w", err)
	}
	for _, n := range names {
		if err := s.finishCollectionDelete(ctx, n); err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		rep.CollectionsDeleted++
	}
	const batch = 1000
	for {
		faces, err := s.store.DeletingFaces(ctx, batch)
		if err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		if len(faces) == 0 {
			break
		}
		keys := make([]uint64, len(faces))
		for i, f := range faces {
			if err := s.index.Delete(ctx, space(f.Collection), []uint64{f.Key}); err != nil {
				return rep, fmt.Errorf("reconcile: delete vector: %w", err)
			}
			keys[i] = f.Key
		}
		if err := s.store.DeleteFaces(ctx, keys); err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		rep.FacesDeleted += len(keys)
	}
	for {
		faces, err := s.store.PendingFaces(ctx, batch)
		if err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		if len(faces) == 0 {
			break
		}
		keys := make([]uint64, len(faces))
		for i, f := range faces {
			if err := s.index.Upsert(ctx, space(f.Collection), []index.Item{{Key: f.Key, Vector: f.Descriptor}}); err != nil {
				return rep, fmt.Errorf("reconcile: index face: %w", err)
			}
			keys[i] = f.Key
		}
		if err := s.store.MarkFacesIndexed(ctx, keys); err != nil {
			return rep, fmt.Errorf("reconcile: %w", err)
		}
		rep.FacesIndexed += len(keys)
	}
	colls, err := s.store.ListCollections(ctx)
	if err != nil {
		return rep, fmt.Errorf("reconcile: %w", err)
	}
	for _, c := range colls {
		removed, added, err := s.syncCollection(ctx, c.Name)
		if err != nil {
			return rep, err
		}
		rep.VectorsRemoved += removed
		rep.VectorsAdded += added
	}
	return rep, nil
}

// syncCollection makes one collection's index keys equal the store's.
func (s *Service) syncCollection(ctx context.Context, collection string) (removed, added int, err error) {
	want, err := s.store.IndexedKeys(ctx, collection)
	if err != nil {
		return 0, 0, fmt.Errorf("reconcile %s: %w", collection, err)
	}
	have, err := s.index.Keys(ctx, space(collection))
	if err != nil {
		return 0, 0, fmt.Errorf("reconcile %s: %w", collection, err)
	}
	slices.Sort(want)
	slices.Sort(have)
	var extra, missing []uint64
	i, j := 0, 0
	for i < len(want) || j < len(have) {
		switch {
		case j == len(have) || (i < len(want) && want[i] < have[j]):
			missing = append(missing, want[i])
			i++
		case i == len(want) || have[j] < want[i]:
			extra = append(extra, have[j])
			j++
		default:
			i++
			j++
		}
	}
	if len(extra) > 0 {
		if err := s.index.Delete(ctx, space(collection), extra); err != nil {
			return 0, 0, fmt.Errorf("reconcile %s: remove vectors: %w", collection, err)
		}
	}
	const batch = 10000
	for start := 0; start < len(missing); start += batch {
		keys := missing[start:min(start+batch, len(missing))]
		vecs, err := s.store.Vectors(ctx, collection, keys)
		if err != nil {
			return 0, 0, fmt.Errorf("reconcile %s: %w", collection, err)
		}
		items := make([]index.Item, len(vecs))
		for k, v := range vecs {
			items[k] = index.Item{Key: v.Key, Vector: v.Descriptor}
		}
		if err := s.index.Upsert(ctx, space(collection), items); err != nil {
			return 0, 0, fmt.Errorf("reconcile %s: add vectors: %w", collection, err)
		}
	}
	return len(extra), len(missing), nil
}
