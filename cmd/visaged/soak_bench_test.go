package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/visage/visage/index/qdranttest"
	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/internal/soak"
	"github.com/visage/visage/internal/testenv"
)

var soakFor = flag.Duration("soak", 2*time.Minute, "how long BenchmarkSoak drives each deployment")

// BenchmarkSoak drives a real visaged on each deployment (embedded:
// SQLite and HNSW; scale-out: PostgreSQL and the in-process Qdrant) with
// mixed traffic from four clients — identifications, enrollments,
// deletions, listings — and an import job every 20 s, printing the
// server's RSS, goroutines, open files and each kind's latency every 30 s
// and a summary line per deployment. It is a measurement, not a check:
//
//	go test ./cmd/visaged -run '^$' -bench Soak -benchtime 1x -soak 10m
func BenchmarkSoak(b *testing.B) {
	photos := soakPhotos(b, 300)
	bin := buildVisaged(b)
	for _, dep := range []string{"embedded", "scaleout"} {
		b.Run(dep, func(b *testing.B) {
			secret := "soak-secret-0123456789abcdefghij"
			env := []string{"VISAGE_BOOTSTRAP_ADMIN_KEY=" + secret, "VISAGE_RATE_LIMIT=0"}
			if dep == "scaleout" {
				q := qdranttest.Start(b, qdranttest.Options{})
				env = append(env, "VISAGE_DATABASE_URL="+pgtest.New(b), "VISAGE_QDRANT_ADDR="+q.Addr(), "VISAGE_QDRANT_API_KEY=")
			}
			d := start(b, bin, b.TempDir(), env...)
			samples, err := soak.Run(b.Context(), soak.Config{URL: d.url, Key: secret, Collection: "soak",
				Photos: photos, Duration: *soakFor, Interval: 30 * time.Second, Clients: 4,
				ImportEvery: 20 * time.Second, PID: d.cmd.Process.Pid, Out: os.Stdout, Seed: 1})
			if err != nil {
				b.Fatal(err)
			}
			first, last := samples[0], samples[len(samples)-1]
			var peak int64
			failures := 0
			for _, s := range samples {
				peak = max(peak, s.RSS)
				for _, n := range s.Failures {
					failures += n
				}
			}
			fmt.Printf("soak deployment=%s minutes=%.0f faces=%d->%d rss_mb=%.0f->%.0f peak_rss_mb=%.0f goroutines=%d->%d open_files=%d->%d failures=%d\n",
				dep, soakFor.Minutes(), first.Faces, last.Faces, mb(first.RSS), mb(last.RSS), mb(peak), first.Goroutines, last.Goroutines,
				first.OpenFiles, last.OpenFiles, failures)
		})
	}
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

// soakPhotos reads one photo of each of up to n lfw-open people with two
// or more, in people.tsv order.
func soakPhotos(b *testing.B, n int) []soak.Photo {
	b.Helper()
	root := testenv.Shared(b, "testdata/lfw-open")
	f, err := os.Open(filepath.Join(root, "people.tsv"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var out []soak.Photo
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(out) < n {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 3 {
			continue
		}
		if k, err := strconv.Atoi(fields[2]); err != nil || k < 2 {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, "images", fields[0], fields[0]+"_0001.jpg"))
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, soak.Photo{Person: fields[0], Data: data})
	}
	if len(out) == 0 {
		b.Fatal("no lfw-open photos")
	}
	return out
}
