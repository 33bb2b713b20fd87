package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/visage/visage/internal/admission"
)

// payload is a request carrying images, read from multipart/form-data
// (file parts) or JSON (base64 strings) alike.
type payload struct {
	files  map[string][][]byte
	values map[string]string
}

// imageFields are the names that hold images in either encoding.
var imageFields = []string{"image", "images", "other"}

func isImageField(name string) bool {
	for _, f := range imageFields {
		if f == name {
			return true
		}
	}
	return false
}

// readPayload parses the body by its content type.
func (s *Server) readPayload(c *gin.Context) (*payload, error) {
	ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	p := &payload{files: map[string][][]byte{}, values: map[string]string{}}
	switch ct {
	case "multipart/form-data":
		if err := c.Request.ParseMultipartForm(8 << 20); err != nil {
			return nil, bodyError(err, "malformed multipart form: ")
		}
		form := c.Request.MultipartForm
		defer form.RemoveAll()
		for name, fhs := range form.File {
			for _, fh := range fhs {
				f, err := fh.Open()
				if err != nil {
					return nil, fmt.Errorf("open part %s: %w", name, err)
				}
				b, err := io.ReadAll(f)
				f.Close()
				if err != nil {
					return nil, fmt.Errorf("read part %s: %w", name, err)
				}
				p.files[name] = append(p.files[name], b)
			}
		}
		for name, vs := range form.Value {
			if len(vs) > 0 {
				p.values[name] = vs[0]
			}
		}
	case "application/json":
		// The body is read whole (it is bounded), parsed into raw values,
		// and images are decoded from their raw quoted strings: the body,
		// its values and the decoded images are all the memory it costs
		// (jsonBodyFactor), not a decoder's doubling buffer and string
		// copies on top.
		buf, err := readBody(c.Request)
		if err != nil {
			return nil, bodyError(err, "read body: ")
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(buf, &raw); err != nil {
			return nil, invalid("body", "malformed JSON: "+err.Error())
		}
		for name, v := range raw {
			if isImageField(name) {
				if err := p.addBase64(name, v); err != nil {
					return nil, err
				}
				raw[name] = nil
				continue
			}
			var str string
			if err := json.Unmarshal(v, &str); err == nil {
				p.values[name] = str
			} else {
				p.values[name] = string(bytes.TrimSpace(v))
			}
		}
	default:
		return nil, invalid("Content-Type", "send multipart/form-data or application/json")
	}
	return p, nil
}

// addBase64 decodes a JSON string or array of strings of base64 images.
func (p *payload) addBase64(name string, v json.RawMessage) error {
	var list []json.RawMessage
	if err := json.Unmarshal(v, &list); err != nil {
		list = []json.RawMessage{v}
	}
	for _, item := range list {
		b, err := decodeBase64(item)
		if err != nil {
			return invalid(name, "must be a base64 string or an array of them")
		}
		p.files[name] = append(p.files[name], b)
	}
	return nil
}

// decodeBase64 decodes a raw JSON string of base64, padded or not, with
// or without a data URL prefix (which browsers produce). Base64 needs no
// JSON escapes, so the quoted bytes are decoded in place of a string copy;
// a string with escapes (a "\/" some encoders write) is unquoted first.
func decodeBase64(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, errors.New("not a JSON string")
	}
	s := []byte(raw[1 : len(raw)-1])
	if bytes.IndexByte(s, '\\') >= 0 {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return nil, err
		}
		s = []byte(str)
	}
	if bytes.HasPrefix(s, []byte("data:")) {
		if i := bytes.Index(s, []byte(";base64,")); i >= 0 {
			s = s[i+len(";base64,"):]
		}
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(out, s)
	if err != nil {
		if n, err = base64.RawStdEncoding.Decode(out, s); err != nil {
			return nil, err
		}
	}
	return out[:n], nil
}

// readBody reads a whole request body, into a buffer of its declared size
// when it has one.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > 0 {
		buf := make([]byte, r.ContentLength)
		n, err := io.ReadFull(r.Body, buf)
		if err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("body shorter than its Content-Length: %w", err)
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return io.ReadAll(r.Body)
}

// images returns the images sent as "image" (or "images").
func (p *payload) images() [][]byte {
	return append(append([][]byte(nil), p.files["image"]...), p.files["images"]...)
}

func (p *payload) float(name string) (float64, error) {
	v, ok := p.values[name]
	if !ok || v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, invalid(name, "must be a number")
	}
	return f, nil
}

func (p *payload) int(name string) (int, error) {
	v, ok := p.values[name]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, invalid(name, "must be an integer")
	}
	return n, nil
}

// bodyError classifies a failure to read a request body: over the size
// limit, refused by the body budget, too slow for its deadline, or else
// malformed (prefix says how).
func bodyError(err error, prefix string) error {
	switch {
	case tooLarge(err):
		return errBodyTooLarge
	case errors.Is(err, admission.ErrBusy):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errBodyTimeout
	}
	return invalid("body", prefix+err.Error())
}

func tooLarge(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe) || strings.Contains(err.Error(), "request body too large")
}
