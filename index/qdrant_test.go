package index_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"github.com/visage/visage/index"
	"github.com/visage/visage/index/indextest"
	"github.com/visage/visage/index/qdranttest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fastRetry retries quickly, three attempts in all.
func fastRetry() index.QdrantRetry {
	return index.QdrantRetry{Attempts: 3, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}
}

// testConfig is a configuration for the server s, in a new collection.
func testConfig(t *testing.T, s *qdranttest.Server) index.QdrantConfig {
	return index.QdrantConfig{Addr: s.Addr(), Collection: uniqueCollection(t), Dim: dim, Model: "m1", Retry: fastRetry()}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// slowCtx is for tests that put tens of thousands of points in the
// in-process server, whose scans and graph are slow under the race
// detector.
func slowCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func unit(r *mrand.Rand) []float32 { return indextest.RandomUnit(r, dim) }

func TestQdrantRetriesThenSucceeds(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	q := openQdrant(t, testConfig(t, s))
	r := mrand.New(mrand.NewPCG(1, 1))
	v := unit(r)
	for i, f := range []qdranttest.Fault{
		{Code: codes.Unavailable, Times: 2},
		// The go-client turns a ResourceExhausted with a retry-after into
		// its own error type; the retry-after (1 s) is honoured only up to
		// the policy's Max.
		{Code: codes.ResourceExhausted, Times: 2, RetryAfter: 1},
		{Code: codes.ResourceExhausted, Times: 1, RetryAfter: 1},
	} {
		t.Run(f.Code.String(), func(t *testing.T) {
			before := s.Calls("Points/Upsert")
			s.Inject(f)
			start := time.Now()
			if err := q.Upsert(testCtx(t), "s", []index.Item{{Key: uint64(i), Vector: v}}); err != nil {
				t.Fatalf("Upsert after %d failures: %v", f.Times, err)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("retries took %v", d)
			}
			if n := s.Calls("Points/Upsert") - before; n != f.Times+1 {
				t.Errorf("%d upsert requests, want %d", n, f.Times+1)
			}
		})
	}
	if ks, err := q.Keys(testCtx(t), "s"); err != nil || !slices.Equal(ks, []uint64{0, 1, 2}) {
		t.Errorf("Keys = %v, %v", ks, err)
	}
}

func TestQdrantUnavailableAfterRetries(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	q := openQdrant(t, testConfig(t, s))
	v := unit(mrand.New(mrand.NewPCG(2, 2)))
	ops := []struct {
		name, method string
		call         func(ctx context.Context) error
	}{
		{"Upsert", "Points/Upsert", func(ctx context.Context) error { return q.Upsert(ctx, "s", []index.Item{{Key: 1, Vector: v}}) }},
		{"Delete", "Points/Delete", func(ctx context.Context) error { return q.Delete(ctx, "s", []uint64{1}) }},
		{"Drop", "Points/Delete", func(ctx context.Context) error { return q.Drop(ctx, "s") }},
		{"Search", "Points/Query", func(ctx context.Context) error { _, err := q.Search(ctx, "s", v, 3); return err }},
		{"Keys", "Points/Scroll", func(ctx context.Context) error { _, err := q.Keys(ctx, "s"); return err }},
		{"Len", "Points/Count", func(ctx context.Context) error { _, err := q.Len(ctx, "s"); return err }},
		{"Spaces", "Points/Facet", func(ctx context.Context) error { _, err := q.Spaces(ctx); return err }},
	}
	for _, f := range []qdranttest.Fault{
		{Code: codes.Unavailable},
		{Code: codes.ResourceExhausted, RetryAfter: 1},
	} {
		for _, op := range ops {
			t.Run(f.Code.String()+"/"+op.name, func(t *testing.T) {
				s.Inject(f)
				defer s.Heal()
				before := s.Calls(op.method)
				err := op.call(testCtx(t))
				if !errors.Is(err, index.ErrUnavailable) {
					t.Fatalf("got %v, want ErrUnavailable", err)
				}
				if c := status.Code(err); c != f.Code {
					t.Errorf("status code %v, want %v", c, f.Code)
				}
				if n := s.Calls(op.method) - before; n != fastRetry().Attempts {
					t.Errorf("%d attempts, want %d", n, fastRetry().Attempts)
				}
			})
		}
	}
}

// TestQdrantOtherErrorsAreNotRetried: among them a ResourceExhausted
// without retry-after, which Qdrant sends when waiting cannot help (a
// request over its rate limiter's whole capacity).
func TestQdrantOtherErrorsAreNotRetried(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	q := openQdrant(t, testConfig(t, s))
	v := unit(mrand.New(mrand.NewPCG(3, 3)))
	for _, c := range []codes.Code{codes.Internal, codes.InvalidArgument, codes.NotFound, codes.DeadlineExceeded, codes.Unauthenticated, codes.ResourceExhausted} {
		t.Run(c.String(), func(t *testing.T) {
			s.Inject(qdranttest.Fault{Code: c, Times: 1})
			before := s.Calls("Points/Query")
			_, err := q.Search(testCtx(t), "s", v, 3)
			if status.Code(err) != c || errors.Is(err, index.ErrUnavailable) {
				t.Errorf("got %v, want code %v and not ErrUnavailable", err, c)
			}
			if n := s.Calls("Points/Query") - before; n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
		})
	}
}

func TestQdrantRetriesStopWithTheContext(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	cfg := testConfig(t, s)
	cfg.Retry = index.QdrantRetry{Attempts: 1000, Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond}
	q := openQdrant(t, cfg)
	s.Inject(qdranttest.Fault{Code: codes.Unavailable})
	// One second: long enough for the first attempt to reach the server
	// on a loaded machine (with 150 ms, CI once spent it all on the first
	// attempt, which then ended with the deadline, not Unavailable).
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := q.Len(ctx, "s")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("gave up after %v", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, index.ErrUnavailable) || status.Code(err) != codes.Unavailable {
		t.Errorf("got %v, want the context's deadline and ErrUnavailable", err)
	}
	// Backoff of 20-50 ms: at most about 70 attempts in a second.
	if n := s.Calls("Points/Count"); n < 2 || n > 100 {
		t.Errorf("%d attempts in 1 s", n)
	}
}

func TestQdrantServerDownAndBack(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	cfg := testConfig(t, s)
	q := openQdrant(t, cfg)
	r := mrand.New(mrand.NewPCG(4, 4))
	v := unit(r)
	if err := q.Upsert(testCtx(t), "s", []index.Item{{Key: 7, Vector: v}}); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := q.Search(testCtx(t), "s", v, 1); !errors.Is(err, index.ErrUnavailable) || status.Code(err) != codes.Unavailable {
		t.Fatalf("server down: %v, want ErrUnavailable", err)
	}
	if _, err := index.OpenQdrant(testCtx(t), cfg); !errors.Is(err, index.ErrUnavailable) || !strings.Contains(err.Error(), "health check") {
		t.Errorf("OpenQdrant with the server down: %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	// Reconnection takes a moment; a patient policy rides it out.
	cfg.Retry = index.QdrantRetry{Attempts: 20, Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	patient := openQdrant(t, cfg)
	for _, idx := range []*index.Qdrant{patient, q} {
		var got []index.Match
		var err error
		for range 50 {
			if got, err = idx.Search(testCtx(t), "s", v, 1); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || !slices.Equal(got, []index.Match{{Key: 7}}) {
			t.Errorf("after restart: %v, %v; want the data back", got, err)
		}
	}
}

// TestQdrantOutageResetsEveryConnection: while Qdrant is down, gRPC's
// reconnection backoff grows on each of the go-client's pooled
// connections (100 ms times 1.6 per failed reconnection here, up to
// 10 s); once it is back, the first failed attempt must reset them all,
// or the requests that land on the others fail until their own backoff
// ends.
func TestQdrantOutageResetsEveryConnection(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	cfg := testConfig(t, s)
	// Two tries: the second must find a connection ready.
	cfg.Retry = index.QdrantRetry{Attempts: 2, Initial: 100 * time.Millisecond, Max: 10 * time.Second}
	q := openQdrant(t, cfg)
	v := unit(mrand.New(mrand.NewPCG(11, 11)))
	if err := q.Upsert(testCtx(t), "s", []index.Item{{Key: 7, Vector: v}}); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	// Four seconds of failing requests: the connections' backoff reaches
	// seconds.
	for start := time.Now(); time.Since(start) < 4*time.Second; {
		if _, err := q.Search(testCtx(t), "s", v, 1); !errors.Is(err, index.ErrUnavailable) {
			t.Fatalf("server down: %v, want ErrUnavailable", err)
		}
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	for i := range 6 { // each connection twice
		if got, err := q.Search(testCtx(t), "s", v, 1); err != nil || len(got) != 1 {
			t.Errorf("search %d after the restart: %v, %v", i, got, err)
		}
	}
}

// TestQdrantLargeReplies: a reply over gRPC's default receive limit of
// 4 MiB (a Spaces facet over some 33,000 spaces of long names, a search
// for some 65,000 neighbours) is refused by the client itself with
// ResourceExhausted; the index asks for such replies with a limit that
// fits them.
func TestQdrantLargeReplies(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	ctx := slowCtx(t)
	// open is an index of 2-dimensional vectors in a new collection, and
	// a plain go-client connection.
	open := func(t *testing.T) (*index.Qdrant, index.QdrantConfig, *qdrant.Client) {
		cfg := testConfig(t, s)
		cfg.Dim = 2
		return openQdrant(t, cfg), cfg, rawClient(t, cfg)
	}
	t.Run("spaces", func(t *testing.T) {
		q, cfg, raw := open(t)
		const n = 34_000
		spaces := make([]string, n)
		pts := make([]*qdrant.PointStruct, 0, n)
		for i := range spaces {
			spaces[i] = fmt.Sprintf("%0120d", i) // the longest space name
			pts = append(pts, &qdrant.PointStruct{
				Id:      qdrant.NewIDUUID(q.PointID(spaces[i], 1)),
				Vectors: qdrant.NewVectorsDense([]float32{1, 2}),
				Payload: qdrant.NewValueMap(map[string]any{"space": spaces[i], "key": 1, "model": cfg.Model}),
			})
		}
		for chunk := range slices.Chunk(pts, 5000) {
			if _, err := raw.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: cfg.Collection, Wait: qdrant.PtrOf(true), Points: chunk}); err != nil {
				t.Fatal(err)
			}
		}
		_, err := raw.Facet(ctx, &qdrant.FacetCounts{CollectionName: cfg.Collection, Key: "space", Limit: qdrant.PtrOf(uint64(100_000))})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("facet with the default receive limit: %v, want ResourceExhausted", err)
		}
		before := s.Calls("Points/Facet")
		got, err := q.Spaces(ctx)
		if err != nil || !slices.Equal(got, spaces) {
			t.Errorf("Spaces: %d spaces, %v; want %d", len(got), err, n)
		}
		if c := s.Calls("Points/Facet") - before; c != 1 {
			t.Errorf("%d facet requests, want 1", c)
		}
	})
	t.Run("search", func(t *testing.T) {
		q, cfg, raw := open(t)
		const n = 80_000
		items := make([]index.Item, n)
		for i := range items {
			items[i] = index.Item{Key: uint64(i), Vector: []float32{float32(i), 0}}
		}
		if err := q.Upsert(ctx, "big", items); err != nil {
			t.Fatal(err)
		}
		filter := &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("space", "big")}}
		_, err := raw.Query(ctx, &qdrant.QueryPoints{CollectionName: cfg.Collection, Query: qdrant.NewQuery(0, 0), Filter: filter,
			Limit: qdrant.PtrOf(uint64(n)), WithPayload: qdrant.NewWithPayloadInclude("key")})
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("query with the default receive limit: %v, want ResourceExhausted", err)
		}
		got, err := q.Search(ctx, "big", []float32{0, 0}, n)
		if err != nil || len(got) != n || got[0].Key != 0 || got[n-1].Key != n-1 {
			t.Errorf("Search: %d matches, %v", len(got), err)
		}
	})
	t.Run("space names are bounded", func(t *testing.T) {
		q, _, _ := open(t)
		long := strings.Repeat("s", 121)
		if err := q.Upsert(ctx, long, []index.Item{{Key: 1, Vector: []float32{1, 2}}}); err == nil {
			t.Error("upserted into a space of a 121-byte name")
		}
	})
}

// spaceFixture upserts n random unit vectors of dim dimensions, keys 0
// to n-1, into space of q and of an exact index, and returns the exact
// one.
func spaceFixture(t *testing.T, q *index.Qdrant, exact *index.Flat, space string, dim, n int, r *mrand.Rand) {
	t.Helper()
	items := make([]index.Item, n)
	for i := range items {
		items[i] = index.Item{Key: uint64(i), Vector: indextest.RandomUnit(r, dim)}
	}
	for _, idx := range []index.Index{q, exact} {
		if err := idx.Upsert(slowCtx(t), space, items); err != nil {
			t.Fatal(err)
		}
	}
}

// recallOf is the share of the exact k nearest of each query that
// search finds.
func recallOf(t *testing.T, exact *index.Flat, space string, queries [][]float32, k int, search func(v []float32) []uint64) float64 {
	t.Helper()
	found := 0
	for _, v := range queries {
		want, err := exact.Search(context.Background(), space, v, k)
		if err != nil {
			t.Fatal(err)
		}
		got := search(v)
		for _, m := range want {
			if slices.Contains(got, m.Key) {
				found++
			}
		}
	}
	return float64(found) / float64(len(queries)*k)
}

func keysOf(ms []index.Match) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Key
	}
	return out
}

// TestQdrantSearchRecall: a space past the collection's full-scan
// threshold is searched through HNSW. Sent without search parameters, a
// search runs with Qdrant's ef, max(ef_construct, limit) = 100, which on
// these vectors (3,000 random 128-dimensional ones, Qdrant's default m 16
// and ef_construct 100) finds less of the true neighbours than the
// recall target; the index's hnsw_ef, derived from the target, finds at
// least that much.
func TestQdrantSearchRecall(t *testing.T) {
	const dim, n, k = 128, 3000, 10
	// 750 KB: 1,500 128-dimensional vectors, fewer than the space's 3,000
	// and more than the index's ef for k 10 (528).
	s := qdranttest.Start(t, qdranttest.Options{HNSW: qdranttest.HNSWConfig{FullScanThresholdKB: 750}})
	cfg := testConfig(t, s)
	cfg.Dim = dim
	q := openQdrant(t, cfg)
	exact := index.NewFlat(dim)
	r := mrand.New(mrand.NewPCG(12, 12))
	spaceFixture(t, q, exact, "big", dim, n, r)
	queries := make([][]float32, 60)
	for i := range queries {
		queries[i] = indextest.RandomUnit(r, dim)
	}
	ctx := slowCtx(t)
	target := index.DefaultQdrantRecall

	// Without parameters, as the index asked before it had a target.
	raw := rawClient(t, cfg)
	filter := &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("space", "big"), qdrant.NewMatchKeyword("model", cfg.Model)}}
	plain := recallOf(t, exact, "big", queries, k, func(v []float32) []uint64 {
		res, err := raw.Query(ctx, &qdrant.QueryPoints{CollectionName: cfg.Collection, Query: qdrant.NewQueryDense(v), Filter: filter,
			Limit: qdrant.PtrOf(uint64(k + 1)), WithPayload: qdrant.NewWithPayloadInclude("key")})
		if err != nil {
			t.Fatal(err)
		}
		var keys []uint64
		for _, p := range res[:min(k, len(res))] {
			keys = append(keys, uint64(p.GetPayload()["key"].GetIntegerValue()))
		}
		return keys
	})
	if plain >= target {
		t.Fatalf("recall %.3f without search parameters: the test's data does not tell", plain)
	}

	before := s.ApproximateSearches()
	got := recallOf(t, exact, "big", queries, k, func(v []float32) []uint64 {
		ms, err := q.Search(ctx, "big", v, k)
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(ms)
	})
	if s.ApproximateSearches() == before {
		t.Fatal("the index's searches did not go through the graph")
	}
	t.Logf("recall@%d: %.3f without parameters, %.3f from the index (target %.2f)", k, plain, got, target)
	if got < target {
		t.Errorf("recall %.3f, want at least the target %.2f", got, target)
	}

	t.Run("exact when ef reaches the threshold", func(t *testing.T) {
		// k 40: ef 48 × 41 = 1,968, past the threshold of 1,500 points.
		before := s.ApproximateSearches()
		if got := recallOf(t, exact, "big", queries[:10], 40, func(v []float32) []uint64 {
			ms, err := q.Search(ctx, "big", v, 40)
			if err != nil {
				t.Fatal(err)
			}
			return keysOf(ms)
		}); got != 1 {
			t.Errorf("recall %.3f", got)
		}
		if n := s.ApproximateSearches() - before; n != 0 {
			t.Errorf("%d approximate searches, want none", n)
		}
	})
	t.Run("target 1 is exact", func(t *testing.T) {
		c := cfg
		c.Recall = 1
		all := openQdrant(t, c)
		before := s.ApproximateSearches()
		if _, err := all.Search(ctx, "big", queries[0], k); err != nil {
			t.Fatal(err)
		}
		if n := s.ApproximateSearches() - before; n != 0 {
			t.Errorf("%d approximate searches, want none", n)
		}
	})
	t.Run("a space smaller than the limit", func(t *testing.T) {
		// Qdrant scans it whatever the request says; its short answer may
		// be a filtered graph search's, so it is asked again exactly, and
		// then, the space known to be small, exactly at once.
		spaceFixture(t, q, exact, "small", dim, 5, r)
		for i, want := range []int{2, 1, 1} {
			before := s.Calls("Points/Query")
			got, err := q.Search(ctx, "small", queries[i], k)
			if err != nil || len(got) != 5 {
				t.Fatalf("Search = %v, %v", got, err)
			}
			if n := s.Calls("Points/Query") - before; n != want {
				t.Errorf("search %d: %d requests, want %d", i, n, want)
			}
		}
	})
}

// TestQdrantSearchFilteredShort: a space that is a small part of the
// collection falls apart in a filtered HNSW search (Qdrant's, and the
// in-process server's): it walks only the space's points, so it may come
// back with fewer than k of them. The index then asks again exactly.
// (Where the piece the search enters holds k points or more, the answer
// is full but may miss nearer points in other pieces: that is recall,
// which in Qdrant the tenant index's payload_m links keep up; this sparse
// graph has none.)
func TestQdrantSearchFilteredShort(t *testing.T) {
	const dim, spaces, n, k = 32, 10, 700, 10
	// A sparse graph, quick to build (m 4, ef_construct 16); 75 KB is 600
	// 32-dimensional vectors, fewer than a space's 700 and more than the
	// index's ef for k 10 (528).
	s := qdranttest.Start(t, qdranttest.Options{HNSW: qdranttest.HNSWConfig{M: 4, EfConstruct: 16, FullScanThresholdKB: 75}})
	cfg := testConfig(t, s)
	cfg.Dim = dim
	q := openQdrant(t, cfg)
	exact := index.NewFlat(dim)
	r := mrand.New(mrand.NewPCG(13, 13))
	for i := range spaces {
		spaceFixture(t, q, exact, "s"+strconv.Itoa(i), dim, n, r)
	}
	ctx := slowCtx(t)
	raw := rawClient(t, cfg)
	short := 0
	for i := range spaces {
		space := "s" + strconv.Itoa(i)
		v := indextest.RandomUnit(r, dim)
		// What an approximate search for k gets: with the index's hnsw_ef
		// (528), or with none (as before the index had a recall target).
		wasShort := false
		for _, params := range []*qdrant.SearchParams{nil, {HnswEf: qdrant.PtrOf(uint64(528))}} {
			res, err := raw.Query(ctx, &qdrant.QueryPoints{CollectionName: cfg.Collection, Query: qdrant.NewQueryDense(v), Params: params,
				Filter: &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("space", space)}}, Limit: qdrant.PtrOf(uint64(k + 1))})
			if err != nil {
				t.Fatal(err)
			}
			if len(res) < k {
				short++
				wasShort = wasShort || params != nil
			}
		}
		want, err := exact.Search(ctx, space, v, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := q.Search(ctx, space, v, k)
		if err != nil || len(got) != k || wasShort && !slices.Equal(keysOf(got), keysOf(want)) {
			t.Errorf("%s: Search = %v, %v; want %d keys, %v after a short approximate answer", space, keysOf(got), err, k, keysOf(want))
		}
	}
	if short == 0 {
		t.Fatal("no approximate search came back short: the test's data does not tell")
	}
	t.Logf("%d of %d approximate searches short", short, 2*spaces)
}

func TestQdrantAPIKey(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{APIKey: "s3cret"})
	for _, tc := range []struct {
		name, key string
		ok        bool
	}{
		{"right key", "s3cret", true},
		{"wrong key", "guess", false},
		{"no key", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, s)
			cfg.APIKey = tc.key
			q, err := index.OpenQdrant(testCtx(t), cfg)
			if !tc.ok {
				if err == nil {
					q.Close()
					t.Fatal("opened without the right key")
				}
				if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "API key") {
					t.Errorf("error %v: want Unauthenticated, saying the API key was refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			v := unit(mrand.New(mrand.NewPCG(5, 5)))
			if err := q.Upsert(testCtx(t), "s", []index.Item{{Key: 1, Vector: v}}); err != nil {
				t.Fatal(err)
			}
			if got, err := q.Search(testCtx(t), "s", v, 1); err != nil || len(got) != 1 {
				t.Errorf("Search = %v, %v", got, err)
			}
		})
	}
}

// TestQdrantWaitsForWrites: the in-process server applies an unwaited
// write later, so a client that forgets Wait reads stale data; the index
// always waits.
func TestQdrantWaitsForWrites(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{ApplyDelay: 300 * time.Millisecond})
	cfg := testConfig(t, s)
	q := openQdrant(t, cfg)
	ctx := testCtx(t)
	r := mrand.New(mrand.NewPCG(6, 6))

	t.Run("an unwaited write is not visible at once", func(t *testing.T) {
		raw := rawClient(t, cfg)
		if _, err := raw.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: cfg.Collection, Points: []*qdrant.PointStruct{{
			Id:      qdrant.NewIDUUID(q.PointID("forgot", 1)),
			Vectors: qdrant.NewVectorsDense(unit(r)),
			Payload: qdrant.NewValueMap(map[string]any{"space": "forgot", "key": 1, "model": "m1"}),
		}}}); err != nil {
			t.Fatal(err)
		}
		if ks, err := q.Keys(ctx, "forgot"); err != nil || len(ks) != 0 {
			t.Errorf("Keys = %v, %v: the unwaited upsert was visible at once", ks, err)
		}
	})
	t.Run("the index waits", func(t *testing.T) {
		before := s.UnwaitedWrites()
		items := make([]index.Item, 600) // three requests
		for i := range items {
			items[i] = index.Item{Key: uint64(i), Vector: unit(r)}
		}
		if err := q.Upsert(ctx, "s", items); err != nil {
			t.Fatal(err)
		}
		if n, err := q.Len(ctx, "s"); err != nil || n != len(items) {
			t.Errorf("Len right after Upsert = %d, %v", n, err)
		}
		if err := q.Delete(ctx, "s", []uint64{1, 2}); err != nil {
			t.Fatal(err)
		}
		if n, err := q.Len(ctx, "s"); err != nil || n != len(items)-2 {
			t.Errorf("Len right after Delete = %d, %v", n, err)
		}
		if err := q.Drop(ctx, "s"); err != nil {
			t.Fatal(err)
		}
		if n, err := q.Len(ctx, "s"); err != nil || n != 0 {
			t.Errorf("Len right after Drop = %d, %v", n, err)
		}
		if n := s.UnwaitedWrites() - before; n != 0 {
			t.Errorf("%d writes of the index did not wait", n)
		}
	})
}

func TestQdrantModelIsolation(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	cfg := testConfig(t, s)
	m1 := openQdrant(t, cfg)
	cfg.Model = "m2"
	m2 := openQdrant(t, cfg)
	ctx := testCtx(t)
	r := mrand.New(mrand.NewPCG(7, 7))
	v1, v2 := unit(r), unit(r)
	if err := m1.Upsert(ctx, "faces/a", []index.Item{{Key: 1, Vector: v1}, {Key: 2, Vector: unit(r)}}); err != nil {
		t.Fatal(err)
	}
	if err := m2.Upsert(ctx, "faces/a", []index.Item{{Key: 3, Vector: v2}}); err != nil {
		t.Fatal(err)
	}
	if err := m2.Upsert(ctx, "faces/b", []index.Item{{Key: 4, Vector: unit(r)}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		idx    *index.Qdrant
		keys   []uint64
		spaces []string
		probe  []float32
		first  uint64
	}{
		{"m1", m1, []uint64{1, 2}, []string{"faces/a"}, v2, 1},
		{"m2", m2, []uint64{3}, []string{"faces/a", "faces/b"}, v1, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ks, err := tc.idx.Keys(ctx, "faces/a"); err != nil || !slices.Equal(ks, tc.keys) {
				t.Errorf("Keys = %v, %v; want %v", ks, err, tc.keys)
			}
			if n, err := tc.idx.Len(ctx, "faces/a"); err != nil || n != len(tc.keys) {
				t.Errorf("Len = %d, %v", n, err)
			}
			if sp, err := tc.idx.Spaces(ctx); err != nil || !slices.Equal(sp, tc.spaces) {
				t.Errorf("Spaces = %q, %v; want %q", sp, err, tc.spaces)
			}
			// A query at the other model's vector finds none of it.
			got, err := tc.idx.Search(ctx, "faces/a", tc.probe, 10)
			if err != nil || len(got) != len(tc.keys) {
				t.Fatalf("Search = %v, %v", got, err)
			}
			for _, m := range got {
				if !slices.Contains(tc.keys, m.Key) {
					t.Errorf("Search returned the other model's key %d", m.Key)
				}
			}
		})
	}
	// One space and key are one point: the other model's upsert takes it
	// over, and Drop removes every model's points.
	if err := m2.Upsert(ctx, "faces/a", []index.Item{{Key: 1, Vector: v2}}); err != nil {
		t.Fatal(err)
	}
	if ks, err := m1.Keys(ctx, "faces/a"); err != nil || !slices.Equal(ks, []uint64{2}) {
		t.Errorf("m1 Keys after m2 took key 1 = %v, %v", ks, err)
	}
	if err := m1.Drop(ctx, "faces/a"); err != nil {
		t.Fatal(err)
	}
	if ks, err := m2.Keys(ctx, "faces/a"); err != nil || len(ks) != 0 {
		t.Errorf("m2 Keys after m1 dropped the space = %v, %v", ks, err)
	}
}

func TestQdrantPointIDs(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	cfg := testConfig(t, s)
	q := openQdrant(t, cfg)
	ids := map[string]string{}
	for _, tc := range []struct {
		space string
		key   uint64
	}{
		{"faces/a", 1}, {"faces/a", 2}, {"faces/b", 1}, {"", 1}, {"faces/a\x00", 1}, {"faces/", 1}, {"faces/a", 1 << 63},
	} {
		id := q.PointID(tc.space, tc.key)
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 5 || u.String() != id {
			t.Errorf("PointID(%q, %d) = %q: not a canonical UUIDv5 (%v)", tc.space, tc.key, id, err)
		}
		if id != q.PointID(tc.space, tc.key) {
			t.Errorf("PointID(%q, %d) is not deterministic", tc.space, tc.key)
		}
		if prev, dup := ids[id]; dup {
			t.Errorf("PointID(%q, %d) = PointID of %s", tc.space, tc.key, prev)
		}
		ids[id] = tc.space
	}
	// Another process derives the same ids.
	other := openQdrant(t, cfg)
	if q.PointID("faces/a", 1) != other.PointID("faces/a", 1) {
		t.Error("two indexes derive different ids")
	}
	// A repeated upsert overwrites, so the collection holds one point.
	r := mrand.New(mrand.NewPCG(8, 8))
	for range 3 {
		if err := q.Upsert(testCtx(t), "faces/a", []index.Item{{Key: 1, Vector: unit(r)}}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := rawClient(t, cfg).Count(testCtx(t), &qdrant.CountPoints{CollectionName: cfg.Collection, Exact: qdrant.PtrOf(true)})
	if err != nil || n != 1 {
		t.Errorf("%d points after three upserts of one key, %v", n, err)
	}
}

func TestOpenQdrantCollection(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	t.Run("created with payload indexes", func(t *testing.T) {
		cfg := testConfig(t, s)
		openQdrant(t, cfg)
		openQdrant(t, cfg) // and opened again
		info, err := rawClient(t, cfg).GetCollectionInfo(testCtx(t), cfg.Collection)
		if err != nil {
			t.Fatal(err)
		}
		if p := info.GetConfig().GetParams().GetVectorsConfig().GetParams(); p.GetSize() != dim || p.GetDistance() != qdrant.Distance_Euclid {
			t.Errorf("vectors %v", p)
		}
		for _, field := range []string{"space", "model"} {
			if got := info.GetPayloadSchema()[field].GetDataType(); got != qdrant.PayloadSchemaType_Keyword {
				t.Errorf("index on %s: %v, want keyword", field, got)
			}
		}
		if !info.GetPayloadSchema()["space"].GetParams().GetKeywordIndexParams().GetIsTenant() {
			t.Error("the space index is not marked as the tenant field")
		}
	})
	t.Run("explicit float32", func(t *testing.T) {
		cfg := testConfig(t, s)
		if err := rawClient(t, cfg).CreateCollection(testCtx(t), &qdrant.CreateCollection{
			CollectionName: cfg.Collection,
			VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: dim, Distance: qdrant.Distance_Euclid,
				Datatype: qdrant.Datatype_Float32.Enum()}),
		}); err != nil {
			t.Fatal(err)
		}
		openQdrant(t, cfg)
	})
	t.Run("default name", func(t *testing.T) {
		cfg := testConfig(t, s)
		cfg.Collection = ""
		if q := openQdrant(t, cfg); q.Collection() != index.DefaultQdrantCollection {
			t.Errorf("collection %q", q.Collection())
		}
	})
	t.Run("opened at once by several replicas", func(t *testing.T) {
		cfg := testConfig(t, s)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				q, err := index.OpenQdrant(testCtx(t), cfg)
				if err == nil {
					q.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Error(err)
		}
	})
	t.Run("a name Qdrant refuses", func(t *testing.T) {
		// Qdrant answers InvalidArgument: the creation failed, and the
		// error says so rather than that the collection is missing.
		cfg := testConfig(t, s)
		cfg.Collection = "faces/bad"
		q, err := index.OpenQdrant(testCtx(t), cfg)
		if err == nil {
			q.Close()
			t.Fatal("opened")
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "create collection") {
			t.Errorf("error %v: want the creation's InvalidArgument", err)
		}
	})
	euclid := func(size uint64) *qdrant.VectorParams {
		return &qdrant.VectorParams{Size: size, Distance: qdrant.Distance_Euclid}
	}
	with := func(p *qdrant.VectorParams, edit func(*qdrant.VectorParams)) *qdrant.VectorParams {
		edit(p)
		return p
	}
	for _, tc := range []struct {
		name   string
		params *qdrant.VectorParams
	}{
		{"wrong dimension", euclid(dim / 2)},
		{"wrong distance", &qdrant.VectorParams{Size: dim, Distance: qdrant.Distance_Cosine}},
		{"uint8 vectors", with(euclid(dim), func(p *qdrant.VectorParams) { p.Datatype = qdrant.Datatype_Uint8.Enum() })},
		{"float16 vectors", with(euclid(dim), func(p *qdrant.VectorParams) { p.Datatype = qdrant.Datatype_Float16.Enum() })},
		{"multivectors", with(euclid(dim), func(p *qdrant.VectorParams) {
			p.MultivectorConfig = &qdrant.MultiVectorConfig{Comparator: qdrant.MultiVectorComparator_MaxSim}
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, s)
			if err := rawClient(t, cfg).CreateCollection(testCtx(t), &qdrant.CreateCollection{
				CollectionName: cfg.Collection,
				VectorsConfig:  qdrant.NewVectorsConfig(tc.params),
			}); err != nil {
				t.Fatal(err)
			}
			q, err := index.OpenQdrant(testCtx(t), cfg)
			if err == nil {
				q.Close()
				t.Fatal("opened a collection of other vectors")
			}
			if !strings.Contains(err.Error(), cfg.Collection) {
				t.Errorf("error %q does not name the collection", err)
			}
		})
	}
}

func TestOpenQdrantConfig(t *testing.T) {
	base := index.QdrantConfig{Addr: "127.0.0.1:1", Dim: dim, Model: "m", Retry: fastRetry()}
	for _, tc := range []struct {
		name   string
		edit   func(*index.QdrantConfig)
		expect string
	}{
		{"no address", func(c *index.QdrantConfig) { c.Addr = "" }, "no address"},
		{"bad port", func(c *index.QdrantConfig) { c.Addr = "host:http" }, "invalid address"},
		{"no dimension", func(c *index.QdrantConfig) { c.Dim = 0 }, "invalid dimension"},
		{"no model", func(c *index.QdrantConfig) { c.Model = "" }, "no model"},
		{"missing CA file", func(c *index.QdrantConfig) { c.UseTLS, c.CAFile = true, "/nonexistent/ca.pem" }, "CA file"},
		{"recall over 1", func(c *index.QdrantConfig) { c.Recall = 1.5 }, "invalid recall target"},
		{"negative recall", func(c *index.QdrantConfig) { c.Recall = -0.1 }, "invalid recall target"},
		{"recall NaN", func(c *index.QdrantConfig) { c.Recall = math.NaN() }, "invalid recall target"},
		{"nothing listening", func(*index.QdrantConfig) {}, "health check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			q, err := index.OpenQdrant(testCtx(t), cfg)
			if err == nil {
				q.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.expect) || !strings.HasPrefix(err.Error(), "open qdrant index") {
				t.Errorf("error %q, want it to say %q", err, tc.expect)
			}
		})
	}
}

func TestQdrantTLS(t *testing.T) {
	caFile, serverTLS := testCertificates(t)
	s := qdranttest.Start(t, qdranttest.Options{TLS: serverTLS, APIKey: "k"})
	for _, tc := range []struct {
		name       string
		caFile     string
		serverName string
		ok         bool
	}{
		{"trusted CA", caFile, "", true},
		{"trusted CA, server name", caFile, "qdrant.test", true},
		{"wrong server name", caFile, "other.test", false},
		{"system roots", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, s)
			cfg.UseTLS, cfg.CAFile, cfg.ServerName, cfg.APIKey = true, tc.caFile, tc.serverName, "k"
			q, err := index.OpenQdrant(testCtx(t), cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("OpenQdrant: %v, want success %v", err, tc.ok)
			}
			if err != nil {
				return
			}
			defer q.Close()
			if _, err := q.Len(testCtx(t), "s"); err != nil {
				t.Error(err)
			}
		})
	}
}

// testCertificates makes a self-signed certificate for 127.0.0.1 and
// qdrant.test, and returns its PEM file and a server configuration.
func testCertificates(t *testing.T) (string, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "qdranttest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"qdrant.test"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// TestQdrantUseAfterClose: a call after Close is ErrClosed, not a panic in
// the client's empty connection pool (a background calibration that
// outlived its index did that).
func TestQdrantUseAfterClose(t *testing.T) {
	srv := qdranttest.Start(t, qdranttest.Options{})
	q, err := index.OpenQdrant(t.Context(), index.QdrantConfig{Addr: srv.Addr(), Dim: 4, Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Search(t.Context(), "s", []float32{1, 0, 0, 0}, 3); !errors.Is(err, index.ErrClosed) {
		t.Fatalf("search after close: %v, want ErrClosed", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}
