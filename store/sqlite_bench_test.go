package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
)

// bulkFaces adds nSubjects subjects with perSubject faces each to
// collection (which must exist), in one transaction with prepared
// statements, the way an import would, and returns the face keys. States
// cycle through states, one face after the other.
func bulkFaces(tb testing.TB, s *SQLite, collection string, nSubjects, perSubject int, states ...FaceState) []uint64 {
	tb.Helper()
	if len(states) == 0 {
		states = []FaceState{FaceIndexed}
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(nSubjects), uint64(perSubject)))
	keys := make([]uint64, 0, nSubjects*perSubject)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = rollback(tx) }()
	subStmt, err := tx.PrepareContext(ctx, `INSERT INTO subject
		(id, collection, external_id, display_name, name_fold, metadata, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, '{}', ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	faceStmt, err := tx.PrepareContext(ctx, `INSERT INTO face (id, subject_id, collection, descriptor, model_id,
		box_x0, box_y0, box_x1, box_y1, image_sha256, state, created_at)
		VALUES (?, ?, ?, ?, 'bench', 0, 0, 100, 100, ?, ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	d := make([]float32, 128)
	now := time.Now().UnixNano()
	n := 0
	for i := range nSubjects {
		sid := uuid.NewString()
		name := fmt.Sprintf("Person %d", i)
		if _, err := subStmt.ExecContext(ctx, sid, collection, fmt.Sprintf("ext-%d", i), name, foldName(name), now+int64(i), now+int64(i)); err != nil {
			tb.Fatal(err)
		}
		for j := range perSubject {
			for k := range d {
				d[k] = rng.Float32()
			}
			res, err := faceStmt.ExecContext(ctx, uuid.NewString(), sid, collection, encodeDescriptor(d),
				fmt.Sprintf("sha-%d-%d", i, j), string(states[n%len(states)]), now+int64(n))
			if err != nil {
				tb.Fatal(err)
			}
			key, err := res.LastInsertId()
			if err != nil {
				tb.Fatal(err)
			}
			keys = append(keys, uint64(key))
			n++
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return keys
}

// gallery1M is a store holding one collection "big" of 1M faces (100k
// subjects of 10 faces) in a file under a temporary directory.
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
	start := time.Now()
	keys := bulkFaces(b, s, "big", 100_000, 10)
	b.Logf("bulk insert of %d faces (100k subjects) in one transaction: %v", len(keys), time.Since(start))
	return s, keys
}

// BenchmarkIndexedKeys1M measures IndexedKeys, the reconciliation of the
// vector index against the store, over a 1M-face collection, and the
// other full-collection reads beside it.
func BenchmarkIndexedKeys1M(b *testing.B) {
	s, keys := gallery1M(b)
	ctx := context.Background()
	b.Run("IndexedKeys", func(b *testing.B) {
		for b.Loop() {
			got, err := s.IndexedKeys(ctx, "big")
			if err != nil {
				b.Fatal(err)
			}
			if len(got) != len(keys) {
				b.Fatalf("IndexedKeys returned %d keys, want %d", len(got), len(keys))
			}
		}
	})
	b.Run("ScanVectors", func(b *testing.B) {
		for b.Loop() {
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
		}
	})
	b.Run("FaceRefs100", func(b *testing.B) {
		hits := keys[:0:0]
		for i := range 100 {
			hits = append(hits, keys[i*len(keys)/100])
		}
		for b.Loop() {
			refs, err := s.FaceRefs(ctx, "big", hits)
			if err != nil || len(refs) != len(hits) {
				b.Fatalf("FaceRefs: %d refs, %v", len(refs), err)
			}
		}
	})
	b.Run("CollectionStats", func(b *testing.B) {
		for b.Loop() {
			st, err := s.CollectionStats(ctx, "big")
			if err != nil || st.Faces != int64(len(keys)) {
				b.Fatalf("CollectionStats: %+v, %v", st, err)
			}
		}
	})
	b.Run("TopSubjects", func(b *testing.B) {
		for b.Loop() {
			top, err := s.TopSubjects(ctx, "big", 10)
			if err != nil || len(top) != 10 {
				b.Fatalf("TopSubjects: %d, %v", len(top), err)
			}
		}
	})
	b.Run("ListSubjectsSearch", func(b *testing.B) {
		for b.Loop() {
			subs, _, err := s.ListSubjects(ctx, SubjectQuery{Collection: "big", Search: "son 9999"})
			if err != nil || len(subs) != 11 {
				b.Fatalf("ListSubjects: %d, %v", len(subs), err)
			}
		}
	})
}

// BenchmarkDeleteCollection1M measures DeleteCollection of a 1M-face
// collection and how long a concurrent single-face write waits at most.
func BenchmarkDeleteCollection1M(b *testing.B) {
	ctx := context.Background()
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
		worst := make(chan time.Duration)
		go func() {
			var w time.Duration
			for i := 0; ; i++ {
				select {
				case <-done:
					worst <- w
					return
				default:
				}
				start := time.Now()
				if _, _, err := s.InsertFace(ctx, Face{SubjectID: sub.ID, Descriptor: make([]float32, 128), ImageSHA256: fmt.Sprint(i)}); err != nil {
					b.Error(err)
				}
				w = max(w, time.Since(start))
			}
		}()
		b.StartTimer()
		if err := s.DeleteCollection(ctx, "big"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		close(done)
		b.Logf("longest concurrent InsertFace during the delete: %v", <-worst)
		b.StartTimer()
	}
}
