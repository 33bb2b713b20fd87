package gallery

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/index"
	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

// outageBeforeConfirm is a store whose PostgreSQL stops (a real fast
// shutdown) right before an enrollment confirms its face indexed: the
// worst moment, after the vector is written and before the store knows.
type outageBeforeConfirm struct {
	Store
	stop    func() error
	stopped bool
}

func (o *outageBeforeConfirm) MarkFacesIndexed(ctx context.Context, keys []uint64) error {
	if !o.stopped {
		o.stopped = true
		if err := o.stop(); err != nil {
			return err
		}
	}
	return o.Store.MarkFacesIndexed(ctx, keys)
}

// TestEnrollInterruptedByADatabaseOutage: an enrollment whose database
// goes down between the index write and the confirmation answers
// ErrUnavailable and leaves a pending face, with its vector, that no
// identification names; the reconciler is told to run soon, and once the
// database is back it confirms the face: nothing half-written stays.
func TestEnrollInterruptedByADatabaseOutage(t *testing.T) {
	ctx := context.Background()
	eng := openEngine(t, 1)
	cl := pgtest.NewCluster(t)
	st, err := store.OpenPostgres(ctx, cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	idx, err := index.NewHNSW(embed.Dim, index.DefaultHNSWParams())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idx.Close() })
	outage := &outageBeforeConfirm{Store: st, stop: cl.Stop}
	svc := NewService(eng, outage, idx, DefaultServiceConfig(), quietLog())
	if _, err := svc.CreateCollection(ctx, "c", Policy{}); err != nil {
		t.Fatal(err)
	}
	sub, err := st.CreateSubject(ctx, store.Subject{Collection: "c", ExternalID: "amy"})
	if err != nil {
		t.Fatal(err)
	}
	photo := testenv.ReadShared(t, "testdata/faces/bbt/amy/amy1.png")

	_, err = svc.Enroll(ctx, "test", "c", sub.ID, [][]byte{photo})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Enroll across the outage: %v, want ErrUnavailable", err)
	}
	if !svc.Reconciler().Unfinished() {
		t.Error("the enrollment left a pending face, and the reconciler is not due to finish it")
	}
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}

	pending, err := st.PendingFaces(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 {
		t.Fatalf("%d pending faces, want the interrupted one", len(pending))
	}
	key := pending[0].Key
	if keys, err := idx.Keys(ctx, space("c")); err != nil || !slices.Equal(keys, []uint64{key}) {
		t.Fatalf("index keys %v, %v; want the pending face's %d", keys, err, key)
	}
	if refs, err := st.FaceRefs(ctx, "c", []uint64{key}); err != nil || len(refs) != 0 {
		t.Errorf("the pending face resolves for identification: %v, %v", refs, err)
	}
	drift := mustCheck(t, svc.Reconciler())
	if drift.MissingVectors != 0 || drift.OrphanVectors != 0 || drift.PendingFaces != 1 {
		t.Errorf("after the outage: %+v, want only the pending face", drift)
	}

	rep, err := svc.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.FacesIndexed != 1 {
		t.Errorf("Reconcile = %+v, want the pending face indexed", rep)
	}
	if drift := mustCheck(t, svc.Reconciler()); drift.Drift() != 0 || drift.Faces != 1 || drift.Vectors != 1 {
		t.Errorf("after reconciling: %+v, want one face, its vector, no drift", drift)
	}
	if svc.Reconciler().Unfinished() {
		t.Error("the reconciler still has work after finishing it")
	}
	// The client's retry finds the face it was not told about.
	res, err := svc.Enroll(ctx, "test", "c", sub.ID, [][]byte{photo})
	if err != nil || res[0].Status != StatusExists || res[0].Face.Key != key {
		t.Errorf("retried enrollment: %+v, %v; want the existing face %d", res, err, key)
	}
}
