package embed

import (
	"context"
	"math"
	"path/filepath"
	"sync"
	"testing"

	"github.com/visage/visage/internal/dlib"
	"github.com/visage/visage/internal/testenv"
)

func TestVariantStringRoundTrip(t *testing.T) {
	for _, v := range []Variant{{}, {Normalize: true}, {Mirror: true}, {Mirror: true, Normalize: true},
		{Jitter: 20}, {Jitter: 5, Normalize: true}, {Mirror: true, Jitter: 3, Normalize: true}} {
		got, err := ParseVariant(v.String())
		if err != nil || got != v {
			t.Errorf("ParseVariant(%q) = %+v, %v; want %+v", v.String(), got, err, v)
		}
	}
	for _, bad := range []string{"", "l2", "mirror2", "jitter0", "jitterx+l2", "plain+l3"} {
		if _, err := ParseVariant(bad); err == nil {
			t.Errorf("ParseVariant(%q) succeeded", bad)
		}
	}
}

func TestDistance(t *testing.T) {
	var a, b Descriptor
	a[0], b[1] = 3, 4
	if d := Distance(a, b); math.Abs(d-5) > 1e-12 {
		t.Errorf("Distance = %v, want 5 (Euclidean, not squared)", d)
	}
}

// testChip is a real aligned chip: the centre of a shared portrait.
func testChip(t *testing.T) []byte {
	t.Helper()
	chip := make([]byte, dlib.ChipBytes)
	for i := range chip {
		chip[i] = byte(i * 7)
	}
	return chip
}

func TestPoolVariants(t *testing.T) {
	dir := testenv.ModelDir(t)
	model, err := IdentifyModel(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if model.SHA256 != convertedNetSHA {
		t.Logf("model directory holds a user-supplied network (sha256 %s)", model.SHA256[:12])
	}
	chip := testChip(t)
	mirrored := mirror(chip)
	embedWith := func(v Variant, chips ...[]byte) []Descriptor {
		t.Helper()
		p, err := NewPool(model, Options{Workers: 1, MaxBatch: 8, Variant: v})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.ModelID() != model.ID(v) {
			t.Errorf("ModelID %q", p.ModelID())
		}
		d, err := p.Embed(context.Background(), chips)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	plain := embedWith(Variant{}, chip, mirrored)
	mir := embedWith(Variant{Mirror: true}, chip)[0]
	for i := range mir {
		want := (plain[0][i] + plain[1][i]) / 2
		if math.Abs(float64(mir[i]-want)) > 1e-6 {
			t.Fatalf("mirror variant is not the mean of chip and mirror at %d: %v vs %v", i, mir[i], want)
		}
	}
	l2 := embedWith(Variant{Normalize: true}, chip)[0]
	var n float64
	for _, x := range l2 {
		n += float64(x) * float64(x)
	}
	if math.Abs(math.Sqrt(n)-1) > 1e-5 {
		t.Errorf("+l2 norm %.6f", math.Sqrt(n))
	}
	j1 := embedWith(Variant{Jitter: 3}, chip)[0]
	j2 := embedWith(Variant{Jitter: 3}, chip)[0]
	if j1 != j2 {
		t.Error("jitter is not deterministic")
	}
	if Distance(j1, plain[0]) == 0 {
		t.Error("jitter changed nothing")
	}

	t.Run("bad chip and closed pool", func(t *testing.T) {
		p, err := NewPool(model, Options{Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Embed(context.Background(), [][]byte{chip[:100]}); err == nil {
			t.Error("short chip accepted")
		}
		p.Close()
		if _, err := p.Embed(context.Background(), [][]byte{chip}); err == nil {
			t.Error("closed pool embedded")
		}
	})
}

func TestDescriptorSpaces(t *testing.T) {
	m := Model{SHA256: "b413e420d684aaaa"}
	if got, want := m.Space(Variant{Mirror: true, Normalize: true}), "dlib-resnet-v1@b413e420d684/plain+l2"; got != want {
		t.Errorf("Space(mirror+l2) = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		a, b string
		ok   bool
	}{
		{"dlib-resnet-v1@b413e420d684/plain+l2", "dlib-resnet-v1@b413e420d684/mirror+l2", true},
		{"dlib-resnet-v1@b413e420d684/jitter4+l2", "dlib-resnet-v1@b413e420d684/mirror+jitter10+l2", true},
		{"dlib-resnet-v1@b413e420d684/plain+l2", "dlib-resnet-v1@b413e420d684/plain", false},
		{"dlib-resnet-v1@b413e420d684/mirror", "dlib-resnet-v1@b413e420d684/plain", true},
		{"dlib-resnet-v1@b413e420d684/plain+l2", "dlib-resnet-v1@0000000000aa/plain+l2", false},
		{"bench", "bench", true},
		{"bench", "dlib-resnet-v1@b413e420d684/plain+l2", false},
	} {
		if got := Comparable(tc.a, tc.b); got != tc.ok {
			t.Errorf("Comparable(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

// TestEmbedAsMixesVariantsInBatches: calls of different variants share a
// pool's batches, and each face's descriptor is what its variant alone
// gives (a jittered face larger than a batch runs alone).
func TestEmbedAsMixesVariantsInBatches(t *testing.T) {
	dir := testenv.ModelDir(t)
	model, err := IdentifyModel(filepath.Join(dir, ModelFile))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(model, Options{Workers: 1, MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	chip := testChip(t)
	variants := []Variant{{}, {Normalize: true}, {Mirror: true, Normalize: true}, {Jitter: 6, Normalize: true}}
	alone := make([]Descriptor, len(variants))
	for i, v := range variants {
		d, err := p.EmbedAs(context.Background(), [][]byte{chip}, v)
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = d[0]
	}
	if want := (Variant{Normalize: true}).Combine(alone[0]); want != alone[1] {
		t.Error("plain+l2 is not the normalised raw pass")
	}
	var wg sync.WaitGroup
	for round := 0; round < 5; round++ {
		for i, v := range variants {
			wg.Go(func() {
				d, err := p.EmbedAs(context.Background(), [][]byte{chip, chip}, v)
				if err != nil {
					t.Error(err)
					return
				}
				if d[0] != alone[i] || d[1] != alone[i] {
					t.Errorf("variant %s in a shared batch differs from alone", v)
				}
			})
		}
	}
	wg.Wait()
}
