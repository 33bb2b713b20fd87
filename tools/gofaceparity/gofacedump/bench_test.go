package main

import (
	"context"
	"os"
	"sync"
	"testing"

	face "github.com/Kagami/go-face"

	"github.com/visage/visage/tools/gofaceparity/internal/fixture"
)

// The go-face benchmarks live in this package, not beside Visage's, so
// that their binary holds go-face alone: Visage's dlib package replaces
// libdlib's img2col for the whole process (about a third of the ResNet's
// time) and pins OpenBLAS to one thread, either of which would credit
// go-face with Visage's work. Here go-face runs as its users get it,
// OpenBLAS threading included (set OPENBLAS_NUM_THREADS=1 to match
// Visage's single-threaded BLAS).

var recognizer struct {
	sync.Mutex
	rec *face.Recognizer
}

// goFace returns the process's recognizer (safe for concurrent use: it
// serialises calls with its own mutexes). The benchmark harness calls each
// benchmark more than once; loading the models once keeps that cheap.
func goFace(b *testing.B) *face.Recognizer {
	b.Helper()
	recognizer.Lock()
	defer recognizer.Unlock()
	if recognizer.rec == nil {
		// go-face reads its models while starting, so the temporary
		// directory may go when b ends.
		dir := fixture.GoFaceModelDir(b)
		rec, err := face.NewRecognizer(dir)
		if err != nil {
			b.Fatalf("go-face NewRecognizer(%s): %v", dir, err)
		}
		recognizer.rec = rec
	}
	return recognizer.rec
}

// TestMain frees the models after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if recognizer.rec != nil {
		recognizer.rec.Close()
	}
	os.Exit(code)
}

// BenchmarkGoFace is go-face's Recognize (HOG at full resolution, chips
// 150/0.25, one forward pass per face) called from one goroutine, the
// shared photos in turn.
func BenchmarkGoFace(b *testing.B) {
	rec := goFace(b)
	fixture.Drive(b, 1, func(_ context.Context, data []byte) (int, error) {
		fs, err := rec.Recognize(data)
		return len(fs), err
	})
}

// BenchmarkGoFace2Goroutines calls go-face from two goroutines. Its
// detector and network each sit behind one mutex, so the calls queue: at
// best one call's detection overlaps the other's embedding.
func BenchmarkGoFace2Goroutines(b *testing.B) {
	rec := goFace(b)
	fixture.Drive(b, 2, func(_ context.Context, data []byte) (int, error) {
		fs, err := rec.Recognize(data)
		return len(fs), err
	})
}
