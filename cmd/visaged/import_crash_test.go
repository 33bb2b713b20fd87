package main

// The interruption test of batch imports (issue 5, item 5): a server-local
// import job is cut by SIGKILL part-way, visaged restarts on the same
// stores and resumes it, and the finished job must account for every file
// exactly as an uninterrupted import of the same tree into another
// collection of the same server does, with no duplicate faces and no drift
// between the stores.

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/visage/visage/internal/testenv"
)

const (
	// importPhotos: the tree takes whole LFW folders (and the truncated
	// JPEG) until it holds at least this many files.
	importPhotos = 150
	// killFraction of the files recorded done before the SIGKILL.
	killFraction = 0.4
	// jobWait only keeps a hung job from hanging the test; it is no speed
	// check.
	jobWait = 5 * time.Minute
)

// importTreeFile is one file of the tree: its path relative to the tree
// (as the job reports it), its subject and the sha256 of its bytes (as the
// faces report it).
type importTreeFile struct {
	path, externalID, sha string
}

// Paths of the two broken files in the tree.
const (
	// truncatedSuffix: a third of an LFW JPEG, put in a real person's
	// folder: a failure that must not touch that subject's other faces.
	truncatedSuffix = "/zz_truncated.jpg"
	// blankPath: a flat grey PNG in a folder of its own: its subject,
	// created for it, must not stay behind.
	blankSubject = "zz_blank_no_face"
	blankPath    = blankSubject + "/blank.png"
)

// buildImportTree fills dir with whole LFW development folders (copied
// from the shared test data, in name order) until it holds at least
// importPhotos photos, plus a truncated JPEG and a blank PNG.
func buildImportTree(t *testing.T, dir string) []importTreeFile {
	t.Helper()
	src := testenv.Shared(t, "testdata/lfw-dev/images")
	people, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var files []importTreeFile
	write := func(rel, ext string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		files = append(files, importTreeFile{path: rel, externalID: ext, sha: hex.EncodeToString(sum[:])})
	}
	truncatedIn := ""
	for _, p := range people {
		if len(files) >= importPhotos {
			break
		}
		if !p.IsDir() {
			continue
		}
		names, err := filepath.Glob(filepath.Join(src, p.Name(), "*.jpg"))
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		for _, n := range names {
			write(p.Name()+"/"+filepath.Base(n), p.Name(), mustRead(t, n))
		}
		if truncatedIn == "" && len(names) >= 3 {
			truncatedIn = p.Name()
			whole := mustRead(t, names[0])
			write(truncatedIn+truncatedSuffix, truncatedIn, whole[:len(whole)/3])
		}
	}
	if truncatedIn == "" || len(files) < importPhotos {
		t.Fatalf("the LFW development set gave %d photos and no folder of 3 for the truncated one", len(files))
	}
	write(blankPath, blankSubject, testenv.BlankPNG())
	return files
}

// importJobResp is an import job as GET shows it.
type importJobResp struct {
	ID             string   `json:"id"`
	State          string   `json:"state"`
	Total          int      `json:"total"`
	Done           int      `json:"done"`
	Enrolled       int      `json:"enrolled"`
	Skipped        int      `json:"skipped"`
	Failed         int      `json:"failed"`
	Error          string   `json:"error"`
	FacesPerSecond float64  `json:"faces_per_second"`
	ETASeconds     *float64 `json:"eta_seconds"`
}

func (j importJobResp) String() string {
	return fmt.Sprintf("%s total=%d done=%d enrolled=%d skipped=%d failed=%d error=%q",
		j.State, j.Total, j.Done, j.Enrolled, j.Skipped, j.Failed, j.Error)
}

// startImport posts an import of the tree under the import root and
// returns the accepted job.
func startImport(t *testing.T, c *client, coll, path string) importJobResp {
	t.Helper()
	rep := c.mustJSON(t, "POST", "/v1/collections/"+coll+"/imports", map[string]any{"path": path})
	var j importJobResp
	if rep.status != http.StatusAccepted || json.Unmarshal(rep.body, &j) != nil || j.ID == "" {
		t.Fatalf("POST import into %s: %d %s, want 202 with a job", coll, rep.status, rep.body)
	}
	if want := "/v1/collections/" + coll + "/imports/" + j.ID; rep.header.Get("Location") != want {
		t.Errorf("POST import: Location %q, want %q", rep.header.Get("Location"), want)
	}
	return j
}

func getImport(t *testing.T, c *client, coll, id string) importJobResp {
	t.Helper()
	rep := c.mustDo(t, "GET", "/v1/collections/"+coll+"/imports/"+id)
	var j importJobResp
	if rep.status != http.StatusOK || json.Unmarshal(rep.body, &j) != nil {
		t.Fatalf("GET import %s: %d %s", id, rep.status, rep.body)
	}
	if j.Done != j.Enrolled+j.Skipped+j.Failed || j.Done > j.Total {
		t.Fatalf("GET import %s: inconsistent counts %v", id, j)
	}
	return j
}

// pollImport polls a job until until holds or it is finished.
func pollImport(t *testing.T, c *client, coll, id string, until func(importJobResp) bool) importJobResp {
	t.Helper()
	deadline := time.Now().Add(jobWait)
	for {
		j := getImport(t, c, coll, id)
		if until(j) || j.State == "done" || j.State == "failed" || j.State == "cancelled" {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("import %s still %v after %v", id, j, jobWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// untilFinished polls to the end of a job.
func untilFinished(importJobResp) bool { return false }

// importRow is one row of a job's failures CSV.
type importRow struct {
	seq               int
	path, ext         string
	state, code, note string
}

// importFailures reads a job's failed and skipped photos, by path.
func importFailures(t *testing.T, c *client, coll, id string) map[string]importRow {
	t.Helper()
	rep := c.mustDo(t, "GET", "/v1/collections/"+coll+"/imports/"+id+"/failures")
	if rep.status != http.StatusOK || !strings.HasPrefix(rep.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("GET failures of %s: %d %s %s", id, rep.status, rep.header.Get("Content-Type"), rep.body)
	}
	recs, err := csv.NewReader(bytes.NewReader(rep.body)).ReadAll()
	if err != nil || len(recs) == 0 || strings.Join(recs[0], ",") != "seq,path,external_id,state,code,reason" {
		t.Fatalf("failures of %s: not the expected CSV (%v):\n%s", id, err, rep.body)
	}
	rows := map[string]importRow{}
	for _, r := range recs[1:] {
		seq, err := strconv.Atoi(r[0])
		if err != nil {
			t.Fatalf("failures of %s: row %q: %v", id, r, err)
		}
		if _, dup := rows[r[1]]; dup {
			t.Errorf("failures of %s: %s listed twice", id, r[1])
		}
		rows[r[1]] = importRow{seq: seq, path: r[1], ext: r[2], state: r[3], code: r[4], note: r[5]}
	}
	return rows
}

// galleryFaces lists every subject of a collection (by external id) with
// the image sha256 of each of its faces, sorted: two collections holding
// the same faces for the same subjects give equal maps. A subject without
// faces maps to an empty list.
func galleryFaces(t *testing.T, c *client, coll string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	after := ""
	for {
		rep := c.mustDo(t, "GET", "/v1/collections/"+coll+"/subjects?limit=1000&after="+url.QueryEscape(after))
		var page struct {
			Subjects []struct {
				ID         string `json:"id"`
				ExternalID string `json:"external_id"`
				FaceCount  int    `json:"face_count"`
			} `json:"subjects"`
			Next string `json:"next"`
		}
		if rep.status != http.StatusOK || json.Unmarshal(rep.body, &page) != nil {
			t.Fatalf("list subjects of %s: %d %s", coll, rep.status, rep.body)
		}
		for _, s := range page.Subjects {
			rep := c.mustDo(t, "GET", "/v1/collections/"+coll+"/subjects/"+s.ID+"/faces")
			var fl struct {
				Faces []struct {
					ID          string `json:"id"`
					State       string `json:"state"`
					ImageSHA256 string `json:"image_sha256"`
				} `json:"faces"`
			}
			if rep.status != http.StatusOK || json.Unmarshal(rep.body, &fl) != nil {
				t.Fatalf("list faces of %s/%s: %d %s", coll, s.ExternalID, rep.status, rep.body)
			}
			if len(fl.Faces) != s.FaceCount {
				t.Errorf("%s/%s: face_count %d but %d faces listed", coll, s.ExternalID, s.FaceCount, len(fl.Faces))
			}
			shas := []string{}
			for _, f := range fl.Faces {
				if f.State != "indexed" {
					t.Errorf("%s/%s: face %s is %q, want indexed", coll, s.ExternalID, f.ID, f.State)
				}
				shas = append(shas, f.ImageSHA256)
			}
			slices.Sort(shas)
			if _, dup := out[s.ExternalID]; dup {
				t.Errorf("%s: two subjects with external id %s", coll, s.ExternalID)
			}
			out[s.ExternalID] = shas
		}
		if page.Next == "" {
			return out
		}
		after = page.Next
	}
}

// duplicateFaces counts the faces beyond the first of one image in one
// subject.
func duplicateFaces(g map[string][]string) int {
	n := 0
	for _, shas := range g {
		n += len(shas) - len(slices.Compact(slices.Clone(shas)))
	}
	return n
}

// expectedFaces is what a collection must hold after importing files of
// which the refused paths failed: each subject with the images of its
// photos that were not refused (subjects with none do not exist).
func expectedFaces(files []importTreeFile, refused map[string]string) map[string][]string {
	out := map[string][]string{}
	for _, f := range files {
		if _, ok := refused[f.path]; !ok {
			out[f.externalID] = append(out[f.externalID], f.sha)
		}
	}
	for _, shas := range out {
		slices.Sort(shas)
	}
	return out
}

// onlyState keeps the rows in one state, as path → code.
func onlyState(rows map[string]importRow, state string) map[string]string {
	out := map[string]string{}
	for p, r := range rows {
		if r.state == state {
			out[p] = r.code
		}
	}
	return out
}

// diffFaces describes how two galleries differ, subject by subject.
func diffFaces(a, b map[string][]string) string {
	var d []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if bv, ok := b[k]; !ok {
			d = append(d, fmt.Sprintf("%s: %d faces vs absent", k, len(a[k])))
		} else if !slices.Equal(a[k], bv) {
			d = append(d, fmt.Sprintf("%s: %d faces vs %d (images differ: %v)", k, len(a[k]), len(bv), !slices.Equal(slices.Compact(slices.Clone(a[k])), slices.Compact(slices.Clone(bv)))))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			d = append(d, fmt.Sprintf("%s: absent vs %d faces", k, len(b[k])))
		}
	}
	return strings.Join(d, "; ")
}

// resumedAt finds, in a visaged's logs, how many photos of job were
// recorded when it resumed the job.
var resumedAtRE = regexp.MustCompile(`msg="import job running" job=(\S+) collection=\S+ total=\d+ done=(\d+)`)

func resumedAt(logs, job string) (int, bool) {
	for _, m := range resumedAtRE.FindAllStringSubmatch(logs, -1) {
		if m[1] == job {
			n, err := strconv.Atoi(m[2])
			return n, err == nil
		}
	}
	return 0, false
}

// logSubjectDeletions logs, in order, the audit trail of every subject of
// coll that was deleted (during an import, the importer deletes a subject
// it created for a photo that was refused, unless it has faces): which
// faces were enrolled into it before it went. For the failure messages.
func logSubjectDeletions(t *testing.T, c *client, coll string) {
	t.Helper()
	type event struct {
		ID        int64           `json:"id"`
		At        time.Time       `json:"at"`
		Kind      string          `json:"kind"`
		SubjectID string          `json:"subject_id"`
		FaceID    string          `json:"face_id"`
		Outcome   string          `json:"outcome"`
		Detail    json.RawMessage `json:"detail"`
	}
	var all []event
	for before := ""; ; {
		path := "/v1/admin/events?limit=1000&collection=" + url.QueryEscape(coll)
		if before != "" {
			path += "&before=" + before
		}
		rep := c.mustDo(t, "GET", path)
		var page struct {
			Events     []event `json:"events"`
			NextBefore string  `json:"next_before"`
		}
		if rep.status != http.StatusOK || json.Unmarshal(rep.body, &page) != nil {
			t.Logf("audit events of %s: %d %s", coll, rep.status, rep.body)
			return
		}
		all = append(all, page.Events...)
		if page.NextBefore == "" {
			break
		}
		before = page.NextBefore
	}
	slices.SortFunc(all, func(a, b event) int { return int(a.ID - b.ID) })
	deleted := map[string]bool{}
	for _, e := range all {
		if e.Outcome == "subject_deleted" {
			deleted[e.SubjectID] = true
		}
	}
	for _, e := range all {
		if deleted[e.SubjectID] {
			t.Logf("audit %s: event %d %s subject %s: %s %s face %s %s", coll, e.ID, e.At.Format(time.RFC3339Nano), e.SubjectID, e.Kind, e.Outcome, e.FaceID, e.Detail)
		}
	}
}

// problemLines are a visaged's log lines at warning level and above.
func problemLines(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// TestImportSurvivesKill starts a server-local import of about 150 LFW
// photos and two broken files, kills visaged with SIGKILL once about 40%
// of them are recorded, and restarts it on the same stores: the job must
// resume by itself and finish with every file accounted for. What the
// engine refuses is learnt from an uninterrupted import of the same tree
// into a second collection of the same server: both collections must hold
// the same subjects with the same faces (compared by image sha256), each
// photo at most once, and the same failures. A photo's face and its
// outcome are written in one transaction, so the counts are exact: the
// killed job enrolled what the clean job did and skipped nothing.
// Then `visage doctor` finds no drift, and a second identical import
// enrolls nothing. Both deployments: embedded (SQLite and HNSW in the data
// directory, never snapshotted before the kill) and scale-out (pgtest's
// PostgreSQL and the in-process Qdrant, which outlive the killed process).
func TestImportSurvivesKill(t *testing.T) {
	bin := buildVisaged(t)
	doctorBin := buildDoctor(t)
	for _, tc := range crashDeployments {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			dep := &deployment{name: tc.name, data: t.TempDir()}
			tc.setup(t, dep)
			root := t.TempDir()
			files := buildImportTree(t, filepath.Join(root, "tree"))
			env := append(dep.env(), "VISAGE_IMPORT_ROOT="+root, "VISAGE_SNAPSHOT_INTERVAL=1h", "VISAGE_WORKERS=2")
			const killed, clean = "killed", "clean"

			// Every start's warnings and errors are logged; on a failure, the
			// whole log of the start that ran the resumed and clean jobs.
			var starts []*daemon
			defer func() {
				for i, d := range starts {
					if lines := problemLines(d.logs.String()); len(lines) > 0 {
						t.Logf("visaged start %d: %d warnings and errors:\n%s", i+1, len(lines), strings.Join(lines, "\n"))
					}
				}
				if t.Failed() && len(starts) > 1 {
					t.Logf("visaged logs of start 2 (resumed and clean jobs):\n%s", starts[1].logs)
				}
			}()
			d := start(t, bin, dep.data, env...)
			starts = append(starts, d)
			c := newClient(d)
			for _, coll := range []string{killed, clean} {
				if rep := c.mustJSON(t, "POST", "/v1/collections", map[string]any{"name": coll}); rep.status != http.StatusCreated {
					t.Fatalf("create collection %s: %d %s", coll, rep.status, rep.body)
				}
			}

			// 1. The import to be killed, once about 40% is recorded.
			job := startImport(t, c, killed, "tree")
			if job.Total != len(files) {
				t.Fatalf("job total %d, want the %d files of the tree", job.Total, len(files))
			}
			atKill := pollImport(t, c, killed, job.ID, func(j importJobResp) bool {
				return float64(j.Done) >= killFraction*float64(j.Total)
			})
			if err := d.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			d.cmd.Wait()
			c.close()
			if atKill.State != "running" || atKill.Done >= atKill.Total {
				t.Fatalf("the job was %v at the kill, want running with work left", atKill)
			}
			t.Logf("SIGKILL with the job at %v", atKill)

			// 2. The restart resumes it.
			d = start(t, bin, dep.data, env...)
			starts = append(starts, d)
			c = newClient(d)
			got := pollImport(t, c, killed, job.ID, untilFinished)
			atRestart, ok := resumedAt(d.logs.String(), job.ID)
			if !ok {
				t.Fatalf("the restarted visaged did not log resuming job %s; logs:\n%s", job.ID, d.logs)
			}
			if !strings.Contains(d.logs.String(), `msg="resumed import jobs" jobs=1`) {
				t.Errorf("the restarted visaged did not report resuming 1 job; logs:\n%s", d.logs)
			}
			if atRestart < atKill.Done || atRestart >= got.Total {
				t.Errorf("job resumed at %d done, want between the %d seen at the kill and the total %d", atRestart, atKill.Done, got.Total)
			}

			// 3. The same tree, uninterrupted, into the other collection.
			cleanJob := startImport(t, c, clean, "tree")
			want := pollImport(t, c, clean, cleanJob.ID, untilFinished)

			for _, j := range []importJobResp{got, want} {
				if j.State != "done" || j.Total != len(files) || j.Done != j.Total || j.ETASeconds != nil || j.FacesPerSecond <= 0 {
					t.Errorf("job %s: %v (eta %v, %.1f faces/s), want done with all %d files and a rate", j.ID, j, j.ETASeconds, j.FacesPerSecond, len(files))
				}
			}
			gotRows := importFailures(t, c, killed, job.ID)
			wantRows := importFailures(t, c, clean, cleanJob.ID)
			refused := onlyState(wantRows, "failed")
			if refused[truncatedPathOf(files)] != "corrupt_image" || refused[blankPath] != "no_face" {
				t.Errorf("clean job: the broken files failed as %q and %q, want corrupt_image and no_face (failures %v)",
					refused[truncatedPathOf(files)], refused[blankPath], refused)
			}
			t.Logf("refused (clean job): %v", refused)
			if len(onlyState(wantRows, "skipped")) != 0 || want.Skipped != 0 || want.Failed != len(refused) || want.Enrolled != len(files)-len(refused) {
				t.Errorf("clean job %v with failures %v: want every photo not refused enrolled, none skipped", want, wantRows)
			}
			if f := onlyState(gotRows, "failed"); !maps.Equal(f, refused) || got.Failed != len(refused) {
				t.Errorf("killed job: %d failed %v, want the clean job's %v", got.Failed, f, refused)
			}
			if skipped := onlyState(gotRows, "skipped"); got.Skipped != 0 || len(skipped) != 0 || got.Enrolled != want.Enrolled {
				t.Errorf("killed job: enrolled %d, skipped %d %v; want the clean job's %d enrolled and none skipped",
					got.Enrolled, got.Skipped, skipped, want.Enrolled)
			}

			// 4. The galleries: the same subjects with the same faces, each
			// image once, and exactly the photos not refused (a subject
			// created for a refused photo alone does not stay).
			gotFaces, wantFaces := galleryFaces(t, c, killed), galleryFaces(t, c, clean)
			expected := expectedFaces(files, refused)
			duplicates := duplicateFaces(gotFaces) + duplicateFaces(wantFaces)
			if duplicates != 0 {
				t.Errorf("%d duplicate faces (killed %d, clean %d)", duplicates, duplicateFaces(gotFaces), duplicateFaces(wantFaces))
			}
			if diff := diffFaces(gotFaces, wantFaces); diff != "" {
				t.Errorf("the killed and the clean collection differ (killed vs clean): %s", diff)
			}
			if diff := diffFaces(gotFaces, expected); diff != "" {
				t.Errorf("the killed collection differs from its photos not refused (got vs want): %s", diff)
			}
			if diff := diffFaces(wantFaces, expected); diff != "" {
				t.Errorf("the clean collection differs from its photos not refused (got vs want): %s", diff)
			}
			if _, ok := gotFaces[blankSubject]; ok {
				t.Errorf("the subject created for the blank photo stayed")
			}
			if t.Failed() {
				logSubjectDeletions(t, c, killed)
				logSubjectDeletions(t, c, clean)
			}
			faces := 2 * want.Enrolled

			// 5. No drift between store and index: scale-out while visaged
			// runs; the embedded index needs visaged stopped.
			drift := 0
			if tc.name == "scaleout" {
				code, out := dep.doctor(t, doctorBin)
				checkDoctor(t, code, out, faces)
				drift += out.Drift
			}
			stopGracefully(t, d)
			c.close()
			code, out := dep.doctor(t, doctorBin)
			checkDoctor(t, code, out, faces)
			drift += out.Drift

			// 6. The same import again changes nothing.
			d = start(t, bin, dep.data, env...)
			starts = append(starts, d)
			c = newClient(d)
			again := pollImport(t, c, killed, startImport(t, c, killed, "tree").ID, untilFinished)
			if again.State != "done" || again.Total != len(files) || again.Enrolled != 0 || again.Skipped != want.Enrolled || again.Failed != len(refused) {
				t.Errorf("second import: %v, want done with 0 enrolled, %d skipped, %d failed", again, want.Enrolled, len(refused))
			}
			if after := galleryFaces(t, c, killed); !maps.EqualFunc(after, gotFaces, slices.Equal) {
				t.Errorf("the second import changed the collection: %s", diffFaces(after, gotFaces))
			}
			stopGracefully(t, d)
			c.close()
			code, out = dep.doctor(t, doctorBin)
			checkDoctor(t, code, out, faces)
			drift += out.Drift

			t.Logf("import kill summary %s: total=%d done_at_kill=%d done_at_restart=%d enrolled=%d skipped=%d failed=%d clean_enrolled=%d clean_failed=%d enrolled_undercount=%d duplicates=%d doctor_drift=%d second_enrolled=%d second_skipped=%d seconds=%.0f",
				tc.name, got.Total, atKill.Done, atRestart, got.Enrolled, got.Skipped, got.Failed, want.Enrolled, want.Failed,
				want.Enrolled-got.Enrolled, duplicates, drift, again.Enrolled, again.Skipped, time.Since(began).Seconds())
		})
	}
}

// truncatedPathOf finds the truncated JPEG's path in the tree.
func truncatedPathOf(files []importTreeFile) string {
	for _, f := range files {
		if strings.HasSuffix(f.path, truncatedSuffix) {
			return f.path
		}
	}
	return ""
}
