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

// testChips are deterministic pseudo-random chips.
func testChips(count int) []byte {
	chips := make([]byte, count*ChipBytes)
	x := uint32(12345)
	for i := range chips {
		x = x*1664525 + 1013904223
		chips[i] = byte(x >> 24)
	}
	return chips
}

// TestBatchDoesNotChangeDescriptors: a chip's descriptor is the same
// alone or in a batch (the last layer is summed in a fixed order).
func TestBatchDoesNotChangeDescriptors(t *testing.T) {
	n := loadTestNet(t)
	chips := testChips(3)
	batch, err := n.Embed(chips)
	if err != nil {
		t.Fatal(err)
	}
	for i := range batch {
		one, err := n.Embed(chips[i*ChipBytes : (i+1)*ChipBytes])
		if err != nil {
			t.Fatal(err)
		}
		if one[0] != batch[i] {
			t.Errorf("chip %d: descriptor alone differs from the batched one", i)
		}
	}
	if _, err := n.Embed(chips[:100]); err == nil {
		t.Error("a partial chip was accepted")
	}
}

// BenchmarkNetEmbed is the bare network, one chip per pass, one thread.
func BenchmarkNetEmbed(b *testing.B) {
	n := loadTestNet(b)
	chip := testChips(1)
	for b.Loop() {
		if _, err := n.Embed(chip); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/face")
}
