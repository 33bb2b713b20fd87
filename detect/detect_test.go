package detect

import (
	"context"
	"image"
	"testing"

	"github.com/visage/visage/internal/imageio"
	"github.com/visage/visage/internal/testenv"
)

func TestScanSize(t *testing.T) {
	def := DefaultOptions()
	tests := []struct {
		name           string
		opts           Options
		w, h           int
		wantW, wantH   int
		wantScaleAbove float64
	}{
		{"large photo downscaled", def, 1920, 1280, 1024, 683, 0.53},
		{"portrait downscaled by its height", def, 1280, 1920, 683, 1024, 0.53},
		{"medium photo untouched", def, 800, 600, 800, 600, 1},
		{"thumbnail upsampled 2x", def, 250, 250, 500, 500, 2},
		{"small image upsampled towards 640", def, 400, 300, 640, 480, 1.6},
		{"full resolution", Options{MaxSide: 0, MaxUpsample: 1}, 4000, 3000, 4000, 3000, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, h, s := tc.opts.ScanSize(tc.w, tc.h)
			if w != tc.wantW || h != tc.wantH {
				t.Errorf("ScanSize(%d, %d) = %dx%d, want %dx%d", tc.w, tc.h, w, h, tc.wantW, tc.wantH)
			}
			if s < tc.wantScaleAbove-0.01 || s > tc.wantScaleAbove+0.01 {
				t.Errorf("scale %.3f, want about %.2f", s, tc.wantScaleAbove)
			}
		})
	}
}

func TestHOGBoxesInFullResolutionFrame(t *testing.T) {
	img, err := imageio.Decode(testenv.ReadShared(t, "testdata/faces/misc/obama-1080p.jpg"), imageio.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	full, err := NewHOG(Options{MaxUpsample: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	small, err := NewHOG(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	a, err := full.Detect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	b, err := small.Detect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("faces: full %d, scaled %d; want 1 each", len(a), len(b))
	}
	// The scaled scan's box, mapped back, overlaps the full-resolution box.
	if iou := IoU(a[0].Rect, b[0].Rect); iou < 0.6 {
		t.Errorf("boxes %v (full) and %v (scaled) overlap only %.2f", a[0].Rect, b[0].Rect, iou)
	}
	if a[0].Detector != HOGName || a[0].Score <= 0 {
		t.Errorf("box %+v: want a positive HOG score", a[0])
	}
}

func TestCancelledWhileWaiting(t *testing.T) {
	det, err := NewHOG(DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	s := <-det.free // hold the only detector
	defer func() { det.free <- s }()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	img := &imageio.Image{Width: 8, Height: 8, Pix: make([]byte, 8*8*3)}
	if _, err := det.Detect(ctx, img); err == nil {
		t.Error("Detect with a cancelled context and no free detector succeeded")
	}
}

func TestCNNDetector(t *testing.T) {
	path := testenv.CNNModel(t)
	det, err := NewCNN(path, Options{MaxSide: 1200, MaxUpsample: 2, UpsampleTo: 1200})
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	img, err := imageio.Decode(testenv.ReadShared(t, "testdata/faces/bbt/bbt3.jpg"), imageio.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	boxes, err := det.Detect(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	// HOG finds 4 frontal faces here; the CNN also finds turned ones.
	if len(boxes) < 4 {
		t.Errorf("CNN found %d faces in bbt3.jpg, want at least HOG's 4", len(boxes))
	}
	for _, b := range boxes {
		if b.Detector != CNNName || !b.Rect.Overlaps(image.Rect(0, 0, img.Width, img.Height)) {
			t.Errorf("bad box %+v", b)
		}
	}
}
