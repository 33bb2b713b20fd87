package dlib

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/visage/visage/internal/config"
)

func loadTestNet(t testing.TB) *Net {
	t.Helper()
	p := filepath.Join(config.ModelDir(""), "dlib_face_recognition_resnet_model_v1.dat")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing (run ./scripts/setup.sh): %v", p, err)
	}
	n, err := LoadNet(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// testChips are deterministic pseudo-random chips: img2col must handle
// any content, and every pixel position matters at the image borders.
func testChips(count int) []byte {
	chips := make([]byte, count*ChipBytes)
	x := uint32(12345)
	for i := range chips {
		x = x*1664525 + 1013904223
		chips[i] = byte(x >> 24)
	}
	return chips
}

// TestFastIm2colIsBitIdentical compares descriptors computed with
// Visage's img2col and with libdlib's own.
func TestFastIm2colIsBitIdentical(t *testing.T) {
	n := loadTestNet(t)
	chips := testChips(3)
	before := fastIm2colCalls()
	fast, err := n.Embed(chips)
	if err != nil {
		t.Fatal(err)
	}
	// 29 convolutions per chip went through the interposed img2col.
	if calls := fastIm2colCalls() - before; calls != 29*3 {
		t.Fatalf("Visage's img2col ran %d times, want %d: the interposition is not in effect", calls, 29*3)
	}
	useLibraryIm2col(true)
	defer useLibraryIm2col(false)
	before = fastIm2colCalls()
	ref, err := n.Embed(chips)
	if err != nil {
		t.Fatal(err)
	}
	if calls := fastIm2colCalls() - before; calls != 0 {
		t.Fatalf("libdlib's img2col was not used (%d fast calls)", calls)
	}
	for i := range ref {
		if fast[i] != ref[i] {
			t.Fatalf("chip %d: descriptors differ between img2col implementations", i)
		}
	}
}

func BenchmarkNetEmbed(b *testing.B) {
	n := loadTestNet(b)
	chip := testChips(1)
	for _, lib := range []bool{false, true} {
		name := "visage_img2col"
		if lib {
			name = "libdlib_img2col"
		}
		b.Run(name, func(b *testing.B) {
			useLibraryIm2col(lib)
			defer useLibraryIm2col(false)
			for b.Loop() {
				if _, err := n.Embed(chip); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/face")
		})
	}
}
