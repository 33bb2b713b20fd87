package gallery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/visage/visage/store"
)

// ImportStore is what import jobs need of the metadata store: jobs and
// their items, persisted so that a job survives a restart and its counts
// stay exact.
type ImportStore interface {
	CreateImportJob(ctx context.Context, job store.ImportJob, items []store.ImportItem) (store.ImportJob, error)
	GetImportJob(ctx context.Context, id string) (store.ImportJob, error)
	StartImportJob(ctx context.Context, id string) (store.ImportJob, error)
	FinishImportJob(ctx context.Context, id string, state store.ImportState, errText string) (store.ImportJob, error)
	PendingImportItems(ctx context.Context, jobID string, afterSeq, limit int) ([]store.ImportItem, error)
	RecordImportItems(ctx context.Context, jobID string, items []store.ImportItem) (store.ImportJob, error)
	UnfinishedImportJobs(ctx context.Context) ([]store.ImportJob, error)
	GetSubjectByExternalID(ctx context.Context, collection, externalID string) (store.Subject, error)
}

// ImportConfig tunes import jobs.
type ImportConfig struct {
	// Workers is the number of photos in flight per job. Twice the
	// engine's workers keeps every engine worker busy while the others
	// read, decode and write.
	Workers int
	// RecordEvery is the most results written to the store in one
	// transaction, and RecordAfter the longest a result waits for it.
	RecordEvery int
	RecordAfter time.Duration
	// MaxPhotoBytes is the largest photo read (the engine refuses larger
	// ones as image_too_large anyway; this bounds the memory first).
	MaxPhotoBytes int64
	// RetryMax caps the wait between retries of a photo whose enrollment
	// failed for a reason not its own (the vector store unreachable, say):
	// the job waits for the service to recover rather than fail photos.
	RetryMax time.Duration
}

// DefaultImportConfig suits an engine with engineWorkers workers.
func DefaultImportConfig(engineWorkers int) ImportConfig {
	return ImportConfig{Workers: 2 * max(engineWorkers, 1), RecordEvery: 64, RecordAfter: 500 * time.Millisecond,
		MaxPhotoBytes: 64 << 20, RetryMax: 30 * time.Second}
}

// Item codes of import results beyond the engine's and the sources'.
const (
	// ImportExists: the subject already has this photo (re-running an
	// import changes nothing).
	ImportExists = "exists"
	// ImportUnreadable: the photo could not be read from the source.
	ImportUnreadable = "unreadable"
)

// Importer runs import jobs in the background: each photo of a job is
// enrolled for its subject (created on first use), with a bounded number
// in flight, and its outcome recorded. Jobs resume after a restart from
// their first unrecorded photo; a photo enrolled but not recorded before
// a crash is enrolled again, which enrollment's idempotency turns into
// the same face.
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
	// subjects serialise removing a subject made for a refused photo
	// with enrollments into the same subject (see dropIfEmpty): striped
	// by subject, read-locked by enrollments, write-locked by removals.
	subjects [64]sync.RWMutex
}

// subjectLock is the lock stripe of a subject of a collection.
func (im *Importer) subjectLock(collection, externalID string) *sync.RWMutex {
	h := fnv.New32a()
	h.Write([]byte(collection))
	h.Write([]byte{0})
	h.Write([]byte(externalID))
	return &im.subjects[h.Sum32()%uint32(len(im.subjects))]
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
	base, stop := context.WithCancel(context.Background())
	return &Importer{svc: svc, st: st, cfg: cfg, log: log, base: base, stop: stop, cancel: map[string]context.CancelFunc{}}
}

// sourceRecord is the part of a job's stored source the importer reads
// back when it resumes the job.
type sourceRecord struct {
	Root string `json:"root"`
	// Owned: Root is the job's own copy (an extracted upload), removed
	// when the job ends.
	Owned bool `json:"owned,omitempty"`
}

// Start records a job for the photos of src and starts it; describe is
// shown with the job (the upload's name and size, say). With "owned":
// true in describe, src.Root is the job's own copy of the photos, removed
// when the job ends.
func (im *Importer) Start(ctx context.Context, actor, collection string, src Source, describe map[string]any) (store.ImportJob, error) {
	desc := map[string]any{"kind": src.Kind}
	if src.Archive != "" {
		desc["archive"] = src.Archive
	}
	for k, v := range describe {
		desc[k] = v
	}
	desc["root"] = src.Root
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
	owned, _ := desc["owned"].(bool)
	im.launch(job, sourceRecord{Root: src.Root, Owned: owned})
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
		if _, err := os.Stat(src.Root); err != nil {
			im.log.Info("import job's photos are not here; leaving it to the replica that has them", "job", j.ID, "root", src.Root)
			continue
		}
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

// Wait waits until no job runs (for tests and benchmarks).
func (im *Importer) Wait() { im.wg.Wait() }

func (im *Importer) launch(job store.ImportJob, src sourceRecord) {
	ctx, cancel := context.WithCancel(im.base)
	im.mu.Lock()
	im.cancel[job.ID] = cancel
	im.mu.Unlock()
	im.wg.Add(1)
	go func() {
		defer im.wg.Done()
		defer func() {
			im.mu.Lock()
			delete(im.cancel, job.ID)
			im.mu.Unlock()
			cancel()
		}()
		if err := im.run(ctx, job, src.Root); err != nil && ctx.Err() == nil {
			im.log.Error("import job failed", "job", job.ID, "err", err)
			if _, ferr := im.st.FinishImportJob(context.WithoutCancel(ctx), job.ID, store.ImportFailed, err.Error()); ferr != nil {
				im.log.Error("record the failure of an import job", "job", job.ID, "err", ferr)
			}
		}
		if src.Owned {
			if j, err := im.st.GetImportJob(context.WithoutCancel(ctx), job.ID); err == nil && j.State.Finished() {
				if err := os.RemoveAll(src.Root); err != nil {
					im.log.Warn("remove an import's photos", "job", job.ID, "err", err)
				}
			}
		}
	}()
}

// run enrolls a job's pending photos and records their outcomes.
func (im *Importer) run(ctx context.Context, job store.ImportJob, root string) error {
	job, err := im.st.StartImportJob(ctx, job.ID)
	if err != nil {
		return err
	}
	im.log.Info("import job running", "job", job.ID, "collection", job.Collection, "total", job.Total, "done", job.Done)
	todo := make(chan store.ImportItem)
	done := make(chan store.ImportItem)
	var workers sync.WaitGroup
	for range im.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for it := range todo {
				r, ok := im.process(ctx, job, root, it)
				if !ok {
					continue // stopped: the photo stays pending
				}
				select {
				case done <- r:
				case <-ctx.Done():
				}
			}
		}()
	}
	feedErr := make(chan error, 1)
	go func() {
		defer close(todo)
		feedErr <- im.feed(ctx, job.ID, todo)
	}()
	go func() {
		workers.Wait()
		close(done)
	}()
	recErr := im.record(ctx, job.ID, done)
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

// record writes outcomes in batches until done closes.
func (im *Importer) record(ctx context.Context, jobID string, done <-chan store.ImportItem) error {
	var batch []store.ImportItem
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		// Outcomes already obtained are written even when the job is
		// stopping: the work is done, and recording it spares a redo.
		if _, err := im.st.RecordImportItems(context.WithoutCancel(ctx), jobID, batch); err != nil {
			return fmt.Errorf("record import results: %w", err)
		}
		batch = batch[:0]
		return nil
	}
	tick := time.NewTicker(im.cfg.RecordAfter)
	defer tick.Stop()
	for {
		select {
		case it, ok := <-done:
			if !ok {
				return flush()
			}
			batch = append(batch, it)
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

// process enrolls one photo. ok is false when the job stopped before the
// photo's outcome was known.
func (im *Importer) process(ctx context.Context, job store.ImportJob, root string, it store.ImportItem) (store.ImportItem, bool) {
	fail := func(code string, err error) (store.ImportItem, bool) {
		it.State, it.Code, it.Reason = store.ItemFailed, code, err.Error()
		return it, true
	}
	data, err := readPhoto(root, it.Path, im.cfg.MaxPhotoBytes)
	if err != nil {
		return fail(ImportUnreadable, err)
	}
	wait := time.Second
	for {
		r, err := im.enroll(ctx, job, it, data)
		if err == nil {
			switch r.Status {
			case StatusEnrolled:
				it.State = store.ItemEnrolled
			case StatusExists:
				it.State, it.Code = store.ItemSkipped, ImportExists
			default:
				return fail(r.Code, r.Err)
			}
			it.SubjectID, it.FaceID = r.Face.SubjectID, r.Face.ID
			return it, true
		}
		var inv *InvalidError
		if errors.As(err, &inv) || errors.Is(err, store.ErrInvalid) {
			return fail(SkipBadLine, err)
		}
		if ctx.Err() != nil {
			return it, false
		}
		// Not the photo's fault (the vector store or database away):
		// wait for the service to recover rather than fail the photo.
		im.log.Warn("import: enrollment failed; retrying", "job", job.ID, "path", it.Path, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return it, false
		case <-time.After(wait):
		}
		wait = min(2*wait, im.cfg.RetryMax)
	}
}

// enroll enrolls one photo for its subject, creating the subject first if
// it is new.
func (im *Importer) enroll(ctx context.Context, job store.ImportJob, it store.ImportItem, data []byte) (EnrollResult, error) {
	lock := im.subjectLock(job.Collection, it.ExternalID)
	lock.RLock()
	r, sub, created, err := im.enrollLocked(ctx, job, it, data)
	lock.RUnlock()
	if err == nil && r.Status == StatusRejected && created {
		// Enrollments into the subject that are under way finish first,
		// and none starts until the check and the removal are done.
		lock.Lock()
		im.dropIfEmpty(ctx, job, sub)
		lock.Unlock()
	}
	return r, err
}

func (im *Importer) enrollLocked(ctx context.Context, job store.ImportJob, it store.ImportItem, data []byte) (EnrollResult, store.Subject, bool, error) {
	created := false
	sub, err := im.st.GetSubjectByExternalID(ctx, job.Collection, it.ExternalID)
	if errors.Is(err, store.ErrNotFound) {
		sub, err = im.svc.store.CreateSubject(ctx, store.Subject{Collection: job.Collection, ExternalID: it.ExternalID,
			DisplayName: it.DisplayName, Metadata: it.Metadata})
		created = err == nil
		if errors.Is(err, store.ErrConflict) {
			// Another worker created it meanwhile.
			sub, err = im.st.GetSubjectByExternalID(ctx, job.Collection, it.ExternalID)
		}
	}
	if err != nil {
		return EnrollResult{}, sub, false, fmt.Errorf("subject %q: %w", it.ExternalID, err)
	}
	res, err := im.svc.Enroll(ctx, job.KeyID, job.Collection, sub.ID, [][]byte{data})
	if err != nil {
		return EnrollResult{}, sub, created, err
	}
	return res[0], sub, created, nil
}

// dropIfEmpty deletes a subject this import created for a photo that was
// refused, unless it has faces by now (another photo of the same person):
// a failed photo leaves nothing behind. The caller holds the subject's
// write lock, so no enrollment of this importer runs into it meanwhile
// (a client of the API enrolling into it at that instant could still
// lose its face: a store-side "delete if empty" would close that).
func (im *Importer) dropIfEmpty(ctx context.Context, job store.ImportJob, sub store.Subject) {
	cur, err := im.svc.store.GetSubject(ctx, job.Collection, sub.ID)
	if err != nil || cur.FaceCount > 0 {
		return
	}
	if err := im.svc.DeleteSubject(ctx, job.KeyID, job.Collection, sub.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		im.log.Warn("import: delete a subject whose only photo was refused", "subject", sub.ID, "err", err)
	}
}

// readPhoto reads a photo of a source, refusing paths that leave root and
// reading at most one byte more than limit, so that the engine refuses a
// larger one with its own code.
func readPhoto(root, rel string, limit int64) ([]byte, error) {
	p := filepath.FromSlash(rel)
	if !filepath.IsLocal(p) {
		return nil, fmt.Errorf("read %s: path leaves the source", rel)
	}
	f, err := os.Open(filepath.Join(root, p))
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
