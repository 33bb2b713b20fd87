package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/image/bmp"

	"github.com/visage/visage/internal/testenv"
)

// Size of the synthetic pattern; odd on purpose, so that chroma subsampling
// and row padding have partial blocks to get wrong.
const sw, sh = 99, 65

func synthGray(w, h int) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, b := synthRGB(x, y, w, h)
			m.SetGray(x, y, color.Gray{uint8((299*int(r) + 587*int(g) + 114*int(b)) / 1000)})
		}
	}
	return m
}

// synthAlpha is the synthetic pattern with a horizontal alpha ramp (the same
// ramp testdata/lossy_alpha.webp was made with).
func synthAlpha(w, h int) *image.NRGBA {
	m := synthNRGBA(w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.Pix[m.PixOffset(x, y)+3] = uint8(64 + x*191/(w-1))
		}
	}
	return m
}

func synth16(w, h int, alpha bool) *image.NRGBA64 {
	m := image.NewNRGBA64(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, b := synthRGB(x, y, w, h)
			a := uint16(0xffff)
			if alpha {
				a = uint16(0x4000 + x*0xbfff/(w-1))
			}
			// Distinct low bytes, so that "take the high byte" is tested.
			m.SetNRGBA64(x, y, color.NRGBA64{uint16(r)<<8 | uint16(x), uint16(g)<<8 | uint16(y), uint16(b)<<8 | 0xAB, a})
		}
	}
	return m
}

func synthPaletted(w, h int, pal color.Palette) *image.Paletted {
	m := image.NewPaletted(image.Rect(0, 0, w, h), pal)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, b := synthRGB(x, y, w, h)
			m.SetColorIndex(x, y, uint8(pal.Index(color.NRGBA{r, g, b, 255})))
		}
	}
	return m
}

// grayAlphaRows builds rows for a grey+alpha PNG (colour type 4) and the
// packed RGB they must decode to (grey replicated, alpha dropped).
func grayAlphaRows(w, h int, depth int) ([][]byte, *Image) {
	want := &Image{Width: w, Height: h}
	var rows [][]byte
	g := synthGray(w, h)
	for y := 0; y < h; y++ {
		var row []byte
		for x := 0; x < w; x++ {
			v := g.GrayAt(x, y).Y
			a := uint8(x * 255 / (w - 1)) // includes fully transparent pixels
			if depth == 8 {
				row = append(row, v, a)
			} else {
				row = append(row, v, 0x5A, a, 0xA5)
			}
			want.Pix = append(want.Pix, v, v, v)
		}
		rows = append(rows, row)
	}
	return rows, want
}

// TestDecodeFormats decodes every supported format and colour layout,
// checking the size and that the colours match the generated source: exactly
// for lossless encodings, approximately for lossy ones.
func TestDecodeFormats(t *testing.T) {
	src := synthNRGBA(sw, sh)
	srcRGB := refRGB(src)
	gray := synthGray(sw, sh)
	alpha := synthAlpha(sw, sh)

	ga8Rows, ga8Want := grayAlphaRows(sw, sh, 8)
	ga16Rows, ga16Want := grayAlphaRows(sw, sh, 16)

	palSmall := color.Palette{color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 255, 0, 255}, color.NRGBA{0, 0, 255, 255}, color.NRGBA{255, 255, 255, 255}}
	palTRNS := color.Palette{color.NRGBA{200, 10, 10, 0}, color.NRGBA{10, 200, 10, 128}, color.NRGBA{10, 10, 200, 255}, color.NRGBA{250, 250, 250, 255}}
	webSafe := synthPaletted(sw, sh, palette.WebSafe)
	// tRNS alpha is dropped: the palette's colour channels remain, even for
	// the fully transparent entry.
	trns := synthPaletted(sw, sh, palTRNS)
	trnsWant := refRGB(&image.Paletted{Pix: trns.Pix, Stride: trns.Stride, Rect: trns.Rect,
		Palette: color.Palette{color.NRGBA{200, 10, 10, 255}, color.NRGBA{10, 200, 10, 255}, color.NRGBA{10, 10, 200, 255}, color.NRGBA{250, 250, 250, 255}}})

	rgba := image.NewRGBA(src.Rect) // premultiplied, opaque
	copy(rgba.Pix, src.Pix)
	rgba64 := image.NewRGBA64(src.Rect)
	for y := 0; y < sh; y++ {
		for x := 0; x < sw; x++ {
			rgba64.Set(x, y, src.At(x, y))
		}
	}
	gray16 := image.NewGray16(src.Rect)
	for y := 0; y < sh; y++ {
		for x := 0; x < sw; x++ {
			gray16.SetGray16(x, y, color.Gray16{uint16(gray.GrayAt(x, y).Y)<<8 | uint16(x)})
		}
	}

	cmykPx := func(x, y int) color.CMYK {
		r, g, b := synthRGB(x, y, sw, sh)
		c, m, yy, k := color.RGBToCMYK(r, g, b)
		return color.CMYK{c, m, yy, k}
	}

	enc := func(f func(*bytes.Buffer) error) []byte {
		var buf bytes.Buffer
		if err := f(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}

	tests := []struct {
		name   string
		data   []byte
		format string
		// want is the expected result; exact demands identical pixels,
		// otherwise mean/max bound the absolute difference per channel.
		want    *Image
		exact   bool
		maxMean float64
		maxAbs  int
	}{
		// libjpeg's smoothing ("fancy") chroma upsampling spreads the
		// synthetic image's hard colour edges further than Go's replication.
		{name: "jpeg/ycbcr420", data: encodeJPEG(t, src, 90), format: "jpeg", want: srcRGB, maxMean: 4, maxAbs: 128},
		{name: "jpeg/gray", data: encodeJPEG(t, gray, 90), format: "jpeg", want: refRGB(gray), maxMean: 2, maxAbs: 40},
		{name: "jpeg/cmyk-adobe0-handmade", data: testenv.CMYKJPEG(sw, sh, cmykPx, 0, true), format: "jpeg", want: srcRGB, maxMean: 1.5, maxAbs: 12},
		{name: "jpeg/ycck-adobe2-handmade", data: testenv.CMYKJPEG(sw, sh, cmykPx, 2, true), format: "jpeg", want: srcRGB, maxMean: 1.5, maxAbs: 12},
		{name: "jpeg/ycck-imagemagick", data: readLocal(t, "cmyk_magick.jpg"), format: "jpeg", want: srcRGB, maxMean: 3, maxAbs: 60},

		{name: "png/rgb8", data: encodePNG(t, rgba), format: "png", want: srcRGB, exact: true},
		{name: "png/rgba8", data: encodePNG(t, alpha), format: "png", want: refRGB(alpha), exact: true},
		{name: "png/rgb16", data: encodePNG(t, rgba64), format: "png", want: srcRGB, exact: true},
		{name: "png/rgb16-lowbytes", data: encodePNG(t, synth16(sw, sh, false)), format: "png", want: srcRGB, exact: true},
		{name: "png/rgba16", data: encodePNG(t, synth16(sw, sh, true)), format: "png", want: srcRGB, exact: true},
		{name: "png/gray8", data: encodePNG(t, gray), format: "png", want: refRGB(gray), exact: true},
		{name: "png/gray16", data: encodePNG(t, gray16), format: "png", want: refRGB(gray), exact: true},
		{name: "png/grayalpha8", data: rawPNG(t, sw, sh, 8, 4, ga8Rows), format: "png", want: ga8Want, exact: true},
		{name: "png/grayalpha16", data: rawPNG(t, sw, sh, 16, 4, ga16Rows), format: "png", want: ga16Want, exact: true},
		{name: "png/paletted8", data: encodePNG(t, webSafe), format: "png", want: refRGB(webSafe), exact: true},
		{name: "png/paletted2bit", data: encodePNG(t, synthPaletted(sw, sh, palSmall)), format: "png", want: refRGB(synthPaletted(sw, sh, palSmall)), exact: true},
		{name: "png/paletted-trns", data: encodePNG(t, trns), format: "png", want: trnsWant, exact: true},

		{name: "gif/websafe", data: enc(func(b *bytes.Buffer) error { return gif.Encode(b, webSafe, nil) }), format: "gif", want: refRGB(webSafe), exact: true},
		{name: "gif/approx", data: enc(func(b *bytes.Buffer) error { return gif.Encode(b, webSafe, nil) }), format: "gif", want: srcRGB, maxMean: 20, maxAbs: 26},

		{name: "webp/lossy", data: readLocal(t, "lossy.webp"), format: "webp", want: srcRGB, maxMean: 3.5, maxAbs: 120},
		{name: "webp/lossy-alpha", data: readLocal(t, "lossy_alpha.webp"), format: "webp", want: srcRGB, maxMean: 3.5, maxAbs: 120},
		// libwebp's own decoder (dwebp -nofancy: nearest-neighbour chroma,
		// as we do) must agree exactly: proves the limited-range conversion.
		{name: "webp/lossy-vs-libwebp", data: readLocal(t, "lossy.webp"), format: "webp", want: pngFixture(t, "lossy.dwebp-nofancy.png"), exact: true},
		{name: "webp/lossy-alpha-vs-libwebp", data: readLocal(t, "lossy_alpha.webp"), format: "webp", want: pngFixture(t, "lossy_alpha.dwebp-nofancy.png"), exact: true},
		{name: "webp/lossless", data: readLocal(t, "lossless.webp"), format: "webp", want: srcRGB, exact: true},

		{name: "bmp/24bit", data: enc(func(b *bytes.Buffer) error { return bmp.Encode(b, rgba) }), format: "bmp", want: srcRGB, exact: true},
		{name: "bmp/32bit-alpha", data: enc(func(b *bytes.Buffer) error { return bmp.Encode(b, alpha) }), format: "bmp", want: refRGB(alpha), exact: true},
		{name: "bmp/8bit-paletted", data: enc(func(b *bytes.Buffer) error { return bmp.Encode(b, webSafe) }), format: "bmp", want: refRGB(webSafe), exact: true},
		{name: "bmp/gray", data: enc(func(b *bytes.Buffer) error { return bmp.Encode(b, gray) }), format: "bmp", want: refRGB(gray), exact: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.data, Limits{})
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.Format != tc.format {
				t.Errorf("Format = %q, want %q", got.Format, tc.format)
			}
			if got.Width != tc.want.Width || got.Height != tc.want.Height {
				t.Fatalf("size = %dx%d, want %dx%d", got.Width, got.Height, tc.want.Width, tc.want.Height)
			}
			if len(got.Pix) != 3*got.Width*got.Height {
				t.Fatalf("len(Pix) = %d, want %d", len(got.Pix), 3*got.Width*got.Height)
			}
			mean, mx := diffStats(t, got, tc.want)
			t.Logf("mean abs diff %.3f, max %d", mean, mx)
			if tc.exact {
				if mx != 0 {
					t.Fatalf("expected identical pixels; mean abs diff %.3f, max %d", mean, mx)
				}
				return
			}
			if mean > tc.maxMean || mx > tc.maxAbs {
				t.Fatalf("colours too far from source: mean abs diff %.3f (limit %.1f), max %d (limit %d)", mean, tc.maxMean, mx, tc.maxAbs)
			}
		})
	}
}

// pngFixture decodes a committed PNG with the standard library and
// reference conversion.
func pngFixture(t *testing.T, name string) *Image {
	m, err := png.Decode(bytes.NewReader(readLocal(t, name)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return refRGB(m)
}

// TestDecodeMatchesStdlib checks that the YCbCr fast path of FromImage is
// bit-exact against the documented conversion (color.YCbCrToRGB), i.e. it
// adds no error. (Decode itself reads JPEGs with libjpeg; see
// TestDecodeRealPhotos.)
func TestDecodeMatchesStdlib(t *testing.T) {
	src := synthNRGBA(sw, sh)
	for _, q := range []int{50, 90, 100} {
		data := encodeJPEG(t, src, q)
		m, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		mustEqualImages(t, FromImage(m), refYCbCr(m.(*image.YCbCr)))
	}
}

func TestDecodeRealPhotos(t *testing.T) {
	// realPhotos are decoded and compared bit-exactly with the standard decoder.
	// They cover baseline and progressive JPEGs, JPEGs carrying EXIF
	// (orientation 1) in both byte orders, RGBA and grey PNGs.
	realPhotos := []string{
		"faces/misc/obama.jpg",           // EXIF II, orientation 1
		"faces/misc/longoria-cooper.jpg", // progressive, EXIF MM, orientation 1
		"faces/misc/lennon-1.jpg",        // progressive
		"faces/misc/biden.jpg",
		"faces/misc/carell.jpg",
		"faces/misc/clapton-1.jpg", // EXIF with an empty IFD0
		"faces/misc/two_people.jpg",
		"faces/misc/obama_small.jpg",
		"faces/misc/lin-manuel-miranda.png", // RGBA PNG
		"faces/bbt/amy/amy1.png",            // grey PNG
		"faces/bbt/bbt1.jpg",
		"faces/knn/test/obama_and_biden.jpg",
		"lfw-dev/images/Guy_Ritchie/Guy_Ritchie_0001.jpg",
	}
	for _, p := range realPhotos {
		t.Run(p, func(t *testing.T) {
			data := readShared(t, p)
			m, stdFormat, err := image.Decode(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("stdlib decode: %v", err)
			}
			got, err := Decode(data, Limits{})
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got.Format != stdFormat {
				t.Errorf("Format = %q, stdlib says %q", got.Format, stdFormat)
			}
			var want *Image
			if y, ok := m.(*image.YCbCr); ok {
				want = refYCbCr(y)
			} else {
				want = refRGB(m)
			}
			if got.Format == FormatJPEG {
				// libjpeg (islow IDCT, smoothing chroma upsampling) and
				// image/jpeg round differently; they agree to within a
				// fraction of a grey level on average.
				if mean, mx := diffStats(t, got, want); mean > 1 || mx > 16 {
					t.Fatalf("pixels differ from image/jpeg: mean abs diff %.3f, max %d", mean, mx)
				}
				return
			}
			mustEqualImages(t, got, want)
		})
	}
}

// TestDecodeGIFFirstFrame: an animated GIF yields its first frame only.
func TestDecodeGIFFirstFrame(t *testing.T) {
	pal := color.Palette{color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 0, 255, 255}}
	f1 := image.NewPaletted(image.Rect(0, 0, 8, 6), pal) // all red
	f2 := image.NewPaletted(image.Rect(0, 0, 8, 6), pal)
	for i := range f2.Pix {
		f2.Pix[i] = 1 // all blue
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, &gif.GIF{Image: []*image.Paletted{f1, f2}, Delay: []int{10, 10}}); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(buf.Bytes(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	mustEqualImages(t, got, refRGB(f1))
}

// TestDecodeErrors covers the refusal paths and their codes, including the
// order in which checks run.
func TestDecodeErrors(t *testing.T) {
	obama := readShared(t, "faces/misc/obama.jpg")
	small := encodeJPEG(t, synthNRGBA(40, 30), 90)
	pngData := encodePNG(t, synthNRGBA(40, 30))

	badCRC := append([]byte{}, pngData...)
	badCRC[8+8+13] ^= 0xFF // first byte of IHDR's CRC

	// A 12-bit JPEG: valid, but image/jpeg only decodes 8-bit precision.
	precision12 := append([]byte{}, small...)
	if i := bytes.Index(precision12, []byte{0xFF, 0xC0}); i < 0 {
		t.Fatal("no SOF0 in generated JPEG")
	} else {
		precision12[i+4] = 12
	}

	// An RLE-compressed BMP header: valid BMP, unsupported by x/image/bmp.
	var bmpBuf bytes.Buffer
	if err := bmp.Encode(&bmpBuf, synthNRGBA(8, 8)); err != nil {
		t.Fatal(err)
	}
	bmpRLE := append([]byte{}, bmpBuf.Bytes()...)
	binary.LittleEndian.PutUint32(bmpRLE[30:34], 1) // BI_RLE8

	// WebP declaring animation in VP8X.
	animated := riffWebP(vp8xChunk(0x02, 8, 8))

	// GIF whose logical screen is 0×0.
	gifData := func() []byte {
		var b bytes.Buffer
		if err := gif.Encode(&b, synthPaletted(4, 4, palette.WebSafe), nil); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}()
	gifZero := append([]byte{}, gifData...)
	copy(gifZero[6:10], []byte{0, 0, 0, 0})

	tests := []struct {
		name string
		data []byte
		lim  Limits
		code string
	}{
		{"empty/nil", nil, Limits{}, CodeEmptyImage},
		{"empty/zero-length", []byte{}, Limits{}, CodeEmptyImage},
		{"empty/before-limits", []byte{}, Limits{MaxBytes: 1, MaxPixels: 1}, CodeEmptyImage},
		{"unsupported/text", []byte("hello, this is definitely not an image\n"), Limits{}, CodeUnsupportedFormat},
		{"unsupported/text-starting-BM", []byte("BMW is a car manufacturer, not a bitmap header"), Limits{}, CodeUnsupportedFormat},
		{"unsupported/pdf", []byte("%PDF-1.7\n1 0 obj\n<< >>\nendobj\n"), Limits{}, CodeUnsupportedFormat},
		{"unsupported/tiff", []byte("II*\x00\x08\x00\x00\x00\x00\x00"), Limits{}, CodeUnsupportedFormat},
		{"unsupported/heic", []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), Limits{}, CodeUnsupportedFormat},
		{"unsupported/single-byte", []byte{0xFF}, Limits{}, CodeUnsupportedFormat},
		{"unsupported/jpeg-12bit", precision12, Limits{}, CodeUnsupportedFormat},
		{"unsupported/cmyk-jpeg-without-adobe", testenv.CMYKJPEG(16, 16, func(x, y int) color.CMYK { return color.CMYK{10, 20, 30, 40} }, 0, false), Limits{}, CodeUnsupportedFormat},
		{"unsupported/bmp-rle", bmpRLE, Limits{}, CodeUnsupportedFormat},
		{"unsupported/webp-animated", animated, Limits{}, CodeUnsupportedFormat},
		{"corrupt/truncated-obama-jpeg", obama[:len(obama)/2], Limits{}, CodeCorruptImage},
		{"corrupt/jpeg-soi-only", []byte{0xFF, 0xD8, 0xFF}, Limits{}, CodeCorruptImage},
		{"corrupt/truncated-png", pngData[:len(pngData)-30], Limits{}, CodeCorruptImage},
		{"corrupt/png-signature-only", pngData[:8], Limits{}, CodeCorruptImage},
		{"corrupt/png-bad-crc", badCRC, Limits{}, CodeCorruptImage},
		{"corrupt/png-zero-width", rawPNG(t, 0, 1, 8, 0, nil), Limits{}, CodeCorruptImage},
		{"corrupt/gif-header-only", []byte("GIF89a"), Limits{}, CodeCorruptImage},
		{"corrupt/gif-zero-screen", gifZero, Limits{}, CodeCorruptImage},
		{"corrupt/truncated-gif", gifData[:len(gifData)/2], Limits{}, CodeCorruptImage},
		{"corrupt/truncated-webp", readLocal(t, "lossy.webp")[:300], Limits{}, CodeCorruptImage},
		{"corrupt/webp-header-only", []byte("RIFF\x04\x00\x00\x00WEBP"), Limits{}, CodeCorruptImage},
		{"corrupt/truncated-bmp", bmpBuf.Bytes()[:100], Limits{}, CodeCorruptImage},
		{"too-large/max-bytes", small, Limits{MaxBytes: int64(len(small) - 1)}, CodeImageTooLarge},
		{"too-large/max-bytes-before-format", bytes.Repeat([]byte("x"), 100), Limits{MaxBytes: 99}, CodeImageTooLarge},
		{"too-large/max-pixels", small, Limits{MaxPixels: 40*30 - 1}, CodeImageTooLarge},
		{"ok/max-pixels-exact", small, Limits{MaxPixels: 40 * 30}, ""},
		{"ok/max-bytes-exact", small, Limits{MaxBytes: int64(len(small))}, ""},
		{"ok/negative-limits-mean-default", small, Limits{MaxBytes: -1, MaxPixels: -1}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Decode(tc.data, tc.lim)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %dx%d image, want error %s", img.Width, img.Height, tc.code)
			}
			if img != nil {
				t.Errorf("non-nil image returned with error")
			}
			t.Logf("error: %v", err)
			if got := Code(err); got != tc.code {
				t.Fatalf("Code = %q, want %q (err: %v)", got, tc.code, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if !errors.Is(err, sentinelFor(tc.code)) {
				t.Fatalf("errors.Is(err, sentinel for %s) is false", tc.code)
			}
			for _, other := range []error{ErrEmptyImage, ErrUnsupportedFormat, ErrCorruptImage, ErrImageTooLarge} {
				if other != sentinelFor(tc.code) && errors.Is(err, other) {
					t.Fatalf("error also matches %v", other)
				}
			}
		})
	}
}

// riffWebP wraps chunks into a RIFF/WEBP container.
func riffWebP(chunks ...[]byte) []byte {
	var body []byte
	for _, c := range chunks {
		body = append(body, c...)
	}
	out := []byte("RIFF")
	out = binary.LittleEndian.AppendUint32(out, uint32(4+len(body)))
	out = append(out, "WEBP"...)
	return append(out, body...)
}

func riffChunk(fourcc string, payload []byte) []byte {
	out := append([]byte(fourcc), binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))...)
	out = append(out, payload...)
	if len(payload)%2 == 1 {
		out = append(out, 0)
	}
	return out
}

func vp8xChunk(flags byte, w, h int) []byte {
	p := make([]byte, 10)
	p[0] = flags
	w1, h1 := w-1, h-1
	p[4], p[5], p[6] = byte(w1), byte(w1>>8), byte(w1>>16)
	p[7], p[8], p[9] = byte(h1), byte(h1>>8), byte(h1>>16)
	return riffChunk("VP8X", p)
}

// TestHugeDeclaredDimensions: files whose headers declare enormous images
// must be refused from the header alone, without allocating the pixels.
func TestHugeDeclaredDimensions(t *testing.T) {
	// A PNG whose IHDR (valid CRC) declares 50000×50000 RGBA: 10 GB decoded.
	pngHuge := append([]byte("\x89PNG\r\n\x1a\n"), pngIHDR(50000, 50000, 8, 6)...)
	pngHuge = append(pngHuge, pngChunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	pngHuge = append(pngHuge, pngChunk("IEND", nil)...)

	jpegHuge := encodeJPEG(t, synthNRGBA(16, 16), 90)
	i := bytes.Index(jpegHuge, []byte{0xFF, 0xC0})
	binary.BigEndian.PutUint16(jpegHuge[i+5:], 60000) // height
	binary.BigEndian.PutUint16(jpegHuge[i+7:], 60000) // width

	gifHuge := []byte("GIF89a\xff\xff\xff\xff\x00\x00\x00;")

	webpHuge := riffWebP(vp8xChunk(0, 1<<14, 1<<14))

	var bmpBuf bytes.Buffer
	if err := bmp.Encode(&bmpBuf, synthNRGBA(4, 4)); err != nil {
		t.Fatal(err)
	}
	bmpHuge := bmpBuf.Bytes()
	binary.LittleEndian.PutUint32(bmpHuge[18:], 30000)
	binary.LittleEndian.PutUint32(bmpHuge[22:], 30000)

	tests := []struct {
		name string
		data []byte
	}{
		{"png-50000x50000", pngHuge},
		{"jpeg-60000x60000", jpegHuge},
		{"gif-65535x65535", gifHuge},
		{"webp-16384x16384", webpHuge},
		{"bmp-30000x30000", bmpHuge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			img, err := Decode(tc.data, Limits{})
			runtime.ReadMemStats(&after)
			if Code(err) != CodeImageTooLarge {
				t.Fatalf("got (%v, %v), want image_too_large", img, err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%v; allocated %d bytes", err, alloc)
			if alloc > 10<<20 {
				t.Fatalf("allocated %d bytes refusing a huge image; want < 10 MB", alloc)
			}
		})
	}
}

// TestTruncatedBMPRefusedEarly: a BMP header promising 2000×2000 pixels in a
// tiny file is refused as corrupt by the length check, before the decoder
// allocates 16 MB for the canvas.
func TestTruncatedBMPRefusedEarly(t *testing.T) {
	var bmpBuf bytes.Buffer
	if err := bmp.Encode(&bmpBuf, synthNRGBA(4, 4)); err != nil {
		t.Fatal(err)
	}
	data := bmpBuf.Bytes()
	binary.LittleEndian.PutUint32(data[18:], 2000)
	binary.LittleEndian.PutUint32(data[22:], 2000)
	var err error
	alloc := allocatedBy(func() { _, err = Decode(data, Limits{}) })
	if Code(err) != CodeCorruptImage {
		t.Fatalf("err = %v, want corrupt_image", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("allocated %d bytes; the length check should refuse before decoding", alloc)
	}
}

// TestPNGTooLittleData: a tiny PNG declaring a large canvas is refused from
// the IDAT sizes, before the decoder allocates the canvas.
func TestPNGTooLittleData(t *testing.T) {
	data := append([]byte("\x89PNG\r\n\x1a\n"), pngIHDR(6000, 6000, 8, 6)...)
	data = append(data, pngChunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})...)
	data = append(data, pngChunk("IEND", nil)...)
	var err error
	alloc := allocatedBy(func() { _, err = Decode(data, Limits{}) })
	if Code(err) != CodeCorruptImage {
		t.Fatalf("err = %v, want corrupt_image", err)
	}
	if alloc > 1<<20 {
		t.Fatalf("allocated %d bytes; want the check to refuse before decoding", alloc)
	}

	// A maximally compressible genuine PNG (all zero, 16-bit RGBA, so
	// 8 bytes per pixel) passes: the bound never rejects real files.
	big := image.NewNRGBA64(image.Rect(0, 0, 2000, 1500))
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, big); err != nil {
		t.Fatal(err)
	}
	t.Logf("all-zero 2000x1500 RGBA64 PNG: %d bytes", buf.Len())
	if _, err := Decode(buf.Bytes(), Limits{}); err != nil {
		t.Fatalf("genuine highly compressed PNG refused: %v", err)
	}
}

// TestJPEGScanBomb: a small progressive JPEG with thousands of scans would
// cost minutes of CPU; it must be refused up front.
func TestJPEGScanBomb(t *testing.T) {
	bomb := progressiveScanBomb(2048, 5000)
	t.Logf("bomb: %d bytes", len(bomb))
	if _, err := Decode(bomb, Limits{}); Code(err) != CodeCorruptImage {
		t.Fatalf("err = %v, want corrupt_image", err)
	}
	// The same construction within the limit is a JPEG image/jpeg decodes,
	// and Decode does not refuse it for its scans (libjpeg, stricter about
	// the generator's Huffman tables, may still call it corrupt): the
	// refusal above is due to the scan count alone.
	within := progressiveScanBomb(64, maxJPEGScans-1)
	if _, err := jpeg.Decode(bytes.NewReader(within)); err != nil {
		t.Fatalf("%d scans: the generator's JPEG is invalid: %v", maxJPEGScans, err)
	}
	if _, err := Decode(within, Limits{}); err != nil && strings.Contains(err.Error(), "scans") {
		t.Fatalf("%d scans refused for its scan count: %v", maxJPEGScans, err)
	}
	if _, err := Decode(progressiveScanBomb(64, maxJPEGScans), Limits{}); Code(err) != CodeCorruptImage {
		t.Fatalf("%d scans: err = %v, want corrupt_image", maxJPEGScans+1, err)
	}

	tests := []struct {
		name string
		data []byte
		want int
	}{
		{"baseline", encodeJPEG(t, synthNRGBA(40, 30), 90), 1},
		{"progressive-lennon", readShared(t, "faces/misc/lennon-1.jpg"), -1},
		{"progressive-longoria", readShared(t, "faces/misc/longoria-cooper.jpg"), -1},
		{"bomb-10", progressiveScanBomb(64, 10), 11},
		{"truncated-in-exif", readShared(t, "faces/misc/obama.jpg")[:5000], 0}, // the walk stops at the overrunning segment
	}
	for _, tc := range tests {
		n := jpegScans(tc.data, maxJPEGScans)
		t.Logf("%s: %d scans", tc.name, n)
		if tc.want >= 0 && n != tc.want {
			t.Errorf("%s: %d scans, want %d", tc.name, n, tc.want)
		}
		if tc.want < 0 && (n < 2 || n > 20) {
			t.Errorf("%s: %d scans, expected a typical progressive count", tc.name, n)
		}
	}
}

// TestPanicRecovery: a panicking decoder, or one returning an image whose
// buffers do not match its bounds, yields an error instead of a crash.
func TestPanicRecovery(t *testing.T) {
	boom := codec{
		config: func(io.Reader) (image.Config, error) { panic("config boom") },
		decode: func(io.Reader) (image.Image, error) { panic("decode boom") },
	}
	if _, err := safeConfig(boom, []byte{1}); err == nil {
		t.Error("safeConfig swallowed nothing: want error")
	}
	if _, err := safeDecode(boom, []byte{1}, false); err == nil {
		t.Error("safeDecode: want error")
	}
	short := codec{decode: func(io.Reader) (image.Image, error) {
		return &image.RGBA{Pix: make([]byte, 7), Stride: 40, Rect: image.Rect(0, 0, 10, 10)}, nil
	}}
	if _, err := safeDecode(short, []byte{1}, false); err == nil {
		t.Error("inconsistent image: want error")
	}
	shortY := codec{decode: func(io.Reader) (image.Image, error) {
		return &image.YCbCr{Y: make([]byte, 3), Rect: image.Rect(0, 0, 10, 10), SubsampleRatio: image.YCbCrSubsampleRatio420}, nil
	}}
	if _, err := safeDecode(shortY, []byte{1}, true); err == nil {
		t.Error("inconsistent vp8 image: want error")
	}
	if c := Code(classify("png", "data", errors.New("x"))); c != CodeCorruptImage {
		t.Errorf("classify: %s", c)
	}
}

// TestDecodeConcurrent runs Decode from several goroutines (for -race).
func TestDecodeConcurrent(t *testing.T) {
	inputs := [][]byte{
		encodeJPEG(t, synthNRGBA(64, 48), 90),
		encodePNG(t, synthAlpha(64, 48)),
		jpegWithOrientation(encodeJPEG(t, synthNRGBA(64, 48), 90), binary.BigEndian, 6),
	}
	want := make([]*Image, len(inputs))
	for i, in := range inputs {
		var err error
		if want[i], err = Decode(in, Limits{}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 20; i++ {
				k := (g + i) % len(inputs)
				got, err := Decode(inputs[k], Limits{})
				if err == nil && !bytes.Equal(got.Pix, want[k].Pix) {
					err = errors.New("concurrent decode differs")
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestDefaultLimits(t *testing.T) {
	l := DefaultLimits()
	if l.MaxBytes != 32<<20 || l.MaxPixels != 40_000_000 {
		t.Fatalf("DefaultLimits() = %+v", l)
	}
	if (Limits{}).withDefaults() != l {
		t.Fatalf("zero Limits do not mean the defaults")
	}
}

func TestTooMany(t *testing.T) {
	const maxInt = int(^uint(0) >> 1)
	tests := []struct {
		w, h  int
		limit int64
		want  bool
	}{
		{1, 1, 1, false},
		{2, 1, 1, true},
		{6000, 6666, 40_000_000, false},
		{6000, 6667, 40_000_000, true},
		{maxInt, maxInt, 40_000_000, true},
		{maxInt, 1, 1 << 62, true}, // fits the limit but not 3*w*h bytes
		{1 << 20, 1 << 20, 1 << 62, false},
	}
	for _, tc := range tests {
		if got := tooMany(tc.w, tc.h, tc.limit); got != tc.want {
			t.Errorf("tooMany(%d, %d, %d) = %v, want %v", tc.w, tc.h, tc.limit, got, tc.want)
		}
	}
}

func TestErrorType(t *testing.T) {
	e := &Error{Code: CodeCorruptImage, Detail: "png: bad CRC"}
	if !errors.Is(e, ErrCorruptImage) {
		t.Error("hand-built *Error with nil Err does not match its sentinel")
	}
	if e.Error() != "imageio: corrupt_image: png: bad CRC" {
		t.Errorf("Error() = %q", e.Error())
	}
	wrapped := errors.Join(errors.New("context"), newError(CodeImageTooLarge, "x"))
	if Code(wrapped) != CodeImageTooLarge {
		t.Errorf("Code through a wrapper = %q", Code(wrapped))
	}
	if Code(errors.New("other")) != "" || Code(nil) != "" {
		t.Error("Code of a foreign error should be empty")
	}
	if Code(errors.Join(ErrEmptyImage)) != CodeEmptyImage {
		t.Error("Code of a wrapped bare sentinel")
	}
}

// Check a png helper round-trip so that rawPNG errors cannot masquerade as
// decoder behaviour.
func TestRawPNGHelper(t *testing.T) {
	rows, _ := grayAlphaRows(5, 3, 8)
	m, err := png.Decode(bytes.NewReader(rawPNG(t, 5, 3, 8, 4, rows)))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*image.NRGBA); !ok {
		t.Fatalf("grey+alpha PNG decoded as %T", m)
	}
}

// allocatedBy returns the bytes the Go heap allocated while f ran.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
