package qdranttest

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// pointID is a point's id as Qdrant orders them: every numeric id
// before every UUID, numbers by value, UUIDs by their bytes (which is
// the order of their canonical text).
type pointID struct {
	isUUID bool
	num    uint64
	uuid   uuid.UUID
}

func (a pointID) compare(b pointID) int {
	switch {
	case a.isUUID != b.isUUID:
		if a.isUUID {
			return 1
		}
		return -1
	case a.isUUID:
		return bytes.Compare(a.uuid[:], b.uuid[:])
	default:
		return cmp.Compare(a.num, b.num)
	}
}

func (a pointID) proto() *qdrant.PointId {
	if a.isUUID {
		return qdrant.NewIDUUID(a.uuid.String())
	}
	return qdrant.NewIDNum(a.num)
}

// parseID reads a point id as Qdrant does: a number, or a UUID in any of
// the textual forms it parses (answered in canonical form), anything else
// being invalid input.
func parseID(id *qdrant.PointId) (pointID, error) {
	switch v := id.GetPointIdOptions().(type) {
	case *qdrant.PointId_Num:
		return pointID{num: v.Num}, nil
	case *qdrant.PointId_Uuid:
		u, err := uuid.Parse(v.Uuid)
		if err != nil {
			return pointID{}, status.Errorf(codes.InvalidArgument, "Unable to parse UUID: %s", v.Uuid)
		}
		return pointID{isUUID: true, uuid: u}, nil
	default:
		return pointID{}, status.Error(codes.InvalidArgument, "Wrong input: point id is missing")
	}
}

// point is one stored point.
type point struct {
	id      pointID
	vector  []float32
	payload map[string]*qdrant.Value
}

// collection is one Qdrant collection: a single unnamed dense vector per
// point.
type collection struct {
	name     string
	size     int
	distance qdrant.Distance
	// datatype and multivector are as created (nil: float32, one vector a
	// point); points of other kinds are not implemented, but the
	// collection describes itself as Qdrant would.
	datatype    *qdrant.Datatype
	multivector *qdrant.MultiVectorConfig
	// hnsw is the collection's HNSW configuration, vectorHNSW the
	// vector's own overrides as created (nil: none).
	hnsw       hnswConfig
	vectorHNSW *qdrant.HnswConfigDiff
	points     map[pointID]*point
	indexes    map[string]*qdrant.PayloadSchemaInfo
	// version counts the changes to points; graph is the HNSW graph of
	// the version it was built for.
	version uint64
	graph   *graph
}

func notFound(name string) error {
	return status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", name)
}

// vectorOf returns a point's or query's single dense vector.
func vectorOf(v *qdrant.Vector) ([]float32, error) {
	if d := v.GetDense(); d != nil {
		return d.GetData(), nil
	}
	if v.GetVector() != nil || v.GetIndices() != nil || v.GetVectorsCount() != 0 {
		return nil, status.Error(codes.Unimplemented, "qdranttest: only dense vectors are implemented")
	}
	return v.GetData(), nil
}

// checkSupported refuses work on points of a kind this server does not
// implement: vectors stored as uint8 or float16 (Qdrant converts them on
// the way in, which would change every score), and multivectors.
func (c *collection) checkSupported() error {
	if c.multivector != nil {
		return unimplemented("a multivector collection")
	}
	if dt := c.datatype; dt != nil && *dt != qdrant.Datatype_Float32 {
		return unimplemented(fmt.Sprintf("a collection of %v vectors", *dt))
	}
	return nil
}

// checkDim validates a vector against the collection, with Qdrant's
// message.
func (c *collection) checkDim(v []float32) error {
	if len(v) != c.size {
		return status.Errorf(codes.InvalidArgument, "Wrong input: Vector dimension error: expected dim: %d, got %d", c.size, len(v))
	}
	return nil
}

// prepare turns upserted points into stored ones, validating all of them
// first: a batch with one bad point changes nothing.
func (c *collection) prepare(in []*qdrant.PointStruct) ([]*point, error) {
	if err := c.checkSupported(); err != nil {
		return nil, err
	}
	out := make([]*point, 0, len(in))
	for _, p := range in {
		id, err := parseID(p.GetId())
		if err != nil {
			return nil, err
		}
		var vec []float32
		switch v := p.GetVectors().GetVectorsOptions().(type) {
		case *qdrant.Vectors_Vector:
			if vec, err = vectorOf(v.Vector); err != nil {
				return nil, err
			}
		case *qdrant.Vectors_Vectors:
			return nil, status.Error(codes.InvalidArgument, "Wrong input: Not existing vector name error: the collection has a single unnamed vector")
		default:
			return nil, status.Error(codes.InvalidArgument, "Wrong input: point has no vector")
		}
		if err := c.checkDim(vec); err != nil {
			return nil, err
		}
		payload := make(map[string]*qdrant.Value, len(p.GetPayload()))
		for k, v := range p.GetPayload() {
			payload[k] = proto.Clone(v).(*qdrant.Value)
		}
		out = append(out, &point{id: id, vector: c.stored(vec), payload: payload})
	}
	return out, nil
}

// stored is the vector as Qdrant keeps it: cosine collections normalise
// vectors on the way in.
func (c *collection) stored(v []float32) []float32 {
	v = slices.Clone(v)
	if c.distance == qdrant.Distance_Cosine {
		normalise(v)
	}
	return v
}

func normalise(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	n := math.Sqrt(s)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
}

// score is Qdrant's score of a stored vector for query q (already
// normalised for cosine): a distance for Euclid and Manhattan (smaller is
// better), a similarity for Cosine and Dot (larger is better).
func (c *collection) score(q, v []float32) float32 {
	var s float32
	switch c.distance {
	case qdrant.Distance_Euclid:
		for i := range q {
			d := q[i] - v[i]
			s += d * d
		}
		return float32(math.Sqrt(float64(s)))
	case qdrant.Distance_Manhattan:
		for i := range q {
			s += float32(math.Abs(float64(q[i] - v[i])))
		}
		return s
	default:
		for i := range q {
			s += q[i] * v[i]
		}
		return s
	}
}

// better reports whether score a ranks before score b.
func (c *collection) better(a, b float32) bool {
	if c.distance == qdrant.Distance_Euclid || c.distance == qdrant.Distance_Manhattan {
		return a < b
	}
	return a > b
}

// passes applies a score threshold: an upper bound for distances, a
// lower bound for similarities, exclusive both ways as Qdrant's is (a
// point exactly at the threshold is left out).
func (c *collection) passes(score, threshold float32) bool {
	if c.distance == qdrant.Distance_Euclid || c.distance == qdrant.Distance_Manhattan {
		return score < threshold
	}
	return score > threshold
}

// selected returns the points that pass filter f, ordered by id.
func (c *collection) selected(f *qdrant.Filter) ([]*point, error) {
	if err := checkFilter(f); err != nil {
		return nil, err
	}
	out := make([]*point, 0, len(c.points))
	for _, p := range c.points {
		ok, err := matchFilter(f, p)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *point) int { return a.id.compare(b.id) })
	return out, nil
}

// matchFilter evaluates a filter as Qdrant documents it: every must
// condition, at least one should condition (when there are any), no
// must_not condition, and at least min_count of min_should's conditions.
// A missing filter matches every point.
func matchFilter(f *qdrant.Filter, p *point) (bool, error) {
	if f == nil {
		return true, nil
	}
	for _, c := range f.GetMust() {
		ok, err := matchCondition(c, p)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, c := range f.GetMustNot() {
		ok, err := matchCondition(c, p)
		if err != nil || ok {
			return false, err
		}
	}
	if should := f.GetShould(); len(should) > 0 {
		hit := false
		for _, c := range should {
			ok, err := matchCondition(c, p)
			if err != nil {
				return false, err
			}
			hit = hit || ok
		}
		if !hit {
			return false, nil
		}
	}
	if ms := f.GetMinShould(); ms != nil {
		n := uint64(0)
		for _, c := range ms.GetConditions() {
			ok, err := matchCondition(c, p)
			if err != nil {
				return false, err
			}
			if ok {
				n++
			}
		}
		if n < ms.GetMinCount() {
			return false, nil
		}
	}
	return true, nil
}

// checkFilter refuses, before anything is evaluated, a filter with a
// condition this server does not implement or with malformed ids, so
// that no request silently skips part of its filter.
func checkFilter(f *qdrant.Filter) error {
	if f == nil {
		return nil
	}
	for _, group := range [][]*qdrant.Condition{f.GetMust(), f.GetShould(), f.GetMustNot(), f.GetMinShould().GetConditions()} {
		for _, c := range group {
			if err := checkCondition(c); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkCondition(c *qdrant.Condition) error {
	switch v := c.GetConditionOneOf().(type) {
	case *qdrant.Condition_Field:
		fc := v.Field
		if strings.ContainsAny(fc.GetKey(), ".[") {
			return unimplemented("nested payload key " + fc.GetKey())
		}
		if fc.GetGeoBoundingBox() != nil || fc.GetGeoRadius() != nil || fc.GetGeoPolygon() != nil ||
			fc.GetValuesCount() != nil || fc.GetDatetimeRange() != nil || fc.IsEmpty != nil || fc.IsNull != nil {
			return unimplemented("this field condition")
		}
		if (fc.GetMatch() == nil) == (fc.GetRange() == nil) {
			return status.Error(codes.InvalidArgument, "Wrong input: a field condition needs exactly one of match or range")
		}
		switch mv := fc.GetMatch().GetMatchValue().(type) {
		case nil, *qdrant.Match_Keyword, *qdrant.Match_Integer, *qdrant.Match_Boolean, *qdrant.Match_Keywords, *qdrant.Match_Integers:
		default:
			return unimplemented(fmt.Sprintf("match %T", mv))
		}
		return nil
	case *qdrant.Condition_HasId:
		for _, raw := range v.HasId.GetHasId() {
			if _, err := parseID(raw); err != nil {
				return err
			}
		}
		return nil
	case *qdrant.Condition_Filter:
		return checkFilter(v.Filter)
	default:
		return unimplemented(fmt.Sprintf("condition %T", v))
	}
}

func unimplemented(what string) error {
	return status.Errorf(codes.Unimplemented, "qdranttest: %s is not implemented", what)
}

func matchCondition(c *qdrant.Condition, p *point) (bool, error) {
	switch v := c.GetConditionOneOf().(type) {
	case *qdrant.Condition_Field:
		return matchField(v.Field, p)
	case *qdrant.Condition_HasId:
		for _, raw := range v.HasId.GetHasId() {
			id, err := parseID(raw)
			if err != nil {
				return false, err
			}
			if id == p.id {
				return true, nil
			}
		}
		return false, nil
	case *qdrant.Condition_Filter:
		return matchFilter(v.Filter, p)
	default:
		return false, unimplemented(fmt.Sprintf("condition %T", v))
	}
}

// matchField evaluates a field condition (checked by checkFilter) on a
// top-level payload key; a list value matches when any of its elements
// does, as in Qdrant.
func matchField(fc *qdrant.FieldCondition, p *point) (bool, error) {
	for _, v := range flatten(p.payload[fc.GetKey()]) {
		if fc.GetRange() != nil {
			if inRange(fc.GetRange(), v) {
				return true, nil
			}
			continue
		}
		ok, err := matchValue(fc.GetMatch(), v)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func flatten(v *qdrant.Value) []*qdrant.Value {
	if v == nil {
		return nil
	}
	if l, ok := v.GetKind().(*qdrant.Value_ListValue); ok {
		return l.ListValue.GetValues()
	}
	return []*qdrant.Value{v}
}

func matchValue(m *qdrant.Match, v *qdrant.Value) (bool, error) {
	switch mv := m.GetMatchValue().(type) {
	case *qdrant.Match_Keyword:
		s, ok := v.GetKind().(*qdrant.Value_StringValue)
		return ok && s.StringValue == mv.Keyword, nil
	case *qdrant.Match_Integer:
		i, ok := v.GetKind().(*qdrant.Value_IntegerValue)
		return ok && i.IntegerValue == mv.Integer, nil
	case *qdrant.Match_Boolean:
		b, ok := v.GetKind().(*qdrant.Value_BoolValue)
		return ok && b.BoolValue == mv.Boolean, nil
	case *qdrant.Match_Keywords:
		s, ok := v.GetKind().(*qdrant.Value_StringValue)
		return ok && slices.Contains(mv.Keywords.GetStrings(), s.StringValue), nil
	case *qdrant.Match_Integers:
		i, ok := v.GetKind().(*qdrant.Value_IntegerValue)
		return ok && slices.Contains(mv.Integers.GetIntegers(), i.IntegerValue), nil
	default:
		return false, unimplemented(fmt.Sprintf("match %T", mv))
	}
}

func inRange(r *qdrant.Range, v *qdrant.Value) bool {
	var x float64
	switch n := v.GetKind().(type) {
	case *qdrant.Value_IntegerValue:
		x = float64(n.IntegerValue)
	case *qdrant.Value_DoubleValue:
		x = n.DoubleValue
	default:
		return false
	}
	return (r.Lt == nil || x < *r.Lt) && (r.Lte == nil || x <= *r.Lte) &&
		(r.Gt == nil || x > *r.Gt) && (r.Gte == nil || x >= *r.Gte)
}

// payloadOf applies a with_payload selector; nil means def.
func payloadOf(sel *qdrant.WithPayloadSelector, p *point, def bool) map[string]*qdrant.Value {
	keep := func(string) bool { return def }
	switch s := sel.GetSelectorOptions().(type) {
	case *qdrant.WithPayloadSelector_Enable:
		keep = func(string) bool { return s.Enable }
	case *qdrant.WithPayloadSelector_Include:
		keep = func(k string) bool { return slices.Contains(s.Include.GetFields(), k) }
	case *qdrant.WithPayloadSelector_Exclude:
		keep = func(k string) bool { return !slices.Contains(s.Exclude.GetFields(), k) }
	}
	out := map[string]*qdrant.Value{}
	for k, v := range p.payload {
		if keep(k) {
			out[k] = proto.Clone(v).(*qdrant.Value)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// vectorsOf applies a with_vectors selector (none by default).
func vectorsOf(sel *qdrant.WithVectorsSelector, p *point) *qdrant.VectorsOutput {
	switch s := sel.GetSelectorOptions().(type) {
	case *qdrant.WithVectorsSelector_Enable:
		if !s.Enable {
			return nil
		}
	case *qdrant.WithVectorsSelector_Include:
		if !slices.Contains(s.Include.GetNames(), "") {
			return nil
		}
	default:
		return nil
	}
	return &qdrant.VectorsOutput{VectorsOptions: &qdrant.VectorsOutput_Vector{
		Vector: &qdrant.VectorOutput{Vector: &qdrant.VectorOutput_Dense{Dense: &qdrant.DenseVector{Data: slices.Clone(p.vector)}}},
	}}
}

// facetValue is a payload value faceting counts: keywords, integers and
// booleans.
func facetValue(v *qdrant.Value) (*qdrant.FacetValue, string, bool) {
	switch k := v.GetKind().(type) {
	case *qdrant.Value_StringValue:
		return &qdrant.FacetValue{Variant: &qdrant.FacetValue_StringValue{StringValue: k.StringValue}}, "s" + k.StringValue, true
	case *qdrant.Value_IntegerValue:
		return &qdrant.FacetValue{Variant: &qdrant.FacetValue_IntegerValue{IntegerValue: k.IntegerValue}}, fmt.Sprint("i", k.IntegerValue), true
	case *qdrant.Value_BoolValue:
		return &qdrant.FacetValue{Variant: &qdrant.FacetValue_BoolValue{BoolValue: k.BoolValue}}, fmt.Sprint("b", k.BoolValue), true
	}
	return nil, "", false
}

func compareFacet(a, b *qdrant.FacetValue) int {
	rank := func(v *qdrant.FacetValue) int {
		switch v.GetVariant().(type) {
		case *qdrant.FacetValue_StringValue:
			return 0
		case *qdrant.FacetValue_IntegerValue:
			return 1
		}
		return 2
	}
	if c := cmp.Compare(rank(a), rank(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.GetStringValue(), b.GetStringValue()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.GetIntegerValue(), b.GetIntegerValue()); c != 0 {
		return c
	}
	switch {
	case a.GetBoolValue() == b.GetBoolValue():
		return 0
	case b.GetBoolValue():
		return -1
	}
	return 1
}
