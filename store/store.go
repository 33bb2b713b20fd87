// Package store holds Visage's metadata: collections, subjects, faces
// (with their descriptors: the store is the source of truth from which
// the vector index is rebuilt), API keys and the audit trail. SQLite is
// the embedded default; Postgres (scale-out) implements the same methods.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors callers branch on; implementations wrap them with %w.
var (
	// ErrNotFound means the addressed row does not exist (or is being
	// deleted).
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique constraint would be violated (collection
	// name, subject external id).
	ErrConflict = errors.New("already exists")
	// ErrInvalid means an argument the store cannot act on: a malformed
	// page cursor, metadata that is not JSON, an empty descriptor.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnavailable means the database could not be reached, or dropped
	// the connection: it is down, restarting, failing over or refusing
	// connections for now. The same call may succeed later. A write whose
	// connection broke while it committed may have taken effect; the
	// writes' idempotency (an image enrolled twice is one face) and the
	// reconciler cover that case. Only the Postgres store returns it.
	ErrUnavailable = errors.New("metadata store unavailable")
)

// The audit event kind and outcome of one successfully enrolled face. The
// store reads them back for EnrollmentsPerDay, so the gallery writes one
// such event per enrolled face.
const (
	EventEnroll     = "enroll"
	OutcomeEnrolled = "enrolled"
)

// EventKey is the kind of the audit event of a key created or revoked
// (outcome "created" or "revoked"; detail: the key's id, name, role and
// collection scope).
const EventKey = "key"

// FaceState is a face's position in the enrollment and deletion protocol
// between the store and the vector index.
type FaceState string

// Face states: a face is written pending, becomes indexed once the vector
// index holds it, and is marked deleting before it leaves the index.
const (
	FacePending  FaceState = "pending"
	FaceIndexed  FaceState = "indexed"
	FaceDeleting FaceState = "deleting"
)

// Collection is a gallery: subjects, faces and how it decides "match":
// a fixed distance Threshold, or a TargetFPIR from which the service
// derives one (exactly one of the two is > 0).
type Collection struct {
	Name       string  `json:"name"`
	Threshold  float64 `json:"threshold"`
	TargetFPIR float64 `json:"target_fpir"`
	// Calibration is the service's JSON measurement of the collection
	// (gallery.Calibration), stored as given; nil until measured.
	Calibration json.RawMessage `json:"calibration,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
}

// Subject is a person in a collection.
type Subject struct {
	ID          string          `json:"id"`
	Collection  string          `json:"collection"`
	ExternalID  string          `json:"external_id"`
	DisplayName string          `json:"display_name"`
	Metadata    json.RawMessage `json:"metadata"`
	FaceCount   int             `json:"face_count"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// SubjectPatch changes the non-nil fields of a subject.
type SubjectPatch struct {
	ExternalID  *string
	DisplayName *string
	Metadata    json.RawMessage
}

// SubjectQuery selects a page of subjects.
type SubjectQuery struct {
	Collection string
	// Search matches a case-insensitive substring of the display name or a
	// prefix of the external id; empty matches all.
	Search string
	// After is the cursor returned with the previous page; empty starts.
	After string
	Limit int
}

// Face is one enrolled face.
type Face struct {
	ID string `json:"id"`
	// Key is the face's vector-index key: unique, never reused.
	Key        uint64    `json:"-"`
	SubjectID  string    `json:"subject_id"`
	Collection string    `json:"collection"`
	Descriptor []float32 `json:"-"`
	ModelID    string    `json:"model_id"`
	// Box is x0, y0, x1, y1 in the source image.
	Box [4]int `json:"box"`
	// Landmarks and Quality are the engine's JSON, stored as given.
	Landmarks   json.RawMessage `json:"landmarks,omitempty"`
	Quality     json.RawMessage `json:"quality,omitempty"`
	ImageSHA256 string          `json:"image_sha256"`
	State       FaceState       `json:"state"`
	CreatedAt   time.Time       `json:"created_at"`
}

// FaceRef resolves an index key to the face and subject behind it.
type FaceRef struct {
	Key         uint64
	FaceID      string
	SubjectID   string
	ExternalID  string
	DisplayName string
}

// IndexedVector is what the vector index is rebuilt from.
type IndexedVector struct {
	Key        uint64
	Descriptor []float32
}

// Role is what an API key may do.
type Role string

// Roles, from most to least powerful.
const (
	RoleAdmin    Role = "admin"
	RoleEnroll   Role = "enroll"
	RoleIdentify Role = "identify"
	RoleRead     Role = "read"
)

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleEnroll, RoleIdentify, RoleRead:
		return true
	}
	return false
}

// APIKey is a credential; only the SHA-256 of its secret is kept.
type APIKey struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Hash is SHA-256 of the secret part.
	Hash []byte `json:"-"`
	Role Role   `json:"role"`
	// Collection scopes the key to one collection; empty means all.
	Collection string     `json:"collection,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

// Event is one audit record. It never holds an image.
type Event struct {
	ID         int64           `json:"id"`
	At         time.Time       `json:"at"`
	Kind       string          `json:"kind"`
	KeyID      string          `json:"key_id,omitempty"`
	Collection string          `json:"collection,omitempty"`
	SubjectID  string          `json:"subject_id,omitempty"`
	FaceID     string          `json:"face_id,omitempty"`
	Outcome    string          `json:"outcome"`
	Detail     json.RawMessage `json:"detail,omitempty"`
}

// EventQuery selects audit events, newest first.
type EventQuery struct {
	Kind       string
	KeyID      string
	Collection string
	Since      time.Time // inclusive; zero means unbounded
	Until      time.Time // exclusive; zero means unbounded
	// Before is an event id cursor: only older events (id < Before).
	Before int64
	Limit  int
}

// CollectionStats are the admin figures of one collection.
type CollectionStats struct {
	Collection string `json:"collection"`
	Subjects   int64  `json:"subjects"`
	Faces      int64  `json:"faces"`
	// PendingFaces are faces not (yet) confirmed in the vector index.
	PendingFaces int64 `json:"pending_faces"`
	// DescriptorBytes is the stored descriptor volume.
	DescriptorBytes int64      `json:"descriptor_bytes"`
	LastEnrollAt    *time.Time `json:"last_enroll_at,omitempty"`
}

// SubjectCount is a subject with its number of faces.
type SubjectCount struct {
	SubjectID   string `json:"subject_id"`
	ExternalID  string `json:"external_id"`
	DisplayName string `json:"display_name"`
	Faces       int64  `json:"faces"`
}

// DayCount is a number of enrollments on one UTC day (YYYY-MM-DD).
type DayCount struct {
	Day   string `json:"day"`
	Count int64  `json:"count"`
}

// newKey validates a key to be created and sets what a new key starts
// with, the same for every store: a known role, an id and a hash, the
// creation time (now unless given) at the stores' nanosecond precision,
// and neither use nor revocation.
func newKey(k APIKey, now time.Time) (APIKey, error) {
	if !k.Role.Valid() {
		return APIKey{}, fmt.Errorf("create key: %w: role %q", ErrInvalid, k.Role)
	}
	if k.ID == "" || len(k.Hash) == 0 {
		return APIKey{}, fmt.Errorf("create key: %w: id and hash are required", ErrInvalid)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = now
	}
	k.CreatedAt = fromNanos(toNanos(k.CreatedAt))
	k.LastUsedAt, k.RevokedAt = nil, nil
	return k, nil
}
