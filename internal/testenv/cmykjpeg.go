package testenv

// A minimal baseline JPEG encoder for four-component (CMYK/YCCK) images:
// no Go or Debian tool at hand writes them, and tests need real CMYK
// files. Huffman tables are flat (every symbol has the same code length:
// valid, just not optimal); the Adobe APP14 marker is what real CMYK JPEGs
// (Photoshop, libjpeg) carry.

import (
	"bytes"
	"image"
	"image/color"
	"math"
)

// CMYKJPEGOf encodes img as an Adobe CMYK JPEG (plain inverted channels).
func CMYKJPEGOf(img image.Image) []byte {
	b := img.Bounds()
	return CMYKJPEG(b.Dx(), b.Dy(), func(x, y int) color.CMYK {
		return color.CMYKModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.CMYK)
	}, 0, true)
}

// CMYKJPEG encodes a w×h image whose pixel (x, y) has CMYK value px(x, y).
// transform is the Adobe APP14 transform flag: 0 stores the four channels
// as-is (Adobe's convention: inverted, 255 = no ink), 2 stores YCCK, with
// C, M, Y coded as YCbCr of (C, M, Y) and K inverted, as libjpeg does.
// adobe=false omits APP14 altogether (an ambiguous file decoders must reject).
func CMYKJPEG(w, h int, px func(x, y int) color.CMYK, transform byte, adobe bool) []byte {
	planes := [4][]int{}
	pw, ph := (w+7)&^7, (h+7)&^7
	for c := range planes {
		planes[c] = make([]int, pw*ph)
	}
	for y := 0; y < ph; y++ {
		for x := 0; x < pw; x++ {
			p := px(min(x, w-1), min(y, h-1)) // replicate edges into padding
			var s [4]uint8
			if transform == 2 {
				yy, cb, cr := color.RGBToYCbCr(p.C, p.M, p.Y)
				s = [4]uint8{yy, cb, cr, 255 - p.K}
			} else {
				s = [4]uint8{255 - p.C, 255 - p.M, 255 - p.Y, 255 - p.K}
			}
			for c := range planes {
				planes[c][y*pw+x] = int(s[c])
			}
		}
	}

	var out bytes.Buffer
	seg := func(marker byte, payload []byte) {
		out.Write([]byte{0xFF, marker, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)})
		out.Write(payload)
	}
	out.Write([]byte{0xFF, 0xD8})
	if adobe {
		seg(0xEE, []byte{'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, transform})
	}
	const q = 2
	dqt := make([]byte, 65)
	for i := 1; i < 65; i++ {
		dqt[i] = q
	}
	seg(0xDB, dqt)
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 4}
	for c := byte(1); c <= 4; c++ {
		sof = append(sof, c, 0x11, 0)
	}
	seg(0xC0, sof)

	// DC: categories 0..11, all 4-bit codes. AC: EOB, ZRL and every
	// run/size pair (size 1..10), all 8-bit codes.
	dcVals := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	acVals := []byte{0x00, 0xF0}
	for run := 0; run < 16; run++ {
		for size := 1; size <= 10; size++ {
			acVals = append(acVals, byte(run<<4|size))
		}
	}
	dht := []byte{0x00}
	counts := make([]byte, 16)
	counts[3] = byte(len(dcVals))
	dht = append(append(append(dht, counts...), dcVals...), 0x10)
	counts = make([]byte, 16)
	counts[7] = byte(len(acVals))
	dht = append(append(dht, counts...), acVals...)
	seg(0xC4, dht)
	dcCode := map[int]uint32{}
	for i, v := range dcVals {
		dcCode[int(v)] = uint32(i)
	}
	acCode := map[int]uint32{}
	for i, v := range acVals {
		acCode[int(v)] = uint32(i)
	}
	sos := []byte{4}
	for c := byte(1); c <= 4; c++ {
		sos = append(sos, c, 0x00)
	}
	seg(0xDA, append(sos, 0, 63, 0))

	bw := &bitWriter{w: &out}
	category := func(v int) int {
		if v < 0 {
			v = -v
		}
		n := 0
		for v > 0 {
			n++
			v >>= 1
		}
		return n
	}
	emitValue := func(v, n int) {
		if v < 0 {
			v += 1<<n - 1
		}
		bw.write(uint32(v), n)
	}
	// zigzag[k] is the natural (row-major) index of the k-th coefficient in
	// JPEG zig-zag order.
	zigzag := [64]int{
		0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
		12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
		35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
		58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
	}
	var pred [4]int
	var blk [64]float64
	for by := 0; by < ph; by += 8 {
		for bx := 0; bx < pw; bx += 8 {
			for c := 0; c < 4; c++ { // interleaved MCU: one block per component
				for y := 0; y < 8; y++ {
					for x := 0; x < 8; x++ {
						blk[y*8+x] = float64(planes[c][(by+y)*pw+bx+x] - 128)
					}
				}
				coef := fdct(&blk)
				var zz [64]int
				for k := 0; k < 64; k++ {
					zz[k] = int(math.Round(coef[zigzag[k]] / q))
				}
				diff := zz[0] - pred[c]
				pred[c] = zz[0]
				n := category(diff)
				bw.write(dcCode[n], 4)
				emitValue(diff, n)
				run := 0
				for k := 1; k < 64; k++ {
					if zz[k] == 0 {
						run++
						continue
					}
					for run > 15 {
						bw.write(acCode[0xF0], 8)
						run -= 16
					}
					n := category(zz[k])
					bw.write(acCode[run<<4|n], 8)
					emitValue(zz[k], n)
					run = 0
				}
				if run > 0 {
					bw.write(acCode[0x00], 8)
				}
			}
		}
	}
	bw.flush()
	out.Write([]byte{0xFF, 0xD9})
	return out.Bytes()
}

// fdct is the textbook 8×8 forward DCT-II with JPEG's normalisation.
func fdct(in *[64]float64) [64]float64 {
	var out [64]float64
	for v := 0; v < 8; v++ {
		for u := 0; u < 8; u++ {
			var s float64
			for y := 0; y < 8; y++ {
				for x := 0; x < 8; x++ {
					s += in[y*8+x] *
						math.Cos(float64(2*x+1)*float64(u)*math.Pi/16) *
						math.Cos(float64(2*y+1)*float64(v)*math.Pi/16)
				}
			}
			cu, cv := 1.0, 1.0
			if u == 0 {
				cu = 1 / math.Sqrt2
			}
			if v == 0 {
				cv = 1 / math.Sqrt2
			}
			out[v*8+u] = s * cu * cv / 4
		}
	}
	return out
}

// bitWriter writes MSB-first entropy-coded data with JPEG byte stuffing.
type bitWriter struct {
	w     *bytes.Buffer
	acc   uint32
	nbits int
}

func (b *bitWriter) write(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		b.acc = b.acc<<1 | (v>>uint(i))&1
		b.nbits++
		if b.nbits == 8 {
			b.emit(byte(b.acc))
			b.acc, b.nbits = 0, 0
		}
	}
}

func (b *bitWriter) emit(c byte) {
	b.w.WriteByte(c)
	if c == 0xFF {
		b.w.WriteByte(0x00)
	}
}

func (b *bitWriter) flush() {
	for b.nbits != 0 {
		b.write(1, 1) // pad with 1-bits, as the spec requires
	}
}
