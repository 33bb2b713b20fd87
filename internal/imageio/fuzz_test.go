package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"testing"

	"golang.org/x/image/bmp"

	"github.com/visage/visage/internal/testenv"
)

// FuzzDecode asserts that Decode never panics and returns either a
// consistent *Image or an *Error with a known code.
func FuzzDecode(f *testing.F) {
	// Tight limits keep each execution cheap: the properties under test (no
	// panic, consistent result, known error code) do not depend on size, and
	// mutated headers would otherwise make runs allocate up to the default
	// 40 megapixels.
	fuzzLimits := Limits{MaxBytes: 1 << 20, MaxPixels: 1 << 18}
	small := synthNRGBA(24, 16)
	jpg := encodeJPEG(f, small, 90)
	seeds := [][]byte{
		nil,
		[]byte("plain text, not an image"),
		[]byte("%PDF-1.4"),
		[]byte("II*\x00\x08\x00\x00\x00"),
		jpg,
		jpg[:len(jpg)/2],
		encodeJPEG(f, synthGray(24, 16), 90),
		jpegWithOrientation(jpg, binary.LittleEndian, 6),
		jpegWithOrientation(jpg, binary.BigEndian, 7),
		testenv.CMYKJPEG(16, 8, func(x, y int) color.CMYK { return color.CMYK{uint8(x * 16), uint8(y * 32), 50, 10} }, 0, true),
		testenv.CMYKJPEG(16, 8, func(x, y int) color.CMYK { return color.CMYK{uint8(x * 16), uint8(y * 32), 50, 10} }, 2, true),
		encodePNG(f, small),
		encodePNG(f, synthAlpha(24, 16)),
		encodePNG(f, synth16(24, 16, true)),
		encodePNG(f, synthGray(24, 16)),
		encodePNG(f, synthPaletted(24, 16, palette.WebSafe)),
		rawPNG(f, 4, 2, 8, 2, [][]byte{make([]byte, 12), make([]byte, 12)}, pngChunk("eXIf", tiffWithOrientation(binary.BigEndian, 8))),
		append(append([]byte("\x89PNG\r\n\x1a\n"), pngIHDR(50000, 50000, 8, 6)...), pngChunk("IEND", nil)...),
		readLocal(f, "lossy.webp"),
		readLocal(f, "lossy_alpha.webp"),
		readLocal(f, "lossless.webp"),
		riffWebP(vp8xChunk(0x08, 2, 2), riffChunk("EXIF", tiffWithOrientation(binary.LittleEndian, 6))),
	}
	var g bytes.Buffer
	if err := gif.Encode(&g, synthPaletted(24, 16, palette.Plan9), nil); err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, g.Bytes())
	for _, m := range []image.Image{small, synthGray(8, 8), synthPaletted(8, 8, palette.WebSafe)} {
		var b bytes.Buffer
		if err := bmp.Encode(&b, m); err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b.Bytes())
	}
	for _, s := range seeds {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(data, fuzzLimits)
		if err != nil {
			if img != nil {
				t.Fatalf("non-nil image with error %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T (%v) is not *Error", err, err)
			}
			switch Code(err) {
			case CodeEmptyImage, CodeUnsupportedFormat, CodeCorruptImage, CodeImageTooLarge:
			default:
				t.Fatalf("unknown code %q: %v", Code(err), err)
			}
			if !errors.Is(err, sentinelFor(e.Code)) {
				t.Fatalf("errors.Is fails for %v", err)
			}
			return
		}
		if img == nil {
			t.Fatal("nil image and nil error")
		}
		if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != 3*img.Width*img.Height {
			t.Fatalf("inconsistent image: %dx%d, len(Pix)=%d", img.Width, img.Height, len(img.Pix))
		}
		if int64(img.Width)*int64(img.Height) > fuzzLimits.MaxPixels {
			t.Fatalf("%dx%d exceeds MaxPixels %d", img.Width, img.Height, fuzzLimits.MaxPixels)
		}
		switch img.Format {
		case FormatJPEG, FormatPNG, FormatGIF, FormatWebP, FormatBMP:
		default:
			t.Fatalf("unknown format %q", img.Format)
		}
	})
}
