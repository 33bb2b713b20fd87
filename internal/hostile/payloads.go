// Package hostile builds the worst-case requests an attacker holding an
// enroll or identify key can send, and runs them in bursts against a
// visaged while timing a normal identification and sampling the server's
// memory. The hardening benchmark (visage bench hostile) and the CI test
// of admission control share it, so that both measure the same attack.
package hostile

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/jpeg"
	"math/rand/v2"
)

// Side is the side of the square images declared by the payloads:
// 6324² = 39,992,976 pixels, just under the default 40 MP limit, so that
// the header checks alone admit them.
const Side = 6324

// Payload is one hostile request body.
type Payload struct {
	Name        string
	ContentType string
	Body        []byte
}

// TruncatedJPEG is a ~7 KB baseline JPEG whose header declares Side×Side:
// a real 256×256 noise image with its frame header rewritten, so the
// entropy-coded data ends long before the declared image does. A decoder
// that trusts the header allocates and fills 120 MB before it finds out.
func TruncatedJPEG() []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	img := image.NewGray(image.Rect(0, 0, 256, 256))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 20}); err != nil {
		panic(fmt.Sprintf("hostile: encode jpeg: %v", err)) // in-memory encode of a valid image cannot fail
	}
	b := buf.Bytes()
	// Rewrite the SOF0 frame's height and width (bytes 5..8 of the
	// segment after the marker).
	for i := 2; i+9 < len(b); {
		if b[i] != 0xFF {
			break
		}
		marker, n := b[i+1], int(binary.BigEndian.Uint16(b[i+2:]))
		if marker == 0xC0 {
			binary.BigEndian.PutUint16(b[i+5:], Side)
			binary.BigEndian.PutUint16(b[i+7:], Side)
			break
		}
		i += 2 + n
	}
	// Cut the end-of-image marker too, as a truncated upload would.
	return b[:len(b)-2]
}

// ZeroPNG is a valid Side×Side 8-bit RGB PNG of all-black pixels, about
// 160 KB: deflate packs the zero rows at close to its 1032:1 limit, so the
// file is genuinely that image and no header check can refuse it.
func ZeroPNG() []byte {
	var idat bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&idat, zlib.BestCompression)
	row := make([]byte, 1+3*Side) // filter byte 0, then zero pixels
	for y := 0; y < Side; y++ {
		zw.Write(row)
	}
	zw.Close()

	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], Side)
	binary.BigEndian.PutUint32(ihdr[4:], Side)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	writeChunk(&out, "IHDR", ihdr)
	writeChunk(&out, "IDAT", idat.Bytes())
	writeChunk(&out, "IEND", nil)
	return out.Bytes()
}

func writeChunk(w *bytes.Buffer, typ string, data []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	w.Write(n[:])
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	w.WriteString(typ)
	w.Write(data)
	binary.BigEndian.PutUint32(n[:], crc.Sum32())
	w.Write(n[:])
}

// BigJSON is an identify body of about size bytes: one base64 "image"
// whose decoded bytes are a JPEG signature followed by noise, so that the
// server must parse and decode the whole body before it can refuse it.
func BigJSON(size int) []byte {
	raw := make([]byte, size/4*3-64)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	copy(raw, []byte{0xFF, 0xD8, 0xFF, 0xE0})
	var buf bytes.Buffer
	buf.Grow(size)
	buf.WriteString(`{"image":"`)
	enc := base64.NewEncoder(base64.StdEncoding, &buf)
	enc.Write(raw)
	enc.Close()
	buf.WriteString(`"}`)
	return buf.Bytes()
}

// Payloads are the three attacks of the hardening issue: the truncated
// JPEG and the zero PNG sent as multipart uploads, and a JSON body of
// jsonBytes (60 MB in the issue).
func Payloads(jsonBytes int) []Payload {
	return []Payload{
		multipartPayload("truncated-jpeg", TruncatedJPEG()),
		multipartPayload("zero-png", ZeroPNG()),
		{Name: "big-json", ContentType: "application/json", Body: BigJSON(jsonBytes)},
	}
}
