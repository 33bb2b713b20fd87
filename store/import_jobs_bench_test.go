package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/visage/visage/internal/pgtest"
)

// BenchmarkCreateImportJob100k creates an import job of 100,000 items (a
// path, an external id and a display name each, as a manifest gives them)
// in a fresh database per iteration, then records every outcome in
// batches of recordBatch, as an import's workers do, on SQLite (one
// prepared INSERT per item in one transaction, synchronous=FULL) and
// Postgres (COPY, on a pgtest database). Run with
//
//	go test -run '^$' -bench CreateImportJob100k -count 3 ./store/
//
// Metrics: items/s of CreateImportJob, and recorded-items/s of the
// RecordImportItems calls (a commit, and in SQLite an fsync, per batch).
func BenchmarkCreateImportJob100k(b *testing.B) {
	const n, recordBatch = 100_000, 64
	items := importItems(n)
	for _, tc := range benchStores() {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			var creating, recording time.Duration
			for b.Loop() {
				b.StopTimer()
				s := tc.open(b)
				if _, err := s.CreateCollection(ctx, Collection{Name: "c", Threshold: 0.6}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				job, err := s.CreateImportJob(ctx, ImportJob{Collection: "c"}, items)
				if err != nil {
					b.Fatal(err)
				}
				creating += time.Since(t0)
				t1 := time.Now()
				results := make([]ImportItem, 0, recordBatch)
				for seq := range n {
					results = append(results, ImportItem{Seq: seq, State: ItemEnrolled,
						SubjectID: fmt.Sprint("s", seq/3), FaceID: fmt.Sprint("f", seq)})
					if len(results) == recordBatch || seq == n-1 {
						if _, err := s.RecordImportItems(ctx, job.ID, results); err != nil {
							b.Fatal(err)
						}
						results = results[:0]
					}
				}
				recording += time.Since(t1)
				b.StopTimer()
				if got, err := s.GetImportJob(ctx, job.ID); err != nil || got.Enrolled != n {
					b.Fatalf("job after recording: %+v, %v", got, err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*n)/creating.Seconds(), "items/s")
			b.ReportMetric(float64(b.N*n)/recording.Seconds(), "recorded-items/s")
		})
	}
}

// BenchmarkEnrollImportBatch writes an import job's results as its writer
// does: 3,200 photos of 800 subjects in batches of 32, each an
// EnrollImportBatch (faces, new subjects, audit events, outcomes) then a
// MarkFacesIndexed, on SQLite and Postgres. It shows what the triggers of
// enrollment counters and collection counts cost a batch. Run with
//
//	go test -run '^$' -bench EnrollImportBatch -count 3 ./store/
//
// Metric: photos/s.
func BenchmarkEnrollImportBatch(b *testing.B) {
	const subjects, perSubject, batch = 800, 4, 32
	items := make([]ImportItem, 0, subjects*perSubject)
	for i := range subjects * perSubject {
		items = append(items, ImportItem{Path: fmt.Sprintf("s%04d/%d.jpg", i/perSubject, i%perSubject),
			ExternalID: fmt.Sprintf("s%04d", i/perSubject), DisplayName: fmt.Sprint("Person ", i/perSubject)})
	}
	for _, tc := range benchStores() {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			var writing time.Duration
			for b.Loop() {
				b.StopTimer()
				s := tc.open(b)
				if _, err := s.CreateCollection(ctx, Collection{Name: "c", Threshold: 0.6}); err != nil {
					b.Fatal(err)
				}
				job, err := s.CreateImportJob(ctx, ImportJob{Collection: "c"}, items)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.StartImportJob(ctx, job.ID); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				for start := 0; start < len(items); start += batch {
					outcomes := make([]ImportOutcome, 0, batch)
					for seq := start; seq < start+batch; seq++ {
						outcomes = append(outcomes, faceOutcome(seq, seq, fmt.Sprintf("%064x", seq)))
					}
					got, err := s.EnrollImportBatch(ctx, job.ID, outcomes)
					if err != nil {
						b.Fatal(err)
					}
					keys := make([]uint64, 0, len(got.Faces))
					for _, f := range got.Faces {
						keys = append(keys, f.Key)
					}
					if err := s.MarkFacesIndexed(ctx, keys); err != nil {
						b.Fatal(err)
					}
				}
				writing += time.Since(t0)
				b.StopTimer()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.N*len(items))/writing.Seconds(), "photos/s")
		})
	}
}

// benchStore opens a store on a fresh database for a benchmark.
type benchStore struct {
	name string
	open func(b *testing.B) storeUnderTest
}

// benchStores are the two stores on fresh databases: a SQLite file in the
// benchmark's temporary folder, a pgtest database.
func benchStores() []benchStore {
	return []benchStore{
		{"sqlite", func(b *testing.B) storeUnderTest {
			s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"postgres", func(b *testing.B) storeUnderTest {
			s, err := OpenPostgres(context.Background(), pgtest.New(b))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
}
