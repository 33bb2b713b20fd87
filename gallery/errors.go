package gallery

import (
	"errors"

	"github.com/visage/visage/internal/imageio"
)

// Stable error codes of the engine beyond imageio's.
const (
	CodeNoFace = "no_face"
)

// ErrorCode returns the stable machine code of an engine error, or
// "internal" for anything unexpected.
func ErrorCode(err error) string {
	if c := imageio.Code(err); c != "" {
		return c
	}
	if errors.Is(err, ErrNoFace) {
		return CodeNoFace
	}
	return "internal"
}
