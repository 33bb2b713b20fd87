package api_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/visage/visage/api"
	"github.com/visage/visage/internal/testenv"
	"github.com/visage/visage/store"
)

// TestIdentifyTheFifthPortrait enrolls portraits 1–4 of the eight bbt
// people and identifies portrait 5 of each.
func TestIdentifyTheFifthPortrait(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) { testIdentifyTheFifthPortrait(t, d.opts) })
	}
}

func testIdentifyTheFifthPortrait(t *testing.T, opts harnessOptions) {
	h := newHarness(t, opts)
	ids := h.enrolledGallery()
	for _, p := range bbtPeople {
		t.Run(p, func(t *testing.T) {
			res := h.identify("bbt", portrait(t, p, 5))
			if len(res.Faces) != 1 {
				t.Fatalf("%d faces, want 1", len(res.Faces))
			}
			f := res.Faces[0]
			if f.Decision != "match" || f.Match == nil || f.Match.SubjectID != ids[p] {
				t.Fatalf("decision %s match %+v, want %s (%s); candidates %+v", f.Decision, f.Match, p, ids[p], f.Candidates)
			}
			if f.Candidates[0].SubjectID != ids[p] || f.Candidates[0].ExternalID != "ext-"+p || f.Candidates[0].FaceID == "" {
				t.Errorf("first candidate %+v", f.Candidates[0])
			}
		})
	}

	t.Run("never enrolled person is unknown", func(t *testing.T) {
		for _, photo := range []string{"testdata/faces/misc/obama.jpg", "testdata/faces/misc/biden.jpg", "testdata/faces/misc/carell.jpg"} {
			res := h.identify("bbt", testenv.ReadShared(t, photo))
			if len(res.Faces) != 1 {
				t.Fatalf("%s: %d faces, want 1", photo, len(res.Faces))
			}
			if f := res.Faces[0]; f.Decision != "unknown" || f.Match != nil {
				t.Errorf("%s: decision %s, match %+v; want unknown", photo, f.Decision, f.Match)
			}
		}
	})

	t.Run("group photo gives distinct subjects", func(t *testing.T) {
		total := 0
		for n := 1; n <= 5; n++ {
			res := h.identify("bbt", testenv.ReadShared(t, fmt.Sprintf("testdata/faces/bbt/bbt%d.jpg", n)))
			seen := map[string]bool{}
			for _, f := range res.Faces {
				if f.Match == nil {
					continue
				}
				if seen[f.Match.SubjectID] {
					t.Errorf("bbt%d: subject %s given to two faces", n, f.Match.SubjectID)
				}
				seen[f.Match.SubjectID] = true
				total++
			}
			if len(res.Faces) < 2 {
				t.Errorf("bbt%d: %d faces, want several", n, len(res.Faces))
			}
		}
		if total < 8 {
			t.Errorf("%d faces matched over the five group photos, want at least 8", total)
		}
	})

	t.Run("stats", func(t *testing.T) {
		var st struct {
			Subjects, Faces int64
			Threshold       float64
		}
		h.must(http.StatusOK, "GET", "/v1/collections/bbt/stats", h.admin, nil).decode(t, &st)
		if st.Subjects != 8 || st.Faces != 32 || st.Threshold <= 0 {
			t.Errorf("stats %+v, want 8 subjects, 32 faces", st)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		h.must(http.StatusUnauthorized, "GET", "/metrics", "", nil)
		h.must(http.StatusForbidden, "GET", "/metrics", h.newKey(store.RoleRead, "bbt"), nil)
		m := string(h.must(http.StatusOK, "GET", "/metrics", h.newKey(store.RoleRead, ""), nil).raw)
		for _, want := range []string{
			`visage_http_request_duration_seconds_count{method="POST",route="/v1/collections/:name/identify",status="200"}`,
			`visage_engine_stage_seconds_count{stage="embed"}`,
			`visage_engine_stage_seconds_count{stage="search"}`,
			`visage_gallery_faces{collection="bbt"} 32`,
			`visage_gallery_subjects{collection="bbt"} 8`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})

	t.Run("deleted subject is no longer identified", func(t *testing.T) {
		h.must(http.StatusNoContent, "DELETE", "/v1/collections/bbt/subjects/"+ids["penny"], h.admin, nil)
		res := h.identify("bbt", portrait(t, "penny", 5))
		for _, f := range res.Faces {
			for _, c := range f.Candidates {
				if c.SubjectID == ids["penny"] {
					t.Fatalf("deleted subject still a candidate: %+v", c)
				}
			}
		}
		h.must(http.StatusNotFound, "GET", "/v1/collections/bbt/subjects/"+ids["penny"], h.admin, nil)
		var events struct {
			Events []store.Event `json:"events"`
		}
		h.must(http.StatusOK, "GET", "/v1/admin/events?kind=delete&collection=bbt", h.admin, nil).decode(t, &events)
		if len(events.Events) == 0 || events.Events[0].SubjectID != ids["penny"] {
			t.Errorf("no delete event for the subject: %+v", events.Events)
		}
	})
}

func TestEnrollIsIdempotentAndTakesBase64(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) { testEnrollIsIdempotentAndTakesBase64(t, d.opts) })
	}
}

func testEnrollIsIdempotentAndTakesBase64(t *testing.T, opts harnessOptions) {
	h := newHarness(t, opts)
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "c1", "threshold": 0.4})))
	var sub store.Subject
	h.must(http.StatusCreated, "POST", "/v1/collections/c1/subjects", h.admin, ptr(jsonBody(map[string]any{"external_id": "amy"}))).decode(t, &sub)
	img := portrait(t, "amy", 1)
	path := "/v1/collections/c1/subjects/" + sub.ID + "/faces"

	var first, again, viaJSON enrollResponse
	h.must(http.StatusCreated, "POST", path, h.admin, ptr(multipartBody(images(img)...))).decode(t, &first)
	h.must(http.StatusOK, "POST", path, h.admin, ptr(multipartBody(images(img)...))).decode(t, &again)
	h.must(http.StatusOK, "POST", path, h.admin, ptr(jsonBody(map[string]any{"images": []string{base64.StdEncoding.EncodeToString(img)}}))).decode(t, &viaJSON)
	if first.Results[0].Status != "enrolled" || again.Results[0].Status != "exists" || viaJSON.Results[0].Status != "exists" {
		t.Fatalf("statuses %s, %s, %s; want enrolled, exists, exists", first.Results[0].Status, again.Results[0].Status, viaJSON.Results[0].Status)
	}
	if again.Results[0].Face.ID != first.Results[0].Face.ID || viaJSON.Results[0].Face.ID != first.Results[0].Face.ID {
		t.Errorf("face ids differ: %s %s %s", first.Results[0].Face.ID, again.Results[0].Face.ID, viaJSON.Results[0].Face.ID)
	}
	var got store.Subject
	h.must(http.StatusOK, "GET", "/v1/collections/c1/subjects/"+sub.ID, h.admin, nil).decode(t, &got)
	if got.FaceCount != 1 {
		t.Errorf("face count %d after three enrollments of one image, want 1", got.FaceCount)
	}

	// A second, different image by base64 JSON, then identification by JSON.
	var second enrollResponse
	h.must(http.StatusCreated, "POST", path, h.admin, ptr(jsonBody(map[string]any{"image": base64.StdEncoding.EncodeToString(portrait(t, "amy", 2))}))).decode(t, &second)
	var idr identifyResponse
	h.must(http.StatusOK, "POST", "/v1/collections/c1/identify", h.admin, ptr(jsonBody(map[string]any{
		"image": base64.StdEncoding.EncodeToString(portrait(t, "amy", 3)), "top_k": 1, "threshold": 0.5,
	}))).decode(t, &idr)
	if len(idr.Faces) != 1 || idr.Faces[0].Match == nil || idr.Faces[0].Match.SubjectID != sub.ID || len(idr.Faces[0].Candidates) != 1 {
		t.Errorf("identify by JSON: %+v", idr)
	}

	// Deleting one face leaves the other.
	h.must(http.StatusNoContent, "DELETE", "/v1/collections/c1/faces/"+first.Results[0].Face.ID, h.admin, nil)
	h.must(http.StatusNotFound, "DELETE", "/v1/collections/c1/faces/"+first.Results[0].Face.ID, h.admin, nil)
	var faces struct {
		Faces []store.Face `json:"faces"`
	}
	h.must(http.StatusOK, "GET", "/v1/collections/c1/subjects/"+sub.ID+"/faces", h.admin, nil).decode(t, &faces)
	if len(faces.Faces) != 1 || faces.Faces[0].ID != second.Results[0].Face.ID {
		t.Errorf("faces after deleting one: %+v", faces.Faces)
	}
}

func TestVerifyAndDetect(t *testing.T) {
	for _, d := range deployments {
		t.Run(d.name, func(t *testing.T) { testVerifyAndDetect(t, d.opts) })
	}
}

func testVerifyAndDetect(t *testing.T, opts harnessOptions) {
	h := newHarness(t, opts)
	ids := h.enrolledGallery()
	type verifyResp struct {
		Match    bool    `json:"match"`
		Distance float64 `json:"distance"`
	}
	tests := []struct {
		name  string
		body  body
		match bool
	}{
		{"same person, two images", multipartBody(part{name: "image", data: portrait(t, "raj", 5)}, part{name: "other", data: portrait(t, "raj", 1)}), true},
		{"different people, two images", multipartBody(images(portrait(t, "raj", 5), portrait(t, "amy", 5))...), false},
		{"image against own subject", multipartBody(part{name: "image", data: portrait(t, "howard", 5)}, part{name: "collection", value: "bbt"}, part{name: "subject_id", value: ids["howard"]}), true},
		{"image against another subject", jsonBody(map[string]any{"image": base64.StdEncoding.EncodeToString(portrait(t, "howard", 5)), "collection": "bbt", "subject_id": ids["sheldon"]}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v verifyResp
			h.must(http.StatusOK, "POST", "/v1/verify", h.admin, &tc.body).decode(t, &v)
			if v.Match != tc.match {
				t.Errorf("match %v at distance %.3f, want %v", v.Match, v.Distance, tc.match)
			}
		})
	}
	t.Run("detect stores nothing", func(t *testing.T) {
		var d struct {
			Faces []struct {
				Box       [4]int             `json:"box"`
				Landmarks [][2]int           `json:"landmarks"`
				Quality   struct{ Size int } `json:"quality"`
			} `json:"faces"`
		}
		h.must(http.StatusOK, "POST", "/v1/detect", h.admin, ptr(multipartBody(images(testenv.ReadShared(t, "testdata/faces/bbt/bbt1.jpg"))...))).decode(t, &d)
		if len(d.Faces) < 2 {
			t.Fatalf("%d faces, want several", len(d.Faces))
		}
		for _, f := range d.Faces {
			if len(f.Landmarks) == 0 || f.Quality.Size <= 0 {
				t.Errorf("face without landmarks or quality: %+v", f)
			}
		}
		var st struct{ Faces int64 }
		h.must(http.StatusOK, "GET", "/v1/collections/bbt/stats", h.admin, nil).decode(t, &st)
		if st.Faces != 32 {
			t.Errorf("%d faces stored after detect, want 32", st.Faces)
		}
	})
}

// sideBySide puts two copies of a portrait next to each other: two equally
// large faces.
func sideBySide(t *testing.T, data []byte) []byte {
	t.Helper()
	src, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := src.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, 2*b.Dx(), b.Dy()))
	draw.Draw(dst, b.Sub(b.Min), src, b.Min, draw.Src)
	draw.Draw(dst, b.Sub(b.Min).Add(image.Pt(b.Dx(), 0)), src, b.Min, draw.Src)
	return encodePNG(t, dst)
}

// darkened scales a portrait's brightness down to a fraction.
func darkened(t *testing.T, data []byte, f float64) []byte {
	t.Helper()
	src, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := src.Bounds()
	dst := image.NewRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := src.At(x, y).RGBA()
			dst.Set(x, y, color.RGBA{uint8(float64(r>>8) * f), uint8(float64(g>>8) * f), uint8(float64(bl>>8) * f), 255})
		}
	}
	return encodePNG(t, dst)
}

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestEveryProblemType reaches each documented problem type over HTTP.
func TestEveryProblemType(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	small := api.DefaultConfig()
	small.MaxBodyBytes = 64 << 10
	small.RateLimit, small.RateBurst = 0.001, 2
	limited := newHarness(t, harnessOptions{cfg: &small})

	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "c"})))
	var sub store.Subject
	h.must(http.StatusCreated, "POST", "/v1/collections/c/subjects", h.admin, ptr(jsonBody(map[string]any{"external_id": "x"}))).decode(t, &sub)
	enroll := "/v1/collections/c/subjects/" + sub.ID + "/faces"
	obama := testenv.ReadShared(t, "testdata/faces/misc/obama.jpg")
	blank := encodePNG(t, image.NewGray(image.Rect(0, 0, 320, 240)))
	readKey := h.newKey(store.RoleRead, "")

	tests := []struct {
		name     string
		h        *harness
		method   string
		path     string
		token    string
		body     *body
		status   int
		typ      string
		code     string
		contains string
	}{
		{"empty image", h, "POST", enroll, h.admin, ptr(multipartBody(part{name: "image", data: []byte{}})), 422, api.TypeBadImage, "empty_image", ""},
		{"text instead of an image", h, "POST", "/v1/detect", h.admin, ptr(multipartBody(images([]byte("not an image at all"))...)), 422, api.TypeBadImage, "unsupported_format", ""},
		{"truncated jpeg", h, "POST", "/v1/collections/c/identify", h.admin, ptr(multipartBody(images(obama[:len(obama)/2])...)), 422, api.TypeBadImage, "corrupt_image", ""},
		{"image bomb", h, "POST", enroll, h.admin, ptr(multipartBody(images(testenv.HugePNG(60000, 60000))...)), 413, api.TypeTooLarge, "image_too_large", ""},
		{"body over the limit", limited, "POST", "/v1/detect", limited.admin, ptr(multipartBody(images(make([]byte, 100<<10))...)), 413, api.TypeTooLarge, "body_too_large", ""},
		{"no face", h, "POST", enroll, h.admin, ptr(multipartBody(images(blank)...)), 422, api.TypeNoFace, "", ""},
		{"no face in verify", h, "POST", "/v1/verify", h.admin, ptr(multipartBody(images(blank, obama)...)), 422, api.TypeNoFace, "", ""},
		{"two equally large faces", h, "POST", enroll, h.admin, ptr(multipartBody(images(sideBySide(t, portrait(t, "leonard", 1)))...)), 422, api.TypeTooManyFaces, "", ""},
		{"too dark to enroll", h, "POST", enroll, h.admin, ptr(multipartBody(images(darkened(t, portrait(t, "sheldon", 1), 0.12))...)), 422, api.TypeQualityRejected, "", "too_dark"},
		{"unknown subject", h, "POST", "/v1/collections/c/subjects/00000000-0000-4000-8000-000000000000/faces", h.admin, ptr(multipartBody(images(obama)...)), 404, api.TypeNotFound, "", ""},
		{"unknown collection", h, "GET", "/v1/collections/nope/stats", h.admin, nil, 404, api.TypeNotFound, "", ""},
		{"duplicate collection", h, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "c"})), 409, api.TypeConflict, "", ""},
		{"duplicate external id", h, "POST", "/v1/collections/c/subjects", h.admin, ptr(jsonBody(map[string]any{"external_id": "x"})), 409, api.TypeConflict, "", ""},
		{"no key", h, "GET", "/v1/collections", "", nil, 401, api.TypeUnauthorized, "", ""},
		{"wrong key", h, "GET", "/v1/collections", "vsk_aaaaaaaaaaaa_" + strings.Repeat("a", 52), nil, 401, api.TypeUnauthorized, "", ""},
		{"read key enrolling", h, "POST", enroll, readKey, ptr(multipartBody(images(obama)...)), 403, api.TypeForbidden, "", ""},
		{"malformed JSON", h, "POST", "/v1/collections", h.admin, &body{[]byte("{"), "application/json"}, 400, api.TypeInvalidRequest, "", ""},
		{"bad collection name", h, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "a b/c"})), 400, api.TypeInvalidRequest, "", ""},
		{"bad threshold", h, "POST", "/v1/collections/c/identify", h.admin, ptr(multipartBody(part{name: "image", data: obama}, part{name: "threshold", value: "-1"})), 400, api.TypeInvalidRequest, "", ""},
		{"metadata not an object", h, "POST", "/v1/collections/c/subjects", h.admin, ptr(jsonBody(map[string]any{"external_id": "y", "metadata": []int{1}})), 400, api.TypeInvalidRequest, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.h.do(tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.status || r.problemType() != tc.typ {
				t.Fatalf("status %d type %q, want %d %q: %s", r.status, r.problemType(), tc.status, tc.typ, truncate(r.raw))
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.code != "" && !strings.Contains(string(r.raw), `"code":"`+tc.code+`"`) {
				t.Errorf("no code %s in %s", tc.code, truncate(r.raw))
			}
			if tc.contains != "" && !strings.Contains(string(r.raw), tc.contains) {
				t.Errorf("no %q in %s", tc.contains, truncate(r.raw))
			}
		})
	}
	t.Run("rate limited", func(t *testing.T) {
		var statuses []int
		for i := 0; i < 4; i++ {
			statuses = append(statuses, limited.do("GET", "/v1/collections", limited.admin, nil).status)
		}
		r := limited.do("GET", "/v1/collections", limited.admin, nil)
		if r.status != http.StatusTooManyRequests || r.problemType() != api.TypeRateLimited || r.header.Get("Retry-After") == "" {
			t.Fatalf("after %v: status %d type %q", statuses, r.status, r.problemType())
		}
	})
	t.Run("nothing stored was lost", func(t *testing.T) {
		var got store.Subject
		h.must(http.StatusOK, "GET", "/v1/collections/c/subjects/"+sub.ID, h.admin, nil).decode(t, &got)
		if got.FaceCount != 0 || got.ExternalID != "x" {
			t.Errorf("subject after bad requests: %+v", got)
		}
	})
}

// TestRoleMatrix checks every role against one call of each endpoint
// group, and the collection scope.
func TestRoleMatrix(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "a"})))
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "b"})))
	var sub store.Subject
	h.must(http.StatusCreated, "POST", "/v1/collections/a/subjects", h.admin, ptr(jsonBody(map[string]any{"external_id": "s"}))).decode(t, &sub)
	img := portrait(t, "leonard", 1)
	h.must(http.StatusCreated, "POST", "/v1/collections/a/subjects/"+sub.ID+"/faces", h.admin, ptr(multipartBody(images(img)...)))

	type call struct {
		name   string
		method string
		path   string
		body   func() *body
	}
	calls := []call{
		{"list collections", "GET", "/v1/collections", nil},
		{"get collection", "GET", "/v1/collections/a", nil},
		{"stats", "GET", "/v1/collections/a/stats", nil},
		{"list subjects", "GET", "/v1/collections/a/subjects", nil},
		{"create collection", "POST", "/v1/collections", func() *body { return ptr(jsonBody(map[string]any{"name": "z" + fmt.Sprint(len(img)%7)})) }},
		{"create subject", "POST", "/v1/collections/a/subjects", nil},
		{"enroll", "POST", "/v1/collections/a/subjects/" + sub.ID + "/faces", func() *body { return ptr(multipartBody(images(img)...)) }},
		{"identify", "POST", "/v1/collections/a/identify", func() *body { return ptr(multipartBody(images(img)...)) }},
		{"verify", "POST", "/v1/verify", func() *body { return ptr(multipartBody(images(img, img)...)) }},
		{"detect", "POST", "/v1/detect", func() *body { return ptr(multipartBody(images(img)...)) }},
		{"events", "GET", "/v1/admin/events", nil},
		{"top subjects", "GET", "/v1/admin/collections/a/top-subjects", nil},
		{"other collection", "GET", "/v1/collections/b", nil},
	}
	allowed := map[store.Role][]string{
		store.RoleAdmin:    {"list collections", "get collection", "stats", "list subjects", "create collection", "create subject", "enroll", "identify", "verify", "detect", "events", "top subjects", "other collection"},
		store.RoleEnroll:   {"list collections", "get collection", "stats", "list subjects", "create subject", "enroll", "detect", "other collection"},
		store.RoleIdentify: {"list collections", "get collection", "stats", "list subjects", "identify", "verify", "detect", "other collection"},
		store.RoleRead:     {"list collections", "get collection", "stats", "list subjects", "other collection"},
	}
	n := 0
	for _, role := range []store.Role{store.RoleAdmin, store.RoleEnroll, store.RoleIdentify, store.RoleRead} {
		for _, scope := range []string{"", "a"} {
			token := h.newKey(role, scope)
			ok := map[string]bool{}
			for _, name := range allowed[role] {
				ok[name] = true
			}
			for _, c := range calls {
				t.Run(fmt.Sprintf("%s scope=%q %s", role, scope, c.name), func(t *testing.T) {
					var b *body
					switch {
					case c.body != nil:
						b = c.body()
					case c.name == "create subject":
						n++
						b = ptr(jsonBody(map[string]any{"external_id": fmt.Sprintf("s%d", n)}))
					}
					if c.name == "create collection" {
						n++
						b = ptr(jsonBody(map[string]any{"name": fmt.Sprintf("new%d", n)}))
					}
					want := ok[c.name]
					// A scoped key reaches only its collection: not the
					// other one, and it cannot create new ones.
					if scope != "" && (c.name == "other collection" || c.name == "create collection") {
						want = false
					}
					r := h.do(c.method, c.path, token, b)
					if want && (r.status == http.StatusForbidden || r.status == http.StatusUnauthorized) {
						t.Errorf("refused (%d): %s", r.status, truncate(r.raw))
					}
					if want && r.status >= 400 {
						t.Errorf("allowed call failed (%d): %s", r.status, truncate(r.raw))
					}
					if !want && (r.status != http.StatusForbidden || r.problemType() != api.TypeForbidden) {
						t.Errorf("status %d type %q, want 403 forbidden", r.status, r.problemType())
					}
				})
			}
		}
	}
	t.Run("revoked key", func(t *testing.T) {
		token := h.newKey(store.RoleAdmin, "")
		h.must(http.StatusOK, "GET", "/v1/collections", token, nil)
		if err := h.store.RevokeKey(t.Context(), api.KeyID(token)); err != nil {
			t.Fatal(err)
		}
		if r := h.do("GET", "/v1/collections", token, nil); r.status != http.StatusUnauthorized {
			t.Errorf("revoked key: status %d", r.status)
		}
	})
}

// TestParallelEnrollAndIdentify runs enrollments and identifications at
// once (under -race in CI) and checks every one came out right.
func TestParallelEnrollAndIdentify(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "p"})))
	ids := map[string]string{}
	for _, p := range bbtPeople {
		var sub store.Subject
		h.must(http.StatusCreated, "POST", "/v1/collections/p/subjects", h.admin, ptr(jsonBody(map[string]any{"external_id": p}))).decode(t, &sub)
		ids[p] = sub.ID
	}
	var wg sync.WaitGroup
	for _, p := range bbtPeople {
		for n := 1; n <= 4; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var res enrollResponse
				h.must(http.StatusCreated, "POST", "/v1/collections/p/subjects/"+ids[p]+"/faces", h.admin, ptr(multipartBody(images(portrait(t, p, n))...))).decode(t, &res)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Identifications racing with enrollment: any answer is valid
			// but it must be well-formed.
			h.identify("p", portrait(t, p, 5))
		}()
	}
	wg.Wait()
	var st struct{ Faces, PendingFaces int64 }
	h.must(http.StatusOK, "GET", "/v1/collections/p/stats", h.admin, nil).decode(t, &st)
	if st.Faces != 32 || st.PendingFaces != 0 {
		t.Fatalf("stats after parallel enrollment: %+v, want 32 faces, none pending", st)
	}
	for _, p := range bbtPeople {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := h.identify("p", portrait(t, p, 5))
			if len(res.Faces) != 1 || res.Faces[0].Match == nil || res.Faces[0].Match.SubjectID != ids[p] {
				t.Errorf("%s: %+v", p, res.Faces)
			}
		}()
	}
	wg.Wait()
}

// TestVectorStoreUnavailable stops the scale-out deployment's vector
// store: enrollment and identification answer 503 unavailable with
// Retry-After and store nothing, deletion still succeeds, what was stored
// stays, and the service works again as soon as the store is back.
func TestVectorStoreUnavailable(t *testing.T) {
	h := newHarness(t, harnessOptions{scaleOut: true})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "c"})))
	subject := func(ext string) store.Subject {
		var s store.Subject
		h.must(http.StatusCreated, "POST", "/v1/collections/c/subjects", h.admin, ptr(jsonBody(map[string]any{"external_id": ext}))).decode(t, &s)
		return s
	}
	amy, penny := subject("amy"), subject("penny")
	facesPath := func(s store.Subject) string { return "/v1/collections/c/subjects/" + s.ID + "/faces" }
	h.must(http.StatusCreated, "POST", facesPath(amy), h.admin, ptr(multipartBody(images(portrait(t, "amy", 1))...)))
	h.must(http.StatusCreated, "POST", facesPath(penny), h.admin, ptr(multipartBody(images(portrait(t, "penny", 1))...)))
	countFaces := func(s store.Subject) int {
		var got struct {
			Faces []store.Face `json:"faces"`
		}
		h.must(http.StatusOK, "GET", facesPath(s), h.admin, nil).decode(t, &got)
		return len(got.Faces)
	}

	h.qdrant.Stop()
	for _, c := range []struct{ name, path string }{
		{"enroll", facesPath(amy)},
		{"identify", "/v1/collections/c/identify"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := h.do("POST", c.path, h.admin, ptr(multipartBody(images(portrait(t, "amy", 2))...)))
			if r.status != http.StatusServiceUnavailable || r.problemType() != api.TypeUnavailable || r.header.Get("Retry-After") == "" {
				t.Fatalf("%s while the vector store is down: %d %s (Retry-After %q), want 503 unavailable", c.name, r.status, r.raw, r.header.Get("Retry-After"))
			}
		})
	}
	if n := countFaces(amy); n != 1 {
		t.Errorf("amy has %d faces after the failed enrollment, want 1", n)
	}
	h.must(http.StatusNoContent, "DELETE", "/v1/collections/c/subjects/"+penny.ID, h.admin, nil)
	h.must(http.StatusNotFound, "GET", "/v1/collections/c/subjects/"+penny.ID, h.admin, nil)

	if err := h.qdrant.Restart(); err != nil {
		t.Fatal(err)
	}
	var again enrollResponse
	h.must(http.StatusCreated, "POST", facesPath(amy), h.admin, ptr(multipartBody(images(portrait(t, "amy", 2))...))).decode(t, &again)
	if again.Results[0].Status != "enrolled" {
		t.Errorf("retried enrollment: %+v", again.Results[0])
	}
	if n := countFaces(amy); n != 2 {
		t.Errorf("amy has %d faces, want 2", n)
	}
	for _, who := range []string{"amy", "penny"} {
		res := h.identify("c", portrait(t, who, 3))
		for _, f := range res.Faces {
			for _, c := range f.Candidates {
				if c.SubjectID == penny.ID {
					t.Errorf("deleted subject penny is a candidate for %s: %+v", who, c)
				}
			}
		}
		if who == "amy" && (len(res.Faces) != 1 || res.Faces[0].Match == nil || res.Faces[0].Match.SubjectID != amy.ID) {
			t.Errorf("amy's third portrait after the outage: %+v", res.Faces)
		}
	}
}
