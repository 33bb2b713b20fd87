package api_test

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/visage/visage/api"
	"github.com/visage/visage/store"
)

// galleryZip zips portraits 1 and 2 of the bbt people as <person>/<n>.png,
// plus a truncated photo and a text file, and any extra entries.
func galleryZip(t *testing.T, extra map[string][]byte) (zipped []byte, photos int) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, data []byte) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range bbtPeople {
		for n := 1; n <= 2; n++ {
			add(p+"/"+string(rune('0'+n))+".png", portrait(t, p, n))
			photos++
		}
	}
	whole := portrait(t, "amy", 3)
	add("broken/cut.png", whole[:len(whole)/4])
	add("notes.txt", []byte("not a photo"))
	for name, data := range extra {
		add(name, data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), photos
}

type importJob struct {
	store.ImportJob
	FacesPerSecond float64  `json:"faces_per_second"`
	ETASeconds     *float64 `json:"eta_seconds"`
}

// waitImport polls a job until it ends.
func (h *harness) waitImport(collection, id string) importJob {
	h.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var j importJob
		h.must(http.StatusOK, "GET", "/v1/collections/"+collection+"/imports/"+id, h.admin, nil).decode(h.t, &j)
		if j.State.Finished() {
			return j
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("import %s still %s: %+v", id, j.State, j)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestImportJobsOverHTTP(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "staff"})))
	enroller := h.newKey(store.RoleEnroll, "staff")
	zipped, photos := galleryZip(t, nil)

	var job importJob
	r := h.must(http.StatusAccepted, "POST", "/v1/collections/staff/imports?name=bbt.zip", enroller, &body{zipped, "application/zip"})
	r.decode(t, &job)
	if r.header.Get("Location") != "/v1/collections/staff/imports/"+job.ID {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	done := h.waitImport("staff", job.ID)
	if done.State != store.ImportDone || done.Total != photos+2 || done.Enrolled != photos || done.Failed != 1 || done.Skipped != 1 || done.FacesPerSecond <= 0 {
		t.Fatalf("import: %+v, want %d enrolled, 1 failed, 1 skipped", done, photos)
	}
	var amy struct {
		Subjects []store.Subject `json:"subjects"`
	}
	h.must(http.StatusOK, "GET", "/v1/collections/staff/subjects?external_id=amy", h.admin, nil).decode(t, &amy)
	if len(amy.Subjects) != 1 || amy.Subjects[0].FaceCount != 2 {
		t.Fatalf("amy after the import: %+v", amy.Subjects)
	}
	res := h.identify("staff", portrait(t, "amy", 5))
	if len(res.Faces) != 1 || res.Faces[0].Match == nil || res.Faces[0].Match.SubjectID != amy.Subjects[0].ID {
		t.Errorf("amy's fifth portrait after the import: %+v", res.Faces)
	}

	t.Run("failures CSV", func(t *testing.T) {
		r := h.must(http.StatusOK, "GET", "/v1/collections/staff/imports/"+job.ID+"/failures", h.admin, nil)
		rows, err := csv.NewReader(bytes.NewReader(r.raw)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, row := range rows[1:] {
			got[row[1]] = row[3] + "/" + row[4]
		}
		if len(rows) != 3 || got["broken/cut.png"] != "failed/corrupt_image" || got["notes.txt"] != "skipped/top_level_file" {
			t.Fatalf("failures CSV:\n%s", r.raw)
		}
	})

	t.Run("the same import again enrolls nothing", func(t *testing.T) {
		var again importJob
		h.must(http.StatusAccepted, "POST", "/v1/collections/staff/imports", enroller, &body{zipped, "application/octet-stream"}).decode(t, &again)
		got := h.waitImport("staff", again.ID)
		if got.Enrolled != 0 || got.Skipped != photos+1 || got.Failed != 1 {
			t.Fatalf("second import: %+v", got)
		}
		var list struct {
			Imports []importJob `json:"imports"`
		}
		h.must(http.StatusOK, "GET", "/v1/collections/staff/imports", h.admin, nil).decode(t, &list)
		if len(list.Imports) != 2 || list.Imports[0].ID != again.ID {
			t.Errorf("import list: %+v", list.Imports)
		}
		h.must(http.StatusConflict, "DELETE", "/v1/collections/staff/imports/"+again.ID, enroller, nil)
	})

	t.Run("refused sources", func(t *testing.T) {
		evil, _ := galleryZip(t, map[string][]byte{"../escape.png": portrait(t, "amy", 1)})
		r := h.do("POST", "/v1/collections/staff/imports", enroller, &body{evil, "application/zip"})
		if r.status != http.StatusBadRequest || r.problemType() != api.TypeInvalidRequest || !strings.Contains(string(r.raw), "path_traversal") {
			t.Errorf("zip with ../: %d %s", r.status, r.raw)
		}
		var bomb bytes.Buffer
		zw := zip.NewWriter(&bomb)
		w, _ := zw.Create("amy/huge.png")
		w.Write(make([]byte, 200<<20)) // 200 MiB of zeros: a few hundred KB zipped
		zw.Close()
		r = h.do("POST", "/v1/collections/staff/imports", enroller, &body{bomb.Bytes(), "application/zip"})
		if r.status != http.StatusBadRequest || r.problemType() != api.TypeInvalidRequest {
			t.Errorf("zip bomb: %d %s", r.status, r.raw)
		}
		r = h.do("POST", "/v1/collections/staff/imports", enroller, &body{[]byte("not an archive"), "application/zip"})
		if r.status != http.StatusBadRequest {
			t.Errorf("garbage: %d %s", r.status, r.raw)
		}
		r = h.do("POST", "/v1/collections/staff/imports", enroller, ptr(jsonBody(map[string]any{"path": "bbt"})))
		if r.status != http.StatusForbidden {
			t.Errorf("server-local path with an enroll key: %d %s", r.status, r.raw)
		}
		r = h.do("POST", "/v1/collections/staff/imports", h.admin, ptr(jsonBody(map[string]any{"path": "../etc"})))
		if r.status != http.StatusBadRequest {
			t.Errorf("path escaping the root: %d %s", r.status, r.raw)
		}
		h.must(http.StatusNotFound, "GET", "/v1/collections/staff/imports/nope", h.admin, nil)
		other := h.newKey(store.RoleEnroll, "other")
		h.must(http.StatusForbidden, "GET", "/v1/collections/staff/imports/"+job.ID, other, nil)
	})

	t.Run("server-local tree", func(t *testing.T) {
		h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "local"})))
		for _, p := range []string{"penny", "raj"} {
			dir := filepath.Join(h.importRoot, "tree", p)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "1.png"), portrait(t, p, 1), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		var j importJob
		h.must(http.StatusAccepted, "POST", "/v1/collections/local/imports", h.admin, ptr(jsonBody(map[string]any{"path": "tree"}))).decode(t, &j)
		if got := h.waitImport("local", j.ID); got.Enrolled != 2 || got.Total != 2 {
			t.Fatalf("server-local import: %+v", got)
		}
		if _, err := os.Stat(filepath.Join(h.importRoot, "tree", "raj", "1.png")); err != nil {
			t.Errorf("a server-local source was removed: %v", err)
		}
	})
}

// TestImportFailuresCSVEscapesFormulas: cells a spreadsheet would run as
// a formula (=, +, -, @, tab, CR first) start with a quote in the
// failures CSV.
func TestImportFailuresCSVEscapesFormulas(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "formulas"})))
	evil := []string{`=HYPERLINK("http://evil.example/","click")`, "+1+2.png", "-2.png", "@SUM(A1).png", "\tcmd.png", "\rcr.png"}
	var manifest bytes.Buffer
	for i, p := range evil {
		line, _ := json.Marshal(map[string]string{"path": p, "external_id": fmt.Sprintf("=1+%d", i)})
		manifest.Write(append(line, '\n'))
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("manifest.jsonl")
	w.Write(manifest.Bytes())
	zw.Close()
	var j importJob
	h.must(http.StatusAccepted, "POST", "/v1/collections/formulas/imports", h.admin, &body{buf.Bytes(), "application/zip"}).decode(t, &j)
	if got := h.waitImport("formulas", j.ID); got.Skipped != len(evil) {
		t.Fatalf("import: %+v, want %d lines skipped", got, len(evil))
	}
	r := h.must(http.StatusOK, "GET", "/v1/collections/formulas/imports/"+j.ID+"/failures", h.admin, nil)
	rows, err := csv.NewReader(bytes.NewReader(r.raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, row := range rows[1:] {
		for _, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("cell %q starts a formula", cell)
			}
		}
		paths[row[1]] = true
	}
	for _, p := range evil {
		if !paths["'"+p] {
			t.Errorf("no row with the path '%s:\n%s", p, r.raw)
		}
	}
}
