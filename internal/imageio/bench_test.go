package imageio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"testing"
)

// benchPhoto is a synthetic 1920×1280 "photo": smooth gradients, texture
// and mild noise, tuned so the quality-90 JPEG is about the size of a real
// photo of that resolution (a flat image would decode unrealistically fast,
// pure noise unrealistically slowly).
func benchPhoto(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			t := 40 * math.Sin(float64(x)*0.37) * math.Cos(float64(y)*0.23)
			n := float64((x*7919+y*104729)%13) - 6 // deterministic sensor-like noise
			r := 128 + 90*math.Sin(float64(x)/300) + t + n
			g := 128 + 90*math.Cos(float64(y)/250) - t + n
			b := 128 + 60*math.Sin(float64(x+y)/400) + n
			m.SetRGBA(x, y, color.RGBA{clampF(r), clampF(g), clampF(b), 255})
		}
	}
	return m
}

func clampF(v float64) uint8 {
	return uint8(math.Max(0, math.Min(255, v)))
}

func benchJPEG(b *testing.B) []byte {
	b.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, benchPhoto(1920, 1280), &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	b.Logf("1920x1280 q90 JPEG: %d bytes", buf.Len())
	return buf.Bytes()
}

// BenchmarkDecodeJPEG1920x1280 is the end-to-end cost of Decode on a
// typical upload: a 1920×1280 quality-90 4:2:0 JPEG.
func BenchmarkDecodeJPEG1920x1280(b *testing.B) {
	data := benchJPEG(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStdlibJPEGDecode1920x1280 is image/jpeg alone on the same file:
// the difference to BenchmarkDecodeJPEG1920x1280 is our overhead.
func BenchmarkStdlibJPEGDecode1920x1280(b *testing.B) {
	data := benchJPEG(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := jpeg.Decode(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeJPEG1920x1280Rotated adds an EXIF orientation 6 (90°).
func BenchmarkDecodeJPEG1920x1280Rotated(b *testing.B) {
	data := jpegWithOrientation(benchJPEG(b), binary.LittleEndian, 6)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromImageYCbCr420_1920x1280(b *testing.B) {
	m, err := jpeg.Decode(bytes.NewReader(benchJPEG(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		FromImage(m)
	}
}

func BenchmarkFromImageGeneric1920x1280(b *testing.B) {
	m := image.NewAlpha(image.Rect(0, 0, 1920, 1280))
	b.ReportAllocs()
	for b.Loop() {
		FromImage(m)
	}
}

// BenchmarkOrient1920x1280 measures the EXIF re-orientation of a decoded
// 1920×1280 image for each non-identity orientation.
func BenchmarkOrient1920x1280(b *testing.B) {
	im := &Image{Width: 1920, Height: 1280, Pix: make([]byte, 3*1920*1280)}
	for o := 2; o <= 8; o++ {
		b.Run(fmt.Sprintf("o%d", o), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				im.oriented(o)
			}
		})
	}
}
