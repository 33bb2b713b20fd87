package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// The conformance tests of EnrollImportBatch: an import job's results
// written batch by batch, each batch in one transaction (subjects
// created, faces enrolled, items recorded, events appended).

// batchFace is a face found in a photo with hash sha, as an import job
// gives it to EnrollImportBatch; seed varies the descriptor and box.
func batchFace(seed int, sha string) *Face {
	return &Face{
		Descriptor: descriptor(seed), ModelID: "dlib-test", Box: [4]int{seed, 2, 30 + seed, 40},
		Landmarks: json.RawMessage(`[[1, 2], [3, 4]]`), Quality: json.RawMessage(`{"sharpness": 12.5}`),
		ImageSHA256: sha,
	}
}

// faceOutcome is the outcome of item seq: a face (see batchFace).
func faceOutcome(seq, seed int, sha string) ImportOutcome {
	return ImportOutcome{Seq: seq, Face: batchFace(seed, sha)}
}

// noFaceOutcome is the outcome of item seq without a face: state (skipped
// or failed) and code.
func noFaceOutcome(seq int, state ItemState, code string) ImportOutcome {
	return ImportOutcome{Seq: seq, State: state, Code: code, Reason: fmt.Sprintf("%s in photo %d", code, seq)}
}

// mustBatchJob creates a job of collection, started by key keyID, with
// items.
func mustBatchJob(t *testing.T, s storeUnderTest, collection, keyID string, items []ImportItem) ImportJob {
	t.Helper()
	job, err := s.CreateImportJob(context.Background(), ImportJob{Collection: collection, KeyID: keyID}, items)
	noErr(t, "CreateImportJob", err)
	return job
}

// mustEnrollBatch writes a batch and checks that what it returns is what
// is stored: the job, the items (in seq order, each once), the faces
// (the faces of the items, the new ones pending).
func mustEnrollBatch(t *testing.T, s storeUnderTest, jobID string, outcomes []ImportOutcome) ImportBatch {
	t.Helper()
	ctx := context.Background()
	got, err := s.EnrollImportBatch(ctx, jobID, outcomes)
	noErr(t, "EnrollImportBatch", err)
	stored, err := s.GetImportJob(ctx, jobID)
	noErr(t, "GetImportJob", err)
	if !importJobsEqual(got.Job, stored) {
		t.Fatalf("EnrollImportBatch returned job %+v, stored %+v", got.Job, stored)
	}
	items := map[int]ImportItem{}
	for _, it := range allImportItems(t, s, jobID, nil, 1000) {
		items[it.Seq] = it
	}
	for i, it := range got.Items {
		if i > 0 && it.Seq <= got.Items[i-1].Seq {
			t.Fatalf("returned items not in seq order, each once: %v", itemSeqs(got.Items))
		}
		if !importItemsEqual(it, items[it.Seq]) {
			t.Fatalf("returned item %+v, stored %+v", it, items[it.Seq])
		}
		if it.State == ItemPending {
			t.Fatalf("returned item %d is pending", it.Seq)
		}
	}
	faces := map[string]Face{}
	for _, f := range got.Faces {
		sf, err := s.GetFace(ctx, stored.Collection, f.ID)
		noErr(t, "GetFace", err)
		if !facesEqual(f, sf) {
			t.Fatalf("returned face %s, stored %s", faceText(f), faceText(sf))
		}
		faces[f.ID] = f
	}
	// Every face returned is the face of an item returned, and the other
	// way round (an item failed as being deleted has no face to index).
	faced := map[string]bool{}
	for _, it := range got.Items {
		if it.State == ItemEnrolled || (it.State == ItemSkipped && it.Code == ItemExists) {
			f, ok := faces[it.FaceID]
			if !ok {
				t.Fatalf("item %d (%s) has face %q, not among the returned faces", it.Seq, it.State, it.FaceID)
			}
			if f.SubjectID != it.SubjectID {
				t.Fatalf("item %d of subject %q has face %q of subject %q", it.Seq, it.SubjectID, f.ID, f.SubjectID)
			}
			if it.State == ItemEnrolled && f.State != FacePending {
				t.Fatalf("face %q enrolled by item %d is %s, want pending", f.ID, it.Seq, f.State)
			}
			faced[it.FaceID] = true
		}
	}
	for id := range faces {
		if !faced[id] {
			t.Fatalf("returned face %q belongs to no returned item", id)
		}
	}
	return got
}

// enrollEvents returns the enroll events of a collection, oldest first.
func enrollEvents(t *testing.T, s storeUnderTest, collection string) []Event {
	t.Helper()
	events, err := s.ListEvents(context.Background(), EventQuery{Kind: EventEnroll, Collection: collection, Limit: 1000})
	noErr(t, "ListEvents", err)
	slices.Reverse(events)
	return events
}

// importEventsBySeq returns the enroll events of collection written for
// job, by the seq in their detail; two events of one item are an error.
func importEventsBySeq(t *testing.T, s storeUnderTest, collection, jobID string) map[int]Event {
	t.Helper()
	out := map[int]Event{}
	for _, e := range enrollEvents(t, s, collection) {
		var d struct {
			Import string `json:"import"`
			Seq    *int   `json:"seq"`
		}
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatalf("event %d detail %s: %v", e.ID, e.Detail, err)
		}
		if d.Import != jobID {
			continue
		}
		if d.Seq == nil {
			t.Fatalf("event %d detail %s has no seq", e.ID, e.Detail)
		}
		if prev, ok := out[*d.Seq]; ok {
			t.Fatalf("item %d of job %s has two events: %s and %s", *d.Seq, jobID, eventText(prev), eventText(e))
		}
		out[*d.Seq] = e
	}
	return out
}

// eventText shows an event with its detail as text.
func eventText(e Event) string {
	return fmt.Sprintf("{id %d kind %s key %q collection %s subject %s face %s outcome %s detail %s}",
		e.ID, e.Kind, e.KeyID, e.Collection, e.SubjectID, e.FaceID, e.Outcome, e.Detail)
}

// subjectText shows a subject with its metadata as text.
func subjectText(sub Subject) string {
	return fmt.Sprintf("{id %s external id %q display name %q metadata %s faces %d}",
		sub.ID, sub.ExternalID, sub.DisplayName, sub.Metadata, sub.FaceCount)
}

// faceText shows a face without its descriptor, JSON as text.
func faceText(f Face) string {
	return fmt.Sprintf("{id %s key %d subject %s collection %s model %q box %v landmarks %s quality %s image %q state %s}",
		f.ID, f.Key, f.SubjectID, f.Collection, f.ModelID, f.Box, f.Landmarks, f.Quality, f.ImageSHA256, f.State)
}

// itemsBySeq indexes items by seq.
func itemsBySeq(items []ImportItem) map[int]ImportItem {
	out := make(map[int]ImportItem, len(items))
	for _, it := range items {
		out[it.Seq] = it
	}
	return out
}

func testEnrollImportBatch(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	// Every reading of the clock is a new instant, so that an updated_at
	// that did not move shows that nothing was written.
	steppingClock(t, s, time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), time.Second)

	t.Run("mixed batch", func(t *testing.T) {
		mustCollection(t, s, "mixed")
		old := mustSubject(t, s, "mixed", "old", "Old Name")
		// Spacing and key order that a JSON re-encoding would change.
		const adaMeta = `{"team": "blue",  "a": [1, 2.50]}`
		items := []ImportItem{
			{Path: "ada/1.jpg", ExternalID: "ada", DisplayName: "Ada", Metadata: json.RawMessage(adaMeta)},
			{Path: "old/1.jpg", ExternalID: "old", DisplayName: "New Name", Metadata: json.RawMessage(`{"x":1}`)},
			{Path: "cyd/1.jpg", ExternalID: "cyd", DisplayName: "Cyd"},
			{Path: "ada/2.jpg", ExternalID: "ada", DisplayName: "Ada Two", Metadata: json.RawMessage(`{"team":"red"}`)},
			{Path: "bob/1.jpg", ExternalID: "bob", DisplayName: "Bob"},
			{Path: "dan/1.jpg", ExternalID: "dan", DisplayName: "Dan"},
			{Path: "eve/1.jpg", ExternalID: "eve", DisplayName: "Eve"},
		}
		job := mustBatchJob(t, s, "mixed", "key-1", items)
		faces := map[int]*Face{0: batchFace(10, "a1"), 1: batchFace(11, "o1"), 3: batchFace(13, "a2"), 4: batchFace(14, "b1")}
		got := mustEnrollBatch(t, s, job.ID, []ImportOutcome{
			{Seq: 4, Face: faces[4]},
			noFaceOutcome(2, ItemFailed, "no_face"),
			{Seq: 0, Face: faces[0]},
			noFaceOutcome(5, ItemSkipped, "unsupported_format"),
			// A second outcome of item 0: the first is kept.
			noFaceOutcome(0, ItemFailed, "corrupt_image"),
			{Seq: 3, Face: faces[3]},
			{Seq: 1, Face: faces[1]},
		})

		if seqs := itemSeqs(got.Items); !slices.Equal(seqs, []int{0, 1, 2, 3, 4, 5}) {
			t.Fatalf("returned items %v, want 0 to 5 (item 6 had no outcome)", seqs)
		}
		if jobCounts(got.Job) != "7 6 4 1 1" {
			t.Errorf("job counts %s, want 7 6 4 1 1", jobCounts(got.Job))
		}
		ada, err := s.GetSubjectByExternalID(ctx, "mixed", "ada")
		noErr(t, "GetSubjectByExternalID(ada)", err)
		if ada.DisplayName != "Ada" || string(ada.Metadata) != adaMeta || ada.FaceCount != 2 {
			t.Errorf("subject ada %s, want display name Ada, metadata %s (from item 0), 2 faces", subjectText(ada), adaMeta)
		}
		bob, err := s.GetSubjectByExternalID(ctx, "mixed", "bob")
		noErr(t, "GetSubjectByExternalID(bob)", err)
		if bob.DisplayName != "Bob" || string(bob.Metadata) != `{}` || bob.FaceCount != 1 {
			t.Errorf("subject bob %s, want display name Bob, metadata {}, 1 face", subjectText(bob))
		}
		oldNow, err := s.GetSubjectByExternalID(ctx, "mixed", "old")
		noErr(t, "GetSubjectByExternalID(old)", err)
		if oldNow.ID != old.ID || oldNow.DisplayName != "Old Name" || string(oldNow.Metadata) != string(old.Metadata) ||
			oldNow.FaceCount != 1 {
			t.Errorf("existing subject %s, want %s unchanged with 1 face", subjectText(oldNow), subjectText(old))
		}
		for _, ext := range []string{"cyd", "dan", "eve"} {
			_, err := s.GetSubjectByExternalID(ctx, "mixed", ext)
			wantErr(t, "subject of an item without a face: "+ext, err, ErrNotFound)
		}
		if n := countRows(t, s, "subject", "collection = ?", "mixed"); n != 3 {
			t.Errorf("%d subjects, want 3 (ada, bob, old)", n)
		}

		subjectOf := map[int]string{0: ada.ID, 1: old.ID, 3: ada.ID, 4: bob.ID}
		byFace := map[string]Face{}
		for _, f := range got.Faces {
			byFace[f.ID] = f
		}
		if len(got.Faces) != 4 || len(byFace) != 4 {
			t.Errorf("%d faces returned (%d distinct), want 4", len(got.Faces), len(byFace))
		}
		for _, it := range got.Items {
			switch it.Seq {
			case 2:
				if it.State != ItemFailed || it.Code != "no_face" || it.Reason != "no_face in photo 2" ||
					it.SubjectID != "" || it.FaceID != "" {
					t.Errorf("failed item %+v", it)
				}
			case 5:
				if it.State != ItemSkipped || it.Code != "unsupported_format" || it.SubjectID != "" || it.FaceID != "" {
					t.Errorf("skipped item %+v", it)
				}
			default:
				if it.State != ItemEnrolled || it.Code != "" || it.SubjectID != subjectOf[it.Seq] || it.FaceID == "" {
					t.Errorf("item %d = %+v, want enrolled for subject %s", it.Seq, it, subjectOf[it.Seq])
					continue
				}
				f, want := byFace[it.FaceID], faces[it.Seq]
				if f.SubjectID != it.SubjectID || f.Collection != "mixed" || f.State != FacePending || f.Key == 0 ||
					!slices.Equal(f.Descriptor, want.Descriptor) || f.ModelID != want.ModelID || f.Box != want.Box ||
					string(f.Landmarks) != string(want.Landmarks) || string(f.Quality) != string(want.Quality) ||
					f.ImageSHA256 != want.ImageSHA256 || f.CreatedAt.IsZero() {
					t.Errorf("face of item %d = %s, want %s pending for subject %s (descriptor equal: %v)", it.Seq, faceText(f), faceText(*want), it.SubjectID, slices.Equal(f.Descriptor, want.Descriptor))
				}
			}
		}
		if n := countRows(t, s, "face", "collection = ?", "mixed"); n != 4 {
			t.Errorf("%d faces stored, want 4", n)
		}
		pending := countRows(t, s, "import_item", "job_id = ? AND state = 'pending'", job.ID)
		if pending != 1 {
			t.Errorf("%d items pending, want 1 (item 6)", pending)
		}

		events := importEventsBySeq(t, s, "mixed", job.ID)
		if len(events) != 4 || len(enrollEvents(t, s, "mixed")) != 4 {
			t.Errorf("%d events of the job, want one per face (4)", len(events))
		}
		for _, it := range got.Items {
			e, ok := events[it.Seq]
			if it.FaceID == "" {
				if ok {
					t.Errorf("item %d without a face has event %s", it.Seq, eventText(e))
				}
				continue
			}
			if !ok || e.Outcome != OutcomeEnrolled || e.KeyID != "key-1" || e.Collection != "mixed" ||
				e.SubjectID != it.SubjectID || e.FaceID != it.FaceID {
				t.Errorf("event of item %d = %s (found %v), want outcome enrolled, key key-1, face %s",
					it.Seq, eventText(e), ok, it.FaceID)
			}
		}
	})

	t.Run("same image twice", func(t *testing.T) {
		mustCollection(t, s, "twice")
		items := []ImportItem{
			{Path: "ada/1.jpg", ExternalID: "ada", DisplayName: "Ada"},
			{Path: "ada/copy.jpg", ExternalID: "ada", DisplayName: "Ada"},
			{Path: "bob/ada.jpg", ExternalID: "bob", DisplayName: "Bob"},
			{Path: "ada/copy2.jpg", ExternalID: "ada", DisplayName: "Ada"},
		}
		job := mustBatchJob(t, s, "twice", "key-2", items)
		// Items 0 and 1 are the same image of ada, 2 that image of bob.
		first := mustEnrollBatch(t, s, job.ID, []ImportOutcome{
			faceOutcome(1, 2, "x"), faceOutcome(0, 1, "x"), faceOutcome(2, 3, "x"),
		})
		got := itemsBySeq(first.Items)
		if len(first.Items) != 3 {
			t.Fatalf("%d items returned, want 3", len(first.Items))
		}
		face := got[0].FaceID
		if got[0].State != ItemEnrolled || face == "" {
			t.Fatalf("first photo of the image: %+v, want enrolled", got[0])
		}
		if it := got[1]; it.State != ItemSkipped || it.Code != ItemExists || it.FaceID != face || it.SubjectID != got[0].SubjectID {
			t.Errorf("second photo of the image in the same batch: %+v, want skipped %q with face %s", it, ItemExists, face)
		}
		if it := got[2]; it.State != ItemEnrolled || it.FaceID == face || it.SubjectID == got[0].SubjectID {
			t.Errorf("the image for another subject: %+v, want a face of its own", it)
		}
		if jobCounts(first.Job) != "4 3 2 1 0" {
			t.Errorf("job counts %s, want 4 3 2 1 0", jobCounts(first.Job))
		}
		if n := countRows(t, s, "face", "subject_id = ?", got[0].SubjectID); n != 1 {
			t.Errorf("ada has %d faces, want 1", n)
		}
		stored, err := s.GetFace(ctx, "twice", face)
		noErr(t, "GetFace", err)
		if !slices.Equal(stored.Descriptor, descriptor(1)) {
			t.Errorf("the face of the image has the descriptor of its second photo")
		}
		events := importEventsBySeq(t, s, "twice", job.ID)
		for seq, want := range map[int]string{0: OutcomeEnrolled, 1: ItemExists, 2: OutcomeEnrolled} {
			if e := events[seq]; e.Outcome != want || e.FaceID != got[seq].FaceID || e.KeyID != "key-2" {
				t.Errorf("event of item %d = %s, want outcome %q for face %s", seq, eventText(e), want, got[seq].FaceID)
			}
		}

		// Once indexed, the face is found as it is: nothing to index again.
		noErr(t, "MarkFacesIndexed", s.MarkFacesIndexed(ctx, []uint64{stored.Key}))
		t.Run("in a later batch", func(t *testing.T) {
			later := mustEnrollBatch(t, s, job.ID, []ImportOutcome{faceOutcome(3, 4, "x")})
			if len(later.Items) != 1 || len(later.Faces) != 1 {
				t.Fatalf("later batch returned %d items, %d faces; want 1, 1", len(later.Items), len(later.Faces))
			}
			if it := later.Items[0]; it.State != ItemSkipped || it.Code != ItemExists || it.FaceID != face {
				t.Errorf("item %+v, want skipped %q with face %s", it, ItemExists, face)
			}
			if f := later.Faces[0]; f.ID != face || f.Key != stored.Key || f.State != FaceIndexed {
				t.Errorf("face returned %s, want the indexed face %s", faceText(f), face)
			}
			if jobCounts(later.Job) != "4 4 2 2 0" {
				t.Errorf("job counts %s, want 4 4 2 2 0", jobCounts(later.Job))
			}
			if e := importEventsBySeq(t, s, "twice", job.ID)[3]; e.Outcome != ItemExists || e.FaceID != face {
				t.Errorf("event of item 3 = %s, want outcome %q for face %s", eventText(e), ItemExists, face)
			}
		})
		t.Run("in a later job", func(t *testing.T) {
			job2 := mustBatchJob(t, s, "twice", "key-3", []ImportItem{
				{Path: "again/ada.jpg", ExternalID: "ada", DisplayName: "Ada"},
				{Path: "again/ada-new.jpg", ExternalID: "ada", DisplayName: "Ada"},
			})
			again := mustEnrollBatch(t, s, job2.ID, []ImportOutcome{faceOutcome(0, 5, "x"), faceOutcome(1, 6, "y")})
			got := itemsBySeq(again.Items)
			if it := got[0]; it.State != ItemSkipped || it.Code != ItemExists || it.FaceID != face {
				t.Errorf("item 0 = %+v, want skipped %q with face %s", it, ItemExists, face)
			}
			if it := got[1]; it.State != ItemEnrolled || it.SubjectID != got[0].SubjectID {
				t.Errorf("item 1 = %+v, want a new face of the same subject", it)
			}
			if jobCounts(again.Job) != "2 2 1 1 0" {
				t.Errorf("job counts %s, want 2 2 1 1 0", jobCounts(again.Job))
			}
			if n := countRows(t, s, "subject", "collection = ?", "twice"); n != 2 {
				t.Errorf("%d subjects, want 2", n)
			}
			events := importEventsBySeq(t, s, "twice", job2.ID)
			if e := events[0]; e.Outcome != ItemExists || e.FaceID != face || e.KeyID != "key-3" {
				t.Errorf("event of the image again = %s, want outcome %q, key key-3", eventText(e), ItemExists)
			}
			if e := events[1]; e.Outcome != OutcomeEnrolled || e.FaceID != got[1].FaceID {
				t.Errorf("event of the new image = %s, want outcome enrolled", eventText(e))
			}
		})
	})

	t.Run("face being deleted", func(t *testing.T) {
		mustCollection(t, s, "del")
		sub := mustSubject(t, s, "del", "ada", "Ada")
		doomed := mustFace(t, s, sub, "gone")
		_, err := s.MarkFaceDeleting(ctx, "del", doomed.ID)
		noErr(t, "MarkFaceDeleting", err)
		items := []ImportItem{
			{Path: "ada/gone.jpg", ExternalID: "ada", DisplayName: "Ada"},
			{Path: "ada/new.jpg", ExternalID: "ada", DisplayName: "Ada"},
		}
		job := mustBatchJob(t, s, "del", "", items)
		got := mustEnrollBatch(t, s, job.ID, []ImportOutcome{faceOutcome(0, 1, "gone"), faceOutcome(1, 2, "new")})
		if len(got.Items) != 2 {
			t.Fatalf("%d items returned, want 2", len(got.Items))
		}
		if it := got.Items[0]; it.State != ItemFailed || it.Code != ItemBeingDeleted {
			t.Errorf("item of the image being deleted: %+v, want failed %q", it, ItemBeingDeleted)
		}
		if it := got.Items[1]; it.State != ItemEnrolled || it.SubjectID != sub.ID {
			t.Errorf("item of another image: %+v, want enrolled for %s", it, sub.ID)
		}
		if len(got.Faces) != 1 || got.Faces[0].ImageSHA256 != "new" {
			t.Errorf("%d faces returned, want only the face of image new", len(got.Faces))
		}
		if n := countRows(t, s, "face", "subject_id = ? AND image_sha256 = ?", sub.ID, "gone"); n != 1 {
			t.Errorf("%d faces of the image being deleted, want 1 (the one being deleted)", n)
		}
		if st := rawColumn[string](t, s, `SELECT state FROM face WHERE id = ?`, doomed.ID); !slices.Equal(st, []string{"deleting"}) {
			t.Errorf("face being deleted now %v", st)
		}
		if jobCounts(got.Job) != "2 2 1 0 1" {
			t.Errorf("job counts %s, want 2 2 1 0 1", jobCounts(got.Job))
		}
		if e, ok := importEventsBySeq(t, s, "del", job.ID)[0]; ok && e.Outcome == OutcomeEnrolled {
			t.Errorf("item that enrolled nothing has event %s", eventText(e))
		}

		// Once the deletion is finished, importing the image enrolls it.
		noErr(t, "DeleteFaces", s.DeleteFaces(ctx, []uint64{doomed.Key}))
		job2 := mustBatchJob(t, s, "del", "", items[:1])
		again := mustEnrollBatch(t, s, job2.ID, []ImportOutcome{faceOutcome(0, 1, "gone")})
		if len(again.Items) != 1 || again.Items[0].State != ItemEnrolled || len(again.Faces) != 1 ||
			again.Faces[0].Key <= doomed.Key {
			t.Errorf("import after the deletion: items %+v, %d faces; want item 0 enrolled with a new face", again.Items, len(again.Faces))
		}
	})

	t.Run("redone batch", func(t *testing.T) {
		mustCollection(t, s, "redo")
		items := []ImportItem{
			{Path: "a/1.jpg", ExternalID: "a"},
			{Path: "b/1.jpg", ExternalID: "b"},
			{Path: "c/1.jpg", ExternalID: "c"},
			{Path: "d/1.jpg", ExternalID: "d"},
			{Path: "a/2.jpg", ExternalID: "a"},
			{Path: "zed/1.jpg", ExternalID: "zed", State: ItemSkipped, Code: "missing_file"},
		}
		job := mustBatchJob(t, s, "redo", "key-r", items)
		batch := []ImportOutcome{
			faceOutcome(0, 1, "a1"), faceOutcome(1, 2, "b1"),
			noFaceOutcome(2, ItemFailed, "no_face"), noFaceOutcome(3, ItemSkipped, "unsupported_format"),
		}
		first := mustEnrollBatch(t, s, job.ID, batch)
		if len(first.Items) != 4 || jobCounts(first.Job) != "6 5 2 2 1" {
			t.Fatalf("first run: %d items, counts %s; want 4 items, 6 5 2 2 1", len(first.Items), jobCounts(first.Job))
		}
		a := itemsBySeq(first.Items)[0].SubjectID
		rows := func(t *testing.T) string {
			t.Helper()
			return fmt.Sprint(countRows(t, s, "subject", "collection = ?", "redo"), " subjects, ",
				countRows(t, s, "face", "collection = ?", "redo"), " faces, ",
				countRows(t, s, "event", "collection = ?", "redo"), " events")
		}
		before := rows(t)

		steps := []struct {
			name     string
			outcomes []ImportOutcome
		}{
			{"the same batch again", batch},
			{"other outcomes of recorded items", []ImportOutcome{
				noFaceOutcome(0, ItemFailed, "no_face"), faceOutcome(2, 3, "c1"), faceOutcome(3, 4, "d1"),
			}},
			{"an item skipped at creation", []ImportOutcome{faceOutcome(5, 5, "z1")}},
			{"nothing", nil},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				jobBefore, err := s.GetImportJob(ctx, job.ID)
				noErr(t, "GetImportJob", err)
				got := mustEnrollBatch(t, s, job.ID, st.outcomes)
				if len(got.Items) != 0 || len(got.Faces) != 0 {
					t.Errorf("returned items %+v, %d faces; want none", got.Items, len(got.Faces))
				}
				if !importJobsEqual(got.Job, jobBefore) {
					t.Errorf("job %+v, want it unchanged: %+v", got.Job, jobBefore)
				}
				if now := rows(t); now != before {
					t.Errorf("%s, before %s", now, before)
				}
			})
		}
		if _, err := s.GetSubjectByExternalID(ctx, "redo", "zed"); err == nil {
			t.Error("subject created for an item skipped at creation")
		}
		stored := itemsBySeq(allImportItems(t, s, job.ID, nil, 100))
		for _, it := range first.Items {
			if !importItemsEqual(stored[it.Seq], it) {
				t.Errorf("item %d = %+v, want its first outcome %+v", it.Seq, stored[it.Seq], it)
			}
		}

		t.Run("a mix of new and recorded", func(t *testing.T) {
			got := mustEnrollBatch(t, s, job.ID, []ImportOutcome{
				faceOutcome(0, 1, "a1"), noFaceOutcome(2, ItemFailed, "no_face"), faceOutcome(4, 6, "a2"),
			})
			if len(got.Items) != 1 || got.Items[0].Seq != 4 || got.Items[0].State != ItemEnrolled ||
				got.Items[0].SubjectID != a || len(got.Faces) != 1 {
				t.Fatalf("returned items %+v, %d faces; want item 4 only, enrolled for subject %s", got.Items, len(got.Faces), a)
			}
			if jobCounts(got.Job) != "6 6 3 2 1" {
				t.Errorf("job counts %s, want 6 6 3 2 1", jobCounts(got.Job))
			}
			if now := rows(t); now != "2 subjects, 3 faces, 3 events" {
				t.Errorf("%s, want 2 subjects, 3 faces, 3 events", now)
			}
		})
	})

	t.Run("errors write nothing", func(t *testing.T) {
		mustCollection(t, s, "err")
		items := []ImportItem{
			{Path: "a/1.jpg", ExternalID: "a", DisplayName: "A"},
			{Path: "b/1.jpg", ExternalID: "b", DisplayName: "B"},
			{Path: "loose.jpg"}, // no subject: a manifest line without one
			{Path: "c/1.jpg", ExternalID: "c", DisplayName: "C"},
		}
		job := mustBatchJob(t, s, "err", "key-e", items)
		valid := func() []ImportOutcome {
			return []ImportOutcome{faceOutcome(0, 1, "a1"), faceOutcome(1, 2, "b1"), noFaceOutcome(2, ItemFailed, "no_face")}
		}
		withFace := func(seq int, f Face) []ImportOutcome { return append(valid(), ImportOutcome{Seq: seq, Face: &f}) }
		tests := []struct {
			name     string
			job      string
			outcomes []ImportOutcome
			want     error
		}{
			{"unknown job", "nope", valid(), ErrNotFound},
			{"unknown seq among valid ones", job.ID, append(valid(), noFaceOutcome(9, ItemFailed, "no_face")), ErrNotFound},
			{"negative seq", job.ID, append(valid(), faceOutcome(-1, 3, "n1")), ErrNotFound},
			{"seq beyond any item", job.ID, append(valid(), noFaceOutcome(math.MaxInt, ItemFailed, "no_face")), ErrNotFound},
			{"enrolled without a face", job.ID, append(valid(), ImportOutcome{Seq: 3, State: ItemEnrolled}), ErrInvalid},
			{"pending without a face", job.ID, append(valid(), ImportOutcome{Seq: 3, State: ItemPending}), ErrInvalid},
			{"no state, no face", job.ID, append(valid(), ImportOutcome{Seq: 3}), ErrInvalid},
			{"empty descriptor", job.ID, withFace(3, Face{ImageSHA256: "c1"}), ErrInvalid},
			{"landmarks not JSON", job.ID, withFace(3, Face{Descriptor: descriptor(3), Landmarks: json.RawMessage(`[1,`)}), ErrInvalid},
			{"quality not JSON", job.ID, withFace(3, Face{Descriptor: descriptor(3), Quality: json.RawMessage(`x`)}), ErrInvalid},
			{"face for an item without external id", job.ID, []ImportOutcome{
				faceOutcome(0, 1, "a1"), faceOutcome(1, 2, "b1"), faceOutcome(2, 4, "l1"), faceOutcome(3, 5, "c1"),
			}, ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				jobBefore, err := s.GetImportJob(ctx, job.ID)
				noErr(t, "GetImportJob", err)
				_, err = s.EnrollImportBatch(ctx, tt.job, tt.outcomes)
				wantErr(t, "EnrollImportBatch", err, tt.want)
				jobAfter, err := s.GetImportJob(ctx, job.ID)
				noErr(t, "GetImportJob", err)
				if !importJobsEqual(jobAfter, jobBefore) {
					t.Errorf("job %+v, want it unchanged: %+v", jobAfter, jobBefore)
				}
				if n := countRows(t, s, "import_item", "job_id = ? AND state = 'pending'", job.ID); n != len(items) {
					t.Errorf("%d items pending, want all %d", n, len(items))
				}
				for _, table := range []string{"subject", "face", "event"} {
					if n := countRows(t, s, table, "collection = ?", "err"); n != 0 {
						t.Errorf("%d rows written to %s", n, table)
					}
				}
			})
		}
		// The job takes a valid batch: the errors were the batches'.
		got := mustEnrollBatch(t, s, job.ID, append(valid(), faceOutcome(3, 3, "c1")))
		if len(got.Items) != 4 || jobCounts(got.Job) != "4 4 3 0 1" {
			t.Errorf("valid batch: %d items, counts %s; want 4 items, 4 4 3 0 1", len(got.Items), jobCounts(got.Job))
		}
	})

	t.Run("collection being deleted", func(t *testing.T) {
		mustCollection(t, s, "doomed")
		job := mustBatchJob(t, s, "doomed", "", []ImportItem{{Path: "a/1.jpg", ExternalID: "a"}})
		noErr(t, "MarkCollectionDeleting", s.MarkCollectionDeleting(ctx, "doomed"))
		_, err := s.EnrollImportBatch(ctx, job.ID, []ImportOutcome{faceOutcome(0, 1, "a1")})
		wantErr(t, "EnrollImportBatch", err, ErrNotFound)
		if n := countRows(t, s, "import_item", "job_id = ? AND state = 'pending'", job.ID); n != 1 {
			t.Errorf("%d items pending, want 1", n)
		}
		for _, table := range []string{"subject", "face", "event"} {
			if n := countRows(t, s, table, "collection = ?", "doomed"); n != 0 {
				t.Errorf("%d rows written to %s", n, table)
			}
		}
	})
}

// testConcurrentEnrollImportBatch writes the results of one job from
// several goroutines at once, as replicas running the same job (or a
// runner redoing batches) would: each goroutine writes every item, in its
// own order and batches, with the same outcome per item. Two photos of
// each subject are the same image. Each item is recorded once, each
// subject created once, each image enrolled once per subject. On Postgres
// this exercises the items' row locks and the ON CONFLICT creation of
// subjects and faces; SQLite serializes its writers.
func testConcurrentEnrollImportBatch(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	const subjects, faced, noFace, workers, batch = 10, 40, 4, 4, 6
	const n = faced + noFace
	// Item seq < faced is a photo of subject seq%subjects from image
	// seq%(2*subjects): items seq and seq+2*subjects are the same image.
	sha := func(seq int) string { return fmt.Sprintf("img-%02d", seq%(2*subjects)) }
	outcomeOf := func(seq int) ImportOutcome {
		if seq >= faced {
			return noFaceOutcome(seq, ItemFailed, "no_face")
		}
		return faceOutcome(seq, seq, sha(seq))
	}
	items := make([]ImportItem, n)
	for seq := range items {
		k := seq % subjects
		items[seq] = ImportItem{Path: fmt.Sprintf("s%02d/%02d.jpg", k, seq), ExternalID: fmt.Sprintf("s%02d", k),
			DisplayName: fmt.Sprintf("Person %d", k), Metadata: json.RawMessage(fmt.Sprintf(`{"k":%d}`, k))}
	}
	const distinct = 2 * subjects // (subject, image) pairs
	wantCounts := fmt.Sprint(n, " ", n, " ", distinct, " ", faced-distinct, " ", noFace)

	// A few rounds, each on a new collection, to give the races a chance.
	for round := range 3 {
		collection := fmt.Sprint("c", round)
		mustCollection(t, s, collection)
		job := mustBatchJob(t, s, collection, "", items)
		var mu sync.Mutex
		returned := map[int]int{} // seq: times returned as recorded
		var wg sync.WaitGroup
		for w := range workers {
			seqs := seqRange(0, n)
			rand.New(rand.NewPCG(uint64(round), uint64(w))).Shuffle(len(seqs), func(i, j int) { seqs[i], seqs[j] = seqs[j], seqs[i] })
			wg.Go(func() {
				for len(seqs) > 0 {
					k := min(batch, len(seqs))
					outs := make([]ImportOutcome, k)
					for i, seq := range seqs[:k] {
						outs[i] = outcomeOf(seq)
					}
					got, err := s.EnrollImportBatch(ctx, job.ID, outs)
					if err != nil {
						t.Errorf("round %d worker %d: EnrollImportBatch: %v", round, w, err)
						return
					}
					mu.Lock()
					for _, it := range got.Items {
						returned[it.Seq]++
					}
					mu.Unlock()
					seqs = seqs[k:]
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}

		for seq := range n {
			if returned[seq] != 1 {
				t.Errorf("round %d: item %d returned as recorded by %d calls, want 1", round, seq, returned[seq])
			}
		}
		got, err := s.GetImportJob(ctx, job.ID)
		noErr(t, "GetImportJob", err)
		if jobCounts(got) != wantCounts {
			t.Fatalf("round %d: counts %s, want %s", round, jobCounts(got), wantCounts)
		}

		// Each subject once, with one face per image.
		if c := countRows(t, s, "subject", "collection = ?", collection); c != subjects {
			t.Errorf("round %d: %d subjects, want %d", round, c, subjects)
		}
		if c := countRows(t, s, "face", "collection = ?", collection); c != distinct {
			t.Errorf("round %d: %d faces, want %d", round, c, distinct)
		}
		subjectIDs := map[string]string{} // external id: subject id
		faceOf := map[string]string{}     // subject id + image: face id
		for k := range subjects {
			ext := fmt.Sprintf("s%02d", k)
			sub, err := s.GetSubjectByExternalID(ctx, collection, ext)
			noErr(t, "GetSubjectByExternalID", err)
			if sub.DisplayName != fmt.Sprintf("Person %d", k) || string(sub.Metadata) != fmt.Sprintf(`{"k":%d}`, k) {
				t.Errorf("round %d: subject %s", round, subjectText(sub))
			}
			subjectIDs[ext] = sub.ID
			faces, err := s.ListFaces(ctx, collection, sub.ID)
			noErr(t, "ListFaces", err)
			var shas []string
			for _, f := range faces {
				shas = append(shas, f.ImageSHA256)
				faceOf[sub.ID+" "+f.ImageSHA256] = f.ID
			}
			slices.Sort(shas)
			if want := []string{sha(k), sha(k + subjects)}; !slices.Equal(shas, want) {
				t.Errorf("round %d: subject %s has faces of images %v, want %v", round, ext, shas, want)
			}
		}

		// Each item points at its subject's face of its image, which one of
		// the two photos of the image enrolled.
		enrolledBy := map[string]int{}
		for _, it := range allImportItems(t, s, job.ID, nil, 1000) {
			if it.Seq >= faced {
				if it.State != ItemFailed || it.Code != "no_face" || it.SubjectID != "" || it.FaceID != "" {
					t.Errorf("round %d: item %+v, want failed no_face", round, it)
				}
				continue
			}
			sub := subjectIDs[items[it.Seq].ExternalID]
			if it.SubjectID != sub || it.FaceID == "" || it.FaceID != faceOf[sub+" "+sha(it.Seq)] {
				t.Errorf("round %d: item %+v, want subject %s, face %s", round, it, sub, faceOf[sub+" "+sha(it.Seq)])
			}
			switch {
			case it.State == ItemEnrolled:
				enrolledBy[it.FaceID]++
			case it.State == ItemSkipped && it.Code == ItemExists:
			default:
				t.Errorf("round %d: item %+v, want enrolled or skipped %q", round, it, ItemExists)
			}
		}
		for id, c := range enrolledBy {
			if c != 1 {
				t.Errorf("round %d: face %s enrolled by %d items", round, id, c)
			}
		}
		if len(enrolledBy) != distinct {
			t.Errorf("round %d: %d faces enrolled by items, want %d", round, len(enrolledBy), distinct)
		}

		// One event per item with a face: enrolled once per face.
		byOutcome := map[string]int{}
		enrolledFaces := map[string]bool{}
		for _, e := range importEventsBySeq(t, s, collection, job.ID) {
			byOutcome[e.Outcome]++
			if e.Outcome == OutcomeEnrolled {
				enrolledFaces[e.FaceID] = true
			}
		}
		if byOutcome[OutcomeEnrolled] != distinct || byOutcome[ItemExists] != faced-distinct || len(byOutcome) != 2 ||
			len(enrolledFaces) != distinct {
			t.Errorf("round %d: event outcomes %v for %d faces, want %d enrolled (one per face), %d exists",
				round, byOutcome, len(enrolledFaces), distinct, faced-distinct)
		}
	}
}
