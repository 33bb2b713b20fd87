package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visage/visage/align"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/store"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// decodeJSON reads a JSON object body into v.
func decodeJSON(c *gin.Context, v any) error {
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err, "malformed JSON: ")
	}
	return nil
}

// timingsJSON are per-stage wall times in milliseconds.
type timingsJSON struct {
	Decode float64  `json:"decode"`
	Detect float64  `json:"detect"`
	Align  float64  `json:"align"`
	Embed  float64  `json:"embed"`
	Search *float64 `json:"search,omitempty"`
}

func msOf(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/100) / 10 }

func toTimings(t gallery.Timings) timingsJSON {
	return timingsJSON{Decode: msOf(t.Decode), Detect: msOf(t.Detect), Align: msOf(t.Align), Embed: msOf(t.Embed)}
}

func boxOf(r image.Rectangle) [4]int { return [4]int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y} }

func roundTo(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func landmarksOf(pts []align.Point) [][2]int {
	out := make([][2]int, len(pts))
	for i, p := range pts {
		out[i] = [2]int{p.X, p.Y}
	}
	return out
}

// ---- collections

type collectionRequest struct {
	Name       string  `json:"name"`
	Threshold  float64 `json:"threshold"`
	TargetFPIR float64 `json:"target_fpir"`
}

// decisionJSON is how a collection decides now (gallery.Operating).
type decisionJSON struct {
	Policy     string   `json:"policy"`
	TargetFPIR *float64 `json:"target_fpir,omitempty"`
	// Threshold is the distance threshold: the fixed one, or the distance
	// at which a typical probe matches its nearest subject.
	Threshold      float64  `json:"threshold"`
	ScoreThreshold *float64 `json:"score_threshold,omitempty"`
	Subjects       int      `json:"subjects"`
	// ProxyFPIR and the calibration fields come from the collection's own
	// strangers-by-proxy, once measured.
	ProxyFPIR          *float64 `json:"proxy_fpir,omitempty"`
	CalibratedSubjects *int     `json:"calibrated_subjects,omitempty"`
	CalibrationSamples *int     `json:"calibration_samples,omitempty"`
}

type collectionJSON struct {
	Name       string       `json:"name"`
	Threshold  float64      `json:"threshold"`
	TargetFPIR *float64     `json:"target_fpir,omitempty"`
	Decision   decisionJSON `json:"decision"`
	CreatedAt  time.Time    `json:"created_at"`
}

func toDecision(op gallery.Operating, cal *gallery.Calibration) decisionJSON {
	d := decisionJSON{Policy: "threshold", Threshold: roundTo(op.Distance, 4), Subjects: op.Subjects}
	if !op.Policy.Fixed() {
		t, st := op.Policy.TargetFPIR, roundTo(op.ScoreThreshold, 4)
		d.Policy, d.TargetFPIR, d.ScoreThreshold = "target_fpir", &t, &st
	}
	if cal != nil && cal.Samples > 0 {
		a := roundTo(cal.Above, 4)
		d.ProxyFPIR, d.CalibratedSubjects, d.CalibrationSamples = &a, &cal.Subjects, &cal.Samples
	}
	return d
}

func toCollection(v gallery.CollectionView) collectionJSON {
	d := toDecision(v.Operating, v.Calibration)
	return collectionJSON{Name: v.Name, Threshold: d.Threshold, TargetFPIR: d.TargetFPIR, Decision: d, CreatedAt: v.CreatedAt}
}

func (s *Server) createCollection(c *gin.Context) {
	var req collectionRequest
	if err := decodeJSON(c, &req); err != nil {
		s.failErr(c, err)
		return
	}
	if k := key(c); !inScope(k, req.Name) {
		fail(c, newProblem(TypeForbidden, "the key is scoped to another collection"))
		return
	}
	ctx := c.Request.Context()
	if _, err := s.svc().CreateCollection(ctx, req.Name, gallery.Policy{Threshold: req.Threshold, TargetFPIR: req.TargetFPIR}); err != nil {
		s.failErr(c, err)
		return
	}
	v, err := s.svc().Collection(ctx, req.Name)
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.JSON(http.StatusCreated, toCollection(v))
}

func (s *Server) listCollections(c *gin.Context) {
	colls, err := s.svc().Collections(c.Request.Context())
	if err != nil {
		s.failErr(c, err)
		return
	}
	k := key(c)
	out := []collectionJSON{}
	for _, coll := range colls {
		if inScope(k, coll.Name) {
			out = append(out, toCollection(coll))
		}
	}
	c.JSON(http.StatusOK, gin.H{"collections": out})
}

func (s *Server) getCollection(c *gin.Context) {
	v, err := s.svc().Collection(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, toCollection(v))
}

func (s *Server) updateCollection(c *gin.Context) {
	var req struct {
		Threshold  float64 `json:"threshold"`
		TargetFPIR float64 `json:"target_fpir"`
	}
	if err := decodeJSON(c, &req); err != nil {
		s.failErr(c, err)
		return
	}
	ctx := c.Request.Context()
	if _, err := s.svc().UpdateCollection(ctx, c.Param("name"), gallery.Policy{Threshold: req.Threshold, TargetFPIR: req.TargetFPIR}); err != nil {
		s.failErr(c, err)
		return
	}
	v, err := s.svc().Collection(ctx, c.Param("name"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, toCollection(v))
}

func (s *Server) deleteCollection(c *gin.Context) {
	if err := s.svc().DeleteCollection(c.Request.Context(), key(c).ID, c.Param("name")); err != nil {
		s.failErr(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (s *Server) collectionStats(c *gin.Context) {
	ctx := c.Request.Context()
	v, err := s.svc().Collection(ctx, c.Param("name"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	st, err := s.svc().Store().CollectionStats(ctx, v.Name)
	if err != nil {
		s.failErr(c, err)
		return
	}
	d := toDecision(v.Operating, v.Calibration)
	c.JSON(http.StatusOK, struct {
		store.CollectionStats
		Threshold float64      `json:"threshold"`
		Decision  decisionJSON `json:"decision"`
	}{st, d.Threshold, d})
}

// ---- subjects

type subjectRequest struct {
	ExternalID  *string         `json:"external_id"`
	DisplayName *string         `json:"display_name"`
	Metadata    json.RawMessage `json:"metadata"`
}

// check applies gallery's field rules, the same as import jobs'.
func (r subjectRequest) check(create bool) error {
	if create && r.ExternalID == nil {
		return invalid("external_id", "required")
	}
	if r.ExternalID != nil {
		if err := gallery.CheckExternalID(*r.ExternalID); err != nil {
			return err
		}
	}
	if r.DisplayName != nil {
		if err := gallery.CheckDisplayName(*r.DisplayName); err != nil {
			return err
		}
	}
	return gallery.CheckMetadata(r.Metadata)
}

func (s *Server) createSubject(c *gin.Context) {
	var req subjectRequest
	if err := decodeJSON(c, &req); err != nil {
		s.failErr(c, err)
		return
	}
	if err := req.check(true); err != nil {
		s.failErr(c, err)
		return
	}
	sub := store.Subject{Collection: c.Param("name"), ExternalID: *req.ExternalID, Metadata: req.Metadata}
	if req.DisplayName != nil {
		sub.DisplayName = *req.DisplayName
	}
	if string(sub.Metadata) == "null" {
		sub.Metadata = nil
	}
	out, err := s.svc().Store().CreateSubject(c.Request.Context(), sub)
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.JSON(http.StatusCreated, out)
}

func (s *Server) getSubject(c *gin.Context) {
	sub, err := s.svc().Store().GetSubject(c.Request.Context(), c.Param("name"), c.Param("id"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, sub)
}

func (s *Server) listSubjects(c *gin.Context) {
	limit := 50
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.failErr(c, invalid("limit", "an integer in [1, 1000]"))
			return
		}
		limit = n
	}
	if ext, ok := c.GetQuery("external_id"); ok {
		// An exact lookup: clients that keep their own ids (importers)
		// find their subject in one call.
		subs := []store.Subject{}
		sub, err := s.svc().Store().GetSubjectByExternalID(c.Request.Context(), c.Param("name"), ext)
		switch {
		case err == nil:
			subs = append(subs, sub)
		case !errors.Is(err, store.ErrNotFound):
			s.failErr(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"subjects": subs, "next": ""})
		return
	}
	subs, next, err := s.svc().Store().ListSubjects(c.Request.Context(), store.SubjectQuery{
		Collection: c.Param("name"), Search: c.Query("q"), After: c.Query("after"), Limit: limit,
	})
	if err != nil {
		s.failErr(c, err)
		return
	}
	if subs == nil {
		subs = []store.Subject{}
	}
	c.JSON(http.StatusOK, gin.H{"subjects": subs, "next": next})
}

func (s *Server) updateSubject(c *gin.Context) {
	var req subjectRequest
	if err := decodeJSON(c, &req); err != nil {
		s.failErr(c, err)
		return
	}
	if err := req.check(false); err != nil {
		s.failErr(c, err)
		return
	}
	p := store.SubjectPatch{ExternalID: req.ExternalID, DisplayName: req.DisplayName}
	if len(req.Metadata) > 0 && string(req.Metadata) != "null" {
		p.Metadata = req.Metadata
	}
	sub, err := s.svc().Store().UpdateSubject(c.Request.Context(), c.Param("name"), c.Param("id"), p)
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, sub)
}

func (s *Server) deleteSubject(c *gin.Context) {
	if err := s.svc().DeleteSubject(c.Request.Context(), key(c).ID, c.Param("name"), c.Param("id")); err != nil {
		s.failErr(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// ---- faces

type enrollResultJSON struct {
	Index   int            `json:"index"`
	Status  string         `json:"status"`
	Face    *store.Face    `json:"face,omitempty"`
	Quality *align.Quality `json:"quality,omitempty"`
	// Code and Reasons say why an image was rejected.
	Code    string       `json:"code,omitempty"`
	Reasons []string     `json:"reasons,omitempty"`
	Detail  string       `json:"detail,omitempty"`
	Timings *timingsJSON `json:"timings_ms,omitempty"`
}

// problemTypeOfCode is the problem type of an image rejection code.
func problemTypeOfCode(code string) string {
	switch code {
	case gallery.CodeNoFace:
		return TypeNoFace
	case gallery.CodeTooManyFaces:
		return TypeTooManyFaces
	case gallery.CodeQualityRejected:
		return TypeQualityRejected
	case "image_too_large":
		return TypeTooLarge
	}
	return TypeBadImage
}

func (s *Server) enroll(c *gin.Context) {
	p, err := s.readPayload(c)
	if err != nil {
		s.failErr(c, err)
		return
	}
	images := p.images()
	if len(images) == 0 {
		s.failErr(c, invalid("image", "at least one image is required"))
		return
	}
	if len(images) > s.cfg.MaxImages {
		s.failErr(c, invalid("image", fmt.Sprintf("at most %d images per request", s.cfg.MaxImages)))
		return
	}
	results, err := s.svc().Enroll(c.Request.Context(), key(c).ID, c.Param("name"), c.Param("id"), images)
	if err != nil {
		s.failErr(c, err)
		return
	}
	out := make([]enrollResultJSON, len(results))
	accepted := 0
	for i, r := range results {
		j := enrollResultJSON{Index: i, Status: r.Status, Code: r.Code, Reasons: r.Reasons}
		if r.Quality != nil {
			q := r.Quality.Rounded()
			j.Quality = &q
		}
		if r.Status != gallery.StatusRejected {
			f := r.Face
			j.Face = &f
			accepted++
		} else if r.Err != nil {
			j.Detail = r.Err.Error()
		}
		if r.Timings != (gallery.Timings{}) {
			t := toTimings(r.Timings)
			j.Timings = &t
			s.metrics.ObserveTimings(r.Timings)
		}
		out[i] = j
	}
	if accepted == 0 {
		prob := newProblem(problemTypeOfCode(out[0].Code), "no image was enrolled: "+out[0].Detail)
		prob.Code, prob.Reasons, prob.Results = out[0].Code, out[0].Reasons, out
		fail(c, prob)
		return
	}
	status := http.StatusOK
	for _, r := range out {
		if r.Status == gallery.StatusEnrolled {
			status = http.StatusCreated
		}
	}
	c.JSON(status, gin.H{"subject_id": c.Param("id"), "results": out})
}

func (s *Server) listFaces(c *gin.Context) {
	ctx := c.Request.Context()
	if _, err := s.svc().Store().GetSubject(ctx, c.Param("name"), c.Param("id")); err != nil {
		s.failErr(c, err)
		return
	}
	faces, err := s.svc().Store().ListFaces(ctx, c.Param("name"), c.Param("id"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	if faces == nil {
		faces = []store.Face{}
	}
	c.JSON(http.StatusOK, gin.H{"faces": faces})
}

func (s *Server) getFace(c *gin.Context) {
	f, err := s.svc().Store().GetFace(c.Request.Context(), c.Param("name"), c.Param("face"))
	if err != nil {
		s.failErr(c, err)
		return
	}
	c.JSON(http.StatusOK, f)
}

func (s *Server) deleteFace(c *gin.Context) {
	if err := s.svc().DeleteFace(c.Request.Context(), key(c).ID, c.Param("name"), c.Param("face")); err != nil {
		s.failErr(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// ---- identify, verify, detect

type candidateJSON struct {
	SubjectID   string   `json:"subject_id"`
	ExternalID  string   `json:"external_id"`
	DisplayName string   `json:"display_name"`
	FaceID      string   `json:"face_id"`
	Distance    float64  `json:"distance"`
	Score       *float64 `json:"score,omitempty"`
	FPIR        *float64 `json:"fpir,omitempty"`
}

type identifiedFaceJSON struct {
	Box        [4]int          `json:"box"`
	Quality    align.Quality   `json:"quality"`
	Landmarks  [][2]int        `json:"landmarks"`
	Decision   string          `json:"decision"`
	Threshold  float64         `json:"threshold"`
	SecondLook bool            `json:"second_look"`
	Match      *candidateJSON  `json:"match,omitempty"`
	Candidates []candidateJSON `json:"candidates"`
}

func toCandidate(c gallery.Candidate, op gallery.Operating) candidateJSON {
	out := candidateJSON{SubjectID: c.SubjectID, ExternalID: c.ExternalID, DisplayName: c.DisplayName, FaceID: c.FaceID, Distance: roundTo(c.Distance, 4)}
	if !op.Policy.Fixed() {
		score := roundTo(c.Score, 4)
		fpir := significant(c.FPIR, 3)
		out.Score, out.FPIR = &score, &fpir
	}
	return out
}

// significant rounds v to n significant digits (an FPIR may be 1e-7).
func significant(v float64, n int) float64 {
	if v == 0 {
		return 0
	}
	p := math.Pow(10, float64(n)-math.Ceil(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

func (s *Server) identify(c *gin.Context) {
	p, err := s.readPayload(c)
	if err != nil {
		s.failErr(c, err)
		return
	}
	images := p.images()
	if len(images) != 1 {
		s.failErr(c, invalid("image", "exactly one image is required"))
		return
	}
	req := gallery.IdentifyRequest{Actor: key(c).ID, Collection: c.Param("name"), Image: images[0]}
	if req.Threshold, err = p.float("threshold"); err != nil {
		s.failErr(c, err)
		return
	}
	if req.TargetFPIR, err = p.float("target_fpir"); err != nil {
		s.failErr(c, err)
		return
	}
	if req.TopK, err = p.int("top_k"); err != nil {
		s.failErr(c, err)
		return
	}
	if m := p.values["mode"]; m != "" {
		if req.Mode, err = gallery.ParseMatchMode(m); err != nil {
			s.failErr(c, invalid("mode", "faces or template"))
			return
		}
	}
	res, err := s.svc().Identify(c.Request.Context(), req)
	if err != nil {
		s.failErr(c, err)
		return
	}
	s.metrics.ObserveTimings(res.Timings)
	s.metrics.observeSearch(res.Search)
	op := res.Operating
	faces := make([]identifiedFaceJSON, len(res.Faces))
	for i, f := range res.Faces {
		j := identifiedFaceJSON{Box: boxOf(f.Box), Quality: f.Quality.Rounded(), Landmarks: landmarksOf(f.Landmarks), Decision: f.Decision,
			Threshold: roundTo(f.Threshold, 4), SecondLook: f.SecondLook, Candidates: []candidateJSON{}}
		for _, cand := range f.Candidates {
			j.Candidates = append(j.Candidates, toCandidate(cand, op))
		}
		if f.Match != nil {
			m := toCandidate(*f.Match, op)
			j.Match = &m
		}
		faces[i] = j
	}
	t := toTimings(res.Timings)
	search := msOf(res.Search)
	t.Search = &search
	d := toDecision(op, nil)
	c.JSON(http.StatusOK, gin.H{"width": res.Width, "height": res.Height, "threshold": d.Threshold, "decision": d, "mode": res.Mode, "faces": faces, "timings_ms": t})
}

type faceJSON struct {
	Box       [4]int        `json:"box"`
	Score     float64       `json:"score"`
	Detector  string        `json:"detector"`
	Landmarks [][2]int      `json:"landmarks"`
	Quality   align.Quality `json:"quality"`
}

func toFaceJSON(f gallery.Face) faceJSON {
	return faceJSON{Box: boxOf(f.Box), Score: roundTo(f.Score, 4), Detector: f.Detector, Landmarks: landmarksOf(f.Landmarks), Quality: f.Quality.Rounded()}
}

func (s *Server) verify(c *gin.Context) {
	p, err := s.readPayload(c)
	if err != nil {
		s.failErr(c, err)
		return
	}
	images := p.images()
	req := gallery.VerifyRequest{Actor: key(c).ID, Collection: p.values["collection"], SubjectID: p.values["subject_id"]}
	switch {
	case len(images) == 2 && len(p.files["other"]) == 0:
		req.Image, req.Other = images[0], images[1]
	case len(images) == 1 && len(p.files["other"]) == 1:
		req.Image, req.Other = images[0], p.files["other"][0]
	case len(images) == 1 && len(p.files["other"]) == 0:
		req.Image = images[0]
		if req.Collection == "" || req.SubjectID == "" {
			s.failErr(c, invalid("other", "give a second image, or collection and subject_id"))
			return
		}
		if !inScope(key(c), req.Collection) {
			fail(c, newProblem(TypeForbidden, "the key is scoped to another collection"))
			return
		}
	default:
		s.failErr(c, invalid("image", "one image and either a second image or collection and subject_id"))
		return
	}
	if req.Threshold, err = p.float("threshold"); err != nil {
		s.failErr(c, err)
		return
	}
	if req.TargetFMR, err = p.float("target_fmr"); err != nil {
		s.failErr(c, err)
		return
	}
	res, err := s.svc().Verify(c.Request.Context(), req)
	if err != nil {
		s.failErr(c, err)
		return
	}
	out := gin.H{"match": res.Match, "distance": roundTo(res.Distance, 4), "threshold": roundTo(res.Threshold, 4), "fmr": significant(res.FMR, 3)}
	if res.TargetFMR > 0 {
		out["target_fmr"] = res.TargetFMR
	}
	faces := make([]faceJSON, len(res.Faces))
	for i, f := range res.Faces {
		faces[i] = toFaceJSON(f)
	}
	out["faces"] = faces
	if res.SubjectFaces != nil {
		sf := make([]gin.H, len(res.SubjectFaces))
		for i, f := range res.SubjectFaces {
			sf[i] = gin.H{"face_id": f.FaceID, "distance": roundTo(f.Distance, 4)}
		}
		out["subject_faces"] = sf
	}
	ts := make([]timingsJSON, len(res.Timings))
	for i, t := range res.Timings {
		ts[i] = toTimings(t)
		s.metrics.ObserveTimings(t)
	}
	out["timings_ms"] = ts
	c.JSON(http.StatusOK, out)
}

func (s *Server) detect(c *gin.Context) {
	p, err := s.readPayload(c)
	if err != nil {
		s.failErr(c, err)
		return
	}
	images := p.images()
	if len(images) != 1 {
		s.failErr(c, invalid("image", "exactly one image is required"))
		return
	}
	res, err := s.svc().Detect(c.Request.Context(), images[0])
	if err != nil {
		s.failErr(c, err)
		return
	}
	s.metrics.ObserveTimings(res.Timings)
	faces := make([]faceJSON, len(res.Faces))
	for i, f := range res.Faces {
		faces[i] = toFaceJSON(f)
	}
	c.JSON(http.StatusOK, gin.H{"width": res.Width, "height": res.Height, "format": res.Format, "faces": faces, "timings_ms": toTimings(res.Timings)})
}

// ---- admin queries

func (s *Server) listEvents(c *gin.Context) {
	q := store.EventQuery{Kind: c.Query("kind"), KeyID: c.Query("key_id"), Collection: c.Query("collection"), Limit: 100}
	var err error
	parseTime := func(name string) (time.Time, error) {
		v := c.Query(name)
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return t, invalid(name, "an RFC 3339 time")
		}
		return t, nil
	}
	if q.Since, err = parseTime("since"); err == nil {
		q.Until, err = parseTime("until")
	}
	if err == nil && c.Query("limit") != "" {
		if q.Limit, err = strconv.Atoi(c.Query("limit")); err != nil || q.Limit < 1 || q.Limit > 1000 {
			err = invalid("limit", "an integer in [1, 1000]")
		}
	}
	if err == nil && c.Query("before") != "" {
		if q.Before, err = strconv.ParseInt(c.Query("before"), 10, 64); err != nil {
			err = invalid("before", "an event id")
		}
	}
	if err != nil {
		s.failErr(c, err)
		return
	}
	if k := key(c); k.Collection != "" {
		if q.Collection != "" && q.Collection != k.Collection {
			fail(c, newProblem(TypeForbidden, "the key is scoped to another collection"))
			return
		}
		q.Collection = k.Collection
	}
	events, err := s.svc().Store().ListEvents(c.Request.Context(), q)
	if err != nil {
		s.failErr(c, err)
		return
	}
	if events == nil {
		events = []store.Event{}
	}
	next := ""
	if len(events) == q.Limit {
		next = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	c.JSON(http.StatusOK, gin.H{"events": events, "next_before": next})
}

func (s *Server) topSubjects(c *gin.Context) {
	limit := 10
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.failErr(c, invalid("limit", "an integer in [1, 1000]"))
			return
		}
		limit = n
	}
	ctx := c.Request.Context()
	if _, err := s.svc().Store().GetCollection(ctx, c.Param("name")); err != nil {
		s.failErr(c, err)
		return
	}
	top, err := s.svc().Store().TopSubjects(ctx, c.Param("name"), limit)
	if err != nil {
		s.failErr(c, err)
		return
	}
	if top == nil {
		top = []store.SubjectCount{}
	}
	c.JSON(http.StatusOK, gin.H{"subjects": top})
}

func (s *Server) enrollmentsPerDay(c *gin.Context) {
	days := 30
	if v := c.Query("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3660 {
			s.failErr(c, invalid("days", "an integer in [1, 3660]"))
			return
		}
		days = n
	}
	ctx := c.Request.Context()
	if _, err := s.svc().Store().GetCollection(ctx, c.Param("name")); err != nil {
		s.failErr(c, err)
		return
	}
	since := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -(days - 1))
	counts, err := s.svc().Store().EnrollmentsPerDay(ctx, c.Param("name"), since)
	if err != nil {
		s.failErr(c, err)
		return
	}
	if counts == nil {
		counts = []store.DayCount{}
	}
	c.JSON(http.StatusOK, gin.H{"since": since.Format("2006-01-02"), "days": counts})
}
