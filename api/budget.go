package api

import (
	"context"
	"io"
	"mime"

	"github.com/gin-gonic/gin"

	"github.com/visage/visage/internal/admission"
)

// Bodies are held in memory while their images are decoded and searched;
// what one costs depends on its encoding. JSON holds the body, its raw
// values and the decoded images at once (readPayload): under three times
// its length. Multipart keeps parts up
// to 8 MiB in memory and larger ones on disk, then reads each image in:
// about twice.
const (
	jsonBodyFactor      = 3
	multipartBodyFactor = 2
	// bodyStep is what a body of unknown length reserves at a time.
	bodyStep = 1 << 20
)

func bodyFactor(contentType string) int64 {
	ct, _, _ := mime.ParseMediaType(contentType)
	switch ct {
	case "application/json":
		return jsonBodyFactor
	case "multipart/form-data":
		return multipartBodyFactor
	}
	return 1
}

// budgetedBody reserves the memory a request body will cost from the
// server's body budget as it is read: all of it before the first byte when
// the length is declared, else a step at a time. A read that cannot
// reserve fails with admission.ErrBusy.
type budgetedBody struct {
	io.ReadCloser
	ctx    context.Context
	pool   *admission.Pool
	factor int64
	held   []*admission.Reservation
	// allowance is what may still be read under the reservations held.
	allowance int64
	declared  int64
}

func (b *budgetedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return b.ReadCloser.Read(p)
	}
	if b.allowance <= 0 {
		step := int64(bodyStep)
		if b.declared > 0 && len(b.held) == 0 {
			step = b.declared
		}
		r, err := b.pool.Acquire(b.ctx, step*b.factor)
		if err != nil {
			return 0, err
		}
		b.held = append(b.held, r)
		b.allowance += step
	}
	if int64(len(p)) > b.allowance {
		p = p[:b.allowance]
	}
	n, err := b.ReadCloser.Read(p)
	b.allowance -= int64(n)
	return n, err
}

func (b *budgetedBody) release() {
	for _, r := range b.held {
		r.Release()
	}
	b.held = nil
}

// budgetBody makes the request's body draw from the body budget until the
// request is answered. Bodies that go to disk (import uploads) are not
// charged.
func (s *Server) budgetBody(c *gin.Context) {
	if s.bodies == nil || c.Request.ContentLength == 0 || c.FullPath() == importsRoute {
		c.Next()
		return
	}
	b := &budgetedBody{ReadCloser: c.Request.Body, ctx: c.Request.Context(), pool: s.bodies,
		factor: bodyFactor(c.GetHeader("Content-Type")), declared: c.Request.ContentLength}
	c.Request.Body = b
	defer b.release()
	c.Next()
}
