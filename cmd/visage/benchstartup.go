package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/index"
	"github.com/visage/visage/store"
)

// runBenchStartup measures how long visaged takes to become ready on a
// data directory holding many faces. It fills the directory first if it
// is empty (random unit descriptors, an index snapshot), then adds faces
// the snapshot lacks, as after a kill -9, so the start-up has to
// reconcile them too.
func runBenchStartup(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("bench startup", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	data := fs.String("data", "", "data directory (filled on first use)")
	faces := fs.Int("faces", 1_000_000, "faces to store")
	perSubject := fs.Int("per-subject", 10, "faces per subject")
	unsnapshotted := fs.Int("unsnapshotted", 1000, "faces added to the store after the index snapshot")
	visaged := fs.String("visaged", "bin/visaged", "the server binary")
	models := fs.String("models", "", "model directory for visaged")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		return fmt.Errorf("usage: visage bench startup --data DIR [--faces N]")
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		return err
	}
	dbPath := filepath.Join(*data, "visage.db")
	_, statErr := os.Stat(dbPath)
	st, err := store.OpenSQLite(ctx, dbPath)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	if os.IsNotExist(statErr) {
		if err := fillStartupData(ctx, env, st, *data, rng, *faces, *perSubject); err != nil {
			st.Close()
			return err
		}
	}
	if *unsnapshotted > 0 {
		// Faces the index snapshot does not have: they are stored and
		// marked indexed, exactly as acknowledged enrollments look after
		// a kill -9 that came before the next snapshot.
		added, err := importRandom(ctx, st, rng, fmt.Sprintf("late-%d", time.Now().UnixNano()), *unsnapshotted, 1)
		if err != nil {
			st.Close()
			return err
		}
		if err := markIndexed(ctx, st, added); err != nil {
			st.Close()
			return err
		}
	}
	stats, err := st.CollectionStats(ctx, "bench")
	st.Close()
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.CommandContext(ctx, *visaged, "--addr", addr, "--data", *data, "--log-format", "text")
	if *models != "" {
		cmd.Args = append(cmd.Args, "--models", *models)
	}
	cmd.Stderr = env.stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	var listening time.Duration
	for time.Since(start) < 5*time.Minute {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if listening == 0 {
				listening = time.Since(start)
			}
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintf(env.stdout, "startup faces=%d unsnapshotted=%d listening_ms=%d ready_ms=%d\n",
					stats.Faces, *unsnapshotted, listening.Milliseconds(), time.Since(start).Milliseconds())
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("visaged not ready after 5 minutes")
}

// fillStartupData stores faces in collection "bench" and saves an index
// snapshot holding all of them.
func fillStartupData(ctx context.Context, env *cliEnv, st *store.SQLite, dir string, rng *rand.Rand, faces, perSubject int) error {
	if _, err := st.CreateCollection(ctx, store.Collection{Name: "bench", Threshold: 0.421}); err != nil {
		return err
	}
	idx, err := index.OpenHNSW(filepath.Join(dir, "hnsw"), embed.Dim, index.DefaultHNSWParams())
	if err != nil {
		return err
	}
	defer idx.Close()
	t0 := time.Now()
	const batch = 100_000
	for done := 0; done < faces; done += batch {
		n := min(batch, faces-done)
		added, err := importRandom(ctx, st, rng, fmt.Sprintf("b%d", done), n, perSubject)
		if err != nil {
			return err
		}
		items := make([]index.Item, len(added))
		for i, f := range added {
			items[i] = index.Item{Key: f.Key, Vector: f.Descriptor}
		}
		if err := idx.Upsert(ctx, "faces/bench", items); err != nil {
			return err
		}
		if err := markIndexed(ctx, st, added); err != nil {
			return err
		}
		fmt.Fprintf(env.stderr, "bench startup: %d/%d faces stored and indexed (%s)\n", done+n, faces, time.Since(t0).Round(time.Second))
	}
	t1 := time.Now()
	if err := idx.Save(ctx); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "bench startup: filled in %s, snapshot saved in %s\n", t1.Sub(t0).Round(time.Second), time.Since(t1).Round(time.Millisecond))
	return nil
}

// importRandom stores n faces of random unit descriptors, perSubject to a
// subject, with external ids under prefix.
func importRandom(ctx context.Context, st *store.SQLite, rng *rand.Rand, prefix string, n, perSubject int) ([]store.Face, error) {
	var items []store.SubjectFaces
	for i := 0; i < n; i += perSubject {
		sf := store.SubjectFaces{Subject: store.Subject{ExternalID: fmt.Sprintf("%s-%d", prefix, i), DisplayName: fmt.Sprintf("Person %s-%d", prefix, i)}}
		for j := 0; j < perSubject && i+j < n; j++ {
			sf.Faces = append(sf.Faces, store.Face{Descriptor: randomUnit(rng), ModelID: "bench", ImageSHA256: fmt.Sprintf("%s-%d-%d", prefix, i, j)})
		}
		items = append(items, sf)
	}
	return st.ImportSubjects(ctx, "bench", items)
}

func markIndexed(ctx context.Context, st *store.SQLite, faces []store.Face) error {
	keys := make([]uint64, len(faces))
	for i, f := range faces {
		keys[i] = f.Key
	}
	for start := 0; start < len(keys); start += 10_000 {
		if err := st.MarkFacesIndexed(ctx, keys[start:min(start+10_000, len(keys))]); err != nil {
			return err
		}
	}
	return nil
}

func randomUnit(rng *rand.Rand) []float32 {
	v := make([]float32, embed.Dim)
	var norm float64
	for i := range v {
		x := rng.NormFloat64()
		v[i] = float32(x)
		norm += x * x
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = float32(float64(v[i]) / norm)
	}
	return v
}
