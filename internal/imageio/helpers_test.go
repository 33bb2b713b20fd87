package imageio

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// testdataRoot is the shared real-photo corpus, relative to this package's
// directory (go test runs in the package directory).
const testdataRoot = "../../../shared/testdata"

// readShared reads a file from the shared test corpus, failing (never
// skipping) with the missing path when it is absent: a silently skipped
// real-photo test would hide regressions.
func readShared(t testing.TB, rel string) []byte {
	t.Helper()
	p := filepath.Join(testdataRoot, filepath.FromSlash(rel))
	b, err := os.ReadFile(p)
	if err != nil {
		abs, _ := filepath.Abs(p)
		t.Fatalf("missing shared test data %s (resolved to %s): %v", p, abs, err)
	}
	return b
}

// readLocal reads a fixture committed under this package's testdata/.
func readLocal(t testing.TB, name string) []byte {
	t.Helper()
	p := filepath.Join("testdata", name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("missing fixture %s: %v", p, err)
	}
	return b
}

// synthRGB is the colour of the synthetic test pattern at (x, y): smooth
// gradients (friendly to lossy codecs) in all three channels, plus a few
// saturated blocks so that colour-channel mix-ups are caught.
// testdata/*.webp were generated from this same function (see
// testdata/README.md), so it must not change.
func synthRGB(x, y, w, h int) (r, g, b uint8) {
	r = uint8(x * 255 / max(w-1, 1))
	g = uint8(y * 255 / max(h-1, 1))
	b = uint8(128 + 100*math.Sin(float64(x+y)/float64(w+h)*2*math.Pi))
	// Saturated patches in the top-left quarter.
	bw, bh := w/8, h/8
	switch {
	case x >= bw && x < 2*bw && y >= bh && y < 2*bh:
		return 230, 20, 20
	case x >= 2*bw && x < 3*bw && y >= bh && y < 2*bh:
		return 20, 200, 40
	case x >= 3*bw && x < 4*bw && y >= bh && y < 2*bh:
		return 30, 40, 220
	}
	return r, g, b
}

func synthNRGBA(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, b := synthRGB(x, y, w, h)
			m.SetNRGBA(x, y, color.NRGBA{r, g, b, 255})
		}
	}
	return m
}

// refRGB is the reference conversion the fast paths must match: At plus
// color.NRGBAModel (un-premultiplied colour, alpha dropped).
func refRGB(img image.Image) *Image {
	b := img.Bounds()
	out := &Image{Width: b.Dx(), Height: b.Dy(), Pix: make([]byte, 0, 3*b.Dx()*b.Dy())}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			out.Pix = append(out.Pix, c.R, c.G, c.B)
		}
	}
	return out
}

// refYCbCr converts with color.YCbCrToRGB per pixel: the behaviour the
// YCbCr fast path promises (At+RGBA() uses 16-bit maths and can differ by 1).
func refYCbCr(m *image.YCbCr) *Image {
	b := m.Bounds()
	out := &Image{Width: b.Dx(), Height: b.Dy()}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := m.YCbCrAt(x, y)
			r, g, bb := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
			out.Pix = append(out.Pix, r, g, bb)
		}
	}
	return out
}

// diffStats returns the mean absolute difference per channel (the largest of
// the three channel means) and the largest single difference.
func diffStats(t testing.TB, a, b *Image) (meanMax float64, maxAbs int) {
	t.Helper()
	if a.Width != b.Width || a.Height != b.Height {
		t.Fatalf("size mismatch: %dx%d vs %dx%d", a.Width, a.Height, b.Width, b.Height)
	}
	if len(a.Pix) != len(b.Pix) {
		t.Fatalf("len(Pix) mismatch: %d vs %d", len(a.Pix), len(b.Pix))
	}
	var sum [3]float64
	for i := range a.Pix {
		d := int(a.Pix[i]) - int(b.Pix[i])
		if d < 0 {
			d = -d
		}
		sum[i%3] += float64(d)
		maxAbs = max(maxAbs, d)
	}
	n := float64(a.Width * a.Height)
	return max(sum[0], sum[1], sum[2]) / n, maxAbs
}

func mustEqualImages(t testing.TB, got, want *Image) {
	t.Helper()
	mean, mx := diffStats(t, got, want)
	if mx != 0 {
		t.Fatalf("pixels differ: mean abs diff %.3f, max %d", mean, mx)
	}
}

func encodeJPEG(t testing.TB, img image.Image, q int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// toImage turns a packed RGB Image back into an image.Image (for
// re-encoding in tests).
func toImage(im *Image) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, im.Width, im.Height))
	for i, j := 0, 0; i < len(im.Pix); i, j = i+3, j+4 {
		m.Pix[j], m.Pix[j+1], m.Pix[j+2], m.Pix[j+3] = im.Pix[i], im.Pix[i+1], im.Pix[i+2], 255
	}
	return m
}

// --- Hand-built PNG -------------------------------------------------------

// pngChunk returns one PNG chunk with a correct CRC.
func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	binary.Write(&b, binary.BigEndian, crc.Sum32())
	return b.Bytes()
}

func pngIHDR(w, h uint32, depth, colorType byte) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = depth, colorType
	return pngChunk("IHDR", ihdr)
}

// rawPNG builds a PNG from unfiltered rows. Go's encoder never writes
// grey+alpha (colour type 4), so those test files are assembled here.
func rawPNG(t testing.TB, w, h int, depth, colorType byte, rows [][]byte, extra ...[]byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	for _, r := range rows {
		zw.Write([]byte{0}) // filter type None
		zw.Write(r)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	b.Write(pngIHDR(uint32(w), uint32(h), depth, colorType))
	for _, e := range extra {
		b.Write(e)
	}
	b.Write(pngChunk("IDAT", z.Bytes()))
	b.Write(pngChunk("IEND", nil))
	return b.Bytes()
}

// --- EXIF -----------------------------------------------------------------

// tiffWithOrientation builds a small TIFF structure (as found in EXIF) in
// the given byte order whose IFD0 holds a few ordinary tags around
// Orientation, so the parser has to walk entries rather than find it first.
func tiffWithOrientation(order binary.ByteOrder, orientation uint16) []byte {
	var b bytes.Buffer
	if order == binary.LittleEndian {
		b.WriteString("II")
	} else {
		b.WriteString("MM")
	}
	w16 := func(v uint16) { binary.Write(&b, order, v) }
	w32 := func(v uint32) { binary.Write(&b, order, v) }
	w16(42)
	w32(8)
	w16(3) // entries
	// 0x010F Make, ASCII, count 4 (inline "Go\0\0")
	w16(0x010F)
	w16(2)
	w32(4)
	b.WriteString("Go\x00\x00")
	// 0x0112 Orientation, SHORT, 1
	w16(0x0112)
	w16(3)
	w32(1)
	w16(orientation)
	w16(0)
	// 0x011A XResolution, RATIONAL, 1, offset (points past the end on
	// purpose: the parser must not care about entries it does not read)
	w16(0x011A)
	w16(5)
	w32(1)
	w32(0xFFFFFF00)
	w32(0) // next IFD
	return b.Bytes()
}

// withJPEGApp1 inserts an APP1 segment holding "Exif\0\0"+tiff right after
// SOI, where cameras put it.
func withJPEGApp1(jpg, payload []byte) []byte {
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

func jpegWithOrientation(jpg []byte, order binary.ByteOrder, o uint16) []byte {
	return withJPEGApp1(jpg, append([]byte("Exif\x00\x00"), tiffWithOrientation(order, o)...))
}

// --- Independent geometric transforms on image.NRGBA ----------------------
//
// The EXIF tests build "stored" images from upright ones with these, written
// independently of Image.oriented (as compositions of a 90° rotation and
// mirrors) so that a shared mistake cannot make the test pass.

func rotCW(m *image.NRGBA) *image.NRGBA {
	b := m.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dy(), b.Dx()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			// The left column of the source becomes the top row.
			out.SetNRGBA(b.Dy()-1-y, x, m.NRGBAAt(b.Min.X+x, b.Min.Y+y))
		}
	}
	return out
}

func mirrorH(m *image.NRGBA) *image.NRGBA {
	b := m.Bounds()
	out := image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			out.SetNRGBA(b.Dx()-1-x, y, m.NRGBAAt(b.Min.X+x, b.Min.Y+y))
		}
	}
	return out
}

func mirrorV(m *image.NRGBA) *image.NRGBA {
	return rotCW(rotCW(mirrorH(m)))
}

// storedFor returns how a camera would store the upright image u when it
// writes EXIF orientation o, i.e. the inverse of the display transform.
func storedFor(u *image.NRGBA, o int) *image.NRGBA {
	switch o {
	case 2: // display mirrors H; inverse: mirror H
		return mirrorH(u)
	case 3: // display rotates 180; inverse: rotate 180
		return rotCW(rotCW(u))
	case 4: // display mirrors V
		return mirrorV(u)
	case 5: // transpose is its own inverse
		return mirrorH(rotCW(u))
	case 6: // display rotates CW; stored is rotated CCW
		return rotCW(rotCW(rotCW(u)))
	case 7: // transverse is its own inverse
		return mirrorV(rotCW(u))
	case 8: // display rotates CCW; stored is rotated CW
		return rotCW(u)
	}
	return u
}

// progressiveScanBomb builds a valid progressive greyscale JPEG of
// size×size pixels whose DC scan is followed by acScans AC scans that each
// cover every block with two end-of-band runs: about 15 bytes per scan, but
// each scan costs the decoder a pass over all blocks.
func progressiveScanBomb(size, acScans int) []byte {
	var b bytes.Buffer
	seg := func(marker byte, payload []byte) {
		b.Write([]byte{0xFF, marker, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)})
		b.Write(payload)
	}
	b.Write([]byte{0xFF, 0xD8})
	dqt := make([]byte, 65)
	for i := 1; i < 65; i++ {
		dqt[i] = 1
	}
	seg(0xDB, dqt)
	seg(0xC2, []byte{8, byte(size >> 8), byte(size), byte(size >> 8), byte(size), 1, 1, 0x11, 0})
	// DC table: one 1-bit code for category 0. AC table: two 1-bit codes,
	// EOB14 (a run of 2^14 + 14 extra bits blocks) and EOB1.
	dht := []byte{0x00, 1}
	dht = append(dht, make([]byte, 15)...)
	dht = append(dht, 0x00, 0x10, 2)
	dht = append(dht, make([]byte, 15)...)
	dht = append(dht, 0xE0, 0x10)
	seg(0xC4, dht)
	seg(0xDA, []byte{1, 1, 0x00, 0, 0, 0}) // DC first scan
	blocks := (size / 8) * (size / 8)
	b.Write(make([]byte, (blocks+7)/8)) // every DC difference is 0: one '0' bit
	for i := 0; i < acScans; i++ {
		seg(0xDA, []byte{1, 1, 0x00, 1, 63, 0})
		// '0'+14 ones (EOB run 32767), twice, then '1'+'0' (EOB run 2):
		// 65536 blocks for size 2048; the 0xFF byte is stuffed.
		b.Write([]byte{0x7F, 0xFE, 0xFF, 0x00, 0xFE})
	}
	b.Write([]byte{0xFF, 0xD9})
	return b.Bytes()
}
