package imageio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"testing"
)

// inverseOrientation is the orientation whose display transform undoes o's.
func inverseOrientation(o int) int {
	switch o {
	case 6:
		return 8
	case 8:
		return 6
	}
	return o
}

// uprightPhotos returns real photos as upright NRGBA images. amy1.png is
// 150×150; it is cropped to 144×112 so that the 90° cases change the shape
// (a square would hide swapped dimensions) and so that both sizes are
// multiples of 16, keeping JPEG block grids aligned under rotation.
func uprightPhotos(t *testing.T) map[string]*image.NRGBA {
	t.Helper()
	toNRGBA := func(m image.Image, r image.Rectangle) *image.NRGBA {
		out := image.NewNRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
		draw.Draw(out, out.Bounds(), m, r.Min, draw.Src)
		return out
	}
	amy, err := png.Decode(bytes.NewReader(readShared(t, "faces/bbt/amy/amy1.png")))
	if err != nil {
		t.Fatal(err)
	}
	obama, err := jpeg.Decode(bytes.NewReader(readShared(t, "faces/misc/obama_small.jpg")))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*image.NRGBA{
		"amy1":        toNRGBA(amy, image.Rect(3, 20, 147, 132)),
		"obama_small": toNRGBA(obama, obama.Bounds()),
	}
}

// TestEXIFOrientationJPEG is the end-to-end check: for each orientation a
// real photo is stored the way a camera would (pixels transformed by the
// inverse of the orientation), tagged with that orientation in an APP1 EXIF
// segment, and Decode must return the upright photo.
func TestEXIFOrientationJPEG(t *testing.T) {
	for name, upright := range uprightPhotos(t) {
		plain, err := Decode(encodeJPEG(t, upright, 95), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for o := 1; o <= 8; o++ {
			for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
				t.Run(fmt.Sprintf("%s/orientation-%d/%v", name, o, order), func(t *testing.T) {
					stored := encodeJPEG(t, storedFor(upright, o), 95)
					got, err := Decode(jpegWithOrientation(stored, order, uint16(o)), Limits{})
					if err != nil {
						t.Fatal(err)
					}
					mean, _ := diffStats(t, got, plain) // fails on a size mismatch
					t.Logf("%dx%d, mean abs diff vs upright %.3f", got.Width, got.Height, mean)
					if mean >= 3 {
						t.Fatalf("not upright: mean abs diff %.3f per channel (want < 3)", mean)
					}
					// The check must be able to fail: the same file without
					// the tag has to differ from upright (except o=1).
					if o == 1 {
						return
					}
					naive, err := Decode(stored, Limits{})
					if err != nil {
						t.Fatal(err)
					}
					if naive.Width == plain.Width && naive.Height == plain.Height {
						if m, _ := diffStats(t, naive, plain); m < 10 {
							t.Fatalf("test not discriminative: untagged stored image is already close to upright (%.3f)", m)
						}
					}
				})
			}
		}
	}
}

// TestEXIFOrientationLossless uses lossless containers (PNG eXIf, WebP
// lossless with an EXIF chunk) so that the rotation can be checked exactly.
func TestEXIFOrientationLossless(t *testing.T) {
	upright := synthNRGBA(sw, sh)
	want := refRGB(upright)

	// WebP: reuse the VP8L bitstream of the lossless fixture (which holds
	// the upright synthetic pattern) in an extended-format file.
	var vp8l []byte
	walkRIFF(readLocal(t, "lossless.webp"), func(fourcc string, payload []byte) bool {
		if fourcc == "VP8L" {
			vp8l = riffChunk("VP8L", payload)
		}
		return true
	})
	if vp8l == nil {
		t.Fatal("no VP8L chunk in lossless.webp")
	}

	for o := 1; o <= 8; o++ {
		tiff := tiffWithOrientation(binary.BigEndian, uint16(o))
		t.Run(fmt.Sprintf("png-eXIf/orientation-%d", o), func(t *testing.T) {
			stored := storedFor(upright, o)
			var rows [][]byte
			for y := 0; y < stored.Rect.Dy(); y++ {
				var row []byte
				for x := 0; x < stored.Rect.Dx(); x++ {
					c := stored.NRGBAAt(x, y)
					row = append(row, c.R, c.G, c.B)
				}
				rows = append(rows, row)
			}
			data := rawPNG(t, stored.Rect.Dx(), stored.Rect.Dy(), 8, 2, rows, pngChunk("eXIf", tiff))
			got, err := Decode(data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			mustEqualImages(t, got, want)
		})
		t.Run(fmt.Sprintf("webp-EXIF/orientation-%d", o), func(t *testing.T) {
			// The pixels are the upright pattern; tagging them with o means
			// the correct display is the o-transform of the pattern, which
			// is storedFor with the inverse orientation.
			expect := refRGB(storedFor(upright, inverseOrientation(o)))
			for _, prefix := range []string{"", "Exif\x00\x00"} {
				data := riffWebP(vp8xChunk(0x08, sw, sh), vp8l, riffChunk("EXIF", append([]byte(prefix), tiff...)))
				got, err := Decode(data, Limits{})
				if err != nil {
					t.Fatal(err)
				}
				mustEqualImages(t, got, expect)
			}
		})
	}
}

// TestMalformedEXIFIgnored: broken metadata never fails the decode and never
// rotates the image.
func TestMalformedEXIFIgnored(t *testing.T) {
	base := encodeJPEG(t, synthNRGBA(48, 32), 90)
	want, err := Decode(base, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	valid := tiffWithOrientation(le, 6)

	patched := func(f func(b []byte)) []byte {
		b := append([]byte{}, valid...)
		f(b)
		return b
	}
	tests := []struct {
		name    string
		payload []byte // APP1 payload
	}{
		{"exif-header-only", []byte("Exif\x00\x00")},
		{"garbage", []byte("Exif\x00\x00garbage garbage garbage")},
		{"bad-byte-order", append([]byte("Exif\x00\x00"), patched(func(b []byte) { b[0], b[1] = 'X', 'X' })...)},
		{"bad-magic", append([]byte("Exif\x00\x00"), patched(func(b []byte) { le.PutUint16(b[2:], 43) })...)},
		{"ifd-offset-past-end", append([]byte("Exif\x00\x00"), patched(func(b []byte) { le.PutUint32(b[4:], 0xFFFFFFF0) })...)},
		{"ifd-offset-into-header", append([]byte("Exif\x00\x00"), patched(func(b []byte) { le.PutUint32(b[4:], 2) })...)},
		{"entry-count-overruns", append([]byte("Exif\x00\x00"), patched(func(b []byte) { le.PutUint16(b[8:], 0xFFFF) })...)[:6+8+2+12]},
		{"truncated-entry", append([]byte("Exif\x00\x00"), valid[:8+2+12+5]...)},
		{"orientation-0", append([]byte("Exif\x00\x00"), tiffWithOrientation(le, 0)...)},
		{"orientation-9", append([]byte("Exif\x00\x00"), tiffWithOrientation(le, 9)...)},
		{"orientation-65535", append([]byte("Exif\x00\x00"), tiffWithOrientation(le, 0xFFFF)...)},
		{"orientation-wrong-type", append([]byte("Exif\x00\x00"), patched(func(b []byte) { le.PutUint16(b[8+2+12+2:], 2) })...)},
		{"orientation-count-5", append([]byte("Exif\x00\x00"), patched(func(b []byte) { le.PutUint32(b[8+2+12+4:], 5) })...)},
		{"not-exif-app1 (XMP)", append([]byte("http://ns.adobe.com/xap/1.0/\x00"), valid...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(withJPEGApp1(base, tc.payload), Limits{})
			if err != nil {
				t.Fatalf("malformed EXIF must not fail the decode: %v", err)
			}
			mustEqualImages(t, got, want)
		})
	}
}

func TestTIFFOrientation(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	long := tiffWithOrientation(le, 0)
	le.PutUint16(long[8+2+12+2:], 4) // LONG
	le.PutUint32(long[8+2+12+8:], 7)
	tests := []struct {
		name string
		tiff []byte
		want int
	}{
		{"nil", nil, 1},
		{"le-3", tiffWithOrientation(le, 3), 3},
		{"be-8", tiffWithOrientation(be, 8), 8},
		{"long-type", long, 7},
		{"empty-ifd", []byte("II*\x00\x08\x00\x00\x00\x00\x00"), 1},
		{"short", []byte("II*\x00\x08\x00"), 1},
	}
	for _, tc := range tests {
		if got := tiffOrientation(tc.tiff); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestJPEGExifSegmentWalk(t *testing.T) {
	tiff := tiffWithOrientation(binary.LittleEndian, 5)
	exif := append([]byte("Exif\x00\x00"), tiff...)
	base := encodeJPEG(t, synthNRGBA(16, 16), 90)

	// EXIF after an XMP APP1 and a COM segment, with fill bytes.
	withOthers := withJPEGApp1(base, exif)
	withOthers = withJPEGApp1(withOthers, []byte("http://ns.adobe.com/xap/1.0/\x00<x/>"))
	withOthers = append([]byte{0xFF, 0xD8, 0xFF, 0xFF, 0xFE, 0x00, 0x04, 'h', 'i'}, withOthers[2:]...)

	// APP1 placed after the scan data must not be found (only segments
	// before SOS are metadata).
	afterSOS := append([]byte{}, base[:len(base)-2]...)
	afterSOS = append(afterSOS, 0xFF, 0xE1, byte((len(exif)+2)>>8), byte(len(exif)+2))
	afterSOS = append(append(afterSOS, exif...), 0xFF, 0xD9)

	overrun := append([]byte{}, base[:2]...)
	overrun = append(overrun, 0xFF, 0xE1, 0xFF, 0xFF)
	overrun = append(overrun, exif...)

	tests := []struct {
		name string
		data []byte
		want []byte
	}{
		{"first-segment", withJPEGApp1(base, exif), tiff},
		{"after-xmp-com-fill", withOthers, tiff},
		{"after-sos", afterSOS, nil},
		{"segment-overruns-file", overrun, nil},
		{"none", base, nil},
		{"soi-only", []byte{0xFF, 0xD8, 0xFF}, nil},
		{"lost-sync", []byte{0xFF, 0xD8, 0x00, 0x00, 0x00, 0x00}, nil},
		{"zero-length-segment", []byte{0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x00, 0xFF, 0xD9}, nil},
	}
	for _, tc := range tests {
		if got := jpegExif(tc.data); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %d bytes, want %d", tc.name, len(got), len(tc.want))
		}
	}
	if got, err := Decode(withOthers, Limits{}); err != nil || got.Width != 16 {
		t.Fatalf("decode with XMP/COM/fill + EXIF orientation 5: %v", err)
	}
}
