package gallery

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/index"
	"github.com/visage/visage/index/qdranttest"

	"github.com/visage/visage/internal/archive"
	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

// importTree builds a tree of real photos in a temporary directory: the
// bbt people's portraits 1 and 2 in <person>/ folders, plus a truncated
// JPEG and a photo with no face under "broken/".
func importTree(t *testing.T) (root string, good int) {
	t.Helper()
	root = t.TempDir()
	for _, p := range bbtPeople {
		dir := filepath.Join(root, p)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"1", "2"} {
			data := testenv.ReadShared(t, "testdata/faces/bbt/"+p+"/"+p+n+".png")
			if err := os.WriteFile(filepath.Join(dir, n+".png"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			good++
		}
	}
	broken := filepath.Join(root, "broken")
	if err := os.Mkdir(broken, 0o700); err != nil {
		t.Fatal(err)
	}
	whole := testenv.ReadShared(t, "testdata/faces/bbt/bbt1.jpg")
	if err := os.WriteFile(filepath.Join(broken, "truncated.jpg"), whole[:len(whole)/3], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "blank.png"), testenv.BlankPNG(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "README.txt"), []byte("not a photo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return root, good
}

// waitJob waits until a job is finished.
func waitJob(t *testing.T, st ImportStore, id string) store.ImportJob {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		j, err := st.GetImportJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State.Finished() {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after 3 minutes: %+v", id, j.State, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type importDeps interface {
	backendStore
	ImportStore
	ImportItems(ctx context.Context, jobID string, states []store.ItemState, afterSeq, limit int) ([]store.ImportItem, error)
}

func TestImportJobs(t *testing.T) {
	eng := openEngine(t, 2)
	root, good := importTree(t)
	for _, d := range backendPairs() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			bst, idx := d.open(t, eng.ModelID())
			st := bst.(importDeps)
			svc := NewService(eng, st, idx, DefaultServiceConfig(), quietLog())
			t.Cleanup(svc.Close)
			if _, err := svc.CreateCollection(ctx, "staff", Policy{}); err != nil {
				t.Fatal(err)
			}
			src, err := OpenSource(ctx, root, archive.Limits{}, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}

			im := NewImporter(svc, st, DefaultImportConfig(2), quietLog())
			defer im.Close()
			job, err := im.Start(ctx, "k1", "staff", src, map[string]any{"name": "bbt"})
			if err != nil {
				t.Fatal(err)
			}
			got := waitJob(t, st, job.ID)
			// Every file is accounted for: the portraits enrolled, the two
			// broken photos failed with their codes, the text file skipped.
			if got.State != store.ImportDone || got.Total != good+3 || got.Enrolled != good || got.Failed != 2 || got.Skipped != 1 || got.Done != got.Total {
				t.Fatalf("first import: %+v, want done with %d enrolled, 2 failed, 1 skipped", got, good)
			}
			failed, err := st.ImportItems(ctx, job.ID, []store.ItemState{store.ItemFailed}, -1, 100)
			if err != nil {
				t.Fatal(err)
			}
			codes := map[string]string{}
			for _, it := range failed {
				codes[it.Path] = it.Code
			}
			if codes["broken/truncated.jpg"] != "corrupt_image" || codes["broken/blank.png"] != CodeNoFace {
				t.Errorf("failure codes %v", codes)
			}
			for _, p := range bbtPeople {
				sub, err := st.GetSubjectByExternalID(ctx, "staff", p)
				if err != nil || sub.FaceCount != 2 {
					t.Fatalf("subject %s: %+v, %v", p, sub, err)
				}
			}
			// A refused photo creates nothing, not even its subject.
			if sub, err := st.GetSubjectByExternalID(ctx, "staff", "broken"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("subject of the refused photos: %+v, %v; want none", sub, err)
			}
			// Every imported face is audited like an enrollment by the
			// job's key, and is in the index.
			events, err := st.ListEvents(ctx, store.EventQuery{Kind: store.EventEnroll, Collection: "staff", Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			enrolled := 0
			for _, e := range events {
				if e.Outcome == store.OutcomeEnrolled && e.KeyID == "k1" && e.FaceID != "" {
					enrolled++
				}
			}
			if enrolled != good {
				t.Errorf("%d enroll events by the job's key, want %d", enrolled, good)
			}
			assertAllIndexed(t, st, idx, "staff", good)

			t.Run("a second identical import enrolls nothing", func(t *testing.T) {
				again, err := im.Start(ctx, "k1", "staff", src, nil)
				if err != nil {
					t.Fatal(err)
				}
				got := waitJob(t, st, again.ID)
				if got.Enrolled != 0 || got.Skipped != good+1 || got.Failed != 2 {
					t.Fatalf("second import: %+v, want 0 enrolled and %d skipped", got, good+1)
				}
				sub, err := st.GetSubjectByExternalID(ctx, "staff", "amy")
				if err != nil || sub.FaceCount != 2 {
					t.Fatalf("amy after the second import: %+v, %v", sub, err)
				}
			})

			t.Run("a stopped job resumes with exact counts", func(t *testing.T) {
				if _, err := svc.CreateCollection(ctx, "resumed", Policy{}); err != nil {
					t.Fatal(err)
				}
				// The tree is under the import root: the job records its
				// place relative to it, and the resumed job finds it so.
				first := NewImporter(svc, st, ImportConfig{Workers: 1, RecordEvery: 1, ImportRoot: filepath.Dir(root)}, quietLog())
				job, err := first.Start(ctx, "k1", "resumed", src, nil)
				if err != nil {
					t.Fatal(err)
				}
				var rec sourceRecord
				if err := json.Unmarshal(job.Source, &rec); err != nil || rec != (sourceRecord{Root: filepath.Base(root), Base: baseImportRoot}) {
					t.Errorf("recorded source %s, want root %q relative to the import root", job.Source, filepath.Base(root))
				}
				for {
					j, err := st.GetImportJob(ctx, job.ID)
					if err != nil {
						t.Fatal(err)
					}
					if j.Enrolled >= 3 {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				first.Close() // as at a shutdown: the job stays running in the store
				mid, err := st.GetImportJob(ctx, job.ID)
				if err != nil {
					t.Fatal(err)
				}
				if mid.State != store.ImportRunning || mid.Done >= mid.Total {
					t.Fatalf("after the stop: %+v, want a running job with work left", mid)
				}
				cfg := DefaultImportConfig(2)
				cfg.ImportRoot = filepath.Dir(root)
				second := NewImporter(svc, st, cfg, quietLog())
				defer second.Close()
				n, err := second.Resume(ctx)
				if err != nil || n != 1 {
					t.Fatalf("Resume = %d, %v; want 1 job", n, err)
				}
				got := waitJob(t, st, job.ID)
				if got.State != store.ImportDone || got.Enrolled != good || got.Failed != 2 || got.Skipped != 1 {
					t.Fatalf("resumed job: %+v (stopped at %d done)", got, mid.Done)
				}
				for _, p := range bbtPeople {
					sub, err := st.GetSubjectByExternalID(ctx, "resumed", p)
					if err != nil || sub.FaceCount != 2 {
						t.Fatalf("subject %s after the resumed import: %+v, %v", p, sub, err)
					}
				}
			})

			t.Run("cancel", func(t *testing.T) {
				if _, err := svc.CreateCollection(ctx, "cancelled", Policy{}); err != nil {
					t.Fatal(err)
				}
				slow := NewImporter(svc, st, ImportConfig{Workers: 1, RecordEvery: 1}, quietLog())
				defer slow.Close()
				job, err := slow.Start(ctx, "k1", "cancelled", src, nil)
				if err != nil {
					t.Fatal(err)
				}
				c, err := slow.Cancel(ctx, job.ID)
				if err != nil || c.State != store.ImportCancelled {
					t.Fatalf("Cancel = %+v, %v", c, err)
				}
				slow.Wait()
				final, err := st.GetImportJob(ctx, job.ID)
				if err != nil {
					t.Fatal(err)
				}
				if final.State != store.ImportCancelled || final.Enrolled >= good {
					t.Fatalf("cancelled job: %+v", final)
				}
				if n, err := slow.Resume(ctx); err != nil || n != 0 {
					t.Fatalf("Resume after cancel = %d, %v; want nothing to resume", n, err)
				}
			})
		})
	}
}

// assertAllIndexed checks that a collection has n faces, all indexed, and
// that the index holds exactly their vectors.
func assertAllIndexed(t *testing.T, st Store, idx Index, collection string, n int) {
	t.Helper()
	ctx := context.Background()
	stats, err := st.CollectionStats(ctx, collection)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Faces != int64(n) || stats.PendingFaces != 0 {
		t.Errorf("collection %s: %d faces, %d pending; want %d, none pending", collection, stats.Faces, stats.PendingFaces, n)
	}
	keys, err := st.IndexedKeys(ctx, collection)
	if err != nil {
		t.Fatal(err)
	}
	vectors, err := idx.Keys(ctx, space(collection))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	slices.Sort(vectors)
	if len(keys) != n || !slices.Equal(keys, vectors) {
		t.Errorf("collection %s: indexed faces %v, vectors %v", collection, keys, vectors)
	}
}

// An index outage during an import holds the job up; it goes on when the
// index is back, and ends with every face indexed and nothing failed.
func TestImportWaitsOutAnIndexOutage(t *testing.T) {
	eng := openEngine(t, 2)
	root, good := importTree(t)
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "visage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	srv := qdranttest.Start(t, qdranttest.Options{})
	// The index gives up after two quick tries, so that the outage is
	// the importer's to wait out.
	idx, err := index.OpenQdrant(ctx, index.QdrantConfig{Addr: srv.Addr(), Dim: embed.Dim, Model: eng.ModelID(),
		Retry: index.QdrantRetry{Attempts: 2, Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idx.Close() })
	svc := NewService(eng, st, idx, DefaultServiceConfig(), quietLog())
	if _, err := svc.CreateCollection(ctx, "staff", Policy{}); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(ctx, root, archive.Limits{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultImportConfig(2)
	cfg.RetryMax = 500 * time.Millisecond
	im := NewImporter(svc, st, cfg, quietLog())
	defer im.Close()

	srv.Inject(qdranttest.Fault{Code: codes.Unavailable, For: 3 * time.Second})
	job, err := im.Start(ctx, "k1", "staff", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := waitJob(t, st, job.ID)
	if got.State != store.ImportDone || got.Enrolled != good || got.Failed != 2 || got.Skipped != 1 {
		t.Fatalf("job after the outage: %+v, want done with %d enrolled", got, good)
	}
	if srv.Calls("Points/Upsert") < 2 {
		t.Errorf("%d upserts: the outage was not met", srv.Calls("Points/Upsert"))
	}
	assertAllIndexed(t, st, idx, "staff", good)
}

// TestImportFollowsNoLinkSwappedIn: a photo replaced by a symbolic link
// after its source was scanned is not read through the link: one leading
// out of the source fails as unreadable, as does one staying inside.
func TestImportFollowsNoLinkSwappedIn(t *testing.T) {
	eng := openEngine(t, 2)
	ctx := context.Background()
	root := t.TempDir()
	outside := t.TempDir()
	for _, p := range []string{"amy", "raj", "penny"} {
		data := testenv.ReadShared(t, "testdata/faces/bbt/"+p+"/"+p+"1.png")
		for _, dir := range []string{root, outside} {
			if err := os.MkdirAll(filepath.Join(dir, p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, p, "1.png"), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	bst, idx := backendPairs()[0].open(t, eng.ModelID())
	st := bst.(importDeps)
	svc := NewService(eng, st, idx, DefaultServiceConfig(), quietLog())
	if _, err := svc.CreateCollection(ctx, "staff", Policy{}); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(ctx, root, archive.Limits{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	swap := map[string]string{
		"amy/1.png": filepath.Join(outside, "amy", "1.png"), // out of the source
		"raj/1.png": filepath.Join(root, "penny", "1.png"),  // inside it
	}
	for rel, target := range swap {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	im := NewImporter(svc, st, DefaultImportConfig(2), quietLog())
	defer im.Close()
	job, err := im.Start(ctx, "k1", "staff", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := waitJob(t, st, job.ID)
	if got.Enrolled != 1 || got.Failed != 2 {
		t.Fatalf("job: %+v, want penny enrolled and the two links failed", got)
	}
	failed, err := st.ImportItems(ctx, job.ID, []store.ItemState{store.ItemFailed}, -1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range failed {
		if _, swapped := swap[it.Path]; !swapped || it.Code != ImportUnreadable {
			t.Errorf("failed %s with %s (%s), want the swapped photos unreadable", it.Path, it.Code, it.Reason)
		}
		if strings.Contains(it.Reason, root) || strings.Contains(it.Reason, outside) {
			t.Errorf("the reason of %s names a server path: %s", it.Path, it.Reason)
		}
	}
}

// failingImportStore refuses to create jobs.
type failingImportStore struct{ ImportStore }

func (failingImportStore) CreateImportJob(context.Context, store.ImportJob, []store.ImportItem) (store.ImportJob, error) {
	return store.ImportJob{}, errors.New("database down")
}

// TestImportSlots: at most MaxJobs jobs run or are prepared at once; a
// slot comes back when released, or when its job fails to start.
func TestImportSlots(t *testing.T) {
	ctx := context.Background()
	im := NewImporter(nil, failingImportStore{}, ImportConfig{MaxJobs: 2}, quietLog())
	defer im.Close()
	a, err := im.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	b, err := im.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.Reserve(); !errors.Is(err, ErrTooManyImports) {
		t.Fatalf("third Reserve: %v, want ErrTooManyImports", err)
	}
	if _, err := im.Start(ctx, "k1", "staff", Source{}, nil); !errors.Is(err, ErrTooManyImports) {
		t.Fatalf("Start beyond the limit: %v, want ErrTooManyImports", err)
	}
	a.Release()
	a.Release() // a second release gives nothing back
	c, err := im.Reserve()
	if err != nil {
		t.Fatalf("Reserve after a release: %v", err)
	}
	if _, err := im.Reserve(); !errors.Is(err, ErrTooManyImports) {
		t.Fatalf("Reserve after a double release: %v, want ErrTooManyImports", err)
	}
	if _, err := a.Start(ctx, "k1", "staff", Source{}, nil); err == nil {
		t.Error("Start on a released slot succeeded")
	}
	// A job that cannot be recorded gives its slot back.
	if _, err := b.Start(ctx, "k1", "staff", Source{}, nil); err == nil {
		t.Fatal("Start succeeded on a failing store")
	}
	b.Release() // no effect: Start gave it back already
	d, err := im.Reserve()
	if err != nil {
		t.Fatalf("Reserve after a failed start: %v", err)
	}
	if _, err := im.Reserve(); !errors.Is(err, ErrTooManyImports) {
		t.Fatalf("Reserve with c and d held: %v, want ErrTooManyImports", err)
	}
	c.Release()
	d.Release()
}
