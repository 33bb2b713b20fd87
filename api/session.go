package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visage/visage/api/dashboard"
	"github.com/visage/visage/store"
)

// The dashboard signs in with an admin or read key, typed into its form
// once and exchanged for a session: a random token in an HttpOnly,
// SameSite=Strict cookie, whose sha256 alone the store keeps. The key
// never reaches a URL or the browser's storage. Requests authenticated by
// the cookie must echo the session's CSRF token in X-CSRF-Token to change
// anything, so that another site cannot make the browser act.
const (
	sessionCookie = "visage_session"
	csrfHeader    = "X-CSRF-Token"
	sessionTTL    = 8 * time.Hour
)

// sessionJSON is what the dashboard learns of its session.
type sessionJSON struct {
	KeyID      string     `json:"key_id"`
	KeyName    string     `json:"key_name"`
	Role       store.Role `json:"role"`
	Collection string     `json:"collection"`
	CSRFToken  string     `json:"csrf_token"`
	ExpiresAt  time.Time  `json:"expires_at"`
}

func newSessionJSON(sk store.SessionKey) sessionJSON {
	return sessionJSON{KeyID: sk.Key.ID, KeyName: sk.Key.Name, Role: sk.Key.Role, Collection: sk.Key.Collection,
		CSRFToken: sk.Session.CSRF, ExpiresAt: sk.Session.ExpiresAt}
}

// randomToken returns 256 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// signIn exchanges an admin or read key for a session.
func (s *Server) signIn(c *gin.Context) {
	// JSON only: a form on another site can post text/plain that parses
	// as JSON, and would sign the browser in with the other site's key.
	// A cross-site request with this content type needs a CORS preflight,
	// which visaged never grants.
	if s.throttled(c) {
		return
	}
	if c.ContentType() != "application/json" {
		fail(c, newProblem(TypeInvalidRequest, "send Content-Type: application/json"))
		return
	}
	var req struct {
		Key string `json:"key"`
	}
	if err := c.ShouldBindJSON(&req); err != nil || req.Key == "" {
		fail(c, newProblem(TypeInvalidRequest, `send {"key": "<API key>"}`))
		return
	}
	k, err := s.keys.GetKey(c.Request.Context(), KeyID(req.Key))
	if err != nil || k.RevokedAt != nil || !tokenMatches(req.Key, k.Hash) {
		if err != nil && !isNotFound(err) {
			s.failErr(c, err)
			return
		}
		s.authFailures.failed(c.ClientIP())
		fail(c, newProblem(TypeUnauthorized, "unknown or revoked key"))
		return
	}
	if k.Role != store.RoleAdmin && k.Role != store.RoleRead {
		fail(c, newProblem(TypeForbidden, "the dashboard takes admin or read keys; this one is "+string(k.Role)))
		return
	}
	token := randomToken()
	sess, err := s.keys.CreateSession(c.Request.Context(), store.Session{IDHash: HashToken(token), KeyID: k.ID,
		CSRF: randomToken(), ExpiresAt: time.Now().Add(sessionTTL)})
	if err != nil {
		s.failErr(c, err)
		return
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isHTTPS(c)})
	s.touch(c.Request.Context(), k.ID)
	c.JSON(http.StatusOK, newSessionJSON(store.SessionKey{Session: sess, Key: k}))
}

// sessionInfo tells the dashboard whether it is signed in, and as whom.
func (s *Server) sessionInfo(c *gin.Context) {
	sk, ok := s.cookieSession(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, newSessionJSON(sk))
}

// signOut ends the session and clears the cookie.
func (s *Server) signOut(c *gin.Context) {
	sk, ok := s.cookieSession(c)
	if !ok || !checkCSRF(c, sk) {
		return
	}
	if err := s.keys.DeleteSession(c.Request.Context(), sk.Session.IDHash); err != nil {
		s.failErr(c, err)
		return
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isHTTPS(c)})
	c.Status(http.StatusNoContent)
}

// cookieSession returns the request's live session, or answers 401.
func (s *Server) cookieSession(c *gin.Context) (store.SessionKey, bool) {
	token, err := c.Cookie(sessionCookie)
	if err != nil || token == "" {
		fail(c, newProblem(TypeUnauthorized, "not signed in"))
		return store.SessionKey{}, false
	}
	sk, err := s.keys.GetSession(c.Request.Context(), HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		fail(c, newProblem(TypeUnauthorized, "the session has ended; sign in again"))
		return store.SessionKey{}, false
	}
	if err != nil {
		s.failErr(c, err)
		return store.SessionKey{}, false
	}
	return sk, true
}

// checkCSRF refuses a request that would change something without the
// session's CSRF token.
func checkCSRF(c *gin.Context, sk store.SessionKey) bool {
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	got := c.GetHeader(csrfHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sk.Session.CSRF)) != 1 {
		fail(c, newProblem(TypeForbidden, "missing or wrong "+csrfHeader+" header"))
		return false
	}
	return true
}

// isHTTPS reports whether the client reached us over TLS, directly or
// through a trusted proxy, so that the cookie is marked Secure.
func isHTTPS(c *gin.Context) bool {
	if c.Request.TLS != nil {
		return true
	}
	// ClientIP differs from the peer only when the peer is a trusted
	// proxy, whose X-Forwarded-Proto is then believed too.
	peer, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	return err == nil && c.ClientIP() != peer && strings.EqualFold(c.GetHeader("X-Forwarded-Proto"), "https")
}

// dashboardCSP keeps the dashboard's page to its own scripts, styles and
// requests; photos shown in "try it" are blob: URLs.
const dashboardCSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// serveAsset serves one of the dashboard's files. A versioned file asked
// for by its current version may be kept by the browser for a year; the
// page and anything else are revalidated on every load (ETag).
func serveAsset(a dashboard.Asset) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("ETag", a.ETag)
		if a.Version != "" && c.Query("v") == a.Version {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		if etagMatches(c.GetHeader("If-None-Match"), a.ETag) {
			c.Status(http.StatusNotModified)
			return
		}
		c.Data(http.StatusOK, a.ContentType, a.Body)
	}
}

// etagMatches reports whether an If-None-Match header names etag (RFC 9110
// 13.1.2: a list of entity tags, weak comparison, or "*").
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// dashboardRoutes serves the dashboard's page and its session endpoints.
func (s *Server) dashboardRoutes(e *gin.Engine) {
	e.GET("/admin", func(c *gin.Context) { c.Redirect(http.StatusMovedPermanently, "/admin/") })
	e.GET("/admin/", serveAsset(s.assets.Page))
	for name, a := range s.assets.Files {
		e.GET("/admin/"+name, serveAsset(a))
	}
	sess := e.Group("/admin/session", s.limitBody, s.requireReady)
	sess.GET("", s.sessionInfo)
	sess.POST("", s.signIn)
	sess.DELETE("", s.signOut)
}
