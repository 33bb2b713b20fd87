package store

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
)

// ImportState is where a batch import job stands.
type ImportState string

// Import job states. A job is created queued, runs (again after each
// restart) and ends done, failed or cancelled; the last three are final.
const (
	ImportQueued    ImportState = "queued"
	ImportRunning   ImportState = "running"
	ImportDone      ImportState = "done"
	ImportFailed    ImportState = "failed"
	ImportCancelled ImportState = "cancelled"
)

// Finished reports whether s is a final state.
func (s ImportState) Finished() bool {
	return s == ImportDone || s == ImportFailed || s == ImportCancelled
}

// ItemState is the outcome of one photo of an import job.
type ItemState string

// Import item states: pending until the job records its outcome.
const (
	ItemPending  ItemState = "pending"
	ItemEnrolled ItemState = "enrolled"
	ItemSkipped  ItemState = "skipped"
	ItemFailed   ItemState = "failed"
)

// ImportJob is a batch import into a collection: its source, state and
// counts. Done is always Enrolled + Skipped + Failed, and at most Total.
// Rates (faces per second) are for callers to derive from the times.
type ImportJob struct {
	ID         string `json:"id"`
	Collection string `json:"collection"`
	// KeyID is the API key that started the job; empty if none did.
	KeyID string `json:"key_id,omitempty"`
	// Source describes what is imported (JSON, stored as given), such as
	// {"kind":"archive","name":"gallery.zip","bytes":123}.
	Source   json.RawMessage `json:"source"`
	State    ImportState     `json:"state"`
	Total    int             `json:"total"`
	Done     int             `json:"done"`
	Enrolled int             `json:"enrolled"`
	Skipped  int             `json:"skipped"`
	Failed   int             `json:"failed"`
	// Error is why the job failed as a whole; the items carry their own
	// reasons.
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// StartedAt is when the job first ran; a resumed job keeps it.
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// ImportItem is one photo of an import job and what became of it.
type ImportItem struct {
	JobID string `json:"job_id"`
	// Seq is the item's 0-based position in the job, set by
	// CreateImportJob from the order of the items given.
	Seq int `json:"seq"`
	// Path is the photo's relative path in the job's source.
	Path        string          `json:"path"`
	ExternalID  string          `json:"external_id,omitempty"`
	DisplayName string          `json:"display_name,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	State       ItemState       `json:"state"`
	// Code is a stable reason code (no_face, corrupt_image, exists, ...)
	// of a skipped or failed item; Reason is its human detail.
	Code      string `json:"code,omitempty"`
	Reason    string `json:"reason,omitempty"`
	SubjectID string `json:"subject_id,omitempty"`
	FaceID    string `json:"face_id,omitempty"`
}

// Page sizes of the item listings (PendingImportItems, ImportItems) and
// of ListImportJobs.
const (
	defaultImportItems = 100
	maxImportItems     = 10000
	defaultImportJobs  = 100
	maxImportJobs      = 1000
)

// importItemLimit bounds a page of items.
func importItemLimit(limit int) int {
	if limit <= 0 {
		return defaultImportItems
	}
	return min(limit, maxImportItems)
}

// importJobLimit bounds a page of jobs.
func importJobLimit(limit int) int {
	if limit <= 0 {
		return defaultImportJobs
	}
	return min(limit, maxImportJobs)
}

// importCounts are the counters a batch of item outcomes adds to its job.
type importCounts struct {
	done, enrolled, skipped, failed int
}

// add counts one item that reached state.
func (c *importCounts) add(state ItemState) {
	switch state {
	case ItemEnrolled:
		c.enrolled++
	case ItemSkipped:
		c.skipped++
	case ItemFailed:
		c.failed++
	default:
		return
	}
	c.done++
}

// newImportJob validates a job to be created with its items and sets what
// a new job starts with, the same for every store: an id (unless given),
// state queued, the times, total and the counts of items whose outcome is
// known already (skipped or failed: a manifest line that cannot be used).
// The items are not modified (a million of them are not copied either):
// the stores write item i with seq i and state createdItemState(item).
func newImportJob(job ImportJob, items []ImportItem, now time.Time) (ImportJob, error) {
	if job.ID == "" {
		job.ID = uuid.NewString()
	}
	if len(items) > math.MaxInt32 {
		// seq and the counters are 32-bit columns.
		return ImportJob{}, fmt.Errorf("%w: %d items is too many for one job", ErrInvalid, len(items))
	}
	if len(job.Source) == 0 {
		job.Source = json.RawMessage(`{}`)
	} else if !json.Valid(job.Source) {
		return ImportJob{}, fmt.Errorf("source: %w: not JSON", ErrInvalid)
	}
	var c importCounts
	for i, it := range items {
		switch it.State {
		case "", ItemPending, ItemSkipped, ItemFailed:
		default:
			// An item is enrolled by the job, never before it exists.
			return ImportJob{}, fmt.Errorf("item %d: %w: state %q at creation", i, ErrInvalid, it.State)
		}
		if len(it.Metadata) > 0 && !json.Valid(it.Metadata) {
			return ImportJob{}, fmt.Errorf("item %d metadata: %w: not JSON", i, ErrInvalid)
		}
		c.add(it.State)
	}
	job.State = ImportQueued
	job.Total, job.Done, job.Enrolled, job.Skipped, job.Failed = len(items), c.done, c.enrolled, c.skipped, c.failed
	job.Error = ""
	job.CreatedAt, job.UpdatedAt = now, now
	job.StartedAt, job.FinishedAt = nil, nil
	return job, nil
}

// createdItemState is the state an item given to CreateImportJob is
// written with: pending unless the caller knows its outcome already.
func createdItemState(it ImportItem) ItemState {
	if it.State == "" {
		return ItemPending
	}
	return it.State
}

// importResults validates the outcomes to record and returns them in seq
// order, the first of several with one seq kept: a stable order in which
// concurrent recorders lock rows, so that they wait for each other rather
// than deadlock.
func importResults(items []ImportItem) ([]ImportItem, error) {
	out := slices.Clone(items)
	for _, it := range out {
		switch it.State {
		case ItemEnrolled, ItemSkipped, ItemFailed:
		default:
			return nil, fmt.Errorf("item %d: %w: outcome %q", it.Seq, ErrInvalid, it.State)
		}
	}
	slices.SortStableFunc(out, func(a, b ImportItem) int { return cmp.Compare(a.Seq, b.Seq) })
	return slices.CompactFunc(out, func(a, b ImportItem) bool { return a.Seq == b.Seq }), nil
}

// checkFinalState validates the state FinishImportJob moves a job to.
func checkFinalState(state ImportState) error {
	if !state.Finished() {
		return fmt.Errorf("%w: %q is not a final job state", ErrInvalid, state)
	}
	return nil
}

// finishRefusal explains why a job in state from, with done of total
// items recorded, cannot move to state to, or returns nil if it can.
// Every final state may be reached from queued or running; done only once
// every item has its outcome.
func finishRefusal(from, to ImportState, done, total int) error {
	if from.Finished() {
		return fmt.Errorf("%w: job is %s already", ErrConflict, from)
	}
	if to == ImportDone && done < total {
		return fmt.Errorf("%w: %d of %d items still pending", ErrConflict, total-done, total)
	}
	return nil
}

// checkItemStates validates the states ImportItems filters on.
func checkItemStates(states []ItemState) error {
	for _, st := range states {
		switch st {
		case ItemPending, ItemEnrolled, ItemSkipped, ItemFailed:
		default:
			return fmt.Errorf("%w: item state %q", ErrInvalid, st)
		}
	}
	return nil
}

// distinctStates returns states sorted, each once.
func distinctStates(states []ItemState) []ItemState {
	return slices.Compact(slices.Sorted(slices.Values(states)))
}

// openStatesOnly reports whether a filter on states can be answered from
// the partial index import_item_open, which holds every item not
// enrolled. No filter means every state.
func openStatesOnly(states []ItemState) bool {
	return len(states) > 0 && !slices.Contains(states, ItemEnrolled)
}

// ItemExists is the code of an import item skipped because its subject
// has a face from the same image already (re-running an import changes
// nothing).
const ItemExists = "exists"

// ItemBeingDeleted is the code of an import item that failed because its
// subject's face from the same image is being deleted: importing it again
// once the deletion is finished enrolls it.
const ItemBeingDeleted = "being_deleted"

// ImportOutcome is what became of one photo of an import job, as given to
// EnrollImportBatch: either the face found in it (Face set), to be
// enrolled for the item's subject, or, for a photo without one, its
// outcome (State skipped or failed, Code, Reason).
type ImportOutcome struct {
	Seq int
	// Face is the face to enroll: Descriptor, ModelID, Box, Landmarks,
	// Quality, ImageSHA256. Its subject and collection come from the item
	// and the job; the other fields are set by the store.
	Face   *Face
	State  ItemState
	Code   string
	Reason string
}

// ImportBatch is what EnrollImportBatch wrote.
type ImportBatch struct {
	// Job is the job with its updated counts.
	Job ImportJob
	// Items are the items this call recorded, in seq order, with their
	// subject and face; items recorded before (by a run that was redone)
	// are not among them.
	Items []ImportItem
	// Faces are the faces of Items, new or found; those still pending
	// are for the caller to index, then mark indexed.
	Faces []Face
}

// importOutcomes validates a batch of outcomes and returns them in seq
// order, the first of several with one seq kept (see importResults).
func importOutcomes(outcomes []ImportOutcome) ([]ImportOutcome, error) {
	out := slices.Clone(outcomes)
	for _, o := range out {
		if o.Face != nil {
			if err := checkNewFace(*o.Face); err != nil {
				return nil, fmt.Errorf("item %d: %w", o.Seq, err)
			}
			continue
		}
		switch o.State {
		case ItemSkipped, ItemFailed:
		default:
			return nil, fmt.Errorf("item %d: %w: outcome %q without a face", o.Seq, ErrInvalid, o.State)
		}
	}
	slices.SortStableFunc(out, func(a, b ImportOutcome) int { return cmp.Compare(a.Seq, b.Seq) })
	return slices.CompactFunc(out, func(a, b ImportOutcome) bool { return a.Seq == b.Seq }), nil
}

// checkNewFace validates a face to be inserted, the same for every store.
func checkNewFace(f Face) error {
	if len(f.Descriptor) == 0 {
		return fmt.Errorf("%w: empty descriptor", ErrInvalid)
	}
	// Stored JSON is served as is; invalid JSON would break every
	// response that includes the face.
	if (len(f.Landmarks) > 0 && !json.Valid(f.Landmarks)) || (len(f.Quality) > 0 && !json.Valid(f.Quality)) {
		return fmt.Errorf("%w: landmarks or quality not JSON", ErrInvalid)
	}
	return nil
}

// importedItem sets the outcome of an import item from the insertion of
// its face for subject sub (insertFace's results) and returns the outcome
// of its audit event: OutcomeEnrolled for a new face, ItemExists for one
// the subject had, "" (no event) for a face being deleted, which fails
// the item. Any other error is the batch's.
func importedItem(it ImportItem, sub string, face Face, created bool, err error) (ImportItem, string, error) {
	it.SubjectID, it.FaceID = sub, face.ID
	switch {
	case errors.Is(err, ErrConflict) && face.ID != "":
		it.State, it.Code, it.Reason = ItemFailed, ItemBeingDeleted, err.Error()
		return it, "", nil
	case err != nil:
		return it, "", err
	case created:
		it.State, it.Code, it.Reason = ItemEnrolled, "", ""
		return it, OutcomeEnrolled, nil
	default:
		it.State, it.Code, it.Reason = ItemSkipped, ItemExists, "the subject has a face from this image already"
		return it, ItemExists, nil
	}
}

// importEnrollDetail is the detail of the audit event of a face enrolled
// (or found) by an import job.
func importEnrollDetail(status, jobID string, seq int) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"status": status, "import": jobID, "seq": seq})
	return b
}
