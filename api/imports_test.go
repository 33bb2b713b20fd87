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
	"github.com/visage/visage/gallery"
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

// secretLine is the first line of a file outside the import root that a
// link inside it points to: no answer, error or CSV may quote it.
const secretLine = "SECRET-first-line-of-an-outside-file-7f3a"

// importRootWithLinks fills the harness's import root with a real tree
// and links leading out of it (and one staying inside), and returns the
// outside directory.
func importRootWithLinks(t *testing.T, h *harness) string {
	t.Helper()
	outside := t.TempDir()
	write := func(p string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(h.importRoot, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"penny", "raj"} {
		write(filepath.Join(h.importRoot, "tree", p, "1.png"), portrait(t, p, 1))
		write(filepath.Join(outside, "tree", p, "1.png"), portrait(t, p, 1))
	}
	zipped, _ := galleryZip(t, nil)
	write(filepath.Join(outside, "gallery.zip"), zipped)
	write(filepath.Join(outside, "people.csv"), []byte(secretLine+"\npenny/1.png,penny\n"))
	write(filepath.Join(outside, "manifest", "manifest.csv"), []byte(secretLine+"\n"))
	link("/etc", "etc")
	link(filepath.Join(outside, "tree"), "outside")
	link(filepath.Join(outside, "gallery.zip"), "gallery.zip")
	link(filepath.Join(outside, "people.csv"), "people.csv")
	link(filepath.Join(outside, "manifest"), "manifest")
	link("tree", "alias") // stays inside, still not followed
	return outside
}

// TestImportServerPathSealed: a server-local import resolves its path
// inside the import root and follows no symbolic link; every refused path
// is a 400 invalid_request that quotes nothing from outside the root.
func TestImportServerPathSealed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "sealed"})))
	importRootWithLinks(t, h)
	etc, err := os.ReadDir("/etc")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{"link to /etc", "etc"},
		{"path through a link to /etc", "etc/passwd"},
		{"link to an outside tree", "outside"},
		{"path through a link to an outside tree", "outside/penny"},
		{"link to an outside archive", "gallery.zip"},
		{"link to an outside manifest", "people.csv"},
		{"link to an outside manifest folder", "manifest"},
		{"link staying inside the root", "alias"},
		{"dot-dot out of the root", "tree/../../etc"},
		{"absolute path", "/etc"},
		{"NUL byte", "tree\x00/penny"},
		{"name longer than the file system takes", strings.Repeat("n", 300)},
		{"path longer than the file system takes", strings.Repeat("d/", 2100) + "x"},
		{"path through a file", "tree/penny/1.png/x"},
		{"missing", "nothing-here"},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", "/v1/collections/sealed/imports", h.admin, ptr(jsonBody(map[string]any{"path": tc.path})))
			if r.status != http.StatusBadRequest || r.problemType() != api.TypeInvalidRequest {
				t.Fatalf("status %d %s, want 400 invalid_request", r.status, truncate(r.raw))
			}
			if strings.Contains(strings.ToLower(string(r.raw)), strings.ToLower(secretLine)) {
				t.Errorf("the answer quotes the outside file: %s", r.raw)
			}
			for _, e := range etc {
				if len(e.Name()) >= 6 && strings.Contains(string(r.raw), e.Name()) && !strings.Contains(tc.path, e.Name()) {
					t.Errorf("the answer names /etc/%s: %s", e.Name(), r.raw)
				}
			}
		})
	}
	var list struct {
		Imports []importJob `json:"imports"`
	}
	h.must(http.StatusOK, "GET", "/v1/collections/sealed/imports", h.admin, nil).decode(t, &list)
	if len(list.Imports) != 0 {
		t.Errorf("refused paths started %d jobs: %+v", len(list.Imports), list.Imports)
	}

	t.Run("a real tree holding links imports only its own photos", func(t *testing.T) {
		if err := os.Symlink("/etc", filepath.Join(h.importRoot, "tree", "etc")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(h.importRoot, "outside", "raj", "1.png"), filepath.Join(h.importRoot, "tree", "penny", "2.png")); err != nil {
			t.Fatal(err)
		}
		h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "sealed-tree"})))
		var j importJob
		h.must(http.StatusAccepted, "POST", "/v1/collections/sealed-tree/imports", h.admin, ptr(jsonBody(map[string]any{"path": "tree"}))).decode(t, &j)
		got := h.waitImport("sealed-tree", j.ID)
		if got.Enrolled != 2 || got.Skipped != 2 || got.Total != 4 {
			t.Fatalf("import of a tree with links: %+v %s, want 2 enrolled and the 2 links skipped", got, got.Source)
		}
		r := h.must(http.StatusOK, "GET", "/v1/collections/sealed-tree/imports/"+j.ID+"/failures", h.admin, nil)
		if n := strings.Count(string(r.raw), "\n"); n != 3 || !strings.Contains(string(r.raw), ",etc,,skipped,symlink,") || strings.Contains(string(r.raw), "passwd") {
			t.Errorf("failures CSV of a tree with links, want the two links skipped:\n%s", r.raw)
		}
	})

	t.Run("a manifest pointing out of its folder", func(t *testing.T) {
		dir := filepath.Join(h.importRoot, "m")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(h.importRoot, "outside"), filepath.Join(dir, "out")); err != nil {
			t.Fatal(err)
		}
		manifest := "path,external_id\n../tree/penny/1.png,penny\n/etc/passwd,x\nout/raj/1.png,raj\n../people.csv,y\n"
		if err := os.WriteFile(filepath.Join(dir, "manifest.csv"), []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		var j importJob
		h.must(http.StatusAccepted, "POST", "/v1/collections/sealed/imports", h.admin, ptr(jsonBody(map[string]any{"path": "m"}))).decode(t, &j)
		got := h.waitImport("sealed", j.ID)
		if got.Enrolled != 0 || got.Skipped != 4 {
			t.Fatalf("import of a manifest pointing out: %+v, want its 4 lines skipped", got)
		}
		r := h.must(http.StatusOK, "GET", "/v1/collections/sealed/imports/"+j.ID+"/failures", h.admin, nil)
		if strings.Contains(strings.ToLower(string(r.raw)), strings.ToLower(secretLine)) || strings.Contains(string(r.raw), "root:") {
			t.Errorf("the failures CSV quotes an outside file:\n%s", r.raw)
		}
	})
}

// TestImportJobJSONHidesServerPaths: the job JSON, which read keys see,
// names paths relative to the import root or the upload, never absolute
// server paths.
func TestImportJobJSONHidesServerPaths(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "paths"})))
	reader := h.newKey(store.RoleRead, "paths")
	for _, p := range []string{"penny", "raj"} {
		dir := filepath.Join(h.importRoot, "nested", "tree", p)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "1.png"), portrait(t, p, 1), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	zipped, _ := galleryZip(t, nil)
	// An archive of a manifest's folder rather than of its contents.
	var exported bytes.Buffer
	zw := zip.NewWriter(&exported)
	for name, data := range map[string][]byte{"export/manifest.csv": []byte("path,external_id\nimg/p.png,penny\n"), "export/img/p.png": portrait(t, "penny", 2)} {
		w, _ := zw.Create(name)
		w.Write(data)
	}
	zw.Close()
	starts := []struct {
		name string
		body body
		root string // the source's root the JSON shows, "" for any relative path
	}{
		{"server-local tree", jsonBody(map[string]any{"path": "nested/tree"}), "nested/tree"},
		{"upload", body{zipped, "application/zip"}, ""},
		{"upload of a folder", body{exported.Bytes(), "application/zip"}, ""},
	}
	for _, s := range starts {
		t.Run(s.name, func(t *testing.T) {
			var j importJob
			r := h.must(http.StatusAccepted, "POST", "/v1/collections/paths/imports", h.admin, &s.body)
			r.decode(t, &j)
			h.waitImport("paths", j.ID)
			for _, raw := range [][]byte{r.raw,
				h.must(http.StatusOK, "GET", "/v1/collections/paths/imports/"+j.ID, reader, nil).raw,
				h.must(http.StatusOK, "GET", "/v1/collections/paths/imports", reader, nil).raw} {
				if strings.Contains(string(raw), h.importRoot) || strings.Contains(string(raw), os.TempDir()) {
					t.Errorf("job JSON holds a server path: %s", raw)
				}
			}
			var src map[string]any
			if err := json.Unmarshal(j.Source, &src); err != nil {
				t.Fatal(err)
			}
			root, _ := src["root"].(string)
			if !filepath.IsLocal(root) || s.root != "" && root != s.root {
				t.Errorf("source %s: root %q, want %q relative to the import root or directory", j.Source, root, s.root)
			}
			// An upload's extracted copy is removed once its job ends,
			// whole (its folder too); a server-local source stays.
			deadline := time.Now().Add(10 * time.Second)
			for {
				ents, err := os.ReadDir(h.importDir)
				if err != nil {
					t.Fatal(err)
				}
				if len(ents) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the import directory still holds %s after the job ended", ents[0].Name())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := os.Stat(filepath.Join(h.importRoot, "nested", "tree", "raj", "1.png")); err != nil {
				t.Errorf("a server-local source was removed: %v", err)
			}
		})
	}
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

// assertEmptyDir fails unless dir holds nothing.
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("%s left in %s", e.Name(), dir)
	}
}

// TestImportJobLimit: beyond the server's import jobs at once, a new
// import is refused with 429 rate_limited (code too_many_imports) and
// Retry-After, before its upload is stored.
func TestImportJobLimit(t *testing.T) {
	h := newHarness(t, harnessOptions{importer: func(c *gallery.ImportConfig) { c.MaxJobs = 1 }})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "busy"})))
	zipped, _ := galleryZip(t, nil)
	if err := os.MkdirAll(filepath.Join(h.importRoot, "tree", "penny"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.importRoot, "tree", "penny", "1.png"), portrait(t, "penny", 1), 0o600); err != nil {
		t.Fatal(err)
	}
	// A job being prepared elsewhere holds the only slot.
	slot, err := h.importer.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []body{{zipped, "application/zip"}, jsonBody(map[string]any{"path": "tree"})} {
		r := h.do("POST", "/v1/collections/busy/imports", h.admin, &b)
		var p api.Problem
		r.decode(t, &p)
		if r.status != http.StatusTooManyRequests || p.Type != api.TypeRateLimited || p.Code != "too_many_imports" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s import at the limit: %d %s (Retry-After %q), want 429 too_many_imports", b.ct, r.status, r.raw, r.header.Get("Retry-After"))
		}
	}
	assertEmptyDir(t, h.importDir)
	slot.Release()
	var j importJob
	h.must(http.StatusAccepted, "POST", "/v1/collections/busy/imports", h.admin, &body{zipped, "application/zip"}).decode(t, &j)
	h.waitImport("busy", j.ID)
	// The ended job gave its slot back.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := h.do("POST", "/v1/collections/busy/imports", h.admin, ptr(jsonBody(map[string]any{"path": "tree"})))
		if r.status == http.StatusAccepted {
			break
		}
		if r.status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("import after the job ended: %d %s", r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestImportDiskSpace: an archive that would not leave the server's
// margin of free disk space is refused with 507 insufficient_storage,
// and nothing of it stays on disk.
func TestImportDiskSpace(t *testing.T) {
	h := newHarness(t, harnessOptions{imports: func(c *api.ImportConfig) { c.Archive.MinFreeBytes = 1 << 62 }})
	h.must(http.StatusCreated, "POST", "/v1/collections", h.admin, ptr(jsonBody(map[string]any{"name": "full"})))
	zipped, _ := galleryZip(t, nil)
	if err := os.WriteFile(filepath.Join(h.importRoot, "gallery.zip"), zipped, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, b := range []body{{zipped, "application/zip"}, jsonBody(map[string]any{"path": "gallery.zip"})} {
		r := h.do("POST", "/v1/collections/full/imports", h.admin, &b)
		if r.status != http.StatusInsufficientStorage || r.problemType() != api.TypeInsufficientStorage {
			t.Errorf("%s import with no room: %d %s, want 507 insufficient_storage", b.ct, r.status, r.raw)
		}
	}
	assertEmptyDir(t, h.importDir)
	// The slots were given back.
	h.must(http.StatusAccepted, "POST", "/v1/collections/full/imports", h.admin, ptr(jsonBody(map[string]any{"path": "."})))
}
