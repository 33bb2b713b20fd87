package api

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// authThrottle slows down guessing keys and sign-ins: each client address
// may fail authentication burst times, then once per 1/perSecond seconds;
// while it has no failure left, its requests are refused 429 before any
// key is looked up. Successes cost nothing.
type authThrottle struct {
	perSecond rate.Limit
	burst     int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

// maxThrottledClients bounds the addresses remembered; beyond it those
// that have recovered all their allowance are forgotten first.
const maxThrottledClients = 10000

func newAuthThrottle(perSecond float64, burst int) *authThrottle {
	if perSecond <= 0 {
		return nil
	}
	return &authThrottle{perSecond: rate.Limit(perSecond), burst: max(burst, 1), clients: map[string]*rate.Limiter{}}
}

// wait returns how long the client must wait before it may try again
// (0: it may now).
func (a *authThrottle) wait(client string) time.Duration {
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.clients[client]
	if !ok {
		return 0
	}
	now := time.Now()
	if tokens := l.TokensAt(now); tokens < 1 {
		return time.Duration((1 - tokens) / float64(a.perSecond) * float64(time.Second))
	}
	return 0
}

// failed records a failed authentication of the client.
func (a *authThrottle) failed(client string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	l, ok := a.clients[client]
	if !ok {
		if len(a.clients) >= maxThrottledClients {
			a.forgetRecovered()
		}
		l = rate.NewLimiter(a.perSecond, a.burst)
		a.clients[client] = l
	}
	l.Allow()
}

// forgetRecovered drops the clients whose allowance is full again; if
// none has recovered, the table is cleared rather than grown without end.
func (a *authThrottle) forgetRecovered() {
	now := time.Now()
	for k, l := range a.clients {
		if l.TokensAt(now) >= float64(a.burst) {
			delete(a.clients, k)
		}
	}
	if len(a.clients) >= maxThrottledClients {
		clear(a.clients)
	}
}

// throttled refuses a client that has used up its failed authentications,
// with Retry-After; it reports whether it did.
func (s *Server) throttled(c *gin.Context) bool {
	d := s.authFailures.wait(c.ClientIP())
	if d <= 0 {
		return false
	}
	c.Header("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
	refuse(c, newProblem(TypeRateLimited, "too many failed authentications from this address; retry later"))
	return true
}
