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
	for _, tc := range []struct {
		name string
		open func(b *testing.B) storeUnderTest
	}{
		{"sqlite", func(b *testing.B) storeUnderTest {
			s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "jobs.db"))
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
	} {
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
