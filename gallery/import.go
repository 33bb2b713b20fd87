package gallery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/visage/visage/internal/admission"
	"github.com/visage/visage/store"
)

// ImportStore is what import jobs need of the metadata store: jobs and
// their items, persisted so that a job survives a restart and its counts
// stay exact, and the write of a batch of results (faces, subjects and
// item outcomes in one transaction).
type ImportStore interface {
	CreateImportJob(ctx context.Context, job store.ImportJob, items []store.ImportItem) (store.ImportJob, error)
	GetImportJob(ctx context.Context, id string) (store.ImportJob, error)
	StartImportJob(ctx context.Context, id string) (store.ImportJob, error)
	FinishImportJob(ctx context.Context, id string, state store.ImportState, errText string) (store.ImportJob, error)
	PendingImportItems(ctx context.Context, jobID string, afterSeq, limit int) ([]store.ImportItem, error)
	UnfinishedImportJobs(ctx context.Context) ([]store.ImportJob, error)
	EnrollImportBatch(ctx context.Context, jobID string, outcomes []store.ImportOutcome) (store.ImportBatch, error)
}

// ImportConfig tunes import jobs.
type ImportConfig struct {
	// Workers is the number of photos in flight per job. Twice the
	// engine's workers keeps every engine worker busy while the others
	// read, decode and write.
	Workers int
	// RecordEvery is the most results written to the store in one
	// transaction (faces, subjects and outcomes), and RecordAfter the
	// longest a result waits for it.
	RecordEvery int
	RecordAfter time.Duration
	// MaxPhotoBytes is the largest photo read (the engine refuses larger
	// ones as image_too_large anyway; this bounds the memory first).
	MaxPhotoBytes int64
	// RetryMax caps the wait between retries of a batch whose write
	// failed for a reason not its own (the database or the vector store
	// unreachable, say): the job waits for the service to recover rather
	// than fail photos.
	RetryMax time.Duration
	// ImportRoot and ImportDir are the server's import root (server-local
	// sources) and upload directory (extracted archives), the API's: a
	// job records its source's directory relative to one of them, so that
	// its JSON, which read keys see, shows no server path, and another
	// replica mounting them elsewhere resumes it. A source under neither
	// is recorded by its absolute path.
	ImportRoot, ImportDir string
	// MaxJobs bounds the jobs running, or being prepared (an upload being
	// extracted), at once: each holds its extracted photos on disk and
	// shares the engine with the others, so more only slows them all.
	// Reserve refuses beyond it (ErrTooManyImports).
	MaxJobs int
}

// DefaultMaxImportJobs is ImportConfig.MaxJobs's default.
const DefaultMaxImportJobs = 4

// ErrTooManyImports: the importer already runs or prepares
// ImportConfig.MaxJobs jobs; retry once one has ended.
var ErrTooManyImports = errors.New("gallery: too many import jobs at once")

// DefaultImportConfig suits an engine with engineWorkers workers.
func DefaultImportConfig(engineWorkers int) ImportConfig {
	return ImportConfig{Workers: 2 * max(engineWorkers, 1), RecordEvery: 32, RecordAfter: 250 * time.Millisecond,
		MaxPhotoBytes: 64 << 20, RetryMax: 30 * time.Second, MaxJobs: DefaultMaxImportJobs}
}

// Item codes of import results beyond the engine's and the sources'.
const (
	// ImportExists: the subject already has this photo (re-running an
	// import changes nothing).
	ImportExists = store.ItemExists
	// ImportBeingDeleted: the subject's face from this photo is being
	// deleted; importing the photo again later enrolls it.
	ImportBeingDeleted = store.ItemBeingDeleted
	// ImportUnreadable: the photo could not be read from the source.
	ImportUnreadable = "unreadable"
)

// Importer runs import jobs in the background. Workers, a bounded number
// per job, read each photo and run the engine on it; one writer per job
// then stores the results in batches: each batch's faces, the subjects
// they are the first of, and the outcomes of its photos go in one
// transaction, then the faces' vectors into the index. Writing in
// batches keeps the store's cost per photo small beside the engine's, so
// an import runs at the engine's speed; a refused photo creates nothing.
//
// Jobs resume after a restart from their first unrecorded photo. A photo
// is either recorded with its face or not at all, so a resumed job's
// counts are exact; faces recorded but not yet indexed when the process
// died are indexed by the reconciler at start-up.
type Importer struct {
	svc *Service
	st  ImportStore
	cfg ImportConfig
	log *slog.Logger

	base   context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	cancel map[string]context.CancelFunc // running jobs
	// active counts the jobs running and the slots reserved for jobs
	// being prepared.
	active int
}

// NewImporter returns an importer enrolling through svc.
func NewImporter(svc *Service, st ImportStore, cfg ImportConfig, log *slog.Logger) *Importer {
	def := DefaultImportConfig(1)
	if cfg.Workers <= 0 {
		cfg.Workers = def.Workers
	}
	if cfg.RecordEvery <= 0 {
		cfg.RecordEvery = def.RecordEvery
	}
	if cfg.RecordAfter <= 0 {
		cfg.RecordAfter = def.RecordAfter
	}
	if cfg.MaxPhotoBytes <= 0 {
		cfg.MaxPhotoBytes = def.MaxPhotoBytes
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = def.RetryMax
	}
	if cfg.MaxJobs <= 0 {
		cfg.MaxJobs = def.MaxJobs
	}
	base, stop := context.WithCancel(context.Background())
	return &Importer{svc: svc, st: st, cfg: cfg, log: log, base: base, stop: stop, cancel: map[string]context.CancelFunc{}}
}

// sourceRecord is the part of a job's stored source the importer reads
// back when it resumes the job.
type sourceRecord struct {
	// Root is the directory the items' paths are relative to: relative to
	// the directory Base names (slash-separated), or absolute when Base is
	// empty (jobs recorded before Base existed, importers without the
	// directories).
	Root string `json:"root"`
	Base string `json:"base,omitempty"`
	// Owned: Root is the job's own copy (an extracted upload), removed
	// when the job ends.
	Owned bool `json:"owned,omitempty"`
}

// Bases of a recorded source's root.
const (
	baseImportRoot = "import_root" // ImportConfig.ImportRoot
	baseImportDir  = "import_dir"  // ImportConfig.ImportDir
)

// locate records dir relative to the configured directory holding it.
func (im *Importer) locate(dir string) sourceRecord {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return sourceRecord{Root: dir}
	}
	for _, b := range []struct{ name, dir string }{{baseImportDir, im.cfg.ImportDir}, {baseImportRoot, im.cfg.ImportRoot}} {
		if b.dir == "" {
			continue
		}
		base, err := filepath.Abs(b.dir)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(base, abs); err == nil && filepath.IsLocal(rel) {
			return sourceRecord{Root: filepath.ToSlash(rel), Base: b.name}
		}
	}
	return sourceRecord{Root: abs}
}

// baseDir is the directory a recorded source's root is relative to, ""
// for an absolute root; ok is false when this importer does not have it.
func (im *Importer) baseDir(src sourceRecord) (dir string, ok bool) {
	switch src.Base {
	case "":
		return "", filepath.IsAbs(src.Root)
	case baseImportRoot:
		return im.cfg.ImportRoot, im.cfg.ImportRoot != "" && filepath.IsLocal(filepath.FromSlash(src.Root))
	case baseImportDir:
		return im.cfg.ImportDir, im.cfg.ImportDir != "" && filepath.IsLocal(filepath.FromSlash(src.Root))
	}
	return "", false
}

// openPhotos opens the directory of a job's photos as an os.Root: inside
// its base directory, through no symbolic link, as OpenSourceIn does.
func (im *Importer) openPhotos(src sourceRecord) (*os.Root, error) {
	dir, ok := im.baseDir(src)
	if !ok {
		return nil, errors.New("the job's source is not on this server")
	}
	if dir == "" {
		return os.OpenRoot(src.Root)
	}
	base, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	if src.Root != "." {
		if _, err := lstatNoLinks(base, src.Root, src.Root); err != nil {
			return nil, err
		}
	}
	return base.OpenRoot(filepath.FromSlash(src.Root))
}

// ownedDir is the directory removed when a job owning its photos ends:
// the job's own folder in ImportDir (its archive may have extracted to a
// folder inside it), or, for an absolute root, the root.
func (im *Importer) ownedDir(src sourceRecord) string {
	dir, ok := im.baseDir(src)
	switch {
	case !ok || !src.Owned:
		return ""
	case dir == "":
		return src.Root
	case src.Base != baseImportDir:
		return "" // never a server-local source
	}
	top, _, _ := strings.Cut(src.Root, "/")
	if top == "." {
		return "" // never the directory itself
	}
	return filepath.Join(dir, top)
}

// ImportSlot is a place for one job among the importer's MaxJobs,
// reserved before the job's source is opened (an upload extracted, which
// takes disk and time) and given to the job Start begins.
type ImportSlot struct {
	im   *Importer
	used bool // released, or given to a job; guarded by im.mu
}

// Reserve takes a slot for a job, or fails with ErrTooManyImports when
// MaxJobs jobs run or are being prepared. The caller starts the job with
// the slot's Start, or gives it back with Release.
func (im *Importer) Reserve() (*ImportSlot, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.active >= im.cfg.MaxJobs {
		return nil, fmt.Errorf("%w: %d of %d running or starting", ErrTooManyImports, im.active, im.cfg.MaxJobs)
	}
	im.active++
	return &ImportSlot{im: im}, nil
}

// Release gives the slot back, unless Start gave it to a job; it may be
// called more than once, and after Start.
func (sl *ImportSlot) Release() {
	sl.im.mu.Lock()
	defer sl.im.mu.Unlock()
	if !sl.used {
		sl.used = true
		sl.im.active--
	}
}

// Start records a job for the photos of src and starts it in a new slot,
// or fails with ErrTooManyImports; see ImportSlot.Start.
func (im *Importer) Start(ctx context.Context, actor, collection string, src Source, describe map[string]any) (store.ImportJob, error) {
	sl, err := im.Reserve()
	if err != nil {
		return store.ImportJob{}, fmt.Errorf("start import: %w", err)
	}
	return sl.Start(ctx, actor, collection, src, describe)
}

// Start records a job for the photos of src and starts it in the slot,
// which the job gives back when it ends (or Start, when it fails);
// describe is shown with the job (the upload's name and size, say). With
// "owned": true in describe, src.Root is the job's own copy of the
// photos, removed when the job ends.
func (sl *ImportSlot) Start(ctx context.Context, actor, collection string, src Source, describe map[string]any) (store.ImportJob, error) {
	im := sl.im
	im.mu.Lock()
	used := sl.used
	sl.used = true // from here the slot is the job's, or given back below
	im.mu.Unlock()
	if used {
		return store.ImportJob{}, errors.New("start import: the slot was released or used")
	}
	job, err := im.start(ctx, actor, collection, src, describe)
	if err != nil {
		im.done()
	}
	return job, err
}

// done gives back the slot of a job that ended or never started.
func (im *Importer) done() {
	im.mu.Lock()
	im.active--
	im.mu.Unlock()
}

// start records the job and launches it in a slot already counted.
func (im *Importer) start(ctx context.Context, actor, collection string, src Source, describe map[string]any) (store.ImportJob, error) {
	desc := map[string]any{"kind": src.Kind}
	if src.Archive != "" {
		desc["archive"] = src.Archive
	}
	for k, v := range describe {
		desc[k] = v
	}
	owned, _ := desc["owned"].(bool)
	rec := im.locate(src.Root)
	rec.Owned = owned
	desc["root"] = rec.Root
	if rec.Base != "" {
		desc["base"] = rec.Base
	}
	source, err := json.Marshal(desc)
	if err != nil {
		return store.ImportJob{}, fmt.Errorf("start import: %w", err)
	}
	items := make([]store.ImportItem, 0, len(src.Entries)+len(src.Skipped))
	for _, e := range src.Entries {
		items = append(items, store.ImportItem{Path: e.Path, ExternalID: e.ExternalID, DisplayName: e.DisplayName,
			Metadata: e.Metadata, State: store.ItemPending})
	}
	for _, s := range src.Skipped {
		items = append(items, store.ImportItem{Path: s.Path, State: store.ItemSkipped, Code: s.Reason, Reason: s.Detail})
	}
	job, err := im.st.CreateImportJob(ctx, store.ImportJob{Collection: collection, KeyID: actor, Source: source}, items)
	if err != nil {
		return store.ImportJob{}, fmt.Errorf("start import: %w", err)
	}
	im.launch(job, rec)
	return job, nil
}

// Resume restarts the jobs a stop interrupted and returns how many. A
// job whose photos are not on this machine (another replica's upload) is
// left to the replica that has them. Two replicas sharing the photos may
// both run a job: the counts stay exact (an outcome is recorded once) and
// enrollment is idempotent, so that costs work, not correctness.
func (im *Importer) Resume(ctx context.Context) (int, error) {
	jobs, err := im.st.UnfinishedImportJobs(ctx)
	if err != nil {
		return 0, fmt.Errorf("resume imports: %w", err)
	}
	n := 0
	for _, j := range jobs {
		var src sourceRecord
		if err := json.Unmarshal(j.Source, &src); err != nil || src.Root == "" {
			if _, err := im.st.FinishImportJob(ctx, j.ID, store.ImportFailed, "the job's source is unknown"); err != nil {
				return 0, fmt.Errorf("resume imports: %w", err)
			}
			continue
		}
		r, err := im.openPhotos(src)
		if err != nil {
			im.log.Info("import job's photos are not here; leaving it to the replica that has them", "job", j.ID,
				"root", src.Root, "base", src.Base, "err", err)
			continue
		}
		r.Close()
		// A resumed job runs whatever the limit: it was accepted already.
		im.mu.Lock()
		im.active++
		im.mu.Unlock()
		im.launch(j, src)
		n++
	}
	return n, nil
}

// Cancel stops a job; what it recorded stays.
func (im *Importer) Cancel(ctx context.Context, id string) (store.ImportJob, error) {
	job, err := im.st.FinishImportJob(ctx, id, store.ImportCancelled, "")
	if err != nil {
		return store.ImportJob{}, fmt.Errorf("cancel import: %w", err)
	}
	im.mu.Lock()
	if c, ok := im.cancel[id]; ok {
		c()
	}
	im.mu.Unlock()
	return job, nil
}

// Close stops every running job and waits for them: they stay unfinished
// in the store, and Resume continues them at the next start.
func (im *Importer) Close() {
	im.stop()
	im.wg.Wait()
}

// importAdmissionWait is how long an import job's photo waits for room in
// the decode budget.
const importAdmissionWait = 10 * time.Minute

// Wait waits until no job runs (for tests and benchmarks).
func (im *Importer) Wait() { im.wg.Wait() }

// launch runs a job in the background, in a slot already counted, which
// it gives back when it ends.
func (im *Importer) launch(job store.ImportJob, src sourceRecord) {
	// A job's photos wait for room in the decode budget as long as it
	// takes rather than fail when requests fill it: nobody waits on a
	// job's single photo, and a failed item would need a re-run.
	ctx, cancel := context.WithCancel(admission.WithWait(im.base, importAdmissionWait))
	im.mu.Lock()
	im.cancel[job.ID] = cancel
	im.mu.Unlock()
	im.wg.Add(1)
	go func() {
		defer im.wg.Done()
		defer im.done()
		defer func() {
			im.mu.Lock()
			delete(im.cancel, job.ID)
			im.mu.Unlock()
			cancel()
		}()
		if err := im.run(ctx, job, src); err != nil && ctx.Err() == nil {
			im.log.Error("import job failed", "job", job.ID, "err", err)
			if _, ferr := im.st.FinishImportJob(context.WithoutCancel(ctx), job.ID, store.ImportFailed, err.Error()); ferr != nil {
				im.log.Error("record the failure of an import job", "job", job.ID, "err", ferr)
			}
		}
		if dir := im.ownedDir(src); dir != "" {
			if j, err := im.st.GetImportJob(context.WithoutCancel(ctx), job.ID); err == nil && j.State.Finished() {
				if err := os.RemoveAll(dir); err != nil {
					im.log.Warn("remove an import's photos", "job", job.ID, "err", err)
				}
			}
		}
	}()
}

// run enrolls a job's pending photos and records their outcomes.
func (im *Importer) run(ctx context.Context, job store.ImportJob, src sourceRecord) error {
	job, err := im.st.StartImportJob(ctx, job.ID)
	if err != nil {
		return err
	}
	im.log.Info("import job running", "job", job.ID, "collection", job.Collection, "total", job.Total, "done", job.Done)
	// Photos are read through an os.Root: a photo swapped for a link
	// since the source was scanned cannot lead out of it.
	photos, err := im.openPhotos(src)
	if err != nil {
		// Without the path: the job's error is shown to read keys.
		return fmt.Errorf("open the import's photos: %s", pathErrText(err))
	}
	defer photos.Close()
	// The readers and workers stop with the job, or when its results can
	// no longer be written.
	work, stopWork := context.WithCancel(ctx)
	defer stopWork()
	todo := make(chan store.ImportItem)
	done := make(chan store.ImportOutcome)
	var workers sync.WaitGroup
	for range im.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for it := range todo {
				o, ok := im.examine(work, photos, it)
				if !ok {
					continue // stopped: the photo stays pending
				}
				select {
				case done <- o:
				case <-work.Done():
				}
			}
		}()
	}
	feedErr := make(chan error, 1)
	go func() {
		defer close(todo)
		feedErr <- im.feed(work, job.ID, todo)
	}()
	go func() {
		workers.Wait()
		close(done)
	}()
	recErr := im.record(ctx, job, done)
	if recErr != nil {
		stopWork()
		for range done {
		}
	}
	if err := errors.Join(<-feedErr, recErr); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil // stopped or cancelled: nothing more to record
	}
	job, err = im.st.FinishImportJob(ctx, job.ID, store.ImportDone, "")
	if errors.Is(err, store.ErrConflict) {
		// Cancelled meanwhile, or photos left pending (which would be a
		// bug): the stored state says which.
		if cur, gerr := im.st.GetImportJob(ctx, job.ID); gerr == nil && cur.State.Finished() {
			return nil
		}
	}
	if err != nil {
		return err
	}
	im.log.Info("import job done", "job", job.ID, "enrolled", job.Enrolled, "skipped", job.Skipped, "failed", job.Failed)
	return nil
}

// feed sends the job's pending photos, in order, page by page.
func (im *Importer) feed(ctx context.Context, jobID string, todo chan<- store.ImportItem) error {
	after := -1
	for {
		items, err := im.st.PendingImportItems(ctx, jobID, after, 256)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read pending photos: %w", err)
		}
		if len(items) == 0 {
			return nil
		}
		for _, it := range items {
			select {
			case todo <- it:
			case <-ctx.Done():
				return nil
			}
		}
		after = items[len(items)-1].Seq
	}
}

// record writes results in batches until done closes.
func (im *Importer) record(ctx context.Context, job store.ImportJob, done <-chan store.ImportOutcome) error {
	var batch []store.ImportOutcome
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := im.write(ctx, job, batch)
		batch = batch[:0]
		return err
	}
	tick := time.NewTicker(im.cfg.RecordAfter)
	defer tick.Stop()
	for {
		select {
		case o, ok := <-done:
			if !ok {
				return flush()
			}
			batch = append(batch, o)
			if len(batch) >= im.cfg.RecordEvery {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// write stores a batch of results, then indexes its new faces. Results
// already obtained are written even when the job is stopping (the work is
// done, and recording it spares a redo), but failures are retried only
// while it runs: a batch not written is redone when the job resumes, and
// faces written but not indexed are the reconciler's.
func (im *Importer) write(ctx context.Context, job store.ImportJob, batch []store.ImportOutcome) error {
	var written store.ImportBatch
	err := im.retry(ctx, job, "write import results", func(ctx context.Context) error {
		var err error
		written, err = im.st.EnrollImportBatch(ctx, job.ID, batch)
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return fmt.Errorf("record import results: %w", err)
		}
		return nil // stopping: redone on resume
	}
	err = im.retry(ctx, job, "index imported faces", func(ctx context.Context) error {
		return im.svc.indexFaces(ctx, job.Collection, written.Faces)
	})
	if err != nil {
		im.svc.rec.deferWork()
	}
	return nil
}

// retry runs fn until it succeeds, fails for a reason retrying cannot
// change (ErrNotFound, ErrInvalid), or the job stops, waiting longer after
// each failure up to RetryMax. The first try ignores the job's stopping.
func (im *Importer) retry(ctx context.Context, job store.ImportJob, what string, fn func(context.Context) error) error {
	err := fn(context.WithoutCancel(ctx))
	for wait := time.Second; err != nil; wait = min(2*wait, im.cfg.RetryMax) {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) || ctx.Err() != nil {
			return err
		}
		im.log.Warn("import: "+what+" failed; retrying", "job", job.ID, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		err = fn(ctx)
	}
	return nil
}

// examine reads one photo and runs the engine on it. ok is false when the
// job stopped before the photo's outcome was known.
func (im *Importer) examine(ctx context.Context, root *os.Root, it store.ImportItem) (store.ImportOutcome, bool) {
	fail := func(code string, err error) (store.ImportOutcome, bool) {
		return store.ImportOutcome{Seq: it.Seq, State: store.ItemFailed, Code: code, Reason: err.Error()}, true
	}
	if it.ExternalID == "" {
		return fail(SkipBadLine, errors.New("no subject"))
	}
	data, err := readPhoto(root, it.Path, im.cfg.MaxPhotoBytes)
	if err != nil {
		return fail(ImportUnreadable, err)
	}
	p, err := im.svc.prepareFace(ctx, data)
	switch {
	case ctx.Err() != nil:
		return store.ImportOutcome{}, false
	case err != nil:
		// The engine failed on this photo for no reason of the photo's
		// that it can name; the job goes on.
		return fail(ErrorCode(err), err)
	case p.rejected != nil:
		return fail(p.result.Code, p.rejected)
	}
	return store.ImportOutcome{Seq: it.Seq, Face: &p.face}, true
}

// readPhoto reads a photo of a source, refusing paths that leave root and
// symbolic links, and reading at most one byte more than limit, so that
// the engine refuses a larger one with its own code. Errors name the
// photo by its path in the source, never by a server path.
func readPhoto(root *os.Root, rel string, limit int64) ([]byte, error) {
	p := filepath.FromSlash(rel)
	if !filepath.IsLocal(p) {
		return nil, fmt.Errorf("read %s: path leaves the source", rel)
	}
	// The scan skipped links; one found now was swapped in since, and is
	// refused as the scan would have (the root stops those leading out).
	if fi, err := root.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("read %s: a symbolic link, which imports never follow", rel)
	}
	f, err := root.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	return data, nil
}
