package imageio

import (
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"testing"
)

// fillRandom fills every byte of a pixel buffer with deterministic noise.
func fillRandom(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
}

// TestFromImageFastPaths checks each fast path against the reference (At +
// NRGBAModel, or YCbCrToRGB for YCbCr) on noise, odd sizes and sub-images
// (non-zero origin, stride wider than the row).
func TestFromImageFastPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const w, h = 37, 23
	rect := image.Rect(0, 0, w, h)
	sub := image.Rect(3, 5, 30, 22) // odd origin: chroma alignment matters

	var cases []struct {
		name string
		img  image.Image
		want func(image.Image) *Image
	}
	add := func(name string, img image.Image, want func(image.Image) *Image) {
		cases = append(cases, struct {
			name string
			img  image.Image
			want func(image.Image) *Image
		}{name, img, want})
	}
	ycbcrRef := func(m image.Image) *Image {
		switch y := m.(type) {
		case *image.YCbCr:
			return refYCbCr(y)
		case *image.NYCbCrA:
			return refYCbCr(&y.YCbCr)
		}
		panic("not YCbCr")
	}
	type subImager interface {
		SubImage(image.Rectangle) image.Image
	}
	addBoth := func(name string, img image.Image, want func(image.Image) *Image) {
		add(name, img, want)
		add(name+"/sub", img.(subImager).SubImage(sub), want)
	}

	for _, r := range []image.YCbCrSubsampleRatio{
		image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410,
	} {
		m := image.NewYCbCr(rect, r)
		fillRandom(rng, m.Y)
		fillRandom(rng, m.Cb)
		fillRandom(rng, m.Cr)
		addBoth("YCbCr/"+r.String(), m, ycbcrRef)
		// Origin not at zero in the parent image (as SubImage cannot make).
		off := image.NewYCbCr(image.Rect(5, 7, 5+w, 7+h), r)
		fillRandom(rng, off.Y)
		fillRandom(rng, off.Cb)
		fillRandom(rng, off.Cr)
		add("YCbCr/"+r.String()+"/offset-origin", off, ycbcrRef)
	}
	na := image.NewNYCbCrA(rect, image.YCbCrSubsampleRatio420)
	fillRandom(rng, na.Y)
	fillRandom(rng, na.Cb)
	fillRandom(rng, na.Cr)
	fillRandom(rng, na.A)
	addBoth("NYCbCrA", na, ycbcrRef)

	// Valid premultiplied RGBA: colour never exceeds alpha; include
	// transparent, translucent and opaque pixels.
	rgba := image.NewRGBA(rect)
	for i := 0; i < len(rgba.Pix); i += 4 {
		a := []uint8{0, 1, 128, 254, 255, 255}[rng.IntN(6)]
		rgba.Pix[i+3] = a
		for c := 0; c < 3; c++ {
			rgba.Pix[i+c] = uint8(rng.UintN(uint(a) + 1))
		}
	}
	addBoth("RGBA", rgba, refRGB)

	nrgba := image.NewNRGBA(rect)
	fillRandom(rng, nrgba.Pix)
	addBoth("NRGBA", nrgba, refRGB)

	rgba64 := image.NewRGBA64(rect)
	for i := 0; i < len(rgba64.Pix); i += 8 {
		a := []uint16{0, 1, 0x8000, 0xfffe, 0xffff, 0xffff}[rng.IntN(6)]
		rgba64.Pix[i+6], rgba64.Pix[i+7] = uint8(a>>8), uint8(a)
		for c := 0; c < 3; c++ {
			v := uint16(rng.UintN(uint(a) + 1))
			rgba64.Pix[i+2*c], rgba64.Pix[i+2*c+1] = uint8(v>>8), uint8(v)
		}
	}
	addBoth("RGBA64", rgba64, refRGB)

	nrgba64 := image.NewNRGBA64(rect)
	fillRandom(rng, nrgba64.Pix)
	// Not refRGB: NRGBA64.RGBA() premultiplies and NRGBAModel divides
	// back, which loses precision at low alpha. Un-premultiplied colour is
	// simply the high byte of each channel.
	addBoth("NRGBA64", nrgba64, func(m image.Image) *Image {
		b := m.Bounds()
		out := &Image{Width: b.Dx(), Height: b.Dy()}
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := m.(*image.NRGBA64).NRGBA64At(x, y)
				out.Pix = append(out.Pix, uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8))
			}
		}
		return out
	})

	gray := image.NewGray(rect)
	fillRandom(rng, gray.Pix)
	addBoth("Gray", gray, refRGB)

	gray16 := image.NewGray16(rect)
	fillRandom(rng, gray16.Pix)
	addBoth("Gray16", gray16, refRGB)

	cmyk := image.NewCMYK(rect)
	fillRandom(rng, cmyk.Pix)
	addBoth("CMYK", cmyk, refRGB)

	pal := color.Palette{color.NRGBA{10, 20, 30, 255}, color.RGBA{100, 50, 25, 128}, color.NRGBA{200, 100, 50, 0}, color.Gray{77}}
	paletted := image.NewPaletted(rect, pal)
	for i := range paletted.Pix {
		paletted.Pix[i] = uint8(rng.IntN(len(pal)))
	}
	addBoth("Paletted", paletted, refRGB)

	// Types without a fast path use the generic path.
	alpha := image.NewAlpha(rect)
	fillRandom(rng, alpha.Pix)
	addBoth("Alpha(generic)", alpha, refRGB)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := FromImage(tc.img)
			b := tc.img.Bounds()
			if got.Width != b.Dx() || got.Height != b.Dy() || len(got.Pix) != 3*b.Dx()*b.Dy() {
				t.Fatalf("got %dx%d len %d for bounds %v", got.Width, got.Height, len(got.Pix), b)
			}
			mustEqualImages(t, got, tc.want(tc.img))
		})
	}
}

func TestFromImageEdgeCases(t *testing.T) {
	if FromImage(nil) != nil {
		t.Error("FromImage(nil) should be nil")
	}
	empty := FromImage(image.NewRGBA(image.Rect(3, 3, 3, 10)))
	if empty == nil || empty.Width != 0 || empty.Height != 0 || len(empty.Pix) != 0 {
		t.Errorf("empty image: got %+v", empty)
	}
	// Negative origin: the YCbCr fast path declines, the generic path
	// must still be right.
	m := image.NewYCbCr(image.Rect(-3, -5, 10, 9), image.YCbCrSubsampleRatio420)
	fillRandom(rand.New(rand.NewPCG(3, 4)), m.Y)
	got := FromImage(m)
	want := refRGB(m)
	if mean, _ := diffStats(t, got, want); mean > 0.01 { // At() uses 16-bit maths; allow ±1 rarely
		t.Errorf("negative-origin YCbCr: mean diff %.3f", mean)
	}
	// Inconsistent hand-built layout: fast path declines, At panics as the
	// type defines; FromImage must not index out of range by itself first.
	bad := &image.RGBA{Pix: make([]byte, 10), Stride: 4, Rect: image.Rect(0, 0, 2, 2)}
	func() {
		defer func() { _ = recover() }()
		FromImage(bad)
	}()
	// And Decode never sees such a panic: it is converted to corrupt_image
	// (exercised by the fuzz target).
}

// TestOrientedAgainstIndependentTransforms compares Image.oriented with the
// test-only transforms built from rotations and mirrors.
func TestOrientedAgainstIndependentTransforms(t *testing.T) {
	for _, size := range [][2]int{{1, 1}, {1, 7}, {7, 1}, {5, 3}, {16, 9}} {
		src := image.NewNRGBA(image.Rect(0, 0, size[0], size[1]))
		fillRandom(rand.New(rand.NewPCG(uint64(size[0]), uint64(size[1]))), src.Pix)
		for i := 3; i < len(src.Pix); i += 4 {
			src.Pix[i] = 255
		}
		im := refRGB(src)
		for o := 1; o <= 8; o++ {
			t.Run(fmt.Sprintf("%dx%d/o%d", size[0], size[1], o), func(t *testing.T) {
				// Displaying the stored image for orientation o yields the
				// upright one; so orienting src must give the upright image
				// whose stored form is src.
				got := im.oriented(o)
				want := refRGB(storedFor(src, inverseOrientation(o)))
				mustEqualImages(t, got, want)
				// Round trip: storing then displaying is the identity.
				back := refRGB(storedFor(src, o)).oriented(o)
				mustEqualImages(t, back, im)
			})
		}
	}
}

func TestMirror(t *testing.T) {
	im := &Image{Width: 3, Height: 2, Format: "png", Pix: []byte{
		1, 2, 3, 4, 5, 6, 7, 8, 9,
		10, 11, 12, 13, 14, 15, 16, 17, 18,
	}}
	got := im.Mirror()
	want := []byte{
		7, 8, 9, 4, 5, 6, 1, 2, 3,
		16, 17, 18, 13, 14, 15, 10, 11, 12,
	}
	if got.Width != 3 || got.Height != 2 || string(got.Pix) != string(want) || got.Format != "png" {
		t.Fatalf("Mirror = %+v", got)
	}
	if &got.Pix[0] == &im.Pix[0] || im.Pix[0] != 1 {
		t.Fatal("Mirror must return a copy and leave the receiver unchanged")
	}
	if back := got.Mirror(); string(back.Pix) != string(im.Pix) {
		t.Fatal("Mirror twice is not the identity")
	}
	var nilIm *Image
	if nilIm.Mirror() != nil {
		t.Fatal("nil.Mirror() should be nil")
	}
}
