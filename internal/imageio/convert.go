package imageio

import (
	"image"
	"image/color"
)

// FromImage converts any image.Image to packed 8-bit RGB (Format is left
// empty). It returns nil for a nil image.
//
// The concrete types produced by the standard and x/image decoders take fast
// paths that read their pixel buffers directly; calling At per pixel boxes a
// color.Color into an interface and costs an order of magnitude more, which
// matters at several megapixels per request. Other types use At.
//
// Alpha is dropped: the result holds the un-premultiplied colour channels,
// as color.NRGBAModel would give them (see Decode). 16-bit channels are
// reduced by taking the high byte, like the color package's 8-bit models.
func FromImage(img image.Image) *Image {
	if img == nil {
		return nil
	}
	b := img.Bounds()
	if b.Empty() {
		return &Image{}
	}
	w, h := b.Dx(), b.Dy()
	out := &Image{Width: w, Height: h, Pix: make([]byte, 3*w*h)}

	ok := false
	switch m := img.(type) {
	case *image.YCbCr:
		ok = fromYCbCr(out.Pix, m)
	case *image.NYCbCrA:
		ok = fromYCbCr(out.Pix, &m.YCbCr)
	case *image.RGBA:
		ok = fromRGBA(out.Pix, m.Pix, m.Stride, w, h, true)
	case *image.NRGBA:
		ok = fromRGBA(out.Pix, m.Pix, m.Stride, w, h, false)
	case *image.Gray:
		ok = fromGray(out.Pix, m.Pix, m.Stride, w, h, 1)
	case *image.Gray16:
		ok = fromGray(out.Pix, m.Pix, m.Stride, w, h, 2)
	case *image.CMYK:
		ok = fromCMYK(out.Pix, m, w, h)
	case *image.Paletted:
		ok = fromPaletted(out.Pix, m, w, h)
	case *image.RGBA64:
		ok = fromRGBA64(out.Pix, m.Pix, m.Stride, w, h, true)
	case *image.NRGBA64:
		ok = fromRGBA64(out.Pix, m.Pix, m.Stride, w, h, false)
	}
	if !ok {
		fromGeneric(out.Pix, img, b)
	}
	return out
}

// fits reports whether a buffer of n bytes holds h rows of rowLen bytes at
// the given stride. Fast paths check this once up front so that a
// hand-built image with an inconsistent layout falls back to At (which
// panics or not exactly as the type itself defines) instead of us indexing
// out of range half-way through.
func fits(n, stride, rowLen, h int) bool {
	return stride >= rowLen && h > 0 && (h-1) <= (n-rowLen)/stride && n >= rowLen
}

func fromGeneric(dst []byte, img image.Image, b image.Rectangle) {
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			dst[i], dst[i+1], dst[i+2] = c.R, c.G, c.B
			i += 3
		}
	}
}

// fromYCbCr converts with the same integer arithmetic as
// color.YCbCrToRGB (JFIF full-range BT.601), inlined because a function call
// per pixel is measurable at this volume. It handles every subsample ratio
// via the chroma shift amounts.
func fromYCbCr(dst []byte, m *image.YCbCr) bool {
	r := m.Rect
	var hs, vs uint // log2 of horizontal and vertical chroma subsampling
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
	case image.YCbCrSubsampleRatio422:
		hs = 1
	case image.YCbCrSubsampleRatio420:
		hs, vs = 1, 1
	case image.YCbCrSubsampleRatio440:
		vs = 1
	case image.YCbCrSubsampleRatio411:
		hs = 2
	case image.YCbCrSubsampleRatio410:
		hs, vs = 2, 1
	default:
		return false
	}
	// COffset divides coordinates (rounding toward zero); shifts equal that
	// only for non-negative coordinates, which is all decoders produce.
	if r.Min.X < 0 || r.Min.Y < 0 {
		return false
	}
	w, h := r.Dx(), r.Dy()
	cw := ((r.Max.X - 1) >> hs) - (r.Min.X >> hs) + 1
	ch := ((r.Max.Y - 1) >> vs) - (r.Min.Y >> vs) + 1
	if !fits(len(m.Y), m.YStride, w, h) || !fits(len(m.Cb), m.CStride, cw, ch) || !fits(len(m.Cr), m.CStride, cw, ch) {
		return false
	}
	cx0 := r.Min.X >> hs
	for y := 0; y < h; y++ {
		yrow := m.Y[y*m.YStride : y*m.YStride+w]
		co := (((r.Min.Y + y) >> vs) - (r.Min.Y >> vs)) * m.CStride
		cbrow := m.Cb[co : co+cw]
		crrow := m.Cr[co : co+cw]
		d := dst[3*w*y : 3*w*(y+1)]
		for x, yy := range yrow {
			ci := ((r.Min.X + x) >> hs) - cx0
			cb := int32(cbrow[ci]) - 128
			cr := int32(crrow[ci]) - 128
			// Same constants and rounding as color.YCbCrToRGB: 16.16 fixed
			// point, with the 0x10101 multiplier folding in the +0.5 rounding.
			yy1 := int32(yy) * 0x10101
			rr := yy1 + 91881*cr
			gg := yy1 - 22554*cb - 46802*cr
			bb := yy1 + 116130*cb
			p := d[3*x : 3*x+3 : 3*x+3]
			p[0] = clamp16(rr)
			p[1] = clamp16(gg)
			p[2] = clamp16(bb)
		}
	}
	return true
}

// clamp16 turns a 16.16 fixed-point value into a byte, clamping to [0,255]
// with the branch structure color.YCbCrToRGB uses.
func clamp16(v int32) uint8 {
	if uint32(v)&0xff000000 == 0 {
		return uint8(v >> 16)
	}
	return uint8(^(v >> 31))
}

// fromRGBA handles 8-bit RGBA (premultiplied) and NRGBA (not).
func fromRGBA(dst, pix []byte, stride, w, h int, premul bool) bool {
	if !fits(len(pix), stride, 4*w, h) {
		return false
	}
	for y := 0; y < h; y++ {
		src := pix[y*stride : y*stride+4*w]
		d := dst[3*w*y : 3*w*(y+1)]
		for i, j := 0, 0; i < len(src); i, j = i+4, j+3 {
			s := src[i : i+4 : i+4]
			p := d[j : j+3 : j+3]
			if !premul || s[3] == 0xff {
				p[0], p[1], p[2] = s[0], s[1], s[2]
			} else {
				a := s[3]
				p[0], p[1], p[2] = unpremul8(s[0], a), unpremul8(s[1], a), unpremul8(s[2], a)
			}
		}
	}
	return true
}

// unpremul8 mirrors color.NRGBAModel's arithmetic (done at 16 bits, then
// truncated), clamping invalid input where the colour exceeds alpha.
func unpremul8(c, a uint8) uint8 {
	if a == 0 {
		return 0
	}
	v := uint32(c) * 0x101 * 0xffff / (uint32(a) * 0x101)
	if v > 0xffff {
		return 0xff
	}
	return uint8(v >> 8)
}

// fromGray handles Gray (bpp 1) and Gray16 (bpp 2, big-endian: the high
// byte comes first).
func fromGray(dst, pix []byte, stride, w, h, bpp int) bool {
	if !fits(len(pix), stride, bpp*w, h) {
		return false
	}
	for y := 0; y < h; y++ {
		src := pix[y*stride : y*stride+bpp*w]
		d := dst[3*w*y : 3*w*(y+1)]
		for x := 0; x < w; x++ {
			v := src[bpp*x]
			p := d[3*x : 3*x+3 : 3*x+3]
			p[0], p[1], p[2] = v, v, v
		}
	}
	return true
}

// fromRGBA64 handles 16-bit RGBA64 (premultiplied) and NRGBA64, big-endian.
func fromRGBA64(dst, pix []byte, stride, w, h int, premul bool) bool {
	if !fits(len(pix), stride, 8*w, h) {
		return false
	}
	for y := 0; y < h; y++ {
		src := pix[y*stride : y*stride+8*w]
		d := dst[3*w*y : 3*w*(y+1)]
		for i, j := 0, 0; i < len(src); i, j = i+8, j+3 {
			s := src[i : i+8 : i+8]
			p := d[j : j+3 : j+3]
			a := uint32(s[6])<<8 | uint32(s[7])
			if !premul || a == 0xffff {
				p[0], p[1], p[2] = s[0], s[2], s[4]
				continue
			}
			p[0] = unpremul16(uint32(s[0])<<8|uint32(s[1]), a)
			p[1] = unpremul16(uint32(s[2])<<8|uint32(s[3]), a)
			p[2] = unpremul16(uint32(s[4])<<8|uint32(s[5]), a)
		}
	}
	return true
}

func unpremul16(c, a uint32) uint8 {
	if a == 0 {
		return 0
	}
	v := c * 0xffff / a
	if v > 0xffff {
		return 0xff
	}
	return uint8(v >> 8)
}

func fromCMYK(dst []byte, m *image.CMYK, w, h int) bool {
	if !fits(len(m.Pix), m.Stride, 4*w, h) {
		return false
	}
	for y := 0; y < h; y++ {
		src := m.Pix[y*m.Stride : y*m.Stride+4*w]
		d := dst[3*w*y : 3*w*(y+1)]
		for i, j := 0, 0; i < len(src); i, j = i+4, j+3 {
			s := src[i : i+4 : i+4]
			p := d[j : j+3 : j+3]
			p[0], p[1], p[2] = color.CMYKToRGB(s[0], s[1], s[2], s[3])
		}
	}
	return true
}

// fromPaletted converts through a 256-entry lookup table. Indices beyond the
// palette map to black rather than panicking as Paletted.At would; decoders
// never produce them, but hand-built images might.
func fromPaletted(dst []byte, m *image.Paletted, w, h int) bool {
	if !fits(len(m.Pix), m.Stride, w, h) {
		return false
	}
	var lut [256][3]byte
	for i, c := range m.Palette {
		if i >= len(lut) {
			break
		}
		if c == nil {
			continue
		}
		n := color.NRGBAModel.Convert(c).(color.NRGBA)
		lut[i] = [3]byte{n.R, n.G, n.B}
	}
	for y := 0; y < h; y++ {
		src := m.Pix[y*m.Stride : y*m.Stride+w]
		d := dst[3*w*y : 3*w*(y+1)]
		for x, idx := range src {
			c := &lut[idx]
			p := d[3*x : 3*x+3 : 3*x+3]
			p[0], p[1], p[2] = c[0], c[1], c[2]
		}
	}
	return true
}
