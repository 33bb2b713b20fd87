// Package api is Visage's HTTP interface: the gin routes of API v1, the
// middleware (authentication, roles, rate limits, body limits, metrics,
// logs), the OpenAPI document and the mapping of errors to problems.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/visage/visage/api/dashboard"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/admission"
	"github.com/visage/visage/store"
)

// KeyStore is what authentication reads.
type KeyStore interface {
	GetKey(ctx context.Context, id string) (store.APIKey, error)
	TouchKey(ctx context.Context, id string, at time.Time) error
	ListKeys(ctx context.Context) ([]store.APIKey, error)
	CreateKey(ctx context.Context, k store.APIKey) (store.APIKey, error)
	RevokeKey(ctx context.Context, id string) error
	CreateSession(ctx context.Context, sess store.Session) (store.Session, error)
	GetSession(ctx context.Context, idHash []byte) (store.SessionKey, error)
	DeleteSession(ctx context.Context, idHash []byte) error
}

// Pinger is a metadata store that can tell whether its database answers
// (the Postgres store; SQLite, a file, has no outages to report). When the
// KeyStore given to New is one, /readyz asks it.
type Pinger interface {
	Ping(ctx context.Context) error
}

// readyPingTimeout bounds /readyz's question to the store: a probe that
// hangs is no answer either.
const readyPingTimeout = 3 * time.Second

// Config is the HTTP policy.
type Config struct {
	// MaxBodyBytes caps a request body (all images of it together).
	MaxBodyBytes int64
	// RateLimit is each key's sustained requests per second (0: no
	// limit) and RateBurst its burst.
	RateLimit float64
	RateBurst int
	// TrustedProxies are the proxies whose X-Forwarded-For is believed;
	// empty trusts none.
	TrustedProxies []string
	// MaxImages caps the images of one enrollment.
	MaxImages int
	// BodyBudget bounds the memory request bodies may hold at once (see
	// budget.go for what a body costs; 0: unbounded); a request that
	// finds it spent waits up to AdmissionWait, then is answered 503
	// unavailable/busy with Retry-After.
	BodyBudget    int64
	AdmissionWait time.Duration
	// BodyTimeout and MinBodyRate set each request body's read deadline:
	// BodyTimeout plus the declared length at MinBodyRate bytes per
	// second (BodyTimeout alone for a body of unknown length). A client
	// that sends slower is answered 408 and disconnected.
	BodyTimeout time.Duration
	MinBodyRate int64
	// AuthFailureRate and AuthFailureBurst throttle failed
	// authentication (bearer keys and dashboard sign-ins) per client
	// address: AuthFailureBurst failures, then AuthFailureRate per second;
	// beyond, 429 rate_limited with Retry-After. 0: no throttle.
	AuthFailureRate  float64
	AuthFailureBurst int
	// Metrics is who may read /metrics on the API's address.
	Metrics MetricsAccess
}

// MetricsAccess is who may read /metrics on the API's address.
type MetricsAccess string

const (
	// MetricsKey serves /metrics to unscoped admin and read keys (the
	// default): gallery sizes and request rates are the operator's.
	MetricsKey MetricsAccess = "key"
	// MetricsOpen serves /metrics to anyone who can reach the address.
	MetricsOpen MetricsAccess = "open"
	// MetricsOff does not serve /metrics on the API's address (visaged
	// --metrics-addr serves it on an address of its own).
	MetricsOff MetricsAccess = "off"
)

// Valid reports whether a is one of the three accesses.
func (a MetricsAccess) Valid() bool { return a == MetricsKey || a == MetricsOpen || a == MetricsOff }

// DefaultConfig is the policy of a default visaged.
func DefaultConfig() Config {
	return Config{MaxBodyBytes: 64 << 20, RateLimit: 50, RateBurst: 100, MaxImages: 16,
		BodyBudget: 256 << 20, BodyTimeout: 30 * time.Second, MinBodyRate: 64 << 10,
		AuthFailureRate: 1, AuthFailureBurst: 20, Metrics: MetricsKey}
}

// Server is the HTTP API over a gallery service.
type Server struct {
	service atomic.Pointer[gallery.Service]
	keys    KeyStore
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	engine  *gin.Engine
	assets  *dashboard.Assets
	ready   atomic.Bool
	imports atomic.Pointer[importService]
	bodies  *admission.Pool
	// authFailures throttles failed authentication per client address.
	authFailures *authThrottle

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
	touched  map[string]time.Time
}

// New builds the server. Until Ready it serves /healthz, /metrics and
// /openapi.json, and answers /readyz and /v1 with 503, so that it can
// listen while the models and the index load. Once ready, /readyz also
// answers 503 while the metadata database cannot be reached, if keys is a
// Pinger.
func New(keys KeyStore, metrics *Metrics, cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultConfig().MaxBodyBytes
	}
	if cfg.MaxImages <= 0 {
		cfg.MaxImages = DefaultConfig().MaxImages
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultConfig().BodyTimeout
	}
	if cfg.MinBodyRate <= 0 {
		cfg.MinBodyRate = DefaultConfig().MinBodyRate
	}
	s := &Server{keys: keys, cfg: cfg, log: log, metrics: metrics,
		limiters: map[string]*rate.Limiter{}, touched: map[string]time.Time{},
		bodies:       admission.NewPool("body budget", cfg.BodyBudget, cfg.AdmissionWait),
		authFailures: newAuthThrottle(cfg.AuthFailureRate, cfg.AuthFailureBurst)}
	assets, err := dashboard.Load()
	if err != nil {
		return nil, fmt.Errorf("load dashboard: %w", err)
	}
	s.assets = assets
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	if err := e.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("set trusted proxies: %w", err)
	}
	e.ContextWithFallback = true
	e.HandleMethodNotAllowed = true
	e.MaxMultipartMemory = 8 << 20
	e.Use(s.recoverer, s.observe)
	e.NoRoute(func(c *gin.Context) { fail(c, newProblem(TypeNotFound, "no such route")) })
	e.NoMethod(func(c *gin.Context) {
		p := newProblem(TypeInvalidRequest, "method not allowed")
		p.Status = http.StatusMethodNotAllowed
		fail(c, p)
	})
	s.routes(e)
	s.engine = e
	return s, nil
}

// Handler is the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.engine }

// Ready hands the server its loaded gallery service and starts serving
// /v1.
func (s *Server) Ready(svc *gallery.Service) {
	s.service.Store(svc)
	s.ready.Store(true)
}

// Unready stops serving /v1 (during shutdown).
func (s *Server) Unready() { s.ready.Store(false) }

// svc is the gallery service; only called behind requireReady.
func (s *Server) svc() *gallery.Service { return s.service.Load() }

func (s *Server) routes(e *gin.Engine) {
	e.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", OpenAPIDocument()) })
	if s.metrics != nil {
		switch s.cfg.Metrics {
		case MetricsOpen:
			e.GET("/metrics", gin.WrapH(s.metrics.Handler()))
		case MetricsOff:
		default:
			e.GET("/metrics", s.authenticate, operatorsOnly, unscoped, gin.WrapH(s.metrics.Handler()))
		}
	}

	s.dashboardRoutes(e)

	// Everything that can refuse a request runs before its body is read,
	// and the body is charged to the budget only once it is admitted.
	v1 := e.Group("/v1", s.limitBody, s.authenticate, s.rateLimit, s.requireReady, s.budgetBody)
	v1.POST("/detect", s.allow(permDetect), s.detect)
	v1.POST("/verify", s.allow(permIdentify), s.verify)

	v1.GET("/collections", s.allow(permRead), s.listCollections)
	v1.POST("/collections", s.allow(permAdmin), s.createCollection)
	c := v1.Group("/collections/:name", s.scoped)
	c.GET("", s.allow(permRead), s.getCollection)
	c.PATCH("", s.allow(permAdmin), s.updateCollection)
	c.DELETE("", s.allow(permAdmin), s.deleteCollection)
	c.GET("/stats", s.allow(permRead), s.collectionStats)
	c.POST("/identify", s.allow(permIdentify), s.identify)

	c.POST("/subjects", s.allow(permEnroll), s.createSubject)
	c.GET("/subjects", s.allow(permRead), s.listSubjects)
	c.GET("/subjects/:id", s.allow(permRead), s.getSubject)
	c.PATCH("/subjects/:id", s.allow(permEnroll), s.updateSubject)
	c.DELETE("/subjects/:id", s.allow(permEnroll), s.deleteSubject)
	c.POST("/subjects/:id/faces", s.allow(permEnroll), s.enroll)
	c.GET("/subjects/:id/faces", s.allow(permRead), s.listFaces)
	c.GET("/faces/:face", s.allow(permRead), s.getFace)
	c.DELETE("/faces/:face", s.allow(permEnroll), s.deleteFace)
	c.POST("/imports", s.allow(permEnroll), s.startImport)
	c.GET("/imports", s.allow(permRead), s.listImports)
	c.GET("/imports/:job", s.allow(permRead), s.getImport)
	c.DELETE("/imports/:job", s.allow(permEnroll), s.cancelImport)
	c.GET("/imports/:job/failures", s.allow(permRead), s.importFailures)

	a := v1.Group("/admin", s.allow(permAdmin))
	a.GET("/events", s.listEvents)
	a.GET("/collections/:name/top-subjects", s.scoped, s.topSubjects)
	a.GET("/collections/:name/enrollments", s.scoped, s.enrollmentsPerDay)
	a.GET("/collections/:name/identifications", s.scoped, s.identifications)
	a.GET("/keys", keyAdmin, s.listKeys)
	a.POST("/keys", keyAdmin, s.createKey)
	a.DELETE("/keys/:id", keyAdmin, s.revokeKey)
}

// readyz answers whether /v1 can serve: not before Ready or after Unready,
// nor while the metadata database is unreachable (every /v1 request reads
// it, to authenticate), so that a load balancer sends the traffic to
// replicas that can serve it. A replica whose vector store is down still
// serves reads and deletions, and stays ready.
func (s *Server) readyz(c *gin.Context) {
	if !s.ready.Load() {
		fail(c, newProblem(TypeNotReady, "loading models and index"))
		return
	}
	if p, ok := s.keys.(Pinger); ok {
		ctx, cancel := context.WithTimeout(c.Request.Context(), readyPingTimeout)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			prob := problemFor(err)
			if prob.Type == TypeUnavailable {
				c.Header("Retry-After", unavailableRetryAfter)
			} else {
				// Not an outage (a revoked grant, say): only the log says
				// what.
				s.log.ErrorContext(c.Request.Context(), "readiness: the metadata store does not answer", "err", err)
				prob = newProblem(TypeNotReady, "the metadata database does not answer")
			}
			fail(c, prob)
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// recoverer turns a panic into a 500 problem instead of a dropped
// connection.
func (s *Server) recoverer(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.ErrorContext(c.Request.Context(), "panic in handler", "route", c.FullPath(), "panic", fmt.Sprint(r))
			fail(c, newProblem(TypeInternal, ""))
		}
	}()
	c.Next()
}

// observe logs each request and records its latency by route.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	el := time.Since(start)
	status := c.Writer.Status()
	if s.metrics != nil {
		s.metrics.observeRequest(c.Request.Method, route, status, el)
	}
	attrs := []any{"method", c.Request.Method, "route", route, "status", status, "ms", float64(el.Microseconds()) / 1000, "client", c.ClientIP()}
	if k, ok := c.Get(ctxKey); ok {
		attrs = append(attrs, "key", k.(store.APIKey).ID)
	}
	lvl := slog.LevelInfo
	if route == "/healthz" || route == "/readyz" || route == "/metrics" {
		lvl = slog.LevelDebug
	}
	s.log.Log(c.Request.Context(), lvl, "request", attrs...)
}

// limitBody caps the body's size and sets its read deadline.
func (s *Server) limitBody(c *gin.Context) {
	limit := s.bodyLimit(c.FullPath())
	if c.Request.ContentLength > limit {
		refuse(c, problemFor(errBodyTooLarge))
		return
	}
	if c.Request.ContentLength != 0 {
		deadline := s.cfg.BodyTimeout
		if n := c.Request.ContentLength; n > 0 {
			deadline += time.Duration(n / s.cfg.MinBodyRate * int64(time.Second))
		}
		rc := http.NewResponseController(c.Writer)
		// Not every ResponseWriter has a connection (test recorders).
		if rc.SetReadDeadline(time.Now().Add(deadline)) == nil {
			c.Request.Body = &deadlineBody{ReadCloser: c.Request.Body, rc: rc}
		}
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	c.Next()
}

// deadlineBody lifts the body's read deadline once the body has been read
// (or failed): net/http then reads the connection in the background to
// notice a client that goes away, and that read timing out while the
// handler still works would cancel the request.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

// refuse answers a request before its body is read, and closes the
// connection instead of reading the body: net/http would otherwise drain
// up to 256 KiB of it first, at whatever pace the client sends, before the
// answer leaves.
func refuse(c *gin.Context, p Problem) {
	if c.Request.ContentLength != 0 {
		c.Header("Connection", "close")
		_ = http.NewResponseController(c.Writer).SetReadDeadline(time.Now())
	}
	fail(c, p)
}

func (s *Server) requireReady(c *gin.Context) {
	if !s.ready.Load() {
		refuse(c, newProblem(TypeNotReady, "loading models and index"))
		return
	}
	c.Next()
}

const ctxKey = "visage.key"

// authenticate checks the bearer token, or else the dashboard's session
// cookie (with its CSRF token for changes), and remembers the key.
func (s *Server) authenticate(c *gin.Context) {
	if s.throttled(c) {
		return
	}
	h := c.GetHeader("Authorization")
	if _, err := c.Cookie(sessionCookie); h == "" && err == nil {
		sk, ok := s.cookieSession(c)
		if !ok || !checkCSRF(c, sk) {
			return
		}
		c.Set(ctxKey, sk.Key)
		s.touch(c.Request.Context(), sk.Key.ID)
		c.Next()
		return
	}
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		s.authFailures.failed(c.ClientIP())
		c.Header("WWW-Authenticate", `Bearer realm="visage"`)
		refuse(c, newProblem(TypeUnauthorized, "send Authorization: Bearer <key>"))
		return
	}
	k, err := s.keys.GetKey(c.Request.Context(), KeyID(token))
	if err != nil || k.RevokedAt != nil || !tokenMatches(token, k.Hash) {
		if err != nil && !isNotFound(err) {
			s.failErr(c, err)
			return
		}
		s.authFailures.failed(c.ClientIP())
		c.Header("WWW-Authenticate", `Bearer realm="visage", error="invalid_token"`)
		refuse(c, newProblem(TypeUnauthorized, "unknown or revoked key"))
		return
	}
	c.Set(ctxKey, k)
	s.touch(c.Request.Context(), k.ID)
	c.Next()
}

// touch records a key's use at most once a minute.
func (s *Server) touch(ctx context.Context, id string) {
	now := time.Now()
	s.mu.Lock()
	last := s.touched[id]
	stale := now.Sub(last) > time.Minute
	if stale {
		s.touched[id] = now
	}
	s.mu.Unlock()
	if stale {
		if err := s.keys.TouchKey(context.WithoutCancel(ctx), id, now); err != nil {
			s.log.WarnContext(ctx, "record key use", "key", id, "err", err)
		}
	}
}

func (s *Server) rateLimit(c *gin.Context) {
	if s.cfg.RateLimit <= 0 {
		c.Next()
		return
	}
	id := key(c).ID
	s.mu.Lock()
	l, ok := s.limiters[id]
	if !ok {
		l = rate.NewLimiter(rate.Limit(s.cfg.RateLimit), max(s.cfg.RateBurst, 1))
		s.limiters[id] = l
	}
	s.mu.Unlock()
	if !l.Allow() {
		c.Header("Retry-After", "1")
		refuse(c, newProblem(TypeRateLimited, fmt.Sprintf("at most %g requests per second per key", s.cfg.RateLimit)))
		return
	}
	c.Next()
}

// key is the authenticated key of a request.
func key(c *gin.Context) store.APIKey {
	k, _ := c.Get(ctxKey)
	return k.(store.APIKey)
}

// Permissions that routes require.
type permission int

const (
	permRead permission = iota
	permDetect
	permIdentify
	permEnroll
	permAdmin
)

// Allowed reports whether a role carries a permission: admin everything;
// enroll and identify their own use case plus detect and reads; read only
// reads.
func allowed(r store.Role, p permission) bool {
	switch r {
	case store.RoleAdmin:
		return true
	case store.RoleEnroll:
		return p == permRead || p == permDetect || p == permEnroll
	case store.RoleIdentify:
		return p == permRead || p == permDetect || p == permIdentify
	case store.RoleRead:
		return p == permRead
	}
	return false
}

func (s *Server) allow(p permission) gin.HandlerFunc {
	return func(c *gin.Context) {
		if k := key(c); !allowed(k.Role, p) {
			refuse(c, newProblem(TypeForbidden, fmt.Sprintf("role %s may not call this endpoint", k.Role)))
			return
		}
		c.Next()
	}
}

// operatorsOnly lets admin and read keys through: the keys of people who
// run the service, not of the applications that enroll and identify.
func operatorsOnly(c *gin.Context) {
	if r := key(c).Role; r != store.RoleAdmin && r != store.RoleRead {
		refuse(c, newProblem(TypeForbidden, fmt.Sprintf("role %s may not read the metrics", r)))
		return
	}
	c.Next()
}

// unscoped refuses a collection-scoped key: what it guards spans every
// collection.
func unscoped(c *gin.Context) {
	if key(c).Collection != "" {
		refuse(c, newProblem(TypeForbidden, "the key is scoped to a collection"))
		return
	}
	c.Next()
}

// scoped refuses a collection-scoped key outside its collection.
func (s *Server) scoped(c *gin.Context) {
	if !inScope(key(c), c.Param("name")) {
		refuse(c, newProblem(TypeForbidden, "the key is scoped to another collection"))
		return
	}
	c.Next()
}

func inScope(k store.APIKey, collection string) bool {
	return k.Collection == "" || k.Collection == collection
}
