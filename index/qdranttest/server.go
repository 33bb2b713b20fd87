// Package qdranttest is an in-process Qdrant server for tests: the gRPC
// API of Qdrant (github.com/qdrant/go-client's own service definitions)
// over an in-memory store, on 127.0.0.1, with fault injection for crash
// and outage tests.
//
// It implements what Visage's adapter uses, following Qdrant's documented
// behaviour:
//
//   - health check; collections: create, get, list, exists, delete; payload
//     field indexes;
//   - upsert (dense vectors of the collection's size, numeric or UUID ids),
//     delete by ids or by filter, get, scroll (ordered by point id, with
//     offset and next_page_offset), count, facet (on indexed fields only),
//     and nearest-neighbour search through Query and Search, with a score
//     threshold (exclusive: an upper bound for Euclid), limit (at least
//     1), offset, the hnsw_ef and exact search parameters, and payload and
//     vector selectors;
//   - filters with must, should, must_not and min_should over field
//     conditions (keyword, integer and boolean matches, "any" matches,
//     numeric ranges; a list value matches when an element does), has_id
//     and nested filters;
//   - writes are applied in order by one update worker, like Qdrant's
//     write-ahead log: with wait=true a request returns once it is
//     applied, without it the request is acknowledged at once and applied
//     Options.ApplyDelay later, so that code that forgets to wait reads
//     stale data;
//   - the api-key metadata (or an "authorization: Bearer" one) when
//     Options.APIKey is set; the health check, as in Qdrant, needs none.
//
// Search follows Qdrant's query planner: the points a search's filter
// passes are scanned exactly when they are fewer than the collection's
// full-scan threshold (full_scan_threshold KB of vectors: 20,000
// 128-dimensional ones by default), or when the request asks for exact;
// more are searched through an HNSW graph of the collection (see graph),
// with ef = max(hnsw_ef, or ef_construct when not given, limit + offset),
// which may miss true neighbours and, filtered, return fewer than limit
// points, as Qdrant's HNSW search may. A collection is one segment, its
// graph rebuilt on the first such search after a change (Qdrant indexes
// in the background, and scans segments not yet indexed). Equal scores
// come in descending point-id order, an order Qdrant does not promise, so
// callers must not rely on any. Anything else (named or sparse vectors,
// uint8, float16 or multivector storage, prefetch, recommendations,
// payload updates, geo or text conditions, ...) answers Unimplemented
// rather than being approximated.
//
// Like Qdrant's gRPC server, it takes requests of any size (grpc-go's
// default is 4 MiB); a client still refuses replies over its own receive
// limit.
package qdranttest

import (
	"cmp"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"math"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DefaultApplyDelay is how long a write sent without wait stays
// invisible, unless Options say otherwise.
const DefaultApplyDelay = 50 * time.Millisecond

// Version is the Qdrant version the health check reports.
const Version = "1.17.1"

// Options configure a Server.
type Options struct {
	// APIKey, when set, is required of every request but the health
	// check, as the api-key metadata or an "authorization: Bearer" one.
	APIKey string
	// ApplyDelay is how long a write sent without wait takes to become
	// visible; 0 means DefaultApplyDelay.
	ApplyDelay time.Duration
	// TLS, when set, makes the server speak TLS.
	TLS *tls.Config
	// HNSW is the HNSW configuration of collections created without one
	// (Qdrant's storage.hnsw_index settings); zero fields take Qdrant's
	// defaults (DefaultM, DefaultEfConstruct, DefaultFullScanThresholdKB).
	HNSW HNSWConfig
}

// HNSWConfig is a server's default HNSW configuration.
type HNSWConfig struct {
	// M is the links per node (2M in the graph's bottom layer, the one
	// searched here).
	M uint64
	// EfConstruct is the width of the searches that build the graph, and
	// the ef of searches that give no hnsw_ef.
	EfConstruct uint64
	// FullScanThresholdKB is the size, in kilobytes of vectors, below which
	// the points a search filters are scanned rather than searched through
	// the graph.
	FullScanThresholdKB uint64
}

// Fault is a failure to inject: requests answer Code instead of being
// served. With Times > 0 the next Times requests fail; with For > 0 every
// request fails for that long; with neither, every request fails until
// Heal.
type Fault struct {
	Code  codes.Code
	Times int
	For   time.Duration
	// RetryAfter, in seconds, is sent as the retry-after trailer, as
	// Qdrant's rate limiter does with ResourceExhausted.
	RetryAfter int
}

// Server is an in-process Qdrant. Its data outlives Stop and Restart and
// goes with Close. Safe for concurrent use.
type Server struct {
	opts        Options
	defaultHNSW hnswConfig

	// mu guards the data and the counters.
	mu          sync.Mutex
	collections map[string]*collection
	calls       map[string]int
	unwaited    int
	approximate int
	operations  uint64
	fault       *Fault
	faultLeft   int
	faultUntil  time.Time

	updates    chan *update
	closing    chan struct{}
	workerDone chan struct{}
	closeOnce  sync.Once

	// life guards the gRPC server and the address.
	life    sync.Mutex
	grpc    *grpc.Server
	addr    string
	serving chan struct{}
}

// update is one write, applied by the update worker in arrival order.
type update struct {
	at    time.Time
	apply func()
	done  chan struct{}
}

// New returns a server that is not listening yet: see Serve.
func New(opts Options) *Server {
	if opts.ApplyDelay <= 0 {
		opts.ApplyDelay = DefaultApplyDelay
	}
	s := &Server{
		opts: opts,
		defaultHNSW: hnswConfig{
			m:           cmp.Or(opts.HNSW.M, DefaultM),
			efConstruct: cmp.Or(opts.HNSW.EfConstruct, DefaultEfConstruct),
			fullScanKB:  cmp.Or(opts.HNSW.FullScanThresholdKB, DefaultFullScanThresholdKB),
		},
		collections: map[string]*collection{},
		calls:       map[string]int{},
		updates:     make(chan *update, 4096),
		closing:     make(chan struct{}),
		workerDone:  make(chan struct{}),
	}
	go s.applyUpdates()
	return s
}

// Start returns a server listening on 127.0.0.1 on a free port, closed
// when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("qdranttest: listen: %v", err)
	}
	s.Serve(lis)
	t.Cleanup(s.Close)
	return s
}

// Serve serves Qdrant's gRPC API on lis in the background and returns
// its address.
func (s *Server) Serve(lis net.Listener) string {
	s.life.Lock()
	defer s.life.Unlock()
	s.serveLocked(lis)
	return s.addr
}

func (s *Server) serveLocked(lis net.Listener) {
	opts := []grpc.ServerOption{
		grpc.UnaryInterceptor(s.intercept),
		// The go-client pings every 10 s, even when idle.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		// Qdrant's gRPC server decodes requests of any size.
		grpc.MaxRecvMsgSize(math.MaxInt32),
	}
	if s.opts.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.opts.TLS)))
	}
	g := grpc.NewServer(opts...)
	qdrant.RegisterQdrantServer(g, qdrantService{s: s})
	qdrant.RegisterCollectionsServer(g, collectionsService{s: s})
	qdrant.RegisterPointsServer(g, pointsService{s: s})
	s.grpc, s.addr = g, lis.Addr().String()
	served := make(chan struct{})
	s.serving = served
	go func() {
		defer close(served)
		_ = g.Serve(lis)
	}()
}

// Addr is the host:port the server listens on (or last listened on).
func (s *Server) Addr() string {
	s.life.Lock()
	defer s.life.Unlock()
	return s.addr
}

// Stop stops listening and drops every connection, as a crashed or
// unreachable server would; the data and the writes already acknowledged
// are kept (Qdrant's write-ahead log keeps them). Requests then fail with
// Unavailable. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.life.Lock()
	defer s.life.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.grpc == nil {
		return
	}
	s.grpc.Stop()
	<-s.serving
	s.grpc = nil
}

// Restart listens again on the address it listened on, with the data it
// held. Restarting a running server does nothing.
func (s *Server) Restart() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.grpc != nil {
		return nil
	}
	select {
	case <-s.closing:
		return net.ErrClosed
	default:
	}
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.serveLocked(lis)
	return nil
}

// Close stops the server for good and drops its data, with any write
// still waiting to be applied.
func (s *Server) Close() {
	s.Stop()
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.workerDone
	})
}

// Inject makes requests fail as f says, replacing any fault in force.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault, s.faultLeft, s.faultUntil = &f, f.Times, time.Time{}
	if f.For > 0 {
		s.faultUntil = time.Now().Add(f.For)
	}
}

// Heal ends any injected fault.
func (s *Server) Heal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = nil
}

// Calls is how many requests reached the server for method, named
// "Service/Method" as in "Points/Upsert" or "Qdrant/HealthCheck",
// including those that failed.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// UnwaitedWrites is how many write requests (upserts, deletes, field
// indexes) came without wait=true.
func (s *Server) UnwaitedWrites() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unwaited
}

// ApproximateSearches is how many searches went through a collection's
// HNSW graph rather than scanning the points their filter passes.
func (s *Server) ApproximateSearches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.approximate
}

// intercept counts the request, then applies injected faults and the API
// key check.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := strings.TrimPrefix(path.Dir(info.FullMethod), "/qdrant.") + "/" + path.Base(info.FullMethod)
	if f := s.arrive(method); f != nil {
		if f.RetryAfter > 0 {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("retry-after", strconv.Itoa(f.RetryAfter)))
		}
		return nil, status.Errorf(f.Code, "qdranttest: injected %v", f.Code)
	}
	if s.opts.APIKey != "" && method != "Qdrant/HealthCheck" && !s.authorized(ctx) {
		return nil, status.Error(codes.Unauthenticated, "Invalid api-key")
	}
	return handler(ctx, req)
}

// arrive counts a request and returns the fault it meets, if any.
func (s *Server) arrive(method string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method]++
	f := s.fault
	switch {
	case f == nil:
		return nil
	case f.Times > 0:
		s.faultLeft--
		if s.faultLeft <= 0 {
			s.fault = nil
		}
	case f.For > 0 && !time.Now().Before(s.faultUntil):
		s.fault = nil
		return nil
	}
	return f
}

func (s *Server) authorized(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, k := range md.Get("api-key") {
		if subtle.ConstantTimeCompare([]byte(k), []byte(s.opts.APIKey)) == 1 {
			return true
		}
	}
	for _, a := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(a, "Bearer "); ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.APIKey)) == 1 {
			return true
		}
	}
	return false
}

// applyUpdates is the update worker: writes in arrival order, each once
// its time has come.
func (s *Server) applyUpdates() {
	defer close(s.workerDone)
	for {
		select {
		case <-s.closing:
			return
		case u := <-s.updates:
			if d := time.Until(u.at); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-s.closing:
					t.Stop()
					return
				}
			}
			s.mu.Lock()
			u.apply()
			s.mu.Unlock()
			close(u.done)
		}
	}
}

// write queues apply (which runs under mu) and, with wait, returns once
// it is applied; without, it returns at once and apply runs ApplyDelay
// later, as Qdrant acknowledges a write before applying it.
func (s *Server) write(ctx context.Context, wait *bool, apply func()) (*qdrant.UpdateResult, error) {
	waited := wait != nil && *wait
	s.mu.Lock()
	s.operations++
	op := s.operations
	if !waited {
		s.unwaited++
	}
	s.mu.Unlock()
	u := &update{at: time.Now(), apply: apply, done: make(chan struct{})}
	if !waited {
		u.at = u.at.Add(s.opts.ApplyDelay)
	}
	select {
	case s.updates <- u:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-s.closing:
		return nil, status.Error(codes.Unavailable, "qdranttest: server closed")
	}
	if !waited {
		return &qdrant.UpdateResult{OperationId: &op, Status: qdrant.UpdateStatus_Acknowledged}, nil
	}
	select {
	case <-u.done:
		return &qdrant.UpdateResult{OperationId: &op, Status: qdrant.UpdateStatus_Completed}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-s.closing:
		return nil, status.Error(codes.Unavailable, "qdranttest: server closed")
	}
}

// collection returns the named collection (the caller holds mu).
func (s *Server) collection(name string) (*collection, error) {
	c := s.collections[name]
	if c == nil {
		return nil, notFound(name)
	}
	return c, nil
}

type qdrantService struct {
	qdrant.UnimplementedQdrantServer
	s *Server
}

// HealthCheck answers as Qdrant does, with this package's version.
func (qdrantService) HealthCheck(context.Context, *qdrant.HealthCheckRequest) (*qdrant.HealthCheckReply, error) {
	return &qdrant.HealthCheckReply{Title: "qdrant - vector search engine (qdranttest)", Version: Version}, nil
}
