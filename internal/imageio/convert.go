package imageio

import (
	"image"
	"image/color"
)

// FromImage converts any image.Image to packed 8-bit RGB (Format is left
// empty). It returns nil for a nil image. It allocates 3*Dx*Dy bytes without
// any limit, so it is for images already in memory (tests, benchmarks,
// trusted sources); untrusted bytes go through Decode.
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
		ok = fromYCbCr(out.Pix, m, false)
	case *image.NYCbCrA:
		ok = fromYCbCr(out.Pix, &m.YCbCr, false)
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
	return rowLen > 0 && stride >= rowLen && h > 0 && n >= rowLen && (h-1) <= (n-rowLen)/stride
}

// fromGeneric is the fallback for types without a fast path (and for
// layouts a fast path declined): correct for any image.Image, but it boxes
// one color.Color per pixel.
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

// fromYCbCr converts YCbCr to RGB for every subsample ratio. Chroma is
// replicated (nearest sample), as image.YCbCr itself does.
//
// With limited=false the result is bit-identical to color.YCbCrToRGB (JFIF:
// full-range BT.601, what JPEG stores). With limited=true it is
// bit-identical to libwebp's conversion for limited-range ("video", Y in
// 16..235) BT.601, which is what VP8 and hence lossy WebP store:
// x/image/webp returns those planes as *image.YCbCr, whose own conversion
// assumes full range and so washes colours out (golang/go#40173), so callers
// that know the source is VP8 must ask for this.
//
// Both conversions are "luma term + chroma terms, then clamp" in 16.16
// fixed point, so they share the loops below and differ only in the lookup
// tables built by newYCCTables.
func fromYCbCr(dst []byte, m *image.YCbCr, limited bool) bool {
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
	t := newYCCTables(limited)
	for y := 0; y < h; y++ {
		ys := m.Y[y*m.YStride : y*m.YStride+w]
		co := (((r.Min.Y + y) >> vs) - (r.Min.Y >> vs)) * m.CStride
		cbs := m.Cb[co : co+cw]
		crs := m.Cr[co : co+cw]
		d := dst[3*w*y : 3*w*(y+1)]
		switch {
		case hs == 0:
			t.row1(d, ys, cbs, crs)
		case hs == 1 && r.Min.X%2 == 0:
			t.row2(d, ys, cbs, crs)
		default:
			t.rowN(d, ys, cbs, crs, hs, r.Min.X)
		}
	}
	return true
}

// yccTables hold the per-sample terms of a YCbCr→RGB conversion in 16.16
// fixed point: R = y+rCr, G = y+gCb+gCr, B = y+bCb, each then clamp16'd.
// Built per call (about 1.3k operations) rather than kept in a package-level
// table, which would be mutable global state.
type yccTables struct {
	y, rCr, gCb, gCr, bCb [256]int32
}

func newYCCTables(limited bool) *yccTables {
	t := new(yccTables)
	for i := range 256 {
		v := int32(i)
		if limited {
			// libwebp dsp/yuv.h (VP8YUVToR/G/B): 14-bit coefficients,
			// MultHi = (v*c)>>8, results in 8.6 fixed point with the
			// -16/-128 offsets and rounding folded into the constants.
			// Shifting left by 10 turns 8.6 into 16.16, where clamp16
			// equals libwebp's VP8Clip8 exactly.
			t.y[i] = (v * 19077 >> 8) << 10
			t.rCr[i] = (v*26149>>8 - 14234) << 10
			t.gCb[i] = -(v * 6419 >> 8) << 10
			t.gCr[i] = (-(v * 13320 >> 8) + 8708) << 10
			t.bCb[i] = (v*33050>>8 - 17685) << 10
			continue
		}
		// color.YCbCrToRGB: the 0x10101 luma multiplier folds in the +0.5
		// rounding; chroma is centred on 128.
		c := v - 128
		t.y[i] = v * 0x10101
		t.rCr[i] = 91881 * c
		t.gCb[i] = -22554 * c
		t.gCr[i] = -46802 * c
		t.bCb[i] = 116130 * c
	}
	return t
}

// row1: one chroma sample per pixel (4:4:4, 4:4:0).
func (t *yccTables) row1(d, ys, cbs, crs []byte) {
	cbs, crs = cbs[:len(ys)], crs[:len(ys)]
	for x, yy := range ys {
		l := t.y[yy]
		cb, cr := cbs[x], crs[x]
		p := d[3*x : 3*x+3 : 3*x+3]
		p[0] = clamp16(l + t.rCr[cr])
		p[1] = clamp16(l + t.gCb[cb] + t.gCr[cr])
		p[2] = clamp16(l + t.bCb[cb])
	}
}

// row2: one chroma sample per two pixels (4:2:0, 4:2:2) with the row
// starting on an even x, the case every decoder produces. The chroma terms
// are computed once per pair.
func (t *yccTables) row2(d, ys, cbs, crs []byte) {
	n := len(ys)
	for k := 0; 2*k+1 < n; k++ {
		cb, cr := cbs[k], crs[k]
		rc, gc, bc := t.rCr[cr], t.gCb[cb]+t.gCr[cr], t.bCb[cb]
		l0, l1 := t.y[ys[2*k]], t.y[ys[2*k+1]]
		p := d[6*k : 6*k+6 : 6*k+6]
		p[0], p[1], p[2] = clamp16(l0+rc), clamp16(l0+gc), clamp16(l0+bc)
		p[3], p[4], p[5] = clamp16(l1+rc), clamp16(l1+gc), clamp16(l1+bc)
	}
	if n%2 == 1 {
		k := n / 2
		cb, cr := cbs[k], crs[k]
		l := t.y[ys[n-1]]
		p := d[3*(n-1) : 3*n : 3*n]
		p[0] = clamp16(l + t.rCr[cr])
		p[1] = clamp16(l + t.gCb[cb] + t.gCr[cr])
		p[2] = clamp16(l + t.bCb[cb])
	}
}

// rowN: any horizontal subsampling and alignment; x0 is the image's
// Rect.Min.X, needed because chroma samples align to absolute coordinates.
func (t *yccTables) rowN(d, ys, cbs, crs []byte, hs uint, x0 int) {
	c0 := x0 >> hs
	for x, yy := range ys {
		ci := ((x0 + x) >> hs) - c0
		cb, cr := cbs[ci], crs[ci]
		l := t.y[yy]
		p := d[3*x : 3*x+3 : 3*x+3]
		p[0] = clamp16(l + t.rCr[cr])
		p[1] = clamp16(l + t.gCb[cb] + t.gCr[cr])
		p[2] = clamp16(l + t.bCb[cb])
	}
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
