//go:build linux

package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/visage/visage/internal/pgtest"
)

// BenchmarkImport100k bulk-loads 100,000 faces (25,000 subjects × 4 faces
// of random 128-D unit descriptors, a box, a model id and an image hash;
// no landmarks or quality, as an import of precomputed descriptors has
// none) into a fresh database per iteration, 1,000 subjects (4,000
// faces) per ImportSubjects call, each call followed by MarkFacesIndexed
// of its faces, as a load that then indexes them does. Postgres (COPY,
// on a pgtest database) and SQLite (prepared INSERTs, a file in a
// temporary directory, synchronous=FULL) in one run. One iteration takes
// seconds, so the default -benchtime runs one; run with
//
//	go test -run '^$' -bench Import100k -count 3 ./store/
//
// Metrics: faces/s of the ImportSubjects calls alone, faces/s-with-mark
// of ImportSubjects + MarkFacesIndexed, cpu-s/op of this process (the
// client, and all of SQLite) and, for Postgres, pg-cpu-s/op of the
// server's processes.
func BenchmarkImport100k(b *testing.B) {
	const subjects, perSubject, batch = 25_000, 4, 1_000
	items := randomImport(subjects, perSubject)
	for _, tc := range []struct {
		name string
		open func(b *testing.B) importer
	}{
		{"postgres", func(b *testing.B) importer {
			s, err := OpenPostgres(context.Background(), pgtest.New(b))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"sqlite", func(b *testing.B) importer {
			s, err := OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "import.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			var importing, marking, cpu, pgCPU time.Duration
			for b.Loop() {
				b.StopTimer()
				s := tc.open(b)
				if _, err := s.CreateCollection(ctx, Collection{Name: "imp", Threshold: 0.6}); err != nil {
					b.Fatal(err)
				}
				cpu0 := cpuTime(b)
				pg0, _ := pgtest.ServerCPU()
				b.StartTimer()
				for start := 0; start < len(items); start += batch {
					t0 := time.Now()
					faces, err := s.ImportSubjects(ctx, "imp", items[start:min(start+batch, len(items))])
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					if err := s.MarkFacesIndexed(ctx, faceKeys(faces)); err != nil {
						b.Fatal(err)
					}
					importing += t1.Sub(t0)
					marking += time.Since(t1)
				}
				b.StopTimer()
				cpu += cpuTime(b) - cpu0
				pg1, _ := pgtest.ServerCPU()
				pgCPU += pg1 - pg0
				st, err := s.CollectionStats(ctx, "imp")
				if err != nil || st.Faces != subjects*perSubject {
					b.Fatalf("CollectionStats after the import: %+v, %v", st, err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			faces := float64(b.N * subjects * perSubject)
			b.ReportMetric(faces/importing.Seconds(), "faces/s")
			b.ReportMetric(faces/(importing+marking).Seconds(), "faces/s-with-mark")
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			if _, ok := pgtest.ServerCPU(); ok && tc.name == "postgres" {
				b.ReportMetric(pgCPU.Seconds()/float64(b.N), "pg-cpu-s/op")
			}
		})
	}
}

// importer is what BenchmarkImport100k needs of a store.
type importer interface {
	CreateCollection(ctx context.Context, c Collection) (Collection, error)
	ImportSubjects(ctx context.Context, collection string, items []SubjectFaces) ([]Face, error)
	MarkFacesIndexed(ctx context.Context, keys []uint64) error
	CollectionStats(ctx context.Context, name string) (CollectionStats, error)
	Close() error
}

// randomImport returns nSubjects subjects of perSubject faces with random
// unit descriptors (a fixed seed).
func randomImport(nSubjects, perSubject int) []SubjectFaces {
	rng := rand.New(rand.NewPCG(7, 11))
	items := make([]SubjectFaces, nSubjects)
	for i := range items {
		items[i].Subject = Subject{ExternalID: fmt.Sprintf("ext-%d", i), DisplayName: fmt.Sprintf("Person %d", i)}
		for j := range perSubject {
			d := make([]float32, 128)
			var norm float64
			for k := range d {
				x := rng.NormFloat64()
				d[k] = float32(x)
				norm += x * x
			}
			for k := range d {
				d[k] = float32(float64(d[k]) / math.Sqrt(norm))
			}
			items[i].Faces = append(items[i].Faces, Face{Descriptor: d, ModelID: "bench", Box: [4]int{40, 52, 190, 202},
				ImageSHA256: fmt.Sprintf("%064x", i*perSubject+j)})
		}
	}
	return items
}
