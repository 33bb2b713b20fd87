package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gin-gonic/gin"

	"github.com/visage/visage/align"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/index"
	"github.com/visage/visage/internal/archive"
	"github.com/visage/visage/store"
)

// loadOpenAPI parses and validates the embedded document.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPIDocument())
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// docOperations lists the document's operations as "METHOD /path".
func docOperations(doc *openapi3.T) map[string]*openapi3.Operation {
	ops := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[method+" "+path] = op
		}
	}
	return ops
}

var ginParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

// ginRoutes lists a server's gin routes as "METHOD /path" with OpenAPI
// path templates ({param} for :param).
func ginRoutes(s *Server) map[string]bool {
	out := map[string]bool{}
	for _, r := range s.engine.Routes() {
		out[r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	return out
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadOpenAPI(t)

	t.Run("header", func(t *testing.T) {
		if doc.OpenAPI != "3.0.3" {
			t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
		}
		if doc.Info.Title != "Visage" || doc.Info.Version == "" {
			t.Errorf("info = %q %q", doc.Info.Title, doc.Info.Version)
		}
		for _, word := range []string{"Authorization: Bearer <key>", "`admin`", "`enroll`", "`identify`", "`read`", "scoped"} {
			if !strings.Contains(doc.Info.Description, word) {
				t.Errorf("info.description does not mention %q", word)
			}
		}
		if len(doc.Servers) != 1 || doc.Servers[0].URL != "/" {
			t.Errorf("servers = %v, want [/]", doc.Servers)
		}
		sch := doc.Components.SecuritySchemes["bearer"]
		if sch == nil || sch.Value.Type != "http" || sch.Value.Scheme != "bearer" {
			t.Errorf("securitySchemes.bearer = %+v, want http bearer", sch)
		}
		if len(doc.Security) != 1 || doc.Security[0]["bearer"] == nil {
			t.Errorf("global security = %v, want [{bearer: []}]", doc.Security)
		}
	})

	// Clients must tolerate additions: nothing may forbid them.
	t.Run("no additionalProperties false", func(t *testing.T) {
		if bytes.Contains(bytes.ReplaceAll(OpenAPIDocument(), []byte(" "), nil), []byte(`"additionalProperties":false`)) {
			t.Error(`openapi.json uses "additionalProperties": false`)
		}
	})

	// The Problem type enum is exactly the problem types of problem.go.
	t.Run("problem types", func(t *testing.T) {
		var enum []string
		for _, v := range doc.Components.Schemas["Problem"].Value.Properties["type"].Value.Enum {
			enum = append(enum, v.(string))
		}
		sort.Strings(enum)
		if want := sortedKeys(problemTitles); !slices.Equal(enum, want) {
			t.Errorf("Problem.type enum = %v, want %v", enum, want)
		}
	})

	ops := docOperations(doc)
	ids := map[string]string{}
	for _, name := range sortedKeys(ops) {
		op := ops[name]
		t.Run(name, func(t *testing.T) {
			if op.OperationID == "" {
				t.Error("no operationId")
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("operationId %s also used by %s", op.OperationID, other)
			}
			ids[op.OperationID] = name
			_, path, _ := strings.Cut(name, " ")
			v1 := strings.HasPrefix(path, "/v1/")
			switch {
			case v1 && op.Security != nil:
				t.Errorf("a /v1 operation must inherit the global bearer security, has %v", *op.Security)
			case name == "GET /metrics" && op.Security != nil:
				t.Error("/metrics must inherit the global bearer security (it needs a key by default)")
			case !v1 && name != "GET /metrics" && (op.Security == nil || len(*op.Security) != 0):
				t.Error("an operation outside /v1 must have security: []")
			}
			if v1 {
				// What the /v1 middleware answers before any handler.
				for _, status := range []string{"401", "413", "429", "500", "503"} {
					if op.Responses.Value(status) == nil {
						t.Errorf("no %s response", status)
					}
				}
				if roles, ok := op.Extensions["x-roles"].([]any); !ok || len(roles) == 0 {
					t.Error("no x-roles")
				}
			}
			for status, resp := range op.Responses.Map() {
				if !strings.HasPrefix(status, "4") && !strings.HasPrefix(status, "5") {
					continue
				}
				mt := resp.Value.Content.Get("application/problem+json")
				if mt == nil || len(resp.Value.Content) != 1 {
					t.Errorf("%s: content must be application/problem+json only", status)
					continue
				}
				if mt.Schema.Ref != "#/components/schemas/Problem" {
					t.Errorf("%s: schema %q, want the Problem schema", status, mt.Schema.Ref)
				}
			}
		})
	}
}

func TestOpenAPIEveryPathIsRoutable(t *testing.T) {
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("gorillamux router: %v", err)
	}
	tmplParam := regexp.MustCompile(`\{([^}]+)\}`)
	ops := docOperations(doc)
	for _, name := range sortedKeys(ops) {
		t.Run(name, func(t *testing.T) {
			method, tmpl, _ := strings.Cut(name, " ")
			path := tmplParam.ReplaceAllString(tmpl, "value-of-$1")
			req := httptest.NewRequest(method, path, nil)
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("FindRoute(%s %s): %v", method, path, err)
			}
			if route.Path != tmpl || route.Method != method {
				t.Errorf("routed to %s %s", route.Method, route.Path)
			}
			for _, m := range tmplParam.FindAllStringSubmatch(tmpl, -1) {
				if params[m[1]] != "value-of-"+m[1] {
					t.Errorf("path parameter %s = %q", m[1], params[m[1]])
				}
			}
		})
	}
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := docOperations(doc)
	for _, tc := range []struct {
		name    string
		metrics *Metrics
	}{
		{"without metrics", nil},
		{"with metrics", NewMetrics(nil, true, quietLog())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(nil, tc.metrics, DefaultConfig(), quietLog())
			if err != nil {
				t.Fatal(err)
			}
			routes := ginRoutes(s)
			if len(routes) == 0 {
				t.Fatal("the server registers no route")
			}
			for _, r := range sortedKeys(routes) {
				if dashboardPages[r] {
					continue // files of the dashboard, not API operations
				}
				if ops[r] == nil {
					t.Errorf("route %s is not in openapi.json", r)
				}
			}
			for _, op := range sortedKeys(ops) {
				if !routes[op] && !(op == "GET /metrics" && tc.metrics == nil) {
					t.Errorf("openapi.json operation %s is not a route of the server", op)
				}
			}
		})
	}
}

// dashboardPages are the routes serving the dashboard's page and files.
var dashboardPages = map[string]bool{
	"GET /admin": true, "GET /admin/": true, "GET /admin/app.js": true, "GET /admin/app.css": true,
}

// fakeKeys is a key store of fixed keys.
type fakeKeys map[string]store.APIKey

func (f fakeKeys) GetKey(_ context.Context, id string) (store.APIKey, error) {
	k, ok := f[id]
	if !ok {
		return store.APIKey{}, store.ErrNotFound
	}
	return k, nil
}

func (f fakeKeys) TouchKey(context.Context, string, time.Time) error { return nil }
func (f fakeKeys) CreateSession(context.Context, store.Session) (store.Session, error) {
	return store.Session{}, store.ErrInvalid
}
func (f fakeKeys) GetSession(context.Context, []byte) (store.SessionKey, error) {
	return store.SessionKey{}, store.ErrNotFound
}
func (f fakeKeys) DeleteSession(context.Context, []byte) error { return nil }
func (f fakeKeys) ListKeys(context.Context) ([]store.APIKey, error) {
	var out []store.APIKey
	for _, k := range f {
		out = append(out, k)
	}
	return out, nil
}
func (f fakeKeys) CreateKey(_ context.Context, k store.APIKey) (store.APIKey, error) { return k, nil }
func (f fakeKeys) RevokeKey(context.Context, string) error                           { return nil }

// add creates a key and returns its token.
func (f fakeKeys) add(role store.Role, collection string) string {
	id, token := NewKeyToken()
	f[id] = store.APIKey{ID: id, Name: string(role), Hash: HashToken(token), Role: role, Collection: collection}
	return token
}

// TestOpenAPIAuthorization checks the document's security and x-roles
// against the middleware: every /v1 operation is called with no key and
// with a key of each role (and a key scoped to another collection), and
// every answer is validated against the document. The server is ready
// with no gallery service, so a request that passes the middleware ends
// in a handler's 400 or a recovered 500, never in a 401 or 403.
func TestOpenAPIAuthorization(t *testing.T) {
	doc := loadOpenAPI(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	keys := fakeKeys{}
	tokens := map[store.Role]string{}
	for _, r := range []store.Role{store.RoleAdmin, store.RoleEnroll, store.RoleIdentify, store.RoleRead} {
		tokens[r] = keys.add(r, "")
	}
	scopedAdmin := keys.add(store.RoleAdmin, "elsewhere")
	cfg := DefaultConfig()
	cfg.RateLimit = 0
	cfg.AuthFailureRate = 0 // every operation is tried without a key
	s, err := New(keys, NewMetrics(nil, true, quietLog()), cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	s.Ready(nil)

	call := func(t *testing.T, method, path, token string) *http.Response {
		t.Helper()
		req := httptest.NewRequest(method, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		resp := rec.Result()
		raw := rec.Body.Bytes()
		validateResponse(t, router, req, resp, raw)
		resp.Body = io.NopCloser(bytes.NewReader(raw))
		return resp
	}

	tmplParam := regexp.MustCompile(`\{([^}]+)\}`)
	ops := docOperations(doc)
	for _, name := range sortedKeys(ops) {
		op := ops[name]
		method, tmpl, _ := strings.Cut(name, " ")
		path := tmplParam.ReplaceAllString(tmpl, "home")
		t.Run(name, func(t *testing.T) {
			if tmpl == "/admin/session" {
				// The dashboard's session: without a cookie there is none
				// to show or end, and signing in needs a key in the body.
				want := map[string]int{http.MethodGet: http.StatusUnauthorized, http.MethodDelete: http.StatusUnauthorized,
					http.MethodPost: http.StatusBadRequest}[method]
				if resp := call(t, method, path, ""); resp.StatusCode != want {
					t.Errorf("without a cookie or a body: status %d, want %d", resp.StatusCode, want)
				}
				return
			}
			if !strings.HasPrefix(tmpl, "/v1/") && tmpl != "/metrics" {
				if resp := call(t, method, path, ""); resp.StatusCode != http.StatusOK {
					t.Errorf("without a key: status %d, want 200", resp.StatusCode)
				}
				return
			}
			resp := call(t, method, path, "")
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("without a key: status %d (WWW-Authenticate %q), want 401", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
			var documented []string
			for _, r := range op.Extensions["x-roles"].([]any) {
				documented = append(documented, r.(string))
			}
			for role, token := range tokens {
				want := slices.Contains(documented, string(role))
				got := call(t, method, path, token).StatusCode != http.StatusForbidden
				if got != want {
					t.Errorf("role %s: allowed %v, documented %v (x-roles %v)", role, got, want, documented)
				}
			}
			// A key scoped to another collection may not touch this one,
			// nor manage keys (x-unscoped-only).
			forbidden := call(t, method, path, scopedAdmin).StatusCode == http.StatusForbidden
			unscopedOnly, _ := op.Extensions["x-unscoped-only"].(bool)
			if want := strings.Contains(tmpl, "{name}") || unscopedOnly; forbidden != want {
				t.Errorf("key scoped to another collection: forbidden %v, want %v", forbidden, want)
			}
		})
	}

	t.Run("not ready", func(t *testing.T) {
		s.Unready()
		defer s.Ready(nil)
		if resp := call(t, http.MethodGet, "/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz: status %d, want 503", resp.StatusCode)
		}
		if resp := call(t, http.MethodGet, "/v1/collections", tokens[store.RoleAdmin]); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/v1/collections: status %d, want 503", resp.StatusCode)
		}
	})

	t.Run("body too large", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxBodyBytes = 16
		small, err := New(keys, nil, cfg, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		small.Ready(nil)
		req := httptest.NewRequest(http.MethodPost, "/v1/detect", strings.NewReader(`{"image": "iVBORw0KGgoAAAANSUhEUgAA"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tokens[store.RoleAdmin])
		rec := httptest.NewRecorder()
		small.Handler().ServeHTTP(rec, req)
		validateResponse(t, router, req, rec.Result(), rec.Body.Bytes())
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", rec.Code)
		}
	})

	t.Run("rate limited", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.RateLimit, cfg.RateBurst = 0.001, 1
		slow, err := New(keys, nil, cfg, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		slow.Ready(nil)
		var last *httptest.ResponseRecorder
		for range 2 {
			req := httptest.NewRequest(http.MethodGet, "/v1/collections", nil)
			req.Header.Set("Authorization", "Bearer "+tokens[store.RoleRead])
			last = httptest.NewRecorder()
			slow.Handler().ServeHTTP(last, req)
			validateResponse(t, router, req, last.Result(), last.Body.Bytes())
		}
		if last.Code != http.StatusTooManyRequests || last.Header().Get("Retry-After") == "" {
			t.Errorf("status %d (Retry-After %q), want 429", last.Code, last.Header().Get("Retry-After"))
		}
	})
}

// validateResponse checks that an answer is one the document allows for
// its operation.
func validateResponse(t *testing.T, router routers.Router, req *http.Request, resp *http.Response, raw []byte) {
	t.Helper()
	route, params, err := router.FindRoute(req)
	if err != nil {
		t.Errorf("%s %s: not in the document: %v", req.Method, req.URL.Path, err)
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(raw)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s → %d: response does not match the document: %v\n%s", req.Method, req.URL.Path, resp.StatusCode, err, raw)
	}
}

// TestOpenAPISchemasMatchGoValues marshals the values the handlers write
// (the same types and helpers) and validates them against the document's
// schemas: required fields, omitempty, nulls and formats.
func TestOpenAPISchemasMatchGoValues(t *testing.T) {
	doc := loadOpenAPI(t)
	now := time.Date(2026, 11, 25, 21, 10, 22, 123456789, time.UTC)
	quality := align.Quality{Size: 180, Score: 1.23456, Sharpness: 80.04, Brightness: 120.44, Contrast: 45.06, Yaw: 3.21, Pitch: -4.16, Roll: 1.04, MouthOpen: 0.01234}
	qualityJSON, _ := json.Marshal(quality)
	pts := []align.Point{{X: 150, Y: 140}, {X: 250, Y: 141}, {X: 200, Y: 190}, {X: 160, Y: 230}, {X: 240, Y: 231}}
	landmarksJSON, _ := json.Marshal(pts)
	face := store.Face{
		ID: "5b0e9ad0-5e5c-4c1e-9a57-1f3c6e8f1a2b", Key: 7, SubjectID: "0b6f8f3e-8a59-4a8e-bb4e-0c9b0f0f8f11", Collection: "staff",
		Descriptor: []float32{0.1, 0.2}, ModelID: "dlib-resnet-v1", Box: [4]int{112, 84, 298, 270},
		Landmarks: landmarksJSON, Quality: qualityJSON, ImageSHA256: strings.Repeat("ab", 32), State: store.FaceIndexed, CreatedAt: now,
	}
	bare := face
	bare.Landmarks, bare.Quality = nil, nil
	nullLandmarks := face
	nullLandmarks.Landmarks = json.RawMessage("null")
	timings := toTimings(gallery.Timings{Decode: 4123 * time.Microsecond, Detect: 38 * time.Millisecond, Align: time.Millisecond, Embed: 21 * time.Millisecond})
	search := 0.4
	withSearch := timings
	withSearch.Search = &search
	rq := quality.Rounded()
	rejected := enrollResultJSON{Index: 1, Status: gallery.StatusRejected, Quality: &rq, Code: gallery.CodeQualityRejected,
		Reasons: []string{align.ReasonBlurry}, Detail: "face rejected by quality gates: [blurry]", Timings: &timings}
	enrolled := enrollResultJSON{Index: 0, Status: gallery.StatusEnrolled, Face: &face, Quality: &rq, Timings: &timings}
	badImage := enrollResultJSON{Index: 2, Status: gallery.StatusRejected, Code: "corrupt_image", Detail: "imageio: corrupt_image"}
	target := gallery.Operate(gallery.Policy{TargetFPIR: 0.01}, 612, &gallery.Calibration{Subjects: 600, Samples: 300, Median: 0.23, Above: 0.0113})
	fixed := gallery.Operate(gallery.Policy{Threshold: 0.5}, 12, nil)
	gcand := gallery.Candidate{SubjectID: face.SubjectID, ExternalID: "emp-1", DisplayName: "Ada", FaceID: face.ID, Distance: 0.412345, Score: 0.31234, FPIR: 0.000123456}
	cand := toCandidate(gcand, target)
	fixedCand := toCandidate(gcand, fixed)
	targetDecision := toDecision(target, &gallery.Calibration{Subjects: 600, Samples: 300, Above: 0.0113})
	fixedDecision := toDecision(fixed, nil)
	gface := gallery.Face{Box: image.Rect(112, 84, 298, 270), Score: 1.23456, Detector: "hog", Landmarks: pts, Quality: quality}
	noLandmarks := gface
	noLandmarks.Landmarks = nil
	allRejected := newProblem(TypeQualityRejected, "no image was enrolled: face rejected by quality gates: [blurry]")
	allRejected.Code, allRejected.Reasons, allRejected.Results = rejected.Code, rejected.Reasons, []enrollResultJSON{rejected, badImage}
	notAllowed := newProblem(TypeInvalidRequest, "method not allowed")
	notAllowed.Status = http.StatusMethodNotAllowed
	last := now.Add(-time.Hour)
	stats := func(last *time.Time) any {
		return struct {
			store.CollectionStats
			Threshold float64      `json:"threshold"`
			Decision  decisionJSON `json:"decision"`
		}{store.CollectionStats{Collection: "staff", Subjects: 8, Faces: 32, DescriptorBytes: 16384, LastEnrollAt: last}, 0.5, fixedDecision}
	}

	type check struct {
		name, schema string
		value        any
		valid        bool
	}
	checks := []check{
		{"collection with a target", "Collection", toCollection(gallery.CollectionView{Collection: store.Collection{Name: "staff", TargetFPIR: 0.01, CreatedAt: now}, Operating: target}), true},
		{"collection with a fixed threshold", "Collection", toCollection(gallery.CollectionView{Collection: store.Collection{Name: "staff", Threshold: 0.5, CreatedAt: now}, Operating: fixed}), true},
		{"collection without a decision", "Collection", store.Collection{Name: "staff", Threshold: 0.5, CreatedAt: now}, false},
		{"collection list", "CollectionList", gin.H{"collections": []collectionJSON{}}, true},
		{"decision with a calibration", "Decision", targetDecision, true},
		{"decision of an unknown policy", "Decision", decisionJSON{Policy: "magic"}, false},
		{"subject", "Subject", store.Subject{ID: face.SubjectID, Collection: "staff", ExternalID: "emp-1", Metadata: json.RawMessage(`{"team":"R&D"}`), CreatedAt: now, UpdatedAt: now}, true},
		{"subject with nil metadata", "Subject", store.Subject{ID: face.SubjectID, Collection: "staff", ExternalID: "emp-1", CreatedAt: now, UpdatedAt: now}, true},
		{"subject with array metadata", "Subject", store.Subject{ID: face.SubjectID, Metadata: json.RawMessage(`[1]`), CreatedAt: now, UpdatedAt: now}, false},
		{"subject list", "SubjectList", gin.H{"subjects": []store.Subject{}, "next": ""}, true},
		{"face", "Face", face, true},
		{"face without landmarks and quality", "Face", bare, true},
		{"face with null landmarks", "Face", nullLandmarks, true},
		{"face in an unknown state", "Face", store.Face{ID: "f", State: "lost", CreatedAt: now}, false},
		{"face list", "FaceList", gin.H{"faces": []store.Face{face, bare}}, true},
		{"quality", "Quality", rq, true},
		{"timings", "Timings", timings, true},
		{"identify timings", "IdentifyTimings", withSearch, true},
		{"identify timings without search", "IdentifyTimings", timings, false},
		{"enroll response", "EnrollResponse", gin.H{"subject_id": face.SubjectID, "results": []enrollResultJSON{enrolled, rejected, badImage}}, true},
		{"exists result", "EnrollResult", enrollResultJSON{Index: 0, Status: gallery.StatusExists, Face: &bare}, true},
		{"unknown enroll status", "EnrollResult", enrollResultJSON{Status: "maybe"}, false},
		{"detected face", "DetectedFace", toFaceJSON(gface), true},
		{"detected face without landmarks", "DetectedFace", toFaceJSON(noLandmarks), true},
		{"detect response", "DetectResponse", gin.H{"width": 640, "height": 480, "format": "jpeg", "faces": []faceJSON{toFaceJSON(gface)}, "timings_ms": timings}, true},
		{"identify response", "IdentifyResponse", gin.H{"width": 640, "height": 480, "threshold": 0.5, "decision": targetDecision, "mode": gallery.MatchFaces,
			"faces": []identifiedFaceJSON{
				{Box: boxOf(gface.Box), Quality: rq, Landmarks: landmarksOf(pts), Decision: gallery.DecisionMatch, Threshold: 0.45, SecondLook: true, Match: &cand, Candidates: []candidateJSON{cand}},
				{Box: boxOf(gface.Box), Quality: rq, Landmarks: landmarksOf(nil), Decision: gallery.DecisionUnknown, Threshold: 0.4, Candidates: []candidateJSON{}},
			}, "timings_ms": withSearch}, true},
		{"identify response with a fixed threshold", "IdentifyResponse", gin.H{"width": 640, "height": 480, "threshold": 0.5, "decision": fixedDecision, "mode": gallery.MatchFaces,
			"faces":      []identifiedFaceJSON{{Box: boxOf(gface.Box), Quality: rq, Landmarks: landmarksOf(pts), Decision: gallery.DecisionMatch, Threshold: 0.5, Match: &fixedCand, Candidates: []candidateJSON{fixedCand}}},
			"timings_ms": withSearch}, true},
		{"identify response with nil candidates", "IdentifyResponse", gin.H{"width": 1, "height": 1, "threshold": 0.5, "decision": fixedDecision, "mode": "faces",
			"faces": []identifiedFaceJSON{{Decision: "unknown", Landmarks: [][2]int{}}}, "timings_ms": withSearch}, false},
		{"verify two images", "VerifyResponse", gin.H{"match": true, "distance": 0.31, "threshold": 0.5, "target_fmr": 0.001, "fmr": 0.0000123,
			"faces": []faceJSON{toFaceJSON(gface), toFaceJSON(gface)}, "timings_ms": []timingsJSON{timings, timings}}, true},
		{"verify against a subject", "VerifyResponse", gin.H{"match": false, "distance": 0.71, "threshold": 0.5, "fmr": 0.5,
			"faces": []faceJSON{toFaceJSON(gface)}, "subject_faces": []gin.H{{"face_id": face.ID, "distance": 0.71}}, "timings_ms": []timingsJSON{timings}}, true},
		{"verify without its fmr", "VerifyResponse", gin.H{"match": false, "distance": 0.71, "threshold": 0.5,
			"faces": []faceJSON{toFaceJSON(gface)}, "timings_ms": []timingsJSON{timings}}, false},
		{"stats", "Stats", stats(&last), true},
		{"stats of an empty collection", "Stats", stats(nil), true},
		{"event", "Event", store.Event{ID: 42, At: now, Kind: "verify", KeyID: "abcdefghijkl", Outcome: "match",
			Detail: json.RawMessage(`{"distance":0.31,"threshold":0.5}`)}, true},
		{"event without optional fields", "Event", store.Event{ID: 43, At: now, Kind: "delete", Outcome: "collection_deleted"}, true},
		{"event list", "EventList", gin.H{"events": []store.Event{}, "next_before": "42"}, true},
		{"top subjects", "TopSubjects", gin.H{"subjects": []store.SubjectCount{{SubjectID: face.SubjectID, ExternalID: "emp-1", Faces: 4}}}, true},
		{"enrollments", "Enrollments", gin.H{"since": "2026-10-27", "days": []store.DayCount{{Day: "2026-11-25", Count: 3}}}, true},
		{"health", "Health", gin.H{"status": "ok"}, true},
		{"all images rejected", "Problem", allRejected, true},
		{"method not allowed", "Problem", notAllowed, true},
		{"unknown problem type", "Problem", Problem{Type: "oops", Title: "Oops", Status: 500}, false},
	}
	for typ := range problemTitles {
		checks = append(checks, check{"problem " + typ, "Problem", newProblem(typ, ""), true})
	}
	for _, err := range []error{errBodyTooLarge, gallery.ErrNoFace, &gallery.QualityError{Reasons: []string{align.ReasonYaw}},
		&gallery.InvalidError{Field: "limit", Reason: "too big"}, store.ErrNotFound, store.ErrConflict, fmt.Errorf("enroll: %w", index.ErrUnavailable), fmt.Errorf("get key: %w", store.ErrUnavailable),
		fmt.Errorf("start import: %w", gallery.ErrTooManyImports), fmt.Errorf("extract a.zip: %w", archive.ErrNoSpace),
		&gallery.SourcePathError{Path: "etc", Reason: "a symbolic link"}, errors.New("boom")} {
		checks = append(checks, check{"problem for " + err.Error(), "Problem", problemFor(err), true})
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			ref := doc.Components.Schemas[c.schema]
			if ref == nil {
				t.Fatalf("no schema %s", c.schema)
			}
			b, err := json.Marshal(c.value)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			err = ref.Value.VisitJSON(v, openapi3.MultiErrors())
			if c.valid && err != nil {
				t.Errorf("%s does not match %s: %v", b, c.schema, err)
			}
			if !c.valid && err == nil {
				t.Errorf("%s matches %s, want a mismatch", b, c.schema)
			}
		})
	}
}
