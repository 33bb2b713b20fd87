package imageio

import (
	"bytes"
	"encoding/binary"
)

// Mirror returns a horizontally flipped copy of im (left becomes right).
// Face pipelines use it for flip test-time augmentation. A nil receiver
// yields nil.
func (im *Image) Mirror() *Image {
	if im == nil {
		return nil
	}
	return im.oriented(2)
}

// oriented returns a copy of im transformed so that an image stored with the
// given EXIF orientation (1..8) becomes upright. Unknown values return an
// unmodified copy. The copy is deliberate: callers may still hold im.
//
// Orientation semantics (TIFF 6.0 / EXIF 2.3, tag 0x0112), as the transform
// to apply to the stored pixels:
//
//	1 none            5 transpose (mirror along the main diagonal)
//	2 mirror H        6 rotate 90° clockwise
//	3 rotate 180°     7 transverse (mirror along the anti-diagonal)
//	4 mirror V        8 rotate 90° counter-clockwise
//
// Each case is written as "for every destination pixel, which source pixel",
// so every destination byte is written exactly once.
func (im *Image) oriented(o int) *Image {
	w, h := im.Width, im.Height
	if w <= 0 || h <= 0 || len(im.Pix) < 3*w*h {
		return &Image{Width: w, Height: h, Pix: append([]byte(nil), im.Pix...), Format: im.Format}
	}
	src := im.Pix
	dst := make([]byte, 3*w*h)
	out := &Image{Width: w, Height: h, Pix: dst, Format: im.Format}
	if o >= 5 && o <= 8 {
		out.Width, out.Height = h, w
	}
	dw, dh := out.Width, out.Height
	rowBytes := 3 * w

	switch o {
	case 2, 3: // mirror horizontally; 180° is that plus a vertical flip
		for y := 0; y < h; y++ {
			sy := y
			if o == 3 {
				sy = h - 1 - y
			}
			reverseRow(dst[y*rowBytes:(y+1)*rowBytes], src[sy*rowBytes:(sy+1)*rowBytes])
		}
	case 4: // mirror vertically
		for y := 0; y < h; y++ {
			copy(dst[y*rowBytes:(y+1)*rowBytes], src[(h-1-y)*rowBytes:(h-y)*rowBytes])
		}
	case 5, 6, 7, 8:
		// Destination is h wide and w tall. For destination (dx, dy):
		//   5 transpose:  src(dy,     dx)
		//   6 rotate CW:  src(dy,     h-1-dx)
		//   7 transverse: src(w-1-dy, h-1-dx)
		//   8 rotate CCW: src(w-1-dy, dx)
		// Walking a destination row walks a source column, touching one
		// cache line per pixel; working in tiles keeps those lines cached
		// across the rows of a tile instead of refetching them per row.
		const tile = 32
		step := rowBytes // source offset change per destination x
		if o == 6 || o == 7 {
			step = -rowBytes
		}
		for ty := 0; ty < dh; ty += tile {
			for tx := 0; tx < dw; tx += tile {
				for dy := ty; dy < min(ty+tile, dh); dy++ {
					sx := dy
					if o == 7 || o == 8 {
						sx = w - 1 - dy
					}
					sy := tx
					if step < 0 {
						sy = h - 1 - tx
					}
					si := sy*rowBytes + 3*sx
					d := dst[3*(dy*dw+tx) : 3*(dy*dw+min(tx+tile, dw))]
					for j := 0; j+3 <= len(d); j += 3 {
						p, q := d[j:j+3:j+3], src[si:si+3:si+3]
						p[0], p[1], p[2] = q[0], q[1], q[2]
						si += step
					}
				}
			}
		}
	default: // 1 or invalid: identity
		copy(dst, src)
	}
	return out
}

// reverseRow writes the pixels of src into dst in reverse order.
func reverseRow(dst, src []byte) {
	n := len(src)
	for j := 0; j+3 <= n && j+3 <= len(dst); j += 3 {
		p, q := dst[j:j+3:j+3], src[n-j-3:n-j:n-j]
		p[0], p[1], p[2] = q[0], q[1], q[2]
	}
}

// exifOrientation returns the EXIF orientation (1..8) stored in the file's
// metadata, or 1 when there is none or it cannot be read. Malformed
// metadata is deliberately not an error (see Decode).
func exifOrientation(format string, data []byte) int {
	var tiff []byte
	switch format {
	case FormatJPEG:
		tiff = jpegExif(data)
	case FormatWebP:
		tiff = webpExif(data)
	case FormatPNG:
		tiff = pngExif(data)
	default:
		return 1
	}
	if tiff == nil {
		return 1
	}
	return tiffOrientation(tiff)
}

// exifHeader prefixes the TIFF structure in a JPEG APP1 segment.
const exifHeader = "Exif\x00\x00"

// jpegExif returns the TIFF structure inside the first APP1 "Exif\0\0"
// segment, scanning the marker segments that precede the first scan.
func jpegExif(data []byte) []byte {
	i := 2 // skip SOI; sniff guaranteed FF D8 FF
	for i+4 <= len(data) {
		if data[i] != 0xFF {
			return nil // lost sync: not a marker where one must be
		}
		marker := data[i+1]
		switch {
		case marker == 0xFF: // fill byte before a marker
			i++
			continue
		case marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7):
			i += 2 // standalone markers carry no length
			continue
		case marker == 0xDA || marker == 0xD9: // start of scan / end of image
			return nil
		}
		segLen := int(binary.BigEndian.Uint16(data[i+2 : i+4]))
		if segLen < 2 || segLen > len(data)-i-2 {
			return nil
		}
		payload := data[i+4 : i+2+segLen]
		if marker == 0xE1 && bytes.HasPrefix(payload, []byte(exifHeader)) {
			return payload[len(exifHeader):]
		}
		i += 2 + segLen
	}
	return nil
}

// jpegScans counts the scans (SOS segments) of a JPEG, stopping once the
// count exceeds limit. It walks marker segments and skips entropy-coded data
// by searching for the next marker (0xFF not followed by a stuffed 0x00, a
// restart marker or another fill 0xFF). Malformed structure just ends the
// count; the decoder reports such files itself.
func jpegScans(data []byte, limit int) int {
	n := 0
	i := 2 // skip SOI
	for i+4 <= len(data) {
		if data[i] != 0xFF {
			return n
		}
		marker := data[i+1]
		switch {
		case marker == 0xFF: // fill byte
			i++
			continue
		case marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7):
			i += 2
			continue
		case marker == 0xD9: // end of image
			return n
		}
		segLen := int(binary.BigEndian.Uint16(data[i+2 : i+4]))
		if segLen < 2 || segLen > len(data)-i-2 {
			return n
		}
		i += 2 + segLen
		if marker != 0xDA {
			continue
		}
		if n++; n > limit {
			return n
		}
		// Skip the entropy-coded segment that follows the SOS header.
		for {
			k := bytes.IndexByte(data[i:], 0xFF)
			if k < 0 || i+k+1 >= len(data) {
				return n
			}
			i += k
			c := data[i+1]
			if c == 0x00 || (c >= 0xD0 && c <= 0xD7) {
				i += 2 // stuffed zero or restart marker: still scan data
				continue
			}
			if c == 0xFF {
				i++ // fill byte; the marker starts at the next 0xFF
				continue
			}
			break // a real marker: resume the segment walk here
		}
	}
	return n
}

// webpAnimated reports whether a WebP declares animation in its VP8X
// header; x/image/webp cannot decode animations and would otherwise report a
// misleading "invalid format".
func webpAnimated(data []byte) bool {
	var animated bool
	walkRIFF(data, func(fourcc string, payload []byte) bool {
		if fourcc == "VP8X" && len(payload) >= 1 {
			animated = payload[0]&0x02 != 0
		}
		return false // VP8X, when present, must be the first chunk
	})
	return animated
}

// webpExif returns the payload of the EXIF chunk. The WebP container spec
// says the payload is a bare TIFF structure, but some writers prefix the
// JPEG-style "Exif\0\0" header, so that is stripped if present.
func webpExif(data []byte) []byte {
	var tiff []byte
	walkRIFF(data, func(fourcc string, payload []byte) bool {
		if fourcc == "EXIF" {
			tiff = bytes.TrimPrefix(payload, []byte(exifHeader))
			return false
		}
		return true
	})
	return tiff
}

// walkRIFF calls fn for each chunk of a RIFF/WEBP file, in order, until fn
// returns false or the data ends. Chunks that overrun the data end the walk.
func walkRIFF(data []byte, fn func(fourcc string, payload []byte) bool) {
	if len(data) < 12 {
		return
	}
	// The RIFF size field bounds the container; trust whichever is smaller.
	end := len(data)
	if riffLen := uint64(binary.LittleEndian.Uint32(data[4:8])) + 8; riffLen < uint64(end) {
		end = int(riffLen)
	}
	for i := 12; i+8 <= end; {
		fourcc := string(data[i : i+4])
		n := uint64(binary.LittleEndian.Uint32(data[i+4 : i+8]))
		if n > uint64(end-i-8) {
			return
		}
		if !fn(fourcc, data[i+8:i+8+int(n)]) {
			return
		}
		i += 8 + int(n) + int(n&1) // chunks are padded to even length
	}
}

// pngExif returns the payload of the eXIf chunk (a bare TIFF structure).
func pngExif(data []byte) []byte {
	for i := 8; i+12 <= len(data); {
		n := uint64(binary.BigEndian.Uint32(data[i : i+4]))
		typ := string(data[i+4 : i+8])
		if n > uint64(len(data)-i-12) {
			return nil
		}
		switch typ {
		case "eXIf":
			return data[i+8 : i+8+int(n)]
		case "IEND":
			return nil
		}
		i += 12 + int(n) // length, type, data, CRC
	}
	return nil
}

// tiffOrientation reads tag 0x0112 (Orientation) from IFD0 of a TIFF
// structure. Every offset is checked against len(tiff) before use; any
// inconsistency yields 1 (leave the image as stored).
func tiffOrientation(tiff []byte) int {
	if len(tiff) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(tiff[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(tiff[2:4]) != 42 {
		return 1
	}
	size := uint64(len(tiff))
	ifd := uint64(bo.Uint32(tiff[4:8]))
	if ifd < 8 || ifd+2 > size {
		return 1
	}
	count := uint64(bo.Uint16(tiff[ifd : ifd+2]))
	for k := uint64(0); k < count; k++ {
		e := ifd + 2 + 12*k
		if e+12 > size {
			return 1
		}
		entry := tiff[e : e+12]
		if bo.Uint16(entry[0:2]) != 0x0112 {
			continue
		}
		typ, n := bo.Uint16(entry[2:4]), bo.Uint32(entry[4:8])
		var v uint32
		switch {
		case typ == 3 && (n == 1 || n == 2): // SHORT, stored inline
			v = uint32(bo.Uint16(entry[8:10]))
		case typ == 4 && n == 1: // LONG: wrong per spec but seen in the wild
			v = bo.Uint32(entry[8:12])
		default:
			return 1
		}
		if v < 1 || v > 8 {
			return 1
		}
		return int(v)
	}
	return 1
}
