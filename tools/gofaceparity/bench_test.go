package gofaceparity

import (
	"context"
	"testing"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/tools/gofaceparity/internal/fixture"
)

// Visage's side of the comparison; go-face's (BenchmarkGoFace,
// BenchmarkGoFace2Goroutines) is in ./gofacedump, a binary without
// Visage's dlib package. `run.sh -run '^$' -bench . ./...` runs both.
// Each operation is one shared photo, the photos in turn (ns/op is per
// image); faces/s is the figure to compare, since faces are what a
// caller pays for. Decoding is included, as go-face includes it.

// BenchmarkVisage1Worker is Visage configured as go-face works, with one
// worker: the like-for-like comparison with BenchmarkGoFace.
func BenchmarkVisage1Worker(b *testing.B) {
	benchVisage(b, goFaceConfig(fixture.ModelDir(b), 1), 1)
}

// BenchmarkVisage2Workers is the same configuration with two workers (a
// detector and a network each), driven by two goroutines.
func BenchmarkVisage2Workers(b *testing.B) {
	benchVisage(b, goFaceConfig(fixture.ModelDir(b), 2), 2)
}

// BenchmarkVisageDefault2Workers is Visage as the CLI and server run it
// (gallery.DefaultEngineConfig: detection on a copy of at most 1024 px,
// small images upsampled, L2-normalised descriptors) with two workers.
// The faces it finds may differ from go-face's; faces/op shows how many.
func BenchmarkVisageDefault2Workers(b *testing.B) {
	cfg := gallery.DefaultEngineConfig(fixture.ModelDir(b))
	cfg.Workers = 2
	benchVisage(b, cfg, 2)
}

func benchVisage(b *testing.B, cfg gallery.EngineConfig, goroutines int) {
	eng := engine(b, cfg)
	fixture.Drive(b, goroutines, func(ctx context.Context, data []byte) (int, error) {
		res, err := eng.Faces(ctx, data)
		if err != nil {
			return 0, err
		}
		return len(res.Faces), nil
	})
}
