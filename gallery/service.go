package gallery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/visage/visage/align"
	"github.com/visage/visage/index"
	"github.com/visage/visage/store"
)

// Store is the metadata the gallery's use cases read and write; the store
// package's SQLite and Postgres types implement it.
type Store interface {
	CreateCollection(ctx context.Context, c store.Collection) (store.Collection, error)
	GetCollection(ctx context.Context, name string) (store.Collection, error)
	ListCollections(ctx context.Context) ([]store.Collection, error)
	UpdateCollectionPolicy(ctx context.Context, name string, threshold, targetFPIR float64) (store.Collection, error)
	SetCollectionCalibration(ctx context.Context, name string, calibration json.RawMessage) error
	MarkCollectionDeleting(ctx context.Context, name string) error
	DeletingCollections(ctx context.Context) ([]string, error)
	DeleteCollection(ctx context.Context, name string) error

	CreateSubject(ctx context.Context, s store.Subject) (store.Subject, error)
	GetSubject(ctx context.Context, collection, id string) (store.Subject, error)
	GetSubjectByExternalID(ctx context.Context, collection, externalID string) (store.Subject, error)
	ListSubjects(ctx context.Context, q store.SubjectQuery) ([]store.Subject, string, error)
	UpdateSubject(ctx context.Context, collection, id string, p store.SubjectPatch) (store.Subject, error)
	DeleteSubject(ctx context.Context, collection, id string) error

	InsertFace(ctx context.Context, f store.Face) (store.Face, bool, error)
	MarkFacesIndexed(ctx context.Context, keys []uint64) error
	GetFace(ctx context.Context, collection, faceID string) (store.Face, error)
	ListFaces(ctx context.Context, collection, subjectID string) ([]store.Face, error)
	FaceRefs(ctx context.Context, collection string, keys []uint64) (map[uint64]store.FaceRef, error)
	MarkFaceDeleting(ctx context.Context, collection, faceID string) (uint64, error)
	DeleteFaces(ctx context.Context, keys []uint64) error
	PendingFaces(ctx context.Context, limit int) ([]store.Face, error)
	DeletingFaces(ctx context.Context, limit int) ([]store.Face, error)
	IndexedKeys(ctx context.Context, collection string) ([]uint64, error)
	Vectors(ctx context.Context, collection string, keys []uint64) ([]store.IndexedVector, error)
	ScanVectors(ctx context.Context, collection string, afterKey uint64, limit int) ([]store.IndexedVector, error)
	FaceStates(ctx context.Context, keys []uint64) (map[uint64]store.FaceState, error)
	ModelCounts(ctx context.Context) (map[string]int, error)

	AppendEvent(ctx context.Context, e store.Event) (store.Event, error)
	ListEvents(ctx context.Context, q store.EventQuery) ([]store.Event, error)
	CollectionStats(ctx context.Context, name string) (store.CollectionStats, error)
	TopSubjects(ctx context.Context, collection string, limit int) ([]store.SubjectCount, error)
	EnrollmentsPerDay(ctx context.Context, collection string, since time.Time) ([]store.DayCount, error)
	IdentificationStats(ctx context.Context, collection string, since time.Time) (store.IdentificationStats, error)
}

// Index is the vector index the gallery searches: one space per
// collection, keyed by the store's face keys.
type Index interface {
	Upsert(ctx context.Context, space string, items []index.Item) error
	Delete(ctx context.Context, space string, keys []uint64) error
	Drop(ctx context.Context, space string) error
	Search(ctx context.Context, space string, q []float32, k int) ([]index.Match, error)
	Keys(ctx context.Context, space string) ([]uint64, error)
	Spaces(ctx context.Context) ([]string, error)
}

// FaceFinder is the engine as the use cases see it.
type FaceFinder interface {
	// Faces finds every face of an image with its probe descriptor.
	Faces(ctx context.Context, data []byte) (*Result, error)
	// Locate finds every face without describing it, and
	// DescribeForEnrollment describes the one enrollment keeps.
	Locate(ctx context.Context, data []byte) (*Result, error)
	DescribeForEnrollment(ctx context.Context, f *Face) (time.Duration, error)
	// SecondLook adds the mirror pass to a probe face (see
	// Pipeline.SecondLook).
	SecondLook(ctx context.Context, f *Face) (bool, error)
	// ModelID identifies how enrolled descriptors are made, and Space
	// what they may be compared with (embed.Model.Space).
	ModelID() string
	Space() string
}

// ServiceConfig holds the matching and enrollment policy.
type ServiceConfig struct {
	// DefaultPolicy is a new collection's when none is given.
	DefaultPolicy Policy
	// VerifyTargetFMR is verification's false-match rate when a request
	// gives neither a threshold nor a target.
	VerifyTargetFMR float64
	// Mode is the default match mode of identification.
	Mode MatchMode
	// TieRatio: faces whose box area is within this fraction of the
	// largest are "equally large", and enrollment refuses the image.
	TieRatio float64
	// Gates are the quality gates enrollment applies.
	Gates align.Gates
	// MaxTopK caps the candidates per face a request may ask for.
	MaxTopK int
	// Tuning, when set, replaces DefaultTuning (evaluation of levers:
	// the prior's thresholds hold for the default only).
	Tuning *Tuning
}

// DefaultServiceConfig is the policy measured in docs/benchmarks.md
// ("Matching", "Open-set identification").
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{DefaultPolicy: Policy{TargetFPIR: DefaultTargetFPIR}, VerifyTargetFMR: DefaultTargetFMR,
		Mode: MatchFaces, TieRatio: 0.1, Gates: align.EnrollGates(), MaxTopK: 50}
}

// Service carries out enrollment, identification, verification, deletion
// and the admin queries. Safe for concurrent use.
type Service struct {
	engine FaceFinder
	store  Store
	index  Index
	cfg    ServiceConfig
	rec    *Reconciler
	cal    *calibrator
	log    *slog.Logger
}

// NewService wires the use cases to their engine, store and index.
func NewService(engine FaceFinder, st Store, idx Index, cfg ServiceConfig, log *slog.Logger) *Service {
	if cfg.MaxTopK <= 0 {
		cfg.MaxTopK = 50
	}
	if cfg.Mode == "" {
		cfg.Mode = MatchFaces
	}
	if cfg.DefaultPolicy == (Policy{}) {
		cfg.DefaultPolicy = Policy{TargetFPIR: DefaultTargetFPIR}
	}
	if cfg.VerifyTargetFMR == 0 {
		cfg.VerifyTargetFMR = DefaultTargetFMR
	}
	s := &Service{engine: engine, store: st, index: idx, cfg: cfg, log: log,
		rec: NewReconciler(st, idx, engine.Space(), log)}
	s.cal = newCalibrator(s)
	return s
}

// Reconciler returns the reconciler of the service's store and index.
func (s *Service) Reconciler() *Reconciler { return s.rec }

// Reconcile makes the index agree with the store; see Reconciler.
func (s *Service) Reconcile(ctx context.Context) (ReconcileReport, error) {
	return s.rec.Reconcile(ctx)
}

// Config returns the service's policy.
func (s *Service) Config() ServiceConfig { return s.cfg }

// Store returns the metadata store (for queries the API serves as is).
func (s *Service) Store() Store { return s.store }

// space is the index space of a collection's faces.
func space(collection string) string { return "faces/" + collection }

// InvalidError is a request the use cases refuse as malformed.
type InvalidError struct {
	Field, Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

// ErrTooManyFaces means an image that must hold one face holds several
// equally large ones.
var ErrTooManyFaces = errors.New("several equally large faces")

// QualityError lists the quality gates a face failed.
type QualityError struct {
	Reasons []string
}

func (e *QualityError) Error() string {
	return fmt.Sprintf("face rejected by quality gates: %v", e.Reasons)
}

var collectionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func checkThreshold(t float64) error {
	if !(t > 0 && t <= 4) {
		return &InvalidError{Field: "threshold", Reason: "must be in (0, 4]"}
	}
	return nil
}

// CreateCollection creates a collection deciding by policy p; the zero
// policy takes the default (a target FPIR).
func (s *Service) CreateCollection(ctx context.Context, name string, p Policy) (store.Collection, error) {
	if !collectionName.MatchString(name) {
		return store.Collection{}, &InvalidError{Field: "name", Reason: "1–64 letters, digits, '_', '-' or '.', starting with a letter or digit"}
	}
	if p == (Policy{}) {
		p = s.cfg.DefaultPolicy
	}
	if err := checkPolicy(p); err != nil {
		return store.Collection{}, err
	}
	return s.store.CreateCollection(ctx, store.Collection{Name: name, Threshold: p.Threshold, TargetFPIR: p.TargetFPIR})
}

// UpdateCollection changes how a collection decides "match".
func (s *Service) UpdateCollection(ctx context.Context, name string, p Policy) (store.Collection, error) {
	if err := checkPolicy(p); err != nil {
		return store.Collection{}, err
	}
	return s.store.UpdateCollectionPolicy(ctx, name, p.Threshold, p.TargetFPIR)
}

// PolicyOf is the policy a stored collection decides by.
func PolicyOf(c store.Collection) Policy {
	return Policy{Threshold: c.Threshold, TargetFPIR: c.TargetFPIR}
}

// DeleteCollection removes a collection, its subjects, faces and vectors.
// Marking it deleting is the commit point: the collection disappears at
// once, its vectors are dropped before the call returns, and its rows (a
// million faces take about two minutes) are deleted in the background.
// Should any of that fail (a crash, an unreachable vector store), the
// reconciler finishes it from the mark. Its name is free again when done.
func (s *Service) DeleteCollection(ctx context.Context, actor, name string) error {
	if err := s.store.MarkCollectionDeleting(ctx, name); err != nil {
		s.outcomeUnknown(err)
		return fmt.Errorf("delete collection: %w", err)
	}
	ctx = context.WithoutCancel(ctx)
	s.audit(ctx, store.Event{Kind: "delete", KeyID: actor, Collection: name, Outcome: "collection_deleted"})
	if err := s.index.Drop(ctx, space(name)); err != nil {
		s.rec.deferWork()
		s.log.Warn("drop the vectors of a deleted collection; the reconciler will", "collection", name, "err", err)
		return nil
	}
	go func() {
		if err := s.rec.finishCollectionDelete(ctx, name); err != nil {
			s.rec.deferWork()
			s.log.Error("delete collection; the reconciler will finish it", "collection", name, "err", err)
		}
	}()
	return nil
}

// DeleteSubject removes a subject and its faces and vectors. The rows go
// first, in one transaction (a subject has no deleting state, so the
// deletion must be all or nothing in the store); the vectors then. A crash
// or an unreachable vector store between the two leaves vectors of no
// face, which identification ignores and the reconciler removes.
func (s *Service) DeleteSubject(ctx context.Context, actor, collection, id string) error {
	faces, err := s.store.ListFaces(ctx, collection, id)
	if err != nil {
		return fmt.Errorf("delete subject: %w", err)
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.store.DeleteSubject(ctx, collection, id); err != nil {
		s.outcomeUnknown(err)
		return fmt.Errorf("delete subject: %w", err)
	}
	keys := make([]uint64, len(faces))
	for i, f := range faces {
		keys[i] = f.Key
	}
	// Faces enrolled since ListFaces went with the subject; their
	// enrollments remove their own vectors (settleIndexed).
	if err := s.index.Delete(ctx, space(collection), keys); err != nil {
		s.rec.deferWork()
		s.log.Warn("delete the vectors of a deleted subject; the reconciler will", "collection", collection, "faces", len(keys), "err", err)
	}
	s.audit(ctx, store.Event{Kind: "delete", KeyID: actor, Collection: collection, SubjectID: id, Outcome: "subject_deleted",
		Detail: jsonDetail(map[string]any{"faces": len(keys)})})
	return nil
}

// DeleteFace removes one face and its vector. Marking the face deleting
// is the commit point: from then on it is gone from every answer, and
// should removing its vector or row fail (a crash, an unreachable vector
// store), the reconciler finishes the deletion from that mark.
func (s *Service) DeleteFace(ctx context.Context, actor, collection, faceID string) error {
	f, err := s.store.GetFace(ctx, collection, faceID)
	if err != nil {
		return fmt.Errorf("delete face: %w", err)
	}
	key, err := s.store.MarkFaceDeleting(ctx, collection, faceID)
	if err != nil {
		s.outcomeUnknown(err)
		return fmt.Errorf("delete face: %w", err)
	}
	ctx = context.WithoutCancel(ctx)
	if err := s.index.Delete(ctx, space(collection), []uint64{key}); err != nil {
		s.rec.deferWork()
		s.log.Warn("delete the vector of a deleted face; the reconciler will", "face", faceID, "err", err)
	} else if err := s.store.DeleteFaces(ctx, []uint64{key}); err != nil {
		s.rec.deferWork()
		s.log.Warn("delete the row of a deleted face; the reconciler will", "face", faceID, "err", err)
	}
	s.audit(ctx, store.Event{Kind: "delete", KeyID: actor, Collection: collection, SubjectID: f.SubjectID, FaceID: faceID, Outcome: "face_deleted"})
	return nil
}

// audit appends an event; a failure is logged, not returned, because the
// operation it records has already happened.
func (s *Service) audit(ctx context.Context, e store.Event) {
	if _, err := s.store.AppendEvent(context.WithoutCancel(ctx), e); err != nil {
		s.log.ErrorContext(ctx, "append audit event", "kind", e.Kind, "err", err)
	}
}

// CollectionView is a collection with how it decides now.
type CollectionView struct {
	store.Collection
	// Operating is its policy's operating point for its current size.
	Operating Operating
	// Calibration is its own measurement, nil until measured.
	Calibration *Calibration
}

// Collection returns a collection and its operating point; a missing or
// stale calibration is measured in the background.
func (s *Service) Collection(ctx context.Context, name string) (CollectionView, error) {
	c, err := s.store.GetCollection(ctx, name)
	if err != nil {
		return CollectionView{}, fmt.Errorf("get collection: %w", err)
	}
	return s.viewOf(ctx, c)
}

// Collections returns every active collection with its operating point
// as of its last calibration (one query for the list, however many
// collections; Collection gives the current one).
func (s *Service) Collections(ctx context.Context) ([]CollectionView, error) {
	cs, err := s.store.ListCollections(ctx)
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	out := make([]CollectionView, 0, len(cs))
	for _, c := range cs {
		cal := calibrationOf(c)
		n := 0
		if cal != nil {
			n = cal.Subjects
		}
		op := Operate(PolicyOf(c), n, cal)
		if s.cfg.Tuning != nil {
			op = op.Tuned(*s.cfg.Tuning)
		}
		out = append(out, CollectionView{Collection: c, Operating: op, Calibration: cal})
	}
	return out, nil
}

func (s *Service) viewOf(ctx context.Context, c store.Collection) (CollectionView, error) {
	op, err := s.operating(ctx, c, PolicyOf(c))
	if err != nil {
		return CollectionView{}, err
	}
	return CollectionView{Collection: c, Operating: op, Calibration: calibrationOf(c)}, nil
}
