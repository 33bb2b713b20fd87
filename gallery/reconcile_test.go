package gallery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/index"
	"github.com/visage/visage/index/indextest"
	"github.com/visage/visage/index/qdranttest"
	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

// backendStore is the store as these tests drive it: the gallery's view
// plus ImportSubjects-free helpers both stores have.
type backendStore interface {
	Store
	Close() error
}

// backendPair opens a fresh store and index of one of Visage's two
// deployments, for descriptors of model.
type backendPair struct {
	name string
	open func(t *testing.T, model string) (backendStore, Index)
}

// deployments are the embedded default (SQLite and HNSW) and scale-out
// (PostgreSQL and Qdrant, here the in-process gRPC server over TCP).
func backendPairs() []backendPair {
	return []backendPair{
		{"embedded", func(t *testing.T, model string) (backendStore, Index) {
			t.Helper()
			st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "visage.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			h, err := index.NewHNSW(embed.Dim, index.DefaultHNSWParams())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = h.Close() })
			return st, h
		}},
		{"scaleout", func(t *testing.T, model string) (backendStore, Index) {
			t.Helper()
			ctx := context.Background()
			st, err := store.OpenPostgres(ctx, pgtest.New(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			srv := qdranttest.Start(t, qdranttest.Options{})
			q, err := index.OpenQdrant(ctx, index.QdrantConfig{Addr: srv.Addr(), Dim: embed.Dim, Model: model})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = q.Close() })
			return st, q
		}},
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func randomDescriptor(rng *rand.Rand) []float32 { return indextest.RandomUnit(rng, embed.Dim) }

// fixture writes faces the way enrollment does, step by step, so that a
// test can stop between the steps.
type fixture struct {
	t     *testing.T
	st    backendStore
	idx   Index
	model string
	rng   *rand.Rand
	n     int
}

func (f *fixture) collection(name string) {
	f.t.Helper()
	if _, err := f.st.CreateCollection(context.Background(), store.Collection{Name: name, Threshold: 0.4}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) subject(collection string) store.Subject {
	f.t.Helper()
	s, err := f.st.CreateSubject(context.Background(), store.Subject{Collection: collection})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// pending stores a face without indexing it (a crash right after).
func (f *fixture) pending(sub store.Subject, model string) store.Face {
	f.t.Helper()
	f.n++
	face, _, err := f.st.InsertFace(context.Background(), store.Face{SubjectID: sub.ID, Collection: sub.Collection,
		Descriptor: randomDescriptor(f.rng), ModelID: model, ImageSHA256: string(rune('a'+f.n%26)) + sub.ID + string(rune(f.n))})
	if err != nil {
		f.t.Fatal(err)
	}
	return face
}

// indexed stores and indexes a face, as a completed enrollment does.
func (f *fixture) indexed(sub store.Subject) store.Face {
	f.t.Helper()
	ctx := context.Background()
	face := f.pending(sub, f.model)
	if err := f.idx.Upsert(ctx, space(sub.Collection), []index.Item{{Key: face.Key, Vector: face.Descriptor}}); err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.MarkFacesIndexed(ctx, []uint64{face.Key}); err != nil {
		f.t.Fatal(err)
	}
	return face
}

func mustCheck(t *testing.T, r *Reconciler) DriftReport {
	t.Helper()
	rep, err := r.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestReconcilerRepairsEveryKindOfDrift(t *testing.T) {
	const model = "model-a"
	for _, d := range backendPairs() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			st, idx := d.open(t, model)
			f := &fixture{t: t, st: st, idx: idx, model: model, rng: rand.New(rand.NewPCG(1, 2))}
			f.collection("a")
			f.collection("b")
			sub := f.subject("a")
			var good []store.Face
			for range 5 {
				good = append(good, f.indexed(sub))
			}
			r := NewReconciler(st, idx, model, quietLog())
			if rep := mustCheck(t, r); rep.Drift() != 0 || rep.Faces != 5 || rep.Vectors != 5 || rep.Collections != 2 {
				t.Fatalf("consistent gallery: %+v", rep)
			}

			// One drift of every kind.
			lost := f.indexed(sub) // its vector is lost (an old snapshot)
			noErr(t, idx.Delete(ctx, space("a"), []uint64{lost.Key}))
			const orphanKey = 1 << 40 // a vector of no face
			noErr(t, idx.Upsert(ctx, space("a"), []index.Item{{Key: orphanKey, Vector: randomDescriptor(f.rng)}}))
			pending := f.pending(sub, model) // crash before the index write
			dying := f.indexed(sub)          // crash after marking it deleting
			if _, err := st.MarkFaceDeleting(ctx, "a", dying.ID); err != nil {
				t.Fatal(err)
			}
			noErr(t, idx.Upsert(ctx, space("ghost"), []index.Item{{Key: 7, Vector: randomDescriptor(f.rng)}}))
			f.indexed(f.subject("b"))
			noErr(t, st.MarkCollectionDeleting(ctx, "b")) // crash before the drop

			rep := mustCheck(t, r)
			want := DriftReport{MissingVectors: 1, OrphanVectors: 1, PendingFaces: 1, DeletingFaces: 1, DeletingCollections: 1}
			if rep.MissingVectors != want.MissingVectors || rep.OrphanVectors != want.OrphanVectors || rep.PendingFaces != want.PendingFaces ||
				rep.DeletingFaces != want.DeletingFaces || rep.DeletingCollections != want.DeletingCollections ||
				!slices.Equal(rep.OrphanSpaces, []string{space("ghost")}) || rep.Drift() != 6 {
				t.Fatalf("Check = %+v, want %+v and the orphan space %q (drift 6)", rep, want, space("ghost"))
			}
			if len(rep.PerCollection) != 1 || rep.PerCollection[0].Name != "a" || rep.PerCollection[0].DeletingFaces != 1 {
				t.Errorf("PerCollection = %+v", rep.PerCollection)
			}
			if again := mustCheck(t, r); again.Drift() != rep.Drift() {
				t.Fatalf("Check changed something: %+v then %+v", rep, again)
			}

			fixed, err := r.Reconcile(ctx)
			noErr(t, err)
			wantFix := ReconcileReport{CollectionsDeleted: 1, FacesDeleted: 1, FacesIndexed: 1, VectorsRemoved: 1, VectorsAdded: 1, SpacesDropped: 1}
			if fixed != wantFix {
				t.Errorf("Reconcile = %+v, want %+v", fixed, wantFix)
			}
			if rep := mustCheck(t, r); rep.Drift() != 0 || rep.Faces != 7 || rep.Vectors != 7 || rep.Collections != 1 {
				t.Fatalf("after Reconcile: %+v", rep)
			}
			for _, face := range append(good, lost, pending) {
				m, err := idx.Search(ctx, space("a"), face.Descriptor, 1)
				noErr(t, err)
				if len(m) != 1 || m[0].Key != face.Key {
					t.Errorf("face %d: search found %+v", face.Key, m)
				}
			}
			keys, err := idx.Keys(ctx, space("a"))
			noErr(t, err)
			if slices.Contains(keys, orphanKey) || slices.Contains(keys, dying.Key) {
				t.Errorf("index keys %v still hold the orphan or the deleted face", keys)
			}
			spaces, err := idx.Spaces(ctx)
			noErr(t, err)
			if !slices.Equal(spaces, []string{space("a")}) {
				t.Errorf("spaces after Reconcile = %v", spaces)
			}
			if _, err := st.GetCollection(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("collection b after Reconcile: %v", err)
			}

			t.Run("another model's face is reported, never indexed", func(t *testing.T) {
				f.pending(f.subject("a"), "model-b")
				// Its descriptor is written (the store is the truth), but
				// the report names it, and reindex refuses.
				_, err := r.Reconcile(ctx)
				noErr(t, err)
				rep := mustCheck(t, r)
				if rep.OtherModels["model-b"] != 1 || rep.Drift() != 1 {
					t.Fatalf("Check = %+v, want one model-b face", rep)
				}
				if _, err := r.Reindex(ctx, nil); !errors.Is(err, ErrModelMismatch) {
					t.Fatalf("Reindex with two models: %v, want ErrModelMismatch", err)
				}
			})
		})
	}
}

func TestReindexRebuildsTheIndexFromTheStore(t *testing.T) {
	const model = "model-a"
	for _, d := range backendPairs() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			st, idx := d.open(t, model)
			f := &fixture{t: t, st: st, idx: idx, model: model, rng: rand.New(rand.NewPCG(3, 4))}
			var faces []store.Face
			for _, c := range []string{"x", "y"} {
				f.collection(c)
				for range 3 {
					sub := f.subject(c)
					for range 40 {
						faces = append(faces, f.indexed(sub))
					}
				}
			}
			// A new, empty index: a backend switch, or a lost index.
			_, fresh := d.open(t, model)
			r := NewReconciler(st, fresh, model, quietLog())
			if rep := mustCheck(t, r); rep.MissingVectors != len(faces) {
				t.Fatalf("empty index: %+v, want %d missing", rep, len(faces))
			}
			var progress []int
			rep, err := r.Reindex(ctx, func(_ string, done int) { progress = append(progress, done) })
			noErr(t, err)
			if rep.VectorsAdded != len(faces) || len(progress) == 0 {
				t.Fatalf("Reindex = %+v (progress %v), want %d vectors added", rep, progress, len(faces))
			}
			if rep := mustCheck(t, r); rep.Drift() != 0 || rep.Vectors != len(faces) {
				t.Fatalf("after Reindex: %+v", rep)
			}
			for _, face := range faces {
				m, err := fresh.Search(ctx, space(face.Collection), face.Descriptor, 1)
				noErr(t, err)
				if len(m) != 1 || m[0].Key != face.Key {
					t.Fatalf("face %d: search found %+v", face.Key, m)
				}
			}
			t.Run("refuses another engine's model", func(t *testing.T) {
				r := NewReconciler(st, fresh, "model-c", quietLog())
				if _, err := r.Reindex(ctx, nil); !errors.Is(err, ErrModelMismatch) {
					t.Fatalf("Reindex for model-c: %v, want ErrModelMismatch", err)
				}
			})
		})
	}
}

// TestReconcileDuringTraffic runs the reconciler in a loop while real
// enrollments and deletions go on. Whatever their interleaving, it must
// never remove the vector of a face that ends up indexed, nor leave the
// vector of a face that ends up deleted: when the traffic stops, the
// stores agree without a final reconciliation.
func TestReconcileDuringTraffic(t *testing.T) {
	dir := testenv.Shared(t, "testdata/lfw-dev/images")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var photos [][]byte
	for _, e := range entries {
		if len(photos) == 24 {
			break
		}
		// One photo of each person: no two subjects share a face.
		files, err := filepath.Glob(filepath.Join(dir, e.Name(), "*.jpg"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no photo of %s: %v", e.Name(), err)
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		photos = append(photos, b)
	}
	eng := openEngine(t, 2)
	for _, d := range backendPairs() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			st, idx := d.open(t, eng.ModelID())
			svc := NewService(eng, st, idx, DefaultServiceConfig(), quietLog())
			t.Cleanup(svc.Close)
			if _, err := svc.CreateCollection(ctx, "live", Policy{}); err != nil {
				t.Fatal(err)
			}
			enrolled := make(chan store.Subject, len(photos))
			stop := make(chan struct{})
			reconciled := make(chan int)
			go func() {
				n := 0
				defer func() { reconciled <- n }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := svc.Reconcile(ctx); err != nil {
						t.Errorf("Reconcile: %v", err)
						return
					}
					n++
				}
			}()
			var enrollers sync.WaitGroup
			for w := range 2 {
				enrollers.Add(1)
				go func() {
					defer enrollers.Done()
					for i := w; i < len(photos); i += 2 {
						sub, err := st.CreateSubject(ctx, store.Subject{Collection: "live"})
						if err != nil {
							t.Error(err)
							return
						}
						res, err := svc.Enroll(ctx, "test", "live", sub.ID, [][]byte{photos[i]})
						if err != nil {
							t.Errorf("Enroll: %v", err)
							return
						}
						if res[0].Status == StatusEnrolled {
							enrolled <- sub
						}
					}
				}()
			}
			deleter := make(chan [2]int)
			go func() {
				kept, deleted := 0, 0
				defer func() { deleter <- [2]int{kept, deleted} }()
				for sub := range enrolled {
					if (kept+deleted)%2 == 1 {
						kept++
						continue
					}
					if err := svc.DeleteSubject(ctx, "test", "live", sub.ID); err != nil {
						t.Errorf("DeleteSubject: %v", err)
						return
					}
					deleted++
				}
			}()
			enrollers.Wait()
			close(enrolled)
			counts := <-deleter
			close(stop)
			reconciles := <-reconciled
			kept, deleted := counts[0], counts[1]
			rep := mustCheck(t, svc.Reconciler())
			t.Logf("%s: %d kept, %d deleted, %d reconciliations during the traffic; then %+v", d.name, kept, deleted, reconciles, rep)
			if kept == 0 || deleted == 0 || reconciles == 0 {
				t.Fatalf("no real traffic: kept %d, deleted %d, reconciles %d", kept, deleted, reconciles)
			}
			if rep.Drift() != 0 || rep.Faces != kept || rep.Vectors != kept {
				t.Fatalf("after the traffic: %+v, want no drift and %d faces and vectors", rep, kept)
			}
		})
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
