// Package imageio decodes untrusted image bytes (JPEG, PNG, GIF, WebP, BMP)
// into upright, 8-bit packed RGB.
//
// The input is assumed hostile: its size and declared dimensions are checked
// against Limits before any pixel buffer is allocated, decoder panics are
// turned into errors, and every failure is an *Error carrying a stable
// machine code (see Code) that the HTTP layer can pass through to clients.
//
// The package has no mutable package-level state, so Decode is safe for
// concurrent use.
package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/visage/visage/internal/dlib"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// Default limits. 32 MiB comfortably holds a full-resolution phone photo;
// 40 megapixels bounds the decoder's working memory to roughly 160 MB for
// 8-bit RGBA (320 MB for 16-bit PNG) plus 120 MB for the RGB result.
const (
	DefaultMaxBytes  int64 = 32 << 20
	DefaultMaxPixels int64 = 40_000_000
)

// maxJPEGScans bounds the number of scans (SOS segments) in a JPEG. libjpeg's
// progressive mode writes 10 for colour images and mozjpeg's scan
// optimisation rarely exceeds 20; libjpeg-turbo offers the same kind of limit
// (TJPARAM_SCANLIMIT, djpeg -maxscans) for untrusted input. At 40 megapixels
// a scan costs roughly 10 ms, so this caps the CPU one upload can take.
const maxJPEGScans = 100

// Limits bound what Decode accepts; both are checked before any pixel is
// decoded. A zero (or negative) field means "use the default".
type Limits struct {
	MaxBytes  int64 // maximum len(data); default 32 MiB when zero
	MaxPixels int64 // maximum width*height; default 40_000_000 when zero
}

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{MaxBytes: DefaultMaxBytes, MaxPixels: DefaultMaxPixels}
}

// withDefaults fills unset fields. Negative values are treated as unset
// rather than as "reject everything": a negative limit can only be a
// configuration mistake, and failing open to the default keeps the service
// usable while still bounded.
func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	return l
}

// Image is an 8-bit packed RGB image: row-major, 3 bytes per pixel, no
// padding, so len(Pix) == 3*Width*Height and pixel (x, y) starts at
// Pix[3*(y*Width+x)]. Images returned by Decode are already rotated upright
// according to their EXIF orientation.
type Image struct {
	Width, Height int
	Pix           []byte
	// Format is the source format: "jpeg", "png", "gif", "webp" or "bmp";
	// empty for images built by FromImage.
	Format string
}

// codec holds the two entry points of one format's decoder. Decoders are
// called directly instead of through image.Decode so that the accepted set
// of formats does not depend on what else registered itself globally.
type codec struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

func codecFor(format string) codec {
	switch format {
	case FormatJPEG:
		return codec{jpeg.DecodeConfig, jpeg.Decode}
	case FormatPNG:
		return codec{png.DecodeConfig, png.Decode}
	case FormatGIF:
		// gif.Decode returns only the first frame, which is what we want:
		// a face detector needs one still image.
		return codec{gif.DecodeConfig, gif.Decode}
	case FormatWebP:
		return codec{webp.DecodeConfig, webp.Decode}
	case FormatBMP:
		return codec{bmp.DecodeConfig, bmp.Decode}
	}
	panic("imageio: no codec for " + format) // unreachable: sniff only returns the formats above
}

// Header is what Inspect learns of an image without decoding its pixels.
type Header struct {
	Format        string
	Width, Height int
	// Orientation is the EXIF orientation (1: stored upright).
	Orientation int
	// canvas is the decoder's bytes per pixel before conversion to RGB.
	canvas int64
	// config is the decoder's header, for Decode.
	config image.Config
}

// DecodeBytes estimates the peak memory Decode allocates for the image:
// the decoder's own canvas (none for libjpeg, which writes packed RGB),
// the packed RGB result and, for an image stored rotated, its upright
// copy. Admission control reserves it before decoding.
func (h Header) DecodeBytes() int64 {
	perPixel := h.canvas + 3
	if h.Orientation != 1 {
		perPixel += 3
	}
	return int64(h.Width) * int64(h.Height) * perPixel
}

// Inspect runs every check that needs no pixel decoding (see Decode) and
// returns the image's header. Its error is always an *Error.
func Inspect(data []byte, lim Limits) (Header, error) {
	h, _, err := inspect(data, lim.withDefaults())
	return h, err
}

// Decode decodes an untrusted encoded image into upright packed RGB.
//
// Checks run cheapest first so that hostile input is refused before it costs
// memory: empty input, byte size, magic bytes, header (DecodeConfig),
// declared dimensions against lim.MaxPixels, whether the file is long
// enough to hold that many pixels, and only then the pixel data.
// The returned error is always an *Error (see Code).
//
// Alpha is dropped, not composited: the colour channels are used
// un-premultiplied, exactly as color.NRGBA would give them. Compositing onto
// some background would invent pixel values the subject never had, and for
// face analysis the true colour of partially transparent pixels is the more
// faithful signal. Fully transparent pixels keep whatever colour the file
// stored for them (black for formats that store premultiplied colour).
//
// For GIF only the first frame is decoded; its own bounds (which may be
// smaller than the logical screen) define the result's size.
func Decode(data []byte, lim Limits) (*Image, error) {
	h, err := Inspect(data, lim)
	if err != nil {
		return nil, err
	}
	return h.Decode(data)
}

// Decode decodes the pixels of data, which Inspect returned h for: the
// checks are not run again (admission control reserves memory between
// the two).
func (h Header) Decode(data []byte) (*Image, error) {
	cfg := h.config
	out, err := decodePixels(codecFor(h.Format), h.Format, data, cfg)
	if err != nil {
		return nil, err
	}
	// Defensive: a decoder must not produce more than its header promised.
	// (GIF frames may legitimately be smaller than the logical screen.)
	if out.Width <= 0 || out.Height <= 0 || out.Width > cfg.Width || out.Height > cfg.Height {
		return nil, newError(CodeCorruptImage,
			fmt.Sprintf("%s: decoded size %dx%d does not match header %dx%d",
				h.Format, out.Width, out.Height, cfg.Width, cfg.Height))
	}
	if h.Orientation != 1 {
		out = out.oriented(h.Orientation)
	}
	out.Format = h.Format
	return out, nil
}

func inspect(data []byte, lim Limits) (Header, image.Config, error) {
	var cfg image.Config
	if len(data) == 0 {
		return Header{}, cfg, newError(CodeEmptyImage, "no image data")
	}
	if int64(len(data)) > lim.MaxBytes {
		return Header{}, cfg, newError(CodeImageTooLarge,
			fmt.Sprintf("%d bytes exceeds the limit of %d bytes", len(data), lim.MaxBytes))
	}
	format, other := sniff(data)
	if format == "" {
		detail := "unrecognised data (supported: jpeg, png, gif, webp, bmp)"
		if other != "" {
			detail = other + " is not supported (supported: jpeg, png, gif, webp, bmp)"
		}
		return Header{}, cfg, newError(CodeUnsupportedFormat, detail)
	}
	if format == FormatWebP && webpAnimated(data) {
		return Header{}, cfg, newError(CodeUnsupportedFormat, "animated webp is not supported")
	}
	cfg, err := safeConfig(codecFor(format), data)
	if err != nil {
		return Header{}, cfg, classify(format, "header", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Header{}, cfg, newError(CodeCorruptImage,
			fmt.Sprintf("%s: invalid dimensions %dx%d", format, cfg.Width, cfg.Height))
	}
	if tooMany(cfg.Width, cfg.Height, lim.MaxPixels) {
		return Header{}, cfg, newError(CodeImageTooLarge,
			fmt.Sprintf("%dx%d pixels exceeds the limit of %d pixels", cfg.Width, cfg.Height, lim.MaxPixels))
	}
	h := Header{Format: format, Width: cfg.Width, Height: cfg.Height, canvas: 4, config: cfg}
	switch format {
	case FormatBMP:
		// BMP pixels are stored uncompressed, so a file shorter than its
		// declared pixel array is certainly truncated; refuse it before the
		// decoder allocates the full canvas for nothing.
		if err := bmpCheckLength(data, cfg); err != nil {
			return Header{}, cfg, err
		}
	case FormatPNG:
		// Go's PNG decoder allocates the whole canvas before inflating, so
		// a 1 KB file declaring 6000x6000 would cost 144 MB before failing.
		// Deflate cannot expand more than 1032:1, which bounds how small a
		// genuine PNG of the declared size can be.
		if err := pngCheckCompressed(data, cfg); err != nil {
			return Header{}, cfg, err
		}
		if len(data) > 24 && data[24] == 16 {
			h.canvas = 8
		}
	case FormatJPEG:
		// Every progressive scan costs a pass over all blocks, so a small
		// file holding thousands of tiny scans burns minutes of CPU (the
		// progressive-JPEG "scan bomb"). Count scans before decoding.
		if n := jpegScans(data, maxJPEGScans); n > maxJPEGScans {
			return Header{}, cfg, newError(CodeCorruptImage,
				fmt.Sprintf("jpeg: more than %d scans (legitimate encoders write at most a few dozen)", maxJPEGScans))
		}
		// libjpeg decodes a file cut short as if the rest were grey, after
		// allocating and filling the whole declared image; refuse one too
		// short to hold that image at all.
		if err := jpegCheckLength(data, cfg); err != nil {
			return Header{}, cfg, err
		}
		h.canvas = 0
		if cfg.ColorModel == color.CMYKModel {
			h.canvas = 4 // four-component JPEGs go to Go's decoder
		}
	case FormatGIF:
		h.canvas = 1
	}
	// Metadata problems are never errors: an image with unreadable EXIF is
	// still a perfectly good image, just left in stored orientation.
	h.Orientation = exifOrientation(format, data)
	return h, cfg, nil
}

// decodePixels decodes JPEGs with libjpeg-turbo (several times faster than
// image/jpeg, and the same pixels as dlib's loader, so descriptors match
// dlib-based tools such as go-face); four-component JPEGs, which libjpeg
// cannot turn into RGB, and every other format use the Go decoders.
func decodePixels(c codec, format string, data []byte, cfg image.Config) (*Image, error) {
	if format == FormatJPEG {
		pix, err := dlib.DecodeJPEG(data, cfg.Width, cfg.Height)
		switch {
		case err == nil:
			return &Image{Width: cfg.Width, Height: cfg.Height, Pix: pix}, nil
		case !errors.Is(err, dlib.ErrJPEGCMYK):
			return nil, classify(format, "data", err)
		}
	}
	out, err := safeDecode(c, data, format == FormatWebP)
	if err != nil {
		return nil, classify(format, "data", err)
	}
	return out, nil
}

// tooMany reports whether w*h > limit without overflowing: for positive
// integers, w*h > limit exactly when w > floor(limit/h).
func tooMany(w, h int, limit int64) bool {
	if int64(w) > limit/int64(h) {
		return true
	}
	// The RGB result needs 3*w*h bytes; keep that representable as an int
	// even when a caller configured an absurd limit (or int is 32 bits).
	const maxInt = int64(^uint(0) >> 1)
	return int64(w)*int64(h) > maxInt/4
}

// safeConfig runs the format's DecodeConfig, converting a panic into an
// error: the decoders are well tested but the input is hostile, and one bad
// upload must not take the process down.
func safeConfig(c codec, data []byte) (cfg image.Config, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder panic: %v", r)
		}
	}()
	return c.config(bytes.NewReader(data))
}

// safeDecode decodes and converts to packed RGB, converting a panic into an
// error. The conversion is inside the recover too because it trusts the
// decoder's image layout (strides, slice lengths); if a decoder ever produced
// an inconsistent image that must surface as corrupt_image, not a crash.
//
// vp8 marks WebP input: its lossy (VP8) pixels come back as *image.YCbCr or
// *image.NYCbCrA holding limited-range BT.601, which needs a different
// conversion from JPEG's full-range YCbCr (see fromYCbCr).
func safeDecode(c codec, data []byte, vp8 bool) (out *Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("decoder panic: %v", r)
		}
	}()
	m, err := c.decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("decoder returned no image")
	}
	if vp8 {
		var y *image.YCbCr
		switch t := m.(type) {
		case *image.YCbCr:
			y = t
		case *image.NYCbCrA:
			y = &t.YCbCr
		}
		if y != nil {
			b := y.Rect
			out := &Image{Width: b.Dx(), Height: b.Dy(), Pix: make([]byte, 3*b.Dx()*b.Dy())}
			if fromYCbCr(out.Pix, y, true) {
				return out, nil
			}
			return nil, errors.New("inconsistent YCbCr layout from the vp8 decoder")
		}
	}
	return FromImage(m), nil
}

// classify maps a decoder error to our codes. Everything is corrupt_image
// except JPEG and BMP "unsupported" errors: those decoders refuse some valid
// files (arithmetic-coded or 12-bit JPEG, RLE-compressed BMP), and telling
// the client its file is corrupt would be wrong. PNG's UnsupportedError is
// not special-cased because Go's PNG decoder supports every valid PNG, so
// its "unsupported" really means a malformed header.
func classify(format, stage string, err error) error {
	var ju jpeg.UnsupportedError
	if errors.As(err, &ju) || errors.Is(err, bmp.ErrUnsupported) {
		return newError(CodeUnsupportedFormat, fmt.Sprintf("%s variant not supported: %v", format, err))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return newError(CodeCorruptImage, fmt.Sprintf("truncated %s %s: %v", format, stage, err))
	}
	return newError(CodeCorruptImage, fmt.Sprintf("invalid %s %s: %v", format, stage, err))
}

// bmpCheckLength verifies that an uncompressed BMP holds its whole pixel
// array. x/image/bmp only decodes uncompressed 1/2/4/8/24/32-bit images, so
// the size is exactly computable from the header.
func bmpCheckLength(data []byte, cfg image.Config) error {
	if len(data) < 30 {
		return nil // the decoder's own header parsing already vetted this
	}
	offset := int64(binary.LittleEndian.Uint32(data[10:14]))
	bpp := int64(binary.LittleEndian.Uint16(data[28:30]))
	if bpp == 0 || bpp > 32 {
		return nil // not a depth the decoder accepts; it reports that itself
	}
	rowBytes := (int64(cfg.Width)*bpp + 31) / 32 * 4
	// Compare by division so that an absurd height cannot overflow.
	if int64(cfg.Height) > (int64(len(data))-offset)/rowBytes {
		return newError(CodeCorruptImage, fmt.Sprintf(
			"bmp: truncated pixel data: %d bytes cannot hold %dx%d at %d bits per pixel from offset %d",
			len(data), cfg.Width, cfg.Height, bpp, offset))
	}
	return nil
}

// maxDeflateRatio is deflate's maximum expansion: a 258-byte match coded in
// 2 bits (1-bit length code, 1-bit distance code) gives 258*8/2 = 1032.
const maxDeflateRatio = 1032

// pngCheckCompressed refuses a PNG whose IDAT chunks are too short to
// inflate into the declared image, before the decoder allocates it. The
// bound is loose on purpose (it ignores filter bytes and allows slack for
// the zlib framing), so no valid PNG can fail it.
func pngCheckCompressed(data []byte, cfg image.Config) error {
	if len(data) < 26 {
		return nil
	}
	depth := uint64(data[24])
	var channels uint64
	switch data[25] { // colour type
	case 0, 3:
		channels = 1
	case 4:
		channels = 2
	case 2:
		channels = 3
	case 6:
		channels = 4
	default:
		return nil // the decoder already rejected anything else
	}
	var idat uint64
	for i := 8; i+12 <= len(data); {
		n := uint64(binary.BigEndian.Uint32(data[i : i+4]))
		if n > uint64(len(data)-i-12) {
			break // truncated chunk: count what is there, let the decoder fail
		}
		switch string(data[i+4 : i+8]) {
		case "IDAT":
			idat += n
		case "IEND":
			i = len(data)
			continue
		}
		i += 12 + int(n)
	}
	pixelBytes := (uint64(cfg.Width)*uint64(cfg.Height)*depth*channels + 7) / 8
	if (idat+64)*maxDeflateRatio < pixelBytes {
		return newError(CodeCorruptImage, fmt.Sprintf(
			"png: %d bytes of compressed data cannot hold %dx%d pixels", idat, cfg.Width, cfg.Height))
	}
	return nil
}

// jpegCheckLength refuses a Huffman-coded JPEG too short to hold the image
// its frame header declares. Every block of every component carries at
// least a one-bit DC code (in a sequential scan, or in the first DC scan of
// a progressive file), so the entropy-coded data of a complete file takes
// at least one bit per block of its largest component. The bound ignores
// everything else a file holds, so no complete file can fail it.
// Arithmetic-coded and other frames are left to the decoder.
func jpegCheckLength(data []byte, cfg image.Config) error {
	blocks, ok := jpegLargestComponentBlocks(data)
	if !ok {
		return nil
	}
	if int64(len(data)) < blocks/8 {
		return newError(CodeCorruptImage, fmt.Sprintf(
			"truncated jpeg: %d bytes cannot hold %dx%d pixels", len(data), cfg.Width, cfg.Height))
	}
	return nil
}

// jpegLargestComponentBlocks reads the first frame header of a
// Huffman-coded JPEG and returns the 8×8 block count of its largest
// component; ok is false for other frames or a header it cannot read.
func jpegLargestComponentBlocks(data []byte) (blocks int64, ok bool) {
	for i := 2; i+4 <= len(data); {
		if data[i] != 0xFF {
			return 0, false
		}
		marker := data[i+1]
		if marker == 0xFF {
			i++
			continue
		}
		if marker == 0xD8 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7) {
			i += 2
			continue
		}
		n := int(binary.BigEndian.Uint16(data[i+2 : i+4]))
		if n < 2 || n > len(data)-i-2 {
			return 0, false
		}
		seg := data[i+4 : i+2+n]
		switch {
		case marker == 0xC0 || marker == 0xC1 || marker == 0xC2:
			return frameBlocks(seg)
		case marker >= 0xC3 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC:
			return 0, false // lossless, hierarchical or arithmetic-coded
		case marker == 0xDA || marker == 0xD9:
			return 0, false // no frame header before the data
		}
		i += 2 + n
	}
	return 0, false
}

// frameBlocks computes, from an SOF segment's payload (precision, height,
// width, components with their sampling factors), the block count of the
// component with the most blocks.
func frameBlocks(seg []byte) (int64, bool) {
	if len(seg) < 6 {
		return 0, false
	}
	h := int64(binary.BigEndian.Uint16(seg[1:3]))
	w := int64(binary.BigEndian.Uint16(seg[3:5]))
	nc := int(seg[5])
	if h == 0 || w == 0 || nc == 0 || len(seg) < 6+3*nc {
		return 0, false
	}
	var hmax, vmax int64 = 1, 1
	for c := 0; c < nc; c++ {
		f := seg[6+3*c+1]
		hmax, vmax = max(hmax, int64(f>>4)), max(vmax, int64(f&0x0F))
	}
	var most int64
	for c := 0; c < nc; c++ {
		f := seg[6+3*c+1]
		hs, vs := int64(f>>4), int64(f&0x0F)
		if hs == 0 || vs == 0 {
			return 0, false
		}
		cw := (w*hs + hmax - 1) / hmax
		ch := (h*vs + vmax - 1) / vmax
		most = max(most, ((cw+7)/8)*((ch+7)/8))
	}
	return most, true
}
