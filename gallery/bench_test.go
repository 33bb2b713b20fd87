package gallery

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/visage/visage/align"
	"github.com/visage/visage/detect"
	"github.com/visage/visage/internal/imageio"
	"github.com/visage/visage/internal/testenv"
)

// Benchmarks of the engine's stages and of the whole pipeline. Run with
//
//	go test -run '^$' -bench . -benchtime 20x ./gallery/
//
// One worker means one thread of C++ (OpenBLAS is pinned to one thread),
// so the single-worker figures are per core.

func benchEngine(b *testing.B, workers int, tune func(*EngineConfig)) *Engine {
	b.Helper()
	cfg := DefaultEngineConfig(testenv.ModelDir(b))
	cfg.Workers = workers
	if tune != nil {
		tune(&cfg)
	}
	eng, err := OpenEngine(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(eng.Close)
	return eng
}

func decoded(b *testing.B, data []byte) *imageio.Image {
	b.Helper()
	img, err := imageio.Decode(data, imageio.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	return img
}

func BenchmarkDecodeJPEG1920x1280(b *testing.B) {
	data := testenv.GroupPhoto1920(b)
	for b.Loop() {
		if _, err := imageio.Decode(data, imageio.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDetectHOG1920x1280(b *testing.B) {
	img := decoded(b, testenv.GroupPhoto1920(b))
	for _, tc := range []struct {
		name    string
		maxSide int
	}{{"scan1024", 1024}, {"scan1280", 1280}, {"fullres", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			opts := detect.DefaultOptions()
			opts.MaxSide = tc.maxSide
			det, err := detect.NewHOG(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer det.Close()
			var faces int
			for b.Loop() {
				boxes, err := det.Detect(context.Background(), img)
				if err != nil {
					b.Fatal(err)
				}
				faces = len(boxes)
			}
			b.ReportMetric(float64(faces), "faces")
		})
	}
}

func BenchmarkLandmarksAndChip(b *testing.B) {
	eng := benchEngine(b, 1, nil)
	img := decoded(b, testenv.GroupPhoto1920(b))
	boxes, err := eng.Detector.Detect(context.Background(), img)
	if err != nil || len(boxes) == 0 {
		b.Fatalf("no faces: %v", err)
	}
	box := boxes[0].Rect
	b.Run("landmarks68", func(b *testing.B) {
		for b.Loop() {
			if _, err := eng.Landmarker.Landmarks(img, box); err != nil {
				b.Fatal(err)
			}
		}
	})
	pts, _ := eng.Landmarker.Landmarks(img, box)
	b.Run("chip", func(b *testing.B) {
		for b.Loop() {
			if _, err := align.Chip(img, box, pts); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEmbed is the network alone, one worker: ms per face on one core.
func BenchmarkEmbed(b *testing.B) {
	eng := benchEngine(b, 1, nil)
	img := decoded(b, testenv.ReadShared(b, "testdata/faces/bbt/amy/amy1.png"))
	boxes, _ := eng.Detector.Detect(context.Background(), img)
	if len(boxes) == 0 {
		b.Fatal("no face")
	}
	pts, _ := eng.Landmarker.Landmarks(img, boxes[0].Rect)
	chip, err := align.Chip(img, boxes[0].Rect, pts)
	if err != nil {
		b.Fatal(err)
	}
	for _, batch := range []int{1, 4} {
		b.Run("batch"+string(rune('0'+batch)), func(b *testing.B) {
			chips := make([][]byte, batch)
			for i := range chips {
				chips[i] = chip
			}
			for b.Loop() {
				if _, err := eng.Embedder.Embed(context.Background(), chips); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N*batch), "ms/face")
		})
	}
}

// BenchmarkEndToEnd1920x1280 is bytes → 4 faces with descriptors on one
// worker (the engine target: ≤ 150 ms).
func BenchmarkEndToEnd1920x1280(b *testing.B) {
	data := testenv.GroupPhoto1920(b)
	eng := benchEngine(b, 1, nil)
	var faces int
	for b.Loop() {
		res, err := eng.Faces(context.Background(), data)
		if err != nil {
			b.Fatal(err)
		}
		faces = len(res.Faces)
	}
	b.ReportMetric(float64(faces), "faces")
}

// sharedPhotos are the group and portrait photos of the throughput and
// recall measurements (tools/gofaceparity compares with go-face on all 30
// shared JPEGs instead).
var sharedPhotos = []string{
	"testdata/faces/bbt/bbt1.jpg", "testdata/faces/bbt/bbt2.jpg", "testdata/faces/bbt/bbt3.jpg",
	"testdata/faces/bbt/bbt4.jpg", "testdata/faces/bbt/bbt5.jpg", "testdata/faces/misc/two_people.jpg",
	"testdata/faces/misc/obama.jpg", "testdata/faces/misc/lennon-1.jpg", "testdata/faces/knn/test/obama_and_biden.jpg",
}

// BenchmarkThroughput runs the default engine over the shared photos from
// as many goroutines as workers and reports faces per second.
func BenchmarkThroughput(b *testing.B) {
	data := make([][]byte, len(sharedPhotos))
	for i, p := range sharedPhotos {
		data[i] = testenv.ReadShared(b, p)
	}
	for _, workers := range []int{1, 2} {
		b.Run("workers"+string(rune('0'+workers)), func(b *testing.B) {
			eng := benchEngine(b, workers, nil)
			var faces atomic.Int64
			b.ResetTimer()
			for b.Loop() {
				var wg sync.WaitGroup
				var next atomic.Int64
				for w := 0; w < workers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := next.Add(1) - 1; i < int64(len(data)); i = next.Add(1) - 1 {
							res, err := eng.Faces(context.Background(), data[i])
							if err != nil {
								b.Error(err)
								return
							}
							faces.Add(int64(len(res.Faces)))
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(faces.Load())/b.Elapsed().Seconds(), "faces/s")
		})
	}
}

// TestDownscaledScanKeepsFaces checks the default scan copy against
// full-resolution HOG on the shared group photos: every face that
// full-resolution HOG finds must be found (box overlap ≥ 0.5).
func TestDownscaledScanKeepsFaces(t *testing.T) {
	full, err := detect.NewHOG(detect.Options{MaxSide: 0, MaxUpsample: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	def, err := detect.NewHOG(detect.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	photos := map[string][]byte{"group1920x1280": testenv.GroupPhoto1920(t)}
	for _, p := range sharedPhotos {
		photos[p] = testenv.ReadShared(t, p)
	}
	total, kept := 0, 0
	for name, data := range photos {
		img, err := imageio.Decode(data, imageio.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		ref, err := full.Detect(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		got, err := def.Detect(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ref {
			total++
			if detect.Matches(r.Rect, got) {
				kept++
			} else {
				t.Errorf("%s: full-resolution face at %v not found by the default scan", name, r.Rect)
			}
		}
	}
	t.Logf("default scan recall against full-resolution HOG: %d/%d", kept, total)
}
