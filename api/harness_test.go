package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/visage/visage/api"
	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/index"
	"github.com/visage/visage/index/qdranttest"
	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// sharedEngine opens the real engine once for all tests of the package:
// loading the networks costs seconds.
var sharedEngine = sync.OnceValues(func() (*gallery.Engine, error) {
	dir := os.Getenv("VISAGE_MODELS")
	if dir == "" {
		return nil, fmt.Errorf("VISAGE_MODELS is not set (source scripts/env.sh)")
	}
	return gallery.OpenEngine(gallery.DefaultEngineConfig(dir))
})

func engine(t testing.TB) *gallery.Engine {
	t.Helper()
	testenv.ModelDir(t) // fails with the missing path if models are absent
	eng, err := sharedEngine()
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// harness is a visaged in-process: real engine, SQLite in a temporary
// directory, the HNSW index, and an HTTP server. Every request and
// response is checked against the OpenAPI document.
type harness struct {
	t     testing.TB
	url   string
	admin string
	store galleryStore
	// qdrant is the vector store's server in the scale-out deployment.
	qdrant *qdranttest.Server
	// importRoot is the server's root for server-local imports, and
	// importDir where it extracts uploads.
	importRoot, importDir string
	router                routers.Router
	client                *http.Client
	// svc is the gallery service behind the server, idx its vector index
	// and importer its import jobs.
	svc      *gallery.Service
	idx      gallery.Index
	importer *gallery.Importer
}

type harnessOptions struct {
	cfg *api.Config
	// scaleOut runs the service on PostgreSQL and Qdrant (the in-process
	// gRPC server, over TCP) instead of SQLite and HNSW.
	scaleOut bool
	// database is the URL of the scale-out deployment's PostgreSQL
	// database; empty takes a fresh one from pgtest.New.
	database string
	// importer and imports, when set, adjust the import jobs' and the
	// import endpoints' configurations.
	importer func(*gallery.ImportConfig)
	imports  func(*api.ImportConfig)
}

// deployments names the two ways to run the same API, for tests that
// run on both.
var deployments = []struct {
	name string
	opts harnessOptions
}{
	{"embedded", harnessOptions{}},
	{"scaleout", harnessOptions{scaleOut: true}},
}

// keyStore is what the tests do with keys directly.
type keyStore interface {
	api.KeyStore
	CreateKey(ctx context.Context, k store.APIKey) (store.APIKey, error)
	RevokeKey(ctx context.Context, id string) error
}

// galleryStore is a store the service, its imports and the tests can use.
type galleryStore interface {
	gallery.Store
	gallery.ImportStore
	api.ImportJobs
	keyStore
}

func newHarness(t testing.TB, opts harnessOptions) *harness {
	t.Helper()
	eng := engine(t)
	ctx := context.Background()
	var (
		st  galleryStore
		idx gallery.Index
		qs  *qdranttest.Server
	)
	if opts.scaleOut {
		url := opts.database
		if url == "" {
			url = pgtest.New(t)
		}
		pg, err := store.OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pg.Close() })
		qs = qdranttest.Start(t, qdranttest.Options{})
		q, err := index.OpenQdrant(ctx, index.QdrantConfig{Addr: qs.Addr(), Dim: embed.Dim, Model: eng.ModelID(),
			Retry: index.QdrantRetry{Attempts: 5, Initial: 50 * time.Millisecond, Max: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		st, idx = pg, q
	} else {
		dir := t.TempDir()
		sq, err := store.OpenSQLite(ctx, filepath.Join(dir, "visage.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sq.Close() })
		h, err := index.OpenHNSW(filepath.Join(dir, "hnsw"), embed.Dim, index.DefaultHNSWParams())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		st, idx = sq, h
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := gallery.NewService(eng, st, idx, gallery.DefaultServiceConfig(), log)
	// Registered after the stores' cleanups, so it runs first: background
	// calibrations end before the index they search closes.
	t.Cleanup(svc.Close)
	cfg := api.DefaultConfig()
	cfg.RateLimit = 0
	// Tests send many unauthenticated requests on purpose; the throttle
	// has its own test (TestFailedAuthenticationThrottled).
	cfg.AuthFailureRate = 0
	if opts.cfg != nil {
		cfg = *opts.cfg
	}
	srv, err := api.New(st, api.NewMetrics(st, true, log), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	importRoot, importDir := t.TempDir(), t.TempDir()
	imCfg := gallery.DefaultImportConfig(2)
	imCfg.ImportRoot, imCfg.ImportDir = importRoot, importDir
	if opts.importer != nil {
		opts.importer(&imCfg)
	}
	im := gallery.NewImporter(svc, st, imCfg, log)
	t.Cleanup(im.Close)
	apiCfg := api.ImportConfig{Dir: importDir, Root: importRoot}
	if opts.imports != nil {
		opts.imports(&apiCfg)
	}
	srv.ServeImports(im, st, apiCfg)
	srv.Ready(svc)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	id, token := api.NewKeyToken()
	if _, err := st.CreateKey(ctx, store.APIKey{ID: id, Name: "test admin", Hash: api.HashToken(token), Role: store.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPIDocument())
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = openapi3.Servers{{URL: ts.URL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, url: ts.URL, admin: token, store: st, qdrant: qs, importRoot: importRoot, importDir: importDir, router: router, client: ts.Client(), svc: svc, idx: idx, importer: im}
}

// newKey creates a key with a role and optional collection scope.
func (h *harness) newKey(role store.Role, collection string) string {
	h.t.Helper()
	id, token := api.NewKeyToken()
	if _, err := h.store.CreateKey(context.Background(), store.APIKey{ID: id, Name: string(role), Hash: api.HashToken(token), Role: role, Collection: collection}); err != nil {
		h.t.Fatal(err)
	}
	return token
}

// body is a request body with its content type.
type body struct {
	data []byte
	ct   string
}

func jsonBody(v any) body {
	b, _ := json.Marshal(v)
	return body{b, "application/json"}
}

// part is one multipart field: a file when data is set, else a value.
type part struct {
	name  string
	value string
	data  []byte
}

func multipartBody(parts ...part) body {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for i, p := range parts {
		if p.data != nil {
			hdr := textproto.MIMEHeader{}
			hdr.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename="image%d"`, p.name, i))
			hdr.Set("Content-Type", "application/octet-stream")
			fw, _ := w.CreatePart(hdr)
			fw.Write(p.data)
			continue
		}
		w.WriteField(p.name, p.value)
	}
	w.Close()
	return body{buf.Bytes(), w.FormDataContentType()}
}

func images(data ...[]byte) []part {
	ps := make([]part, len(data))
	for i, d := range data {
		ps[i] = part{name: "image", data: d}
	}
	return ps
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	raw    []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.raw, v); err != nil {
		t.Fatalf("decode %s: %v", r.raw, err)
	}
}

// problemType is the "type" of a problem response ("" otherwise).
func (r response) problemType() string {
	var p api.Problem
	if json.Unmarshal(r.raw, &p) != nil {
		return ""
	}
	return p.Type
}

// do sends a request with a token ("" for none) and validates both the
// request and the response against the OpenAPI document.
func (h *harness) do(method, path, token string, b *body) response {
	h.t.Helper()
	r, err := h.send(method, path, token, b)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// send is do for goroutines other than the test's: a failed exchange is
// returned rather than fatal (a mismatch with the document is still
// reported, with Errorf).
func (h *harness) send(method, path, token string, b *body) (response, error) {
	h.t.Helper()
	var rd io.Reader
	if b != nil {
		rd = bytes.NewReader(b.data)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		return response{}, err
	}
	if b != nil {
		req.Header.Set("Content-Type", b.ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	h.validate(req, b, resp, raw)
	return response{status: resp.StatusCode, header: resp.Header, raw: raw}, nil
}

// validate checks an exchange against the OpenAPI document.
func (h *harness) validate(req *http.Request, b *body, resp *http.Response, raw []byte) {
	h.t.Helper()
	route, params, err := h.router.FindRoute(req)
	if err != nil {
		h.t.Errorf("%s %s: not in the OpenAPI document: %v", req.Method, req.URL.Path, err)
		return
	}
	if b != nil {
		req.Body = io.NopCloser(bytes.NewReader(b.data))
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	// Requests the server must refuse (bad JSON, missing fields) are not
	// expected to satisfy the document; only well-formed ones are checked.
	if resp.StatusCode < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			h.t.Errorf("%s %s: request does not match the document: %v", req.Method, req.URL.Path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(raw)), Options: opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		h.t.Errorf("%s %s → %d: response does not match the document: %v\n%s", req.Method, req.URL.Path, resp.StatusCode, err, truncate(raw))
	}
}

func truncate(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "…"
	}
	return string(b)
}

// must asserts a status and returns the response.
func (h *harness) must(status int, method, path, token string, b *body) response {
	h.t.Helper()
	r := h.do(method, path, token, b)
	if r.status != status {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, truncate(r.raw))
	}
	return r
}

// portrait reads one of the bbt portraits, e.g. ("amy", 1).
func portrait(t testing.TB, person string, n int) []byte {
	t.Helper()
	return testenv.ReadShared(t, fmt.Sprintf("testdata/faces/bbt/%s/%s%d.png", person, person, n))
}

var bbtPeople = []string{"amy", "bernadette", "howard", "leonard", "penny", "raj", "sheldon", "stuart"}

// enrolledGallery creates collection "bbt" and enrolls portraits 1–4 of
// each bbt person; it returns subject ids by name.
func (h *harness) enrolledGallery() map[string]string {
	h.t.Helper()
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "bbt"})))
	ids := map[string]string{}
	for _, p := range bbtPeople {
		var sub store.Subject
		h.must(http.StatusCreated, "POST", "/v1/collections/bbt/subjects", h.admin,
			ptr(jsonBody(map[string]any{"external_id": "ext-" + p, "display_name": p, "metadata": map[string]any{"show": "bbt"}}))).decode(h.t, &sub)
		ids[p] = sub.ID
		var photos [][]byte
		for n := 1; n <= 4; n++ {
			photos = append(photos, portrait(h.t, p, n))
		}
		var res enrollResponse
		h.must(http.StatusCreated, "POST", "/v1/collections/bbt/subjects/"+sub.ID+"/faces", h.admin, ptr(multipartBody(images(photos...)...))).decode(h.t, &res)
		for _, r := range res.Results {
			if r.Status != "enrolled" {
				h.t.Fatalf("%s: image %d %s (%s %v)", p, r.Index, r.Status, r.Code, r.Reasons)
			}
		}
	}
	return ids
}

func ptr[T any](v T) *T { return &v }

type enrollResponse struct {
	SubjectID string `json:"subject_id"`
	Results   []struct {
		Index   int      `json:"index"`
		Status  string   `json:"status"`
		Code    string   `json:"code"`
		Reasons []string `json:"reasons"`
		Face    *struct {
			ID string `json:"id"`
		} `json:"face"`
	} `json:"results"`
}

type identifyResponse struct {
	Faces []struct {
		Box      [4]int `json:"box"`
		Decision string `json:"decision"`
		Match    *struct {
			SubjectID string  `json:"subject_id"`
			Distance  float64 `json:"distance"`
		} `json:"match"`
		Candidates []struct {
			SubjectID  string  `json:"subject_id"`
			ExternalID string  `json:"external_id"`
			FaceID     string  `json:"face_id"`
			Distance   float64 `json:"distance"`
		} `json:"candidates"`
	} `json:"faces"`
}

func (h *harness) identify(collection string, img []byte) identifyResponse {
	h.t.Helper()
	var out identifyResponse
	h.must(http.StatusOK, "POST", "/v1/collections/"+collection+"/identify", h.admin, ptr(multipartBody(part{name: "image", data: img}))).decode(h.t, &out)
	return out
}
