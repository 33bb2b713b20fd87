package gallery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/index"
	"github.com/visage/visage/store"
)

// Reconciler keeps the vector index in agreement with the store, the
// source of truth. Every write touches the store first and the index
// second (DESIGN.md, consistency), so a crash or an unreachable index
// leaves states that say what is unfinished:
//
//   - a pending face: stored, maybe not indexed (enrollment interrupted);
//   - a deleting face or collection: hidden from every read, its vectors
//     maybe still indexed (deletion interrupted or deferred).
//
// Reconcile finishes that work and repairs what no state records (an
// index snapshot older than the store, a lost or new index). Check
// reports the same drift without changing anything, and Reindex rebuilds
// the index from the store. All three are safe while the service serves
// requests, from any number of replicas: every write they make is
// idempotent, and a key the store and the index disagree about is looked
// up again before it counts as drift (see diffCollection).
type Reconciler struct {
	store Store
	index Index
	model string
	log   *slog.Logger
	// unfinished is set when a failure left work for the reconciler
	// (deferred deletions, pending faces), so that it runs again soon.
	unfinished atomic.Bool
}

// NewReconciler returns a reconciler of st and idx; model is the
// descriptor space the index holds (embed.Model.Space): stored faces of
// another space cannot be indexed with them.
func NewReconciler(st Store, idx Index, model string, log *slog.Logger) *Reconciler {
	return &Reconciler{store: st, index: idx, model: model, log: log}
}

// ReconcileReport counts what Reconcile repaired.
type ReconcileReport struct {
	CollectionsDeleted int `json:"collections_deleted"`
	FacesDeleted       int `json:"faces_deleted"`
	FacesIndexed       int `json:"faces_indexed"`
	VectorsRemoved     int `json:"vectors_removed"`
	VectorsAdded       int `json:"vectors_added"`
	SpacesDropped      int `json:"spaces_dropped"`
}

// Unfinished reports whether a failure left work that only a
// reconciliation finishes: an index write that failed, or a store write
// that failed after the index write or whose outcome the database's
// outage left unknown.
func (r *Reconciler) Unfinished() bool { return r.unfinished.Load() }

// deferWork records that a failed write left work behind.
func (r *Reconciler) deferWork() { r.unfinished.Store(true) }

// Reconcile finishes deletions and enrollments a crash interrupted or an
// unreachable index deferred, then makes every collection's vectors those
// of its faces and drops the vectors of collections that no longer exist.
func (r *Reconciler) Reconcile(ctx context.Context) (ReconcileReport, error) {
	rep, err := r.reconcile(ctx)
	if err != nil {
		r.deferWork()
		return rep, fmt.Errorf("reconcile: %w", err)
	}
	r.unfinished.Store(false)
	return rep, nil
}

func (r *Reconciler) reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	// Spaces are listed before collections: a space of a collection
	// created meanwhile got its first vector after this listing, so it
	// cannot be mistaken for an orphan.
	spaces, err := r.index.Spaces(ctx)
	if err != nil {
		return rep, err
	}
	dropped, err := r.finishCollectionDeletes(ctx)
	if err != nil {
		return rep, err
	}
	rep.CollectionsDeleted = len(dropped)
	if rep.FacesDeleted, err = r.finishFaceDeletes(ctx); err != nil {
		return rep, err
	}
	if rep.FacesIndexed, err = r.indexPending(ctx); err != nil {
		return rep, err
	}
	colls, err := r.store.ListCollections(ctx)
	if err != nil {
		return rep, err
	}
	for _, sp := range orphanSpaces(spaces, colls) {
		if slices.Contains(dropped, sp) {
			continue
		}
		if err := r.index.Drop(ctx, sp); err != nil {
			return rep, fmt.Errorf("drop space %s: %w", sp, err)
		}
		rep.SpacesDropped++
	}
	for _, c := range colls {
		d, err := r.diffCollection(ctx, c.Name)
		if err != nil {
			return rep, err
		}
		added, removed, err := r.repair(ctx, c.Name, d)
		if err != nil {
			return rep, err
		}
		rep.VectorsAdded += added
		rep.VectorsRemoved += removed
	}
	return rep, nil
}

// finishCollectionDeletes finishes the deletions of collections and
// returns the spaces it dropped.
func (r *Reconciler) finishCollectionDeletes(ctx context.Context) ([]string, error) {
	names, err := r.store.DeletingCollections(ctx)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, n := range names {
		if err := r.finishCollectionDelete(ctx, n); err != nil {
			return nil, err
		}
		dropped = append(dropped, space(n))
	}
	return dropped, nil
}

// finishCollectionDelete drops a collection marked deleting from the index,
// then deletes its rows.
func (r *Reconciler) finishCollectionDelete(ctx context.Context, name string) error {
	if err := r.index.Drop(ctx, space(name)); err != nil {
		return fmt.Errorf("drop collection vectors: %w", err)
	}
	if err := r.store.DeleteCollection(ctx, name); err != nil {
		return fmt.Errorf("delete collection rows: %w", err)
	}
	return nil
}

// reconcileBatch is the number of queued faces handled per round.
const reconcileBatch = 1000

func (r *Reconciler) finishFaceDeletes(ctx context.Context) (int, error) {
	n := 0
	for {
		faces, err := r.store.DeletingFaces(ctx, reconcileBatch)
		if err != nil || len(faces) == 0 {
			return n, err
		}
		for coll, keys := range keysBySpace(faces) {
			if err := r.index.Delete(ctx, space(coll), keys); err != nil {
				return n, fmt.Errorf("delete vectors: %w", err)
			}
		}
		keys := faceKeys(faces)
		if err := r.store.DeleteFaces(ctx, keys); err != nil {
			return n, err
		}
		n += len(keys)
	}
}

func (r *Reconciler) indexPending(ctx context.Context) (int, error) {
	n := 0
	for {
		faces, err := r.store.PendingFaces(ctx, reconcileBatch)
		if err != nil || len(faces) == 0 {
			return n, err
		}
		byColl := map[string][]index.Item{}
		for _, f := range faces {
			byColl[f.Collection] = append(byColl[f.Collection], index.Item{Key: f.Key, Vector: f.Descriptor})
		}
		for coll, items := range byColl {
			if err := r.index.Upsert(ctx, space(coll), items); err != nil {
				return n, fmt.Errorf("index faces: %w", err)
			}
		}
		keys := faceKeys(faces)
		if err := r.store.MarkFacesIndexed(ctx, keys); err != nil {
			return n, err
		}
		for coll, keys := range keysBySpace(faces) {
			if err := r.undoIfDeleted(ctx, space(coll), keys); err != nil {
				return n, err
			}
		}
		n += len(keys)
	}
}

func keysBySpace(faces []store.Face) map[string][]uint64 {
	m := map[string][]uint64{}
	for _, f := range faces {
		m[f.Collection] = append(m[f.Collection], f.Key)
	}
	return m
}

func faceKeys(faces []store.Face) []uint64 {
	keys := make([]uint64, len(faces))
	for i, f := range faces {
		keys[i] = f.Key
	}
	return keys
}

// orphanSpaces returns the index spaces of no collection in colls.
func orphanSpaces(spaces []string, colls []store.Collection) []string {
	live := make(map[string]bool, len(colls))
	for _, c := range colls {
		live[space(c.Name)] = true
	}
	var out []string
	for _, sp := range spaces {
		if !live[sp] {
			out = append(out, sp)
		}
	}
	return out
}

// collectionDiff is where a collection's vectors and faces disagree.
type collectionDiff struct {
	// missing: faces stored as indexed whose vector the index lacks.
	missing []uint64
	// orphans: vectors of no face at all.
	orphans []uint64
	// deleting: vectors of faces being deleted (unfinished deletions).
	deleting []uint64
	// vectors and faces are the sizes compared.
	vectors, faces int
}

// diffCollection compares a collection's index keys with its faces. The
// two listings are not one snapshot, so every key they disagree about is
// looked up again, and counts only if the disagreement is real:
//
//   - a vector missing from the first listing may have been indexed
//     since: the index is listed again after the store;
//   - a face listed as pending or indexed that lacks a vector counts as
//     missing only if it is indexed (pending faces without a vector are
//     enrollments in flight, or the reconciler's pending queue);
//   - a vector whose face the store did not list counts only if the face
//     is now gone or deleting (states only move forward: pending →
//     indexed → deleting → gone, and keys are never reused).
func (r *Reconciler) diffCollection(ctx context.Context, collection string) (collectionDiff, error) {
	var d collectionDiff
	sp := space(collection)
	have, err := r.index.Keys(ctx, sp)
	if err != nil {
		return d, fmt.Errorf("list vectors of %s: %w", collection, err)
	}
	want, err := r.store.IndexedKeys(ctx, collection)
	if err != nil {
		return d, fmt.Errorf("list faces of %s: %w", collection, err)
	}
	d.vectors, d.faces = len(have), len(want)
	missing, extra := difference(want, have)
	if len(missing) > 0 {
		again, err := r.index.Keys(ctx, sp)
		if err != nil {
			return d, fmt.Errorf("list vectors of %s: %w", collection, err)
		}
		missing, _ = difference(missing, again)
	}
	if len(missing)+len(extra) == 0 {
		return d, nil
	}
	states, err := r.store.FaceStates(ctx, append(slices.Clip(missing), extra...))
	if err != nil {
		return d, err
	}
	for _, k := range missing {
		if states[k] == store.FaceIndexed {
			d.missing = append(d.missing, k)
		}
	}
	for _, k := range extra {
		switch st, ok := states[k]; {
		case !ok:
			d.orphans = append(d.orphans, k)
		case st == store.FaceDeleting:
			d.deleting = append(d.deleting, k)
		}
	}
	return d, nil
}

// difference returns the keys of sorted a absent from sorted b, and those
// of b absent from a.
func difference(a, b []uint64) (onlyA, onlyB []uint64) {
	slices.Sort(a)
	slices.Sort(b)
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			onlyA = append(onlyA, a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			onlyB = append(onlyB, b[j])
			j++
		default:
			i++
			j++
		}
	}
	return onlyA, onlyB
}

// repair removes a collection's orphan vectors and indexes its missing
// faces. Vectors of faces being deleted are left to finishFaceDeletes: the
// deletion that marked them is removing them now, or its queue will.
func (r *Reconciler) repair(ctx context.Context, collection string, d collectionDiff) (added, removed int, err error) {
	sp := space(collection)
	if len(d.orphans) > 0 {
		if err := r.index.Delete(ctx, sp, d.orphans); err != nil {
			return 0, 0, fmt.Errorf("remove vectors of %s: %w", collection, err)
		}
	}
	const batch = 10000
	for keys := range slices.Chunk(d.missing, batch) {
		vecs, err := r.store.Vectors(ctx, collection, keys)
		if err != nil {
			return 0, 0, err
		}
		items := make([]index.Item, len(vecs))
		for i, v := range vecs {
			items[i] = index.Item{Key: v.Key, Vector: v.Descriptor}
		}
		if err := r.index.Upsert(ctx, sp, items); err != nil {
			return 0, 0, fmt.Errorf("add vectors of %s: %w", collection, err)
		}
		if err := r.undoIfDeleted(ctx, sp, keys); err != nil {
			return 0, 0, err
		}
		added += len(items)
	}
	return added, len(d.orphans), nil
}

// undoIfDeleted removes again the vectors just written for keys whose face
// was deleted meanwhile: that deletion may have removed its vector before
// the write, and nothing else would remove it.
func (r *Reconciler) undoIfDeleted(ctx context.Context, sp string, keys []uint64) error {
	states, err := r.store.FaceStates(ctx, keys)
	if err != nil {
		return err
	}
	var gone []uint64
	for _, k := range keys {
		if st, ok := states[k]; !ok || st == store.FaceDeleting {
			gone = append(gone, k)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := r.index.Delete(ctx, sp, gone); err != nil {
		return fmt.Errorf("remove vectors of deleted faces: %w", err)
	}
	return nil
}

// DriftReport is what Check found: zero Drift means the store and the
// index agree and no work is unfinished.
type DriftReport struct {
	Model       string `json:"model"`
	Collections int    `json:"collections"`
	// Faces are the faces stored (pending or indexed); Vectors are the
	// vectors indexed for them, counted per collection.
	Faces   int `json:"faces"`
	Vectors int `json:"vectors"`
	// MissingVectors: faces stored as indexed that the index lacks (they
	// cannot be found).
	MissingVectors int `json:"missing_vectors"`
	// OrphanVectors: vectors of no face (a deleted person still findable
	// by vector, though never named in an answer).
	OrphanVectors int `json:"orphan_vectors"`
	// OrphanSpaces: index spaces of no collection.
	OrphanSpaces []string `json:"orphan_spaces"`
	// PendingFaces: enrollments whose index write is unconfirmed.
	PendingFaces int `json:"pending_faces"`
	// DeletingFaces and DeletingCollections: deletions not finished.
	DeletingFaces       int `json:"deleting_faces"`
	DeletingCollections int `json:"deleting_collections"`
	// OtherModels counts the faces made by models other than Model:
	// their descriptors cannot be compared with this engine's.
	OtherModels map[string]int `json:"other_models"`
	// PerCollection lists the collections with drift.
	PerCollection []CollectionDrift `json:"per_collection"`
}

// CollectionDrift is one collection's part of a DriftReport.
type CollectionDrift struct {
	Name           string `json:"name"`
	Faces          int    `json:"faces"`
	Vectors        int    `json:"vectors"`
	MissingVectors int    `json:"missing_vectors"`
	OrphanVectors  int    `json:"orphan_vectors"`
	DeletingFaces  int    `json:"deleting_vectors"`
}

// Drift is the number of disagreements and unfinished operations.
func (d DriftReport) Drift() int {
	n := d.MissingVectors + d.OrphanVectors + len(d.OrphanSpaces) + d.PendingFaces + d.DeletingFaces + d.DeletingCollections
	for _, c := range d.OtherModels {
		n += c
	}
	return n
}

// Check reports the drift between the store and the index without
// changing either.
func (r *Reconciler) Check(ctx context.Context) (DriftReport, error) {
	rep := DriftReport{Model: r.model, OtherModels: map[string]int{}, OrphanSpaces: []string{}, PerCollection: []CollectionDrift{}}
	spaces, err := r.index.Spaces(ctx)
	if err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	deletingColls, err := r.store.DeletingCollections(ctx)
	if err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	rep.DeletingCollections = len(deletingColls)
	if rep.PendingFaces, err = r.countQueue(ctx, r.store.PendingFaces); err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	if rep.DeletingFaces, err = r.countQueue(ctx, r.store.DeletingFaces); err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	models, err := r.store.ModelCounts(ctx)
	if err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	for m, n := range models {
		if !embed.Comparable(m, r.model) {
			rep.OtherModels[m] = n
		}
	}
	colls, err := r.store.ListCollections(ctx)
	if err != nil {
		return rep, fmt.Errorf("check: %w", err)
	}
	rep.Collections = len(colls)
	dying := map[string]bool{}
	for _, n := range deletingColls {
		dying[space(n)] = true
	}
	for _, sp := range orphanSpaces(spaces, colls) {
		if !dying[sp] { // counted in DeletingCollections
			rep.OrphanSpaces = append(rep.OrphanSpaces, sp)
		}
	}
	for _, c := range colls {
		d, err := r.diffCollection(ctx, c.Name)
		if err != nil {
			return rep, fmt.Errorf("check: %w", err)
		}
		rep.Faces += d.faces
		rep.Vectors += d.vectors
		rep.MissingVectors += len(d.missing)
		rep.OrphanVectors += len(d.orphans)
		if len(d.missing)+len(d.orphans)+len(d.deleting) > 0 {
			rep.PerCollection = append(rep.PerCollection, CollectionDrift{Name: c.Name, Faces: d.faces, Vectors: d.vectors,
				MissingVectors: len(d.missing), OrphanVectors: len(d.orphans), DeletingFaces: len(d.deleting)})
		}
	}
	return rep, nil
}

// countQueue counts a reconciler queue, up to its largest page (10,000):
// beyond that the exact number does not change what to do.
func (r *Reconciler) countQueue(ctx context.Context, list func(context.Context, int) ([]store.Face, error)) (int, error) {
	faces, err := list(ctx, 10000)
	return len(faces), err
}

// ErrModelMismatch means the store holds descriptors of another model than
// the engine's, or of several: one index cannot compare them.
var ErrModelMismatch = errors.New("descriptors of different models")

// Reindex rebuilds the vector index from the store, after a switch of
// index backend or a lost index: it refuses unless every stored face was
// made by the engine's model (a model change needs re-enrollment: the
// store keeps descriptors, not photos). It finishes unfinished work, then
// writes every collection's vectors (overwriting what is there), removes
// vectors of no face and drops spaces of no collection. The index keeps
// answering meanwhile: nothing is dropped before it is rebuilt.
func (r *Reconciler) Reindex(ctx context.Context, progress func(collection string, done int)) (ReconcileReport, error) {
	var rep ReconcileReport
	models, err := r.store.ModelCounts(ctx)
	if err != nil {
		return rep, fmt.Errorf("reindex: %w", err)
	}
	if other := otherModels(models, r.model); other != "" {
		return rep, fmt.Errorf("reindex: the store holds faces of %s; this engine's model is %s: %w", other, r.model, ErrModelMismatch)
	}
	colls, err := r.store.ListCollections(ctx)
	if err != nil {
		return rep, fmt.Errorf("reindex: %w", err)
	}
	const page = 10000
	for _, c := range colls {
		var after uint64
		done := 0
		for {
			vecs, err := r.store.ScanVectors(ctx, c.Name, after, page)
			if err != nil {
				return rep, fmt.Errorf("reindex %s: %w", c.Name, err)
			}
			if len(vecs) == 0 {
				break
			}
			items := make([]index.Item, len(vecs))
			for i, v := range vecs {
				items[i] = index.Item{Key: v.Key, Vector: v.Descriptor}
			}
			if err := r.index.Upsert(ctx, space(c.Name), items); err != nil {
				return rep, fmt.Errorf("reindex %s: %w", c.Name, err)
			}
			after = vecs[len(vecs)-1].Key
			done += len(vecs)
			if progress != nil {
				progress(c.Name, done)
			}
		}
		rep.VectorsAdded += done
	}
	// Pending faces are indexed now; the reconciliation confirms them
	// and removes what the store no longer holds.
	fix, err := r.Reconcile(ctx)
	rep.CollectionsDeleted, rep.FacesDeleted, rep.FacesIndexed = fix.CollectionsDeleted, fix.FacesDeleted, fix.FacesIndexed
	rep.VectorsRemoved, rep.SpacesDropped = fix.VectorsRemoved, fix.SpacesDropped
	rep.VectorsAdded += fix.VectorsAdded
	if err != nil {
		return rep, fmt.Errorf("reindex: %w", err)
	}
	return rep, nil
}

// otherModels describes the models in counts other than model, or "".
func otherModels(counts map[string]int, model string) string {
	var parts []string
	for _, m := range slices.Sorted(maps.Keys(counts)) {
		if !embed.Comparable(m, model) {
			parts = append(parts, fmt.Sprintf("%s (%d faces)", m, counts[m]))
		}
	}
	return strings.Join(parts, ", ")
}
