package qdranttest_test

import (
	"cmp"
	"context"
	"errors"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"github.com/visage/visage/index/qdranttest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func client(t *testing.T, s *qdranttest.Server, apiKey string) *qdrant.Client {
	t.Helper()
	host, portText, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portText)
	c, err := qdrant.NewClient(&qdrant.Config{Host: host, Port: port, APIKey: apiKey, SkipCompatibilityCheck: true, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("error %v: code %v, want %v", err, got, want)
	}
}

func createCollection(t *testing.T, c *qdrant.Client, name string, size uint64, d qdrant.Distance) {
	t.Helper()
	if err := c.CreateCollection(ctxT(t), &qdrant.CreateCollection{
		CollectionName: name,
		VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: size, Distance: d}),
	}); err != nil {
		t.Fatal(err)
	}
}

func upsert(t *testing.T, c *qdrant.Client, name string, wait bool, pts ...*qdrant.PointStruct) *qdrant.UpdateResult {
	t.Helper()
	res, err := c.Upsert(ctxT(t), &qdrant.UpsertPoints{CollectionName: name, Wait: &wait, Points: pts})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func pt(id *qdrant.PointId, vec []float32, payload map[string]any) *qdrant.PointStruct {
	return &qdrant.PointStruct{Id: id, Vectors: qdrant.NewVectorsDense(vec), Payload: qdrant.NewValueMap(payload)}
}

func count(t *testing.T, c *qdrant.Client, name string, f *qdrant.Filter) uint64 {
	t.Helper()
	n, err := c.Count(ctxT(t), &qdrant.CountPoints{CollectionName: name, Filter: f, Exact: qdrant.PtrOf(true)})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func idString(id *qdrant.PointId) string {
	if u := id.GetUuid(); u != "" {
		return u
	}
	return strconv.FormatUint(id.GetNum(), 10)
}

func TestAPIKey(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{APIKey: "secret"})
	for _, tc := range []struct {
		name string
		key  string
		md   []string // extra outgoing metadata
		want codes.Code
	}{
		{"api-key", "secret", nil, codes.OK},
		{"bearer", "", []string{"authorization", "Bearer secret"}, codes.OK},
		{"wrong key", "guess", nil, codes.Unauthenticated},
		{"no key", "", nil, codes.Unauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(t, s, tc.key)
			ctx := ctxT(t)
			if tc.md != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
			}
			if _, err := c.HealthCheck(ctx); err != nil {
				t.Errorf("health check needs no key, got %v", err)
			}
			_, err := c.CollectionExists(ctx, "x")
			wantCode(t, err, tc.want)
		})
	}
}

func TestCollections(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	c := client(t, s, "")
	ctx := ctxT(t)
	createCollection(t, c, "a", 4, qdrant.Distance_Euclid)
	err := c.CreateCollection(ctx, &qdrant.CreateCollection{CollectionName: "a", VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 4, Distance: qdrant.Distance_Euclid})})
	wantCode(t, err, codes.AlreadyExists)
	err = c.CreateCollection(ctx, &qdrant.CreateCollection{CollectionName: "b", VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 0, Distance: qdrant.Distance_Euclid})})
	wantCode(t, err, codes.InvalidArgument)

	if ok, err := c.CollectionExists(ctx, "a"); err != nil || !ok {
		t.Errorf("exists a: %v, %v", ok, err)
	}
	if ok, err := c.CollectionExists(ctx, "b"); err != nil || ok {
		t.Errorf("exists b: %v, %v", ok, err)
	}
	info, err := c.GetCollectionInfo(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if p := info.GetConfig().GetParams().GetVectorsConfig().GetParams(); p.GetSize() != 4 || p.GetDistance() != qdrant.Distance_Euclid {
		t.Errorf("vector params %v", p)
	}
	if _, err := c.CreateFieldIndex(ctx, &qdrant.CreateFieldIndexCollection{CollectionName: "a", FieldName: "space", FieldType: qdrant.FieldType_FieldTypeKeyword.Enum(), Wait: qdrant.PtrOf(true)}); err != nil {
		t.Fatal(err)
	}
	info, err = c.GetCollectionInfo(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.GetPayloadSchema()["space"].GetDataType(); got != qdrant.PayloadSchemaType_Keyword {
		t.Errorf("payload schema of space: %v", got)
	}
	if names, err := c.ListCollections(ctx); err != nil || !slices.Equal(names, []string{"a"}) {
		t.Errorf("ListCollections = %v, %v", names, err)
	}

	_, err = c.GetCollectionInfo(ctx, "b")
	wantCode(t, err, codes.NotFound)
	_, err = c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "b", Wait: qdrant.PtrOf(true), Points: []*qdrant.PointStruct{pt(qdrant.NewIDNum(1), []float32{1, 2, 3, 4}, nil)}})
	wantCode(t, err, codes.NotFound)
	_, err = c.Query(ctx, &qdrant.QueryPoints{CollectionName: "b", Query: qdrant.NewQuery(1, 2, 3, 4)})
	wantCode(t, err, codes.NotFound)

	if err := c.DeleteCollection(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// Qdrant answers false for a collection that is not there, which the
	// go-client reports as an error.
	if err := c.DeleteCollection(ctx, "a"); err == nil {
		t.Error("deleting a missing collection: no error")
	}
}

func TestWriteWait(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{ApplyDelay: 200 * time.Millisecond})
	c := client(t, s, "")
	createCollection(t, c, "c", 2, qdrant.Distance_Euclid)

	res := upsert(t, c, "c", false, pt(qdrant.NewIDNum(1), []float32{0, 1}, nil))
	if res.GetStatus() != qdrant.UpdateStatus_Acknowledged {
		t.Errorf("unwaited upsert: status %v, want Acknowledged", res.GetStatus())
	}
	if n := count(t, c, "c", nil); n != 0 {
		t.Errorf("an unwaited upsert is visible at once (%d points)", n)
	}
	// A waited write is applied after the writes before it.
	start := time.Now()
	res = upsert(t, c, "c", true, pt(qdrant.NewIDNum(2), []float32{1, 0}, nil))
	if res.GetStatus() != qdrant.UpdateStatus_Completed {
		t.Errorf("waited upsert: status %v, want Completed", res.GetStatus())
	}
	if n := count(t, c, "c", nil); n != 2 {
		t.Errorf("after a waited upsert: %d points, want 2", n)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("the waited upsert did not wait for the earlier one (%v)", d)
	}
	if _, err := c.Delete(ctxT(t), &qdrant.DeletePoints{CollectionName: "c", Points: qdrant.NewPointsSelector(qdrant.NewIDNum(1))}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, c, "c", nil); n != 2 {
		t.Errorf("an unwaited delete is applied at once")
	}
	deadline := time.Now().Add(5 * time.Second)
	for count(t, c, "c", nil) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the unwaited delete was never applied")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := s.UnwaitedWrites(); got != 2 {
		t.Errorf("UnwaitedWrites = %d, want 2", got)
	}
}

func TestUpsertValidation(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	c := client(t, s, "")
	createCollection(t, c, "c", 3, qdrant.Distance_Euclid)
	for _, tc := range []struct {
		name string
		pts  []*qdrant.PointStruct
		want codes.Code
	}{
		{"short vector", []*qdrant.PointStruct{pt(qdrant.NewIDNum(1), []float32{1, 2, 3}, nil), pt(qdrant.NewIDNum(2), []float32{1, 2}, nil)}, codes.InvalidArgument},
		{"long vector", []*qdrant.PointStruct{pt(qdrant.NewIDNum(1), []float32{1, 2, 3, 4}, nil)}, codes.InvalidArgument},
		{"malformed uuid", []*qdrant.PointStruct{pt(qdrant.NewIDUUID("not-a-uuid"), []float32{1, 2, 3}, nil)}, codes.InvalidArgument},
		{"no id", []*qdrant.PointStruct{{Vectors: qdrant.NewVectorsDense([]float32{1, 2, 3})}}, codes.InvalidArgument},
		{"no vector", []*qdrant.PointStruct{{Id: qdrant.NewIDNum(1)}}, codes.InvalidArgument},
		{"named vectors", []*qdrant.PointStruct{{Id: qdrant.NewIDNum(1), Vectors: qdrant.NewVectorsMap(map[string]*qdrant.Vector{"x": qdrant.NewVector(1, 2, 3)})}}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, wait := range []bool{true, false} {
				_, err := c.Upsert(ctxT(t), &qdrant.UpsertPoints{CollectionName: "c", Wait: &wait, Points: tc.pts})
				wantCode(t, err, tc.want)
			}
		})
	}
	if n := count(t, c, "c", nil); n != 0 {
		t.Fatalf("rejected batches stored %d points", n)
	}

	// Numeric and UUID ids; a UUID in another textual form is the same
	// point, answered in canonical form.
	upsert(t, c, "c", true,
		pt(qdrant.NewIDNum(7), []float32{1, 0, 0}, nil),
		pt(qdrant.NewIDUUID("5C56C793-69F3-4FBF-87E6-C4BF54C28C26"), []float32{0, 1, 0}, nil),
	)
	upsert(t, c, "c", true, pt(qdrant.NewIDUUID("5c56c79369f34fbf87e6c4bf54c28c26"), []float32{0, 0, 1}, nil))
	pts, err := c.Get(ctxT(t), &qdrant.GetPoints{CollectionName: "c", Ids: []*qdrant.PointId{qdrant.NewIDUUID("5c56c793-69f3-4fbf-87e6-c4bf54c28c26"), qdrant.NewIDNum(7), qdrant.NewIDNum(8)}, WithVectors: qdrant.NewWithVectors(true)})
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || pts[0].GetId().GetUuid() != "5c56c793-69f3-4fbf-87e6-c4bf54c28c26" || pts[1].GetId().GetNum() != 7 {
		t.Fatalf("Get = %v", pts)
	}
	if v := pts[0].GetVectors().GetVector().GetDense().GetData(); !slices.Equal(v, []float32{0, 0, 1}) {
		t.Errorf("the second upsert of a UUID did not replace the point: %v", v)
	}

	// Update modes.
	upsertMode := func(mode qdrant.UpdateMode, id uint64, v []float32) {
		t.Helper()
		if _, err := c.Upsert(ctxT(t), &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true), UpdateMode: mode.Enum(), Points: []*qdrant.PointStruct{pt(qdrant.NewIDNum(id), v, nil)}}); err != nil {
			t.Fatal(err)
		}
	}
	upsertMode(qdrant.UpdateMode_InsertOnly, 7, []float32{9, 9, 9})
	upsertMode(qdrant.UpdateMode_UpdateOnly, 8, []float32{9, 9, 9})
	pts, err = c.Get(ctxT(t), &qdrant.GetPoints{CollectionName: "c", Ids: []*qdrant.PointId{qdrant.NewIDNum(7), qdrant.NewIDNum(8)}, WithVectors: qdrant.NewWithVectors(true)})
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 1 || !slices.Equal(pts[0].GetVectors().GetVector().GetDense().GetData(), []float32{1, 0, 0}) {
		t.Errorf("insert_only replaced, or update_only inserted: %v", pts)
	}
}

// filterFixture holds points 1..6 with payload space (keyword), n
// (integer), tags (list of keywords).
func filterFixture(t *testing.T) *qdrant.Client {
	s := qdranttest.Start(t, qdranttest.Options{})
	c := client(t, s, "")
	createCollection(t, c, "f", 2, qdrant.Distance_Euclid)
	var pts []*qdrant.PointStruct
	for i := 1; i <= 6; i++ {
		space := "a"
		if i > 3 {
			space = "b"
		}
		tags := []any{"t" + strconv.Itoa(i%2)}
		if i == 6 {
			tags = append(tags, "six")
		}
		pts = append(pts, pt(qdrant.NewIDNum(uint64(i)), []float32{float32(i), 0}, map[string]any{"space": space, "n": int64(i * 10), "tags": tags}))
	}
	upsert(t, c, "f", true, pts...)
	return c
}

func TestFilters(t *testing.T) {
	c := filterFixture(t)
	kw, num := qdrant.NewMatchKeyword, qdrant.NewMatchInt
	for _, tc := range []struct {
		name string
		f    *qdrant.Filter
		want []uint64
	}{
		{"none", nil, []uint64{1, 2, 3, 4, 5, 6}},
		{"empty", &qdrant.Filter{}, []uint64{1, 2, 3, 4, 5, 6}},
		{"must keyword", &qdrant.Filter{Must: []*qdrant.Condition{kw("space", "a")}}, []uint64{1, 2, 3}},
		{"must two", &qdrant.Filter{Must: []*qdrant.Condition{kw("space", "a"), num("n", 20)}}, []uint64{2}},
		{"must integer", &qdrant.Filter{Must: []*qdrant.Condition{num("n", 50)}}, []uint64{5}},
		{"integer is not keyword", &qdrant.Filter{Must: []*qdrant.Condition{kw("n", "50")}}, nil},
		{"must_not", &qdrant.Filter{MustNot: []*qdrant.Condition{kw("space", "a")}}, []uint64{4, 5, 6}},
		{"should", &qdrant.Filter{Should: []*qdrant.Condition{num("n", 10), num("n", 60)}}, []uint64{1, 6}},
		{"must and should", &qdrant.Filter{Must: []*qdrant.Condition{kw("space", "b")}, Should: []*qdrant.Condition{num("n", 10), num("n", 60)}}, []uint64{6}},
		{"min_should", &qdrant.Filter{MinShould: &qdrant.MinShould{MinCount: 2, Conditions: []*qdrant.Condition{kw("space", "b"), kw("tags", "t0"), kw("tags", "six")}}}, []uint64{4, 6}},
		{"list value", &qdrant.Filter{Must: []*qdrant.Condition{kw("tags", "six")}}, []uint64{6}},
		{"any keyword", &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeywords("tags", "six", "t1")}}, []uint64{1, 3, 5, 6}},
		{"any integer", &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchInts("n", 10, 30, 99)}}, []uint64{1, 3}},
		{"range", &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewRange("n", &qdrant.Range{Gt: qdrant.PtrOf(20.0), Lte: qdrant.PtrOf(50.0)})}}, []uint64{3, 4, 5}},
		{"has_id", &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewHasID(qdrant.NewIDNum(2), qdrant.NewIDNum(5), qdrant.NewIDNum(99))}}, []uint64{2, 5}},
		{"nested filter", &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewFilterAsCondition(&qdrant.Filter{Should: []*qdrant.Condition{num("n", 10), num("n", 40)}})}}, []uint64{1, 4}},
		{"missing field", &qdrant.Filter{Must: []*qdrant.Condition{kw("nope", "a")}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pts, err := c.Scroll(ctxT(t), &qdrant.ScrollPoints{CollectionName: "f", Filter: tc.f, Limit: qdrant.PtrOf(uint32(100))})
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, p := range pts {
				got = append(got, p.GetId().GetNum())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("scroll: %v, want %v", got, tc.want)
			}
			if n := count(t, c, "f", tc.f); n != uint64(len(tc.want)) {
				t.Errorf("count: %d, want %d", n, len(tc.want))
			}
		})
	}
	t.Run("unimplemented", func(t *testing.T) {
		for _, f := range []*qdrant.Filter{
			{Must: []*qdrant.Condition{qdrant.NewMatchText("space", "a")}},
			{Should: []*qdrant.Condition{kw("space", "zzz"), qdrant.NewIsEmpty("space")}},
			{Must: []*qdrant.Condition{kw("space", "zzz")}, MustNot: []*qdrant.Condition{qdrant.NewGeoRadius("g", 1, 2, 3)}},
		} {
			_, err := c.Count(ctxT(t), &qdrant.CountPoints{CollectionName: "f", Filter: f})
			wantCode(t, err, codes.Unimplemented)
		}
	})
}

func TestQueryEuclid(t *testing.T) {
	c := filterFixture(t)
	query := func(t *testing.T, req *qdrant.QueryPoints) []*qdrant.ScoredPoint {
		t.Helper()
		req.CollectionName = "f"
		res, err := c.Query(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	ids := func(res []*qdrant.ScoredPoint) []uint64 {
		var out []uint64
		for _, p := range res {
			out = append(out, p.GetId().GetNum())
		}
		return out
	}
	// Point i is at (i, 0); the query at (2.4, 0).
	q := qdrant.NewQuery(2.4, 0)
	t.Run("distances ascending", func(t *testing.T) {
		res := query(t, &qdrant.QueryPoints{Query: q})
		if got := ids(res); !slices.Equal(got, []uint64{2, 3, 1, 4, 5, 6}) {
			t.Errorf("order %v", got)
		}
		if d := res[0].GetScore(); d < 0.3999 || d > 0.4001 {
			t.Errorf("score %v, want the distance 0.4", d)
		}
		if res[0].GetPayload() != nil {
			t.Errorf("payload returned without with_payload: %v", res[0].GetPayload())
		}
	})
	t.Run("limit offset filter", func(t *testing.T) {
		res := query(t, &qdrant.QueryPoints{Query: q, Limit: qdrant.PtrOf(uint64(2)), Offset: qdrant.PtrOf(uint64(1)),
			Filter: &qdrant.Filter{MustNot: []*qdrant.Condition{qdrant.NewMatchInt("n", 30)}}})
		if got := ids(res); !slices.Equal(got, []uint64{1, 4}) {
			t.Errorf("got %v, want [1 4]", got)
		}
	})
	t.Run("score threshold is an upper bound", func(t *testing.T) {
		res := query(t, &qdrant.QueryPoints{Query: q, ScoreThreshold: qdrant.PtrOf(float32(1.5))})
		if got := ids(res); !slices.Equal(got, []uint64{2, 3, 1}) {
			t.Errorf("got %v, want [2 3 1]", got)
		}
	})
	t.Run("score threshold is exclusive", func(t *testing.T) {
		// Points 1 and 3 are at distance 1 exactly: Qdrant leaves them out.
		res := query(t, &qdrant.QueryPoints{Query: qdrant.NewQuery(2, 0), ScoreThreshold: qdrant.PtrOf(float32(1))})
		if got := ids(res); !slices.Equal(got, []uint64{2}) {
			t.Errorf("got %v, want [2]", got)
		}
	})
	t.Run("limit 0 is invalid", func(t *testing.T) {
		_, err := c.Query(ctxT(t), &qdrant.QueryPoints{CollectionName: "f", Query: q, Limit: qdrant.PtrOf(uint64(0))})
		wantCode(t, err, codes.InvalidArgument)
		_, err = c.GetPointsClient().Search(ctxT(t), &qdrant.SearchPoints{CollectionName: "f", Vector: []float32{2.4, 0}})
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("payload selectors", func(t *testing.T) {
		res := query(t, &qdrant.QueryPoints{Query: q, Limit: qdrant.PtrOf(uint64(1)), WithPayload: qdrant.NewWithPayloadInclude("n")})
		if p := res[0].GetPayload(); len(p) != 1 || p["n"].GetIntegerValue() != 20 {
			t.Errorf("include n: %v", p)
		}
		res = query(t, &qdrant.QueryPoints{Query: q, Limit: qdrant.PtrOf(uint64(1)), WithPayload: qdrant.NewWithPayloadExclude("n")})
		if p := res[0].GetPayload(); len(p) != 2 || p["space"].GetStringValue() != "a" {
			t.Errorf("exclude n: %v", p)
		}
		res = query(t, &qdrant.QueryPoints{Query: q, Limit: qdrant.PtrOf(uint64(1)), WithPayload: qdrant.NewWithPayload(true), WithVectors: qdrant.NewWithVectors(true)})
		if len(res[0].GetPayload()) != 3 || !slices.Equal(res[0].GetVectors().GetVector().GetDense().GetData(), []float32{2, 0}) {
			t.Errorf("everything: %v", res[0])
		}
	})
	t.Run("default limit 10", func(t *testing.T) {
		s := qdranttest.Start(t, qdranttest.Options{})
		c := client(t, s, "")
		createCollection(t, c, "big", 1, qdrant.Distance_Euclid)
		var pts []*qdrant.PointStruct
		for i := range 25 {
			pts = append(pts, pt(qdrant.NewIDNum(uint64(i)), []float32{float32(i)}, nil))
		}
		upsert(t, c, "big", true, pts...)
		res, err := c.Query(ctxT(t), &qdrant.QueryPoints{CollectionName: "big", Query: qdrant.NewQuery(0)})
		if err != nil || len(res) != 10 {
			t.Errorf("%d results, %v", len(res), err)
		}
	})
	t.Run("wrong dimension", func(t *testing.T) {
		_, err := c.Query(ctxT(t), &qdrant.QueryPoints{CollectionName: "f", Query: qdrant.NewQuery(1, 2, 3)})
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("legacy search", func(t *testing.T) {
		res, err := c.GetPointsClient().Search(ctxT(t), &qdrant.SearchPoints{CollectionName: "f", Vector: []float32{2.4, 0}, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(res.GetResult()); !slices.Equal(got, []uint64{2, 3, 1}) {
			t.Errorf("got %v", got)
		}
	})
}

func TestCosineNormalises(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	c := client(t, s, "")
	createCollection(t, c, "cos", 2, qdrant.Distance_Cosine)
	upsert(t, c, "cos", true, pt(qdrant.NewIDNum(1), []float32{3, 4}, nil), pt(qdrant.NewIDNum(2), []float32{-1, 0}, nil))
	res, err := c.Query(ctxT(t), &qdrant.QueryPoints{CollectionName: "cos", Query: qdrant.NewQuery(10, 0), WithVectors: qdrant.NewWithVectors(true)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].GetId().GetNum() != 1 || res[0].GetScore() < 0.5999 || res[0].GetScore() > 0.6001 {
		t.Fatalf("got %v, want point 1 first with similarity 0.6", res)
	}
	if v := res[0].GetVectors().GetVector().GetDense().GetData(); !slices.Equal(v, []float32{0.6, 0.8}) {
		t.Errorf("stored vector %v, want it normalised", v)
	}
}

func TestScroll(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	c := client(t, s, "")
	createCollection(t, c, "s", 1, qdrant.Distance_Euclid)
	uuids := []string{"ffffffff-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000001", "7fffffff-0000-4000-8000-000000000000"}
	var pts []*qdrant.PointStruct
	for _, u := range uuids {
		pts = append(pts, pt(qdrant.NewIDUUID(u), []float32{1}, nil))
	}
	for _, n := range []uint64{30, 2, 1 << 40} {
		pts = append(pts, pt(qdrant.NewIDNum(n), []float32{1}, map[string]any{"k": int64(n)}))
	}
	upsert(t, c, "s", true, pts...)
	// Numbers first, by value; then UUIDs, by their bytes.
	want := []string{"2", "30", "1099511627776", uuids[1], uuids[2], uuids[0]}
	for _, limit := range []uint32{1, 2, 4, 6, 10} {
		t.Run(strconv.Itoa(int(limit)), func(t *testing.T) {
			var got []string
			var offset *qdrant.PointId
			for range 10 {
				page, next, err := c.ScrollAndOffset(ctxT(t), &qdrant.ScrollPoints{CollectionName: "s", Offset: offset, Limit: &limit})
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > int(limit) {
					t.Fatalf("page of %d, limit %d", len(page), limit)
				}
				for _, p := range page {
					got = append(got, idString(p.GetId()))
				}
				if next == nil {
					break
				}
				offset = next
			}
			if !slices.Equal(got, want) {
				t.Errorf("scrolled %v, want %v", got, want)
			}
		})
	}
	// The default payload of a scroll is all of it; an offset need not
	// exist.
	page, _, err := c.ScrollAndOffset(ctxT(t), &qdrant.ScrollPoints{CollectionName: "s", Offset: qdrant.NewIDNum(3)})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 5 || page[0].GetId().GetNum() != 30 || page[0].GetPayload()["k"].GetIntegerValue() != 30 {
		t.Errorf("scroll from 3: %v", page)
	}
}

func TestDelete(t *testing.T) {
	c := filterFixture(t)
	ctx := ctxT(t)
	if _, err := c.Delete(ctx, &qdrant.DeletePoints{CollectionName: "f", Wait: qdrant.PtrOf(true), Points: qdrant.NewPointsSelector(qdrant.NewIDNum(1), qdrant.NewIDNum(99))}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, &qdrant.DeletePoints{CollectionName: "f", Wait: qdrant.PtrOf(true), Points: qdrant.NewPointsSelectorFilter(&qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("space", "b")}})}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, c, "f", nil); n != 2 {
		t.Errorf("%d points left, want 2", n)
	}
	_, err := c.Delete(ctx, &qdrant.DeletePoints{CollectionName: "f", Wait: qdrant.PtrOf(true), Points: qdrant.NewPointsSelector(qdrant.NewIDUUID("nope"))})
	wantCode(t, err, codes.InvalidArgument)
}

func TestFacet(t *testing.T) {
	c := filterFixture(t)
	ctx := ctxT(t)
	_, err := c.Facet(ctx, &qdrant.FacetCounts{CollectionName: "f", Key: "space"})
	wantCode(t, err, codes.InvalidArgument)
	for _, field := range []string{"space", "tags"} {
		if _, err := c.CreateFieldIndex(ctx, &qdrant.CreateFieldIndexCollection{CollectionName: "f", FieldName: field, FieldType: qdrant.FieldType_FieldTypeKeyword.Enum(), Wait: qdrant.PtrOf(true)}); err != nil {
			t.Fatal(err)
		}
	}
	hits, err := c.Facet(ctx, &qdrant.FacetCounts{CollectionName: "f", Key: "tags", Exact: qdrant.PtrOf(true)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hits {
		got = append(got, h.GetValue().GetStringValue()+"="+strconv.Itoa(int(h.GetCount())))
	}
	if want := []string{"t0=3", "t1=3", "six=1"}; !slices.Equal(got, want) {
		t.Errorf("facet = %v, want %v", got, want)
	}
	hits, err = c.Facet(ctx, &qdrant.FacetCounts{CollectionName: "f", Key: "space", Limit: qdrant.PtrOf(uint64(1)), Filter: &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("tags", "six")}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].GetValue().GetStringValue() != "b" || hits[0].GetCount() != 1 {
		t.Errorf("filtered facet = %v", hits)
	}
}

func TestFaults(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	c := client(t, s, "")
	health := func() error {
		_, err := c.HealthCheck(ctxT(t))
		return err
	}
	t.Run("times", func(t *testing.T) {
		s.Inject(qdranttest.Fault{Code: codes.Unavailable, Times: 2})
		for range 2 {
			wantCode(t, health(), codes.Unavailable)
		}
		if err := health(); err != nil {
			t.Errorf("after the injected failures: %v", err)
		}
	})
	t.Run("for", func(t *testing.T) {
		s.Inject(qdranttest.Fault{Code: codes.Internal, For: 150 * time.Millisecond})
		wantCode(t, health(), codes.Internal)
		time.Sleep(200 * time.Millisecond)
		if err := health(); err != nil {
			t.Errorf("after the fault's time: %v", err)
		}
	})
	t.Run("until heal", func(t *testing.T) {
		s.Inject(qdranttest.Fault{Code: codes.Unavailable})
		for range 3 {
			wantCode(t, health(), codes.Unavailable)
		}
		s.Heal()
		if err := health(); err != nil {
			t.Errorf("after Heal: %v", err)
		}
	})
	t.Run("retry-after", func(t *testing.T) {
		s.Inject(qdranttest.Fault{Code: codes.ResourceExhausted, Times: 1, RetryAfter: 3})
		var re *qdrant.QdrantResourceExhaustedError
		if err := health(); !errors.As(err, &re) || re.RetryAfterS != 3 {
			t.Errorf("got %v, want the go-client's ResourceExhausted error with retry-after 3", err)
		}
	})
	if n := s.Calls("Qdrant/HealthCheck"); n != 10 {
		t.Errorf("Calls = %d, want 10", n)
	}
}

func TestStopRestart(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{ApplyDelay: 100 * time.Millisecond})
	c := client(t, s, "")
	createCollection(t, c, "r", 1, qdrant.Distance_Euclid)
	upsert(t, c, "r", true, pt(qdrant.NewIDNum(1), []float32{1}, nil))
	// Acknowledged before the stop, applied after: kept, as by Qdrant's
	// WAL.
	upsert(t, c, "r", false, pt(qdrant.NewIDNum(2), []float32{2}, nil))
	addr := s.Addr()
	s.Stop()
	_, err := c.Count(ctxT(t), &qdrant.CountPoints{CollectionName: "r"})
	wantCode(t, err, codes.Unavailable)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Errorf("restarted on %s, was %s", s.Addr(), addr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := c.Count(ctxT(t), &qdrant.CountPoints{CollectionName: "r", Exact: qdrant.PtrOf(true)})
		if err == nil && n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %d points, %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCollectionNames(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	c := client(t, s, "")
	for _, tc := range []struct {
		label, name string
		want        codes.Code
	}{
		{"plain", "ok_name-1", codes.OK},
		{"255 bytes", strings.Repeat("n", 255), codes.OK},
		{"256 bytes", strings.Repeat("n", 256), codes.InvalidArgument},
		{"slash", "no/path", codes.InvalidArgument},
		{"star", "no*path", codes.InvalidArgument},
		{"colon", "a:b", codes.InvalidArgument},
		{"empty", "", codes.InvalidArgument},
	} {
		t.Run(tc.label, func(t *testing.T) {
			err := c.CreateCollection(ctxT(t), &qdrant.CreateCollection{
				CollectionName: tc.name,
				VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Euclid}),
			})
			wantCode(t, err, tc.want)
		})
	}
	// Only creation is strict: elsewhere such a name is just not found.
	if ok, err := c.CollectionExists(ctxT(t), "no/path"); err != nil || ok {
		t.Errorf("exists no/path: %v, %v", ok, err)
	}
}

func TestCollectionConfig(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{HNSW: qdranttest.HNSWConfig{EfConstruct: 64}})
	c := client(t, s, "")
	ctx := ctxT(t)
	createCollection(t, c, "plain", 2, qdrant.Distance_Euclid)
	if err := c.CreateCollection(ctx, &qdrant.CreateCollection{
		CollectionName: "tuned",
		HnswConfig:     &qdrant.HnswConfigDiff{M: qdrant.PtrOf(uint64(0)), PayloadM: qdrant.PtrOf(uint64(16))},
		VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Euclid,
			HnswConfig: &qdrant.HnswConfigDiff{FullScanThreshold: qdrant.PtrOf(uint64(50))}}),
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                 string
		m, ef, fullScan      uint64
		payloadM, vectorHNSW bool
	}{
		{"plain", qdranttest.DefaultM, 64, qdranttest.DefaultFullScanThresholdKB, false, false},
		{"tuned", 0, 64, qdranttest.DefaultFullScanThresholdKB, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := c.GetCollectionInfo(ctx, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			h := info.GetConfig().GetHnswConfig()
			if h.GetM() != tc.m || h.GetEfConstruct() != tc.ef || h.GetFullScanThreshold() != tc.fullScan || (h.PayloadM != nil) != tc.payloadM {
				t.Errorf("hnsw_config %v", h)
			}
			v := info.GetConfig().GetParams().GetVectorsConfig().GetParams()
			if (v.GetHnswConfig() != nil) != tc.vectorHNSW || (tc.vectorHNSW && v.GetHnswConfig().GetFullScanThreshold() != 50) {
				t.Errorf("vector hnsw_config %v", v.GetHnswConfig())
			}
			if v.Datatype != nil || v.MultivectorConfig != nil {
				t.Errorf("datatype %v, multivector %v: want neither", v.Datatype, v.MultivectorConfig)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		params *qdrant.VectorParams
	}{
		{"uint8", &qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Euclid, Datatype: qdrant.Datatype_Uint8.Enum()}},
		{"float16", &qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Euclid, Datatype: qdrant.Datatype_Float16.Enum()}},
		{"multi", &qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Euclid,
			MultivectorConfig: &qdrant.MultiVectorConfig{Comparator: qdrant.MultiVectorComparator_MaxSim}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.CreateCollection(ctx, &qdrant.CreateCollection{CollectionName: tc.name, VectorsConfig: qdrant.NewVectorsConfig(tc.params)}); err != nil {
				t.Fatal(err)
			}
			info, err := c.GetCollectionInfo(ctx, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			v := info.GetConfig().GetParams().GetVectorsConfig().GetParams()
			if v.GetDatatype() != tc.params.GetDatatype() || (v.MultivectorConfig == nil) != (tc.params.MultivectorConfig == nil) {
				t.Errorf("described as %v, created as %v", v, tc.params)
			}
			// Stored as Qdrant would store them, such vectors would score
			// otherwise: not implemented rather than approximated.
			_, err = c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: tc.name, Wait: qdrant.PtrOf(true), Points: []*qdrant.PointStruct{pt(qdrant.NewIDNum(1), []float32{1, 2}, nil)}})
			wantCode(t, err, codes.Unimplemented)
			_, err = c.Query(ctx, &qdrant.QueryPoints{CollectionName: tc.name, Query: qdrant.NewQuery(1, 2)})
			wantCode(t, err, codes.Unimplemented)
		})
	}
}

// TestLargeRequest: Qdrant decodes requests of any size, not grpc-go's
// default 4 MiB.
func TestLargeRequest(t *testing.T) {
	s := qdranttest.Start(t, qdranttest.Options{})
	c := client(t, s, "")
	createCollection(t, c, "big", 128, qdrant.Distance_Euclid)
	r := mrand.New(mrand.NewPCG(1, 2))
	pts := make([]*qdrant.PointStruct, 10_000) // 5 MiB of vectors
	for i := range pts {
		pts[i] = pt(qdrant.NewIDNum(uint64(i)), randomVector(r, 128), nil)
	}
	if size := proto.Size(&qdrant.UpsertPoints{CollectionName: "big", Points: pts}); size <= 4<<20 {
		t.Fatalf("request of %d bytes: not over 4 MiB", size)
	}
	upsert(t, c, "big", true, pts...)
	if n := count(t, c, "big", nil); n != uint64(len(pts)) {
		t.Errorf("%d points, want %d", n, len(pts))
	}
}

func randomVector(r *mrand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// approximateFixture is a collection of n random 32-dimensional points
// in spaces (payload "space": "s0", "s1", ... in turn), with a full-scan
// threshold of 10 KB (80 such vectors) and Qdrant's default m and
// ef_construct, and its points' vectors by id.
func approximateFixture(t *testing.T, n, spaces int) (*qdranttest.Server, *qdrant.Client, [][]float32) {
	t.Helper()
	s := qdranttest.Start(t, qdranttest.Options{HNSW: qdranttest.HNSWConfig{FullScanThresholdKB: 10}})
	c := client(t, s, "")
	createCollection(t, c, "a", 32, qdrant.Distance_Euclid)
	r := mrand.New(mrand.NewPCG(3, 4))
	vecs := make([][]float32, n)
	pts := make([]*qdrant.PointStruct, n)
	for i := range pts {
		vecs[i] = randomVector(r, 32)
		pts[i] = pt(qdrant.NewIDNum(uint64(i)), vecs[i], map[string]any{"space": "s" + strconv.Itoa(i%spaces)})
	}
	upsert(t, c, "a", true, pts...)
	return s, c, vecs
}

// exactIDs are the ids of the limit points of ids nearest to q.
func exactIDs(vecs [][]float32, ids []uint64, q []float32, limit int) []uint64 {
	type scored struct {
		id uint64
		d  float64
	}
	all := make([]scored, len(ids))
	for j, id := range ids {
		var s float64
		for i, x := range vecs[id] {
			s += float64(x-q[i]) * float64(x-q[i])
		}
		all[j] = scored{id, s}
	}
	slices.SortFunc(all, func(a, b scored) int { return cmp.Compare(a.d, b.d) })
	out := make([]uint64, min(limit, len(all)))
	for i := range out {
		out[i] = all[i].id
	}
	return out
}

func TestApproximateSearch(t *testing.T) {
	const n, limit = 2000, 10
	s, c, vecs := approximateFixture(t, n, 1)
	all := make([]uint64, n)
	for i := range all {
		all[i] = uint64(i)
	}
	r := mrand.New(mrand.NewPCG(5, 6))
	queries := make([][]float32, 40)
	for i := range queries {
		queries[i] = randomVector(r, 32)
	}
	// recall searches with params and returns the share of the true
	// nearest found.
	recall := func(t *testing.T, f *qdrant.Filter, ids []uint64, params *qdrant.SearchParams) float64 {
		t.Helper()
		found := 0
		for _, q := range queries {
			res, err := c.Query(ctxT(t), &qdrant.QueryPoints{CollectionName: "a", Query: qdrant.NewQueryDense(q), Filter: f,
				Limit: qdrant.PtrOf(uint64(limit)), Params: params})
			if err != nil {
				t.Fatal(err)
			}
			want := exactIDs(vecs, ids, q, limit)
			for _, p := range res {
				if slices.Contains(want, p.GetId().GetNum()) {
					found++
				}
			}
		}
		return float64(found) / float64(len(queries)*limit)
	}
	t.Run("small ef misses neighbours", func(t *testing.T) {
		before := s.ApproximateSearches()
		if got := recall(t, nil, all, &qdrant.SearchParams{HnswEf: qdrant.PtrOf(uint64(limit))}); got >= 0.95 {
			t.Errorf("recall %.3f with ef %d: the search is not approximate", got, limit)
		}
		if n := s.ApproximateSearches() - before; n != len(queries) {
			t.Errorf("%d approximate searches counted, want %d", n, len(queries))
		}
	})
	t.Run("larger ef finds more", func(t *testing.T) {
		low := recall(t, nil, all, &qdrant.SearchParams{HnswEf: qdrant.PtrOf(uint64(limit))})
		high := recall(t, nil, all, &qdrant.SearchParams{HnswEf: qdrant.PtrOf(uint64(400))})
		t.Logf("recall@%d: %.3f at ef %d, %.3f at ef 400", limit, low, limit, high)
		if high <= low || high < 0.95 {
			t.Errorf("recall %.3f at ef %d, %.3f at ef 400", low, limit, high)
		}
	})
	t.Run("default ef is ef_construct", func(t *testing.T) {
		def := recall(t, nil, all, nil)
		efc := recall(t, nil, all, &qdrant.SearchParams{HnswEf: qdrant.PtrOf(uint64(qdranttest.DefaultEfConstruct))})
		if def != efc {
			t.Errorf("recall %.3f without hnsw_ef, %.3f with ef_construct", def, efc)
		}
	})
	t.Run("exact", func(t *testing.T) {
		before := s.ApproximateSearches()
		if got := recall(t, nil, all, &qdrant.SearchParams{Exact: qdrant.PtrOf(true), HnswEf: qdrant.PtrOf(uint64(limit))}); got != 1 {
			t.Errorf("recall %.3f of an exact search", got)
		}
		if n := s.ApproximateSearches() - before; n != 0 {
			t.Errorf("%d exact searches counted as approximate", n)
		}
	})
	t.Run("below the full-scan threshold", func(t *testing.T) {
		// 50 points pass the filter: fewer than 80, scanned.
		ids := all[:50]
		f := &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewHasID(numIDs(ids)...)}}
		if got := recall(t, f, ids, &qdrant.SearchParams{HnswEf: qdrant.PtrOf(uint64(limit))}); got != 1 {
			t.Errorf("recall %.3f of a search that filters fewer points than the threshold", got)
		}
	})
}

func numIDs(ids []uint64) []*qdrant.PointId {
	out := make([]*qdrant.PointId, len(ids))
	for i, id := range ids {
		out[i] = qdrant.NewIDNum(id)
	}
	return out
}

// TestApproximateFilteredShort: a filtered graph search walks only the
// points the filter passes, so a space that is a small part of the
// collection falls apart into pieces and a search may return fewer
// points than limit, as Qdrant's may; an exact one returns them all.
func TestApproximateFilteredShort(t *testing.T) {
	const n, spaces, limit = 2000, 20, 20 // 100 points a space, over the threshold of 80
	_, c, _ := approximateFixture(t, n, spaces)
	r := mrand.New(mrand.NewPCG(7, 8))
	short := 0
	for i := range 20 {
		f := &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("space", "s"+strconv.Itoa(i))}}
		q := qdrant.NewQueryDense(randomVector(r, 32))
		res, err := c.Query(ctxT(t), &qdrant.QueryPoints{CollectionName: "a", Query: q, Filter: f, Limit: qdrant.PtrOf(uint64(limit))})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) < limit {
			short++
		}
		res, err = c.Query(ctxT(t), &qdrant.QueryPoints{CollectionName: "a", Query: q, Filter: f, Limit: qdrant.PtrOf(uint64(limit)),
			Params: &qdrant.SearchParams{Exact: qdrant.PtrOf(true)}})
		if err != nil || len(res) != limit {
			t.Fatalf("exact: %d points, %v", len(res), err)
		}
	}
	if short == 0 {
		t.Error("no filtered search came back short")
	}
	t.Logf("%d of 20 filtered searches short", short)
}
