//go:build unix

package store

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The 1M-face benchmarks build their gallery with bulkFaces (about a
// minute); run them one at a time, for example
//
//	go test -run '^$' -bench 1M -benchtime 5x ./store/
//
// Besides ns/op they report cpu-ms/op, the process's CPU time per
// operation, which other load on the machine disturbs less than the
// wall-clock time.

// cpuTime is the CPU time the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs op for b.Loop's iterations and reports its CPU time.
func loop(b *testing.B, op func()) {
	b.Helper()
	start := cpuTime(b)
	for b.Loop() {
		op()
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N)/1e6, "cpu-ms/op")
}

// gallery1M is a store holding one collection "big" of 1M indexed faces
// (100k subjects of 10 faces) in a file under a temporary directory.
func gallery1M(b *testing.B) (*SQLite, []uint64) {
	b.Helper()
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	if _, err := s.CreateCollection(ctx, Collection{Name: "big", Threshold: 0.6}); err != nil {
		b.Fatal(err)
	}
	return s, bulkFaces(b, s, "big", 100_000, 10)
}

// BenchmarkBulkInsert1M measures writing 1M faces of 100k subjects in one
// transaction with prepared statements, as an import would.
func BenchmarkBulkInsert1M(b *testing.B) {
	ctx := context.Background()
	var cpu time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		s, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), fmt.Sprint(i, ".db")))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.CreateCollection(ctx, Collection{Name: "big", Threshold: 0.6}); err != nil {
			b.Fatal(err)
		}
		start := cpuTime(b)
		b.StartTimer()
		bulkFaces(b, s, "big", 100_000, 10)
		b.StopTimer()
		cpu += cpuTime(b) - start
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkIndexedKeys1M measures IndexedKeys, the reconciliation of the
// vector index against the store, over a 1M-face collection, and the
// other full-collection reads beside it.
func BenchmarkIndexedKeys1M(b *testing.B) {
	s, keys := gallery1M(b)
	ctx := context.Background()
	b.Run("IndexedKeys", func(b *testing.B) {
		loop(b, func() {
			got, err := s.IndexedKeys(ctx, "big")
			if err != nil {
				b.Fatal(err)
			}
			if len(got) != len(keys) {
				b.Fatalf("IndexedKeys returned %d keys, want %d", len(got), len(keys))
			}
		})
	})
	b.Run("ScanVectors", func(b *testing.B) {
		loop(b, func() {
			n := 0
			after := uint64(0)
			for {
				vs, err := s.ScanVectors(ctx, "big", after, 10000)
				if err != nil {
					b.Fatal(err)
				}
				if len(vs) == 0 {
					break
				}
				n += len(vs)
				after = vs[len(vs)-1].Key
			}
			if n != len(keys) {
				b.Fatalf("ScanVectors returned %d vectors, want %d", n, len(keys))
			}
		})
	})
	b.Run("Vectors10k", func(b *testing.B) {
		some := keys[:0:0]
		for i := 0; i < len(keys); i += 100 {
			some = append(some, keys[i])
		}
		loop(b, func() {
			vs, err := s.Vectors(ctx, "big", some)
			if err != nil || len(vs) != len(some) {
				b.Fatalf("Vectors: %d, %v", len(vs), err)
			}
		})
	})
	b.Run("FaceRefs100", func(b *testing.B) {
		hits := keys[:0:0]
		for i := range 100 {
			hits = append(hits, keys[i*len(keys)/100])
		}
		loop(b, func() {
			refs, err := s.FaceRefs(ctx, "big", hits)
			if err != nil || len(refs) != len(hits) {
				b.Fatalf("FaceRefs: %d refs, %v", len(refs), err)
			}
		})
	})
	b.Run("CollectionStats", func(b *testing.B) {
		loop(b, func() {
			st, err := s.CollectionStats(ctx, "big")
			if err != nil || st.Faces != int64(len(keys)) {
				b.Fatalf("CollectionStats: %+v, %v", st, err)
			}
		})
	})
	b.Run("TopSubjects", func(b *testing.B) {
		loop(b, func() {
			top, err := s.TopSubjects(ctx, "big", 10)
			if err != nil || len(top) != 10 {
				b.Fatalf("TopSubjects: %d, %v", len(top), err)
			}
		})
	})
	b.Run("ListSubjectsSearch", func(b *testing.B) {
		loop(b, func() {
			subs, _, err := s.ListSubjects(ctx, SubjectQuery{Collection: "big", Search: "son 9999"})
			if err != nil || len(subs) != 11 {
				b.Fatalf("ListSubjects: %d, %v", len(subs), err)
			}
		})
	})
}

// BenchmarkDeleteCollection1M measures DeleteCollection of a 1M-face
// collection, and reports how long single-face enrollments into another
// collection, running meanwhile, waited at most.
func BenchmarkDeleteCollection1M(b *testing.B) {
	ctx := context.Background()
	var worst time.Duration
	inserts := 0
	for b.Loop() {
		b.StopTimer()
		s, _ := gallery1M(b)
		if _, err := s.CreateCollection(ctx, Collection{Name: "small", Threshold: 0.6}); err != nil {
			b.Fatal(err)
		}
		sub, err := s.CreateSubject(ctx, Subject{Collection: "small"})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			for {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				_, _, err := s.InsertFace(ctx, Face{SubjectID: sub.ID, Descriptor: make([]float32, 128), ImageSHA256: fmt.Sprint(inserts)})
				if err != nil {
					b.Error(err)
					return
				}
				worst = max(worst, time.Since(start))
				inserts++
			}
		}()
		b.StartTimer()
		if err := s.DeleteCollection(ctx, "big"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		close(done)
		<-finished
		b.StartTimer()
	}
	b.ReportMetric(float64(worst.Milliseconds()), "max-insert-ms")
	b.ReportMetric(float64(inserts)/float64(b.N), "inserts/op")
}
