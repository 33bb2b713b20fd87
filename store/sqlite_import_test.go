package store

import (
	"context"
	"testing"
)

func TestImportSubjects(t *testing.T) {
	s := openTestStore(t)
	ctx := context.Background()
	mustCollection(t, s, "imp")
	items := []SubjectFaces{
		{Subject: Subject{ExternalID: "a", DisplayName: "Ada"}, Faces: []Face{
			{Descriptor: descriptor(1), ModelID: "m", ImageSHA256: "h1"},
			{Descriptor: descriptor(2), ModelID: "m", ImageSHA256: "h2"},
		}},
		{Subject: Subject{ExternalID: "b", DisplayName: "Bob"}, Faces: []Face{{Descriptor: descriptor(3), ModelID: "m", ImageSHA256: "h3"}}},
	}
	faces, err := s.ImportSubjects(ctx, "imp", items)
	noErr(t, "import", err)
	if len(faces) != 3 {
		t.Fatalf("%d faces, want 3", len(faces))
	}
	keys, err := s.IndexedKeys(ctx, "imp")
	noErr(t, "indexed keys", err)
	if len(keys) != 3 {
		t.Errorf("%d keys, want 3", len(keys))
	}
	pending, err := s.PendingFaces(ctx, 10)
	noErr(t, "pending", err)
	if len(pending) != 3 {
		t.Errorf("%d pending faces, want 3 (imports are indexed by the caller)", len(pending))
	}
	sub, err := s.GetSubjectByExternalID(ctx, "imp", "a")
	noErr(t, "get subject", err)
	if sub.FaceCount != 2 || sub.DisplayName != "Ada" {
		t.Errorf("subject %+v", sub)
	}

	t.Run("a conflict aborts the batch", func(t *testing.T) {
		_, err := s.ImportSubjects(ctx, "imp", []SubjectFaces{
			{Subject: Subject{ExternalID: "c"}, Faces: []Face{{Descriptor: descriptor(4)}}},
			{Subject: Subject{ExternalID: "a"}},
		})
		wantErr(t, "duplicate external id", err, ErrConflict)
		if _, err := s.GetSubjectByExternalID(ctx, "imp", "c"); err == nil {
			t.Error("subject c of the failed batch was written")
		}
	})
	t.Run("unknown collection", func(t *testing.T) {
		_, err := s.ImportSubjects(ctx, "nope", items)
		wantErr(t, "unknown collection", err, ErrNotFound)
	})
	t.Run("empty descriptor", func(t *testing.T) {
		_, err := s.ImportSubjects(ctx, "imp", []SubjectFaces{{Subject: Subject{ExternalID: "d"}, Faces: []Face{{}}}})
		wantErr(t, "empty descriptor", err, ErrInvalid)
	})
}
