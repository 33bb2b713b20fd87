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
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"

	"github.com/visage/visage/migrations"
)

// openTestStore opens a store on a new file in a temporary directory.
func openTestStore(t *testing.T) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "visage.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// steppingClock makes s's clock start at start and advance by step at
// each reading. Not for concurrent tests.
func steppingClock(s *SQLite, start time.Time, step time.Duration) {
	next := start
	s.now = func() time.Time {
		t := next
		next = next.Add(step)
		return t
	}
}

func mustCollection(t *testing.T, s *SQLite, name string) Collection {
	t.Helper()
	c, err := s.CreateCollection(context.Background(), Collection{Name: name, Threshold: 0.6})
	if err != nil {
		t.Fatalf("CreateCollection(%q): %v", name, err)
	}
	return c
}

func mustSubject(t *testing.T, s *SQLite, collection, externalID, name string) Subject {
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
func mustFace(t *testing.T, s *SQLite, sub Subject, sha string) Face {
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
func countRows(t *testing.T, s *SQLite, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := s.read.QueryRow(`SELECT count(*) FROM `+table+` WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestOpenSQLite(t *testing.T) {
	ctx := context.Background()

	t.Run("durability pragmas", func(t *testing.T) {
		s := openTestStore(t)
		conn, err := s.write.Conn(ctx)
		noErr(t, "Conn", err)
		defer func() { _ = conn.Close() }()
		for _, p := range []struct{ pragma, want string }{
			{"journal_mode", "wal"}, {"synchronous", "2"}, {"foreign_keys", "1"}, {"temp_store", "2"},
		} {
			var got string
			noErr(t, p.pragma, conn.QueryRowContext(ctx, "PRAGMA "+p.pragma).Scan(&got))
			if got != p.want {
				t.Errorf("PRAGMA %s = %s, want %s", p.pragma, got, p.want)
			}
		}
		_, err = s.read.ExecContext(ctx, `INSERT INTO collection (name, threshold, created_at) VALUES ('x', 1, 0)`)
		if err == nil {
			t.Error("a write through the read pool succeeded")
		}
	})

	t.Run("no in-memory database", func(t *testing.T) {
		for _, p := range []string{"", ":memory:"} {
			_, err := OpenSQLite(ctx, p)
			wantErr(t, fmt.Sprintf("OpenSQLite(%q)", p), err, ErrInvalid)
		}
	})

	t.Run("path with URI characters", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a?b#c%20d.db")
		s, err := OpenSQLite(ctx, path)
		noErr(t, "OpenSQLite", err)
		mustCollection(t, s, "c")
		noErr(t, "Close", s.Close())
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("database not at %s: %v", path, err)
		}
	})

	t.Run("reopen keeps data and does not reapply migrations", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "visage.db")
		s, err := OpenSQLite(ctx, path)
		noErr(t, "OpenSQLite", err)
		mustCollection(t, s, "kept")
		before := appliedMigrations(t, s)
		noErr(t, "Close", s.Close())

		s, err = OpenSQLite(ctx, path)
		noErr(t, "reopen", err)
		defer func() { _ = s.Close() }()
		if _, err := s.GetCollection(ctx, "kept"); err != nil {
			t.Fatalf("collection lost on reopen: %v", err)
		}
		after := appliedMigrations(t, s)
		if !slices.Equal(before, after) {
			t.Fatalf("schema_migrations changed on reopen: %v, then %v", before, after)
		}
		ms, err := readMigrations(mustSub(t, migrations.SQLite, "sqlite"))
		noErr(t, "readMigrations", err)
		if len(after) != len(ms) {
			t.Fatalf("%d migrations recorded, %d embedded", len(after), len(ms))
		}
	})

	t.Run("refuses a newer schema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "visage.db")
		s, err := OpenSQLite(ctx, path)
		noErr(t, "OpenSQLite", err)
		_, err = s.write.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (999999, 0)`)
		noErr(t, "insert version", err)
		noErr(t, "Close", s.Close())
		if s, err := OpenSQLite(ctx, path); err == nil {
			_ = s.Close()
			t.Fatal("opened a database migrated by a newer program")
		}
	})
}

// appliedMigrations lists schema_migrations as "version@applied_at".
func appliedMigrations(t *testing.T, s *SQLite) []string {
	t.Helper()
	rows, err := s.read.Query(`SELECT version, applied_at FROM schema_migrations ORDER BY version`)
	noErr(t, "read schema_migrations", err)
	defer func() { _ = rows.Close() }()
	var out []string
	for rows.Next() {
		var v, at int64
		noErr(t, "scan", rows.Scan(&v, &at))
		out = append(out, fmt.Sprintf("%d@%d", v, at))
	}
	noErr(t, "rows", rows.Err())
	return out
}

func mustSub(t *testing.T, fsys fs.FS, dir string) fs.FS {
	t.Helper()
	sub, err := fs.Sub(fsys, dir)
	noErr(t, "fs.Sub", err)
	return sub
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	ms, err := readMigrations(mustSub(t, migrations.SQLite, "sqlite"))
	noErr(t, "readMigrations", err)
	// A few rounds, each on a new file, to give the race a chance.
	for round := range 3 {
		path := filepath.Join(t.TempDir(), fmt.Sprint(round, ".db"))
		const openers = 4
		stores := make([]*SQLite, openers)
		errs := make([]error, openers)
		var wg sync.WaitGroup
		for i := range openers {
			wg.Go(func() { stores[i], errs[i] = OpenSQLite(context.Background(), path) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, opener %d: %v", round, i, err)
			}
			t.Cleanup(func() { _ = stores[i].Close() })
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

func TestReadMigrations(t *testing.T) {
	tests := []struct {
		name     string
		files    fstest.MapFS
		versions []int64
		wantErr  bool
	}{
		{
			name: "ordered by number, not by name",
			files: fstest.MapFS{
				"0010_later.sql": {Data: []byte("SELECT 10;")},
				"0002_b.sql":     {Data: []byte("SELECT 2;")},
				"0001_a.sql":     {Data: []byte("SELECT 1;")},
				"README.md":      {Data: []byte("not a migration")},
			},
			versions: []int64{1, 2, 10},
		},
		{name: "no underscore", files: fstest.MapFS{"0001.sql": {}}, wantErr: true},
		{name: "not a number", files: fstest.MapFS{"one_init.sql": {}}, wantErr: true},
		{name: "version zero", files: fstest.MapFS{"0000_init.sql": {}}, wantErr: true},
		{name: "duplicate version", files: fstest.MapFS{"0001_a.sql": {}, "1_b.sql": {}}, wantErr: true},
		{name: "empty", files: fstest.MapFS{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := readMigrations(tt.files)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			var got []int64
			for _, m := range ms {
				got = append(got, m.version)
			}
			if !slices.Equal(got, tt.versions) {
				t.Fatalf("versions %v, want %v", got, tt.versions)
			}
		})
	}
}

func TestFailedMigrationRollsBack(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "m.db")+"?_txlock=immediate")
	noErr(t, "open", err)
	defer func() { _ = db.Close() }()
	db.SetMaxOpenConns(1)
	good := migration{version: 1, name: "0001_a.sql", body: "CREATE TABLE a (x INTEGER);"}
	bad := migration{version: 2, name: "0002_b.sql", body: "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);"}

	err = applySQLiteMigrations(ctx, db, []migration{good, bad}, time.Now)
	if err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("applying a broken migration: error %v, want one naming 0002_b.sql", err)
	}
	tables := func() []string {
		rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
		noErr(t, "list tables", err)
		defer func() { _ = rows.Close() }()
		var names []string
		for rows.Next() {
			var n string
			noErr(t, "scan", rows.Scan(&n))
			names = append(names, n)
		}
		return names
	}
	if got, want := tables(), []string{"a", "schema_migrations"}; !slices.Equal(got, want) {
		t.Fatalf("tables after the failure: %v, want %v (b rolled back)", got, want)
	}

	fixed := migration{version: 2, name: "0002_b.sql", body: "CREATE TABLE b (x INTEGER);"}
	noErr(t, "apply fixed", applySQLiteMigrations(ctx, db, []migration{good, fixed}, time.Now))
	if got, want := tables(), []string{"a", "b", "schema_migrations"}; !slices.Equal(got, want) {
		t.Fatalf("tables: %v, want %v", got, want)
	}
}

func TestCollections(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	steppingClock(s, t0, time.Second)

	b, err := s.CreateCollection(ctx, Collection{Name: "b", Threshold: 0.5})
	noErr(t, "create b", err)
	if !b.CreatedAt.Equal(t0) || b.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt %v, want %v UTC", b.CreatedAt, t0)
	}
	mustCollection(t, s, "a")
	mustCollection(t, s, "c")

	_, err = s.CreateCollection(ctx, Collection{Name: "b", Threshold: 0.1})
	wantErr(t, "create duplicate", err, ErrConflict)

	got, err := s.GetCollection(ctx, "b")
	noErr(t, "get", err)
	if got != b {
		t.Errorf("GetCollection = %+v, want %+v", got, b)
	}
	_, err = s.GetCollection(ctx, "nope")
	wantErr(t, "get absent", err, ErrNotFound)

	up, err := s.UpdateCollectionThreshold(ctx, "b", 0.42)
	noErr(t, "update threshold", err)
	if up.Threshold != 0.42 || !up.CreatedAt.Equal(b.CreatedAt) {
		t.Errorf("UpdateCollectionThreshold = %+v", up)
	}
	_, err = s.UpdateCollectionThreshold(ctx, "nope", 1)
	wantErr(t, "update absent", err, ErrNotFound)

	noErr(t, "mark deleting", s.MarkCollectionDeleting(ctx, "b"))
	noErr(t, "mark deleting again", s.MarkCollectionDeleting(ctx, "b"))
	wantErr(t, "mark absent deleting", s.MarkCollectionDeleting(ctx, "nope"), ErrNotFound)

	list, err := s.ListCollections(ctx)
	noErr(t, "list", err)
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
	}
	if want := []string{"a", "c"}; !slices.Equal(names, want) {
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
	_, err = s.UpdateCollectionThreshold(ctx, "b", 1)
	wantErr(t, "update deleting", err, ErrNotFound)
	_, err = s.CreateCollection(ctx, Collection{Name: "b"})
	wantErr(t, "create over deleting", err, ErrConflict)
	_, err = s.CreateSubject(ctx, Subject{Collection: "b"})
	wantErr(t, "create subject in deleting", err, ErrNotFound)
	_, _, err = s.ListSubjects(ctx, SubjectQuery{Collection: "b"})
	wantErr(t, "list subjects of deleting", err, ErrNotFound)
	_, err = s.CollectionStats(ctx, "b")
	wantErr(t, "stats of deleting", err, ErrNotFound)
}

func TestDeleteCollection(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	s.deleteBatch = 3 // several batches of faces and of subjects
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

func TestSubjects(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	steppingClock(s, t0, time.Millisecond)
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

// subjectsEqual compares subjects, their metadata as text.
func subjectsEqual(a, b Subject) bool {
	return a.ID == b.ID && a.Collection == b.Collection && a.ExternalID == b.ExternalID &&
		a.DisplayName == b.DisplayName && string(a.Metadata) == string(b.Metadata) &&
		a.FaceCount == b.FaceCount && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestListSubjects(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	mustCollection(t, s, "c")
	mustCollection(t, s, "other")
	// Three subjects per clock reading: the cursor must break ties by id.
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	s.now = func() time.Time {
		n++
		return t0.Add(time.Duration(n/3) * time.Second)
	}
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
		bulkFaces(t, s, "big", maxSubjectPage+1, 0)
		for _, tt := range []struct{ limit, want int }{{0, defaultSubjectPage}, {-1, defaultSubjectPage}, {5000, maxSubjectPage}} {
			subs, next, err := s.ListSubjects(ctx, SubjectQuery{Collection: "big", Limit: tt.limit})
			noErr(t, "ListSubjects", err)
			if len(subs) != tt.want || next == "" {
				t.Errorf("Limit %d: %d subjects, next %q; want %d and a next page", tt.limit, len(subs), next, tt.want)
			}
		}
	})
}

func TestInsertFace(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
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

func TestFaceLifecycle(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
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
			var got string
			noErr(t, "read state", s.read.QueryRow(`SELECT state FROM face WHERE key = ?`, int64(key)).Scan(&got))
			if FaceState(got) != st {
				t.Errorf("face %d is %s, want %s", key, got, st)
			}
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
}

func TestReconcilerQueriesUseTheirIndex(t *testing.T) {
	s := openTestStore(t)
	for name, q := range map[string]string{"pending": pendingFacesQuery, "deleting": deletingFacesQuery} {
		t.Run(name, func(t *testing.T) {
			rows, err := s.read.Query("EXPLAIN QUERY PLAN "+q, 10)
			noErr(t, "explain", err)
			defer func() { _ = rows.Close() }()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				noErr(t, "scan", rows.Scan(&id, &parent, &unused, &detail))
				plan = append(plan, detail)
			}
			noErr(t, "rows", rows.Err())
			if len(plan) != 1 || !strings.Contains(plan[0], "INDEX face_unsettled") {
				t.Fatalf("plan %q, want a search of face_unsettled alone", plan)
			}
		})
	}
}

func TestVectorsAndScanAtScale(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	s.keysChunk = 7 // many chunks, ending on keys of every state
	mustCollection(t, s, "c")
	mustCollection(t, s, "other")
	// More keys than one IN list holds, interleaved with another
	// collection's, a third of them being deleted.
	keys := bulkFaces(t, s, "c", 600, 2, FacePending, FaceIndexed, FaceDeleting)
	bulkFaces(t, s, "other", 50, 2)
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

func faceIDByKey(t *testing.T, s *SQLite, key uint64) string {
	t.Helper()
	var id string
	noErr(t, "face id", s.read.QueryRow(`SELECT id FROM face WHERE key = ?`, int64(key)).Scan(&id))
	return id
}

func TestKeysNeverReused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "visage.db")
	s, err := OpenSQLite(ctx, path)
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

	// Nor after deleting the subject, and reopening the file.
	noErr(t, "delete subject", s.DeleteSubject(ctx, "c", sub.ID))
	noErr(t, "close", s.Close())
	s, err = OpenSQLite(ctx, path)
	noErr(t, "reopen", err)
	defer func() { _ = s.Close() }()
	later := mustFace(t, s, mustSubject(t, s, "c", "b", ""), "4")
	if later.Key <= next.Key {
		t.Fatalf("key %d reused after deleting face %d and reopening", later.Key, next.Key)
	}
}

func TestSubjectDeletion(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
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

func TestAPIKeys(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	steppingClock(s, t0, time.Minute)
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

func TestEvents(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	steppingClock(s, t0, time.Hour)
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

func TestCollectionStatsAndTopSubjects(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
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

func TestEnrollmentsPerDay(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
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

func TestConcurrentWritersAndReaders(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
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

func mustIndexedKeys(t *testing.T, s *SQLite, collection string) []uint64 {
	t.Helper()
	keys, err := s.IndexedKeys(context.Background(), collection)
	noErr(t, "IndexedKeys", err)
	return keys
}

// TestTwoStoresOneFile writes through two stores opened on one file, as
// two processes would: each has its own write connection, so they contend
// for SQLite's lock, which busy_timeout and BEGIN IMMEDIATE must absorb.
func TestTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "visage.db")
	a, err := OpenSQLite(ctx, path)
	noErr(t, "open a", err)
	defer func() { _ = a.Close() }()
	b, err := OpenSQLite(ctx, path)
	noErr(t, "open b", err)
	defer func() { _ = b.Close() }()
	mustCollection(t, a, "c")

	// Two goroutines per store: each store's own writers queue on its
	// write connection, the stores contend for the file lock.
	const perWriter, writers = 20, 4
	var wg sync.WaitGroup
	for w := range writers {
		s := []*SQLite{a, b}[w%2]
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
	for i, s := range []*SQLite{a, b} {
		if keys := mustIndexedKeys(t, s, "c"); len(keys) != writers*perWriter {
			t.Errorf("store %d sees %d faces, want %d", i, len(keys), writers*perWriter)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	s := openTestStore(t)
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

// bulkFaces adds nSubjects subjects with perSubject faces each to
// collection (which must exist), in one transaction with prepared
// statements, the way an import would, and returns the face keys. States
// cycle through states, one face after the other.
func bulkFaces(tb testing.TB, s *SQLite, collection string, nSubjects, perSubject int, states ...FaceState) []uint64 {
	tb.Helper()
	if len(states) == 0 {
		states = []FaceState{FaceIndexed}
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(nSubjects), uint64(perSubject)))
	keys := make([]uint64, 0, nSubjects*perSubject)
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = rollback(tx) }()
	subStmt, err := tx.PrepareContext(ctx, `INSERT INTO subject
		(id, collection, external_id, display_name, name_fold, metadata, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, '{}', ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	faceStmt, err := tx.PrepareContext(ctx, `INSERT INTO face (id, subject_id, collection, descriptor, model_id,
		box_x0, box_y0, box_x1, box_y1, image_sha256, state, created_at)
		VALUES (?, ?, ?, ?, 'bench', 0, 0, 100, 100, ?, ?, ?)`)
	if err != nil {
		tb.Fatal(err)
	}
	d := make([]float32, 128)
	now := time.Now().UnixNano()
	n := 0
	for i := range nSubjects {
		sid := uuid.NewString()
		name := fmt.Sprintf("Person %d", i)
		if _, err := subStmt.ExecContext(ctx, sid, collection, fmt.Sprintf("ext-%d", i), name, foldName(name), now+int64(i), now+int64(i)); err != nil {
			tb.Fatal(err)
		}
		for j := range perSubject {
			for k := range d {
				d[k] = rng.Float32()
			}
			res, err := faceStmt.ExecContext(ctx, uuid.NewString(), sid, collection, encodeDescriptor(d),
				fmt.Sprintf("sha-%d-%d", i, j), string(states[n%len(states)]), now+int64(n))
			if err != nil {
				tb.Fatal(err)
			}
			key, err := res.LastInsertId()
			if err != nil {
				tb.Fatal(err)
			}
			keys = append(keys, uint64(key))
			n++
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	return keys
}
