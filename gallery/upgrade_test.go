package gallery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/index"
	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

// TestCollectionFromBeforeTheOpenSetPolicy: a collection made before the
// open-set policy — a fixed threshold of 0.421 (every collection migration
// 0008 finds), faces enrolled with plain+l2 descriptors — keeps deciding by
// its threshold, finds its faces with today's probes, takes today's
// mirror+l2 enrollments beside them (one descriptor space: never "another
// model"), and can be switched to a target FPIR. A face of another space
// (plain, not normalised) is reported and stops a reindex.
func TestCollectionFromBeforeTheOpenSetPolicy(t *testing.T) {
	eng := openEngine(t, 2)
	for _, d := range backendPairs() {
		t.Run(d.name, func(t *testing.T) {
			ctx := context.Background()
			st, idx := d.open(t, eng.Space())
			// The previous release's collection and enrollments, written as
			// it wrote them: the largest face's plain+l2 descriptor.
			if _, err := st.CreateCollection(ctx, store.Collection{Name: "old", Threshold: 0.421}); err != nil {
				t.Fatal(err)
			}
			oldModel := eng.Recipes().Model.ID(embed.Variant{Normalize: true})
			ids := map[string]string{}
			for _, p := range bbtPeople {
				sub, err := st.CreateSubject(ctx, store.Subject{Collection: "old", ExternalID: p})
				if err != nil {
					t.Fatal(err)
				}
				ids[p] = sub.ID
				data := testenv.ReadShared(t, fmt.Sprintf("testdata/faces/bbt/%s/%s1.png", p, p))
				res := facesOf(t, eng, data)
				top, err := Largest(res.Faces, 0.1)
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(data)
				f, _, err := st.InsertFace(ctx, store.Face{SubjectID: sub.ID, Collection: "old", Descriptor: top[0].Descriptor[:],
					ModelID: oldModel, ImageSHA256: hex.EncodeToString(sum[:])})
				if err != nil {
					t.Fatal(err)
				}
				if err := idx.Upsert(ctx, space("old"), []index.Item{{Key: f.Key, Vector: f.Descriptor}}); err != nil {
					t.Fatal(err)
				}
				if err := st.MarkFacesIndexed(ctx, []uint64{f.Key}); err != nil {
					t.Fatal(err)
				}
			}

			svc := NewService(eng, st, idx, DefaultServiceConfig(), quietLog())
			t.Cleanup(svc.Close)
			v, err := svc.Collection(ctx, "old")
			if err != nil {
				t.Fatal(err)
			}
			if !v.Operating.Policy.Fixed() || v.Operating.Distance != 0.421 {
				t.Fatalf("old collection decides by %+v, want its fixed 0.421", v.Operating)
			}
			// Today's probes find the old faces, decided by distance alone.
			for _, p := range []string{"amy", "leonard", "sheldon"} {
				res, err := svc.Identify(ctx, IdentifyRequest{Collection: "old", Image: testenv.ReadShared(t, fmt.Sprintf("testdata/faces/bbt/%s/%s1.png", p, p))})
				if err != nil {
					t.Fatal(err)
				}
				f := res.Faces[0]
				if f.Decision != DecisionMatch || f.Match.SubjectID != ids[p] || f.Match.Distance > 0.05 || f.SecondLook || f.Match.Score != 0 {
					t.Errorf("%s against the old collection: %s %+v (second look %v)", p, f.Decision, f.Match, f.SecondLook)
				}
			}
			// A new enrollment is mirror+l2, beside the old plain+l2 faces.
			rs, err := svc.Enroll(ctx, "t", "old", ids["amy"], [][]byte{testenv.ReadShared(t, "testdata/faces/bbt/amy/amy2.png")})
			if err != nil || rs[0].Status != StatusEnrolled {
				t.Fatalf("enroll into the old collection: %+v, %v", rs, err)
			}
			if got := rs[0].Face.ModelID; got != eng.ModelID() || got == oldModel || !embed.Comparable(got, oldModel) {
				t.Errorf("new face's model %q (old %q)", got, oldModel)
			}
			rep := mustCheck(t, svc.Reconciler())
			if len(rep.OtherModels) != 0 || rep.MissingVectors+rep.OrphanVectors != 0 {
				t.Errorf("old and new faces reported as drift: %+v", rep)
			}
			if _, err := svc.Reconciler().Reindex(ctx, nil); err != nil {
				t.Errorf("reindex of old and new faces: %v", err)
			}
			// The owner may switch the collection to a target.
			if _, err := svc.UpdateCollection(ctx, "old", Policy{TargetFPIR: 0.01}); err != nil {
				t.Fatal(err)
			}
			res, err := svc.Identify(ctx, IdentifyRequest{Collection: "old", Image: testenv.ReadShared(t, "testdata/faces/bbt/amy/amy1.png")})
			if err != nil {
				t.Fatal(err)
			}
			if f := res.Faces[0]; f.Decision != DecisionMatch || f.Match.SubjectID != ids["amy"] || f.Match.Score == 0 || res.Operating.Policy.TargetFPIR != 0.01 {
				t.Errorf("after switching to a target: %s %+v", f.Decision, f.Match)
			}
			// A new collection takes the default policy.
			if _, err := svc.CreateCollection(ctx, "new", Policy{}); err != nil {
				t.Fatal(err)
			}
			if v, err := svc.Collection(ctx, "new"); err != nil || v.Operating.Policy.TargetFPIR != DefaultTargetFPIR {
				t.Errorf("new collection %+v, %v", v.Operating.Policy, err)
			}
			// A face of another descriptor space cannot join.
			sub, err := st.CreateSubject(ctx, store.Subject{Collection: "old", ExternalID: "raw"})
			if err != nil {
				t.Fatal(err)
			}
			rawModel := eng.Recipes().Model.ID(embed.Variant{})
			if _, _, err := st.InsertFace(ctx, store.Face{SubjectID: sub.ID, Collection: "old", Descriptor: make([]float32, embed.Dim),
				ModelID: rawModel, ImageSHA256: "raw"}); err != nil {
				t.Fatal(err)
			}
			if rep := mustCheck(t, svc.Reconciler()); rep.OtherModels[rawModel] != 1 {
				t.Errorf("a plain (not normalised) face not reported: %+v", rep.OtherModels)
			}
			if _, err := svc.Reconciler().Reindex(ctx, nil); !errors.Is(err, ErrModelMismatch) {
				t.Errorf("reindex with a face of another space: %v", err)
			}
		})
	}
}
