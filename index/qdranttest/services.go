package qdranttest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

type collectionsService struct {
	qdrant.UnimplementedCollectionsServer
	s *Server
}

// Create creates a collection with one unnamed dense vector. Its HNSW
// configuration (the collection's, with the vector's overrides, over the
// server's defaults) decides when searches are approximate; its datatype
// and multivector configuration are kept and described (points of other
// than one float32 vector are not implemented); its other settings (WAL,
// optimisers, quantisation...) are accepted and have no effect here.
func (cs collectionsService) Create(_ context.Context, req *qdrant.CreateCollection) (*qdrant.CollectionOperationResponse, error) {
	start := time.Now()
	name := req.GetCollectionName()
	if err := validateCollectionName(name); err != nil {
		return nil, err
	}
	var params *qdrant.VectorParams
	switch v := req.GetVectorsConfig().GetConfig().(type) {
	case *qdrant.VectorsConfig_Params:
		params = v.Params
	default:
		return nil, unimplemented("a collection without a single unnamed vector")
	}
	if params.GetSize() == 0 {
		return nil, status.Error(codes.InvalidArgument, "Validation error in body: vectors.size: value 0 invalid, must be 1 or larger")
	}
	switch params.GetDistance() {
	case qdrant.Distance_Cosine, qdrant.Distance_Euclid, qdrant.Distance_Dot, qdrant.Distance_Manhattan:
	default:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: unknown distance")
	}
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.collections[name] != nil {
		return nil, status.Errorf(codes.AlreadyExists, "Wrong input: Collection `%s` already exists!", name)
	}
	hnsw := s.defaultHNSW
	if d := req.GetHnswConfig(); d != nil {
		hnsw = hnsw.with(d)
	}
	params = proto.Clone(params).(*qdrant.VectorParams) // kept beyond the request
	s.collections[name] = &collection{
		name:        name,
		size:        int(params.GetSize()),
		distance:    params.GetDistance(),
		datatype:    params.Datatype,
		multivector: params.GetMultivectorConfig(),
		hnsw:        hnsw,
		vectorHNSW:  params.GetHnswConfig(),
		points:      map[pointID]*point{},
		indexes:     map[string]*qdrant.PayloadSchemaInfo{},
	}
	return &qdrant.CollectionOperationResponse{Result: true, Time: since(start)}, nil
}

// validateCollectionName refuses, as Qdrant does on creation only, an
// empty name, one over 255 bytes, and one with a character file systems
// refuse in a file name (Qdrant's own tests refuse "no/path" and
// "no*path" at creation and accept them elsewhere).
func validateCollectionName(name string) error {
	switch {
	case name == "":
		return status.Error(codes.InvalidArgument, "Validation error in body: collection_name: must not be empty")
	case len(name) > 255:
		return status.Error(codes.InvalidArgument, "Validation error in body: collection_name: length must be at most 255")
	case strings.ContainsAny(name, "<>:\"/\\|?*\x00"):
		return status.Errorf(codes.InvalidArgument, "Validation error in body: collection_name: collection name cannot contain any of <>:\"/\\|?* or NUL: %q", name)
	}
	return nil
}

// Get describes a collection: its vector parameters, payload indexes and
// size.
func (cs collectionsService) Get(_ context.Context, req *qdrant.GetCollectionInfoRequest) (*qdrant.GetCollectionInfoResponse, error) {
	start := time.Now()
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	schema := map[string]*qdrant.PayloadSchemaInfo{}
	for field, info := range c.indexes {
		n := uint64(0)
		for _, p := range c.points {
			if p.payload[field] != nil {
				n++
			}
		}
		schema[field] = &qdrant.PayloadSchemaInfo{DataType: info.DataType, Params: info.Params, Points: &n}
	}
	count := uint64(len(c.points))
	return &qdrant.GetCollectionInfoResponse{Time: since(start), Result: &qdrant.CollectionInfo{
		Status:          qdrant.CollectionStatus_Green,
		OptimizerStatus: &qdrant.OptimizerStatus{Ok: true},
		SegmentsCount:   1,
		PointsCount:     &count,
		PayloadSchema:   schema,
		Config: &qdrant.CollectionConfig{
			Params: &qdrant.CollectionParams{
				ShardNumber: 1,
				VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{
					Size:              uint64(c.size),
					Distance:          c.distance,
					Datatype:          c.datatype,
					MultivectorConfig: c.multivector,
					HnswConfig:        c.vectorHNSW,
				}),
			},
			HnswConfig: c.hnsw.proto(),
		},
	}}, nil
}

// List names the collections.
func (cs collectionsService) List(context.Context, *qdrant.ListCollectionsRequest) (*qdrant.ListCollectionsResponse, error) {
	start := time.Now()
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &qdrant.ListCollectionsResponse{}
	for _, name := range slices.Sorted(maps.Keys(s.collections)) {
		out.Collections = append(out.Collections, &qdrant.CollectionDescription{Name: name})
	}
	out.Time = since(start)
	return out, nil
}

// Delete drops a collection; Qdrant answers false, not an error, for one
// that does not exist.
func (cs collectionsService) Delete(_ context.Context, req *qdrant.DeleteCollection) (*qdrant.CollectionOperationResponse, error) {
	start := time.Now()
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.collections[req.GetCollectionName()]
	delete(s.collections, req.GetCollectionName())
	return &qdrant.CollectionOperationResponse{Result: ok, Time: since(start)}, nil
}

// CollectionExists says whether a collection exists.
func (cs collectionsService) CollectionExists(_ context.Context, req *qdrant.CollectionExistsRequest) (*qdrant.CollectionExistsResponse, error) {
	start := time.Now()
	s := cs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.collections[req.GetCollectionName()]
	return &qdrant.CollectionExistsResponse{Result: &qdrant.CollectionExists{Exists: ok}, Time: since(start)}, nil
}

type pointsService struct {
	qdrant.UnimplementedPointsServer
	s *Server
}

func since(t time.Time) float64 { return time.Since(t).Seconds() }

// lookup returns a collection under mu, for a request to validate
// against.
func (s *Server) lookup(name string) (*collection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.collection(name)
}

// CreateFieldIndex records a payload index; faceting needs one.
func (ps pointsService) CreateFieldIndex(ctx context.Context, req *qdrant.CreateFieldIndexCollection) (*qdrant.PointsOperationResponse, error) {
	start := time.Now()
	c, err := ps.s.lookup(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	if req.FieldType == nil {
		return nil, status.Error(codes.InvalidArgument, "Wrong input: field_type is required")
	}
	info := &qdrant.PayloadSchemaInfo{
		DataType: qdrant.PayloadSchemaType(req.GetFieldType() + 1),
		Params:   req.GetFieldIndexParams(),
	}
	field := req.GetFieldName()
	res, err := ps.s.write(ctx, req.Wait, func() { c.indexes[field] = info })
	if err != nil {
		return nil, err
	}
	return &qdrant.PointsOperationResponse{Result: res, Time: since(start)}, nil
}

// Upsert validates every point (id, vector size) before accepting the
// batch, then writes it as Qdrant's update mode says.
func (ps pointsService) Upsert(ctx context.Context, req *qdrant.UpsertPoints) (*qdrant.PointsOperationResponse, error) {
	start := time.Now()
	if req.UpdateFilter != nil {
		return nil, unimplemented("upsert with update_filter")
	}
	s := ps.s
	s.mu.Lock()
	c, err := s.collection(req.GetCollectionName())
	var pts []*point
	if err == nil {
		pts, err = c.prepare(req.GetPoints())
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	mode := req.GetUpdateMode()
	res, err := s.write(ctx, req.Wait, func() {
		for _, p := range pts {
			_, exists := c.points[p.id]
			if (mode == qdrant.UpdateMode_InsertOnly && exists) || (mode == qdrant.UpdateMode_UpdateOnly && !exists) {
				continue
			}
			c.points[p.id] = p
		}
		c.version++
	})
	if err != nil {
		return nil, err
	}
	return &qdrant.PointsOperationResponse{Result: res, Time: since(start)}, nil
}

// Delete removes points by ids (unknown ids are ignored) or by filter.
func (ps pointsService) Delete(ctx context.Context, req *qdrant.DeletePoints) (*qdrant.PointsOperationResponse, error) {
	start := time.Now()
	s := ps.s
	c, err := s.lookup(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	var apply func()
	switch sel := req.GetPoints().GetPointsSelectorOneOf().(type) {
	case *qdrant.PointsSelector_Points:
		ids := make([]pointID, 0, len(sel.Points.GetIds()))
		for _, raw := range sel.Points.GetIds() {
			id, err := parseID(raw)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		apply = func() {
			for _, id := range ids {
				delete(c.points, id)
			}
			c.version++
		}
	case *qdrant.PointsSelector_Filter:
		f := sel.Filter
		if err := checkFilter(f); err != nil {
			return nil, err
		}
		apply = func() {
			for id, p := range c.points {
				if ok, _ := matchFilter(f, p); ok {
					delete(c.points, id)
				}
			}
			c.version++
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "Wrong input: no points selector")
	}
	res, err := s.write(ctx, req.Wait, apply)
	if err != nil {
		return nil, err
	}
	return &qdrant.PointsOperationResponse{Result: res, Time: since(start)}, nil
}

// Get returns the points with the given ids that exist, in request order,
// with their payload unless told otherwise.
func (ps pointsService) Get(_ context.Context, req *qdrant.GetPoints) (*qdrant.GetResponse, error) {
	start := time.Now()
	s := ps.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	out := &qdrant.GetResponse{}
	for _, raw := range req.GetIds() {
		id, err := parseID(raw)
		if err != nil {
			return nil, err
		}
		if p := c.points[id]; p != nil {
			out.Result = append(out.Result, &qdrant.RetrievedPoint{
				Id:      p.id.proto(),
				Payload: payloadOf(req.GetWithPayload(), p, true),
				Vectors: vectorsOf(req.GetWithVectors(), p),
			})
		}
	}
	out.Time = since(start)
	return out, nil
}

// Scroll pages through the points that pass the filter in point-id
// order: from offset (inclusive), limit of them (10 by default), with the
// next page's first id when there is one.
func (ps pointsService) Scroll(_ context.Context, req *qdrant.ScrollPoints) (*qdrant.ScrollResponse, error) {
	start := time.Now()
	if req.OrderBy != nil {
		return nil, unimplemented("scroll with order_by")
	}
	var from *pointID
	if req.Offset != nil {
		id, err := parseID(req.Offset)
		if err != nil {
			return nil, err
		}
		from = &id
	}
	limit := 10
	if req.Limit != nil {
		limit = int(req.GetLimit())
	}
	s := ps.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	pts, err := c.selected(req.GetFilter())
	if err != nil {
		return nil, err
	}
	if from != nil {
		i, _ := slices.BinarySearchFunc(pts, *from, func(p *point, id pointID) int { return p.id.compare(id) })
		pts = pts[i:]
	}
	out := &qdrant.ScrollResponse{}
	if len(pts) > limit {
		out.NextPageOffset = pts[limit].id.proto()
		pts = pts[:limit]
	}
	for _, p := range pts {
		out.Result = append(out.Result, &qdrant.RetrievedPoint{
			Id:      p.id.proto(),
			Payload: payloadOf(req.GetWithPayload(), p, true),
			Vectors: vectorsOf(req.GetWithVectors(), p),
		})
	}
	out.Time = since(start)
	return out, nil
}

// Count counts the points that pass the filter (always exactly).
func (ps pointsService) Count(_ context.Context, req *qdrant.CountPoints) (*qdrant.CountResponse, error) {
	start := time.Now()
	s := ps.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	pts, err := c.selected(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &qdrant.CountResponse{Result: &qdrant.CountResult{Count: uint64(len(pts))}, Time: since(start)}, nil
}

// Facet counts the points that pass the filter by value of an indexed
// keyword, integer or boolean field, most frequent first (then by value),
// at most limit values (10 by default). Counts are exact.
func (ps pointsService) Facet(_ context.Context, req *qdrant.FacetCounts) (*qdrant.FacetResponse, error) {
	start := time.Now()
	s := ps.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	key := req.GetKey()
	switch c.indexes[key].GetDataType() {
	case qdrant.PayloadSchemaType_Keyword, qdrant.PayloadSchemaType_Integer, qdrant.PayloadSchemaType_Bool:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "Bad request: Index required but not found for \"%s\" of one of the following types: [keyword, integer, bool]", key)
	}
	pts, err := c.selected(req.Filter)
	if err != nil {
		return nil, err
	}
	type bucket struct {
		v *qdrant.FacetValue
		n uint64
	}
	buckets := map[string]*bucket{}
	for _, p := range pts {
		seen := map[string]bool{}
		for _, v := range flatten(p.payload[key]) {
			fv, k, ok := facetValue(v)
			if !ok || seen[k] {
				continue
			}
			seen[k] = true
			if buckets[k] == nil {
				buckets[k] = &bucket{v: fv}
			}
			buckets[k].n++
		}
	}
	all := slices.Collect(maps.Values(buckets))
	slices.SortFunc(all, func(a, b *bucket) int {
		if a.n != b.n {
			if a.n > b.n {
				return -1
			}
			return 1
		}
		return compareFacet(a.v, b.v)
	})
	limit := uint64(10)
	if req.Limit != nil {
		limit = req.GetLimit()
	}
	out := &qdrant.FacetResponse{}
	for _, b := range all[:min(uint64(len(all)), limit)] {
		out.Hits = append(out.Hits, &qdrant.FacetHit{Value: b.v, Count: b.n})
	}
	out.Time = since(start)
	return out, nil
}

// Query implements the universal query for its nearest-neighbour form:
// a dense vector, with filter, score threshold, limit (10 by default) and
// offset.
func (ps pointsService) Query(_ context.Context, req *qdrant.QueryPoints) (*qdrant.QueryResponse, error) {
	start := time.Now()
	if len(req.GetPrefetch()) > 0 || req.LookupFrom != nil {
		return nil, unimplemented("prefetch and lookup_from")
	}
	if req.GetUsing() != "" {
		return nil, unimplemented("named vectors")
	}
	nearest, ok := req.GetQuery().GetVariant().(*qdrant.Query_Nearest)
	if !ok {
		return nil, unimplemented(fmt.Sprintf("query %T", req.GetQuery().GetVariant()))
	}
	dense, ok := nearest.Nearest.GetVariant().(*qdrant.VectorInput_Dense)
	if !ok {
		return nil, unimplemented(fmt.Sprintf("nearest to %T", nearest.Nearest.GetVariant()))
	}
	limit := uint64(10)
	if req.Limit != nil {
		limit = req.GetLimit()
	}
	res, err := ps.s.nearest(req.GetCollectionName(), dense.Dense.GetData(), search{
		filter: req.GetFilter(), params: req.GetParams(), limit: limit, offset: req.GetOffset(), threshold: req.ScoreThreshold,
		withPayload: req.GetWithPayload(), withVectors: req.GetWithVectors(),
	})
	if err != nil {
		return nil, err
	}
	return &qdrant.QueryResponse{Result: res, Time: since(start)}, nil
}

// Search is the older nearest-neighbour API, answered as Query is.
func (ps pointsService) Search(_ context.Context, req *qdrant.SearchPoints) (*qdrant.SearchResponse, error) {
	start := time.Now()
	if req.GetVectorName() != "" || req.SparseIndices != nil {
		return nil, unimplemented("named and sparse vectors")
	}
	res, err := ps.s.nearest(req.GetCollectionName(), req.GetVector(), search{
		filter: req.GetFilter(), params: req.GetParams(), limit: req.GetLimit(), offset: req.GetOffset(), threshold: req.ScoreThreshold,
		withPayload: req.GetWithPayload(), withVectors: req.GetWithVectors(),
	})
	if err != nil {
		return nil, err
	}
	return &qdrant.SearchResponse{Result: res, Time: since(start)}, nil
}

// search is a nearest-neighbour request.
type search struct {
	filter        *qdrant.Filter
	params        *qdrant.SearchParams
	limit, offset uint64
	threshold     *float32
	withPayload   *qdrant.WithPayloadSelector
	withVectors   *qdrant.WithVectorsSelector
}

// nearest ranks the points that pass the filter by their score for q,
// best first, equal scores in descending point-id order. It scans them
// all (exactly) as Qdrant's query planner does when they are fewer than
// the full-scan threshold, when the request asks for exact, or when the
// collection has no graph (m 0); otherwise it searches the HNSW graph,
// with ef as Qdrant takes it (see approximate), and may miss true
// neighbours and, filtered, return fewer than limit points.
func (s *Server) nearest(name string, q []float32, req search) ([]*qdrant.ScoredPoint, error) {
	if req.limit == 0 {
		return nil, status.Error(codes.InvalidArgument, "Validation error in body: [limit: value 0 invalid, must be 1 or larger]")
	}
	p := req.params
	if p.GetQuantization() != nil || p.GetAcorn() != nil || (p != nil && p.IndexedOnly != nil) {
		return nil, unimplemented("search params other than hnsw_ef and exact")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.collection(name)
	if err != nil {
		return nil, err
	}
	if err := c.checkSupported(); err != nil {
		return nil, err
	}
	if err := c.checkDim(q); err != nil {
		return nil, err
	}
	q = c.stored(q)
	pts, err := c.selected(req.filter)
	if err != nil {
		return nil, err
	}
	want := req.offset + req.limit
	var all []candidate
	var nodes []*point
	if p.GetExact() || c.vectorHNSWConfig().m == 0 || len(pts) < c.fullScanPoints() {
		all = make([]candidate, len(pts))
		for i, pt := range pts {
			all[i] = candidate{int32(i), c.score(q, pt.vector)}
		}
		nodes = pts
	} else {
		s.approximate++
		if c.graph == nil || c.graph.version != c.version {
			c.graph = c.buildGraph()
		}
		pass := make([]bool, len(c.graph.nodes))
		for i, n := range c.graph.nodes {
			_, pass[i] = slices.BinarySearchFunc(pts, n.id, func(p *point, id pointID) int { return p.id.compare(id) })
		}
		var ef *uint64
		if p != nil {
			ef = p.HnswEf
		}
		all = c.approximate(q, pass, ef, int(min(want, uint64(len(pts)))))
		nodes = c.graph.nodes
	}
	if req.threshold != nil {
		all = slices.DeleteFunc(all, func(sp candidate) bool { return !c.passes(sp.score, *req.threshold) })
	}
	slices.SortFunc(all, func(a, b candidate) int {
		switch {
		case c.better(a.score, b.score):
			return -1
		case c.better(b.score, a.score):
			return 1
		}
		return nodes[b.node].id.compare(nodes[a.node].id)
	})
	all = all[min(req.offset, uint64(len(all))):]
	all = all[:min(req.limit, uint64(len(all)))]
	out := make([]*qdrant.ScoredPoint, len(all))
	for i, sp := range all {
		pt := nodes[sp.node]
		out[i] = &qdrant.ScoredPoint{
			Id:      pt.id.proto(),
			Score:   sp.score,
			Payload: payloadOf(req.withPayload, pt, false),
			Vectors: vectorsOf(req.withVectors, pt),
		}
	}
	return out, nil
}
