//go:build linux

package gallery

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/index"
	"github.com/visage/visage/index/qdranttest"
	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

// BenchmarkBackends compares the two deployments in one run, on the same
// engine (default configuration, 2 workers) and the same real photos:
//
//   - embedded: store.SQLite in a temporary file + index.HNSW in a
//     temporary directory, as visaged runs by default;
//   - scaleout: store.Postgres on a pgtest database (the private cluster
//     of the apt binaries, over its Unix socket) + index.Qdrant talking
//     gRPC over TCP loopback to the in-process server of index/qdranttest.
//
// Both galleries hold the same subjects first: every bbt portrait and LFW
// development image that enrolls (one subject each: 787 of the 847), enrolled
// through Service.Enroll into the embedded deployment and copied into the
// scale-out one with the protocol enrollment follows. Then, for each
// operation, the two deployments one after the other:
//
//   - identify: Service.Identify of one of those photos (top 5);
//   - identify-store: what Identify does besides the engine, for one face
//     with the photo's precomputed descriptor: GetCollection, index
//     Search (k 40) + store FaceRefs, the audit event;
//   - enroll: a new subject (store CreateSubject, as the API does) and
//     Service.Enroll of one photo;
//   - enroll-store: what that does besides the engine, with the photo's
//     precomputed face: CreateSubject, GetSubject, InsertFace, index
//     Upsert, MarkFacesIndexed, the audit event.
//
// The reads come before the writes so that every identification searches
// the same gallery. Each operation runs from as many goroutines as the
// engine has workers, as a busy service would. Metrics: ops/s (throughput
// of the 2 goroutines), ms/op-latency (mean time of one operation),
// cpu-ms/op (CPU time of this process: engine, Go clients, SQLite,
// HNSW, the in-process Qdrant server) and, for scaleout, pg-cpu-ms/op (CPU
// time of the PostgreSQL server's processes); identify also reports
// search-ms (Identification.Search: index search + FaceRefs). Run with
//
//	go test -run '^$' -bench Backends -benchtime 3s -count 3 -v ./gallery/
//
// (about 2.5 minutes). The pgtest cluster runs without fsync; to compare
// with a durable Postgres, point VISAGE_TEST_DATABASE_URL at one (then
// pg-cpu-ms/op is not reported). docs/benchmarks.md has the figures.
func BenchmarkBackends(b *testing.B) {
	ctx := context.Background()
	eng := benchEngine(b, backendWorkers, nil)
	photos := backendPhotos(b)
	embedded := openEmbedded(b, eng)
	scaleout := openScaleout(b, eng)
	start := time.Now()
	enrolled := prefill(b, embedded, photos)
	b.Logf("%d of %d photos enrolled into embedded in %s", len(enrolled), len(photos), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	copyGallery(b, scaleout, enrolled)
	b.Logf("copied into scaleout in %s", time.Since(start).Round(time.Millisecond))
	deployments := []*deployment{embedded, scaleout}

	b.Run("identify", func(b *testing.B) {
		for _, d := range deployments {
			b.Run(d.name, func(b *testing.B) {
				var search atomic.Int64
				measure(b, d, "identifies/s", func(i int) error {
					id, err := d.svc.Identify(ctx, IdentifyRequest{Actor: "bench", Collection: benchCollection, Image: enrolled[i%len(enrolled)].data})
					if err != nil {
						return err
					}
					if !slices.ContainsFunc(id.Faces, func(f IdentifiedFace) bool { return f.Decision == DecisionMatch }) {
						return fmt.Errorf("identify %s: no match", enrolled[i%len(enrolled)].name)
					}
					search.Add(int64(id.Search))
					return nil
				})
				b.ReportMetric(float64(search.Load())/float64(b.N)/1e6, "search-ms")
			})
		}
	})
	b.Run("identify-store", func(b *testing.B) {
		for _, d := range deployments {
			b.Run(d.name, func(b *testing.B) {
				measure(b, d, "identifies/s", func(i int) error {
					return identifyStoreOnly(ctx, d.svc, enrolled[i%len(enrolled)].face)
				})
			})
		}
	})
	b.Run("enroll", func(b *testing.B) {
		for _, d := range deployments {
			b.Run(d.name, func(b *testing.B) {
				measure(b, d, "enrolls/s", func(i int) error {
					p := enrolled[i%len(enrolled)]
					sub, err := d.svc.Store().CreateSubject(ctx, store.Subject{Collection: benchCollection,
						ExternalID: "enroll-" + strconv.FormatInt(d.subjects.Add(1), 10), DisplayName: p.person})
					if err != nil {
						return err
					}
					res, err := d.svc.Enroll(ctx, "bench", benchCollection, sub.ID, [][]byte{p.data})
					if err != nil {
						return err
					}
					if res[0].Status != StatusEnrolled {
						return fmt.Errorf("enroll %s: %s %v", p.name, res[0].Status, res[0].Err)
					}
					return nil
				})
			})
		}
	})
	b.Run("enroll-store", func(b *testing.B) {
		for _, d := range deployments {
			b.Run(d.name, func(b *testing.B) {
				measure(b, d, "enrolls/s", func(i int) error {
					return enrollStoreOnly(ctx, d, enrolled[i%len(enrolled)])
				})
			})
		}
	})
}

// backendWorkers is the engine's workers and the goroutines of each
// operation.
const backendWorkers = 2

// benchCollection is the collection both galleries use.
const benchCollection = "gallery"

// deployment is one store + index behind a Service.
type deployment struct {
	name string
	svc  *Service
	// postgres: CPU time of the PostgreSQL server is reported.
	postgres bool
	// subjects numbers the subjects the benchmarks create.
	subjects atomic.Int64
}

// photo is a shared photo and, once enrolled, its face.
type photo struct {
	name, person string
	data         []byte
	face         store.Face
}

// backendPhotos returns the 40 bbt portraits and the 807 LFW development
// images, read from ../shared (never copied).
func backendPhotos(b *testing.B) []photo {
	b.Helper()
	var paths []string
	for _, pattern := range []string{
		filepath.Join(testenv.Shared(b, "testdata/faces/bbt"), "*", "*.png"),
		filepath.Join(testenv.Shared(b, "testdata/lfw-dev/images"), "*", "*.jpg"),
	} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			b.Fatal(err)
		}
		paths = append(paths, m...)
	}
	slices.Sort(paths)
	if len(paths) < 800 {
		b.Fatalf("found %d shared photos, want the 40 bbt portraits and 807 LFW images", len(paths))
	}
	out := make([]photo, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = photo{name: filepath.Base(p), person: filepath.Base(filepath.Dir(p)), data: data}
	}
	return out
}

func newBenchService(b *testing.B, eng *Engine, st Store, idx Index) *Service {
	b.Helper()
	svc := NewService(eng, st, idx, DefaultServiceConfig(), slog.New(slog.DiscardHandler))
	b.Cleanup(svc.Close)
	if _, err := svc.CreateCollection(context.Background(), benchCollection, Policy{}); err != nil {
		b.Fatal(err)
	}
	return svc
}

// openEmbedded opens the default deployment: SQLite and HNSW in
// temporary directories.
func openEmbedded(b *testing.B, eng *Engine) *deployment {
	b.Helper()
	dir := b.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "visage.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	idx, err := index.OpenHNSW(filepath.Join(dir, "hnsw"), embed.Dim, index.DefaultHNSWParams())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = idx.Close() })
	return &deployment{name: "embedded", svc: newBenchService(b, eng, st, idx)}
}

// openScaleout opens the scale-out deployment: Postgres on a fresh pgtest
// database and Qdrant's adapter against the in-process server on
// 127.0.0.1.
func openScaleout(b *testing.B, eng *Engine) *deployment {
	b.Helper()
	ctx := context.Background()
	st, err := store.OpenPostgres(ctx, pgtest.New(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	srv := qdranttest.Start(b, qdranttest.Options{})
	idx, err := index.OpenQdrant(ctx, index.QdrantConfig{Addr: srv.Addr(), Dim: embed.Dim, Model: eng.ModelID()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = idx.Close() })
	_, pg := pgtest.ServerCPU()
	return &deployment{name: "scaleout", svc: newBenchService(b, eng, st, idx), postgres: pg}
}

// prefill enrolls every photo as a subject of its own into d, from
// backendWorkers goroutines, and returns the photos that enrolled with
// their faces; the subjects of the others are deleted.
func prefill(b *testing.B, d *deployment, photos []photo) []photo {
	b.Helper()
	ctx := context.Background()
	ok := make([]bool, len(photos))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range backendWorkers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(photos); i = int(next.Add(1) - 1) {
				p := &photos[i]
				sub, err := d.svc.Store().CreateSubject(ctx, store.Subject{Collection: benchCollection, ExternalID: p.name, DisplayName: p.person})
				if err != nil {
					b.Error(err)
					return
				}
				res, err := d.svc.Enroll(ctx, "bench", benchCollection, sub.ID, [][]byte{p.data})
				if err != nil {
					b.Error(err)
					return
				}
				if res[0].Status == StatusEnrolled {
					p.face, ok[i] = res[0].Face, true
				} else if err := d.svc.DeleteSubject(ctx, "bench", benchCollection, sub.ID); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	var out []photo
	for i, p := range photos {
		if ok[i] {
			out = append(out, p)
		}
	}
	if len(out) < len(photos)*9/10 {
		b.Fatalf("only %d of %d photos enrolled", len(out), len(photos))
	}
	return out
}

// copyGallery stores the enrolled faces into d as enrollment does
// (subject, face, vector, mark indexed), without the engine.
func copyGallery(b *testing.B, d *deployment, enrolled []photo) {
	b.Helper()
	ctx := context.Background()
	st := d.svc.store
	for _, p := range enrolled {
		sub, err := st.CreateSubject(ctx, store.Subject{Collection: benchCollection, ExternalID: p.name, DisplayName: p.person})
		if err != nil {
			b.Fatal(err)
		}
		f, _, err := st.InsertFace(ctx, newFace(p.face, sub.ID))
		if err != nil {
			b.Fatal(err)
		}
		if err := d.svc.index.Upsert(ctx, space(benchCollection), []index.Item{{Key: f.Key, Vector: f.Descriptor}}); err != nil {
			b.Fatal(err)
		}
		if err := st.MarkFacesIndexed(ctx, []uint64{f.Key}); err != nil {
			b.Fatal(err)
		}
	}
}

// newFace is face f enrolled again, for subject subjectID.
func newFace(f store.Face, subjectID string) store.Face {
	return store.Face{SubjectID: subjectID, Collection: benchCollection, Descriptor: f.Descriptor, ModelID: f.ModelID,
		Box: f.Box, Landmarks: f.Landmarks, Quality: f.Quality, ImageSHA256: f.ImageSHA256}
}

// identifyStoreOnly is Identify without the engine, for one face with
// descriptor f.Descriptor: the same store and index calls.
func identifyStoreOnly(ctx context.Context, svc *Service, f store.Face) error {
	coll, err := svc.store.GetCollection(ctx, benchCollection)
	if err != nil {
		return err
	}
	op, err := svc.operating(ctx, coll, PolicyOf(coll))
	if err != nil {
		return err
	}
	var d embed.Descriptor
	copy(d[:], f.Descriptor)
	cands, err := svc.candidates(ctx, svc.neighbours(benchCollection), op, d, 5, MatchFaces, benchCollection)
	if err != nil {
		return err
	}
	matches := len(assign([][]Candidate{cands}, op))
	if matches != 1 {
		return fmt.Errorf("identify face %s: no match", f.ID)
	}
	svc.audit(ctx, store.Event{Kind: "identify", KeyID: "bench", Collection: benchCollection, Outcome: "1/1 matched",
		Detail: jsonDetail(map[string]any{"faces": 1, "matches": matches, "threshold": op.Distance, "best_distances": []float64{round3(cands[0].Distance)}})})
	return nil
}

// enrollStoreOnly is the enroll operation without the engine: a new
// subject and p's face, with the store and index calls of Enroll.
func enrollStoreOnly(ctx context.Context, d *deployment, p photo) error {
	st := d.svc.store
	sub, err := st.CreateSubject(ctx, store.Subject{Collection: benchCollection,
		ExternalID: "store-" + strconv.FormatInt(d.subjects.Add(1), 10), DisplayName: p.person})
	if err != nil {
		return err
	}
	if _, err := st.GetSubject(ctx, benchCollection, sub.ID); err != nil {
		return err
	}
	f, created, err := st.InsertFace(ctx, newFace(p.face, sub.ID))
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("face of %s not created", p.name)
	}
	if err := d.svc.index.Upsert(ctx, space(benchCollection), []index.Item{{Key: f.Key, Vector: f.Descriptor}}); err != nil {
		return err
	}
	if err := st.MarkFacesIndexed(ctx, []uint64{f.Key}); err != nil {
		return err
	}
	d.svc.audit(ctx, store.Event{Kind: "enroll", KeyID: "bench", Collection: benchCollection, SubjectID: sub.ID, FaceID: f.ID,
		Outcome: StatusEnrolled, Detail: jsonDetail(map[string]any{"status": StatusEnrolled})})
	return nil
}

// measure runs op(0) … op(b.N-1) from backendWorkers goroutines and
// reports the throughput as unit, the mean latency and the CPU time per
// operation.
func measure(b *testing.B, d *deployment, unit string, op func(i int) error) {
	b.Helper()
	var next, busy atomic.Int64
	var wg sync.WaitGroup
	cpu0 := processCPU(b)
	pg0, _ := pgtest.ServerCPU()
	b.ResetTimer()
	for range backendWorkers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(b.N); i = next.Add(1) - 1 {
				t := time.Now()
				if err := op(int(i)); err != nil {
					b.Error(err)
					return
				}
				busy.Add(int64(time.Since(t)))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), unit)
	b.ReportMetric(float64(busy.Load())/n/1e6, "ms/op-latency")
	b.ReportMetric(float64(processCPU(b)-cpu0)/n/1e6, "cpu-ms/op")
	if d.postgres {
		pg1, _ := pgtest.ServerCPU()
		b.ReportMetric(float64(pg1-pg0)/n/1e6, "pg-cpu-ms/op")
	}
}

// processCPU is the CPU time this process has used so far.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
