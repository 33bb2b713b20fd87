package gallery

import (
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/internal/imageio"
	"github.com/visage/visage/internal/testenv"
)

// openEngine opens the real engine with the default configuration.
func openEngine(t *testing.T, workers int) *Engine {
	t.Helper()
	cfg := DefaultEngineConfig(testenv.ModelDir(t))
	cfg.Workers = workers
	eng, err := OpenEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

func facesOf(t *testing.T, eng *Engine, data []byte) *Result {
	t.Helper()
	res, err := eng.Faces(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

var bbtPeople = []string{"amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart"}

// TestBBTLeaveOneOut identifies each of the 40 portraits against the
// other 39 by nearest neighbour and reports rank-1 accuracy.
func TestBBTLeaveOneOut(t *testing.T) {
	eng := openEngine(t, 2)
	type sample struct {
		person string
		d      embed.Descriptor
	}
	var all []sample
	for _, p := range bbtPeople {
		for i := 1; i <= 5; i++ {
			rel := filepath.Join("testdata/faces/bbt", p, p+string(rune('0'+i))+".png")
			res := facesOf(t, eng, testenv.ReadShared(t, rel))
			faces, err := Largest(res.Faces, 0)
			if err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			all = append(all, sample{p, faces[0].Descriptor})
		}
	}
	correct := 0
	for i, probe := range all {
		best, bestD := -1, math.Inf(1)
		for j, g := range all {
			if j == i {
				continue
			}
			if d := embed.Distance(probe.d, g.d); d < bestD {
				best, bestD = j, d
			}
		}
		if all[best].person == probe.person {
			correct++
		} else {
			t.Logf("%s portrait %d: nearest is %s at %.3f", probe.person, i%5+1, all[best].person, bestD)
		}
	}
	rank1 := float64(correct) / float64(len(all))
	t.Logf("bbt leave-one-out rank-1: %d/%d = %.3f", correct, len(all), rank1)
	if rank1 < 0.95 {
		t.Errorf("rank-1 %.3f < 0.95", rank1)
	}
}

func TestGroupPhotosFindEveryFace(t *testing.T) {
	eng := openEngine(t, 1)
	tests := []struct {
		photo string
		faces int
	}{
		{"testdata/faces/bbt/bbt1.jpg", 4},
		{"testdata/faces/bbt/bbt3.jpg", 4},
		{"testdata/faces/bbt/bbt4.jpg", 6},
		{"testdata/faces/misc/two_people.jpg", 2},
		{"testdata/faces/knn/test/obama_and_biden.jpg", 3},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.photo), func(t *testing.T) {
			res := facesOf(t, eng, testenv.ReadShared(t, tc.photo))
			if len(res.Faces) < tc.faces {
				t.Errorf("found %d faces, want at least %d", len(res.Faces), tc.faces)
			}
			for i, f := range res.Faces {
				if len(f.Landmarks) != 68 {
					t.Errorf("face %d: %d landmarks", i, len(f.Landmarks))
				}
				if f.Quality.Size <= 0 || f.Quality.Sharpness <= 0 {
					t.Errorf("face %d: quality not measured: %+v", i, f.Quality)
				}
				var norm float64
				for _, x := range f.Descriptor {
					norm += float64(x) * float64(x)
				}
				if math.Abs(math.Sqrt(norm)-1) > 1e-4 {
					t.Errorf("face %d: descriptor norm %.5f, want 1 (+l2 variant)", i, math.Sqrt(norm))
				}
			}
		})
	}
}

// storedPixel maps a stored-image pixel to the upright image for an EXIF
// orientation (the stored image is what a camera with that tag writes).
func storedPixel(o, sx, sy, w, h int) (x, y int) {
	switch o {
	case 2:
		return w - 1 - sx, sy
	case 3:
		return w - 1 - sx, h - 1 - sy
	case 4:
		return sx, h - 1 - sy
	case 5:
		return sy, sx
	case 6:
		return w - 1 - sy, sx
	case 7:
		return w - 1 - sy, h - 1 - sx
	case 8:
		return sy, h - 1 - sx
	}
	return sx, sy
}

// orientedJPEG stores up as a camera with orientation o would and tags it.
func orientedJPEG(t *testing.T, up *imageio.Image, o int) []byte {
	t.Helper()
	w, h := up.Width, up.Height
	sw, sh := w, h
	if o >= 5 {
		sw, sh = h, w
	}
	st := image.NewRGBA(image.Rect(0, 0, sw, sh))
	for sy := 0; sy < sh; sy++ {
		for sx := 0; sx < sw; sx++ {
			x, y := storedPixel(o, sx, sy, w, h)
			i := 3 * (y*w + x)
			st.SetRGBA(sx, sy, color.RGBA{up.Pix[i], up.Pix[i+1], up.Pix[i+2], 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, st, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	// APP1 "Exif\0\0", little-endian TIFF, IFD0 with one SHORT tag 0x0112.
	tiff := []byte{'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, byte(o), 0, 0, 0, 0, 0, 0, 0}
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xFF, 0xE1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(len(payload)+2))
	seg = append(seg, payload...)
	data := buf.Bytes()
	return append(append(append([]byte{}, data[:2]...), seg...), data[2:]...)
}

func TestEXIFOrientationGivesSameFaces(t *testing.T) {
	eng := openEngine(t, 1)
	up, err := imageio.Decode(testenv.ReadShared(t, "testdata/faces/misc/two_people.jpg"), imageio.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	ref := facesOf(t, eng, orientedJPEG(t, up, 1))
	if len(ref.Faces) != 2 {
		t.Fatalf("reference: %d faces, want 2", len(ref.Faces))
	}
	for o := 2; o <= 8; o++ {
		t.Run("orientation"+string(rune('0'+o)), func(t *testing.T) {
			res := facesOf(t, eng, orientedJPEG(t, up, o))
			if res.Width != up.Width || res.Height != up.Height {
				t.Fatalf("decoded %dx%d, want upright %dx%d", res.Width, res.Height, up.Width, up.Height)
			}
			if len(res.Faces) != len(ref.Faces) {
				t.Fatalf("%d faces, want %d", len(res.Faces), len(ref.Faces))
			}
			for _, f := range ref.Faces {
				best := math.Inf(1)
				for _, g := range res.Faces {
					best = math.Min(best, Distance(f, g))
				}
				if best > 0.1 {
					t.Errorf("face at %v: nearest rotated-copy face is %.3f away, want < 0.1", f.Box, best)
				}
			}
		})
	}
}

func pngOf(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hugePNG is a valid PNG header declaring w×h pixels followed by a tiny
// IDAT: the declared size alone must get it refused.
func TestBadAndUnusualInputs(t *testing.T) {
	eng := openEngine(t, 1)
	portrait := testenv.ReadShared(t, "testdata/faces/bbt/leonard/leonard1.png")
	src, err := png.Decode(bytes.NewReader(portrait))
	if err != nil {
		t.Fatal(err)
	}
	b := src.Bounds()
	gray := image.NewGray(b)
	rgba64 := image.NewRGBA64(b)
	nrgba := image.NewNRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := src.At(x, y)
			gray.Set(x, y, c)
			rgba64.Set(x, y, c)
			r, g, bl, _ := c.RGBA()
			nrgba.SetNRGBA(x, y, color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), 200})
		}
	}
	obama := testenv.ReadShared(t, "testdata/faces/misc/obama.jpg")

	tests := []struct {
		name     string
		data     []byte
		wantCode string // "" means decoded, with wantFaces faces
		faces    int
	}{
		{"zero bytes", nil, "empty_image", 0},
		{"text", []byte("this is not an image, just some text\n"), "unsupported_format", 0},
		{"truncated jpeg", obama[:len(obama)/2], "corrupt_image", 0},
		{"png declaring 50000x50000", testenv.HugePNG(50000, 50000), "image_too_large", 0},
		{"16-bit png", pngOf(t, rgba64), "", 1},
		{"grey png", pngOf(t, gray), "", 1},
		{"alpha png", pngOf(t, nrgba), "", 1},
		{"cmyk jpeg", testenv.CMYKJPEGOf(src), "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res, err := eng.Faces(context.Background(), tc.data)
			runtime.ReadMemStats(&after)
			if tc.wantCode != "" {
				if err == nil {
					t.Fatalf("decoded %dx%d, want error %s", res.Width, res.Height, tc.wantCode)
				}
				if got := ErrorCode(err); got != tc.wantCode {
					t.Errorf("code %q (%v), want %q", got, err, tc.wantCode)
				}
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
					t.Errorf("allocated %d MB to refuse it", alloc>>20)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v (code %s), want faces", err, ErrorCode(err))
			}
			if len(res.Faces) != tc.faces {
				t.Errorf("%d faces, want %d", len(res.Faces), tc.faces)
			}
		})
	}
}

// TestConcurrentDescriptorsMatchSequential runs many goroutines over the
// same photos (under -race in CI) and demands bit-identical descriptors.
func TestConcurrentDescriptorsMatchSequential(t *testing.T) {
	eng := openEngine(t, 2)
	photos := []string{"testdata/faces/bbt/bbt3.jpg", "testdata/faces/misc/two_people.jpg", "testdata/faces/bbt/raj/raj2.png", "testdata/faces/bbt/penny/penny4.png"}
	data := make([][]byte, len(photos))
	want := make([][]embed.Descriptor, len(photos))
	for i, p := range photos {
		data[i] = testenv.ReadShared(t, p)
		for _, f := range facesOf(t, eng, data[i]).Faces {
			want[i] = append(want[i], f.Descriptor)
		}
	}
	const goroutines, rounds = 12, 3
	var wg sync.WaitGroup
	errs := make(chan string, goroutines*rounds*len(photos))
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				i := (g + r) % len(photos)
				res, err := eng.Faces(context.Background(), data[i])
				if err != nil {
					errs <- err.Error()
					continue
				}
				got := make([]embed.Descriptor, len(res.Faces))
				for k, f := range res.Faces {
					got[k] = f.Descriptor
				}
				if !sameDescriptors(got, want[i]) {
					errs <- photos[i] + ": descriptors differ from the sequential run"
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func sameDescriptors(a, b []embed.Descriptor) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(ds []embed.Descriptor) []embed.Descriptor {
		s := append([]embed.Descriptor(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i][0] < s[j][0] })
		return s
	}
	ka, kb := key(a), key(b)
	for i := range ka {
		if ka[i] != kb[i] {
			return false
		}
	}
	return true
}
