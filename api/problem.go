package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/index"
	"github.com/visage/visage/internal/admission"
	"github.com/visage/visage/internal/archive"
	"github.com/visage/visage/internal/imageio"
	"github.com/visage/visage/store"
)

// Problem types: stable values of a problem's "type" member (RFC 9457
// relative references), documented in the OpenAPI document.
const (
	TypeBadImage        = "bad_image"
	TypeNoFace          = "no_face"
	TypeTooManyFaces    = "too_many_faces"
	TypeQualityRejected = "quality_rejected"
	TypeInvalidRequest  = "invalid_request"
	TypeNotFound        = "not_found"
	TypeConflict        = "conflict"
	TypeUnauthorized    = "unauthorized"
	TypeForbidden       = "forbidden"
	TypeTooLarge        = "too_large"
	TypeRateLimited     = "rate_limited"
	// TypeInsufficientStorage: an import's archive would not leave the
	// server's margin of free disk space once extracted.
	TypeInsufficientStorage = "insufficient_storage"
	TypeNotReady            = "not_ready"
	TypeUnavailable         = "unavailable"
	TypeInternal            = "internal"
)

// Problem is an application/problem+json body.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Code refines bad_image and too_large (empty_image, corrupt_image,
	// unsupported_format, image_too_large, body_too_large) and
	// unavailable (busy) and rate_limited (too_many_imports); on a failed
	// enrollment it is the first image's rejection code.
	Code string `json:"code,omitempty"`
	// Reasons are the failed quality gates of quality_rejected.
	Reasons []string `json:"reasons,omitempty"`
	// Results are per-image enrollment results when every image failed.
	Results []enrollResultJSON `json:"results,omitempty"`
}

var problemTitles = map[string]struct {
	status int
	title  string
}{
	TypeBadImage:            {http.StatusUnprocessableEntity, "The image cannot be read"},
	TypeNoFace:              {http.StatusUnprocessableEntity, "No face found"},
	TypeTooManyFaces:        {http.StatusUnprocessableEntity, "Several equally large faces"},
	TypeQualityRejected:     {http.StatusUnprocessableEntity, "Face rejected by quality gates"},
	TypeInvalidRequest:      {http.StatusBadRequest, "Invalid request"},
	TypeNotFound:            {http.StatusNotFound, "Not found"},
	TypeConflict:            {http.StatusConflict, "Already exists"},
	TypeUnauthorized:        {http.StatusUnauthorized, "Missing or invalid API key"},
	TypeForbidden:           {http.StatusForbidden, "The API key may not do this"},
	TypeTooLarge:            {http.StatusRequestEntityTooLarge, "Too large"},
	TypeRateLimited:         {http.StatusTooManyRequests, "Rate limit exceeded"},
	TypeInsufficientStorage: {http.StatusInsufficientStorage, "Not enough disk space"},
	TypeNotReady:            {http.StatusServiceUnavailable, "Not ready"},
	TypeUnavailable:         {http.StatusServiceUnavailable, "Storage unavailable"},
	TypeInternal:            {http.StatusInternalServerError, "Internal error"},
}

func newProblem(typ, detail string) Problem {
	t := problemTitles[typ]
	return Problem{Type: typ, Title: t.title, Status: t.status, Detail: detail}
}

// errBodyTooLarge marks a request body over the configured limit, and
// errBodyTimeout one that did not arrive before its read deadline.
var (
	errBodyTooLarge = errors.New("request body too large")
	errBodyTimeout  = errors.New("request body not received in time")
)

// problemFor maps an error of the lower layers to its problem: the one
// place where errors become HTTP.
func problemFor(err error) Problem {
	var (
		inv *gallery.InvalidError
		q   *gallery.QualityError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe) || errors.Is(err, errBodyTooLarge):
		p := newProblem(TypeTooLarge, "the request body exceeds the server's limit")
		p.Code = "body_too_large"
		return p
	case errors.Is(err, errBodyTimeout):
		p := newProblem(TypeInvalidRequest, "the request body did not arrive before the server's read deadline; send it faster or in smaller requests")
		p.Status = http.StatusRequestTimeout
		p.Code = "body_timeout"
		return p
	case errors.Is(err, imageio.ErrImageTooLarge):
		p := newProblem(TypeTooLarge, err.Error())
		p.Code = imageio.Code(err)
		return p
	case imageio.Code(err) != "":
		p := newProblem(TypeBadImage, err.Error())
		p.Code = imageio.Code(err)
		return p
	case errors.Is(err, gallery.ErrNoFace):
		return newProblem(TypeNoFace, err.Error())
	case errors.Is(err, gallery.ErrTooManyFaces):
		return newProblem(TypeTooManyFaces, err.Error())
	case errors.As(err, &q):
		p := newProblem(TypeQualityRejected, err.Error())
		p.Reasons = q.Reasons
		return p
	case errors.As(err, &inv):
		return newProblem(TypeInvalidRequest, err.Error())
	case errors.Is(err, admission.ErrBusy):
		p := newProblem(TypeUnavailable, "the server is at its memory budget for images and bodies; nothing was stored; retry shortly")
		p.Code = CodeBusy
		return p
	case errors.Is(err, gallery.ErrTooManyImports):
		p := newProblem(TypeRateLimited, "the server runs as many import jobs as it is configured to; retry when one has ended")
		p.Code = "too_many_imports"
		return p
	case errors.Is(err, archive.ErrNoSpace):
		return newProblem(TypeInsufficientStorage, err.Error())
	case isBadImportSource(err):
		// The message names paths relative to the import root or the
		// archive, and quotes only what the client sent or uploaded.
		return newProblem(TypeInvalidRequest, err.Error())
	case errors.Is(err, index.ErrUnavailable):
		return newProblem(TypeUnavailable, "the vector store cannot be reached; nothing was stored; retry later")
	case errors.Is(err, store.ErrUnavailable):
		// Before the not-found and conflict cases: an outage is no answer
		// about the row. The detail is fixed, as the cause names servers.
		return newProblem(TypeUnavailable, "the metadata database cannot be reached; retry later")
	case errors.Is(err, store.ErrNotFound):
		return newProblem(TypeNotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		return newProblem(TypeConflict, err.Error())
	case errors.Is(err, store.ErrInvalid):
		return newProblem(TypeInvalidRequest, err.Error())
	}
	return newProblem(TypeInternal, "")
}

// isBadImportSource reports the reasons an import's source is refused
// for what it is: an unsafe, oversized, corrupt or unknown archive, a bad
// manifest, or a server-local path naming nothing an import may read.
func isBadImportSource(err error) bool {
	for _, target := range []error{archive.ErrUnsafe, archive.ErrTooLarge, archive.ErrCorrupt, archive.ErrUnsupported,
		gallery.ErrBadManifest, gallery.ErrUnsupportedSource, gallery.ErrBadSourcePath} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// unavailableRetryAfter is the Retry-After of unavailable, in seconds:
// about the time the index's own retries span, and a few of the
// database's connect timeouts.
const unavailableRetryAfter = "5"

// CodeBusy refines unavailable when admission control refused the request
// (the memory budget stayed spent); busyRetryAfter is its Retry-After, in
// seconds: the budget turns over within one or two decodes.
const (
	CodeBusy       = "busy"
	busyRetryAfter = "1"
)

// importsRetryAfter is the Retry-After of too_many_imports, in seconds:
// import jobs last minutes, so sooner is only more refusals.
const importsRetryAfter = "60"

// fail writes a problem and stops the handler chain.
func fail(c *gin.Context, p Problem) {
	c.Header("Content-Type", "application/problem+json")
	c.AbortWithStatusJSON(p.Status, p)
}

// failErr logs unexpected errors and writes their problem.
func (s *Server) failErr(c *gin.Context, err error) {
	p := problemFor(err)
	switch {
	case p.Type == TypeInternal && errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		s.log.DebugContext(c.Request.Context(), "request cancelled by the client", "route", c.FullPath())
	case p.Code == CodeBusy:
		s.log.InfoContext(c.Request.Context(), "refused: memory budget in use", "route", c.FullPath(), "err", err)
		c.Header("Retry-After", busyRetryAfter)
	case p.Type == TypeUnavailable:
		s.log.WarnContext(c.Request.Context(), "storage unavailable", "route", c.FullPath(), "err", err)
		c.Header("Retry-After", unavailableRetryAfter)
	case p.Type == TypeRateLimited:
		// Only the import job limit comes here; the per-key limiter
		// answers on its own.
		c.Header("Retry-After", importsRetryAfter)
	case p.Type == TypeInsufficientStorage:
		s.log.WarnContext(c.Request.Context(), "import refused: not enough disk space", "route", c.FullPath(), "err", err)
	case p.Type == TypeInternal:
		s.log.ErrorContext(c.Request.Context(), "request failed", "route", c.FullPath(), "err", err)
	}
	fail(c, p)
}

// invalid is a shorthand for a malformed request.
func invalid(field, reason string) error { return &gallery.InvalidError{Field: field, Reason: reason} }
