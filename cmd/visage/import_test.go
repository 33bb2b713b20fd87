package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/visage/visage/internal/testenv"
)

// importAdminKey is the bootstrap admin key of the test servers.
const importAdminKey = "import-test-admin-key-0123456789"

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// importServer is a real visaged process the import tests talk to.
type importServer struct {
	t    *testing.T
	url  string
	data string
	logs *lockedBuffer
}

// buildVisagedForImport compiles the server into a temporary directory.
func buildVisagedForImport(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "visaged")
	cmd := exec.Command("go", "build", "-o", bin, "../visaged")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build visaged: %v", err)
	}
	return bin
}

// startImportServer runs visaged on a fresh data directory and waits
// until it is ready.
func startImportServer(t *testing.T, bin string, args ...string) *importServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &importServer{t: t, url: "http://" + addr, data: t.TempDir(), logs: &lockedBuffer{}}
	cmd := exec.Command(bin, append([]string{"--addr", addr, "--data", s.data, "--models", testenv.ModelDir(t), "--log-format", "text"}, args...)...)
	cmd.Env = append(os.Environ(), "VISAGE_BOOTSTRAP_ADMIN_KEY="+importAdminKey)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
	}
	t.Fatalf("visaged not ready after 90 s; logs:\n%s", s.logs)
	return nil
}

// call sends one API request with the admin key and checks its status.
// A rate-limited server's 429 is waited out (bodiless requests only).
func (s *importServer) call(want int, method, path string, body io.Reader, contentType string) []byte {
	s.t.Helper()
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(method, s.url+path, body)
		if err != nil {
			s.t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+importAdminKey)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.t.Fatalf("%s %s: %v", method, path, err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && body == nil && attempt < 20 {
			time.Sleep(parseRetryAfter(resp.Header.Get("Retry-After")))
			continue
		}
		if resp.StatusCode != want {
			s.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, out, want)
		}
		return out
	}
}

// subjectJSON is the part of a subject the tests look at.
type subjectJSON struct {
	ID          string          `json:"id"`
	ExternalID  string          `json:"external_id"`
	DisplayName string          `json:"display_name"`
	Metadata    json.RawMessage `json:"metadata"`
	FaceCount   int             `json:"face_count"`
}

// subjects returns a collection's subjects by external id.
func (s *importServer) subjects(collection string) map[string]subjectJSON {
	s.t.Helper()
	var page struct {
		Subjects []subjectJSON `json:"subjects"`
		Next     string        `json:"next"`
	}
	if err := json.Unmarshal(s.call(200, "GET", "/v1/collections/"+collection+"/subjects?limit=1000", nil, ""), &page); err != nil {
		s.t.Fatal(err)
	}
	if page.Next != "" {
		s.t.Fatal("more subjects than one page")
	}
	out := map[string]subjectJSON{}
	for _, sub := range page.Subjects {
		out[sub.ExternalID] = sub
	}
	return out
}

// faceCounts returns the number of faces of each subject and the
// collection's face count.
func (s *importServer) faceCounts(collection string) (map[string]int, int) {
	s.t.Helper()
	per := map[string]int{}
	for id, sub := range s.subjects(collection) {
		per[id] = sub.FaceCount
	}
	var stats struct {
		Faces int `json:"faces"`
	}
	if err := json.Unmarshal(s.call(200, "GET", "/v1/collections/"+collection+"/stats", nil, ""), &stats); err != nil {
		s.t.Fatal(err)
	}
	return per, stats.Faces
}

// linkOrCopy puts the shared photo src at dst: a hard link when the
// file system allows (the photo is read in place), else a copy. Not a
// symbolic link: a tree's symbolic links are skipped, by design.
func linkOrCopy(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Link(src, dst) == nil {
		return
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// treeFaces is how many faces each subject of the test tree has: every
// one of its photos enrolls (checked against the engine when chosen).
var treeFaces = map[string]int{"amy": 5, "penny": 5, "raj": 5, "Abel_Pacheco": 3, "Bernard_Law": 4}

const treeGood = 22 // the sum of treeFaces

// treeBad are the tree's files that do not enroll, as the failures file
// lists them: path, external id, reason.
var treeBad = [][3]string{
	{"amy/blank.png", "amy", "no_face"},
	{"amy/notes.txt", "", "not_image"},
	{"penny/.DS_Store", "", "hidden"},
	{"penny/truncated.jpg", "penny", "bad_image"},
	{"raj/group.jpg", "raj", "too_many_faces"},
}

// buildTree lays out <external id>/<photos> in a temporary directory from
// the shared photos, with the bad files of treeBad.
func buildTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{"amy", "penny", "raj"} {
		for i := 1; i <= 5; i++ {
			name := fmt.Sprintf("%s%d.png", p, i)
			linkOrCopy(t, testenv.Shared(t, "testdata/faces/bbt/"+p+"/"+name), filepath.Join(dir, p, name))
		}
	}
	for _, p := range []string{"Abel_Pacheco", "Bernard_Law"} {
		src := testenv.Shared(t, "testdata/lfw-dev/images/"+p)
		ents, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			linkOrCopy(t, filepath.Join(src, e.Name()), filepath.Join(dir, p, e.Name()))
		}
	}
	// bbt1.jpg: four faces of the same size, which enrollment refuses.
	linkOrCopy(t, testenv.Shared(t, "testdata/faces/bbt/bbt1.jpg"), filepath.Join(dir, "raj", "group.jpg"))
	write := func(rel string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("penny/truncated.jpg", testenv.ReadShared(t, "testdata/faces/misc/obama.jpg")[:3000])
	write("amy/blank.png", testenv.BlankPNG())
	write("amy/notes.txt", []byte("not a photo\n"))
	write("penny/.DS_Store", []byte{0, 0, 0, 1})
	return dir
}

// importCfg parses an import command line as the CLI would and sets the
// test knobs: plain progress lines every 10 ms, short backoff.
func importCfg(t *testing.T, srv *importServer, args ...string) importConfig {
	t.Helper()
	cfg, err := parseImportFlags(&cliEnv{stdout: io.Discard, stderr: io.Discard}, append([]string{"--server", srv.url}, args...))
	if err != nil {
		t.Fatal(err)
	}
	plain := false
	cfg.terminal = &plain
	cfg.progressEvery = 10 * time.Millisecond
	cfg.retryBase = 20 * time.Millisecond
	return cfg
}

// importRun runs one import and returns its summary's fields, its
// stderr and its error.
func importRun(t *testing.T, ctx context.Context, cfg importConfig) (map[string]string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := importGallery(ctx, &cliEnv{stdout: &out, stderr: &errOut}, cfg)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "import ") {
		t.Fatalf("no summary line on stdout: %q (stderr %s, err %v)", out.String(), errOut.String(), err)
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(last)[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("summary field %q is not key=value in %q", f, last)
		}
		fields[k] = v
	}
	t.Log(last)
	return fields, errOut.String(), err
}

// checkCounts compares summary fields with the wanted integers.
func checkCounts(t *testing.T, got map[string]string, want map[string]int) {
	t.Helper()
	for k, w := range want {
		if n, err := strconv.Atoi(got[k]); err != nil || n != w {
			t.Errorf("summary %s=%s, want %d", k, got[k], w)
		}
	}
}

// readFailures reads a failures file's rows (without the header).
func readFailures(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != "path,external_id,reason_code,detail" {
		t.Fatalf("failures file header %v", rows)
	}
	return rows[1:]
}

// stateResults reads a state file's results (after its header).
func stateResults(t *testing.T, path string) []itemResult {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var out []itemResult
	for _, l := range lines[1:] {
		var r itemResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("state line %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// TestImport drives `visage import` against a real visaged: a tree with
// bad files, an identical second import, an interrupted and resumed
// import, manifests, refused keys and a rate-limited server.
func TestImport(t *testing.T) {
	bin := buildVisagedForImport(t)
	srv := startImportServer(t, bin, "--rate-limit", "0")
	t.Setenv("VISAGE_API_KEY", importAdminKey)
	tree := buildTree(t)
	work := t.TempDir()
	treeTotal := treeGood + len(treeBad)

	t.Run("tree", func(t *testing.T) {
		state := filepath.Join(work, "tree.state")
		cfg := importCfg(t, srv, "--collection", "tree", "--dir", tree, "--create-collection", "--state", state)
		sum, stderr, err := importRun(t, context.Background(), cfg)
		if err != nil {
			t.Fatalf("import: %v\n%s", err, stderr)
		}
		checkCounts(t, sum, map[string]int{"total": treeTotal, "enrolled": treeGood, "skipped": 2, "failed": 3, "remaining": 0, "resumed": 0})

		rows := readFailures(t, filepath.Join(work, "visage-import-tree-failures.csv"))
		if len(rows) != len(treeBad) {
			t.Fatalf("failures file has %d rows, want %d: %v", len(rows), len(treeBad), rows)
		}
		for i, want := range treeBad {
			if got := [3]string{rows[i][0], rows[i][1], rows[i][2]}; got != want {
				t.Errorf("failures row %d = %v, want %v", i, got, want)
			}
		}
		if !strings.Contains(rows[3][3], "code=corrupt_image") {
			t.Errorf("truncated JPEG's detail %q does not give its code", rows[3][3])
		}

		// The state file holds each photo the server answered, once.
		results := stateResults(t, state)
		if len(results) != treeGood+3 {
			t.Errorf("state file has %d results, want %d", len(results), treeGood+3)
		}
		for _, r := range results {
			if r.Outcome == outcomeEnrolled && (r.FaceID == "" || r.SubjectID == "") {
				t.Errorf("state result %+v lacks its ids", r)
			}
		}

		per, faces := srv.faceCounts("tree")
		if faces != treeGood {
			t.Errorf("collection has %d faces, want %d", faces, treeGood)
		}
		for id, n := range treeFaces {
			if per[id] != n {
				t.Errorf("subject %s has %d faces, want %d", id, per[id], n)
			}
		}

		// An enrolled photo is found again by identification.
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile("image", "penny3.png")
		fw.Write(testenv.ReadShared(t, "testdata/faces/bbt/penny/penny3.png"))
		mw.Close()
		var ident struct {
			Faces []struct {
				Match *struct {
					ExternalID string  `json:"external_id"`
					Distance   float64 `json:"distance"`
				} `json:"match"`
			} `json:"faces"`
		}
		if err := json.Unmarshal(srv.call(200, "POST", "/v1/collections/tree/identify", &body, mw.FormDataContentType()), &ident); err != nil {
			t.Fatal(err)
		}
		// The same pixels: the plain probe against the enrolled
		// mirror-averaged descriptor (0.065 apart at the median on
		// lfw-open, 0.154 at most; two people 0.25 or more).
		if len(ident.Faces) != 1 || ident.Faces[0].Match == nil || ident.Faces[0].Match.ExternalID != "penny" || ident.Faces[0].Match.Distance > 0.2 {
			t.Errorf("identify penny3.png: %+v, want penny within 0.2", ident.Faces)
		}

		// Not a terminal: plain periodic lines, the last one complete.
		re := regexp.MustCompile(`(?m)^import: \d+/\d+ \d+% [\d.]+ photos/s ETA \S+ enrolled=\d+ skipped=\d+ failed=\d+$`)
		lines := re.FindAllString(stderr, -1)
		if len(lines) < 2 {
			t.Errorf("want periodic progress lines on stderr, got %q", stderr)
		} else if want := fmt.Sprintf("import: %d/%d 100%%", treeTotal, treeTotal); !strings.HasPrefix(lines[len(lines)-1], want) {
			t.Errorf("last progress line %q, want it to start %q", lines[len(lines)-1], want)
		}
		if strings.Contains(stderr, "\r") {
			t.Error("the live bar was drawn to a non-terminal")
		}
	})

	t.Run("second import enrolls nothing", func(t *testing.T) {
		// A new state file: every photo is sent again and the server
		// recognises each.
		cfg := importCfg(t, srv, "--collection", "tree", "--dir", tree, "--state", filepath.Join(work, "again.state"))
		sum, stderr, err := importRun(t, context.Background(), cfg)
		if err != nil {
			t.Fatalf("import: %v\n%s", err, stderr)
		}
		checkCounts(t, sum, map[string]int{"total": treeTotal, "enrolled": 0, "skipped": treeGood + 2, "failed": 3})
		if _, faces := srv.faceCounts("tree"); faces != treeGood {
			t.Errorf("collection has %d faces after the second import, want %d", faces, treeGood)
		}
		if !strings.Contains(stderr, fmt.Sprintf("exists %d", treeGood)) {
			t.Errorf("breakdown does not count %d exists: %s", treeGood, stderr)
		}
	})

	t.Run("subjects whose photos all fail are not left", func(t *testing.T) {
		// ghost: created by the import, every photo refused: removed at
		// the end. keeper: there before the import, with no face: kept.
		dir := t.TempDir()
		linkOrCopy(t, testenv.Shared(t, "testdata/faces/bbt/amy/amy1.png"), filepath.Join(dir, "amy", "amy1.png"))
		linkOrCopy(t, testenv.Shared(t, "testdata/faces/bbt/bbt1.jpg"), filepath.Join(dir, "ghost", "group.jpg"))
		for _, rel := range []string{"ghost/blank.png", "keeper/blank.png"} {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, rel), testenv.BlankPNG(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		srv.call(201, "POST", "/v1/collections", strings.NewReader(`{"name":"ghosts"}`), "application/json")
		srv.call(201, "POST", "/v1/collections/ghosts/subjects", strings.NewReader(`{"external_id":"keeper"}`), "application/json")
		cfg := importCfg(t, srv, "--collection", "ghosts", "--dir", dir, "--state", filepath.Join(work, "ghosts.state"))
		sum, stderr, err := importRun(t, context.Background(), cfg)
		if err != nil {
			t.Fatalf("import: %v\n%s", err, stderr)
		}
		checkCounts(t, sum, map[string]int{"total": 4, "enrolled": 1, "failed": 3})
		subs := srv.subjects("ghosts")
		if _, ok := subs["ghost"]; ok || len(subs) != 2 || subs["amy"].FaceCount != 1 || subs["keeper"].FaceCount != 0 {
			t.Errorf("subjects after the import: %+v; want amy (1 face) and keeper (none), no ghost", subs)
		}
		if !strings.Contains(stderr, "removed 1 subjects this import created whose photos all failed") {
			t.Errorf("stderr does not report the removal: %s", stderr)
		}
	})

	t.Run("completed state file sends nothing", func(t *testing.T) {
		cfg := importCfg(t, srv, "--collection", "tree", "--dir", tree, "--state", filepath.Join(work, "tree.state"))
		sum, stderr, err := importRun(t, context.Background(), cfg)
		if err != nil {
			t.Fatalf("import: %v\n%s", err, stderr)
		}
		// The record of the first run, unchanged.
		checkCounts(t, sum, map[string]int{"total": treeTotal, "enrolled": treeGood, "skipped": 2, "failed": 3, "resumed": treeGood + 3})
		if sum["photos_per_second"] != "0.0" {
			t.Errorf("photos_per_second=%s: photos were sent", sum["photos_per_second"])
		}
	})

	t.Run("interrupted and resumed", func(t *testing.T) {
		state := filepath.Join(work, "resume.state")
		cfg := importCfg(t, srv, "--collection", "resume", "--dir", tree, "--create-collection", "--state", state)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const k = 6
		cfg.afterItem = func(done int) {
			if done == k {
				cancel() // as SIGINT would
			}
		}
		sum1, stderr, err := importRun(t, ctx, cfg)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted import: err %v, want context.Canceled\n%s", err, stderr)
		}
		first := stateResults(t, state)
		// The photos in flight when it stopped finish and are recorded.
		if len(first) < k || len(first) >= treeGood+3 {
			t.Fatalf("interrupted run recorded %d photos, want %d to %d", len(first), k, treeGood+2)
		}
		if left, _ := strconv.Atoi(sum1["remaining"]); left != treeGood+3-len(first) {
			t.Errorf("interrupted run: remaining=%s, want %d", sum1["remaining"], treeGood+3-len(first))
		}

		cfg.afterItem = nil
		sum2, stderr, err := importRun(t, context.Background(), cfg)
		if err != nil {
			t.Fatalf("resumed import: %v\n%s", err, stderr)
		}
		// Exact over both runs: nothing enrolled twice, nothing "exists".
		checkCounts(t, sum2, map[string]int{"total": treeTotal, "enrolled": treeGood, "skipped": 2, "failed": 3, "remaining": 0, "resumed": len(first)})
		all := stateResults(t, state)
		seen := map[string]bool{}
		for _, r := range all {
			if seen[r.Path] {
				t.Errorf("%s recorded twice", r.Path)
			}
			seen[r.Path] = true
			if r.Outcome == outcomeExists {
				t.Errorf("%s: exists after a resume", r.Path)
			}
		}
		if len(all) != treeGood+3 {
			t.Errorf("state file has %d results, want %d", len(all), treeGood+3)
		}
		per, faces := srv.faceCounts("resume")
		if faces != treeGood {
			t.Errorf("collection has %d faces, want %d", faces, treeGood)
		}
		for id, n := range treeFaces {
			if per[id] != n {
				t.Errorf("subject %s has %d faces, want %d", id, per[id], n)
			}
		}
	})

	t.Run("stale subject id in the state file", func(t *testing.T) {
		// The state says amy1.png went to a subject that no longer exists
		// (deleted since): amy's other photos get 404, and the subject is
		// made again instead of the photos failing.
		dir := t.TempDir()
		for i := 1; i <= 5; i++ {
			name := fmt.Sprintf("amy%d.png", i)
			linkOrCopy(t, filepath.Join(tree, "amy", name), filepath.Join(dir, "amy", name))
		}
		state := filepath.Join(t.TempDir(), "state")
		header := `{"visage_import_state":1,"collection":"stale","source":"x","server":"x","created":"2026-01-01T00:00:00Z"}` + "\n"
		gone := `{"path":"amy/amy1.png","external_id":"amy","outcome":"enrolled","subject_id":"6f1c3b0e-5d2a-4c47-9a3e-2b8f0d7c1e55","face_id":"x"}` + "\n"
		if err := os.WriteFile(state, []byte(header+gone), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := importCfg(t, srv, "--collection", "stale", "--dir", dir, "--create-collection", "--state", state)
		sum, stderr, err := importRun(t, context.Background(), cfg)
		if err != nil {
			t.Fatalf("import: %v\n%s", err, stderr)
		}
		checkCounts(t, sum, map[string]int{"total": 5, "enrolled": 5, "failed": 0, "resumed": 1})
		if per, faces := srv.faceCounts("stale"); faces != 4 || per["amy"] != 4 {
			t.Errorf("faces %d (amy %d), want the 4 photos not in the state file", faces, per["amy"])
		}
	})

	t.Run("manifest", func(t *testing.T) {
		tests := []struct {
			name, file               string
			missingLine, outsideLine int
			text                     string
		}{
			{"csv", "people.csv", 5, 6, `path,external_id,display_name,metadata
photos/amy1.png,emp-1,Amy Farrah Fowler,"{""dept"":""neuro""}"
photos/amy2.png,emp-1,Amy Farrah Fowler,"{""dept"":""neuro""}"
photos/raj1.png,emp-2,Raj Koothrappali,
photos/missing.png,emp-2,Raj Koothrappali,
../outside.png,emp-3,Nobody,
`},
			{"jsonl", "people.jsonl", 4, 5, `{"path":"photos/amy1.png","external_id":"emp-1","display_name":"Amy Farrah Fowler","metadata":{"dept":"neuro"}}
{"path":"photos/amy2.png","external_id":"emp-1","display_name":"Amy Farrah Fowler","metadata":{"dept":"neuro"}}
{"path":"photos/raj1.png","external_id":"emp-2","display_name":"Raj Koothrappali"}
{"path":"photos/missing.png","external_id":"emp-2","display_name":"Raj Koothrappali"}
{"path":"../outside.png","external_id":"emp-3","display_name":"Nobody"}
`},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				for _, p := range []string{"amy/amy1.png", "amy/amy2.png", "raj/raj1.png"} {
					linkOrCopy(t, testenv.Shared(t, "testdata/faces/bbt/"+p), filepath.Join(dir, "photos", filepath.Base(p)))
				}
				manifest := filepath.Join(dir, tc.file)
				if err := os.WriteFile(manifest, []byte(tc.text), 0o644); err != nil {
					t.Fatal(err)
				}
				coll := "manifest-" + tc.name
				failures := filepath.Join(dir, "failures.csv")
				cfg := importCfg(t, srv, "--collection", coll, "--manifest", manifest, "--create-collection",
					"--state", filepath.Join(dir, "state"), "--failures", failures)
				sum, stderr, err := importRun(t, context.Background(), cfg)
				if err != nil {
					t.Fatalf("import: %v\n%s", err, stderr)
				}
				checkCounts(t, sum, map[string]int{"total": 5, "enrolled": 3, "skipped": 2, "failed": 0})
				rows := readFailures(t, failures)
				if len(rows) != 2 ||
					rows[0][0] != "../outside.png" || rows[0][2] != "unsafe_path" || !strings.HasPrefix(rows[0][3], fmt.Sprintf("manifest line %d:", tc.outsideLine)) ||
					rows[1][0] != "photos/missing.png" || rows[1][2] != "missing_file" || !strings.HasPrefix(rows[1][3], fmt.Sprintf("manifest line %d:", tc.missingLine)) {
					t.Errorf("failures rows %q", rows)
				}
				subs := srv.subjects(coll)
				if len(subs) != 2 {
					t.Fatalf("subjects %v, want emp-1 and emp-2", subs)
				}
				amy, raj := subs["emp-1"], subs["emp-2"]
				if amy.DisplayName != "Amy Farrah Fowler" || string(amy.Metadata) != `{"dept":"neuro"}` || amy.FaceCount != 2 {
					t.Errorf("emp-1 = %+v (metadata %s)", amy, amy.Metadata)
				}
				if raj.DisplayName != "Raj Koothrappali" || raj.FaceCount != 1 {
					t.Errorf("emp-2 = %+v", raj)
				}
			})
		}
	})

	t.Run("aborts", func(t *testing.T) {
		// A key of the read role: the collection can be read, subjects
		// cannot be made.
		code, readKey, errOut := runCLI(t, "keys", "create", "--data", srv.data, "--role", "read", "--name", "ro")
		if code != 0 {
			t.Fatalf("keys create: %s", errOut)
		}
		tests := []struct {
			name, key string
			args      []string
			want      string
		}{
			{"wrong key", "not-a-key-of-this-server-at-all", []string{"--collection", "tree"}, "refused the API key (401"},
			{"read-only key", strings.TrimSpace(readKey), []string{"--collection", "tree"}, "refused the API key (403"},
			{"no such collection", importAdminKey, []string{"--collection", "nonesuch"}, `collection "nonesuch" not found`},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Setenv("VISAGE_API_KEY", tc.key)
				dir := t.TempDir()
				state := filepath.Join(dir, "state")
				args := append([]string{"import", "--server", srv.url, "--dir", tree, "--state", state}, tc.args...)
				code, _, errOut := runCLI(t, args...)
				if code != 1 || !strings.Contains(errOut, tc.want) {
					t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.want)
				}
				if data, err := os.ReadFile(state); err == nil && strings.Count(string(data), "\n") > 1 {
					t.Errorf("aborted import recorded results: %s", data)
				}
			})
		}
		if _, faces := srv.faceCounts("tree"); faces != treeGood {
			t.Errorf("collection has %d faces after the aborted imports, want %d", faces, treeGood)
		}
	})

	t.Run("rate limited server", func(t *testing.T) {
		// 429 with Retry-After: 1 at every other request or so; the
		// import waits and ends with the same counts.
		limited := startImportServer(t, bin, "--rate-limit", "5", "--rate-burst", "1")
		dir := t.TempDir()
		for _, p := range []string{"amy", "penny"} {
			for i := 1; i <= 5; i++ {
				name := fmt.Sprintf("%s%d.png", p, i)
				linkOrCopy(t, filepath.Join(tree, p, name), filepath.Join(dir, p, name))
			}
		}
		cfg := importCfg(t, limited, "--collection", "limited", "--dir", dir, "--create-collection", "--state", filepath.Join(t.TempDir(), "state"))
		cfg.maxAttempts = 100 // throttled requests may lose the race for a token several times
		sum, stderr, err := importRun(t, context.Background(), cfg)
		if err != nil {
			t.Fatalf("import: %v\n%s", err, stderr)
		}
		checkCounts(t, sum, map[string]int{"total": 10, "enrolled": 10, "skipped": 0, "failed": 0})
		if n, _ := strconv.Atoi(sum["retries"]); n == 0 {
			t.Error("no request was retried: the server did not throttle")
		}
		if _, faces := limited.faceCounts("limited"); faces != 10 {
			t.Errorf("collection has %d faces, want 10", faces)
		}
	})
}

func TestImportStateDropsATornLine(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "s.state")
	header := `{"visage_import_state":1,"collection":"c","source":"/x","server":"http://h","created":"2026-01-01T00:00:00Z"}` + "\n"
	good := `{"path":"a/1.jpg","external_id":"a","outcome":"enrolled","subject_id":"s","face_id":"f"}` + "\n"
	tests := []struct {
		name, content, collection string
		wantDone                  int
		wantErr                   string
	}{
		{"empty file", "", "c", 0, ""},
		{"whole lines", header + good, "c", 1, ""},
		{"torn last line", header + good + `{"path":"a/2.jpg","exte`, "c", 1, ""},
		{"torn header", header[:20], "c", 0, ""},
		{"other collection", header + good, "d", 0, `collection "c", not "d"`},
		{"not a state file", "hello\n", "c", 0, "not a visage import state file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(state, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := importConfig{collection: tc.collection, statePath: state, dir: "/x", server: "http://h"}
			st, done, err := openImportState(cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(done) != tc.wantDone {
				t.Errorf("%d results read, want %d", len(done), tc.wantDone)
			}
			if err := st.append(itemResult{Path: "b/1.jpg", ExternalID: "b", Outcome: outcomeExists}); err != nil {
				t.Fatal(err)
			}
			st.close()
			// After the append every line is whole again.
			st, done, err = openImportState(cfg)
			if err != nil {
				t.Fatal(err)
			}
			st.close()
			if len(done) != tc.wantDone+1 {
				t.Errorf("after an append: %d results, want %d", len(done), tc.wantDone+1)
			}
		})
	}
}

func TestImportStateIsLocked(t *testing.T) {
	cfg := importConfig{collection: "c", statePath: filepath.Join(t.TempDir(), "s.state"), dir: "/x"}
	st, _, err := openImportState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if _, _, err := openImportState(cfg); err == nil || !strings.Contains(err.Error(), "in use by another import") {
		t.Errorf("second open: %v, want in use", err)
	}
}

func TestImportRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{"5", 5 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := parseRetryAfter(tc.in); got != tc.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestImportProgressFormat(t *testing.T) {
	bars := []struct {
		frac float64
		want string
	}{
		{0, "[>                             ]"},
		{0.5, "[===============>              ]"},
		{1, "[==============================]"},
	}
	for _, tc := range bars {
		t.Run(fmt.Sprint("bar ", tc.frac), func(t *testing.T) {
			if got := bar(tc.frac); got != tc.want {
				t.Errorf("bar(%v) = %q, want %q", tc.frac, got, tc.want)
			}
		})
	}
	etas := []struct {
		d    time.Duration
		want string
	}{
		{17 * time.Second, "17s"},
		{65 * time.Second, "1m05s"},
		{2*time.Hour + 4*time.Minute, "2h04m"},
	}
	for _, tc := range etas {
		t.Run("eta "+tc.want, func(t *testing.T) {
			if got := formatETA(tc.d); got != tc.want {
				t.Errorf("formatETA(%v) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
	// The live line on a terminal: redrawn in place.
	tally := newImportTally(10)
	tally.add(itemResult{Outcome: outcomeEnrolled}, true)
	var buf lockedBuffer
	live := true
	p := startImportProgress(&buf, tally, time.Hour, &live)
	p.finish()
	if got := buf.String(); !strings.HasPrefix(got, "\r[===>") || !strings.Contains(got, " 1/10 10% 0.0 photos/s ETA -- enrolled 1 skipped 0 failed 0") || !strings.HasSuffix(got, "\n") {
		t.Errorf("live line %q", got)
	}
}

// TestWriteFailuresEscapesFormulas: a failures file's cells that a
// spreadsheet would run as formulas start with a quote.
func TestWriteFailuresEscapesFormulas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "failures.csv")
	rows := []failureRow{
		{path: `=HYPERLINK("http://evil.example/","click")`, externalID: "+1", reason: "bad_line", detail: "-2"},
		{path: "@SUM(A1).png", externalID: "\tid", reason: "no_face", detail: "\rx"},
		{path: "amy/1.png", externalID: "amy", reason: "no_face", detail: "a=b"},
	}
	if err := writeFailures(path, rows); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{`'=HYPERLINK("http://evil.example/","click")`, "'+1", "bad_line", "'-2"},
		{"'@SUM(A1).png", "'\tid", "no_face", "'\rx"},
		{"amy/1.png", "amy", "no_face", "a=b"},
	}
	got := readFailures(t, path)
	if len(got) != len(want) {
		t.Fatalf("rows %q, want %q", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("row %d = %q, want %q", i, got[i], want[i])
		}
	}
}
