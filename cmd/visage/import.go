package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/internal/csvsafe"
)

// Outcomes of one photo, in the state file and the counts. They are read
// back by later runs, so they never change.
const (
	outcomeEnrolled = "enrolled" // a new face was stored
	outcomeExists   = "exists"   // the server had this photo for the subject already
	outcomeFailed   = "failed"   // see the reason
)

// reasonUnavailable is the failure reason of a photo the server could not
// take after every retry (429, 5xx, network errors).
const reasonUnavailable = "unavailable"

// reasonUnreadable is the failure reason of a local file that cannot be
// read.
const reasonUnreadable = "unreadable"

// importConfig is one `visage import` run's settings.
type importConfig struct {
	server     string
	collection string
	key        string
	// dir or manifest names the source; root is the manifest's root
	// (default: its folder).
	dir, manifest, root string
	// archive or serverPath hand the import to the server's import jobs
	// (importRemote) instead of streaming photos from here.
	archive, serverPath string
	concurrency         int
	statePath           string
	failuresPath        string
	createCollection    bool

	// Knobs the flags do not offer, for tests.
	progressEvery time.Duration  // period of the plain progress lines
	terminal      *bool          // forces (or refuses) the live bar; nil: look at stderr
	retryBase     time.Duration  // first backoff when no Retry-After is given
	maxAttempts   int            // tries of one request before it fails "unavailable"
	afterItem     func(done int) // called after each completed photo of this run
}

const importUsage = `usage: visage import --collection NAME (--dir DIR | --manifest FILE [--root DIR]) [flags]
       visage import --collection NAME (--archive FILE | --server-path PATH) [flags]

With --archive (a zip, tar or tar.gz of a tree or of a folder with a
manifest) or --server-path (a tree, manifest or archive under the server's
--import-root; admin keys), the server runs the import as a job: this
command uploads or names the source, follows the job with a progress line
and writes its failures file. Interrupting it leaves the job running.
Otherwise:

Enrolls a local folder tree (DIR/<subject external id>/<photos>) or a CSV
or JSON Lines manifest (path, external_id[, display_name, metadata]) into
a collection of a running visaged, one photo per request, creating the
subjects as needed. The API key is read from $VISAGE_API_KEY (or
--key-file): a key on the command line would show in the process list.

Every completed photo is appended to the state file, so an interrupted run
continues where it stopped when started again with the same state file;
the file is kept after a complete run, as its record (a later run with it
sends nothing again: give a new --state to import anew). Photos the server
could not take after every retry (429, 5xx, network errors) are reported
failed "unavailable" but not recorded, so the next run tries them again. The summary is
one line on stdout; failed and skipped files are listed in the failures
file (CSV: path,external_id,reason_code,detail). Exit status 0 when every
photo was handled (failed photos included), 1 when the run was aborted or
interrupted.

flags:
`

// runImport is `visage import`.
func runImport(ctx context.Context, env *cliEnv, args []string) error {
	cfg, err := parseImportFlags(env, args)
	if err != nil {
		return err
	}
	return importGallery(ctx, env, cfg)
}

// countSet counts the non-empty values.
func countSet(vs ...string) int {
	n := 0
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

// parseImportFlags reads the command line and the environment.
func parseImportFlags(env *cliEnv, args []string) (importConfig, error) {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprint(env.stderr, importUsage)
		fs.PrintDefaults()
	}
	var cfg importConfig
	fs.StringVar(&cfg.server, "server", "http://127.0.0.1:8080", "visaged's base URL")
	fs.StringVar(&cfg.collection, "collection", "", "the collection to import into (required)")
	fs.StringVar(&cfg.dir, "dir", "", "folder tree DIR/<subject external id>/<photos>")
	fs.StringVar(&cfg.manifest, "manifest", "", "CSV or JSON Lines manifest; its paths are relative to its folder")
	fs.StringVar(&cfg.root, "root", "", "with --manifest: the folder the manifest's paths must stay in (default: the manifest's folder)")
	fs.StringVar(&cfg.archive, "archive", "", "upload this zip, tar or tar.gz to the server's import jobs")
	fs.StringVar(&cfg.serverPath, "server-path", "", "import this path under the server's --import-root as a job (admin keys)")
	keyFile := fs.String("key-file", "", "file holding the API key (default: $VISAGE_API_KEY)")
	fs.IntVar(&cfg.concurrency, "concurrency", 4, "requests in flight; about twice the server's engine workers keeps them busy")
	fs.StringVar(&cfg.statePath, "state", "", "state file (default ./visage-import-<collection>.state)")
	fs.StringVar(&cfg.failuresPath, "failures", "", "failures CSV (default visage-import-<collection>-failures.csv beside the state file)")
	fs.BoolVar(&cfg.createCollection, "create-collection", false, "create the collection if it does not exist (needs an admin key)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q (see visage import -h)", fs.Args())
	}
	switch {
	case cfg.collection == "":
		return cfg, errors.New("--collection is required (see visage import -h)")
	case cfg.collection != filepath.Base(cfg.collection) || cfg.collection == "." || cfg.collection == "..":
		// The name is part of default file names and of URLs.
		return cfg, fmt.Errorf("--collection %q: not a collection name", cfg.collection)
	case countSet(cfg.dir, cfg.manifest, cfg.archive, cfg.serverPath) != 1:
		return cfg, errors.New("give exactly one of --dir, --manifest, --archive and --server-path (see visage import -h)")
	case cfg.root != "" && cfg.manifest == "":
		return cfg, errors.New("--root goes with --manifest")
	case cfg.concurrency < 1:
		return cfg, fmt.Errorf("--concurrency %d: at least 1", cfg.concurrency)
	}
	cfg.key = os.Getenv("VISAGE_API_KEY")
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return cfg, fmt.Errorf("read --key-file: %w", err)
		}
		cfg.key = strings.TrimSpace(string(b))
	}
	if cfg.key == "" {
		return cfg, errors.New("no API key: set $VISAGE_API_KEY (or --key-file) to a key with the enroll role")
	}
	if _, err := url.Parse(cfg.server); err != nil || !strings.HasPrefix(cfg.server, "http") {
		return cfg, fmt.Errorf("--server %q: want http://host:port", cfg.server)
	}
	cfg.server = strings.TrimRight(cfg.server, "/")
	if cfg.statePath == "" {
		cfg.statePath = "visage-import-" + cfg.collection + ".state"
	}
	if cfg.failuresPath == "" {
		cfg.failuresPath = filepath.Join(filepath.Dir(cfg.statePath), "visage-import-"+cfg.collection+"-failures.csv")
	}
	return cfg, nil
}

// errAbort marks a condition that stops the whole run: retrying other
// photos cannot help (a refused key, a missing collection, a state file
// that cannot be written).
var errAbort = errors.New("import aborted")

// errInterrupted marks a photo left undone because the run was
// interrupted; it is neither counted nor recorded.
var errInterrupted = errors.New("interrupted")

// itemResult is what became of one photo.
type itemResult struct {
	Path       string `json:"path"`
	ExternalID string `json:"external_id"`
	Outcome    string `json:"outcome"`
	SubjectID  string `json:"subject_id,omitempty"`
	FaceID     string `json:"face_id,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Detail     string `json:"detail,omitempty"`
	// SubjectCreated: this photo's request created its subject, which the
	// import removes at its end if none of its photos was enrolled.
	SubjectCreated bool `json:"subject_created,omitempty"`

	// final results are written to the state file, so no later run sends
	// the photo again. Failures that may pass on a later try (the server
	// unavailable, a file unreadable) are not final.
	final bool
}

// importer is one run's shared parts.
type importer struct {
	cfg      importConfig
	root     string
	client   *apiClient
	subjects *subjectCache
	// stopped is closed when no new photo should be started: the
	// caller's context is done, or the run aborted. The requests' context
	// is cancelled by an abort only, so that requests in flight when the
	// run is interrupted finish and are recorded (a photo the server
	// enrolled is then never reported "exists" by the resumed run).
	stopped <-chan struct{}
	abort   context.CancelCauseFunc
	// made is written by the collector only.
	made *madeSubjects
}

// importGallery runs one import: source, state, server, then the photos.
func importGallery(ctx context.Context, env *cliEnv, cfg importConfig) error {
	if cfg.archive != "" || cfg.serverPath != "" {
		return importRemote(ctx, env, cfg)
	}
	if cfg.maxAttempts == 0 {
		cfg.maxAttempts = 8
	}
	if cfg.retryBase == 0 {
		cfg.retryBase = 250 * time.Millisecond
	}
	if cfg.progressEvery == 0 {
		cfg.progressEvery = 5 * time.Second
	}
	root, entries, skipped, err := loadImportSource(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.dir != "" {
		// Run from inside the tree, the defaults put the state and
		// failures files at its top: they are ours, not files to report.
		own := map[string]bool{}
		for _, p := range []string{cfg.statePath, cfg.failuresPath, cfg.failuresPath + ".tmp"} {
			if abs, err := filepath.Abs(p); err == nil {
				own[abs] = true
			}
		}
		skipped = slices.DeleteFunc(skipped, func(s gallery.SkippedFile) bool {
			abs, err := filepath.Abs(filepath.Join(root, filepath.FromSlash(s.Path)))
			return err == nil && own[abs]
		})
	}
	st, done, err := openImportState(cfg)
	if err != nil {
		return err
	}
	defer st.close()

	stop, abortStop := context.WithCancelCause(ctx)
	defer abortStop(nil)
	reqCtx, abortReq := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abortReq(nil)
	imp := &importer{
		cfg:      cfg,
		root:     root,
		client:   newAPIClient(cfg, stop.Done()),
		subjects: newSubjectCache(),
		stopped:  stop.Done(),
		abort: func(cause error) {
			abortStop(cause)
			abortReq(cause)
		},
	}
	if err := imp.checkCollection(reqCtx); err != nil {
		return err
	}

	// What the state file says is done counts as this run's, so that the
	// summary of a resumed run covers the whole import.
	tally := newImportTally(len(entries) + len(skipped))
	for _, s := range skipped {
		tally.addSkippedFile(s)
	}
	made := newMadeSubjects()
	imp.made = made
	var todo []gallery.ImportEntry
	for _, e := range entries {
		if r, ok := done[stateKey(e.Path, e.ExternalID)]; ok {
			made.note(r)
			tally.add(r, true)
			if r.SubjectID != "" {
				imp.subjects.remember(e.ExternalID, r.SubjectID)
			}
			continue
		}
		todo = append(todo, e)
	}
	if tally.resumed > 0 {
		fmt.Fprintf(env.stderr, "import: resuming from %s: %d photos done, %d to go\n", cfg.statePath, tally.resumed, len(todo))
	}

	prog := startImportProgress(env.stderr, tally, cfg.progressEvery, cfg.terminal)
	runErr := imp.run(reqCtx, todo, st, tally)
	prog.finish()

	tally.mu.Lock()
	defer tally.mu.Unlock()
	tally.retries = imp.client.retries.Load()
	if err := writeFailures(cfg.failuresPath, tally.failures); err != nil && runErr == nil {
		runErr = err
	}
	fmt.Fprintln(env.stdout, tally.summaryLocked())
	if b := tally.breakdownLocked(); b != "" {
		where := ""
		if len(tally.failures) > 0 {
			where = " (listed in " + cfg.failuresPath + ")"
		}
		fmt.Fprintf(env.stderr, "import: %s%s\n", b, where)
	}
	if runErr != nil {
		return runErr
	}
	if left := tally.total - tally.doneLocked(); left > 0 {
		return fmt.Errorf("interrupted with %d photos left; run the same command again to continue (state in %s): %w",
			left, cfg.statePath, context.Cause(stop))
	}
	if n := imp.removeEmptySubjects(reqCtx, env, made); n > 0 {
		fmt.Fprintf(env.stderr, "import: removed %d subjects this import created whose photos all failed\n", n)
	}
	return nil
}

// loadImportSource lists the photos of the tree or manifest, and the root
// their paths are relative to.
func loadImportSource(ctx context.Context, cfg importConfig) (string, []gallery.ImportEntry, []gallery.SkippedFile, error) {
	if cfg.dir != "" {
		entries, skipped, err := gallery.ScanTree(ctx, cfg.dir)
		if err != nil {
			return "", nil, nil, fmt.Errorf("read --dir: %w", err)
		}
		return cfg.dir, entries, skipped, nil
	}
	root := cfg.root
	if root == "" {
		root = filepath.Dir(cfg.manifest)
	}
	entries, skipped, err := gallery.ReadManifest(ctx, root, cfg.manifest)
	if err != nil {
		return "", nil, nil, fmt.Errorf("read --manifest: %w", err)
	}
	return root, entries, skipped, nil
}

// run enrolls the photos with cfg.concurrency workers; one collector
// records and counts the results, so the state file is written by one
// goroutine in completion order.
//
// ctx is the requests' context, cancelled by an abort only.
func (imp *importer) run(ctx context.Context, todo []gallery.ImportEntry, st *importState, tally *importTally) error {
	jobs := make(chan gallery.ImportEntry)
	results := make(chan itemResult)
	go func() {
		defer close(jobs)
		for _, e := range todo {
			if imp.isStopped() {
				return
			}
			select {
			case jobs <- e:
			case <-imp.stopped:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range imp.cfg.concurrency {
		wg.Go(func() {
			for e := range jobs {
				if imp.isStopped() {
					continue // drain: the run is stopping
				}
				r, err := imp.importOne(ctx, e)
				if err != nil {
					if errors.Is(err, errAbort) {
						imp.abort(err)
					}
					continue
				}
				results <- r
			}
		})
	}
	go func() {
		wg.Wait()
		close(results)
	}()

	tally.start()
	done := 0
	for r := range results {
		if r.final {
			if err := st.append(r); err != nil {
				// A result that cannot be recorded would be sent again
				// by the next run: stop rather than lose exactness.
				imp.abort(fmt.Errorf("%w: %w", errAbort, err))
				continue
			}
		}
		imp.made.note(r)
		tally.add(r, false)
		done++
		if imp.cfg.afterItem != nil {
			imp.cfg.afterItem(done)
		}
	}
	tally.stop()
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, errAbort) {
		return cause
	}
	return nil
}

// isStopped reports whether new photos should no longer be started.
func (imp *importer) isStopped() bool {
	select {
	case <-imp.stopped:
		return true
	default:
		return false
	}
}

// importOne enrolls one photo. The error is errAbort or errInterrupted;
// every other failure is a failed result.
func (imp *importer) importOne(ctx context.Context, e gallery.ImportEntry) (itemResult, error) {
	r := itemResult{Path: e.Path, ExternalID: e.ExternalID}
	// A cached subject id may be stale (the subject was deleted since):
	// the enrollment's 404 then clears it and the subject is made again,
	// once.
	for attempt := 0; ; attempt++ {
		created := false
		sid, err := imp.subjects.get(ctx, e.ExternalID, func() (string, error) {
			id, made, err := imp.ensureSubject(ctx, e)
			created = made
			return id, err
		})
		if err != nil {
			return imp.failed(ctx, r, err)
		}
		r.SubjectID, r.SubjectCreated = sid, created
		res, err := imp.enroll(ctx, sid, e.Path)
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusNotFound && attempt == 0 {
			imp.subjects.forget(e.ExternalID, sid)
			continue
		}
		if err != nil {
			return imp.failed(ctx, r, err)
		}
		r.Outcome, r.FaceID, r.final = res.status, res.faceID, true
		return r, nil
	}
}

// failed turns an error into a failed result, or passes on errAbort and
// errInterrupted.
func (imp *importer) failed(ctx context.Context, r itemResult, err error) (itemResult, error) {
	var (
		ae *apiError
		te *transientError
		le *localError
	)
	switch {
	case errors.Is(err, errAbort), errors.Is(err, errInterrupted):
		return r, err
	case errors.As(err, &ae) && ae.status == http.StatusNotFound:
		// The subject was just made or looked up: the collection is gone.
		return r, fmt.Errorf("%w: collection %q not found (deleted during the import?): %s", errAbort, imp.cfg.collection, ae.problem.Detail)
	case errors.As(err, &ae):
		r.Outcome, r.Reason, r.Detail, r.final = outcomeFailed, ae.reason(), ae.detail(), true
	case errors.As(err, &te):
		r.Outcome, r.Reason, r.Detail = outcomeFailed, reasonUnavailable, te.Error()
	case errors.As(err, &le):
		r.Outcome, r.Reason, r.Detail = outcomeFailed, reasonUnreadable, le.err.Error()
	case ctx.Err() != nil:
		return r, errInterrupted // aborted meanwhile
	default:
		// A 2xx answer the client cannot read: not recorded, so a fixed
		// server or client sends it again.
		r.Outcome, r.Reason, r.Detail = outcomeFailed, "unexpected_answer", err.Error()
	}
	return r, nil
}

// checkCollection makes sure the collection exists (creating it with
// --create-collection) and, on the way, that the server takes the key.
func (imp *importer) checkCollection(ctx context.Context) error {
	coll := "/v1/collections/" + url.PathEscape(imp.cfg.collection)
	_, err := imp.client.do(ctx, http.MethodGet, coll, nil)
	var ae *apiError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && ae.status == http.StatusNotFound && imp.cfg.createCollection:
		body, _ := json.Marshal(map[string]string{"name": imp.cfg.collection})
		_, err := imp.client.do(ctx, http.MethodPost, "/v1/collections", jsonBody(body))
		if errors.As(err, &ae) && ae.status == http.StatusConflict {
			return nil // made meanwhile by someone else
		}
		if err != nil {
			return fmt.Errorf("create collection %q: %w", imp.cfg.collection, err)
		}
		return nil
	case errors.As(err, &ae) && ae.status == http.StatusNotFound:
		return fmt.Errorf("collection %q not found on %s (create it, or add --create-collection): %w", imp.cfg.collection, imp.cfg.server, errAbort)
	}
	return fmt.Errorf("collection %q on %s: %w", imp.cfg.collection, imp.cfg.server, err)
}

// ensureSubject creates the entry's subject (created is true), or finds
// it by external id when it exists (409).
func (imp *importer) ensureSubject(ctx context.Context, e gallery.ImportEntry) (id string, created bool, err error) {
	req := map[string]any{"external_id": e.ExternalID}
	if e.DisplayName != "" {
		req["display_name"] = e.DisplayName
	}
	if len(e.Metadata) > 0 {
		req["metadata"] = e.Metadata
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", false, fmt.Errorf("subject %q: %w", e.ExternalID, err)
	}
	subjects := "/v1/collections/" + url.PathEscape(imp.cfg.collection) + "/subjects"
	resp, err := imp.client.do(ctx, http.MethodPost, subjects, jsonBody(body))
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusConflict {
		id, err := imp.findSubject(ctx, e.ExternalID)
		return id, false, err
	}
	if err != nil {
		return "", false, err
	}
	var sub struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp, &sub); err != nil || sub.ID == "" {
		return "", false, fmt.Errorf("create subject %q: unexpected answer %.200q: %w", e.ExternalID, resp, err)
	}
	return sub.ID, true, nil
}

// madeSubjects follows the subjects an import created and whether any of
// their photos was enrolled: one whose photos all failed would be left
// empty, and the import removes it at its end.
type madeSubjects struct {
	created map[string]string // external id -> id of the subject the import created
	faced   map[string]bool   // external ids with a photo enrolled (or there already)
}

func newMadeSubjects() *madeSubjects {
	return &madeSubjects{created: map[string]string{}, faced: map[string]bool{}}
}

// note takes one photo's result into account.
func (m *madeSubjects) note(r itemResult) {
	if r.SubjectCreated && r.SubjectID != "" {
		m.created[r.ExternalID] = r.SubjectID
	}
	if r.Outcome == outcomeEnrolled || r.Outcome == outcomeExists {
		m.faced[r.ExternalID] = true
	}
}

// removeEmptySubjects deletes the subjects this import created of which
// no photo was enrolled, if they still have no face (another client may
// have enrolled one meanwhile), and returns how many it deleted. A
// subject it cannot check or delete stays, with a warning.
func (imp *importer) removeEmptySubjects(ctx context.Context, env *cliEnv, m *madeSubjects) int {
	removed := 0
	base := "/v1/collections/" + url.PathEscape(imp.cfg.collection) + "/subjects/"
	for ext, id := range m.created {
		if m.faced[ext] {
			continue
		}
		resp, err := imp.client.do(ctx, http.MethodGet, base+url.PathEscape(id), nil)
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusNotFound {
			continue // deleted already
		}
		var sub struct {
			FaceCount int `json:"face_count"`
		}
		if err == nil {
			err = json.Unmarshal(resp, &sub)
		}
		if err == nil && sub.FaceCount > 0 {
			continue
		}
		if err == nil {
			_, err = imp.client.do(ctx, http.MethodDelete, base+url.PathEscape(id), nil)
		}
		if err != nil && !(errors.As(err, &ae) && ae.status == http.StatusNotFound) {
			fmt.Fprintf(env.stderr, "import: warning: subject %q (%s), whose photos all failed, was left: %v\n", ext, id, err)
			continue
		}
		removed++
	}
	return removed
}

// findSubject looks a subject up by external id: the API's exact
// external_id lookup answers in one page. q (a prefix of the external id,
// or part of the display name) is sent too, for servers older than that
// lookup, which ignore external_id: their pages are searched for the
// exact id.
func (imp *importer) findSubject(ctx context.Context, externalID string) (string, error) {
	base := "/v1/collections/" + url.PathEscape(imp.cfg.collection) + "/subjects?"
	after := ""
	for {
		q := url.Values{"external_id": {externalID}, "q": {externalID}, "limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		resp, err := imp.client.do(ctx, http.MethodGet, base+q.Encode(), nil)
		if err != nil {
			return "", fmt.Errorf("find subject %q: %w", externalID, err)
		}
		var page struct {
			Subjects []struct {
				ID         string `json:"id"`
				ExternalID string `json:"external_id"`
			} `json:"subjects"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal(resp, &page); err != nil {
			return "", fmt.Errorf("find subject %q: %w", externalID, err)
		}
		for _, s := range page.Subjects {
			if s.ExternalID == externalID {
				return s.ID, nil
			}
		}
		if page.Next == "" {
			// 409 said it exists: it was deleted since. A later photo
			// of the subject will make it again.
			return "", &transientError{reason: "subject vanished", err: fmt.Errorf("subject %q exists (409) but is not listed", externalID)}
		}
		after = page.Next
	}
}

// enrollment is a successful enrollment's outcome.
type enrollment struct {
	status string // outcomeEnrolled or outcomeExists
	faceID string
}

// enroll sends one photo to the subject.
func (imp *importer) enroll(ctx context.Context, subjectID, rel string) (enrollment, error) {
	path := filepath.Join(imp.root, filepath.FromSlash(rel))
	// Checked up front so that a vanished file fails as such before any
	// request (fileBody's open reports the others, unretried).
	if _, err := os.Stat(path); err != nil {
		return enrollment{}, &localError{err: err}
	}
	faces := "/v1/collections/" + url.PathEscape(imp.cfg.collection) + "/subjects/" + url.PathEscape(subjectID) + "/faces"
	resp, err := imp.client.do(ctx, http.MethodPost, faces, fileBody(path))
	if err != nil {
		return enrollment{}, err
	}
	var out struct {
		Results []struct {
			Status string `json:"status"`
			Face   *struct {
				ID string `json:"id"`
			} `json:"face"`
		} `json:"results"`
	}
	if err := json.Unmarshal(resp, &out); err != nil || len(out.Results) != 1 || out.Results[0].Face == nil {
		return enrollment{}, fmt.Errorf("enroll %s: unexpected answer %.200q: %w", rel, resp, err)
	}
	res := out.Results[0]
	switch res.Status {
	case outcomeEnrolled, outcomeExists:
		return enrollment{status: res.Status, faceID: res.Face.ID}, nil
	}
	return enrollment{}, fmt.Errorf("enroll %s: unexpected status %q", rel, res.Status)
}

// ---- HTTP

// apiClient calls visaged with the key, retrying what may pass later.
type apiClient struct {
	http        *http.Client
	base, key   string
	maxAttempts int
	retryBase   time.Duration
	// stopped is closed when the run is interrupted: waits for a retry
	// end there.
	stopped <-chan struct{}
	// retries counts the attempts after a first: a sign of a throttled
	// or struggling server, reported in the summary.
	retries atomic.Int64
}

func newAPIClient(cfg importConfig, stopped <-chan struct{}) *apiClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Every worker keeps its connection instead of reconnecting.
	tr.MaxIdleConnsPerHost = cfg.concurrency + 1
	return &apiClient{
		// A bound per attempt: a hung server is retried like a refused
		// connection. A 40 MP photo takes seconds, not minutes.
		http:        &http.Client{Transport: tr, Timeout: 2 * time.Minute},
		base:        cfg.server,
		key:         cfg.key,
		maxAttempts: cfg.maxAttempts,
		retryBase:   cfg.retryBase,
		stopped:     stopped,
	}
}

// requestBody opens a request's body afresh for each attempt.
type requestBody struct {
	contentType string
	open        func() (io.ReadCloser, int64, error)
}

func jsonBody(b []byte) *requestBody {
	return &requestBody{contentType: "application/json", open: func() (io.ReadCloser, int64, error) {
		return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}}
}

// fileBody is a multipart/form-data body with the file as its one
// "image" part, streamed from disk: memory stays flat whatever the
// photos' sizes, and the length is known, so no chunked encoding.
func fileBody(path string) *requestBody {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	// Only the form's framing is written to buf, never the file.
	_, _ = mw.CreateFormFile("image", filepath.Base(path))
	head := bytes.Clone(buf.Bytes())
	buf.Reset()
	_ = mw.Close()
	tail := bytes.Clone(buf.Bytes())
	return &requestBody{contentType: mw.FormDataContentType(), open: func() (io.ReadCloser, int64, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, &localError{err: err}
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, &localError{err: err}
		}
		r := io.MultiReader(bytes.NewReader(head), f, bytes.NewReader(tail))
		return struct {
			io.Reader
			io.Closer
		}{r, f}, int64(len(head)) + fi.Size() + int64(len(tail)), nil
	}}
}

// problemBody is an application/problem+json answer.
type problemBody struct {
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Detail  string   `json:"detail"`
	Code    string   `json:"code"`
	Reasons []string `json:"reasons"`
}

// apiError is a final error answer of the server.
type apiError struct {
	status  int
	problem problemBody
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, e.reason(), e.detail())
}

// reason is the failure's reason code: the problem's stable type.
func (e *apiError) reason() string {
	if e.problem.Type != "" {
		return e.problem.Type
	}
	return "http_" + strconv.Itoa(e.status)
}

// detail is the problem's code and quality reasons, then its text.
func (e *apiError) detail() string {
	var parts []string
	if e.problem.Code != "" && e.problem.Code != e.problem.Type {
		parts = append(parts, "code="+e.problem.Code)
	}
	if len(e.problem.Reasons) > 0 {
		parts = append(parts, "reasons="+strings.Join(e.problem.Reasons, "+"))
	}
	// The server's prefix says what every failed photo's row would.
	d := strings.TrimPrefix(e.problem.Detail, "no image was enrolled: ")
	if d == "" {
		d = e.problem.Title
	}
	if d != "" {
		parts = append(parts, d)
	}
	return strings.Join(parts, " ")
}

// transientError is the last error of a request that failed every
// attempt with an answer that might pass later.
type transientError struct {
	reason string
	err    error
}

func (e *transientError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// localError is a local file that cannot be read.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// retryable reports the statuses worth another try: rate limited, not
// ready, the vector store unavailable, and proxies' or the server's
// passing failures.
func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// maxRetryWait caps one wait, whatever Retry-After says.
const maxRetryWait = time.Minute

// do sends one request and returns the body of a 2xx answer. It retries
// network errors and retryable statuses up to maxAttempts times, waiting
// as Retry-After says or with jittered exponential backoff; it gives up
// early when the run is interrupted (errInterrupted). 401 and 403 are
// errAbort; other error answers are *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, body *requestBody) ([]byte, error) {
	var last error
	for attempt := range c.maxAttempts {
		if attempt > 0 {
			c.retries.Add(1)
			if err := sleepCtx(ctx, c.stopped, c.wait(attempt, last)); err != nil {
				return nil, err
			}
		}
		status, header, data, err := c.once(ctx, method, path, body)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %w", errInterrupted, context.Cause(ctx))
		case err != nil:
			var le *localError
			if errors.As(err, &le) {
				return nil, err
			}
			last = &transientError{reason: "network", err: err}
			continue
		case status >= 200 && status < 300:
			return data, nil
		}
		ae := &apiError{status: status}
		if json.Unmarshal(data, &ae.problem) != nil {
			ae.problem.Detail = strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return nil, fmt.Errorf("%w: the server refused the API key (%d %s: %s); use a key with the enroll role (and admin for --create-collection)",
				errAbort, status, ae.reason(), ae.problem.Detail)
		case retryable(status):
			last = &retryAfterError{apiError: ae, after: parseRetryAfter(header.Get("Retry-After"))}
			continue
		}
		return nil, ae
	}
	return nil, &transientError{reason: fmt.Sprintf("%d attempts", c.maxAttempts), err: last}
}

// retryAfterError is a retryable answer and how long it asked to wait.
type retryAfterError struct {
	*apiError
	after time.Duration // 0: not said
}

// once sends one attempt.
func (c *apiClient) once(ctx context.Context, method, path string, body *requestBody) (int, http.Header, []byte, error) {
	var (
		rd     io.ReadCloser
		length int64
	)
	if body != nil {
		var err error
		if rd, length, err = body.open(); err != nil {
			return 0, nil, nil, err
		}
		defer rd.Close()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.ContentLength = length
		req.Header.Set("Content-Type", body.contentType)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json, application/problem+json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	// Answers are small JSON documents; the bound guards against a
	// misdirected URL streaming something large.
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// wait is how long to wait before the attempt (from 1): what Retry-After
// asked, else retryBase doubling per attempt, with jitter either way.
func (c *apiClient) wait(attempt int, last error) time.Duration {
	var ra *retryAfterError
	if errors.As(last, &ra) && ra.after > 0 {
		// At least what was asked, plus up to a fifth: workers throttled
		// together would otherwise all return at the same instant and
		// most be refused again.
		d := min(ra.after, maxRetryWait)
		return d + time.Duration(rand.Int64N(int64(d/5)+1))
	}
	d := c.retryBase << min(attempt-1, 10)
	d = min(d, 10*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// parseRetryAfter reads Retry-After's seconds or HTTP date; 0 if absent
// or unreadable.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// sleepCtx waits d unless ctx is done (an abort) or stopped is closed
// (an interruption) first.
func sleepCtx(ctx context.Context, stopped <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", errInterrupted, context.Cause(ctx))
	case <-stopped:
		return errInterrupted
	}
}

// ---- subjects

// subjectCache maps external ids to subject ids. Each subject is made
// (or looked up) once, however many workers need it at the same time.
type subjectCache struct {
	mu sync.Mutex
	m  map[string]*subjectSlot
}

// subjectSlot is one external id's subject; ready is closed when id or
// err is set.
type subjectSlot struct {
	ready chan struct{}
	id    string
	err   error
}

func newSubjectCache() *subjectCache { return &subjectCache{m: map[string]*subjectSlot{}} }

// remember records a known subject (from the state file).
func (s *subjectCache) remember(externalID, id string) {
	ready := make(chan struct{})
	close(ready)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[externalID] = &subjectSlot{ready: ready, id: id}
}

// forget drops a subject id found stale, unless another worker already
// replaced it.
func (s *subjectCache) forget(externalID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, ok := s.m[externalID]
	if !ok {
		return
	}
	select {
	case <-slot.ready: // its id is set and may be read
		if slot.id == id {
			delete(s.m, externalID)
		}
	default:
		// Being made anew by another worker, which found the same
		// stale id first.
	}
}

// get returns the subject of externalID, calling create for the first
// caller only. A permanent error (the server refused the subject) is
// kept, so the subject's other photos fail alike without requests; any
// other error is dropped, for the next photo to try again.
func (s *subjectCache) get(ctx context.Context, externalID string, create func() (string, error)) (string, error) {
	s.mu.Lock()
	slot, ok := s.m[externalID]
	if !ok {
		slot = &subjectSlot{ready: make(chan struct{})}
		s.m[externalID] = slot
		s.mu.Unlock()
		slot.id, slot.err = create()
		var ae *apiError
		if slot.err != nil && !errors.As(slot.err, &ae) {
			s.mu.Lock()
			if s.m[externalID] == slot {
				delete(s.m, externalID)
			}
			s.mu.Unlock()
		}
		close(slot.ready)
		return slot.id, slot.err
	}
	s.mu.Unlock()
	select {
	case <-slot.ready:
		return slot.id, slot.err
	case <-ctx.Done():
		return "", fmt.Errorf("%w: %w", errInterrupted, context.Cause(ctx))
	}
}

// ---- state file

// stateHeader is a state file's first line.
type stateHeader struct {
	Version    int       `json:"visage_import_state"`
	Collection string    `json:"collection"`
	Source     string    `json:"source"`
	Server     string    `json:"server"`
	Created    time.Time `json:"created"`
}

// importState is the open state file: JSON lines, the header then one
// itemResult per completed photo, each fsync'd before the next.
type importState struct {
	f *os.File
}

func stateKey(path, externalID string) string { return path + "\x00" + externalID }

// openImportState reads the state file (if any) and opens it for
// appending, locked against a second import using it at the same time.
// A last line cut short by a crash is dropped.
func openImportState(cfg importConfig) (*importState, map[string]itemResult, error) {
	f, err := os.OpenFile(cfg.statePath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open state file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("state file %s is in use by another import: %w", cfg.statePath, err)
	}
	st := &importState{f: f}
	done, good, err := readState(f, cfg.collection)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("state file %s: %w", cfg.statePath, err)
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("state file: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("state file: %w", err)
	}
	if good == 0 {
		source := cfg.dir
		if source == "" {
			source = cfg.manifest
		}
		if abs, err := filepath.Abs(source); err == nil {
			source = abs
		}
		if err := st.writeLine(stateHeader{Version: 1, Collection: cfg.collection, Source: source, Server: cfg.server, Created: time.Now().UTC()}); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return st, done, nil
}

// readState returns the recorded results and the length of the file's
// whole lines.
func readState(f *os.File, collection string) (map[string]itemResult, int64, error) {
	done := map[string]itemResult{}
	br := bufio.NewReader(f)
	var good int64
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			// No newline: the line was being written when the run was
			// killed; its photo was not recorded and is done again.
			return done, good, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read: %w", err)
		}
		if n == 1 {
			var h stateHeader
			if err := json.Unmarshal(line, &h); err != nil || h.Version != 1 {
				return nil, 0, errors.New("not a visage import state file")
			}
			if h.Collection != collection {
				return nil, 0, fmt.Errorf("it records an import into collection %q, not %q: give another --state", h.Collection, collection)
			}
		} else {
			var r itemResult
			if err := json.Unmarshal(line, &r); err != nil || r.Outcome == "" {
				return nil, 0, fmt.Errorf("line %d is not a result", n)
			}
			done[stateKey(r.Path, r.ExternalID)] = r
		}
		good += int64(len(line))
	}
}

// append records a completed photo, durably: after a crash the state
// says exactly which photos the server answered.
func (st *importState) append(r itemResult) error {
	return st.writeLine(r)
}

func (st *importState) writeLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if _, err := st.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if err := st.f.Sync(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

func (st *importState) close() { st.f.Close() }

// ---- counts and the failures file

// failureRow is one line of the failures file.
type failureRow struct {
	path, externalID, reason, detail string
}

// importTally counts the outcomes, for the progress display and the
// summary; the collector writes, the display reads.
type importTally struct {
	mu       sync.Mutex
	total    int // photos plus skipped files
	enrolled int
	exists   int
	failed   int
	scanSkip int
	resumed  int
	// processed is this run's photos the server answered; newFaces the
	// faces it stored: the rates.
	processed, newFaces int
	retries             int64          // this run's retried requests
	reasons             map[string]int // skipped and failed, by reason
	failures            []failureRow
	began, ended        time.Time
}

func newImportTally(total int) *importTally {
	return &importTally{total: total, reasons: map[string]int{}}
}

func (t *importTally) addSkippedFile(s gallery.SkippedFile) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.scanSkip++
	t.reasons[s.Reason]++
	detail := s.Detail
	if s.Line > 0 {
		detail = strings.TrimSuffix(fmt.Sprintf("manifest line %d: %s", s.Line, s.Detail), ": ")
	}
	t.failures = append(t.failures, failureRow{path: s.Path, reason: s.Reason, detail: detail})
}

// add counts a result; resumed ones come from the state file.
func (t *importTally) add(r itemResult, resumed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch r.Outcome {
	case outcomeEnrolled:
		t.enrolled++
	case outcomeExists:
		t.exists++
		t.reasons[outcomeExists]++
	default:
		t.failed++
		t.reasons[r.Reason]++
		t.failures = append(t.failures, failureRow{path: r.Path, externalID: r.ExternalID, reason: r.Reason, detail: r.Detail})
	}
	if resumed {
		t.resumed++
		return
	}
	if r.Reason != reasonUnreadable {
		t.processed++
	}
	if r.Outcome == outcomeEnrolled {
		t.newFaces++
	}
}

func (t *importTally) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.began = time.Now()
}

func (t *importTally) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ended = time.Now()
}

func (t *importTally) doneLocked() int { return t.enrolled + t.exists + t.failed + t.scanSkip }

// elapsedLocked is this run's sending time so far.
func (t *importTally) elapsedLocked() time.Duration {
	switch {
	case t.began.IsZero():
		return 0
	case t.ended.IsZero():
		return time.Since(t.began)
	}
	return t.ended.Sub(t.began)
}

// rateLocked is the photos the server answered per second in this run.
func (t *importTally) rateLocked() float64 {
	if s := t.elapsedLocked().Seconds(); s > 0 {
		return float64(t.processed) / s
	}
	return 0
}

// summaryLocked is the one-line summary: counts over the whole import
// (the state file's earlier runs included), rates over this run.
func (t *importTally) summaryLocked() string {
	secs := t.elapsedLocked().Seconds()
	facesPerSec := 0.0
	if secs > 0 {
		facesPerSec = float64(t.newFaces) / secs
	}
	return fmt.Sprintf("import total=%d enrolled=%d skipped=%d failed=%d remaining=%d resumed=%d retries=%d seconds=%.1f photos_per_second=%.1f faces_per_second=%.1f",
		t.total, t.enrolled, t.exists+t.scanSkip, t.failed, t.total-t.doneLocked(), t.resumed, t.retries, secs, t.rateLocked(), facesPerSec)
}

// breakdownLocked lists the skipped and failed files by reason.
func (t *importTally) breakdownLocked() string {
	if len(t.reasons) == 0 {
		return ""
	}
	reasons := make([]string, 0, len(t.reasons))
	for r := range t.reasons {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if t.reasons[reasons[i]] != t.reasons[reasons[j]] {
			return t.reasons[reasons[i]] > t.reasons[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s %d", r, t.reasons[r])
	}
	return "skipped or failed by reason: " + strings.Join(parts, ", ")
}

// writeFailures writes the failures file (CSV, header first, sorted by
// path) through a temporary file, so a reader never sees half of it.
func writeFailures(path string, rows []failureRow) error {
	rows = slices.Clone(rows)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].path < rows[j].path })
	var buf bytes.Buffer
	// Paths, ids and details come from the photos' folders and manifests:
	// escaped so that a spreadsheet opening the file runs none of them.
	w := csvsafe.NewWriter(&buf)
	_ = w.Write([]string{"path", "external_id", "reason_code", "detail"})
	for _, r := range rows {
		_ = w.Write([]string{r.path, r.externalID, r.reason, r.detail})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("failures file: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("failures file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("failures file: %w", err)
	}
	return nil
}
