package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/index"
	"github.com/visage/visage/index/qdranttest"
	"github.com/visage/visage/internal/backend"
	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// doctorRun runs doctor or reindex and decodes its JSON report.
func doctorRun(t *testing.T, args ...string) (int, doctorOutput, string) {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	var rep doctorOutput
	if args[0] == "doctor" && (code == 0 || strings.HasPrefix(strings.TrimSpace(out), "{")) {
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v: output %q is not the report: %v (stderr %s)", args, out, err, errOut)
		}
	}
	return code, rep, errOut
}

// seedGallery writes three indexed faces and one pending face (a crash
// between the two writes) through the deployment's own backends.
func seedGallery(t *testing.T, cfg backend.Config, model string) {
	t.Helper()
	ctx := context.Background()
	st, err := backend.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	idx, err := backend.OpenIndex(ctx, cfg, model)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	if _, err := st.CreateCollection(ctx, store.Collection{Name: "staff", Threshold: 0.4}); err != nil {
		t.Fatal(err)
	}
	sub, err := st.CreateSubject(ctx, store.Subject{Collection: "staff", ExternalID: "e-1"})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 4 {
		f, _, err := st.InsertFace(ctx, store.Face{SubjectID: sub.ID, Collection: "staff", Descriptor: randomUnit(rng),
			ModelID: model, ImageSHA256: strings.Repeat(string(rune('a'+i)), 64)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			break // left pending
		}
		if err := idx.Upsert(ctx, "faces/staff", []index.Item{{Key: f.Key, Vector: f.Descriptor}}); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkFacesIndexed(ctx, []uint64{f.Key}); err != nil {
			t.Fatal(err)
		}
	}
	if err := idx.Save(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDoctorAndReindex(t *testing.T) {
	models := testenv.ModelDir(t)
	model, err := gallery.SpaceID(gallery.DefaultEngineConfig(models))
	if err != nil {
		t.Fatal(err)
	}
	type deployment struct {
		name string
		cfg  backend.Config
		args []string
		// loseIndex replaces the index with an empty one.
		loseIndex func(t *testing.T) []string
	}
	embedded := func(t *testing.T) deployment {
		dir := t.TempDir()
		return deployment{
			cfg:       backend.Config{DataDir: dir},
			args:      []string{"--data", dir},
			loseIndex: func(t *testing.T) []string { must(t, os.RemoveAll(filepath.Join(dir, "hnsw"))); return nil },
		}
	}
	scaleOut := func(t *testing.T) deployment {
		url := pgtest.New(t)
		srv := qdranttest.Start(t, qdranttest.Options{APIKey: "doctor-test-key"})
		t.Setenv("VISAGE_QDRANT_API_KEY", "doctor-test-key")
		return deployment{
			cfg:  backend.Config{DatabaseURL: url, Qdrant: backend.Qdrant{Addr: srv.Addr(), APIKey: "doctor-test-key", Collection: index.DefaultQdrantCollection}},
			args: []string{"--database-url", url, "--qdrant-addr", srv.Addr()},
			// Another Qdrant collection: an empty index, as after a
			// switch of backends.
			loseIndex: func(t *testing.T) []string { return []string{"--qdrant-collection", "visage_faces_new"} },
		}
	}
	for name, open := range map[string]func(*testing.T) deployment{"embedded": embedded, "scaleout": scaleOut} {
		t.Run(name, func(t *testing.T) {
			d := open(t)
			seedGallery(t, d.cfg, model)
			base := append([]string{"--models", models}, d.args...)

			code, rep, errOut := doctorRun(t, append([]string{"doctor"}, base...)...)
			if code != 1 || rep.Drift != 1 || rep.Report.PendingFaces != 1 || rep.Report.Faces != 4 || rep.Report.Vectors != 3 {
				t.Fatalf("doctor on a crashed enrollment: exit %d, %+v (%s)", code, rep, errOut)
			}
			code, rep, errOut = doctorRun(t, append([]string{"doctor", "--repair"}, base...)...)
			if code != 0 || rep.Drift != 0 || rep.Repaired == nil || rep.Repaired.FacesIndexed != 1 || rep.Report.Vectors != 4 {
				t.Fatalf("doctor --repair: exit %d, %+v (%s)", code, rep, errOut)
			}

			lost := append(base, d.loseIndex(t)...)
			code, rep, errOut = doctorRun(t, append([]string{"doctor"}, lost...)...)
			if code != 1 || rep.Report.MissingVectors != 4 || rep.Report.Vectors != 0 {
				t.Fatalf("doctor on an empty index: exit %d, %+v (%s)", code, rep, errOut)
			}
			t.Run("reindex refuses another model", func(t *testing.T) {
				code, _, errOut := runCLI(t, append([]string{"reindex", "--variant", "plain"}, lost...)...)
				if code != 1 || !strings.Contains(errOut, "different models") {
					t.Fatalf("reindex for another model: exit %d, %s", code, errOut)
				}
			})
			code, out, errOut := runCLI(t, append([]string{"reindex"}, lost...)...)
			var re struct {
				Reindex gallery.ReconcileReport `json:"reindex"`
			}
			if code != 0 || json.Unmarshal([]byte(out), &re) != nil || re.Reindex.VectorsAdded != 4 {
				t.Fatalf("reindex: exit %d, %s (%s)", code, out, errOut)
			}
			code, rep, errOut = doctorRun(t, append([]string{"doctor"}, lost...)...)
			if code != 0 || rep.Drift != 0 || rep.Report.Vectors != 4 {
				t.Fatalf("doctor after reindex: exit %d, %+v (%s)", code, rep, errOut)
			}
		})
	}
}

func TestDoctorRefusesAnEmbeddedIndexInUse(t *testing.T) {
	dir := t.TempDir()
	unlock, err := backend.LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	code, _, errOut := runCLI(t, "doctor", "--models", testenv.ModelDir(t), "--data", dir)
	if code != 1 || !strings.Contains(errOut, "in use by another process") {
		t.Fatalf("doctor beside a running visaged: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "visage.db")); err == nil {
		t.Error("doctor opened the store although the index was locked")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
