package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// wantCountsAsRows checks that CollectionStats' counts, kept by triggers
// (migration 0007), are what counting the rows gives.
func wantCountsAsRows(t *testing.T, s storeUnderTest, collection, when string) {
	t.Helper()
	st, err := s.CollectionStats(context.Background(), collection)
	noErr(t, "CollectionStats", err)
	got := fmt.Sprint(st.Subjects, " ", st.Faces, " ", st.PendingFaces)
	want := fmt.Sprint(countRows(t, s, "subject", "collection = ?", collection), " ",
		countRows(t, s, "face", "collection = ? AND state <> 'deleting'", collection), " ",
		countRows(t, s, "face", "collection = ? AND state = 'pending'", collection))
	if got != want {
		t.Errorf("%s: %s subjects, faces, pending faces; counting the rows gives %s", when, got, want)
	}
}

// testCollectionCounts follows the counts through every way of writing
// subjects and faces, a collection deleted and created again under its
// name, and concurrent enrollments beside readers (whose reads fold
// PostgreSQL's rows of differences).
func testCollectionCounts(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	setDeleteBatch(t, s, 3)
	mustCollection(t, s, "c")
	mustCollection(t, s, "other")
	wantCountsAsRows(t, s, "c", "new collection")

	a, bee := mustSubject(t, s, "c", "a", "A"), mustSubject(t, s, "c", "b", "B")
	mustSubject(t, s, "c", "empty", "")
	mustFace(t, s, mustSubject(t, s, "other", "o", ""), "1")
	fa1, fa2, fb1 := mustFace(t, s, a, "1"), mustFace(t, s, a, "2"), mustFace(t, s, bee, "1")
	if _, inserted, err := s.InsertFace(ctx, Face{SubjectID: a.ID, Collection: "c", Descriptor: descriptor(1), ModelID: "test", ImageSHA256: "1"}); err != nil || inserted {
		t.Fatalf("the same image again: inserted %v, %v", inserted, err)
	}
	wantCountsAsRows(t, s, "c", "enrolled")

	noErr(t, "index", s.MarkFacesIndexed(ctx, []uint64{fa1.Key, fb1.Key}))
	noErr(t, "index again", s.MarkFacesIndexed(ctx, []uint64{fa1.Key}))
	wantCountsAsRows(t, s, "c", "indexed")

	_, err := s.MarkFaceDeleting(ctx, "c", fa2.ID)
	noErr(t, "MarkFaceDeleting", err)
	wantCountsAsRows(t, s, "c", "a pending face being deleted")
	noErr(t, "index a face being deleted", s.MarkFacesIndexed(ctx, []uint64{fa2.Key}))
	noErr(t, "DeleteFaces", s.DeleteFaces(ctx, []uint64{fa2.Key}))
	wantCountsAsRows(t, s, "c", "a face deleted")

	_, err = s.ImportSubjects(ctx, "c", []SubjectFaces{
		{Subject: Subject{ExternalID: "i1"}, Faces: []Face{*batchFace(1, "x"), *batchFace(2, "y")}},
		{Subject: Subject{ExternalID: "i2"}},
	})
	noErr(t, "ImportSubjects", err)
	wantCountsAsRows(t, s, "c", "ImportSubjects")

	items := make([]ImportItem, 6)
	for i := range items {
		items[i] = ImportItem{Path: fmt.Sprintf("p%d.jpg", i), ExternalID: fmt.Sprint("j", i%3)}
	}
	job := mustBatchJob(t, s, "c", "", items)
	_, err = s.StartImportJob(ctx, job.ID)
	noErr(t, "StartImportJob", err)
	mustEnrollBatch(t, s, job.ID, []ImportOutcome{faceOutcome(0, 10, "j0"), faceOutcome(1, 11, "j1"), noFaceOutcome(2, ItemFailed, "no_face")})
	mustEnrollBatch(t, s, job.ID, []ImportOutcome{faceOutcome(3, 10, "j0"), faceOutcome(4, 12, "j1b"), faceOutcome(5, 13, "j2")})
	wantCountsAsRows(t, s, "c", "import batches")
	_, err = s.FinishImportJob(ctx, job.ID, ImportDone, "")
	noErr(t, "FinishImportJob", err)
	// PostgreSQL folds an import's rows of differences when it ends.
	if n := countRows(t, s, "collection_count", "collection = ?", "c"); n != 1 {
		t.Errorf("%d rows of counts after the import, want 1", n)
	}
	wantCountsAsRows(t, s, "c", "import finished")

	keys, err := s.MarkSubjectDeleting(ctx, "c", a.ID)
	noErr(t, "MarkSubjectDeleting", err)
	wantCountsAsRows(t, s, "c", "a subject being deleted")
	noErr(t, "DeleteFaces of the subject", s.DeleteFaces(ctx, keys))
	noErr(t, "DeleteSubject", s.DeleteSubject(ctx, "c", a.ID))
	// A subject deleted with its faces still there: they go by cascade.
	_, err = s.MarkSubjectDeleting(ctx, "c", bee.ID)
	noErr(t, "MarkSubjectDeleting", err)
	noErr(t, "DeleteSubject with faces", s.DeleteSubject(ctx, "c", bee.ID))
	wantCountsAsRows(t, s, "c", "subjects deleted")
	wantCountsAsRows(t, s, "other", "another collection")

	noErr(t, "MarkCollectionDeleting", s.MarkCollectionDeleting(ctx, "c"))
	noErr(t, "DeleteCollection", s.DeleteCollection(ctx, "c"))
	mustCollection(t, s, "c")
	wantCountsAsRows(t, s, "c", "the collection created again")
	if n := countRows(t, s, "collection_count", "collection = ?", "c"); n > 1 {
		t.Errorf("%d rows of counts for a new collection", n)
	}

	t.Run("concurrent writers and readers", func(t *testing.T) {
		const writers, perWriter = 4, 60
		var wg sync.WaitGroup
		done := make(chan struct{})
		for w := range writers {
			sub := mustSubject(t, s, "c", fmt.Sprint("w", w), "")
			wg.Go(func() {
				for i := range perWriter {
					f, _, err := s.InsertFace(ctx, Face{SubjectID: sub.ID, Collection: "c", Descriptor: descriptor(i),
						ModelID: "test", ImageSHA256: fmt.Sprint(i)})
					if err != nil {
						t.Errorf("writer %d: InsertFace: %v", w, err)
						return
					}
					if i%3 == 0 {
						if err := s.MarkFacesIndexed(ctx, []uint64{f.Key}); err != nil {
							t.Errorf("writer %d: MarkFacesIndexed: %v", w, err)
							return
						}
					}
				}
			})
		}
		var readers sync.WaitGroup
		for range 2 {
			readers.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					if _, err := s.CollectionStats(ctx, "c"); err != nil {
						t.Errorf("CollectionStats: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(done)
		readers.Wait()
		wantCountsAsRows(t, s, "c", "after concurrent writes")
		st, err := s.CollectionStats(ctx, "c")
		noErr(t, "CollectionStats", err)
		if st.Faces != writers*perWriter || st.PendingFaces != writers*perWriter*2/3 {
			t.Errorf("after concurrent writes: %+v", st)
		}
		if n := countRows(t, s, "collection_count", "collection = ?", "c"); n > foldCountsAbove+1 {
			t.Errorf("%d rows of counts after reads, want them folded", n)
		}
	})
}
