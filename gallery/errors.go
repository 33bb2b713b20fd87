package gallery

import (
	"errors"

	"github.com/visage/visage/internal/imageio"
)

// Stable error codes of the engine and the use cases beyond imageio's.
const (
	CodeNoFace          = "no_face"
	CodeTooManyFaces    = "too_many_faces"
	CodeQualityRejected = "quality_rejected"
)

// ErrorCode returns the stable machine code of an image's failure, or
// "internal" for anything unexpected.
func ErrorCode(err error) string {
	if c := imageio.Code(err); c != "" {
		return c
	}
	var q *QualityError
	switch {
	case errors.Is(err, ErrNoFace):
		return CodeNoFace
	case errors.Is(err, ErrTooManyFaces):
		return CodeTooManyFaces
	case errors.As(err, &q):
		return CodeQualityRejected
	}
	return "internal"
}
