package main

// Crash and outage tests of the consistency protocol (DESIGN.md,
// consistency; issue 4, item 5), on both deployments: the embedded one
// (SQLite and the HNSW index in the data directory) and scale-out
// (PostgreSQL from pgtest and the in-process Qdrant server of
// index/qdranttest, which runs in this test process and so outlives every
// visaged it serves, as a real Qdrant outlives a crashed replica).
//
// visaged runs as a child process and is killed with SIGKILL in the middle
// of bursts of concurrent enrollments and deletions. A request answered
// before the kill is acknowledged and must hold after the restart; one in
// flight at the kill may have happened or not, but only entirely: either
// its face exists and is identifiable, or it is gone and no answer names
// it. `visage doctor` then reports zero drift between the stores.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/visage/visage/embed"
	"github.com/visage/visage/gallery"
	"github.com/visage/visage/index"
	"github.com/visage/visage/index/qdranttest"
	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/internal/testenv"
)

const (
	// crashSecret is the bootstrap admin key: restarts keep it.
	crashSecret = "crash-test-bootstrap-key-0123456789"
	// crashRounds bursts, each ended by a SIGKILL.
	crashRounds = 3
	// crashClients concurrent clients per burst.
	crashClients = 4
	// sameImageDistance bounds the distance of a photo to its own
	// enrollment: the probe's plain descriptor against the enrolled
	// mirror-averaged one of the same pixels is 0.065 apart at the median
	// on lfw-open, 0.154 at most; two people are 0.25 apart or more.
	sameImageDistance = 0.2
)

// ---- an HTTP client that reports errors instead of failing the test, for
// use from the burst's goroutines

type client struct {
	url, key string
	hc       *http.Client
}

type reply struct {
	status int
	body   []byte
	header http.Header
}

func newClient(d *daemon) *client {
	// A transport of its own: no connection outlives the daemon it went to.
	// The timeout only keeps a hung server from hanging the test.
	return &client{url: d.url, key: crashSecret, hc: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{}}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

func (c *client) do(method, path string, body io.Reader, ct string) (reply, error) {
	req, err := http.NewRequest(method, c.url+path, body)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, body: b, header: resp.Header}, nil
}

func (c *client) jsonDo(method, path string, v any) (reply, error) {
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return reply{}, err
		}
		body = bytes.NewReader(b)
	}
	return c.do(method, path, body, "application/json")
}

// imageDo posts a multipart form with one image and extra fields.
func (c *client) imageDo(path string, img []byte, fields map[string]string) (reply, error) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			return reply{}, err
		}
	}
	fw, err := w.CreateFormFile("image", "image.jpg")
	if err != nil {
		return reply{}, err
	}
	if _, err := fw.Write(img); err != nil {
		return reply{}, err
	}
	if err := w.Close(); err != nil {
		return reply{}, err
	}
	return c.do("POST", path, &buf, w.FormDataContentType())
}

// mustDo, mustJSON and mustImage are for the test's goroutine: a
// transport error fails the test.
func (c *client) mustDo(t *testing.T, method, path string) reply {
	t.Helper()
	r, err := c.do(method, path, nil, "")
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (c *client) mustJSON(t *testing.T, method, path string, v any) reply {
	t.Helper()
	r, err := c.jsonDo(method, path, v)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (c *client) mustImage(t *testing.T, path string, img []byte) reply {
	t.Helper()
	r, err := c.imageDo(path, img, nil)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

// ---- API shapes

type faceJSONResp struct {
	ID        string `json:"id"`
	SubjectID string `json:"subject_id"`
	Box       [4]int `json:"box"`
	State     string `json:"state"`
}

type enrollResp struct {
	SubjectID string `json:"subject_id"`
	Results   []struct {
		Status string        `json:"status"`
		Face   *faceJSONResp `json:"face"`
	} `json:"results"`
}

type candidateResp struct {
	SubjectID string  `json:"subject_id"`
	FaceID    string  `json:"face_id"`
	Distance  float64 `json:"distance"`
}

type identifyResp struct {
	Faces []struct {
		Box        [4]int          `json:"box"`
		Decision   string          `json:"decision"`
		Match      *candidateResp  `json:"match"`
		Candidates []candidateResp `json:"candidates"`
	} `json:"faces"`
}

type problemResp struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// iou is the intersection over union of two x0, y0, x1, y1 boxes.
func iou(a, b [4]int) float64 {
	ix := min(a[2], b[2]) - max(a[0], b[0])
	iy := min(a[3], b[3]) - max(a[1], b[1])
	if ix <= 0 || iy <= 0 {
		return 0
	}
	inter := float64(ix * iy)
	area := func(r [4]int) float64 { return float64((r[2] - r[0]) * (r[3] - r[1])) }
	return inter / (area(a) + area(b) - inter)
}

// ---- photos: one per LFW person, each used at most once by this test
// binary (read in place from the shared test data)

var photos struct {
	sync.Mutex
	paths []string
	next  int
}

func loadPhotos(t *testing.T) {
	t.Helper()
	photos.Lock()
	defer photos.Unlock()
	if photos.paths != nil {
		return
	}
	root := testenv.Shared(t, "testdata/lfw-dev/images")
	people, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range people {
		if !p.IsDir() {
			continue
		}
		files, err := filepath.Glob(filepath.Join(root, p.Name(), "*.jpg"))
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(files)
		if len(files) > 0 {
			// One photo per person: no two subjects are the same person.
			photos.paths = append(photos.paths, files[0])
		}
	}
	if len(photos.paths) < 100 {
		t.Fatalf("only %d LFW photos under %s", len(photos.paths), root)
	}
}

// nextPhoto returns a photo no test of this binary has used yet.
func nextPhoto() (string, error) {
	photos.Lock()
	defer photos.Unlock()
	if photos.next >= len(photos.paths) {
		return "", errors.New("out of unused LFW photos")
	}
	p := photos.paths[photos.next]
	photos.next++
	return p, nil
}

// ---- the ledger of what the clients were told

type outcome int

const (
	none     outcome = iota
	acked            // answered with success before the kill
	inflight         // no answer: the kill came first
	rejected         // the engine refused the photo (422)
)

func (o outcome) String() string {
	return [...]string{"none", "acknowledged", "in flight", "rejected"}[o]
}

// want is what must be true of an enrollment after a restart.
type want int

const (
	wantLive   want = iota + 1 // the face exists and is identifiable
	wantGone                   // no face, and no answer names it
	wantEither                 // unacknowledged: one or the other, entirely
)

// entry is one subject created by a client, with its (single) enrollment
// and the deletion, if any, that later targeted it.
type entry struct {
	photo   string
	subject string
	face    string // "" while unknown (enrollment in flight)
	box     [4]int
	round   int
	enroll  outcome
	delKind string // "", "subject" or "face"
	del     outcome
	want    want
	// lost: a check found it missing while it had to be live; resurrected:
	// a check found it after its deletion was acknowledged.
	lost, resurrected bool
}

func (e *entry) String() string {
	s := fmt.Sprintf("round %d, enrollment %v", e.round, e.enroll)
	if e.delKind != "" {
		s += fmt.Sprintf(", %s deletion %v", e.delKind, e.del)
	}
	return s
}

type ledger struct {
	mu           sync.Mutex
	rng          *rand.Rand
	coll         string
	entries      []*entry
	enrollAcks   int // acknowledged enrollments so far
	deletesDue   int // deletions owed (one per 3 acknowledged enrollments)
	deleteKinds  int // alternates subject and face deletions
	inflight     int // enrollments and deletions unanswered at a kill
	subjectsLost int // subject creations unanswered at a kill
	// happened and notHappened count the unacknowledged enrollments and
	// deletions by what the checks after the restart found.
	happened, notHappened int
	seq                   int
}

// round is one burst ended by a SIGKILL.
type round struct {
	t      *testing.T
	l      *ledger
	c      *client
	n      int
	killAt int
	acks   int
	// dying: the kill is decided (from then on a request may get no
	// answer); killed: it is done, and the clients stop.
	dying, killed bool
	stop          bool // a client hit an unexpected error or ran out of photos
	proc          *os.Process
	killDone      chan struct{}
	killDelay     time.Duration
}

// stopped reports whether the clients should stop (under l.mu).
func (r *round) stopped() bool {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	return r.killed || r.stop
}

// ackLocked counts an acknowledged operation (with l.mu held) and, at the
// chosen count, has visaged killed a seeded random 0-150 ms later, so that
// the kill finds the other clients' requests at any of their steps. The
// clients go on meanwhile.
func (r *round) ackLocked() {
	r.acks++
	if r.dying || r.acks < r.killAt {
		return
	}
	r.dying = true
	r.killDelay = time.Duration(r.l.rng.IntN(150)) * time.Millisecond
	go func() {
		defer close(r.killDone)
		time.Sleep(r.killDelay)
		if err := r.proc.Kill(); err != nil {
			r.t.Errorf("SIGKILL: %v", err)
		}
		r.l.mu.Lock()
		r.killed = true
		r.l.mu.Unlock()
	}()
}

// transportFailureLocked classifies a request that got no answer:
// expected only once the kill has been decided.
func (r *round) transportFailureLocked(what string, err error) bool {
	if r.dying {
		return true
	}
	r.t.Errorf("round %d: %s failed before any kill: %v", r.n, what, err)
	r.stop = true
	return false
}

func (r *round) client() {
	for !r.stopped() {
		r.l.mu.Lock()
		var target *entry
		kind := ""
		if r.l.deletesDue > 0 {
			var live []*entry
			for _, e := range r.l.entries {
				if e.want == wantLive && e.delKind == "" && e.face != "" {
					live = append(live, e)
				}
			}
			if len(live) > 0 {
				target = live[r.l.rng.IntN(len(live))]
				kind = []string{"subject", "face"}[r.l.deleteKinds%2]
				r.l.deleteKinds++
				r.l.deletesDue--
				target.delKind = kind
			}
		}
		r.l.mu.Unlock()
		if target != nil {
			r.delete(target, kind)
		} else {
			r.enroll()
		}
	}
}

func (r *round) enroll() {
	photo, err := nextPhoto()
	if err != nil {
		r.t.Error(err)
		r.l.mu.Lock()
		r.stop = true
		r.l.mu.Unlock()
		return
	}
	img, err := os.ReadFile(photo)
	if err != nil {
		r.t.Error(err)
		return
	}
	r.l.mu.Lock()
	r.l.seq++
	ext := fmt.Sprintf("crash-%d-%s", r.l.seq, strings.TrimSuffix(filepath.Base(photo), ".jpg"))
	r.l.mu.Unlock()
	rep, err := r.c.jsonDo("POST", "/v1/collections/"+r.l.coll+"/subjects", map[string]any{"external_id": ext, "display_name": filepath.Base(filepath.Dir(photo))})
	if err != nil {
		r.l.mu.Lock()
		if r.transportFailureLocked("create subject", err) {
			r.l.subjectsLost++
		}
		r.l.mu.Unlock()
		return
	}
	if rep.status != http.StatusCreated {
		r.t.Errorf("round %d: create subject: %d %s", r.n, rep.status, rep.body)
		r.l.mu.Lock()
		r.stop = true
		r.l.mu.Unlock()
		return
	}
	var sub struct{ ID string }
	if err := json.Unmarshal(rep.body, &sub); err != nil || sub.ID == "" {
		r.t.Errorf("create subject: %s", rep.body)
		return
	}
	e := &entry{photo: photo, subject: sub.ID, round: r.n}
	r.l.mu.Lock()
	r.l.entries = append(r.l.entries, e)
	r.l.mu.Unlock()

	rep, err = r.c.imageDo("/v1/collections/"+r.l.coll+"/subjects/"+sub.ID+"/faces", img, nil)
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	switch {
	case err != nil:
		if r.transportFailureLocked("enroll", err) {
			e.enroll, e.want = inflight, wantEither
			r.l.inflight++
		}
		return
	case rep.status == http.StatusUnprocessableEntity:
		e.enroll, e.want = rejected, wantGone
		return
	case rep.status != http.StatusCreated:
		r.t.Errorf("round %d: enroll %s: %d %s", r.n, photo, rep.status, rep.body)
		r.stop = true
		e.enroll, e.want = inflight, wantEither // whatever it did, it was not acknowledged
		return
	}
	var er enrollResp
	if err := json.Unmarshal(rep.body, &er); err != nil || len(er.Results) != 1 || er.Results[0].Face == nil || er.Results[0].Status != "enrolled" {
		r.t.Errorf("round %d: enroll %s: 201 with %s", r.n, photo, rep.body)
		r.stop = true
		e.enroll, e.want = inflight, wantEither
		return
	}
	e.face, e.box = er.Results[0].Face.ID, er.Results[0].Face.Box
	e.enroll, e.want = acked, wantLive
	r.l.enrollAcks++
	if r.l.enrollAcks%3 == 0 {
		r.l.deletesDue++
	}
	r.ackLocked()
}

func (r *round) delete(e *entry, kind string) {
	path := "/v1/collections/" + r.l.coll + "/subjects/" + e.subject
	if kind == "face" {
		path = "/v1/collections/" + r.l.coll + "/faces/" + e.face
	}
	rep, err := r.c.do("DELETE", path, nil, "")
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	switch {
	case err != nil:
		if r.transportFailureLocked("delete "+kind, err) {
			e.del, e.want = inflight, wantEither
			r.l.inflight++
		}
		return
	case rep.status != http.StatusNoContent:
		r.t.Errorf("round %d: DELETE %s: %d %s", r.n, path, rep.status, rep.body)
		r.stop = true
		e.del, e.want = inflight, wantEither
		return
	}
	e.del, e.want = acked, wantGone
	r.ackLocked()
}

// ---- checks after a restart

// observation is what the API says about an entry.
type observation struct {
	subject bool           // GET subject is 200
	faces   []faceJSONResp // the subject's faces
	face    *faceJSONResp  // GET face, when the face id is known and it is 200
}

func observe(c *client, coll string, e *entry) (observation, error) {
	var o observation
	rep, err := c.do("GET", "/v1/collections/"+coll+"/subjects/"+e.subject, nil, "")
	if err != nil {
		return o, err
	}
	switch rep.status {
	case http.StatusOK:
		o.subject = true
		rep, err := c.do("GET", "/v1/collections/"+coll+"/subjects/"+e.subject+"/faces", nil, "")
		if err != nil {
			return o, err
		}
		var fl struct{ Faces []faceJSONResp }
		if rep.status != http.StatusOK || json.Unmarshal(rep.body, &fl) != nil {
			return o, fmt.Errorf("list faces of %s: %d %s", e.subject, rep.status, rep.body)
		}
		o.faces = fl.Faces
	case http.StatusNotFound:
	default:
		return o, fmt.Errorf("GET subject %s: %d %s", e.subject, rep.status, rep.body)
	}
	if e.face != "" {
		rep, err := c.do("GET", "/v1/collections/"+coll+"/faces/"+e.face, nil, "")
		if err != nil {
			return o, err
		}
		switch rep.status {
		case http.StatusOK:
			var f faceJSONResp
			if err := json.Unmarshal(rep.body, &f); err != nil {
				return o, err
			}
			o.face = &f
		case http.StatusNotFound:
		default:
			return o, fmt.Errorf("GET face %s: %d %s", e.face, rep.status, rep.body)
		}
	}
	return o, nil
}

func identify(c *client, coll, photo string) (identifyResp, error) {
	var res identifyResp
	img, err := os.ReadFile(photo)
	if err != nil {
		return res, err
	}
	rep, err := c.imageDo("/v1/collections/"+coll+"/identify", img, map[string]string{"top_k": "5"})
	if err != nil {
		return res, err
	}
	if rep.status != http.StatusOK {
		return res, fmt.Errorf("identify %s: %d %s", photo, rep.status, rep.body)
	}
	return res, json.Unmarshal(rep.body, &res)
}

// identifiedAs checks that the photo of e identifies its subject: the
// detected face at the enrolled box has the subject as its top candidate,
// at distance about 0, and is matched to it.
func identifiedAs(res identifyResp, e *entry) error {
	best, bi := 0.0, -1
	for i, f := range res.Faces {
		if v := iou(f.Box, e.box); v > best {
			best, bi = v, i
		}
	}
	if bi < 0 || best < 0.8 {
		return fmt.Errorf("no detected face at the enrolled box %v (best IoU %.2f)", e.box, best)
	}
	f := res.Faces[bi]
	if len(f.Candidates) == 0 {
		return errors.New("no candidates for the enrolled face")
	}
	if top := f.Candidates[0]; top.SubjectID != e.subject || top.FaceID != e.face || top.Distance >= sameImageDistance {
		return fmt.Errorf("top candidate %+v, want subject %s face %s at distance < %v", top, e.subject, e.face, sameImageDistance)
	}
	if f.Decision != gallery.DecisionMatch || f.Match == nil || f.Match.SubjectID != e.subject {
		return fmt.Errorf("decision %q match %+v, want a match of %s", f.Decision, f.Match, e.subject)
	}
	return nil
}

// namedIn reports whether any answer names e's subject or face.
func namedIn(res identifyResp, e *entry) bool {
	for _, f := range res.Faces {
		for _, c := range f.Candidates {
			if c.SubjectID == e.subject || (e.face != "" && c.FaceID == e.face) {
				return true
			}
		}
		if f.Match != nil && (f.Match.SubjectID == e.subject || (e.face != "" && f.Match.FaceID == e.face)) {
			return true
		}
	}
	return false
}

// checkEntry checks one entry against what its client was told, resolves
// an unacknowledged request to what turned out to happen ("happened" or
// "not happened"; "" for acknowledged ones), and returns what is wrong.
func checkEntry(c *client, coll string, e *entry) (resolved string, err error) {
	o, err := observe(c, coll, e)
	if err != nil {
		return "", err
	}
	if e.face == "" && len(o.faces) == 1 {
		// An enrollment in flight at the kill that happened.
		e.face, e.box = o.faces[0].ID, o.faces[0].Box
		if o, err = observe(c, coll, e); err != nil {
			return "", err
		}
	}
	if len(o.faces) > 1 {
		return "", fmt.Errorf("subject %s has %d faces, the test enrolled one", e.subject, len(o.faces))
	}
	present := o.face != nil
	listed := len(o.faces) == 1 && o.faces[0].ID == e.face
	if present != listed && e.face != "" {
		return "", fmt.Errorf("face %s: GET face says present=%v, the subject's list says %v", e.face, present, listed)
	}
	res, err := identify(c, coll, e.photo)
	if err != nil {
		return "", err
	}
	live := func() error {
		if !o.subject || !present {
			return fmt.Errorf("face %s of subject %s is missing (subject found: %v)", e.face, e.subject, o.subject)
		}
		if o.face.State != "indexed" {
			return fmt.Errorf("face %s is %q, want indexed", e.face, o.face.State)
		}
		if err := identifiedAs(res, e); err != nil {
			return fmt.Errorf("face %s of subject %s not identified: %w", e.face, e.subject, err)
		}
		return nil
	}
	gone := func() error {
		if present {
			return fmt.Errorf("face %s of subject %s still exists (%s)", e.face, e.subject, o.face.State)
		}
		if e.delKind == "subject" && o.subject {
			return fmt.Errorf("subject %s still exists", e.subject)
		}
		if e.delKind == "face" && !o.subject {
			return fmt.Errorf("subject %s went with its face %s", e.subject, e.face)
		}
		if namedIn(res, e) {
			return fmt.Errorf("subject %s (face %s) is named by identify: %+v", e.subject, e.face, res.Faces)
		}
		return nil
	}
	switch e.want {
	case wantLive:
		return "", live()
	case wantGone:
		return "", gone()
	}
	// Unacknowledged: it happened entirely or not at all. Once resolved,
	// it stays so in later checks.
	if present {
		if e.delKind == "subject" && !o.subject {
			return "", fmt.Errorf("face %s exists but its subject %s does not", e.face, e.subject)
		}
		e.want, resolved = wantLive, "not happened"
		if e.del == none {
			resolved = "happened" // the enrollment
		}
		return resolved, live()
	}
	if e.delKind == "subject" && o.subject {
		// The subject's face went but the subject stayed: the deletion
		// happened only in part.
		return "", fmt.Errorf("subject %s: unacknowledged deletion half done: the subject exists without its face %s", e.subject, e.face)
	}
	e.want, resolved = wantGone, "happened"
	if e.del == none {
		resolved = "not happened" // the enrollment
	}
	return resolved, gone()
}

// verify checks every entry of the ledger, two at a time (visaged runs
// two engine workers).
func verify(t *testing.T, c *client, l *ledger, when string) {
	t.Helper()
	// Rejected enrollments too: a 422 must have written nothing.
	todo := l.entries
	work := make(chan *entry)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				w := e.want
				resolved, err := checkEntry(c, l.coll, e)
				l.mu.Lock()
				switch resolved {
				case "happened":
					l.happened++
				case "not happened":
					l.notHappened++
				}
				l.mu.Unlock()
				if err != nil {
					e.lost = e.lost || w == wantLive
					e.resurrected = e.resurrected || (w == wantGone && e.del == acked)
					t.Errorf("%s: %s (%s): %v", when, filepath.Base(e.photo), e, err)
				}
			}
		}()
	}
	for _, e := range todo {
		work <- e
	}
	close(work)
	wg.Wait()
}

// ---- doctor

// doctorOutput is what `visage doctor` prints.
type doctorOutput struct {
	Drift    int                 `json:"drift"`
	Report   gallery.DriftReport `json:"report"`
	Repaired json.RawMessage     `json:"repaired"`
}

// buildDoctor compiles the visage tool, which has the doctor command.
func buildDoctor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "visage")
	cmd := exec.Command("go", "build", "-o", bin, "../visage")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build visage: %v", err)
	}
	return bin
}

// deployment is one way to run visaged: its environment and how doctor
// reaches the same stores.
type deployment struct {
	name  string
	data  string
	dbURL string
	qsrv  *qdranttest.Server
}

// env is visaged's (and doctor's) environment. The rate limit is off: the
// checks after a restart send more than 50 requests a second with the one
// key, and the limiter is not what these tests are about.
func (dep *deployment) env() []string {
	qdrant := ""
	if dep.qsrv != nil {
		qdrant = dep.qsrv.Addr()
	}
	return []string{"VISAGE_BOOTSTRAP_ADMIN_KEY=" + crashSecret, "VISAGE_DATABASE_URL=" + dep.dbURL,
		"VISAGE_QDRANT_ADDR=" + qdrant, "VISAGE_QDRANT_API_KEY=", "VISAGE_RATE_LIMIT=0"}
}

// doctor runs `visage doctor` on the deployment's stores and returns its
// exit status and report.
func (dep *deployment) doctor(t *testing.T, bin string) (int, doctorOutput) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "doctor", "--data", dep.data, "--models", testenv.ModelDir(t))
	cmd.Env = append(os.Environ(), dep.env()...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run visage doctor: %v", err)
	}
	var out doctorOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("visage doctor (exit %d): stdout is not one JSON object: %v\nstdout: %s\nstderr: %s", code, err, stdout.Bytes(), stderr.Bytes())
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, stdout.Bytes()); err != nil {
		t.Fatal(err)
	}
	t.Logf("visage doctor (%s): exit %d: %s", dep.name, code, &compact)
	return code, out
}

// checkDoctor asserts zero drift and the expected number of faces.
func checkDoctor(t *testing.T, code int, out doctorOutput, faces int) {
	t.Helper()
	r := out.Report
	if code != 0 || out.Drift != 0 || r.MissingVectors != 0 || r.OrphanVectors != 0 || len(r.OrphanSpaces) != 0 ||
		r.PendingFaces != 0 || r.DeletingFaces != 0 || r.DeletingCollections != 0 {
		t.Errorf("doctor: exit %d, drift %d, report %+v; want exit 0 and no drift", code, out.Drift, r)
	}
	if r.Faces != faces || r.Vectors != faces {
		t.Errorf("doctor: %d faces and %d vectors, want %d of each (the live faces the API shows)", r.Faces, r.Vectors, faces)
	}
}

// qdrantKeys lists the keys of a space straight from the Qdrant server.
func qdrantKeys(t *testing.T, addr, space string) []uint64 {
	t.Helper()
	model, err := gallery.SpaceID(gallery.DefaultEngineConfig(testenv.ModelDir(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q, err := index.OpenQdrant(ctx, index.QdrantConfig{Addr: addr, Dim: embed.Dim, Model: model})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	keys, err := q.Keys(ctx, space)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// stopGracefully sends SIGTERM and waits for a clean exit.
func stopGracefully(t *testing.T, d *daemon) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Wait(); err != nil {
		t.Errorf("visaged after SIGTERM: %v\n%s", err, d.logs)
	}
}

func crashSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("VISAGE_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("VISAGE_CRASH_SEED: %v", err)
		}
		seed = v
	}
	return seed
}

// TestCrashConsistency kills visaged with SIGKILL in the middle of bursts
// of concurrent enrollments and deletions, restarts it on the same stores
// and checks every acknowledged answer (and that unacknowledged requests
// happened entirely or not at all), then runs `visage doctor`. The
// embedded index is never saved before a kill (snapshots hourly): the
// store and the start-up reconciliation must bring it back.
// crashDeployments are the two deployments the kill tests run on: the
// embedded stores in the data directory, and scale-out on pgtest's
// PostgreSQL and the in-process Qdrant, which outlive the killed process.
var crashDeployments = []struct {
	name  string
	setup func(t *testing.T, dep *deployment)
}{
	{"embedded", func(t *testing.T, dep *deployment) {}},
	{"scaleout", func(t *testing.T, dep *deployment) {
		dep.qsrv = qdranttest.Start(t, qdranttest.Options{})
		dep.dbURL = pgtest.New(t)
	}},
}

func TestCrashConsistency(t *testing.T) {
	bin := buildVisaged(t)
	doctorBin := buildDoctor(t)
	loadPhotos(t)
	seed := crashSeed(t)
	t.Logf("seed %d (set VISAGE_CRASH_SEED to repeat the kill points)", seed)

	for i, tc := range crashDeployments {
		t.Run(tc.name, func(t *testing.T) {
			dep := &deployment{name: tc.name, data: t.TempDir()}
			tc.setup(t, dep)
			env := append(dep.env(), "VISAGE_SNAPSHOT_INTERVAL=1h", "VISAGE_WORKERS=2")
			l := &ledger{rng: rand.New(rand.NewPCG(seed, uint64(i))), coll: "crash"}

			d := start(t, bin, dep.data, env...)
			c := newClient(d)
			c.mustJSON(t, "POST", "/v1/collections", map[string]any{"name": l.coll})

			kills := 0
			for n := 1; n <= crashRounds; n++ {
				r := &round{t: t, l: l, c: c, n: n, killAt: 5 + l.rng.IntN(11), proc: d.cmd.Process, killDone: make(chan struct{})}
				before := l.inflight
				var wg sync.WaitGroup
				for range crashClients {
					wg.Add(1)
					go func() { defer wg.Done(); r.client() }()
				}
				wg.Wait()
				if !r.dying {
					t.Fatalf("round %d ended without a kill (%d acknowledged operations)", n, r.acks)
				}
				<-r.killDone
				kills++
				d.cmd.Wait()
				c.close()
				t.Logf("round %d: SIGKILL %v after the %d-th acknowledged operation; %d acknowledged in all, %d enrollments or deletions in flight",
					n, r.killDelay, r.killAt, r.acks, l.inflight-before)

				d = start(t, bin, dep.data, env...)
				c = newClient(d)
				verify(t, c, l, fmt.Sprintf("after kill %d", n))
				if t.Failed() {
					t.Logf("visaged logs after restart %d:\n%s", n, d.logs)
				}
			}

			// What must exist: the live faces, including those of
			// unacknowledged enrollments that turned out to have happened.
			live := 0
			for _, e := range l.entries {
				if e.want == wantLive {
					live++
				}
			}
			if tc.name == "scaleout" {
				code, out := dep.doctor(t, doctorBin)
				checkDoctor(t, code, out, live)
				if keys := qdrantKeys(t, dep.qsrv.Addr(), "faces/"+l.coll); len(keys) != live {
					t.Errorf("qdrant holds %d vectors of faces/%s, want %d", len(keys), l.coll, live)
				}
			}
			stopGracefully(t, d)
			c.close()
			// The embedded index needs visaged stopped: doctor takes its
			// lock and reads the snapshot SIGTERM saved.
			code, out := dep.doctor(t, doctorBin)
			checkDoctor(t, code, out, live)

			var enrollAcked, enrollFound, deleteAcked, deleteGone int
			for _, e := range l.entries {
				if e.enroll == acked && e.delKind == "" {
					enrollAcked++
					if !e.lost {
						enrollFound++
					}
				}
				if e.del == acked {
					deleteAcked++
					if !e.resurrected {
						deleteGone++
					}
				}
			}
			t.Logf("in flight at the kills: %d enrollments or deletions (%d happened, %d did not), %d subject creations", l.inflight, l.happened, l.notHappened, l.subjectsLost)
			t.Logf("crash summary %s: rounds=%d kills=%d enroll_acked=%d enroll_found=%d enroll_lost=%d delete_acked=%d delete_gone=%d delete_resurrected=%d inflight_at_kill=%d doctor_drift=%d",
				tc.name, crashRounds, kills, enrollAcked, enrollFound, enrollAcked-enrollFound, deleteAcked, deleteGone, deleteAcked-deleteGone, l.inflight, out.Drift)
			if enrollAcked-enrollFound != 0 || deleteAcked-deleteGone != 0 {
				t.Errorf("%d acknowledged enrollments lost, %d acknowledged deletions resurrected", enrollAcked-enrollFound, deleteAcked-deleteGone)
			}
			if enrollAcked == 0 || deleteAcked == 0 {
				t.Errorf("the bursts acknowledged %d enrollments and %d deletions: nothing was tested", enrollAcked, deleteAcked)
			}
		})
	}
}

// TestVectorStoreOutage takes the Qdrant server away under a running
// visaged (PostgreSQL + Qdrant): enrollments and identifications fail with
// a retryable 503 and write nothing, deletions still succeed, and when
// Qdrant is back the service recovers by itself: the retry loop removes
// the deleted subject's vectors, and doctor reports zero drift. visaged
// started while Qdrant is down fails at once with a clear error.
func TestVectorStoreOutage(t *testing.T) {
	bin := buildVisaged(t)
	doctorBin := buildDoctor(t)
	loadPhotos(t)
	dep := &deployment{name: "scaleout", data: t.TempDir(), qsrv: qdranttest.Start(t, qdranttest.Options{}), dbURL: pgtest.New(t)}
	env := append(dep.env(), "VISAGE_RECONCILE_RETRY=1s", "VISAGE_WORKERS=2")
	const coll = "outage"

	// visaged cannot start without its vector store: it says so and exits.
	dep.qsrv.Stop()
	t.Run("start without qdrant", func(t *testing.T) {
		var logs syncBuffer
		cmd := exec.Command(bin, "--addr", freeAddr(t), "--data", dep.data, "--models", testenv.ModelDir(t), "--log-format", "text")
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Errorf("visaged without qdrant: %v, want a non-zero exit\n%s", err, &logs)
			}
		case <-time.After(2 * time.Minute): // a hang guard, not a speed check
			cmd.Process.Kill()
			<-exited
			t.Fatalf("visaged without qdrant still running after 2 minutes\n%s", &logs)
		}
		out := logs.String()
		if !strings.Contains(out, index.ErrUnavailable.Error()) || !strings.Contains(out, dep.qsrv.Addr()) {
			t.Errorf("visaged without qdrant: the error names neither %q nor the address %s:\n%s", index.ErrUnavailable, dep.qsrv.Addr(), out)
		}
	})
	if err := dep.qsrv.Restart(); err != nil {
		t.Fatal(err)
	}

	d := start(t, bin, dep.data, env...)
	c := newClient(d)
	defer c.close()
	c.mustJSON(t, "POST", "/v1/collections", map[string]any{"name": coll})
	var before []*entry
	for i := range 4 {
		e, rep := enrollNext(t, c, coll, newSubject(t, c, coll, fmt.Sprintf("before-%d", i)))
		if rep.status != http.StatusCreated || e.face == "" {
			t.Fatalf("enroll before the outage: %d %s", rep.status, rep.body)
		}
		before = append(before, e)
	}
	deleted, kept := before[0], before[1:]

	dep.qsrv.Stop()
	t.Log("qdrant stopped")

	// An enrollment fails with a retryable problem and leaves nothing.
	late := newSubject(t, c, coll, "during-outage")
	failed, rep := enrollNext(t, c, coll, late)
	var p problemResp
	if rep.status != http.StatusServiceUnavailable || json.Unmarshal(rep.body, &p) != nil || p.Type != "unavailable" ||
		!strings.HasPrefix(rep.header.Get("Content-Type"), "application/problem+json") || rep.header.Get("Retry-After") == "" {
		t.Errorf("enroll during the outage: %d %v %s, want 503 problem+json unavailable with Retry-After", rep.status, rep.header, rep.body)
	}
	noFaces := func(when string) {
		t.Helper()
		rep := c.mustDo(t, "GET", "/v1/collections/"+coll+"/subjects/"+late+"/faces")
		var fl struct{ Faces []faceJSONResp }
		if rep.status != http.StatusOK || json.Unmarshal(rep.body, &fl) != nil || len(fl.Faces) != 0 {
			t.Errorf("%s: the failed enrollment left faces: %d %s", when, rep.status, rep.body)
		}
	}
	noFaces("during the outage")

	// Identification fails alike.
	img, err := os.ReadFile(kept[0].photo)
	if err != nil {
		t.Fatal(err)
	}
	rep = c.mustImage(t, "/v1/collections/"+coll+"/identify", img)
	p = problemResp{}
	if rep.status != http.StatusServiceUnavailable || json.Unmarshal(rep.body, &p) != nil || p.Type != "unavailable" || rep.header.Get("Retry-After") == "" {
		t.Errorf("identify during the outage: %d %v %s, want 503 unavailable with Retry-After", rep.status, rep.header, rep.body)
	}

	// A deletion succeeds and takes effect at once.
	rep = c.mustDo(t, "DELETE", "/v1/collections/"+coll+"/subjects/"+deleted.subject)
	if rep.status != http.StatusNoContent {
		t.Errorf("delete a subject during the outage: %d %s, want 204", rep.status, rep.body)
	}
	for _, path := range []string{"/subjects/" + deleted.subject, "/faces/" + deleted.face} {
		if rep := c.mustDo(t, "GET", "/v1/collections/"+coll+path); rep.status != http.StatusNotFound {
			t.Errorf("GET %s after its deletion during the outage: %d %s", path, rep.status, rep.body)
		}
	}

	// The rest is intact.
	rep = c.mustDo(t, "GET", "/v1/collections/"+coll+"/subjects?limit=100")
	var sl struct {
		Subjects []struct {
			ID        string `json:"id"`
			FaceCount int    `json:"face_count"`
		} `json:"subjects"`
	}
	if rep.status != http.StatusOK || json.Unmarshal(rep.body, &sl) != nil {
		t.Fatalf("list subjects: %d %s", rep.status, rep.body)
	}
	listed := map[string]int{}
	for _, s := range sl.Subjects {
		listed[s.ID] = s.FaceCount
	}
	if _, ok := listed[deleted.subject]; ok || len(listed) != len(kept)+1 {
		t.Errorf("subjects during the outage: %s; want the %d kept ones and %s", rep.body, len(kept), late)
	}
	for _, e := range kept {
		o, err := observe(c, coll, e)
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := listed[e.subject]; !ok || n != 1 || o.face == nil || o.face.State != "indexed" || len(o.faces) != 1 {
			t.Errorf("subject %s during the outage: listed %v with %d faces, face %+v, faces %+v", e.subject, ok, n, o.face, o.faces)
		}
	}

	// Qdrant comes back; visaged, not restarted, recovers by itself.
	if err := dep.qsrv.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Log("qdrant restarted")
	var code int
	var out doctorOutput
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, out = dep.doctor(t, doctorBin)
		if (code == 0 && out.Drift == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	checkDoctor(t, code, out, len(kept))
	// The deleted subject's vectors, left behind during the outage, were
	// removed by visaged's retry loop.
	if !regexp.MustCompile(`reconcile repaired drift.*VectorsRemoved:[1-9]`).MatchString(d.logs.String()) {
		t.Errorf("no reconciliation removed the vectors the deletion left in qdrant; logs:\n%s", d.logs)
	}
	noFaces("after qdrant's return")

	// The client's retry of the failed enrollment now works.
	retried := c.mustImage(t, "/v1/collections/"+coll+"/subjects/"+late+"/faces", mustRead(t, failed.photo))
	var er enrollResp
	if retried.status != http.StatusCreated || json.Unmarshal(retried.body, &er) != nil || len(er.Results) != 1 || er.Results[0].Status != "enrolled" || er.Results[0].Face == nil {
		t.Fatalf("retried enrollment after the outage: %d %s, want 201 enrolled", retried.status, retried.body)
	}
	failed.face, failed.box = er.Results[0].Face.ID, er.Results[0].Face.Box

	for _, e := range append(kept, failed) {
		res, err := identify(c, coll, e.photo)
		if err != nil {
			t.Fatal(err)
		}
		if err := identifiedAs(res, e); err != nil {
			t.Errorf("after the outage, %s: %v", filepath.Base(e.photo), err)
		}
	}
	res, err := identify(c, coll, deleted.photo)
	if err != nil {
		t.Fatal(err)
	}
	if namedIn(res, deleted) {
		t.Errorf("the subject deleted during the outage is named: %+v", res.Faces)
	}
	if keys := qdrantKeys(t, dep.qsrv.Addr(), "faces/"+coll); len(keys) != len(kept)+1 {
		t.Errorf("qdrant holds %d vectors of faces/%s, want %d", len(keys), coll, len(kept)+1)
	}
	code, out = dep.doctor(t, doctorBin)
	checkDoctor(t, code, out, len(kept)+1)
	if t.Failed() {
		t.Logf("visaged logs:\n%s", d.logs)
	}
}

func newSubject(t *testing.T, c *client, coll, externalID string) string {
	t.Helper()
	rep := c.mustJSON(t, "POST", "/v1/collections/"+coll+"/subjects", map[string]any{"external_id": externalID})
	var sub struct{ ID string }
	if rep.status != http.StatusCreated || json.Unmarshal(rep.body, &sub) != nil {
		t.Fatalf("create subject: %d %s", rep.status, rep.body)
	}
	return sub.ID
}

// enrollNext enrolls into subject the next unused photo the engine
// accepts (skipping those it answers 422), and returns the answer.
func enrollNext(t *testing.T, c *client, coll, subject string) (*entry, reply) {
	t.Helper()
	for {
		photo, err := nextPhoto()
		if err != nil {
			t.Fatal(err)
		}
		rep := c.mustImage(t, "/v1/collections/"+coll+"/subjects/"+subject+"/faces", mustRead(t, photo))
		if rep.status == http.StatusUnprocessableEntity {
			continue
		}
		e := &entry{photo: photo, subject: subject}
		var er enrollResp
		if rep.status == http.StatusCreated && json.Unmarshal(rep.body, &er) == nil && len(er.Results) == 1 && er.Results[0].Face != nil {
			e.face, e.box = er.Results[0].Face.ID, er.Results[0].Face.Box
		}
		return e, rep
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKillDuringDeferredSubjectDeletion kills visaged while a subject
// deletion waits for an unreachable Qdrant: the store's part is done, and
// the vector store's retries hold the request open for seconds, so the
// kill lands between the two steps every time (the window the bursts of
// TestCrashConsistency hit only by chance; when deletions marked the
// faces first and the subject last, it left a faceless subject). The
// deletion was never acknowledged, so after Qdrant's return and a restart
// it may have happened or not, but entirely: the subject and its face
// gone, or the subject with its face, still identifiable.
func TestKillDuringDeferredSubjectDeletion(t *testing.T) {
	bin := buildVisaged(t)
	doctorBin := buildDoctor(t)
	loadPhotos(t)
	dep := &deployment{name: "scaleout", data: t.TempDir(), qsrv: qdranttest.Start(t, qdranttest.Options{}), dbURL: pgtest.New(t)}
	const coll = "half"
	d := start(t, bin, dep.data, dep.env()...)
	c := newClient(d)
	c.mustJSON(t, "POST", "/v1/collections", map[string]any{"name": coll})
	e, rep := enrollNext(t, c, coll, newSubject(t, c, coll, "to-delete"))
	if rep.status != http.StatusCreated || e.face == "" {
		t.Fatalf("enroll: %d %s", rep.status, rep.body)
	}

	dep.qsrv.Stop()
	type answer struct {
		rep reply
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		rep, err := c.do("DELETE", "/v1/collections/"+coll+"/subjects/"+e.subject, nil, "")
		answered <- answer{rep, err}
	}()
	// The face disappears from reads once it is marked deleting; the
	// request then waits for Qdrant.
	for marked := false; !marked; {
		select {
		case a := <-answered:
			t.Fatalf("the deletion was answered (%d %s, %v) before the face was seen deleting", a.rep.status, a.rep.body, a.err)
		default:
		}
		rep, err := c.do("GET", "/v1/collections/"+coll+"/faces/"+e.face, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		marked = rep.status == http.StatusNotFound
		if !marked {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.cmd.Wait()
	c.close()
	if a := <-answered; a.err == nil {
		t.Fatalf("the deletion was answered (%d %s) although visaged was killed", a.rep.status, a.rep.body)
	}
	e.delKind, e.del, e.want = "subject", inflight, wantEither

	if err := dep.qsrv.Restart(); err != nil {
		t.Fatal(err)
	}
	d = start(t, bin, dep.data, dep.env()...)
	c = newClient(d)
	defer c.close()
	resolved, err := checkEntry(c, coll, e)
	if err != nil {
		t.Errorf("after the restart: %v\nvisaged logs:\n%s", err, d.logs)
	} else {
		t.Logf("the unacknowledged deletion %s", resolved)
	}
	live := 0
	if e.want == wantLive {
		live = 1
	}
	code, out := dep.doctor(t, doctorBin)
	checkDoctor(t, code, out, live)
}
