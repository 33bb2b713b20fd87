package index

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	// DefaultQdrantCollection is the Qdrant collection Visage keeps its
	// vectors in unless told otherwise.
	DefaultQdrantCollection = "visage_faces"
	// DefaultQdrantPort is Qdrant's gRPC port (6333 is its REST API).
	DefaultQdrantPort = 6334

	// Payload fields of every point.
	qdrantSpaceField = "space"
	qdrantKeyField   = "key"
	qdrantModelField = "model"

	// qdrantUpsertBatch points per upsert request (128-D: about 140 KB).
	qdrantUpsertBatch = 256
	// qdrantDeleteBatch ids per delete request.
	qdrantDeleteBatch = 1024
	// qdrantScrollPage points per page when listing keys.
	qdrantScrollPage = 4096
	// qdrantMaxSpaces bounds Spaces (a facet has no pagination).
	qdrantMaxSpaces = 100_000
	// qdrantReplySlack is room, in a reply's receive limit, for what
	// comes besides the results (the time taken, hardware usage).
	qdrantReplySlack = 64 << 10
	// qdrantPointSlack is room per scored point for fields Visage does
	// not ask for but Qdrant may send (a shard key, should the collection
	// be sharded by key).
	qdrantPointSlack = 32
	// qdrantMaxTieLimit bounds how far Search reaches past k to settle
	// ties at the k-th place.
	qdrantMaxTieLimit = 4096

	// qdrantPoolSize is the connections the go-client spreads requests
	// over (its default).
	qdrantPoolSize = 3
	// qdrantFullScanKB is Qdrant's default full_scan_threshold, for a
	// collection that describes none.
	qdrantFullScanKB = 10_000
	// qdrantMaxSmallSpaces bounds the spaces an index remembers as
	// smaller than a search's limit.
	qdrantMaxSmallSpaces = 4096

	// qdrantNamespace is the UUID namespace of point ids (a fixed random
	// UUID: changing it orphans every stored point).
	qdrantNamespace = "3d0f5b8e-6a51-4c1f-9e27-b54a1c7d2e90"
)

// DefaultQdrantRecall is a Qdrant index's recall target unless told
// otherwise: the recall@10 that Visage's embedded index was tuned to
// (docs/benchmarks.md, "Vector index").
const DefaultQdrantRecall = 0.99

// ErrUnavailable means the vector store could not be reached, or kept
// refusing work (Unavailable, or ResourceExhausted with a retry-after),
// after every retry. The error that carries it also carries the last
// gRPC status (status.Code gives it) and, when the caller's context ended
// the retries, the context's error.
var ErrUnavailable = errors.New("vector store unavailable")

// QdrantRetry is how a Qdrant index retries requests that failed with
// Unavailable, or with ResourceExhausted and a retry-after; other
// failures are returned at once. Every Visage request is idempotent
// (point ids are derived from the keys), so retrying is safe.
//
// A ResourceExhausted without retry-after is not retried: Qdrant (v1.17,
// its StorageError to tonic Status conversion) attaches retry-after, in
// whole seconds rounded up, to the ResourceExhausted of its rate limiter
// exactly when waiting can help, and sends none when it cannot (a request
// costing more than the limiter's whole capacity); grpc-go raises
// ResourceExhausted itself, without one, for a reply over the receive
// limit. Retrying those only repeats the failure.
type QdrantRetry struct {
	// Attempts is the total number of tries (default 6).
	Attempts int
	// Initial is the first wait (default 100 ms); each wait doubles, with
	// jitter, up to Max (default 3 s). A server's retry-after is honoured
	// up to Max.
	Initial, Max time.Duration
}

// QdrantConfig configures a Qdrant index.
type QdrantConfig struct {
	// Addr is Qdrant's gRPC address, host:port (port 6334 by default).
	Addr string
	// APIKey, when set, is sent with every request; use TLS with it.
	APIKey string
	// UseTLS connects with TLS, verified against the system's roots or
	// CAFile, for ServerName (default: Addr's host).
	UseTLS     bool
	CAFile     string
	ServerName string
	// Collection is the Qdrant collection (DefaultQdrantCollection by
	// default); it is created if missing.
	Collection string
	// Dim is the vectors' dimension.
	Dim int
	// Model identifies the model that made the vectors: searches see only
	// this model's vectors, so two models never mix in one gallery.
	Model string
	// Recall is the recall target of searches: the share of the true k
	// nearest a search should return. It matters in spaces Qdrant searches
	// through its HNSW graph, those of more points than the collection's
	// full_scan_threshold (10,000 KB by default: 20,000 128-dimensional
	// vectors); smaller ones Qdrant scans exactly whatever it is asked.
	// Each search's hnsw_ef follows from it (see Search); 1 makes every
	// search exact. 0 means DefaultQdrantRecall.
	Recall float64
	// Retry is the retry policy; zero fields take their defaults.
	Retry QdrantRetry
	// Timeout bounds each attempt of each request (default 30 s).
	Timeout time.Duration
}

// Qdrant is a vector index stored in a Qdrant server (or cluster), for
// stateless Visage replicas. Safe for concurrent use.
//
// All of Visage's spaces share ONE Qdrant collection; each point carries
// its space, key and model in its payload, and every request filters on
// them (keyword payload indexes on space, marked as the tenant field, and
// on model). One Qdrant collection per space would be the other design,
// but Visage may hold thousands of galleries, and each Qdrant collection
// has its own segments, HNSW graphs, WAL and optimiser: thousands of them
// cost memory and file handles and slow start-up, and creating or
// dropping one is a cluster-wide consensus operation. Qdrant's
// documentation recommends payload-based partitioning (multitenancy) for
// many tenants: a tenant filter on an indexed field keeps searches within
// one space, small spaces are searched exactly and large ones through
// per-value HNSW links. The collection is created with Qdrant's defaults
// (size Dim, Euclid); an operator may tune it (say, m=0 and payload_m=16
// as the multitenancy guide suggests): Visage checks only that its
// vectors are single float32 ones of that size and distance, and reads
// its full-scan threshold (see Search for how searches use it and the
// recall target).
//
// A point's id is a UUIDv5 (SHA-1, a fixed namespace) of its space and
// key, so a retried or repeated upsert overwrites the point instead of
// duplicating it, and a delete needs no lookup. The key is stored in the
// payload as an integer (int64, two's complement for keys of 2^63 and
// more). A point of another model under the same space and key is the
// same point: an upsert replaces it. Points of another model are
// otherwise invisible (Search, Keys, Len, Spaces) but still go with
// Delete and Drop.
//
// With Euclid distance Qdrant's score is the distance itself (not
// squared), smaller first; Search returns it as Match.Distance. Writes
// wait until Qdrant has applied them (wait=true), so a search that
// follows an upsert sees it.
type Qdrant struct {
	client *qdrant.Client
	// conns are the client's pooled connections, all of which an outage
	// leaves waiting out gRPC's reconnection backoff.
	conns      []*grpc.ClientConn
	collection string
	dim        int
	model      string
	retry      QdrantRetry
	timeout    time.Duration
	namespace  uuid.UUID
	// efPer10 is the hnsw_ef per ten results that meets the recall
	// target; 0 means every search is exact.
	efPer10 int
	// fullScan is the collection's full-scan threshold in points: Qdrant
	// scans exactly a space of fewer points whatever it is asked.
	fullScan int
	// small are spaces last seen holding fewer points than a search's
	// limit.
	small smallSpaces
	// pointBytes bounds a scored point in a search's reply, facetBytes
	// the reply of Spaces' facet: the receive limits of those requests
	// are sized to the reply asked for, since gRPC's default of 4 MiB
	// refuses a search for some 70,000 neighbours or a facet over some
	// 33,000 spaces.
	pointBytes, facetBytes int

	// life guards the client: calls hold it shared, Close exclusively,
	// so that a call never reaches a closed client (whose connection
	// pool is empty) and Close waits for the calls under way.
	life   sync.RWMutex
	closed bool
}

var _ Index = (*Qdrant)(nil)

// OpenQdrant connects to Qdrant, checks that it answers, and creates the
// collection and its payload indexes if they are missing. An existing
// collection must hold one unnamed Dim-dimensional float32 Euclid vector
// a point.
func OpenQdrant(ctx context.Context, cfg QdrantConfig) (*Qdrant, error) {
	q, ccfg, err := newQdrant(cfg)
	if err != nil {
		return nil, fmt.Errorf("open qdrant index: %w", err)
	}
	client, err := qdrant.NewClient(ccfg)
	if err != nil {
		return nil, fmt.Errorf("open qdrant index at %s: %w", cfg.Addr, err)
	}
	q.client = client
	// The go-client hands its pooled connections out round-robin and has
	// no accessor for all of them: asked PoolSize times before any request
	// is made, it gives each once.
	for range ccfg.PoolSize {
		if c := client.GetConnection(); !slices.Contains(q.conns, c) {
			q.conns = append(q.conns, c)
		}
	}
	if err := q.do(ctx, "health check", func(ctx context.Context) error {
		_, err := client.HealthCheck(ctx)
		return err
	}); err != nil {
		client.Close()
		return nil, fmt.Errorf("open qdrant index at %s: %w", cfg.Addr, err)
	}
	if err := q.ensureCollection(ctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("open qdrant index at %s: %w", cfg.Addr, err)
	}
	return q, nil
}

// newQdrant validates cfg, fills in its defaults and builds the client's
// configuration.
func newQdrant(cfg QdrantConfig) (*Qdrant, *qdrant.Config, error) {
	if cfg.Dim <= 0 {
		return nil, nil, fmt.Errorf("invalid dimension %d", cfg.Dim)
	}
	if cfg.Model == "" {
		return nil, nil, errors.New("no model identity")
	}
	if cfg.Addr == "" {
		return nil, nil, errors.New("no address")
	}
	recall := cmp.Or(cfg.Recall, DefaultQdrantRecall)
	if !(recall > 0 && recall <= 1) {
		return nil, nil, fmt.Errorf("invalid recall target %v (want more than 0, at most 1)", cfg.Recall)
	}
	host, portText, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		host, portText = cfg.Addr, strconv.Itoa(DefaultQdrantPort)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port <= 0 || port > 65535 || host == "" {
		return nil, nil, fmt.Errorf("invalid address %q", cfg.Addr)
	}
	r := cfg.Retry
	if r.Attempts <= 0 {
		r.Attempts = 6
	}
	if r.Initial <= 0 {
		r.Initial = 100 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 3 * time.Second
	}
	r.Max = max(r.Max, r.Initial)
	q := &Qdrant{
		collection: cmp.Or(cfg.Collection, DefaultQdrantCollection),
		dim:        cfg.Dim,
		model:      cfg.Model,
		retry:      r,
		timeout:    cmp.Or(cfg.Timeout, 30*time.Second),
		namespace:  uuid.MustParse(qdrantNamespace),
		efPer10:    efPer10(recall),
		pointBytes: maxScoredPointBytes() + qdrantPointSlack,
		facetBytes: qdrantReplySlack + qdrantMaxSpaces*maxFacetHitBytes(),
	}
	ccfg := &qdrant.Config{
		Host:   host,
		Port:   port,
		APIKey: cfg.APIKey,
		// NewClient's own check waits up to a minute and only logs.
		SkipCompatibilityCheck: true,
		PoolSize:               qdrantPoolSize,
		// Reconnect about as fast as requests are retried.
		GrpcOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: r.Initial, Multiplier: 1.6, Jitter: 0.2, MaxDelay: r.Max},
			MinConnectTimeout: 5 * time.Second,
		})},
	}
	if cfg.UseTLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cmp.Or(cfg.ServerName, host)}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, nil, fmt.Errorf("read CA file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
			}
		}
		ccfg.UseTLS, ccfg.TLSConfig = true, tc
	}
	return q, ccfg, nil
}

// ensureCollection creates the collection and payload indexes that are
// missing and checks the collection's vectors.
func (q *Qdrant) ensureCollection(ctx context.Context) error {
	var exists bool
	err := q.do(ctx, "check collection", func(ctx context.Context) (err error) {
		exists, err = q.client.CollectionExists(ctx, q.collection)
		return err
	})
	if err != nil {
		return err
	}
	if !exists {
		err := q.do(ctx, "create collection", func(ctx context.Context) error {
			return q.client.CreateCollection(ctx, &qdrant.CreateCollection{
				CollectionName: q.collection,
				VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: uint64(q.dim), Distance: qdrant.Distance_Euclid}),
			})
		})
		// Another replica may have created it meanwhile: Qdrant refuses
		// a second creation with AlreadyExists, and the checks below
		// decide. Anything else (InvalidArgument for a name Qdrant
		// refuses, say) is the creation failing.
		if err != nil && !isCode(err, codes.AlreadyExists) {
			return err
		}
	}
	var info *qdrant.CollectionInfo
	if err := q.do(ctx, "describe collection", func(ctx context.Context) (err error) {
		info, err = q.client.GetCollectionInfo(ctx, q.collection)
		return err
	}); err != nil {
		return err
	}
	params := info.GetConfig().GetParams().GetVectorsConfig().GetParams()
	// Qdrant converts vectors to the collection's datatype on the way in:
	// uint8 would truncate a descriptor's components to integers and
	// float16 round them, shifting every distance the thresholds are
	// measured against. A multivector collection scores sets of vectors
	// (late interaction), not Euclidean distance. Datatype Default (or
	// none) is float32.
	float32s := params.GetDatatype() == qdrant.Datatype_Default || params.GetDatatype() == qdrant.Datatype_Float32
	if params == nil || params.GetSize() != uint64(q.dim) || params.GetDistance() != qdrant.Distance_Euclid ||
		!float32s || params.GetMultivectorConfig() != nil {
		return fmt.Errorf("collection %q holds %s vectors, want one unnamed %d-dimensional float32 Euclid vector",
			q.collection, describeVectors(info), q.dim)
	}
	// The vector's own HNSW configuration overrides the collection's.
	fullScanKB := uint64(qdrantFullScanKB)
	for _, h := range []*qdrant.HnswConfigDiff{info.GetConfig().GetHnswConfig(), params.GetHnswConfig()} {
		if h != nil && h.FullScanThreshold != nil {
			fullScanKB = h.GetFullScanThreshold()
		}
	}
	// Kilobytes of float32 vectors (a kilobyte is 1024 bytes in Qdrant's
	// arithmetic: 1 KB holds one 256-dimensional vector).
	q.fullScan = int(min(fullScanKB*1024/uint64(4*q.dim), math.MaxInt32))
	for _, field := range []string{qdrantSpaceField, qdrantModelField} {
		if s, ok := info.GetPayloadSchema()[field]; ok {
			if s.GetDataType() != qdrant.PayloadSchemaType_Keyword {
				return fmt.Errorf("collection %q indexes payload field %q as %v, want keyword", q.collection, field, s.GetDataType())
			}
			continue
		}
		params := &qdrant.KeywordIndexParams{}
		if field == qdrantSpaceField {
			params.IsTenant = qdrant.PtrOf(true)
		}
		if err := q.do(ctx, "create payload index", func(ctx context.Context) error {
			_, err := q.client.CreateFieldIndex(ctx, &qdrant.CreateFieldIndexCollection{
				CollectionName:   q.collection,
				Wait:             qdrant.PtrOf(true),
				FieldName:        field,
				FieldType:        qdrant.FieldType_FieldTypeKeyword.Enum(),
				FieldIndexParams: qdrant.NewPayloadIndexParamsKeyword(params),
			})
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

func describeVectors(info *qdrant.CollectionInfo) string {
	vc := info.GetConfig().GetParams().GetVectorsConfig()
	if p := vc.GetParams(); p != nil {
		kind := "float32"
		if dt := p.GetDatatype(); dt != qdrant.Datatype_Default {
			kind = strings.ToLower(dt.String())
		}
		if p.GetMultivectorConfig() != nil {
			kind += " multi"
		}
		return fmt.Sprintf("%d-dimensional %s %v", p.GetSize(), kind, p.GetDistance())
	}
	if m := vc.GetParamsMap(); m != nil {
		return fmt.Sprintf("%d named", len(m.GetMap()))
	}
	return "no"
}

// Close closes the connections to Qdrant.
func (q *Qdrant) Close() error {
	q.life.Lock()
	defer q.life.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	return q.client.Close()
}

// Collection is the Qdrant collection the index uses.
func (q *Qdrant) Collection() string { return q.collection }

// Dim is the vectors' dimension.
func (q *Qdrant) Dim() int { return q.dim }

// PointID is the Qdrant point id of key in space: a UUIDv5 of both.
func (q *Qdrant) PointID(space string, key uint64) string {
	b := make([]byte, 0, binary.MaxVarintLen64+len(space)+8)
	b = binary.AppendUvarint(b, uint64(len(space)))
	b = append(b, space...)
	b = binary.BigEndian.AppendUint64(b, key)
	return uuid.NewSHA1(q.namespace, b).String()
}

func (q *Qdrant) pointID(space string, key uint64) *qdrant.PointId {
	return qdrant.NewIDUUID(q.PointID(space, key))
}

// ofSpace selects this model's points of space.
func (q *Qdrant) ofSpace(space string) *qdrant.Filter {
	return &qdrant.Filter{Must: []*qdrant.Condition{
		qdrant.NewMatchKeyword(qdrantSpaceField, space),
		qdrant.NewMatchKeyword(qdrantModelField, q.model),
	}}
}

// Upsert adds items to space, replacing the vectors of keys already
// there (the last of repeated keys wins), in requests of 256 points, each
// waited for. A space's name is at most 120 bytes, as for HNSW. A batch
// with a vector of the wrong dimension changes nothing; otherwise, after
// an error, some requests may have been applied.
func (q *Qdrant) Upsert(ctx context.Context, space string, items []Item) error {
	// Bounded as HNSW bounds them, so that Spaces' reply is bounded.
	if len(space) > maxSpaceName {
		return fmt.Errorf("upsert: space name longer than %d bytes", maxSpaceName)
	}
	for _, it := range items {
		if len(it.Vector) != q.dim {
			return fmt.Errorf("upsert key %d: %w (%d, want %d)", it.Key, ErrDimension, len(it.Vector), q.dim)
		}
	}
	items = lastOfEachKey(items)
	for chunk := range slices.Chunk(items, qdrantUpsertBatch) {
		points := make([]*qdrant.PointStruct, len(chunk))
		for i, it := range chunk {
			points[i] = &qdrant.PointStruct{
				Id:      q.pointID(space, it.Key),
				Vectors: qdrant.NewVectorsDense(it.Vector),
				Payload: map[string]*qdrant.Value{
					qdrantSpaceField: qdrant.NewValueString(space),
					qdrantKeyField:   qdrant.NewValueInt(int64(it.Key)),
					qdrantModelField: qdrant.NewValueString(q.model),
				},
			}
		}
		if err := q.write(ctx, "upsert", func(ctx context.Context) (*qdrant.UpdateResult, error) {
			return q.client.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: q.collection, Wait: qdrant.PtrOf(true), Points: points})
		}); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes keys from space, whatever model made their vectors;
// unknown keys are ignored.
func (q *Qdrant) Delete(ctx context.Context, space string, keys []uint64) error {
	for chunk := range slices.Chunk(keys, qdrantDeleteBatch) {
		ids := make([]*qdrant.PointId, len(chunk))
		for i, k := range chunk {
			ids[i] = q.pointID(space, k)
		}
		if err := q.write(ctx, "delete", func(ctx context.Context) (*qdrant.UpdateResult, error) {
			return q.client.Delete(ctx, &qdrant.DeletePoints{
				CollectionName: q.collection,
				Wait:           qdrant.PtrOf(true),
				Points:         qdrant.NewPointsSelectorIDs(ids),
			})
		}); err != nil {
			return err
		}
	}
	return nil
}

// Drop removes every point of space, of every model; an unknown space is
// not an error.
func (q *Qdrant) Drop(ctx context.Context, space string) error {
	return q.write(ctx, "drop "+strconv.Quote(space), func(ctx context.Context) (*qdrant.UpdateResult, error) {
		return q.client.Delete(ctx, &qdrant.DeletePoints{
			CollectionName: q.collection,
			Wait:           qdrant.PtrOf(true),
			Points: qdrant.NewPointsSelectorFilter(&qdrant.Filter{Must: []*qdrant.Condition{
				qdrant.NewMatchKeyword(qdrantSpaceField, space),
			}}),
		})
	})
}

// write runs a waited write and checks that Qdrant applied it: a write
// whose wait timed out is queued, not yet visible, and reported as an
// error (it is idempotent: the caller may retry it).
func (q *Qdrant) write(ctx context.Context, op string, call func(context.Context) (*qdrant.UpdateResult, error)) error {
	return q.do(ctx, op, func(ctx context.Context) error {
		res, err := call(ctx)
		if err != nil {
			return err
		}
		if st := res.GetStatus(); st != qdrant.UpdateStatus_Completed {
			return fmt.Errorf("not applied yet (status %v)", st)
		}
		return nil
	})
}

// Search returns the k nearest vectors of space to q among this model's,
// nearest first, equal distances by ascending key. Qdrant orders equal
// scores as it likes, so Search asks for more than k while the k-th
// distance is shared beyond what it got. A k above 4096 costs a count of
// the space first, so that the request asks for no more than it holds.
//
// In a space of more points than the collection's full-scan threshold
// Qdrant searches its HNSW graph, with ef = max(hnsw_ef, limit), and
// hnsw_ef defaults to the graph's ef_construct (100): whatever recall
// that gives. Search sends hnsw_ef from the recall target instead:
// Visage's embedded HNSW (M 32, efConstruction 100) reached recall@10 of
// 0.812, 0.925, 0.977, 0.990, 0.995, 0.998 and 0.999 at ef 80, 160, 320,
// 480, 640, 960 and 1280 on a million descriptor-like vectors
// (docs/benchmarks.md, "Vector index"); the ef of the least target at or
// above the index's is taken per ten results asked for (limit k+1, at
// least ten), keeping the candidates per result that reached it. It is a
// measured curve, not a guarantee: Qdrant's default graph is sparser (m
// 16), and a collection tuned denser does better. A target above 0.999
// makes every search exact (params.exact).
//
// A search is also exact when its ef reaches the full-scan threshold
// (limit 417 at the defaults and target 0.99): Qdrant scans a space of
// fewer points than that anyway, and in a larger one a graph search of
// such an ef visits more points (2m neighbours of each of ef candidates)
// than a scan of any space short of some 2m times the threshold, 640,000
// points by default; Visage's galleries are smaller, and an exact answer
// is the better one.
//
// A filtered graph search walks only the space's points, which may not
// all connect, so it can come back with fewer than limit of them though
// the space holds more: such a short answer is asked again exactly. The
// space is then remembered as small if it was (fewer points than the
// limit), and searched exactly at once until an exact search fills its
// limit, so that small galleries cost one request, not two.
func (q *Qdrant) Search(ctx context.Context, space string, vec []float32, k int) ([]Match, error) {
	if len(vec) != q.dim {
		return nil, fmt.Errorf("search: %w (%d, want %d)", ErrDimension, len(vec), q.dim)
	}
	if k <= 0 {
		return []Match{}, nil
	}
	if k > qdrantMaxTieLimit {
		// Ask for no more than the space holds (and keep k+1 in range).
		n, err := q.Len(ctx, space)
		if err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		if k = min(k, n); k == 0 {
			return []Match{}, nil
		}
	}
	limit := k + 1
	for {
		pts, err := q.nearest(ctx, space, vec, limit)
		if err != nil {
			return nil, err
		}
		tied := len(pts) == limit && pts[k-1].GetScore() == pts[limit-1].GetScore()
		if !tied || limit >= qdrantMaxTieLimit {
			out := make([]Match, len(pts))
			for i, p := range pts {
				key, err := keyOf(p.GetPayload(), p.GetId())
				if err != nil {
					return nil, fmt.Errorf("search: %w", err)
				}
				out[i] = Match{Key: key, Distance: p.GetScore()}
			}
			sortMatches(out)
			return out[:min(k, len(out))], nil
		}
		limit = min(2*limit, max(qdrantMaxTieLimit, k+1))
	}
}

// nearest asks Qdrant for the limit points of space nearest to vec, as
// Search says: approximately at the recall target, or exactly.
func (q *Qdrant) nearest(ctx context.Context, space string, vec []float32, limit int) ([]*qdrant.ScoredPoint, error) {
	ef := q.efPer10 * max(limit, 10) / 10
	exact := ef == 0 || ef >= q.fullScan || q.small.has(space)
	pts, err := q.query(ctx, space, vec, limit, ef, exact)
	if err != nil {
		return nil, err
	}
	if len(pts) < limit && !exact {
		exact = true
		if pts, err = q.query(ctx, space, vec, limit, 0, true); err != nil {
			return nil, err
		}
	}
	if exact {
		q.small.set(space, len(pts) < limit)
	}
	return pts, nil
}

// query is one search request, with hnsw_ef ef or exact.
func (q *Qdrant) query(ctx context.Context, space string, vec []float32, limit, ef int, exact bool) ([]*qdrant.ScoredPoint, error) {
	params := &qdrant.SearchParams{Exact: qdrant.PtrOf(true)}
	if !exact {
		params = &qdrant.SearchParams{HnswEf: qdrant.PtrOf(uint64(ef))}
	}
	var pts []*qdrant.ScoredPoint
	err := q.do(ctx, "search", func(ctx context.Context) error {
		res, err := q.client.GetPointsClient().Query(ctx, &qdrant.QueryPoints{
			CollectionName: q.collection,
			Query:          qdrant.NewQueryDense(vec),
			Filter:         q.ofSpace(space),
			Limit:          qdrant.PtrOf(uint64(limit)),
			Params:         params,
			WithPayload:    qdrant.NewWithPayloadInclude(qdrantKeyField),
		}, grpc.MaxCallRecvMsgSize(min(qdrantReplySlack+limit*q.pointBytes, math.MaxInt32)))
		pts = res.GetResult()
		return err
	})
	return pts, err
}

// efPer10 is the hnsw_ef per ten results that reached recall on a
// million descriptor-like vectors (see Search), or 0 (exact) past them.
func efPer10(recall float64) int {
	for _, p := range []struct {
		recall float64
		ef     int
	}{
		{0.812, 80}, {0.925, 160}, {0.977, 320}, {0.990, 480}, {0.995, 640}, {0.998, 960}, {0.999, 1280},
	} {
		if recall <= p.recall {
			return p.ef
		}
	}
	return 0
}

// smallSpaces are spaces last seen, by an exact search, holding fewer
// points than its limit: searching them exactly at once saves asking
// twice. Forgetting one costs a request, so the set is simply cleared
// when full.
type smallSpaces struct {
	mu     sync.Mutex
	spaces map[string]struct{}
}

func (s *smallSpaces) has(space string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.spaces[space]
	return ok
}

func (s *smallSpaces) set(space string, small bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !small {
		delete(s.spaces, space)
		return
	}
	if s.spaces == nil || len(s.spaces) >= qdrantMaxSmallSpaces {
		s.spaces = map[string]struct{}{}
	}
	s.spaces[space] = struct{}{}
}

// keyOf reads a point's key from its payload.
func keyOf(payload map[string]*qdrant.Value, id *qdrant.PointId) (uint64, error) {
	v, ok := payload[qdrantKeyField].GetKind().(*qdrant.Value_IntegerValue)
	if !ok {
		return 0, fmt.Errorf("point %s has no integer %q in its payload", id.GetUuid(), qdrantKeyField)
	}
	return uint64(v.IntegerValue), nil
}

// Keys returns the keys of this model's vectors in space, in ascending
// order, scrolling through the space 4096 points at a time.
func (q *Qdrant) Keys(ctx context.Context, space string) ([]uint64, error) {
	filter := q.ofSpace(space)
	keys := []uint64{}
	var offset *qdrant.PointId
	for {
		var pts []*qdrant.RetrievedPoint
		var next *qdrant.PointId
		if err := q.do(ctx, "list keys", func(ctx context.Context) (err error) {
			pts, next, err = q.client.ScrollAndOffset(ctx, &qdrant.ScrollPoints{
				CollectionName: q.collection,
				Filter:         filter,
				Offset:         offset,
				Limit:          qdrant.PtrOf(uint32(qdrantScrollPage)),
				WithPayload:    qdrant.NewWithPayloadInclude(qdrantKeyField),
				WithVectors:    qdrant.NewWithVectors(false),
			})
			return err
		}); err != nil {
			return nil, err
		}
		for _, p := range pts {
			key, err := keyOf(p.GetPayload(), p.GetId())
			if err != nil {
				return nil, fmt.Errorf("list keys: %w", err)
			}
			keys = append(keys, key)
		}
		if next == nil {
			break
		}
		offset = next
	}
	slices.Sort(keys)
	return keys, nil
}

// Spaces lists, in ascending order, the spaces holding vectors of this
// model (from an exact facet count on the space field, in one reply of up
// to 100,000 spaces: some 14 MB with names of 120 bytes, the most Upsert
// takes).
func (q *Qdrant) Spaces(ctx context.Context) ([]string, error) {
	var hits []*qdrant.FacetHit
	if err := q.do(ctx, "list spaces", func(ctx context.Context) (err error) {
		res, err := q.client.GetPointsClient().Facet(ctx, &qdrant.FacetCounts{
			CollectionName: q.collection,
			Key:            qdrantSpaceField,
			Filter:         &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword(qdrantModelField, q.model)}},
			Limit:          qdrant.PtrOf(uint64(qdrantMaxSpaces)),
			Exact:          qdrant.PtrOf(true),
		}, grpc.MaxCallRecvMsgSize(q.facetBytes))
		hits = res.GetHits()
		return err
	}); err != nil {
		return nil, err
	}
	if len(hits) >= qdrantMaxSpaces {
		return nil, fmt.Errorf("list spaces: more than %d spaces", qdrantMaxSpaces-1)
	}
	out := make([]string, 0, len(hits))
	for _, h := range hits {
		if s, ok := h.GetValue().GetVariant().(*qdrant.FacetValue_StringValue); ok && h.GetCount() > 0 {
			out = append(out, s.StringValue)
		}
	}
	slices.Sort(out)
	return out, nil
}

// maxScoredPointBytes is the most a point of a search's reply takes in
// it: a UUID id, the key (a negative int64 is the longest varint) and the
// largest version.
func maxScoredPointBytes() int {
	p := &qdrant.ScoredPoint{
		Id:      qdrant.NewIDUUID(uuid.Max.String()),
		Payload: map[string]*qdrant.Value{qdrantKeyField: qdrant.NewValueInt(math.MinInt64)},
		Score:   1,
		Version: math.MaxUint64,
	}
	return proto.Size(&qdrant.QueryResponse{Result: []*qdrant.ScoredPoint{p}}) - proto.Size(&qdrant.QueryResponse{})
}

// maxFacetHitBytes is the most a space takes in Spaces' facet reply,
// with the longest name Upsert takes.
func maxFacetHitBytes() int {
	h := &qdrant.FacetHit{
		Value: &qdrant.FacetValue{Variant: &qdrant.FacetValue_StringValue{StringValue: strings.Repeat("s", maxSpaceName)}},
		Count: math.MaxUint64,
	}
	return proto.Size(&qdrant.FacetResponse{Hits: []*qdrant.FacetHit{h}}) - proto.Size(&qdrant.FacetResponse{})
}

// Len is the number of this model's vectors in space (an exact count).
func (q *Qdrant) Len(ctx context.Context, space string) (int, error) {
	var n uint64
	if err := q.do(ctx, "count", func(ctx context.Context) (err error) {
		n, err = q.client.Count(ctx, &qdrant.CountPoints{
			CollectionName: q.collection,
			Filter:         q.ofSpace(space),
			Exact:          qdrant.PtrOf(true),
		})
		return err
	}); err != nil {
		return 0, err
	}
	return int(n), nil
}

// do runs call, each attempt within the configured timeout, retrying
// with exponential backoff and jitter while it fails with Unavailable or
// a ResourceExhausted with a retry-after (see QdrantRetry). Other errors
// are returned at once. A retryable failure that outlasts the attempts,
// or the caller's context, is ErrUnavailable.
func (q *Qdrant) do(ctx context.Context, op string, call func(context.Context) error) error {
	q.life.RLock()
	defer q.life.RUnlock()
	if q.closed {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	wait := q.retry.Initial
	var last error // the last retryable failure
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return q.gaveUp(op, attempt-1, last, err)
		}
		actx, cancel := context.WithTimeout(ctx, q.timeout)
		err := call(actx)
		cancel()
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return q.gaveUp(op, attempt, cmp.Or(last, err), cerr)
		}
		retryAfter, retry := retryable(err)
		if !retry {
			if isCode(err, codes.Unauthenticated, codes.PermissionDenied) {
				return fmt.Errorf("%s: qdrant refused the API key: %w", op, err)
			}
			return fmt.Errorf("%s: %w", op, err)
		}
		last = err
		if attempt >= q.retry.Attempts {
			return &unavailableError{op: op, attempts: attempt, err: err}
		}
		if isCode(err, codes.Unavailable) {
			// gRPC waits out its own reconnection backoff (up to Max)
			// before dialling again and fails requests meanwhile; our
			// backoff paces the retries, so let the next one dial now,
			// whichever pooled connection it lands on (an outage backs
			// them all off; a ready one ignores the reset).
			for _, c := range q.conns {
				c.ResetConnectBackoff()
			}
		}
		d := wait/2 + rand.N(wait/2+1)
		d = max(d, min(retryAfter, q.retry.Max))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, q.retry.Max)
	}
}

// gaveUp reports the caller's context ending the attempts: as
// ErrUnavailable if the store had been failing with retryable errors.
func (q *Qdrant) gaveUp(op string, attempts int, last, cause error) error {
	if last != nil {
		if _, ok := retryable(last); ok {
			return &unavailableError{op: op, attempts: attempts, err: last, cause: cause}
		}
		return fmt.Errorf("%s: %w (%v)", op, cause, last)
	}
	return fmt.Errorf("%s: %w", op, cause)
}

// retryable says whether err is worth retrying, and after how long the
// server asked to be retried: Unavailable, and a ResourceExhausted with a
// retry-after trailer (which the go-client turns into its own error
// type, without the status); a bare ResourceExhausted is not.
func retryable(err error) (time.Duration, bool) {
	var re *qdrant.QdrantResourceExhaustedError
	if errors.As(err, &re) {
		return time.Duration(re.RetryAfterS) * time.Second, true
	}
	return 0, isCode(err, codes.Unavailable)
}

func isCode(err error, cs ...codes.Code) bool {
	return slices.Contains(cs, status.Code(err))
}

// unavailableError is ErrUnavailable with its cause.
type unavailableError struct {
	op       string
	attempts int
	err      error // the last attempt's
	cause    error // the context's error, when it ended the retries
}

func (e *unavailableError) Error() string {
	msg := fmt.Sprintf("%s: %v after %d attempts: %v", e.op, ErrUnavailable, e.attempts, e.err)
	if e.cause != nil {
		msg += " (gave up: " + e.cause.Error() + ")"
	}
	return msg
}

func (e *unavailableError) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrUnavailable, e.err, e.cause}
	}
	return []error{ErrUnavailable, e.err}
}

// GRPCStatus is the last attempt's status, also when the go-client
// reported a ResourceExhausted as its own error type.
func (e *unavailableError) GRPCStatus() *status.Status {
	var re *qdrant.QdrantResourceExhaustedError
	if errors.As(e.err, &re) {
		return status.New(codes.ResourceExhausted, re.Reason)
	}
	s, _ := status.FromError(e.err)
	return s
}
