package imageio

import (
	"bytes"
	"encoding/binary"
)

// Format names reported in Image.Format.
const (
	FormatJPEG = "jpeg"
	FormatPNG  = "png"
	FormatGIF  = "gif"
	FormatWebP = "webp"
	FormatBMP  = "bmp"
)

// sniff identifies the format from magic bytes. It deliberately does not use
// image.Decode's registry: that registry is global mutable state any imported
// package can extend, and we want the set of accepted formats to be exactly
// the five below whatever else is linked into the binary.
//
// When the format is not supported, the second result names what the bytes
// look like (for the error detail) if we can tell.
func sniff(data []byte) (format, other string) {
	switch {
	case len(data) >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF:
		return FormatJPEG, ""
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG, ""
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return FormatGIF, ""
	case len(data) >= 12 && string(data[0:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return FormatWebP, ""
	case isBMP(data):
		return FormatBMP, ""
	}
	// Not supported: try to name it, purely to make the error message useful.
	switch {
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return "", "tiff"
	case bytes.HasPrefix(data, []byte("%PDF")):
		return "", "pdf"
	case len(data) >= 12 && string(data[4:8]) == "ftyp":
		return "", "iso-bmff (heic/avif/mp4)"
	case bytes.HasPrefix(data, []byte("\x00\x00\x01\x00")):
		return "", "ico"
	case bytes.HasPrefix(data, []byte("\xff\x0a")), bytes.HasPrefix(data, []byte("\x00\x00\x00\x0cJXL \r\n\x87\n")):
		return "", "jpeg-xl"
	}
	return "", ""
}

// isBMP checks more than the two-byte "BM" signature, because plain text can
// start with "BM" too and should be reported as unsupported_format, not as a
// corrupt bitmap. A real BMP has zero reserved bytes at 6..9 and a DIB header
// of one of the sizes defined by Microsoft at 14..17.
func isBMP(data []byte) bool {
	if len(data) < 18 || data[0] != 'B' || data[1] != 'M' {
		return false
	}
	if binary.LittleEndian.Uint32(data[6:10]) != 0 {
		return false
	}
	switch binary.LittleEndian.Uint32(data[14:18]) {
	case 12, 16, 40, 52, 56, 64, 108, 124:
		return true
	}
	return false
}
