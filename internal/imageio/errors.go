package imageio

import "errors"

// Stable machine-readable error codes. They are part of the service's API
// (clients switch on them), so they must never change once released.
const (
	CodeEmptyImage        = "empty_image"
	CodeUnsupportedFormat = "unsupported_format"
	CodeCorruptImage      = "corrupt_image"
	CodeImageTooLarge     = "image_too_large"
)

// Sentinel errors, one per code, for use with errors.Is. Every error returned
// by Decode is an *Error whose Unwrap returns one of these.
var (
	// ErrEmptyImage: the input had zero bytes.
	ErrEmptyImage = errors.New("imageio: empty image")
	// ErrUnsupportedFormat: the bytes are not an image format this package
	// decodes (text, PDF, TIFF, HEIC...), or are a variant of a known format
	// that the decoder cannot handle (e.g. an arithmetic-coded JPEG).
	ErrUnsupportedFormat = errors.New("imageio: unsupported image format")
	// ErrCorruptImage: the format was recognised but the data is malformed or
	// truncated.
	ErrCorruptImage = errors.New("imageio: corrupt image")
	// ErrImageTooLarge: the input exceeds Limits.MaxBytes or its declared
	// dimensions exceed Limits.MaxPixels.
	ErrImageTooLarge = errors.New("imageio: image too large")
)

// Error is the error type returned by Decode. Code is one of the Code*
// constants; Detail is a human-readable explanation (it may quote the
// underlying decoder's message and is not meant to be parsed); Err is the
// sentinel matching Code, so errors.Is(err, ErrCorruptImage) works.
type Error struct {
	Code   string
	Detail string
	Err    error
}

// Error formats the error as "imageio: <code>: <detail>".
func (e *Error) Error() string {
	msg := "imageio: " + e.Code
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns the sentinel error for e.Code. When Err was left nil by a
// caller building an *Error by hand, the sentinel is derived from Code so
// errors.Is still behaves.
func (e *Error) Unwrap() error {
	if e.Err != nil {
		return e.Err
	}
	return sentinelFor(e.Code)
}

// Code returns the machine code of an imageio error anywhere in err's chain,
// or "" if err is nil or not an imageio error. Errors that merely wrap one of
// the sentinels (fmt.Errorf("...: %w", ErrCorruptImage)) are recognised too.
func Code(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		return e.Code
	}
	for _, c := range [...]string{CodeEmptyImage, CodeUnsupportedFormat, CodeCorruptImage, CodeImageTooLarge} {
		if errors.Is(err, sentinelFor(c)) {
			return c
		}
	}
	return ""
}

func sentinelFor(code string) error {
	switch code {
	case CodeEmptyImage:
		return ErrEmptyImage
	case CodeUnsupportedFormat:
		return ErrUnsupportedFormat
	case CodeCorruptImage:
		return ErrCorruptImage
	case CodeImageTooLarge:
		return ErrImageTooLarge
	}
	return nil
}

func newError(code, detail string) *Error {
	return &Error{Code: code, Detail: detail, Err: sentinelFor(code)}
}
