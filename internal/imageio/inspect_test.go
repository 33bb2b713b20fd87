package imageio

import (
	"encoding/binary"
	"image"
	"image/color"
	"testing"

	"github.com/visage/visage/internal/hostile"
)

// uniform is a w×h image of one colour, the most compressible content.
func uniform(w, h int, c color.Color) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, c)
		}
	}
	return img
}

// TestInspectRefusesJPEGShorterThanItsFrame is the hardening issue's
// truncated 6324² JPEG of 7 KB: libjpeg used to allocate and grey-fill
// 120 MB before reporting it truncated. It is now refused from its length
// alone, while complete files, even of a single colour, pass.
func TestInspectRefusesJPEGShorterThanItsFrame(t *testing.T) {
	bomb := hostile.TruncatedJPEG()
	if _, err := Inspect(bomb, Limits{}); Code(err) != CodeCorruptImage {
		t.Fatalf("truncated %d-byte JPEG declaring %d² pixels: err = %v, want %s", len(bomb), hostile.Side, err, CodeCorruptImage)
	}
	if _, err := Decode(bomb, Limits{}); Code(err) != CodeCorruptImage {
		t.Fatalf("Decode: err = %v, want %s", err, CodeCorruptImage)
	}

	for _, tc := range []struct {
		name string
		img  image.Image
	}{
		{"grey 2000x1500", uniform(2000, 1500, color.Gray{Y: 128})},
		{"white 3000x2000 colour", uniform(3000, 2000, color.White)},
		{"tiny 9x7", uniform(9, 7, color.Black)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := encodeJPEG(t, tc.img, 1)
			h, err := Inspect(data, Limits{})
			if err != nil {
				t.Fatalf("complete %d-byte JPEG refused: %v", len(data), err)
			}
			b := tc.img.Bounds()
			if h.Width != b.Dx() || h.Height != b.Dy() || h.Format != FormatJPEG {
				t.Fatalf("header %+v, want %dx%d jpeg", h, b.Dx(), b.Dy())
			}
			if _, err := Decode(data, Limits{}); err != nil {
				t.Fatalf("decode: %v", err)
			}
		})
	}
}

// TestFrameBlocks checks the block count against hand-computed cases,
// including subsampled chroma and sampling factors spread over components.
func TestFrameBlocks(t *testing.T) {
	sof := func(w, h int, factors ...byte) []byte {
		b := []byte{8, 0, 0, 0, 0, byte(len(factors))}
		binary.BigEndian.PutUint16(b[1:], uint16(h))
		binary.BigEndian.PutUint16(b[3:], uint16(w))
		for i, f := range factors {
			b = append(b, byte(i+1), f, 0)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		seg  []byte
		want int64
	}{
		{"grey 64x64", sof(64, 64, 0x11), 64},
		{"grey 65x64 rounds up", sof(65, 64, 0x11), 9 * 8},
		{"4:2:0 6324²", sof(6324, 6324, 0x22, 0x11, 0x11), 791 * 791},
		{"spread factors", sof(64, 64, 0x41, 0x14), 8 * 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := frameBlocks(tc.seg)
			if !ok || got != tc.want {
				t.Fatalf("frameBlocks = %d, %v; want %d", got, ok, tc.want)
			}
		})
	}
}

// TestDecodeBytesCoversTheDecode: the estimate admission control reserves
// is at least what the decoders allocate for the result and their canvas.
func TestDecodeBytesCoversTheDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		min  int64 // bytes per pixel the decode certainly allocates
	}{
		{"jpeg", encodeJPEG(t, uniform(640, 480, color.Gray{Y: 90}), 90), 3},
		{"png rgba", encodePNG(t, uniform(640, 480, color.NRGBA{R: 10, A: 200})), 4 + 3},
		{"zero 40 MP png", hostile.ZeroPNG(), 4 + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Inspect(tc.data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			px := int64(h.Width) * int64(h.Height)
			if got := h.DecodeBytes(); got < tc.min*px {
				t.Fatalf("DecodeBytes = %d for %d pixels, want at least %d", got, px, tc.min*px)
			}
		})
	}
}
