package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/visage/visage/internal/pgtest"
	"github.com/visage/visage/migrations"
)

// The conformance suite: the behaviour both stores share, run against
// each (TestConformance/sqlite/..., TestConformance/postgres/...). Tests
// of one store's own machinery (SQLite's pragmas and file handling,
// Postgres's migration lock and query plans) are in sqlite_test.go and
// postgres_test.go.

// The Postgres tests get their databases from pgtest, whose private
// cluster Main stops when the tests end.
func TestMain(m *testing.M) { pgtest.Main(m) }

// storeUnderTest is every exported method of the stores: the suite runs
// against it, and the assertions below keep the two stores' method sets
// and signatures in step.
type storeUnderTest interface {
	Close() error

	CreateCollection(ctx context.Context, c Collection) (Collection, error)
	GetCollection(ctx context.Context, name string) (Collection, error)
	ListCollections(ctx context.Context) ([]Collection, error)
	UpdateCollectionPolicy(ctx context.Context, name string, threshold, targetFPIR float64) (Collection, error)
	SetCollectionCalibration(ctx context.Context, name string, calibration json.RawMessage) error
	MarkCollectionDeleting(ctx context.Context, name string) error
	DeletingCollections(ctx context.Context) ([]string, error)
	DeleteCollection(ctx context.Context, name string) error

	CreateSubject(ctx context.Context, sub Subject) (Subject, error)
	GetSubject(ctx context.Context, collection, id string) (Subject, error)
	GetSubjectByExternalID(ctx context.Context, collection, externalID string) (Subject, error)
	ListSubjects(ctx context.Context, q SubjectQuery) ([]Subject, string, error)
	UpdateSubject(ctx context.Context, collection, id string, p SubjectPatch) (Subject, error)
	MarkSubjectDeleting(ctx context.Context, collection, id string) ([]uint64, error)
	DeleteSubject(ctx context.Context, collection, id string) error

	InsertFace(ctx context.Context, f Face) (Face, bool, error)
	MarkFacesIndexed(ctx context.Context, keys []uint64) error
	GetFace(ctx context.Context, collection, faceID string) (Face, error)
	ListFaces(ctx context.Context, collection, subjectID string) ([]Face, error)
	FaceRefs(ctx context.Context, collection string, keys []uint64) (map[uint64]FaceRef, error)
	MarkFaceDeleting(ctx context.Context, collection, faceID string) (uint64, error)
	DeleteFaces(ctx context.Context, keys []uint64) error
	PendingFaces(ctx context.Context, limit int) ([]Face, error)
	DeletingFaces(ctx context.Context, limit int) ([]Face, error)
	IndexedKeys(ctx context.Context, collection string) ([]uint64, error)
	Vectors(ctx context.Context, collection string, keys []uint64) ([]IndexedVector, error)
	ScanVectors(ctx context.Context, collection string, afterKey uint64, limit int) ([]IndexedVector, error)
	FaceStates(ctx context.Context, keys []uint64) (map[uint64]FaceState, error)
	ModelCounts(ctx context.Context) (map[string]int, error)
	ImportSubjects(ctx context.Context, collection string, items []SubjectFaces) ([]Face, error)

	CreateKey(ctx context.Context, k APIKey) (APIKey, error)
	GetKey(ctx context.Context, id string) (APIKey, error)
	ListKeys(ctx context.Context) ([]APIKey, error)
	RevokeKey(ctx context.Context, id string) error
	TouchKey(ctx context.Context, id string, at time.Time) error
	CountKeys(ctx context.Context) (int, error)

	CreateSession(ctx context.Context, sess Session) (Session, error)
	GetSession(ctx context.Context, idHash []byte) (SessionKey, error)
	DeleteSession(ctx context.Context, idHash []byte) error

	AppendEvent(ctx context.Context, e Event) (Event, error)
	ListEvents(ctx context.Context, q EventQuery) ([]Event, error)
	CollectionStats(ctx context.Context, name string) (CollectionStats, error)
	TopSubjects(ctx context.Context, collection string, limit int) ([]SubjectCount, error)
	EnrollmentsPerDay(ctx context.Context, collection string, since time.Time) ([]DayCount, error)
	IdentificationStats(ctx context.Context, collection string, since time.Time) (IdentificationStats, error)

	CreateImportJob(ctx context.Context, job ImportJob, items []ImportItem) (ImportJob, error)
	GetImportJob(ctx context.Context, id string) (ImportJob, error)
	ListImportJobs(ctx context.Context, collection string, limit int) ([]ImportJob, error)
	UnfinishedImportJobs(ctx context.Context) ([]ImportJob, error)
	StartImportJob(ctx context.Context, id string) (ImportJob, error)
	FinishImportJob(ctx context.Context, id string, state ImportState, errText string) (ImportJob, error)
	PendingImportItems(ctx context.Context, jobID string, afterSeq, limit int) ([]ImportItem, error)
	RecordImportItems(ctx context.Context, jobID string, items []ImportItem) (ImportJob, error)
	EnrollImportBatch(ctx context.Context, jobID string, outcomes []ImportOutcome) (ImportBatch, error)
	ImportItems(ctx context.Context, jobID string, states []ItemState, afterSeq, limit int) ([]ImportItem, error)
}

var (
	_ storeUnderTest = (*SQLite)(nil)
	_ storeUnderTest = (*Postgres)(nil)
)

// backend is one kind of store the suite runs against.
type backend struct {
	name string
	// newDB returns the location of a fresh, empty database: a file path
	// or a URL. It is removed when the test ends.
	newDB func(t *testing.T) string
	// open opens a store on the database at a location.
	open func(ctx context.Context, db string) (storeUnderTest, error)
	// migrations are the store's embedded migration files.
	migrations fs.FS
}

func backends(t *testing.T) []backend {
	return []backend{
		{
			name:  "sqlite",
			newDB: func(t *testing.T) string { return filepath.Join(t.TempDir(), "visage.db") },
			open: func(ctx context.Context, db string) (storeUnderTest, error) {
				s, err := OpenSQLite(ctx, db)
				if err != nil {
					return nil, err
				}
				return s, nil
			},
			migrations: mustSub(t, migrations.SQLite, "sqlite"),
		},
		{
			name:  "postgres",
			newDB: func(t *testing.T) string { return pgtest.New(t) },
			open: func(ctx context.Context, db string) (storeUnderTest, error) {
				s, err := OpenPostgres(ctx, db)
				if err != nil {
					return nil, err
				}
				return s, nil
			},
			migrations: mustSub(t, migrations.Postgres, "postgres"),
		},
	}
}

// openTest opens a store on a fresh database and closes it when the test
// ends.
func (b backend) openTest(t *testing.T) storeUnderTest {
	t.Helper()
	return b.openAt(t, b.newDB(t))
}

// openAt opens a store on the database at db and closes it when the test
// ends.
func (b backend) openAt(t *testing.T, db string) storeUnderTest {
	t.Helper()
	s, err := b.open(context.Background(), db)
	if err != nil {
		t.Fatalf("open %s store: %v", b.name, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { runConformance(t, b) })
	}
}

// runConformance runs every test of the suite against the stores b opens.
func runConformance(t *testing.T, b backend) {
	tests := []struct {
		name string
		run  func(t *testing.T, b backend)
	}{
		{"ReopenKeepsDataAndMigrations", testReopen},
		{"RefusesNewerSchema", testRefusesNewerSchema},
		{"ConcurrentOpenMigratesOnce", testConcurrentOpenMigratesOnce},
		{"Collections", testCollections},
		{"ByteOrder", testByteOrder},
		{"DeleteCollection", testDeleteCollection},
		{"Subjects", testSubjects},
		{"ListSubjects", testListSubjects},
		{"InsertFace", testInsertFace},
		{"ConcurrentEnrollmentOfOneImage", testConcurrentEnrollmentOfOneImage},
		{"FaceLifecycle", testFaceLifecycle},
		{"VectorsAndScanAtScale", testVectorsAndScanAtScale},
		{"KeysNeverReused", testKeysNeverReused},
		{"SubjectDeletion", testSubjectDeletion},
		{"ImportSubjects", testImportSubjects},
		{"APIKeys", testAPIKeys},
		{"Sessions", testSessions},
		{"Events", testEvents},
		{"CollectionStatsAndTopSubjects", testCollectionStatsAndTopSubjects},
		{"CollectionCounts", testCollectionCounts},
		{"EnrollmentsPerDay", testEnrollmentsPerDay},
		{"IdentificationStats", testIdentificationStats},
		{"ConcurrentWritersAndReaders", testConcurrentWritersAndReaders},
		{"TwoStoresOneDatabase", testTwoStoresOneDatabase},
		{"CancelledContext", testCancelledContext},
		{"UpgradeFromVersion1", testUpgradeFromVersion1},
		{"ImportJobCreate", testImportJobCreate},
		{"ImportJobTransitions", testImportJobTransitions},
		{"ImportJobLists", testImportJobLists},
		{"PendingImportItems", testPendingImportItems},
		{"RecordImportItems", testRecordImportItems},
		{"ConcurrentRecordImportItems", testConcurrentRecordImportItems},
		{"EnrollImportBatch", testEnrollImportBatch},
		{"ConcurrentEnrollImportBatch", testConcurrentEnrollImportBatch},
		{"ImportItemsByState", testImportItemsByState},
		{"ImportJobsCascade", testImportJobsCascade},
		{"ImportJob100k", testImportJob100k},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, b) })
	}
}

// setClock makes s read the time from now.
func setClock(t *testing.T, s storeUnderTest, now func() time.Time) {
	t.Helper()
	switch s := s.(type) {
	case *SQLite:
		s.now = now
	case *Postgres:
		s.now = now
	default:
		t.Fatalf("setClock: unknown store %T", s)
	}
}

// steppingClock makes s's clock start at start and advance by step at
// each reading. Not for concurrent tests.
func steppingClock(t *testing.T, s storeUnderTest, start time.Time, step time.Duration) {
	t.Helper()
	next := start
	setClock(t, s, func() time.Time {
		now := next
		next = next.Add(step)
		return now
	})
}

// setDeleteBatch sets the number of rows DeleteCollection removes per
// statement.
func setDeleteBatch(t *testing.T, s storeUnderTest, n int) {
	t.Helper()
	switch s := s.(type) {
	case *SQLite:
		s.deleteBatch = n
	case *Postgres:
		s.deleteBatch = n
	default:
		t.Fatalf("setDeleteBatch: unknown store %T", s)
	}
}

// setKeysChunk sets the number of keys SQLite's IndexedKeys reads per
// statement; Postgres reads them in one.
func setKeysChunk(s storeUnderTest, n int) {
	if s, ok := s.(*SQLite); ok {
		s.keysChunk = n
	}
}

// rawColumn runs query, which selects one column, directly on s's
// database, bypassing the store and its filters. Placeholders are written
// "?", for both stores.
func rawColumn[T any](t *testing.T, s storeUnderTest, query string, args ...any) []T {
	t.Helper()
	var out []T
	switch s := s.(type) {
	case *SQLite:
		rows, err := s.read.Query(query, args...)
		noErr(t, "raw query", err)
		defer func() { _ = rows.Close() }()
		for rows.Next() {
			var v T
			noErr(t, "raw scan", rows.Scan(&v))
			out = append(out, v)
		}
		noErr(t, "raw rows", rows.Err())
	case *Postgres:
		rows, err := s.pool.Query(context.Background(), dollarPlaceholders(query), args...)
		noErr(t, "raw query", err)
		out, err = pgx.CollectRows(rows, pgx.RowTo[T])
		noErr(t, "raw rows", err)
	default:
		t.Fatalf("rawColumn: unknown store %T", s)
	}
	return out
}

// rawExec runs a write statement directly on s's database; placeholders
// as for rawColumn.
func rawExec(t *testing.T, s storeUnderTest, query string, args ...any) {
	t.Helper()
	var err error
	switch s := s.(type) {
	case *SQLite:
		_, err = s.write.Exec(query, args...)
	case *Postgres:
		_, err = s.pool.Exec(context.Background(), dollarPlaceholders(query), args...)
	default:
		t.Fatalf("rawExec: unknown store %T", s)
	}
	noErr(t, "raw exec", err)
}

// dollarPlaceholders numbers the "?" placeholders of a test query the way
// PostgreSQL wants them.
func dollarPlaceholders(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// fillFaces adds nSubjects subjects with perSubject faces each to
// collection (which must exist), the fast way each store allows, and
// returns the face keys. States cycle through states, one face after the
// other (default: all indexed).
func fillFaces(t *testing.T, s storeUnderTest, collection string, nSubjects, perSubject int, states ...FaceState) []uint64 {
	t.Helper()
	switch s := s.(type) {
	case *SQLite:
		return bulkFaces(t, s, collection, nSubjects, perSubject, states...)
	case *Postgres:
		return pgFillFaces(t, s, collection, nSubjects, perSubject, states...)
	}
	t.Fatalf("fillFaces: unknown store %T", s)
	return nil
}

// pgFillFaces is fillFaces for Postgres: one ImportSubjects (COPY), then
// one update per state.
func pgFillFaces(t *testing.T, s *Postgres, collection string, nSubjects, perSubject int, states ...FaceState) []uint64 {
	t.Helper()
	if len(states) == 0 {
		states = []FaceState{FaceIndexed}
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(nSubjects), uint64(perSubject)))
	items := make([]SubjectFaces, nSubjects)
	for i := range items {
		items[i].Subject = Subject{ExternalID: fmt.Sprintf("ext-%d", i), DisplayName: fmt.Sprintf("Person %d", i)}
		for j := range perSubject {
			d := make([]float32, 128)
			for k := range d {
				d[k] = rng.Float32()
			}
			items[i].Faces = append(items[i].Faces, Face{Descriptor: d, ModelID: "bench", Box: [4]int{0, 0, 100, 100},
				ImageSHA256: fmt.Sprintf("sha-%d-%d", i, j)})
		}
	}
	faces, err := s.ImportSubjects(ctx, collection, items)
	noErr(t, "ImportSubjects", err)
	byState := map[FaceState][]int64{}
	for n, f := range faces {
		st := states[n%len(states)]
		byState[st] = append(byState[st], int64(f.Key))
	}
	for st, keys := range byState {
		_, err := s.pool.Exec(ctx, `UPDATE face SET state = $1 WHERE key = ANY($2)`, string(st), keys)
		noErr(t, "set states", err)
	}
	return faceKeys(faces)
}

func mustCollection(t *testing.T, s storeUnderTest, name string) Collection {
	t.Helper()
	c, err := s.CreateCollection(context.Background(), Collection{Name: name, Threshold: 0.6})
	if err != nil {
		t.Fatalf("CreateCollection(%q): %v", name, err)
	}
	return c
}

func mustSubject(t *testing.T, s storeUnderTest, collection, externalID, name string) Subject {
	t.Helper()
	sub, err := s.CreateSubject(context.Background(), Subject{Collection: collection, ExternalID: externalID, DisplayName: name})
	if err != nil {
		t.Fatalf("CreateSubject(%q): %v", externalID, err)
	}
	return sub
}

// descriptor is a 128-D descriptor that differs with seed.
func descriptor(seed int) []float32 {
	d := make([]float32, 128)
	for i := range d {
		d[i] = float32(seed) + float32(i)/256
	}
	return d
}

// mustFace enrolls a new face of sub from the image with hash sha.
func mustFace(t *testing.T, s storeUnderTest, sub Subject, sha string) Face {
	t.Helper()
	f, inserted, err := s.InsertFace(context.Background(), Face{
		SubjectID: sub.ID, Collection: sub.Collection, Descriptor: descriptor(len(sha)),
		ModelID: "test", Box: [4]int{1, 2, 3, 4}, ImageSHA256: sha,
	})
	if err != nil || !inserted {
		t.Fatalf("InsertFace(%s): inserted %v, %v", sha, inserted, err)
	}
	return f
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// countRows counts rows of table matching where (with args), bypassing
// the store's own filters.
func countRows(t *testing.T, s storeUnderTest, table, where string, args ...any) int {
	t.Helper()
	return int(rawColumn[int64](t, s, `SELECT count(*) FROM `+table+` WHERE `+where, args...)[0])
}

// appliedMigrations lists schema_migrations as "version@applied_at".
func appliedMigrations(t *testing.T, s storeUnderTest) []string {
	t.Helper()
	return rawColumn[string](t, s, `SELECT version || '@' || applied_at FROM schema_migrations ORDER BY version`)
}

func mustSub(t *testing.T, fsys fs.FS, dir string) fs.FS {
	t.Helper()
	sub, err := fs.Sub(fsys, dir)
	noErr(t, "fs.Sub", err)
	return sub
}

// subjectsEqual compares subjects, their metadata as text.
func subjectsEqual(a, b Subject) bool {
	return a.ID == b.ID && a.Collection == b.Collection && a.ExternalID == b.ExternalID &&
		a.DisplayName == b.DisplayName && string(a.Metadata) == string(b.Metadata) &&
		a.FaceCount == b.FaceCount && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

// facesEqual compares faces, JSON as text and descriptors by value.
func facesEqual(a, b Face) bool {
	return a.ID == b.ID && a.Key == b.Key && a.SubjectID == b.SubjectID && a.Collection == b.Collection &&
		slices.Equal(a.Descriptor, b.Descriptor) && a.ModelID == b.ModelID && a.Box == b.Box &&
		string(a.Landmarks) == string(b.Landmarks) && string(a.Quality) == string(b.Quality) &&
		a.ImageSHA256 == b.ImageSHA256 && a.State == b.State && a.CreatedAt.Equal(b.CreatedAt)
}

func faceKeys(faces []Face) []uint64 {
	keys := make([]uint64, len(faces))
	for i, f := range faces {
		keys[i] = f.Key
	}
	return keys
}

func faceIDByKey(t *testing.T, s storeUnderTest, key uint64) string {
	t.Helper()
	ids := rawColumn[string](t, s, `SELECT id FROM face WHERE key = ?`, int64(key))
	if len(ids) != 1 {
		t.Fatalf("%d faces with key %d", len(ids), key)
	}
	return ids[0]
}

func mustIndexedKeys(t *testing.T, s storeUnderTest, collection string) []uint64 {
	t.Helper()
	keys, err := s.IndexedKeys(context.Background(), collection)
	noErr(t, "IndexedKeys", err)
	return keys
}

// testConcurrentOpenMigratesOnce opens a new database from several
// goroutines at once, as replicas starting together would: all succeed,
// on one schema, migrated once.
func testConcurrentOpenMigratesOnce(t *testing.T, b backend) {
	ms, err := readMigrations(b.migrations)
	noErr(t, "readMigrations", err)
	// A few rounds, each on a new database, to give the race a chance.
	for round := range 3 {
		db := b.newDB(t)
		const openers = 4
		stores := make([]storeUnderTest, openers)
		errs := make([]error, openers)
		var wg sync.WaitGroup
		for i := range openers {
			wg.Go(func() { stores[i], errs[i] = b.open(context.Background(), db) })
		}
		wg.Wait()
		for _, s := range stores {
			if s != nil {
				t.Cleanup(func() { _ = s.Close() })
			}
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, opener %d: %v", round, i, err)
			}
		}
		if got := appliedMigrations(t, stores[0]); len(got) != len(ms) {
			t.Fatalf("schema_migrations holds %v, want %d versions", got, len(ms))
		}
		// Every store works on the one schema.
		for i, s := range stores {
			mustCollection(t, s, fmt.Sprint("c", i))
		}
	}
}

func testCollections(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	steppingClock(t, s, t0, time.Second)

	cb, err := s.CreateCollection(ctx, Collection{Name: "b", Threshold: 0.5})
	noErr(t, "create b", err)
	if !cb.CreatedAt.Equal(t0) || cb.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt %v, want %v UTC", cb.CreatedAt, t0)
	}
	mustCollection(t, s, "a")
	mustCollection(t, s, "c")

	_, err = s.CreateCollection(ctx, Collection{Name: "b", Threshold: 0.1})
	wantErr(t, "create duplicate", err, ErrConflict)

	got, err := s.GetCollection(ctx, "b")
	noErr(t, "get", err)
	if !reflect.DeepEqual(got, cb) {
		t.Errorf("GetCollection = %+v, want %+v", got, cb)
	}
	tc, err := s.CreateCollection(ctx, Collection{Name: "t", TargetFPIR: 0.01})
	noErr(t, "create with a target", err)
	if got, err := s.GetCollection(ctx, "t"); err != nil || !reflect.DeepEqual(got, tc) || got.TargetFPIR != 0.01 || got.Threshold != 0 {
		t.Errorf("GetCollection(t) = %+v, %v; want %+v", got, err, tc)
	}
	_, err = s.GetCollection(ctx, "nope")
	wantErr(t, "get absent", err, ErrNotFound)

	up, err := s.UpdateCollectionPolicy(ctx, "b", 0.42, 0)
	noErr(t, "update threshold", err)
	if up.Threshold != 0.42 || up.TargetFPIR != 0 || !up.CreatedAt.Equal(cb.CreatedAt) {
		t.Errorf("UpdateCollectionPolicy(0.42, 0) = %+v", up)
	}
	up, err = s.UpdateCollectionPolicy(ctx, "b", 0, 0.01)
	noErr(t, "update target", err)
	if up.Threshold != 0 || up.TargetFPIR != 0.01 {
		t.Errorf("UpdateCollectionPolicy(0, 0.01) = %+v", up)
	}
	_, err = s.UpdateCollectionPolicy(ctx, "nope", 1, 0)
	wantErr(t, "update absent", err, ErrNotFound)

	// The calibration is stored as given and read back with the
	// collection, by itself and in lists; a policy change keeps it.
	if got, err := s.GetCollection(ctx, "b"); err != nil || got.Calibration != nil {
		t.Errorf("calibration before any: %s, %v", got.Calibration, err)
	}
	cal := json.RawMessage(`{"subjects":12,"median":0.2345}`)
	noErr(t, "set calibration", s.SetCollectionCalibration(ctx, "b", cal))
	wantErr(t, "set calibration of absent", s.SetCollectionCalibration(ctx, "nope", cal), ErrNotFound)
	wantErr(t, "set calibration not JSON", s.SetCollectionCalibration(ctx, "b", json.RawMessage(`{`)), ErrInvalid)
	up, err = s.UpdateCollectionPolicy(ctx, "b", 0, 0.02)
	noErr(t, "update target again", err)
	if string(up.Calibration) != string(cal) || up.TargetFPIR != 0.02 {
		t.Errorf("after a policy change: %+v", up)
	}
	all, err := s.ListCollections(ctx)
	noErr(t, "list with calibration", err)
	for _, c := range all {
		if c.Name == "b" && string(c.Calibration) != string(cal) {
			t.Errorf("listed calibration %s, want %s", c.Calibration, cal)
		}
	}

	noErr(t, "mark deleting", s.MarkCollectionDeleting(ctx, "b"))
	noErr(t, "mark deleting again", s.MarkCollectionDeleting(ctx, "b"))
	wantErr(t, "mark absent deleting", s.MarkCollectionDeleting(ctx, "nope"), ErrNotFound)

	list, err := s.ListCollections(ctx)
	noErr(t, "list", err)
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
	}
	if want := []string{"a", "c", "t"}; !slices.Equal(names, want) {
		t.Errorf("ListCollections = %v, want %v", names, want)
	}
	deleting, err := s.DeletingCollections(ctx)
	noErr(t, "deleting", err)
	if want := []string{"b"}; !slices.Equal(deleting, want) {
		t.Errorf("DeletingCollections = %v, want %v", deleting, want)
	}

	// A collection being deleted is gone for every use but its name.
	_, err = s.GetCollection(ctx, "b")
	wantErr(t, "get deleting", err, ErrNotFound)
	_, err = s.UpdateCollectionPolicy(ctx, "b", 1, 0)
	wantErr(t, "update deleting", err, ErrNotFound)
	wantErr(t, "calibrate deleting", s.SetCollectionCalibration(ctx, "b", json.RawMessage(`{}`)), ErrNotFound)
	_, err = s.CreateCollection(ctx, Collection{Name: "b"})
	wantErr(t, "create over deleting", err, ErrConflict)
	_, err = s.CreateSubject(ctx, Subject{Collection: "b"})
	wantErr(t, "create subject in deleting", err, ErrNotFound)
	_, _, err = s.ListSubjects(ctx, SubjectQuery{Collection: "b"})
	wantErr(t, "list subjects of deleting", err, ErrNotFound)
	_, err = s.CollectionStats(ctx, "b")
	wantErr(t, "stats of deleting", err, ErrNotFound)
}

func testDeleteCollection(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	setDeleteBatch(t, s, 3) // several batches of faces and of subjects
	mustCollection(t, s, "doomed")
	mustCollection(t, s, "kept")
	for i := range 4 {
		sub := mustSubject(t, s, "doomed", fmt.Sprint("d", i), "")
		mustFace(t, s, sub, "x")
		mustFace(t, s, sub, "y")
	}
	keptSub := mustSubject(t, s, "kept", "k", "")
	keptFace := mustFace(t, s, keptSub, "x")

	noErr(t, "mark deleting", s.MarkCollectionDeleting(ctx, "doomed"))
	noErr(t, "delete", s.DeleteCollection(ctx, "doomed"))

	for _, table := range []string{"collection", "subject", "face"} {
		col := "collection"
		if table == "collection" {
			col = "name"
		}
		if n := countRows(t, s, table, col+" = ?", "doomed"); n != 0 {
			t.Errorf("%d %s rows left", n, table)
		}
	}
	if _, err := s.GetFace(ctx, "kept", keptFace.ID); err != nil {
		t.Errorf("face of another collection: %v", err)
	}
	wantErr(t, "delete again", s.DeleteCollection(ctx, "doomed"), ErrNotFound)
	// The name is free again.
	mustCollection(t, s, "doomed")
}

func testSubjects(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	steppingClock(t, s, t0, time.Millisecond)
	mustCollection(t, s, "c")
	mustCollection(t, s, "other")
	mustCollection(t, s, "gone")
	noErr(t, "mark deleting", s.MarkCollectionDeleting(ctx, "gone"))

	ann, err := s.CreateSubject(ctx, Subject{Collection: "c", ExternalID: "emp-1", DisplayName: "Ann Lee"})
	noErr(t, "create", err)
	if _, err := uuid.Parse(ann.ID); err != nil {
		t.Errorf("generated ID %q is not a UUID: %v", ann.ID, err)
	}
	if string(ann.Metadata) != "{}" || !ann.CreatedAt.Equal(ann.UpdatedAt) || ann.FaceCount != 0 {
		t.Errorf("created subject %+v", ann)
	}

	t.Run("create errors", func(t *testing.T) {
		tests := []struct {
			name string
			sub  Subject
			want error
		}{
			{"unknown collection", Subject{Collection: "nope"}, ErrNotFound},
			{"collection being deleted", Subject{Collection: "gone"}, ErrNotFound},
			{"external id taken", Subject{Collection: "c", ExternalID: "emp-1"}, ErrConflict},
			{"id taken", Subject{ID: ann.ID, Collection: "other"}, ErrConflict},
			{"metadata not JSON", Subject{Collection: "c", Metadata: json.RawMessage(`{"a":`)}, ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.CreateSubject(ctx, tt.sub)
				wantErr(t, "CreateSubject", err, tt.want)
			})
		}
	})

	t.Run("external ids", func(t *testing.T) {
		// Subjects without an external id do not clash; one external id
		// may be used in two collections.
		mustSubject(t, s, "c", "", "no id 1")
		mustSubject(t, s, "c", "", "no id 2")
		mustSubject(t, s, "other", "emp-1", "Ann elsewhere")
		got, err := s.GetSubjectByExternalID(ctx, "c", "emp-1")
		noErr(t, "by external id", err)
		if got.ID != ann.ID {
			t.Errorf("GetSubjectByExternalID = %s, want %s", got.ID, ann.ID)
		}
		_, err = s.GetSubjectByExternalID(ctx, "c", "")
		wantErr(t, "by empty external id", err, ErrNotFound)
		_, err = s.GetSubjectByExternalID(ctx, "c", "emp-404")
		wantErr(t, "by unknown external id", err, ErrNotFound)
	})

	t.Run("get", func(t *testing.T) {
		withMeta, err := s.CreateSubject(ctx, Subject{Collection: "c", ExternalID: "m", Metadata: json.RawMessage(`{"team":"blue"}`)})
		noErr(t, "create", err)
		mustFace(t, s, withMeta, "1")
		f2 := mustFace(t, s, withMeta, "2")
		_, err = s.MarkFaceDeleting(ctx, "c", f2.ID)
		noErr(t, "mark face deleting", err)
		got, err := s.GetSubject(ctx, "c", withMeta.ID)
		noErr(t, "get", err)
		withMeta.FaceCount = 1 // the face being deleted does not count
		if !subjectsEqual(got, withMeta) {
			t.Errorf("GetSubject = %+v, want %+v", got, withMeta)
		}
		_, err = s.GetSubject(ctx, "other", withMeta.ID)
		wantErr(t, "get from the wrong collection", err, ErrNotFound)
		_, err = s.GetSubject(ctx, "c", uuid.NewString())
		wantErr(t, "get unknown", err, ErrNotFound)
	})

	t.Run("update", func(t *testing.T) {
		bob := mustSubject(t, s, "c", "emp-2", "Bob")
		name, ext := "Robert", "emp-3"
		up, err := s.UpdateSubject(ctx, "c", bob.ID, SubjectPatch{DisplayName: &name, ExternalID: &ext, Metadata: json.RawMessage(`{"x":1}`)})
		noErr(t, "update", err)
		if up.DisplayName != name || up.ExternalID != ext || string(up.Metadata) != `{"x":1}` ||
			!up.UpdatedAt.After(bob.UpdatedAt) || !up.CreatedAt.Equal(bob.CreatedAt) {
			t.Errorf("UpdateSubject = %+v (was %+v)", up, bob)
		}
		got, err := s.GetSubject(ctx, "c", bob.ID)
		noErr(t, "get", err)
		if !subjectsEqual(got, up) {
			t.Errorf("GetSubject after update = %+v, want %+v", got, up)
		}
		// Only the given fields change.
		same, err := s.UpdateSubject(ctx, "c", bob.ID, SubjectPatch{})
		noErr(t, "empty patch", err)
		if same.DisplayName != name || same.ExternalID != ext || string(same.Metadata) != `{"x":1}` {
			t.Errorf("empty patch changed %+v", same)
		}

		taken := "emp-1"
		_, err = s.UpdateSubject(ctx, "c", bob.ID, SubjectPatch{ExternalID: &taken})
		wantErr(t, "take another's external id", err, ErrConflict)
		_, err = s.UpdateSubject(ctx, "c", bob.ID, SubjectPatch{Metadata: json.RawMessage(`nope`)})
		wantErr(t, "metadata not JSON", err, ErrInvalid)
		empty := ""
		cleared, err := s.UpdateSubject(ctx, "c", bob.ID, SubjectPatch{ExternalID: &empty})
		noErr(t, "clear external id", err)
		if cleared.ExternalID != "" {
			t.Errorf("external id %q after clearing", cleared.ExternalID)
		}
		_, err = s.GetSubjectByExternalID(ctx, "c", ext)
		wantErr(t, "old external id", err, ErrNotFound)
		_, err = s.UpdateSubject(ctx, "c", uuid.NewString(), SubjectPatch{DisplayName: &name})
		wantErr(t, "update unknown", err, ErrNotFound)
		_, err = s.UpdateSubject(ctx, "other", bob.ID, SubjectPatch{DisplayName: &name})
		wantErr(t, "update in the wrong collection", err, ErrNotFound)
	})
}

func testListSubjects(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	mustCollection(t, s, "other")
	// Three subjects per clock reading: the cursor must break ties by id.
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	setClock(t, s, func() time.Time {
		n++
		return t0.Add(time.Duration(n/3) * time.Second)
	})
	names := []string{"Ann Lee", "Joanna Smith", "ANNE", "Bob", "Éva Ödön", "éva Kiss", "Hanna", "Zed", "Anna-Lena", "X"}
	var all []Subject
	for i := range 31 {
		name := names[i%len(names)]
		all = append(all, mustSubject(t, s, "c", fmt.Sprintf("emp-%d", i), name))
	}
	mustSubject(t, s, "other", "emp-1", "Ann Other")
	slices.SortFunc(all, func(a, b Subject) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	withFaces := all[4]
	mustFace(t, s, withFaces, "1")
	mustFace(t, s, withFaces, "2")

	tests := []struct {
		search string
		limit  int
		match  func(Subject) bool
	}{
		{"", 4, func(Subject) bool { return true }},
		{"", 31, func(Subject) bool { return true }},
		{"ann", 2, func(s Subject) bool { return strings.Contains(strings.ToLower(s.DisplayName), "ann") }},
		{"ÉVA", 1, func(s Subject) bool { return strings.HasPrefix(strings.ToLower(s.DisplayName), "éva") }},
		{"emp-1", 3, func(s Subject) bool { return strings.HasPrefix(s.ExternalID, "emp-1") }},
		{"mp-1", 3, func(Subject) bool { return false }}, // not a prefix
		{"nobody", 5, func(Subject) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("search %q by %d", tt.search, tt.limit), func(t *testing.T) {
			var want []Subject
			for _, sub := range all {
				if tt.match(sub) {
					want = append(want, sub)
				}
			}
			var got []Subject
			after := ""
			for page := 0; ; page++ {
				subs, next, err := s.ListSubjects(ctx, SubjectQuery{Collection: "c", Search: tt.search, After: after, Limit: tt.limit})
				noErr(t, "ListSubjects", err)
				if len(subs) > tt.limit {
					t.Fatalf("page %d holds %d subjects, limit %d", page, len(subs), tt.limit)
				}
				if next != "" && len(subs) != tt.limit {
					t.Fatalf("page %d holds %d subjects and has a next page", page, len(subs))
				}
				got = append(got, subs...)
				if next == "" {
					break
				}
				if page > len(all) {
					t.Fatal("pagination does not end")
				}
				after = next
			}
			if len(got) != len(want) {
				t.Fatalf("got %d subjects, want %d", len(got), len(want))
			}
			for i := range got {
				w := want[i]
				if w.ID == withFaces.ID {
					w.FaceCount = 2
				}
				if !subjectsEqual(got[i], w) {
					t.Fatalf("subject %d = %+v, want %+v", i, got[i], w)
				}
			}
		})
	}

	t.Run("exact last page has no next", func(t *testing.T) {
		subs, next, err := s.ListSubjects(ctx, SubjectQuery{Collection: "c", Limit: len(all)})
		noErr(t, "ListSubjects", err)
		if len(subs) != len(all) || next != "" {
			t.Fatalf("%d subjects, next %q; want %d and none", len(subs), next, len(all))
		}
	})

	t.Run("bad cursors", func(t *testing.T) {
		enc := base64.RawURLEncoding.EncodeToString
		for _, c := range []string{"!!", enc([]byte("123")), enc([]byte("x:id")), enc([]byte("123:"))} {
			_, _, err := s.ListSubjects(ctx, SubjectQuery{Collection: "c", After: c})
			wantErr(t, fmt.Sprintf("cursor %q", c), err, ErrInvalid)
		}
	})

	t.Run("unknown collection", func(t *testing.T) {
		_, _, err := s.ListSubjects(ctx, SubjectQuery{Collection: "nope"})
		wantErr(t, "ListSubjects", err, ErrNotFound)
	})

	t.Run("default and maximum page", func(t *testing.T) {
		mustCollection(t, s, "big")
		fillFaces(t, s, "big", maxSubjectPage+1, 0)
		for _, tt := range []struct{ limit, want int }{{0, defaultSubjectPage}, {-1, defaultSubjectPage}, {5000, maxSubjectPage}} {
			subs, next, err := s.ListSubjects(ctx, SubjectQuery{Collection: "big", Limit: tt.limit})
			noErr(t, "ListSubjects", err)
			if len(subs) != tt.want || next == "" {
				t.Errorf("Limit %d: %d subjects, next %q; want %d and a next page", tt.limit, len(subs), next, tt.want)
			}
		}
	})
}

func testInsertFace(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	mustCollection(t, s, "other")
	sub := mustSubject(t, s, "c", "a", "A")
	sub2 := mustSubject(t, s, "c", "b", "B")

	desc := descriptor(7)
	desc[0], desc[1], desc[2] = float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32
	in := Face{
		SubjectID: sub.ID, Descriptor: desc, ModelID: "dlib-resnet-v1", Box: [4]int{-3, 10, 200, 210},
		Landmarks: json.RawMessage(`[[1,2],[3,4]]`), Quality: json.RawMessage(`{"sharpness":12.5}`),
		ImageSHA256: strings.Repeat("ab", 32),
	}
	f, inserted, err := s.InsertFace(ctx, in)
	noErr(t, "insert", err)
	if !inserted || f.Key == 0 || f.State != FacePending || f.Collection != "c" || f.CreatedAt.IsZero() {
		t.Fatalf("InsertFace = %+v, %v", f, inserted)
	}
	if _, err := uuid.Parse(f.ID); err != nil {
		t.Errorf("face ID %q: %v", f.ID, err)
	}

	t.Run("stored as given", func(t *testing.T) {
		got, err := s.GetFace(ctx, "c", f.ID)
		noErr(t, "GetFace", err)
		if !facesEqual(got, f) {
			t.Fatalf("GetFace = %+v, want %+v", got, f)
		}
		for i := range desc {
			if math.Float32bits(got.Descriptor[i]) != math.Float32bits(desc[i]) {
				t.Fatalf("descriptor[%d] = %v, want %v", i, got.Descriptor[i], desc[i])
			}
		}
	})

	t.Run("same image again returns the face", func(t *testing.T) {
		again := in
		again.Descriptor = descriptor(99)
		got, inserted, err := s.InsertFace(ctx, again)
		noErr(t, "insert again", err)
		if inserted || !facesEqual(got, f) {
			t.Fatalf("InsertFace again = %+v, %v; want the first face, false", got, inserted)
		}
	})

	t.Run("same image, other subject", func(t *testing.T) {
		other := in
		other.SubjectID = sub2.ID
		got, inserted, err := s.InsertFace(ctx, other)
		noErr(t, "insert", err)
		if !inserted || got.Key == f.Key {
			t.Fatalf("InsertFace for another subject = %+v, %v", got, inserted)
		}
	})

	t.Run("no hash, no deduplication", func(t *testing.T) {
		noHash := Face{SubjectID: sub2.ID, Descriptor: descriptor(1)}
		a, okA, errA := s.InsertFace(ctx, noHash)
		b, okB, errB := s.InsertFace(ctx, noHash)
		if errA != nil || errB != nil || !okA || !okB || a.Key == b.Key {
			t.Fatalf("two faces without hash: %v %v, %v %v, keys %d %d", okA, errA, okB, errB, a.Key, b.Key)
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			face Face
			want error
		}{
			{"unknown subject", Face{SubjectID: uuid.NewString(), Descriptor: desc}, ErrNotFound},
			{"subject of another collection", Face{SubjectID: sub.ID, Collection: "other", Descriptor: desc}, ErrNotFound},
			{"no descriptor", Face{SubjectID: sub.ID}, ErrInvalid},
			{"landmarks not JSON", Face{SubjectID: sub.ID, Descriptor: desc, Landmarks: json.RawMessage(`[1,`)}, ErrInvalid},
			{"quality not JSON", Face{SubjectID: sub.ID, Descriptor: desc, Quality: json.RawMessage(`x`)}, ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, _, err := s.InsertFace(ctx, tt.face)
				wantErr(t, "InsertFace", err, tt.want)
			})
		}
	})

	t.Run("image being deleted", func(t *testing.T) {
		_, err := s.MarkFaceDeleting(ctx, "c", f.ID)
		noErr(t, "mark deleting", err)
		_, _, err = s.InsertFace(ctx, in)
		wantErr(t, "re-enroll while deleting", err, ErrConflict)
		noErr(t, "delete", s.DeleteFaces(ctx, []uint64{f.Key}))
		got, inserted, err := s.InsertFace(ctx, in)
		noErr(t, "re-enroll after deletion", err)
		if !inserted || got.Key <= f.Key {
			t.Fatalf("re-enrolled face %+v, %v; want a new face with a larger key than %d", got, inserted, f.Key)
		}
	})

	t.Run("collection being deleted", func(t *testing.T) {
		noErr(t, "mark deleting", s.MarkCollectionDeleting(ctx, "other"))
		osub := mustSubject(t, s, "c", "o", "")
		noErr(t, "mark c deleting", s.MarkCollectionDeleting(ctx, "c"))
		_, _, err := s.InsertFace(ctx, Face{SubjectID: osub.ID, Descriptor: desc})
		wantErr(t, "insert into a deleting collection", err, ErrNotFound)
	})
}

func testFaceLifecycle(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	mustCollection(t, s, "other")
	sub := mustSubject(t, s, "c", "emp-1", "Ann")
	f1, f2, f3 := mustFace(t, s, sub, "1"), mustFace(t, s, sub, "22"), mustFace(t, s, sub, "333")
	otherFace := mustFace(t, s, mustSubject(t, s, "other", "x", ""), "1")
	const unknown = 1 << 40

	noErr(t, "mark indexed", s.MarkFacesIndexed(ctx, []uint64{f1.Key, f2.Key, unknown}))
	noErr(t, "mark indexed (nothing)", s.MarkFacesIndexed(ctx, nil))
	k2, err := s.MarkFaceDeleting(ctx, "c", f2.ID)
	noErr(t, "mark deleting", err)
	if k2 != f2.Key {
		t.Fatalf("MarkFaceDeleting = %d, want %d", k2, f2.Key)
	}
	again, err := s.MarkFaceDeleting(ctx, "c", f2.ID)
	if err != nil || again != f2.Key {
		t.Fatalf("MarkFaceDeleting again = %d, %v", again, err)
	}
	// A late confirmation from the index must not revive a face being
	// deleted.
	noErr(t, "mark indexed after deleting", s.MarkFacesIndexed(ctx, []uint64{f2.Key}))

	t.Run("states", func(t *testing.T) {
		want := map[uint64]FaceState{f1.Key: FaceIndexed, f2.Key: FaceDeleting, f3.Key: FacePending, otherFace.Key: FacePending}
		for key, st := range want {
			got := rawColumn[string](t, s, `SELECT state FROM face WHERE key = ?`, int64(key))
			if len(got) != 1 || FaceState(got[0]) != st {
				t.Errorf("face %d is %v, want %s", key, got, st)
			}
		}
	})

	t.Run("FaceStates", func(t *testing.T) {
		got, err := s.FaceStates(ctx, []uint64{f1.Key, f2.Key, f3.Key, otherFace.Key, unknown})
		noErr(t, "FaceStates", err)
		want := map[uint64]FaceState{f1.Key: FaceIndexed, f2.Key: FaceDeleting, f3.Key: FacePending, otherFace.Key: FacePending}
		if !maps.Equal(got, want) {
			t.Fatalf("FaceStates = %v, want %v", got, want)
		}
		none, err := s.FaceStates(ctx, nil)
		if err != nil || len(none) != 0 {
			t.Fatalf("FaceStates(nil) = %v, %v", none, err)
		}
	})

	t.Run("mark deleting errors", func(t *testing.T) {
		_, err := s.MarkFaceDeleting(ctx, "c", uuid.NewString())
		wantErr(t, "unknown face", err, ErrNotFound)
		_, err = s.MarkFaceDeleting(ctx, "other", f1.ID)
		wantErr(t, "wrong collection", err, ErrNotFound)
	})

	t.Run("GetFace", func(t *testing.T) {
		got, err := s.GetFace(ctx, "c", f1.ID)
		noErr(t, "GetFace", err)
		if got.State != FaceIndexed || !slices.Equal(got.Descriptor, f1.Descriptor) {
			t.Errorf("GetFace = %+v", got)
		}
		_, err = s.GetFace(ctx, "c", f2.ID)
		wantErr(t, "face being deleted", err, ErrNotFound)
		_, err = s.GetFace(ctx, "other", f1.ID)
		wantErr(t, "wrong collection", err, ErrNotFound)
	})

	t.Run("ListFaces", func(t *testing.T) {
		faces, err := s.ListFaces(ctx, "c", sub.ID)
		noErr(t, "ListFaces", err)
		if got, want := faceKeys(faces), []uint64{f1.Key, f3.Key}; !slices.Equal(got, want) {
			t.Fatalf("ListFaces keys %v, want %v", got, want)
		}
		if !slices.Equal(faces[1].Descriptor, f3.Descriptor) {
			t.Error("ListFaces without descriptors")
		}
		_, err = s.ListFaces(ctx, "c", uuid.NewString())
		wantErr(t, "unknown subject", err, ErrNotFound)
		_, err = s.ListFaces(ctx, "other", sub.ID)
		wantErr(t, "wrong collection", err, ErrNotFound)
	})

	t.Run("FaceRefs resolves indexed faces only", func(t *testing.T) {
		refs, err := s.FaceRefs(ctx, "c", []uint64{f1.Key, f2.Key, f3.Key, otherFace.Key, unknown})
		noErr(t, "FaceRefs", err)
		want := map[uint64]FaceRef{f1.Key: {Key: f1.Key, FaceID: f1.ID, SubjectID: sub.ID, ExternalID: "emp-1", DisplayName: "Ann"}}
		if len(refs) != len(want) || refs[f1.Key] != want[f1.Key] {
			t.Fatalf("FaceRefs = %+v, want %+v", refs, want)
		}
		refs, err = s.FaceRefs(ctx, "other", []uint64{f1.Key})
		noErr(t, "FaceRefs", err)
		if len(refs) != 0 {
			t.Fatalf("FaceRefs in the wrong collection = %+v", refs)
		}
	})

	t.Run("reconciler queues", func(t *testing.T) {
		pending, err := s.PendingFaces(ctx, 0)
		noErr(t, "PendingFaces", err)
		if got, want := faceKeys(pending), []uint64{f3.Key, otherFace.Key}; !slices.Equal(got, want) {
			t.Fatalf("PendingFaces keys %v, want %v", got, want)
		}
		if !slices.Equal(pending[0].Descriptor, f3.Descriptor) || pending[1].Collection != "other" {
			t.Errorf("PendingFaces = %+v", pending)
		}
		one, err := s.PendingFaces(ctx, 1)
		noErr(t, "PendingFaces(1)", err)
		if len(one) != 1 {
			t.Errorf("PendingFaces(1) returned %d faces", len(one))
		}
		deleting, err := s.DeletingFaces(ctx, 10)
		noErr(t, "DeletingFaces", err)
		if len(deleting) != 1 || deleting[0].Key != f2.Key || deleting[0].Collection != "c" || deleting[0].State != FaceDeleting {
			t.Fatalf("DeletingFaces = %+v", deleting)
		}
	})

	t.Run("index keys and vectors", func(t *testing.T) {
		keys, err := s.IndexedKeys(ctx, "c")
		noErr(t, "IndexedKeys", err)
		if want := []uint64{f1.Key, f3.Key}; !slices.Equal(keys, want) {
			t.Fatalf("IndexedKeys = %v, want %v", keys, want)
		}
		vs, err := s.Vectors(ctx, "c", []uint64{f3.Key, f2.Key, f1.Key, otherFace.Key, unknown})
		noErr(t, "Vectors", err)
		if len(vs) != 2 || vs[0].Key != f1.Key || vs[1].Key != f3.Key || !slices.Equal(vs[1].Descriptor, f3.Descriptor) {
			t.Fatalf("Vectors = %+v", vs)
		}
		none, err := s.IndexedKeys(ctx, "nope")
		if err != nil || len(none) != 0 {
			t.Fatalf("IndexedKeys of an unknown collection = %v, %v", none, err)
		}
	})

	t.Run("DeleteFaces", func(t *testing.T) {
		noErr(t, "DeleteFaces", s.DeleteFaces(ctx, []uint64{f2.Key, unknown}))
		deleting, err := s.DeletingFaces(ctx, 10)
		noErr(t, "DeletingFaces", err)
		if len(deleting) != 0 {
			t.Fatalf("DeletingFaces after DeleteFaces = %+v", deleting)
		}
		if n := countRows(t, s, "face", "key = ?", int64(f2.Key)); n != 0 {
			t.Fatal("face row left")
		}
	})

	t.Run("ModelCounts", func(t *testing.T) {
		// Faces being deleted do not count; another model's face does.
		_, _, err := s.InsertFace(ctx, Face{SubjectID: otherFace.SubjectID, Collection: "other",
			Descriptor: descriptor(7), ModelID: "model-b", ImageSHA256: "model-b"})
		noErr(t, "InsertFace", err)
		got, err := s.ModelCounts(ctx)
		noErr(t, "ModelCounts", err)
		if want := map[string]int{"test": 3, "model-b": 1}; !maps.Equal(got, want) {
			t.Fatalf("ModelCounts = %v, want %v", got, want)
		}
	})
}

func testVectorsAndScanAtScale(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	setKeysChunk(s, 7) // many chunks, ending on keys of every state
	mustCollection(t, s, "c")
	mustCollection(t, s, "other")
	// More keys than one IN list holds, interleaved with another
	// collection's, a third of them being deleted.
	keys := fillFaces(t, s, "c", 600, 2, FacePending, FaceIndexed, FaceDeleting)
	fillFaces(t, s, "other", 50, 2)
	var live []uint64
	for i, k := range keys {
		if i%3 != 2 {
			live = append(live, k)
		}
	}

	got, err := s.IndexedKeys(ctx, "c")
	noErr(t, "IndexedKeys", err)
	if !slices.Equal(got, live) {
		t.Fatalf("IndexedKeys: %d keys, want %d", len(got), len(live))
	}

	vs, err := s.Vectors(ctx, "c", append(slices.Clone(keys), 1<<40))
	noErr(t, "Vectors", err)
	var vkeys []uint64
	for _, v := range vs {
		vkeys = append(vkeys, v.Key)
	}
	if !slices.Equal(vkeys, live) {
		t.Fatalf("Vectors: %d vectors, want %d", len(vkeys), len(live))
	}
	for _, i := range []int{0, len(vs) / 2, len(vs) - 1} {
		f, err := s.GetFace(ctx, "c", faceIDByKey(t, s, vs[i].Key))
		noErr(t, "GetFace", err)
		if !slices.Equal(vs[i].Descriptor, f.Descriptor) || len(vs[i].Descriptor) != 128 {
			t.Fatalf("Vectors descriptor of key %d differs from GetFace's", vs[i].Key)
		}
	}

	for _, limit := range []int{7, 1000} {
		var scanned []uint64
		var after uint64
		for {
			page, err := s.ScanVectors(ctx, "c", after, limit)
			noErr(t, "ScanVectors", err)
			if len(page) > limit {
				t.Fatalf("ScanVectors page of %d, limit %d", len(page), limit)
			}
			if len(page) == 0 {
				break
			}
			for _, v := range page {
				scanned = append(scanned, v.Key)
				if len(v.Descriptor) != 128 {
					t.Fatalf("key %d: %d dimensions", v.Key, len(v.Descriptor))
				}
			}
			after = page[len(page)-1].Key
		}
		if !slices.Equal(scanned, live) {
			t.Fatalf("ScanVectors by %d: %d keys, want %d", limit, len(scanned), len(live))
		}
	}
	_, err = s.ScanVectors(ctx, "c", 0, 0)
	wantErr(t, "ScanVectors limit 0", err, ErrInvalid)
}

func testKeysNeverReused(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.newDB(t)
	s, err := b.open(ctx, db)
	noErr(t, "open", err)
	mustCollection(t, s, "c")
	sub := mustSubject(t, s, "c", "a", "")
	mustFace(t, s, sub, "1")
	newest := mustFace(t, s, sub, "2")
	noErr(t, "delete newest", s.DeleteFaces(ctx, []uint64{newest.Key}))
	next := mustFace(t, s, sub, "3")
	if next.Key <= newest.Key {
		t.Fatalf("key %d reused after deleting face %d", next.Key, newest.Key)
	}

	// Nor after deleting the subject, and reopening the database.
	noErr(t, "delete subject", s.DeleteSubject(ctx, "c", sub.ID))
	noErr(t, "close", s.Close())
	s = b.openAt(t, db)
	later := mustFace(t, s, mustSubject(t, s, "c", "b", ""), "4")
	if later.Key <= next.Key {
		t.Fatalf("key %d reused after deleting face %d and reopening", later.Key, next.Key)
	}
}

func testSubjectDeletion(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	sub := mustSubject(t, s, "c", "a", "")
	f1, f2, f3 := mustFace(t, s, sub, "1"), mustFace(t, s, sub, "2"), mustFace(t, s, sub, "3")
	noErr(t, "index", s.MarkFacesIndexed(ctx, []uint64{f1.Key}))
	_, err := s.MarkFaceDeleting(ctx, "c", f3.ID)
	noErr(t, "mark one face deleting", err)
	keep := mustFace(t, s, mustSubject(t, s, "c", "b", ""), "1")

	want := []uint64{f1.Key, f2.Key, f3.Key}
	for range 2 { // the second call repeats an interrupted one
		keys, err := s.MarkSubjectDeleting(ctx, "c", sub.ID)
		noErr(t, "MarkSubjectDeleting", err)
		if !slices.Equal(keys, want) {
			t.Fatalf("MarkSubjectDeleting = %v, want %v", keys, want)
		}
	}
	got, err := s.GetSubject(ctx, "c", sub.ID)
	noErr(t, "GetSubject", err)
	if got.FaceCount != 0 {
		t.Errorf("FaceCount %d while deleting", got.FaceCount)
	}
	refs, err := s.FaceRefs(ctx, "c", want)
	if err != nil || len(refs) != 0 {
		t.Errorf("FaceRefs while deleting = %v, %v", refs, err)
	}

	noErr(t, "DeleteSubject", s.DeleteSubject(ctx, "c", sub.ID))
	_, err = s.GetSubject(ctx, "c", sub.ID)
	wantErr(t, "GetSubject after delete", err, ErrNotFound)
	if n := countRows(t, s, "face", "subject_id = ?", sub.ID); n != 0 {
		t.Errorf("%d faces survive their subject", n)
	}
	if _, err := s.GetFace(ctx, "c", keep.ID); err != nil {
		t.Errorf("another subject's face: %v", err)
	}
	wantErr(t, "DeleteSubject again", s.DeleteSubject(ctx, "c", sub.ID), ErrNotFound)
	_, err = s.MarkSubjectDeleting(ctx, "c", sub.ID)
	wantErr(t, "MarkSubjectDeleting unknown", err, ErrNotFound)
}

func testAPIKeys(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	steppingClock(t, s, t0, time.Minute)
	hash := []byte{1, 2, 3, 255}

	admin, err := s.CreateKey(ctx, APIKey{ID: "k1", Name: "first admin", Hash: hash, Role: RoleAdmin})
	noErr(t, "create", err)
	if !admin.CreatedAt.Equal(t0) {
		t.Errorf("CreatedAt %v, want %v", admin.CreatedAt, t0)
	}
	scoped, err := s.CreateKey(ctx, APIKey{ID: "k2", Name: "door", Hash: []byte{9}, Role: RoleIdentify, Collection: "staff"})
	noErr(t, "create scoped", err)

	t.Run("create errors", func(t *testing.T) {
		tests := []struct {
			name string
			key  APIKey
			want error
		}{
			{"id taken", APIKey{ID: "k1", Hash: hash, Role: RoleRead}, ErrConflict},
			{"unknown role", APIKey{ID: "k9", Hash: hash, Role: "root"}, ErrInvalid},
			{"no hash", APIKey{ID: "k9", Role: RoleRead}, ErrInvalid},
			{"no id", APIKey{Hash: hash, Role: RoleRead}, ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.CreateKey(ctx, tt.key)
				wantErr(t, "CreateKey", err, tt.want)
			})
		}
	})

	got, err := s.GetKey(ctx, "k2")
	noErr(t, "get", err)
	if got.ID != "k2" || got.Name != "door" || string(got.Hash) != string([]byte{9}) || got.Role != RoleIdentify ||
		got.Collection != "staff" || !got.CreatedAt.Equal(scoped.CreatedAt) || got.LastUsedAt != nil || got.RevokedAt != nil {
		t.Errorf("GetKey = %+v", got)
	}
	_, err = s.GetKey(ctx, "nope")
	wantErr(t, "get unknown", err, ErrNotFound)

	used := time.Date(2026, 3, 2, 8, 0, 0, 5, time.FixedZone("CET", 3600))
	noErr(t, "touch", s.TouchKey(ctx, "k1", used))
	wantErr(t, "touch unknown", s.TouchKey(ctx, "nope", used), ErrNotFound)
	got, err = s.GetKey(ctx, "k1")
	noErr(t, "get", err)
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(used) || got.LastUsedAt.Location() != time.UTC {
		t.Errorf("LastUsedAt = %v, want %v in UTC", got.LastUsedAt, used)
	}

	n, err := s.CountKeys(ctx)
	if err != nil || n != 2 {
		t.Fatalf("CountKeys = %d, %v; want 2", n, err)
	}
	noErr(t, "revoke", s.RevokeKey(ctx, "k2"))
	first, err := s.GetKey(ctx, "k2")
	noErr(t, "get", err)
	noErr(t, "revoke again", s.RevokeKey(ctx, "k2"))
	second, err := s.GetKey(ctx, "k2")
	noErr(t, "get", err)
	if first.RevokedAt == nil || second.RevokedAt == nil || !first.RevokedAt.Equal(*second.RevokedAt) {
		t.Errorf("RevokedAt %v then %v; want the first revocation kept", first.RevokedAt, second.RevokedAt)
	}
	wantErr(t, "revoke unknown", s.RevokeKey(ctx, "nope"), ErrNotFound)
	n, err = s.CountKeys(ctx)
	if err != nil || n != 1 {
		t.Fatalf("CountKeys after revoking = %d, %v; want 1", n, err)
	}

	list, err := s.ListKeys(ctx)
	noErr(t, "list", err)
	if len(list) != 2 || list[0].ID != "k1" || list[1].ID != "k2" || list[1].RevokedAt == nil {
		t.Fatalf("ListKeys = %+v", list)
	}
}

func testEvents(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	steppingClock(t, s, t0, time.Hour)
	specs := []Event{
		{Kind: "enroll", KeyID: "k1", Collection: "a", SubjectID: "s1", FaceID: "f1", Outcome: "enrolled", Detail: json.RawMessage(`{"status":"enrolled"}`)},
		{Kind: "identify", KeyID: "k2", Collection: "a", Outcome: "1/1 matched"},
		{Kind: "enroll", KeyID: "k1", Collection: "b", Outcome: "rejected"},
		{Kind: "delete", KeyID: "k1", Collection: "a", Outcome: "subject_deleted"},
		{Kind: "identify", KeyID: "k2", Collection: "b", Outcome: "0/1 matched"},
	}
	var events []Event
	for _, e := range specs {
		got, err := s.AppendEvent(ctx, e)
		noErr(t, "AppendEvent", err)
		events = append(events, got)
	}
	if events[0].ID <= 0 || events[1].ID <= events[0].ID || !events[0].At.Equal(t0) || !events[1].At.Equal(t0.Add(time.Hour)) {
		t.Fatalf("appended %+v, %+v", events[0], events[1])
	}
	given := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	old, err := s.AppendEvent(ctx, Event{Kind: "verify", At: given, Outcome: "match"})
	noErr(t, "AppendEvent with At", err)
	if !old.At.Equal(given) {
		t.Errorf("At %v, want the given %v", old.At, given)
	}
	events = append(events, old)
	_, err = s.AppendEvent(ctx, Event{Kind: "verify", Detail: json.RawMessage(`{`)})
	wantErr(t, "AppendEvent with bad detail", err, ErrInvalid)

	ids := func(idx ...int) []int64 {
		var out []int64
		for _, i := range idx {
			out = append(out, events[i].ID)
		}
		return out
	}
	tests := []struct {
		name string
		q    EventQuery
		want []int64
	}{
		{"all, newest first", EventQuery{}, ids(5, 4, 3, 2, 1, 0)},
		{"kind", EventQuery{Kind: "enroll"}, ids(2, 0)},
		{"key", EventQuery{KeyID: "k2"}, ids(4, 1)},
		{"collection", EventQuery{Collection: "a"}, ids(3, 1, 0)},
		{"since inclusive", EventQuery{Since: t0.Add(3 * time.Hour)}, ids(4, 3)},
		{"until exclusive", EventQuery{Until: t0.Add(time.Hour)}, ids(5, 0)},
		{"before", EventQuery{Before: events[2].ID}, ids(1, 0)},
		{"limit", EventQuery{Limit: 2}, ids(5, 4)},
		{"combined", EventQuery{Kind: "identify", Collection: "b", Since: t0}, ids(4)},
		{"nothing", EventQuery{Kind: "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListEvents(ctx, tt.q)
			noErr(t, "ListEvents", err)
			var gotIDs []int64
			for _, e := range got {
				gotIDs = append(gotIDs, e.ID)
			}
			if !slices.Equal(gotIDs, tt.want) {
				t.Fatalf("ids %v, want %v", gotIDs, tt.want)
			}
		})
	}

	t.Run("fields round-trip", func(t *testing.T) {
		got, err := s.ListEvents(ctx, EventQuery{Before: events[1].ID})
		noErr(t, "ListEvents", err)
		e := events[0]
		if len(got) != 1 || got[0].ID != e.ID || !got[0].At.Equal(e.At) || got[0].Kind != e.Kind || got[0].KeyID != e.KeyID ||
			got[0].Collection != e.Collection || got[0].SubjectID != e.SubjectID || got[0].FaceID != e.FaceID ||
			got[0].Outcome != e.Outcome || string(got[0].Detail) != string(e.Detail) {
			t.Fatalf("ListEvents = %+v, want %+v", got, e)
		}
	})

	t.Run("default page", func(t *testing.T) {
		for range defaultEventPage + 5 {
			_, err := s.AppendEvent(ctx, Event{Kind: "identify", Outcome: "x"})
			noErr(t, "AppendEvent", err)
		}
		got, err := s.ListEvents(ctx, EventQuery{})
		noErr(t, "ListEvents", err)
		if len(got) != defaultEventPage {
			t.Fatalf("%d events, want %d", len(got), defaultEventPage)
		}
	})
}

func testCollectionStatsAndTopSubjects(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	mustCollection(t, s, "empty")

	st, err := s.CollectionStats(ctx, "empty")
	noErr(t, "stats of an empty collection", err)
	if (st != CollectionStats{Collection: "empty"}) {
		t.Errorf("CollectionStats(empty) = %+v", st)
	}
	_, err = s.CollectionStats(ctx, "nope")
	wantErr(t, "stats of an unknown collection", err, ErrNotFound)

	three, one, two := mustSubject(t, s, "c", "3", "Three"), mustSubject(t, s, "c", "1", "One"), mustSubject(t, s, "c", "2", "Two")
	mustSubject(t, s, "c", "0", "None")
	for i := range 3 {
		mustFace(t, s, three, fmt.Sprint(i))
	}
	mustFace(t, s, one, "a")
	gone := mustFace(t, s, one, "b")
	_, err = s.MarkFaceDeleting(ctx, "c", gone.ID)
	noErr(t, "mark deleting", err)
	indexed := mustFace(t, s, two, "a")
	newest := mustFace(t, s, two, "b")
	noErr(t, "index", s.MarkFacesIndexed(ctx, []uint64{indexed.Key}))

	st, err = s.CollectionStats(ctx, "c")
	noErr(t, "stats", err)
	want := CollectionStats{Collection: "c", Subjects: 4, Faces: 6, PendingFaces: 5, DescriptorBytes: 6 * 128 * 4, LastEnrollAt: &newest.CreatedAt}
	if st.Collection != want.Collection || st.Subjects != want.Subjects || st.Faces != want.Faces || st.PendingFaces != want.PendingFaces ||
		st.DescriptorBytes != want.DescriptorBytes || st.LastEnrollAt == nil || !st.LastEnrollAt.Equal(newest.CreatedAt) {
		t.Errorf("CollectionStats = %+v, want %+v", st, want)
	}

	top, err := s.TopSubjects(ctx, "c", 0)
	noErr(t, "TopSubjects", err)
	wantTop := []SubjectCount{
		{SubjectID: three.ID, ExternalID: "3", DisplayName: "Three", Faces: 3},
		{SubjectID: two.ID, ExternalID: "2", DisplayName: "Two", Faces: 2},
		{SubjectID: one.ID, ExternalID: "1", DisplayName: "One", Faces: 1},
	}
	if !slices.Equal(top, wantTop) {
		t.Errorf("TopSubjects = %+v, want %+v", top, wantTop)
	}
	top, err = s.TopSubjects(ctx, "c", 2)
	noErr(t, "TopSubjects(2)", err)
	if !slices.Equal(top, wantTop[:2]) {
		t.Errorf("TopSubjects(2) = %+v", top)
	}
}

func testEnrollmentsPerDay(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	day := func(d, h, m int) time.Time { return time.Date(2026, 1, d, h, m, 0, 0, time.UTC) }
	for _, e := range []Event{
		{At: day(1, 10, 0), Collection: "a"},
		{At: day(1, 23, 59).Add(59*time.Second + 999*time.Millisecond), Collection: "a"},
		// 01:00 at UTC+2 is still January 1st in UTC.
		{At: time.Date(2026, 1, 2, 1, 0, 0, 0, time.FixedZone("EET", 2*3600)), Collection: "a"},
		{At: day(2, 0, 0), Collection: "a"},
		{At: day(3, 12, 0), Collection: "b"},
		{At: day(2, 12, 0), Collection: "a", Outcome: "exists"},
		{At: day(2, 12, 0), Collection: "a", Outcome: "rejected"},
		{At: day(2, 12, 0), Collection: "a", Kind: "identify", Outcome: OutcomeEnrolled},
	} {
		e.Kind = cmp.Or(e.Kind, EventEnroll)
		e.Outcome = cmp.Or(e.Outcome, OutcomeEnrolled)
		_, err := s.AppendEvent(ctx, e)
		noErr(t, "AppendEvent", err)
	}
	tests := []struct {
		name       string
		collection string
		since      time.Time
		want       []DayCount
	}{
		{"collection a", "a", time.Time{}, []DayCount{{"2026-01-01", 3}, {"2026-01-02", 1}}},
		{"since", "a", day(2, 0, 0), []DayCount{{"2026-01-02", 1}}},
		// Within a day: that day counts from since on only.
		{"since within a day", "a", day(1, 12, 0), []DayCount{{"2026-01-01", 2}, {"2026-01-02", 1}}},
		{"since within a day, all collections", "", day(1, 23, 0), []DayCount{{"2026-01-01", 2}, {"2026-01-02", 1}, {"2026-01-03", 1}}},
		{"since after the last", "", day(4, 0, 0), nil},
		{"all collections", "", time.Time{}, []DayCount{{"2026-01-01", 3}, {"2026-01-02", 1}, {"2026-01-03", 1}}},
		{"unknown collection", "nope", time.Time{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.EnrollmentsPerDay(ctx, tt.collection, tt.since)
			noErr(t, "EnrollmentsPerDay", err)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("EnrollmentsPerDay = %v, want %v", got, tt.want)
			}
		})
	}
}

func testConcurrentWritersAndReaders(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	const writers, subjectsEach, facesEach = 4, 10, 2

	var writing sync.WaitGroup
	done := make(chan struct{})
	for w := range writers {
		writing.Go(func() {
			for i := range subjectsEach {
				sub, err := s.CreateSubject(ctx, Subject{Collection: "c", ExternalID: fmt.Sprintf("w%d-%d", w, i), DisplayName: "Writer"})
				if err != nil {
					t.Errorf("CreateSubject: %v", err)
					return
				}
				var keys []uint64
				for j := range facesEach {
					f, _, err := s.InsertFace(ctx, Face{SubjectID: sub.ID, Descriptor: descriptor(j), ImageSHA256: fmt.Sprint(j)})
					if err != nil {
						t.Errorf("InsertFace: %v", err)
						return
					}
					keys = append(keys, f.Key)
				}
				if err := s.MarkFacesIndexed(ctx, keys); err != nil {
					t.Errorf("MarkFacesIndexed: %v", err)
					return
				}
				if _, err := s.AppendEvent(ctx, Event{Kind: EventEnroll, Collection: "c", Outcome: OutcomeEnrolled}); err != nil {
					t.Errorf("AppendEvent: %v", err)
					return
				}
			}
		})
	}
	var reading sync.WaitGroup
	for range 3 {
		reading.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				subs, _, err := s.ListSubjects(ctx, SubjectQuery{Collection: "c", Search: "writer", Limit: 7})
				if err != nil {
					t.Errorf("ListSubjects: %v", err)
					return
				}
				keys, err := s.IndexedKeys(ctx, "c")
				if err != nil {
					t.Errorf("IndexedKeys: %v", err)
					return
				}
				if _, err := s.FaceRefs(ctx, "c", keys); err != nil {
					t.Errorf("FaceRefs: %v", err)
					return
				}
				if _, err := s.CollectionStats(ctx, "c"); err != nil {
					t.Errorf("CollectionStats: %v", err)
					return
				}
				for _, sub := range subs {
					if _, err := s.ListFaces(ctx, "c", sub.ID); err != nil {
						t.Errorf("ListFaces: %v", err)
						return
					}
				}
			}
		})
	}
	writing.Wait()
	close(done)
	reading.Wait()

	st, err := s.CollectionStats(ctx, "c")
	noErr(t, "CollectionStats", err)
	if st.Subjects != writers*subjectsEach || st.Faces != writers*subjectsEach*facesEach || st.PendingFaces != 0 {
		t.Fatalf("CollectionStats = %+v", st)
	}
	refs, err := s.FaceRefs(ctx, "c", mustIndexedKeys(t, s, "c"))
	noErr(t, "FaceRefs", err)
	if len(refs) != writers*subjectsEach*facesEach {
		t.Fatalf("%d faces resolve, want %d", len(refs), writers*subjectsEach*facesEach)
	}
}

// testTwoStoresOneDatabase writes through two stores opened on one
// database, as two processes (replicas) would. SQLite: each store has its
// own write connection, so they contend for the file's lock, which
// busy_timeout and BEGIN IMMEDIATE must absorb. Postgres: two pools whose
// transactions interleave.
func testTwoStoresOneDatabase(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.newDB(t)
	one, two := b.openAt(t, db), b.openAt(t, db)
	mustCollection(t, one, "c")

	// Two goroutines per store: each store's own writers queue on its
	// write connection (SQLite), the stores contend for the database.
	const perWriter, writers = 20, 4
	var wg sync.WaitGroup
	for w := range writers {
		s := []storeUnderTest{one, two}[w%2]
		wg.Go(func() {
			for j := range perWriter {
				sub, err := s.CreateSubject(ctx, Subject{Collection: "c", ExternalID: fmt.Sprintf("%d-%d", w, j)})
				if err != nil {
					t.Errorf("writer %d: CreateSubject: %v", w, err)
					return
				}
				if _, _, err := s.InsertFace(ctx, Face{SubjectID: sub.ID, Descriptor: descriptor(j)}); err != nil {
					t.Errorf("writer %d: InsertFace: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, s := range []storeUnderTest{one, two} {
		if keys := mustIndexedKeys(t, s, "c"); len(keys) != writers*perWriter {
			t.Errorf("store %d sees %d faces, want %d", i, len(keys), writers*perWriter)
		}
	}
}

func testCancelledContext(t *testing.T, b backend) {
	s := b.openTest(t)
	mustCollection(t, s, "c")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.GetCollection(ctx, "c")
	wantErr(t, "GetCollection", err, context.Canceled)
	_, err = s.CreateCollection(ctx, Collection{Name: "d"})
	wantErr(t, "CreateCollection", err, context.Canceled)
	_, _, err = s.InsertFace(ctx, Face{SubjectID: "x", Descriptor: descriptor(1)})
	wantErr(t, "InsertFace", err, context.Canceled)
}

func testReopen(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.newDB(t)
	s, err := b.open(ctx, db)
	noErr(t, "open", err)
	mustCollection(t, s, "kept")
	before := appliedMigrations(t, s)
	noErr(t, "Close", s.Close())

	s = b.openAt(t, db)
	if _, err := s.GetCollection(ctx, "kept"); err != nil {
		t.Fatalf("collection lost on reopen: %v", err)
	}
	after := appliedMigrations(t, s)
	if !slices.Equal(before, after) {
		t.Fatalf("schema_migrations changed on reopen: %v, then %v", before, after)
	}
	ms, err := readMigrations(b.migrations)
	noErr(t, "readMigrations", err)
	if len(after) != len(ms) {
		t.Fatalf("%d migrations recorded, %d embedded", len(after), len(ms))
	}
}

func testRefusesNewerSchema(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.newDB(t)
	s, err := b.open(ctx, db)
	noErr(t, "open", err)
	rawExec(t, s, `INSERT INTO schema_migrations (version, applied_at) VALUES (999999, 0)`)
	noErr(t, "Close", s.Close())
	if s, err := b.open(ctx, db); err == nil {
		_ = s.Close()
		t.Fatal("opened a database migrated by a newer program")
	}
}

// testByteOrder checks that names and ids are ordered by their bytes, as
// SQLite's BINARY collation does, not by a locale's rules (which would put
// "a" before "B" and "Ä" beside "A").
func testByteOrder(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	names := []string{"b", "Ä", "a", "B", "_", "ab"}
	for _, n := range names {
		mustCollection(t, s, n)
	}
	list, err := s.ListCollections(ctx)
	noErr(t, "ListCollections", err)
	var got []string
	for _, c := range list {
		got = append(got, c.Name)
	}
	want := slices.Clone(names)
	slices.Sort(want) // Go compares strings bytewise
	if !slices.Equal(got, want) {
		t.Errorf("ListCollections = %q, want %q", got, want)
	}

	// Ties of TopSubjects and of the subject page order fall to the id.
	ids := []string{"id-b", "id-B", "id-a", "id-Ä"}
	for _, id := range ids {
		sub, err := s.CreateSubject(ctx, Subject{ID: id, Collection: "a"})
		noErr(t, "CreateSubject", err)
		mustFace(t, s, sub, "x")
	}
	top, err := s.TopSubjects(ctx, "a", 0)
	noErr(t, "TopSubjects", err)
	got = nil
	for _, c := range top {
		got = append(got, c.SubjectID)
	}
	want = slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("TopSubjects ids = %q, want %q", got, want)
	}
}

// testConcurrentEnrollmentOfOneImage enrolls one image of one subject
// from several goroutines at once: exactly one inserts the face, the
// others get that face back, none fails.
func testConcurrentEnrollmentOfOneImage(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	for round := range 5 {
		sub := mustSubject(t, s, "c", fmt.Sprint("s", round), "")
		const enrollers = 4
		faces := make([]Face, enrollers)
		inserted := make([]bool, enrollers)
		errs := make([]error, enrollers)
		var wg sync.WaitGroup
		for i := range enrollers {
			wg.Go(func() {
				faces[i], inserted[i], errs[i] = s.InsertFace(ctx, Face{SubjectID: sub.ID, Descriptor: descriptor(i), ImageSHA256: "same"})
			})
		}
		wg.Wait()
		n := 0
		for i := range enrollers {
			noErr(t, "InsertFace", errs[i])
			if inserted[i] {
				n++
			}
			if faces[i].Key != faces[0].Key || faces[i].ID != faces[0].ID {
				t.Fatalf("round %d: enrollment %d got face %d, enrollment 0 face %d", round, i, faces[i].Key, faces[0].Key)
			}
		}
		if n != 1 {
			t.Fatalf("round %d: %d enrollments inserted the face, want 1", round, n)
		}
		if got := countRows(t, s, "face", "subject_id = ?", sub.ID); got != 1 {
			t.Fatalf("round %d: %d faces stored, want 1", round, got)
		}
	}
}

func testImportSubjects(t *testing.T, b backend) {
	s := b.openTest(t)
	ctx := context.Background()
	mustCollection(t, s, "imp")
	before := mustFace(t, s, mustSubject(t, s, "imp", "first", ""), "h0")
	items := []SubjectFaces{
		{Subject: Subject{ExternalID: "a", DisplayName: "Ada", Metadata: json.RawMessage(`{"team":"blue"}`)}, Faces: []Face{
			{Descriptor: descriptor(1), ModelID: "m", ImageSHA256: "h1", Box: [4]int{1, 2, 3, 4}, Landmarks: json.RawMessage(`[[1,2]]`)},
			{Descriptor: descriptor(2), ModelID: "m", ImageSHA256: "h2"},
		}},
		{Subject: Subject{ExternalID: "b", DisplayName: "Bob"}, Faces: []Face{{Descriptor: descriptor(3), ModelID: "m", ImageSHA256: "h3"}}},
	}
	faces, err := s.ImportSubjects(ctx, "imp", items)
	noErr(t, "import", err)
	if len(faces) != 3 {
		t.Fatalf("%d faces, want 3", len(faces))
	}
	// Keys are new and increase in the order of the items.
	for i, f := range faces {
		prev := before.Key
		if i > 0 {
			prev = faces[i-1].Key
		}
		if f.Key <= prev {
			t.Errorf("face %d has key %d, after %d", i, f.Key, prev)
		}
	}
	keys, err := s.IndexedKeys(ctx, "imp")
	noErr(t, "indexed keys", err)
	if len(keys) != 4 {
		t.Errorf("%d keys, want 4", len(keys))
	}
	pending, err := s.PendingFaces(ctx, 10)
	noErr(t, "pending", err)
	if len(pending) != 4 {
		t.Errorf("%d pending faces, want 4 (imports are indexed by the caller)", len(pending))
	}
	sub, err := s.GetSubjectByExternalID(ctx, "imp", "a")
	noErr(t, "get subject", err)
	if sub.FaceCount != 2 || sub.DisplayName != "Ada" || string(sub.Metadata) != `{"team":"blue"}` {
		t.Errorf("subject %+v", sub)
	}
	got, err := s.GetFace(ctx, "imp", faces[0].ID)
	noErr(t, "GetFace", err)
	if !facesEqual(got, faces[0]) || got.SubjectID != sub.ID {
		t.Errorf("imported face %+v, returned %+v", got, faces[0])
	}
	hits, _, err := s.ListSubjects(ctx, SubjectQuery{Collection: "imp", Search: "bo"})
	noErr(t, "ListSubjects", err)
	if len(hits) != 1 || hits[0].ExternalID != "b" {
		t.Errorf("search of an imported name: %+v", hits)
	}

	t.Run("a conflict aborts the batch", func(t *testing.T) {
		_, err := s.ImportSubjects(ctx, "imp", []SubjectFaces{
			{Subject: Subject{ExternalID: "c"}, Faces: []Face{{Descriptor: descriptor(4)}}},
			{Subject: Subject{ExternalID: "a"}},
		})
		wantErr(t, "duplicate external id", err, ErrConflict)
		if _, err := s.GetSubjectByExternalID(ctx, "imp", "c"); err == nil {
			t.Error("subject c of the failed batch was written")
		}
	})
	t.Run("one image twice in a subject", func(t *testing.T) {
		_, err := s.ImportSubjects(ctx, "imp", []SubjectFaces{{Subject: Subject{ExternalID: "e"}, Faces: []Face{
			{Descriptor: descriptor(5), ImageSHA256: "same"}, {Descriptor: descriptor(6), ImageSHA256: "same"},
		}}})
		wantErr(t, "duplicate image", err, ErrConflict)
	})
	t.Run("unknown collection", func(t *testing.T) {
		_, err := s.ImportSubjects(ctx, "nope", items)
		wantErr(t, "unknown collection", err, ErrNotFound)
	})
	t.Run("empty descriptor", func(t *testing.T) {
		_, err := s.ImportSubjects(ctx, "imp", []SubjectFaces{{Subject: Subject{ExternalID: "d"}, Faces: []Face{{}}}})
		wantErr(t, "empty descriptor", err, ErrInvalid)
	})
	t.Run("metadata not JSON", func(t *testing.T) {
		_, err := s.ImportSubjects(ctx, "imp", []SubjectFaces{{Subject: Subject{ExternalID: "d", Metadata: json.RawMessage(`{`)}}})
		wantErr(t, "metadata not JSON", err, ErrInvalid)
	})
	t.Run("nothing to import", func(t *testing.T) {
		faces, err := s.ImportSubjects(ctx, "imp", nil)
		if err != nil || len(faces) != 0 {
			t.Fatalf("ImportSubjects(nil) = %v, %v", faces, err)
		}
	})
}

// importItems returns n items of a manifest: photo i of subject i/3.
func importItems(n int) []ImportItem {
	items := make([]ImportItem, n)
	for i := range items {
		items[i] = ImportItem{
			Path:        fmt.Sprintf("s%05d/%07d.jpg", i/3, i),
			ExternalID:  fmt.Sprintf("s%05d", i/3),
			DisplayName: fmt.Sprintf("Person %d", i/3),
		}
	}
	return items
}

// mustImportJob creates a job of n fresh items in collection.
func mustImportJob(t *testing.T, s storeUnderTest, collection string, n int) ImportJob {
	t.Helper()
	job, err := s.CreateImportJob(context.Background(), ImportJob{Collection: collection}, importItems(n))
	noErr(t, "CreateImportJob", err)
	return job
}

// outcome is the result the tests record for item seq: enrolled, skipped
// and failed in turn.
func outcome(seq int) ImportItem {
	switch seq % 3 {
	case 0:
		return ImportItem{Seq: seq, State: ItemEnrolled, SubjectID: fmt.Sprint("sub-", seq), FaceID: fmt.Sprint("face-", seq)}
	case 1:
		return ImportItem{Seq: seq, State: ItemSkipped, Code: "exists", Reason: "image enrolled already"}
	default:
		return ImportItem{Seq: seq, State: ItemFailed, Code: "no_face", Reason: fmt.Sprintf("no face in photo %d", seq)}
	}
}

// outcomes are the outcomes of items seqs.
func outcomes(seqs ...int) []ImportItem {
	out := make([]ImportItem, len(seqs))
	for i, seq := range seqs {
		out[i] = outcome(seq)
	}
	return out
}

// seqRange is lo, lo+1, ..., hi-1.
func seqRange(lo, hi int) []int {
	var seqs []int
	for i := lo; i < hi; i++ {
		seqs = append(seqs, i)
	}
	return seqs
}

// itemSeqs are the seqs of items.
func itemSeqs(items []ImportItem) []int {
	seqs := make([]int, len(items))
	for i, it := range items {
		seqs[i] = it.Seq
	}
	return seqs
}

// jobCounts is "total done enrolled skipped failed".
func jobCounts(j ImportJob) string {
	return fmt.Sprint(j.Total, " ", j.Done, " ", j.Enrolled, " ", j.Skipped, " ", j.Failed)
}

// importJobsEqual compares jobs, JSON as text and times by instant.
func importJobsEqual(a, b ImportJob) bool {
	timesEqual := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.ID == b.ID && a.Collection == b.Collection && a.KeyID == b.KeyID && string(a.Source) == string(b.Source) &&
		a.State == b.State && jobCounts(a) == jobCounts(b) && a.Error == b.Error && a.CreatedAt.Equal(b.CreatedAt) &&
		timesEqual(a.StartedAt, b.StartedAt) && timesEqual(a.FinishedAt, b.FinishedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

// importItemsEqual compares items, metadata as text.
func importItemsEqual(a, b ImportItem) bool {
	return a.JobID == b.JobID && a.Seq == b.Seq && a.Path == b.Path && a.ExternalID == b.ExternalID &&
		a.DisplayName == b.DisplayName && string(a.Metadata) == string(b.Metadata) && a.State == b.State &&
		a.Code == b.Code && a.Reason == b.Reason && a.SubjectID == b.SubjectID && a.FaceID == b.FaceID
}

// allImportItems reads every item of a job through ImportItems, in pages
// of limit.
func allImportItems(t *testing.T, s storeUnderTest, jobID string, states []ItemState, limit int) []ImportItem {
	t.Helper()
	var all []ImportItem
	after := -1
	for {
		page, err := s.ImportItems(context.Background(), jobID, states, after, limit)
		noErr(t, "ImportItems", err)
		all = append(all, page...)
		if len(page) < limit {
			return all
		}
		after = page[len(page)-1].Seq
	}
}

func testImportJobCreate(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	start := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	steppingClock(t, s, start, time.Second)

	// Metadata and source with spacing and key order that a JSON
	// re-encoding would change.
	const meta = `{"z": 1,  "a": [1, 2.50, "é"], "n": null}`
	const source = `{"kind":"archive", "name":"gallery.zip","bytes":123}`
	items := []ImportItem{
		{Path: "ada/1.jpg", ExternalID: "ada", DisplayName: "Ada", Metadata: json.RawMessage(meta)},
		{Path: "ada/../../etc/passwd", State: ItemFailed, Code: "unsafe_path", Reason: "path escapes the source"},
		{Path: "bob/1.jpg", ExternalID: "bob"},
		{Path: "manifest line 4", State: ItemSkipped, Code: "missing_file", Reason: "bob/2.jpg not in the archive"},
		{Path: "cyd/1.jpg", ExternalID: "cyd", State: ItemPending},
	}
	given := slices.Clone(items)
	job, err := s.CreateImportJob(ctx, ImportJob{Collection: "c", KeyID: "key-1", Source: json.RawMessage(source),
		State: ImportDone, Done: 99, Error: "ignored"}, items)
	noErr(t, "CreateImportJob", err)
	if err := uuid.Validate(job.ID); err != nil {
		t.Errorf("job id %q: %v", job.ID, err)
	}
	if job.State != ImportQueued || jobCounts(job) != "5 2 0 1 1" || job.Error != "" || job.KeyID != "key-1" ||
		string(job.Source) != source || !job.CreatedAt.Equal(start) || !job.UpdatedAt.Equal(start) ||
		job.StartedAt != nil || job.FinishedAt != nil {
		t.Errorf("created job %+v (counts %s)", job, jobCounts(job))
	}
	for i := range items {
		if !importItemsEqual(items[i], given[i]) {
			t.Errorf("CreateImportJob changed item %d of the caller's slice: %+v", i, items[i])
		}
	}
	got, err := s.GetImportJob(ctx, job.ID)
	noErr(t, "GetImportJob", err)
	if !importJobsEqual(got, job) {
		t.Errorf("GetImportJob = %+v, created %+v", got, job)
	}

	stored := allImportItems(t, s, job.ID, nil, 100)
	if len(stored) != len(items) {
		t.Fatalf("%d items stored, want %d", len(stored), len(items))
	}
	for i, it := range stored {
		want := items[i]
		want.JobID, want.Seq = job.ID, i
		if want.State == "" {
			want.State = ItemPending
		}
		if !importItemsEqual(it, want) {
			t.Errorf("item %d = %+v, want %+v", i, it, want)
		}
	}
	if string(stored[0].Metadata) != meta || stored[2].Metadata != nil {
		t.Errorf("metadata read back %q and %q, want %q and none", stored[0].Metadata, stored[2].Metadata, meta)
	}

	t.Run("defaults", func(t *testing.T) {
		job, err := s.CreateImportJob(ctx, ImportJob{Collection: "c"}, nil)
		noErr(t, "CreateImportJob", err)
		if string(job.Source) != `{}` || job.KeyID != "" || jobCounts(job) != "0 0 0 0 0" {
			t.Errorf("empty job %+v", job)
		}
		got, err := s.GetImportJob(ctx, job.ID)
		noErr(t, "GetImportJob", err)
		if !importJobsEqual(got, job) {
			t.Errorf("GetImportJob = %+v, created %+v", got, job)
		}
	})
	t.Run("given id", func(t *testing.T) {
		_, err := s.CreateImportJob(ctx, ImportJob{ID: "job-1", Collection: "c"}, importItems(2))
		noErr(t, "CreateImportJob", err)
		_, err = s.CreateImportJob(ctx, ImportJob{ID: "job-1", Collection: "c"}, importItems(2))
		wantErr(t, "CreateImportJob with an id in use", err, ErrConflict)
	})

	mustCollection(t, s, "doomed")
	noErr(t, "MarkCollectionDeleting", s.MarkCollectionDeleting(ctx, "doomed"))
	before := countRows(t, s, "import_job", "1 = 1")
	for _, tt := range []struct {
		name  string
		job   ImportJob
		items []ImportItem
		want  error
	}{
		{"unknown collection", ImportJob{Collection: "nope"}, importItems(3), ErrNotFound},
		{"collection being deleted", ImportJob{Collection: "doomed"}, importItems(3), ErrNotFound},
		{"source not JSON", ImportJob{Collection: "c", Source: json.RawMessage(`{"kind":`)}, nil, ErrInvalid},
		{"metadata not JSON", ImportJob{Collection: "c"}, []ImportItem{{Path: "a"}, {Path: "b", Metadata: json.RawMessage(`nope`)}}, ErrInvalid},
		{"item enrolled at creation", ImportJob{Collection: "c"}, []ImportItem{{Path: "a", State: ItemEnrolled}}, ErrInvalid},
		{"unknown item state", ImportJob{Collection: "c"}, []ImportItem{{Path: "a", State: "odd"}}, ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateImportJob(ctx, tt.job, tt.items)
			wantErr(t, "CreateImportJob", err, tt.want)
		})
	}
	if n := countRows(t, s, "import_job", "1 = 1"); n != before {
		t.Errorf("%d jobs after refused creations, want %d", n, before)
	}
	_, err = s.GetImportJob(ctx, "nope")
	wantErr(t, "GetImportJob of an unknown job", err, ErrNotFound)
}

func testImportJobTransitions(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	steppingClock(t, s, start, time.Second)
	mustCollection(t, s, "c")

	// A step is StartImportJob (to == ""), FinishImportJob(to, errText),
	// or, with record, RecordImportItems of every item.
	type step struct {
		record  bool
		to      ImportState
		errText string
		want    ImportState // the state after the step
		wantErr error
	}
	start1 := step{want: ImportRunning}
	recordAll := step{record: true}
	tests := []struct {
		name  string
		steps []step
	}{
		{"queued, running, done", []step{start1, recordAll, {to: ImportDone, want: ImportDone}}},
		{"failed with an error", []step{start1, {to: ImportFailed, errText: "archive truncated", want: ImportFailed}}},
		{"failed before starting", []step{{to: ImportFailed, errText: "archive unreadable", want: ImportFailed}}},
		{"cancel from queued", []step{{to: ImportCancelled, want: ImportCancelled}}},
		{"cancel from running", []step{start1, {to: ImportCancelled, want: ImportCancelled}}},
		{"restart resumes", []step{start1, start1, start1, recordAll, {to: ImportDone, want: ImportDone}}},
		{"cancel after done refused", []step{start1, recordAll, {to: ImportDone, want: ImportDone},
			{to: ImportCancelled, wantErr: ErrConflict, want: ImportDone}}},
		{"start after cancel refused", []step{start1, {to: ImportCancelled, want: ImportCancelled},
			{wantErr: ErrConflict, want: ImportCancelled}}},
		{"start after done refused", []step{start1, recordAll, {to: ImportDone, want: ImportDone},
			{wantErr: ErrConflict, want: ImportDone}}},
		{"cancel twice refused", []step{{to: ImportCancelled, want: ImportCancelled},
			{to: ImportCancelled, wantErr: ErrConflict, want: ImportCancelled}}},
		{"fail after cancel refused", []step{{to: ImportCancelled, want: ImportCancelled},
			{to: ImportFailed, wantErr: ErrConflict, want: ImportCancelled}}},
		{"done with items pending refused", []step{start1, {to: ImportDone, wantErr: ErrConflict, want: ImportRunning},
			recordAll, {to: ImportDone, want: ImportDone}}},
		{"not a final state", []step{{to: ImportRunning, wantErr: ErrInvalid, want: ImportQueued},
			{to: ImportQueued, wantErr: ErrInvalid, want: ImportQueued}, {to: "odd", wantErr: ErrInvalid, want: ImportQueued}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := mustImportJob(t, s, "c", 4)
			var firstStart *time.Time
			for i, st := range tt.steps {
				var got ImportJob
				var err error
				switch {
				case st.record:
					got, err = s.RecordImportItems(ctx, job.ID, outcomes(seqRange(0, 4)...))
				case st.to == "":
					got, err = s.StartImportJob(ctx, job.ID)
				default:
					got, err = s.FinishImportJob(ctx, job.ID, st.to, st.errText)
				}
				if st.wantErr != nil {
					wantErr(t, fmt.Sprintf("step %d", i), err, st.wantErr)
				} else {
					noErr(t, fmt.Sprintf("step %d", i), err)
				}
				stored, err := s.GetImportJob(ctx, job.ID)
				noErr(t, "GetImportJob", err)
				if st.wantErr == nil && !importJobsEqual(got, stored) {
					t.Fatalf("step %d returned %+v, stored %+v", i, got, stored)
				}
				if !st.record && stored.State != st.want {
					t.Fatalf("step %d: state %s, want %s", i, stored.State, st.want)
				}
				if stored.StartedAt != nil && firstStart == nil {
					firstStart = stored.StartedAt
				}
				if firstStart != nil && (stored.StartedAt == nil || !stored.StartedAt.Equal(*firstStart)) {
					t.Fatalf("step %d: started_at %v, first set to %v", i, stored.StartedAt, firstStart)
				}
				if (stored.FinishedAt != nil) != stored.State.Finished() {
					t.Fatalf("step %d: state %s with finished_at %v", i, stored.State, stored.FinishedAt)
				}
				if st.wantErr == nil && st.to != "" {
					if stored.Error != st.errText {
						t.Fatalf("step %d: error %q, want %q", i, stored.Error, st.errText)
					}
					if !stored.FinishedAt.Equal(stored.UpdatedAt) {
						t.Fatalf("step %d: finished at %v, updated at %v", i, stored.FinishedAt, stored.UpdatedAt)
					}
				}
				job = stored
			}
		})
	}

	t.Run("unknown job", func(t *testing.T) {
		_, err := s.StartImportJob(ctx, "nope")
		wantErr(t, "StartImportJob", err, ErrNotFound)
		_, err = s.FinishImportJob(ctx, "nope", ImportCancelled, "")
		wantErr(t, "FinishImportJob", err, ErrNotFound)
	})
}

func testImportJobLists(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	steppingClock(t, s, time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), time.Second)
	for _, c := range []string{"a", "b", "doomed"} {
		mustCollection(t, s, c)
	}
	// Jobs in creation order, each left in a state.
	var jobs []ImportJob
	for i, tc := range []struct {
		collection string
		state      ImportState
	}{
		{"a", ImportRunning}, {"b", ImportQueued}, {"a", ImportDone}, {"doomed", ImportRunning},
		{"b", ImportCancelled}, {"a", ImportQueued}, {"b", ImportFailed}, {"a", ImportRunning},
	} {
		job := mustImportJob(t, s, tc.collection, 2)
		var err error
		switch tc.state {
		case ImportRunning:
			job, err = s.StartImportJob(ctx, job.ID)
		case ImportDone:
			_, err = s.StartImportJob(ctx, job.ID)
			if err == nil {
				_, err = s.RecordImportItems(ctx, job.ID, outcomes(0, 1))
			}
			if err == nil {
				job, err = s.FinishImportJob(ctx, job.ID, ImportDone, "")
			}
		case ImportCancelled, ImportFailed:
			job, err = s.FinishImportJob(ctx, job.ID, tc.state, "")
		}
		noErr(t, fmt.Sprintf("job %d to %s", i, tc.state), err)
		jobs = append(jobs, job)
	}
	noErr(t, "MarkCollectionDeleting", s.MarkCollectionDeleting(ctx, "doomed"))
	ids := func(js []ImportJob) []string {
		var out []string
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	pick := func(idx ...int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, jobs[i].ID)
		}
		return out
	}

	unfinished, err := s.UnfinishedImportJobs(ctx)
	noErr(t, "UnfinishedImportJobs", err)
	// Oldest first; not the job of the collection being deleted.
	if got, want := ids(unfinished), pick(0, 1, 5, 7); !slices.Equal(got, want) {
		t.Errorf("UnfinishedImportJobs = %v, want %v", got, want)
	}
	if !importJobsEqual(unfinished[0], jobs[0]) {
		t.Errorf("unfinished job %+v, want %+v", unfinished[0], jobs[0])
	}

	for _, tt := range []struct {
		collection string
		limit      int
		want       []string
	}{
		{"", 0, pick(7, 6, 5, 4, 2, 1, 0)},
		{"", 3, pick(7, 6, 5)},
		{"a", 0, pick(7, 5, 2, 0)},
		{"a", 2, pick(7, 5)},
		{"b", 10, pick(6, 4, 1)},
	} {
		t.Run(fmt.Sprintf("%q limit %d", tt.collection, tt.limit), func(t *testing.T) {
			got, err := s.ListImportJobs(ctx, tt.collection, tt.limit)
			noErr(t, "ListImportJobs", err)
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("ListImportJobs = %v, want %v", ids(got), tt.want)
			}
		})
	}
	for _, c := range []string{"nope", "doomed"} {
		_, err := s.ListImportJobs(ctx, c, 0)
		wantErr(t, "ListImportJobs of "+c, err, ErrNotFound)
	}
	// The jobs of a collection being deleted are gone for every method.
	doomed := jobs[3].ID
	_, err = s.GetImportJob(ctx, doomed)
	wantErr(t, "GetImportJob", err, ErrNotFound)
	_, err = s.StartImportJob(ctx, doomed)
	wantErr(t, "StartImportJob", err, ErrNotFound)
	_, err = s.PendingImportItems(ctx, doomed, -1, 0)
	wantErr(t, "PendingImportItems", err, ErrNotFound)
	_, err = s.RecordImportItems(ctx, doomed, outcomes(0))
	wantErr(t, "RecordImportItems", err, ErrNotFound)
}

func testPendingImportItems(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	const n = 130
	items := importItems(n)
	var pending []int
	for i := range items {
		// Every fifth item is known to be unusable at creation.
		if i%5 == 4 {
			items[i].State, items[i].Code = ItemFailed, "corrupt_image"
			continue
		}
		pending = append(pending, i)
	}
	job, err := s.CreateImportJob(ctx, ImportJob{Collection: "c"}, items)
	noErr(t, "CreateImportJob", err)

	// walk reads the pending items in pages of limit from after.
	walk := func(after, limit int) []int {
		var seqs []int
		for {
			page, err := s.PendingImportItems(ctx, job.ID, after, limit)
			noErr(t, "PendingImportItems", err)
			for _, it := range page {
				if it.State != ItemPending || it.JobID != job.ID || it.Path != items[it.Seq].Path {
					t.Fatalf("pending item %+v", it)
				}
			}
			seqs = append(seqs, itemSeqs(page)...)
			if len(page) < max(limit, 1) || limit == 0 {
				return seqs
			}
			after = page[len(page)-1].Seq
		}
	}
	for _, tt := range []struct {
		name         string
		after, limit int
		want         []int
	}{
		{"pages of 7", -1, 7, pending},
		{"one page", -1, 1000, pending},
		{"default limit", -1, 0, pending[:100]},
		{"from the middle", 60, 7, pending[slices.Index(pending, 61):]},
		{"after a failed item", 64, 7, pending[slices.Index(pending, 65):]},
		{"past the end", n, 7, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := walk(tt.after, tt.limit); !slices.Equal(got, tt.want) {
				t.Errorf("pending seqs %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("recorded items leave the queue", func(t *testing.T) {
		_, err := s.RecordImportItems(ctx, job.ID, outcomes(0, 1, 2, 50, 129))
		noErr(t, "RecordImportItems", err)
		var want []int
		for _, seq := range pending {
			if !slices.Contains([]int{0, 1, 2, 50, 129}, seq) {
				want = append(want, seq)
			}
		}
		if got := walk(-1, 9); !slices.Equal(got, want) {
			t.Errorf("pending seqs %v, want %v", got, want)
		}
	})
	t.Run("unknown job", func(t *testing.T) {
		_, err := s.PendingImportItems(ctx, "nope", -1, 10)
		wantErr(t, "PendingImportItems", err, ErrNotFound)
	})
}

func testRecordImportItems(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	steppingClock(t, s, start, time.Second)
	mustCollection(t, s, "c")
	items := importItems(10)
	items[9].State, items[9].Code = ItemSkipped, "unsupported_format"
	job, err := s.CreateImportJob(ctx, ImportJob{Collection: "c"}, items)
	noErr(t, "CreateImportJob", err)
	_, err = s.StartImportJob(ctx, job.ID)
	noErr(t, "StartImportJob", err)

	steps := []struct {
		name    string
		record  []ImportItem
		want    string // counts after the step: total done enrolled skipped failed
		wantErr error
	}{
		{"one item", outcomes(0), "10 2 1 1 0", nil},
		{"the same item again", outcomes(0), "10 2 1 1 0", nil},
		{"the same item with another outcome", []ImportItem{{Seq: 0, State: ItemFailed, Code: "no_face"}}, "10 2 1 1 0", nil},
		{"a mix of new and recorded", outcomes(3, 0, 1, 2), "10 5 2 2 1", nil},
		{"one item twice in a batch", append(outcomes(4), ImportItem{Seq: 4, State: ItemSkipped}), "10 6 2 3 1", nil},
		{"an item skipped at creation", []ImportItem{{Seq: 9, State: ItemEnrolled}}, "10 6 2 3 1", nil},
		{"unknown item: nothing recorded", outcomes(5, 10), "10 6 2 3 1", ErrNotFound},
		{"negative seq", outcomes(5, -1), "10 6 2 3 1", ErrNotFound},
		{"pending is no outcome", []ImportItem{outcome(5), {Seq: 6, State: ItemPending}}, "10 6 2 3 1", ErrInvalid},
		{"no state is no outcome", []ImportItem{{Seq: 6}}, "10 6 2 3 1", ErrInvalid},
		{"nothing", nil, "10 6 2 3 1", nil},
		{"the rest", outcomes(8, 7, 6, 5), "10 10 3 4 3", nil},
	}
	for _, st := range steps {
		before, err := s.GetImportJob(ctx, job.ID)
		noErr(t, "GetImportJob", err)
		got, err := s.RecordImportItems(ctx, job.ID, st.record)
		if st.wantErr != nil {
			wantErr(t, st.name, err, st.wantErr)
			got, err = s.GetImportJob(ctx, job.ID)
			noErr(t, "GetImportJob", err)
		} else {
			noErr(t, st.name, err)
		}
		if jobCounts(got) != st.want {
			t.Fatalf("%s: counts %s, want %s", st.name, jobCounts(got), st.want)
		}
		stored, err := s.GetImportJob(ctx, job.ID)
		noErr(t, "GetImportJob", err)
		if !importJobsEqual(got, stored) {
			t.Fatalf("%s: returned %+v, stored %+v", st.name, got, stored)
		}
		// updated_at moves only when something was recorded.
		if changed := jobCounts(before) != jobCounts(stored); changed == stored.UpdatedAt.Equal(before.UpdatedAt) {
			t.Fatalf("%s: counts changed %v, updated_at %v then %v", st.name, changed, before.UpdatedAt, stored.UpdatedAt)
		}
	}

	// Each item keeps the first outcome recorded for it.
	stored := allImportItems(t, s, job.ID, nil, 100)
	for i, it := range stored {
		want := outcome(i)
		if i == 9 {
			want = ImportItem{State: ItemSkipped, Code: "unsupported_format"}
		}
		want.JobID, want.Seq, want.Path, want.ExternalID, want.DisplayName = job.ID, i, items[i].Path, items[i].ExternalID, items[i].DisplayName
		if !importItemsEqual(it, want) {
			t.Errorf("item %d = %+v, want %+v", i, it, want)
		}
	}
	_, err = s.FinishImportJob(ctx, job.ID, ImportDone, "")
	noErr(t, "FinishImportJob", err)

	t.Run("after cancellation", func(t *testing.T) {
		// An enrollment in flight when its job was cancelled is recorded.
		job := mustImportJob(t, s, "c", 3)
		_, err := s.FinishImportJob(ctx, job.ID, ImportCancelled, "")
		noErr(t, "FinishImportJob", err)
		got, err := s.RecordImportItems(ctx, job.ID, outcomes(0))
		noErr(t, "RecordImportItems", err)
		if got.State != ImportCancelled || jobCounts(got) != "3 1 1 0 0" {
			t.Errorf("cancelled job after a record: %s %s", got.State, jobCounts(got))
		}
	})
	t.Run("unknown job", func(t *testing.T) {
		_, err := s.RecordImportItems(ctx, "nope", outcomes(0))
		wantErr(t, "RecordImportItems", err, ErrNotFound)
	})
}

// testConcurrentRecordImportItems records the outcomes of one job's items
// from several goroutines at once, as an import's workers and a runner
// redoing items after a restart would: first disjoint items (contending
// only for the job's counters), then every goroutine the same items in
// different batches and orders. Each item is counted once.
func testConcurrentRecordImportItems(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	const n, workers, batch = 600, 6, 8
	job := mustImportJob(t, s, "c", n)

	// record records seqs in batches from one goroutine per worker.
	record := func(seqsOf func(w int) []int) {
		var wg sync.WaitGroup
		for w := range workers {
			seqs := seqsOf(w)
			wg.Go(func() {
				for len(seqs) > 0 {
					k := min(batch, len(seqs))
					if _, err := s.RecordImportItems(ctx, job.ID, outcomes(seqs[:k]...)); err != nil {
						t.Errorf("worker %d: RecordImportItems: %v", w, err)
						return
					}
					seqs = seqs[k:]
				}
			})
		}
		wg.Wait()
	}
	// Disjoint: worker w has the items w, w+workers, ... of the first half.
	record(func(w int) []int {
		var seqs []int
		for seq := w; seq < n/2; seq += workers {
			seqs = append(seqs, seq)
		}
		return seqs
	})
	// Overlapping: every worker every item of the second half, each in its
	// own order, plus some of the first half again.
	record(func(w int) []int {
		seqs := append(seqRange(n/2, n), seqRange(0, 20)...)
		rand.New(rand.NewPCG(uint64(w), 1)).Shuffle(len(seqs), func(i, j int) { seqs[i], seqs[j] = seqs[j], seqs[i] })
		return seqs
	})

	got, err := s.GetImportJob(ctx, job.ID)
	noErr(t, "GetImportJob", err)
	if want := fmt.Sprint(n, " ", n, " ", n/3, " ", n/3, " ", n/3); jobCounts(got) != want {
		t.Fatalf("counts %s, want %s", jobCounts(got), want)
	}
	for _, it := range allImportItems(t, s, job.ID, nil, 1000) {
		if want := outcome(it.Seq); it.State != want.State || it.Code != want.Code || it.FaceID != want.FaceID {
			t.Fatalf("item %d = %+v, want outcome %+v", it.Seq, it, want)
		}
	}
}

func testImportItemsByState(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "c")
	const n = 60
	items := importItems(n)
	items[7].State, items[7].Code = ItemSkipped, "missing_file"
	job, err := s.CreateImportJob(ctx, ImportJob{Collection: "c"}, items)
	noErr(t, "CreateImportJob", err)
	// Items below 45 get outcome(seq), except 7 (skipped at creation);
	// the rest stay pending.
	var recorded []int
	for seq := range 45 {
		if seq != 7 {
			recorded = append(recorded, seq)
		}
	}
	_, err = s.RecordImportItems(ctx, job.ID, outcomes(recorded...))
	noErr(t, "RecordImportItems", err)
	stateOf := func(seq int) ItemState {
		switch {
		case seq == 7:
			return ItemSkipped
		case seq >= 45:
			return ItemPending
		}
		return outcome(seq).State
	}
	want := func(after int, states ...ItemState) []int {
		var seqs []int
		for seq := after + 1; seq < n; seq++ {
			if len(states) == 0 || slices.Contains(states, stateOf(seq)) {
				seqs = append(seqs, seq)
			}
		}
		return seqs
	}

	for _, tt := range []struct {
		name   string
		states []ItemState
		limit  int
	}{
		{"failures report", []ItemState{ItemFailed, ItemSkipped}, 4},
		{"failed", []ItemState{ItemFailed}, 3},
		{"skipped", []ItemState{ItemSkipped}, 100},
		{"enrolled", []ItemState{ItemEnrolled}, 5},
		{"pending", []ItemState{ItemPending}, 6},
		{"enrolled and failed", []ItemState{ItemEnrolled, ItemFailed}, 7},
		{"a state twice", []ItemState{ItemFailed, ItemFailed}, 7},
		{"all", nil, 11},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := allImportItems(t, s, job.ID, tt.states, tt.limit)
			if !slices.Equal(itemSeqs(got), want(-1, tt.states...)) {
				t.Fatalf("seqs %v, want %v", itemSeqs(got), want(-1, tt.states...))
			}
			for _, it := range got {
				if it.State != stateOf(it.Seq) {
					t.Fatalf("item %d in state %s, want %s", it.Seq, it.State, stateOf(it.Seq))
				}
			}
			page, err := s.ImportItems(ctx, job.ID, tt.states, 30, tt.limit)
			noErr(t, "ImportItems after 30", err)
			if w := want(30, tt.states...); !slices.Equal(itemSeqs(page), w[:min(len(w), tt.limit)]) {
				t.Fatalf("page after 30: %v, want the first %d of %v", itemSeqs(page), tt.limit, w)
			}
		})
	}
	failed, err := s.ImportItems(ctx, job.ID, []ItemState{ItemFailed}, -1, 1)
	noErr(t, "ImportItems", err)
	if len(failed) != 1 || failed[0].Code != "no_face" || failed[0].Reason != "no face in photo 2" || failed[0].Path != items[2].Path {
		t.Errorf("first failure %+v", failed)
	}
	_, err = s.ImportItems(ctx, job.ID, []ItemState{"odd"}, -1, 10)
	wantErr(t, "ImportItems of an unknown state", err, ErrInvalid)
	_, err = s.ImportItems(ctx, "nope", nil, -1, 10)
	wantErr(t, "ImportItems of an unknown job", err, ErrNotFound)
}

func testImportJobsCascade(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	setDeleteBatch(t, s, 3)
	mustCollection(t, s, "doomed")
	mustCollection(t, s, "kept")
	for i := range 4 {
		sub := mustSubject(t, s, "doomed", fmt.Sprint("d", i), "")
		mustFace(t, s, sub, "x")
	}
	doomed := []ImportJob{mustImportJob(t, s, "doomed", 50), mustImportJob(t, s, "doomed", 7)}
	kept := mustImportJob(t, s, "kept", 5)
	_, err := s.RecordImportItems(ctx, doomed[0].ID, outcomes(1, 2, 3))
	noErr(t, "RecordImportItems", err)

	noErr(t, "MarkCollectionDeleting", s.MarkCollectionDeleting(ctx, "doomed"))
	noErr(t, "DeleteCollection", s.DeleteCollection(ctx, "doomed"))
	if n := countRows(t, s, "import_job", "collection = ?", "doomed"); n != 0 {
		t.Errorf("%d jobs of the deleted collection left", n)
	}
	for _, j := range doomed {
		if n := countRows(t, s, "import_item", "job_id = ?", j.ID); n != 0 {
			t.Errorf("%d items of job %s left", n, j.ID)
		}
	}
	if _, err := s.GetImportJob(ctx, kept.ID); err != nil {
		t.Errorf("job of another collection: %v", err)
	}
	if n := countRows(t, s, "import_item", "job_id = ?", kept.ID); n != 5 {
		t.Errorf("%d items of the kept job, want 5", n)
	}
	// The name is free again, with no jobs.
	mustCollection(t, s, "doomed")
	jobs, err := s.ListImportJobs(ctx, "doomed", 0)
	noErr(t, "ListImportJobs", err)
	if len(jobs) != 0 {
		t.Errorf("new collection has jobs %+v", jobs)
	}
}

// testImportJob100k creates a job of 100,000 items, some known to be
// skipped at creation, and checks its counts and the queries a runner and
// the failures report make at that size: the first, a middle and the last
// page of the queue, a batch of outcomes, the report. No timing is
// asserted (BenchmarkCreateImportJob100k measures), and the outcomes of
// only a few pages are recorded: SQLite under the race detector runs
// about twenty times slower, and the creation alone then takes some
// twenty seconds.
func testImportJob100k(t *testing.T, b backend) {
	if testing.Short() {
		t.Skip("100,000 items")
	}
	ctx := context.Background()
	s := b.openTest(t)
	mustCollection(t, s, "big")
	const n, every = 100_000, 100
	items := importItems(n)
	for seq := 0; seq < n; seq += every {
		items[seq].State, items[seq].Code = ItemSkipped, "missing_file"
	}
	const skippedAtCreation = n / every
	job, err := s.CreateImportJob(ctx, ImportJob{Collection: "big"}, items)
	noErr(t, "CreateImportJob", err)
	if want := fmt.Sprint(n, " ", skippedAtCreation, " 0 ", skippedAtCreation, " 0"); jobCounts(job) != want {
		t.Fatalf("counts %s, want %s", jobCounts(job), want)
	}
	if got := countRows(t, s, "import_item", "job_id = ?", job.ID); got != n {
		t.Fatalf("%d items stored, want %d", got, n)
	}
	if got := countRows(t, s, "import_item", "job_id = ? AND state = 'pending'", job.ID); got != n-skippedAtCreation {
		t.Fatalf("%d items pending, want %d", got, n-skippedAtCreation)
	}
	_, err = s.StartImportJob(ctx, job.ID)
	noErr(t, "StartImportJob", err)

	// pendingAfter is what the queue holds after seq: every seq not a
	// multiple of every.
	pendingAfter := func(after, limit int) []int {
		var seqs []int
		for seq := after + 1; seq < n && len(seqs) < limit; seq++ {
			if seq%every != 0 {
				seqs = append(seqs, seq)
			}
		}
		return seqs
	}
	for _, after := range []int{-1, n / 2, n - 3*every/2} {
		page, err := s.PendingImportItems(ctx, job.ID, after, 1000)
		noErr(t, "PendingImportItems", err)
		if got, want := itemSeqs(page), pendingAfter(after, 1000); !slices.Equal(got, want) {
			t.Fatalf("page after %d: %d items from %v, want %d from %v", after, len(got), got[:min(len(got), 3)], len(want), want[:3])
		}
		if after < 0 {
			if page[0].Path != items[page[0].Seq].Path {
				t.Fatalf("first pending item %+v, want path %q", page[0], items[page[0].Seq].Path)
			}
			got, err := s.RecordImportItems(ctx, job.ID, outcomes(itemSeqs(page)...))
			noErr(t, "RecordImportItems", err)
			var c importCounts
			for _, it := range outcomes(itemSeqs(page)...) {
				c.add(it.State)
			}
			want := fmt.Sprint(n, " ", skippedAtCreation+c.done, " ", c.enrolled, " ", skippedAtCreation+c.skipped, " ", c.failed)
			if jobCounts(got) != want {
				t.Fatalf("counts %s, want %s", jobCounts(got), want)
			}
		}
	}
	report := allImportItems(t, s, job.ID, []ItemState{ItemFailed, ItemSkipped}, 700)
	got, err := s.GetImportJob(ctx, job.ID)
	noErr(t, "GetImportJob", err)
	if len(report) != got.Skipped+got.Failed || !slices.IsSorted(itemSeqs(report)) {
		t.Fatalf("%d items in the failures report, want %d in seq order", len(report), got.Skipped+got.Failed)
	}
	_, err = s.FinishImportJob(ctx, job.ID, ImportDone, "")
	wantErr(t, "FinishImportJob(done) with items pending", err, ErrConflict)
	got, err = s.FinishImportJob(ctx, job.ID, ImportCancelled, "")
	noErr(t, "FinishImportJob(cancelled)", err)
	if got.State != ImportCancelled || got.Total != n {
		t.Fatalf("cancelled job %+v", got)
	}
}

// testUpgradeFromVersion1 opens a database that a release before import
// jobs migrated (version 1 only, with a collection in it): the store
// applies the later migrations, keeps the data, and imports into the old
// collection.
func testUpgradeFromVersion1(t *testing.T, b backend) {
	ctx := context.Background()
	ms, err := readMigrations(b.migrations)
	noErr(t, "readMigrations", err)
	db := b.newDB(t)
	// A collection, and two enrollment events of 2026-01-05 from before
	// enroll_day (0005), which its migration must count; an identification
	// for identify_hour (0006); subjects and faces for collection_count
	// (0007).
	const insertFmt = `INSERT INTO collection (name, threshold, state, created_at) VALUES ('old', 0.5, 'active', 1);
		INSERT INTO event (at, kind, collection, outcome) VALUES
			(1767610800000000000, 'enroll', 'old', 'enrolled'), (1767614400000000000, 'enroll', 'old', 'enrolled'),
			(1767614400000000000, 'enroll', 'old', 'exists');
		INSERT INTO event (at, kind, collection, outcome, detail) VALUES
			(1767614400000000000, 'identify', 'old', '1/2 matched', '{"faces": 2, "best_distances": [0.12, 0.71]}');
		INSERT INTO subject (id, collection, created_at, updated_at) VALUES ('s1', 'old', 1, 1), ('s2', 'old', 1, 1);
		INSERT INTO face (id, subject_id, collection, descriptor, model_id, box_x0, box_y0, box_x1, box_y1, state, created_at) VALUES
			('f1', 's1', 'old', %[1]s, 'm', 0, 0, 1, 1, 'pending', 1), ('f2', 's1', 'old', %[1]s, 'm', 0, 0, 1, 1, 'indexed', 1),
			('f3', 's1', 'old', %[1]s, 'm', 0, 0, 1, 1, 'deleting', 1)`
	// The face descriptors: four bytes, as each dialect writes them.
	blob := map[string]string{"sqlite": `X'0000803f'`, "postgres": `'\x0000803f'::bytea`}[b.name]
	insert := fmt.Sprintf(insertFmt, blob)
	switch b.name {
	case "sqlite":
		raw, err := sql.Open("sqlite", "file:"+db+"?_txlock=immediate")
		noErr(t, "open", err)
		raw.SetMaxOpenConns(1)
		noErr(t, "migrate to version 1", applySQLiteMigrations(ctx, raw, ms[:1], time.Now))
		_, err = raw.ExecContext(ctx, insert)
		noErr(t, "insert", err)
		noErr(t, "close", raw.Close())
	case "postgres":
		raw, err := pgx.Connect(ctx, db)
		noErr(t, "connect", err)
		noErr(t, "migrate to version 1", applyPostgresMigrations(ctx, raw, ms[:1], time.Now))
		_, err = raw.Exec(ctx, insert)
		noErr(t, "insert", err)
		noErr(t, "close", raw.Close(ctx))
	default:
		t.Fatalf("unknown backend %s", b.name)
	}
	s := b.openAt(t, db)
	if got := appliedMigrations(t, s); len(got) != len(ms) {
		t.Fatalf("migrations %v after the upgrade, want %d", got, len(ms))
	}
	c, err := s.GetCollection(ctx, "old")
	noErr(t, "GetCollection", err)
	// 0008: a collection from before the open-set policy keeps its fixed
	// threshold, with no target and no calibration yet.
	if c.Threshold != 0.5 || c.TargetFPIR != 0 || c.Calibration != nil {
		t.Errorf("collection after the upgrade %+v", c)
	}
	job := mustImportJob(t, s, "old", 3)
	if jobCounts(job) != "3 0 0 0 0" {
		t.Errorf("job counts %s", jobCounts(job))
	}
	days, err := s.EnrollmentsPerDay(ctx, "old", time.Time{})
	noErr(t, "EnrollmentsPerDay", err)
	if want := []DayCount{{"2026-01-05", 2}}; !slices.Equal(days, want) {
		t.Errorf("enrollments per day after the upgrade %v, want %v", days, want)
	}
	// And the identification counters of 0006.
	ids, err := s.IdentificationStats(ctx, "old", time.Time{})
	noErr(t, "IdentificationStats", err)
	if ids.Identifications != 1 || ids.Faces != 2 || len(ids.Distances) != 15 || ids.Distances[2].Count != 1 || ids.Distances[14].Count != 1 {
		t.Errorf("identification stats after the upgrade %+v", ids)
	}
	st, err := s.CollectionStats(ctx, "old")
	noErr(t, "CollectionStats", err)
	if st.Subjects != 2 || st.Faces != 2 || st.PendingFaces != 1 || st.DescriptorBytes != 8 {
		t.Errorf("collection stats after the upgrade %+v", st)
	}
	wantCountsAsRows(t, s, "old", "after the upgrade")
}
