package gallery

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/visage/visage/internal/archive"
	"github.com/visage/visage/internal/testenv"
)

// importCopy copies a file to dst, making dst's folder: the tests' trees
// are made of copies because sources never follow symbolic links.
func importCopy(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	importWrite(t, dst, data)
}

// importWrite writes data to p, making p's folder.
func importWrite(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func importSymlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// outcome is what happened to one path: "entry <external id>" or
// "skip <reason>" (with ":<line>" for a manifest line).
func outcomes(entries []ImportEntry, skipped []SkippedFile) []string {
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%s: entry %s", e.Path, e.ExternalID))
	}
	for _, s := range skipped {
		if s.Line != 0 {
			out = append(out, fmt.Sprintf("%d %s: skip %s", s.Line, s.Path, s.Reason))
		} else {
			out = append(out, fmt.Sprintf("%s: skip %s", s.Path, s.Reason))
		}
	}
	return out
}

func diffLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s:\n got: %s\nwant: %s", what, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
}

func TestScanTree(t *testing.T) {
	bbt := testenv.Shared(t, "testdata/faces/bbt")
	root := t.TempDir()
	var want []string
	// bbtPeople (engine_test.go): the folders of the shared bbt photos.
	for _, p := range bbtPeople {
		for _, f := range []string{p + "1.png", p + "2.png"} {
			importCopy(t, filepath.Join(bbt, p, f), filepath.Join(root, p, f))
			want = append(want, p+"/"+f+": entry "+p)
		}
	}
	// What operators' folders hold besides photos.
	importWrite(t, filepath.Join(root, "readme.txt"), []byte("gallery"))
	importCopy(t, filepath.Join(bbt, "bbt1.jpg"), filepath.Join(root, "bbt1.jpg"))
	importWrite(t, filepath.Join(root, ".git", "config"), []byte("[core]"))
	importWrite(t, filepath.Join(root, ".git", "objects", "ab"), []byte("x"))
	importWrite(t, filepath.Join(root, "__MACOSX", "amy", "._amy1.png"), []byte("resource fork"))
	importWrite(t, filepath.Join(root, "amy", ".DS_Store"), []byte("x"))
	importWrite(t, filepath.Join(root, "amy", "notes.txt"), []byte("x"))
	importCopy(t, filepath.Join(bbt, "amy", "amy3.png"), filepath.Join(root, "amy", "AMY3.PNG"))
	importCopy(t, filepath.Join(bbt, "happy.jpg"), filepath.Join(root, "amy", "happy.JPEG"))
	importCopy(t, filepath.Join(bbt, "amy", "amy4.png"), filepath.Join(root, "amy", "old", "amy4.png"))
	importWrite(t, filepath.Join(root, "amy", "old", ".thumbs", "t.png"), []byte("x"))
	importCopy(t, filepath.Join(bbt, "amy", "amy5.png"), filepath.Join(root, "amy", "old", "deeper", "amy5.png"))
	importSymlink(t, "../amy/amy1.png", filepath.Join(root, "raj", "link.png"))
	importSymlink(t, "sheldon", filepath.Join(root, "sheldon-again"))
	importSymlink(t, bbt, filepath.Join(root, "outside"))
	importSymlink(t, bbt, filepath.Join(root, "amy", "old", "outside"))
	if err := syscall.Mkfifo(filepath.Join(root, "amy", "pipe.jpg"), 0o644); err != nil {
		t.Fatal(err)
	}
	importCopy(t, filepath.Join(bbt, "raj", "raj3.png"), filepath.Join(root, "bad\x01id", "raj3.png"))
	importCopy(t, filepath.Join(bbt, "raj", "raj4.png"), filepath.Join(root, "Raj Koothrappali é", "raj4.png"))
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	want = append(want,
		"amy/AMY3.PNG: entry amy",
		"amy/happy.JPEG: entry amy",
		"Raj Koothrappali é/raj4.png: entry Raj Koothrappali é",
	)
	skippedWant := []string{
		".git: skip hidden",
		"__MACOSX: skip hidden",
		"amy/.DS_Store: skip hidden",
		"amy/notes.txt: skip not_image",
		"amy/old/.thumbs: skip hidden",
		"amy/old/amy4.png: skip nested",
		"amy/old/deeper/amy5.png: skip nested",
		"amy/old/outside: skip symlink",
		"amy/pipe.jpg: skip not_regular",
		"bad\x01id/raj3.png: skip bad_external_id",
		"bbt1.jpg: skip top_level_file",
		"outside: skip symlink",
		"raj/link.png: skip symlink",
		"readme.txt: skip top_level_file",
		"sheldon-again: skip symlink",
	}
	// Both in path order: entries, then skipped files.
	byPath := func(a, b string) int {
		pa, _, _ := strings.Cut(a, ": ")
		pb, _, _ := strings.Cut(b, ": ")
		return strings.Compare(pa, pb)
	}
	slices.SortFunc(want, byPath)
	slices.SortFunc(skippedWant, byPath)
	want = append(want, skippedWant...)

	entries, skipped, err := ScanTree(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	diffLines(t, "ScanTree", outcomes(entries, skipped), want)
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(e.Path))); err != nil {
			t.Errorf("entry %s: %v", e.Path, err)
		}
		if e.DisplayName != "" || e.Metadata != nil {
			t.Errorf("entry %s has a display name or metadata", e.Path)
		}
	}
	for _, s := range skipped {
		if s.Line != 0 {
			t.Errorf("%s: line %d in a tree", s.Path, s.Line)
		}
	}

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := ScanTree(ctx, root); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		if _, _, err := ScanTree(context.Background(), filepath.Join(root, "readme.txt")); err == nil {
			t.Error("ScanTree of a file succeeded")
		}
	})
}

// TestScanTreeLFW: the LFW development images are a tree already.
func TestScanTreeLFW(t *testing.T) {
	root := testenv.Shared(t, "testdata/lfw-dev/images")
	// Counted independently: every .jpg, and the folders holding them.
	jpgs := 0
	folders := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".jpg") {
			jpgs++
			folders[filepath.Base(filepath.Dir(p))] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if jpgs == 0 {
		t.Fatalf("no .jpg under %s", root)
	}
	entries, skipped, err := ScanTree(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != jpgs {
		t.Errorf("%d entries, want %d (the .jpg files under %s)", len(entries), jpgs, root)
	}
	if len(skipped) != 0 {
		t.Errorf("%d skipped, want none: %v", len(skipped), skipped[:min(len(skipped), 5)])
	}
	ids := map[string]int{}
	for i, e := range entries {
		ids[e.ExternalID]++
		if dir, _, _ := strings.Cut(e.Path, "/"); dir != e.ExternalID {
			t.Errorf("%s: external id %q, want its folder's name", e.Path, e.ExternalID)
		}
		if i > 0 && entries[i-1].Path >= e.Path {
			t.Errorf("entries out of order: %s before %s", entries[i-1].Path, e.Path)
		}
	}
	if len(ids) != len(folders) {
		t.Errorf("%d external ids, want %d (one per folder)", len(ids), len(folders))
	}
}

// manifestRoot makes a root holding photos/<person>/<photos> for amy,
// penny and raj, a symbolic link to a photo and one to a folder, and a
// photo beside the root (outside it); it returns the root.
func manifestRoot(t *testing.T) string {
	t.Helper()
	bbt := testenv.Shared(t, "testdata/faces/bbt")
	base := t.TempDir()
	root := filepath.Join(base, "root")
	for _, p := range []string{"amy", "penny", "raj"} {
		for _, f := range []string{p + "1.png", p + "2.png"} {
			importCopy(t, filepath.Join(bbt, p, f), filepath.Join(root, "photos", p, f))
		}
	}
	importCopy(t, filepath.Join(bbt, "amy", "amy3.png"), filepath.Join(base, "secret.png"))
	importSymlink(t, "amy/amy1.png", filepath.Join(root, "photos", "link.png"))
	importSymlink(t, "raj", filepath.Join(root, "photos", "linkdir"))
	return root
}

func TestReadManifest(t *testing.T) {
	root := manifestRoot(t)
	abs := filepath.Join(root, "photos", "amy", "amy1.png")
	long := `{"path":"photos/raj/raj1.png","external_id":"raj","metadata":{"x":"` + strings.Repeat("y", 70<<10) + `"}}`
	tests := []struct {
		name     string
		file     string // relative to root
		content  string
		want     []string // outcomes
		wantMeta map[string]string
	}{
		{
			name: "csv",
			file: "manifest.csv",
			content: "\ufeffexternal_id, Path ,display_name,metadata\n" +
				`amy,photos/amy/amy1.png,Amy,"{""team"":""blue""}"` + "\n" + // 2
				"amy,photos/amy/amy2.png,,\n" + // 3
				"penny,./photos/penny/../penny/penny1.png,Penny,\n" + // 4
				"evil,../secret.png,,\n" + // 5
				"evil," + abs + ",,\n" + // 6
				"ghost,photos/ghost.png,,\n" + // 7
				"amy,photos/amy/amy1.png,Amy again,\n" + // 8
				"raj,photos/amy/amy1.png,,\n" + // 9: the same photo, another subject
				",photos/raj/raj1.png,,\n" + // 10
				"raj,photos/raj/raj1.png,,\"[1,2]\"\n" + // 11
				"raj,photos/raj/raj1.png,,{not json\n" + // 12
				"raj,photos/raj/raj1.png\n" + // 13
				"raj,photos/link.png,,\n" + // 14
				"raj,photos/linkdir/raj1.png,,\n" + // 15
				"raj,photos/raj,,\n" + // 16
				`raj,photos\raj\raj1.png,,` + "\n" + // 17
				`raj,pho"tos/raj/raj2.png,,` + "\n" + // 18: a bare quote
				"\n" + // 19
				"raj,photos/raj/raj1.png,Raj,\r\n", // 20
			want: []string{
				"photos/amy/amy1.png: entry amy",
				"photos/amy/amy2.png: entry amy",
				"photos/penny/penny1.png: entry penny",
				"photos/amy/amy1.png: entry raj",
				"photos/raj/raj1.png: entry raj",
				"5 ../secret.png: skip unsafe_path",
				"6 " + abs + ": skip unsafe_path",
				"7 photos/ghost.png: skip missing_file",
				"8 photos/amy/amy1.png: skip duplicate",
				"10 photos/raj/raj1.png: skip bad_line",
				"11 photos/raj/raj1.png: skip bad_line",
				"12 photos/raj/raj1.png: skip bad_line",
				"13 photos/raj/raj1.png: skip bad_line",
				"14 photos/link.png: skip symlink",
				"15 photos/linkdir/raj1.png: skip symlink",
				"16 photos/raj: skip not_regular",
				`17 photos\raj\raj1.png: skip bad_line`,
				"18 : skip bad_line",
			},
			wantMeta: map[string]string{"photos/amy/amy1.png amy": `{"team":"blue"}`},
		},
		{
			name: "jsonl",
			file: "manifest.jsonl",
			content: `{"path":"photos/amy/amy1.png","external_id":"amy","display_name":"Amy","metadata":{"team": "blue"}}` + "\n" + // 1
				"\n" + // 2
				`{"path":"../secret.png","external_id":"evil"}` + "\n" + // 3
				`{"path":"photos/ghost.png","external_id":"ghost"}` + "\n" + // 4
				`{"path":"photos/amy/amy2.png","external_id":"amy"` + "\n" + // 5
				`{"path":"photos/raj/raj1.png","external_id":"raj","metadata":[1]}` + "\n" + // 6
				`{"path":"photos/raj/raj1.png","external_id":42}` + "\n" + // 7
				`{"path":"photos/raj/raj1.png","externalid":"raj"}` + "\n" + // 8
				`{"path":"photos/raj/raj1.png","external_id":"raj","metadata":null}` + "\r\n" + // 9
				`{"path":"photos/raj/raj1.png","external_id":"raj"}` + "\n" + // 10
				`  {"path": "photos/penny/penny1.png", "external_id": "p\u0001"}` + "\n" + // 11
				`{"path":"photos/penny/penny1.png","external_id":"penny"}{"x":1}` + "\n" + // 12
				`[1,2]` + "\n" + // 13
				long + "\n" + // 14
				`{"path":"photos/penny/penny1.png","external_id":"","display_name":"P"}` + "\n" + // 15
				`{"external_id":"penny"}` + "\n" + // 16
				`{"path":"photos/penny/penny1.png","external_id":"penny"}`, // 17, no newline
			want: []string{
				"photos/amy/amy1.png: entry amy",
				"photos/raj/raj1.png: entry raj",
				"photos/penny/penny1.png: entry penny",
				"3 ../secret.png: skip unsafe_path",
				"4 photos/ghost.png: skip missing_file",
				"5 : skip bad_line",
				"6 photos/raj/raj1.png: skip bad_line",
				"7 photos/raj/raj1.png: skip bad_line",
				"8 photos/raj/raj1.png: skip bad_line",
				"10 photos/raj/raj1.png: skip duplicate",
				"11 photos/penny/penny1.png: skip bad_line",
				"12 photos/penny/penny1.png: skip bad_line",
				"13 : skip bad_line",
				"14 : skip bad_line",
				"15 photos/penny/penny1.png: skip bad_line",
				"16 : skip bad_line",
			},
			wantMeta: map[string]string{"photos/amy/amy1.png amy": `{"team": "blue"}`},
		},
		{
			name: "jsonl in a subfolder",
			file: "lists/people.ndjson",
			content: `{"path":"../photos/amy/amy1.png","external_id":"amy"}` + "\n" +
				`{"path":"../../secret.png","external_id":"evil"}` + "\n" +
				`{"path":"amy1.png","external_id":"amy"}` + "\n",
			want: []string{
				"photos/amy/amy1.png: entry amy",
				"2 ../../secret.png: skip unsafe_path",
				"3 amy1.png: skip missing_file",
			},
		},
		{
			name:    "jsonl told by its content",
			file:    "list.txt",
			content: "\n" + `{"path":"photos/amy/amy1.png","external_id":"amy"}` + "\n",
			want:    []string{"photos/amy/amy1.png: entry amy"},
		},
		{
			name:    "csv told by its content",
			file:    "list",
			content: "path,external_id\nphotos/amy/amy1.png,amy\n",
			want:    []string{"photos/amy/amy1.png: entry amy"},
		},
		{
			name:    "csv after many blank lines",
			file:    "late.csv",
			content: strings.Repeat("\n", 600) + "path,external_id\nphotos/amy/amy1.png,amy\n,amy\n",
			want:    []string{"photos/amy/amy1.png: entry amy", "603 : skip bad_line"},
		},
		{
			name:    "csv header only",
			file:    "empty.csv",
			content: "path,external_id\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(root, filepath.FromSlash(tc.file))
			importWrite(t, p, []byte(tc.content))
			t.Cleanup(func() { os.Remove(p) })
			entries, skipped, err := ReadManifest(context.Background(), root, p)
			if err != nil {
				t.Fatal(err)
			}
			diffLines(t, "ReadManifest", outcomes(entries, skipped), tc.want)
			for _, e := range entries {
				if want := tc.wantMeta[e.Path+" "+e.ExternalID]; string(e.Metadata) != want {
					t.Errorf("%s %s: metadata %s, want %q", e.Path, e.ExternalID, e.Metadata, want)
				}
			}
			for _, s := range skipped {
				if s.Detail == "" && s.Reason != SkipSymlink {
					t.Errorf("line %d (%s): no detail", s.Line, s.Reason)
				}
			}
		})
	}

	t.Run("display names", func(t *testing.T) {
		p := filepath.Join(root, "names.csv")
		importWrite(t, p, []byte("path,display_name,external_id\nphotos/amy/amy1.png,Amy Farrah Fowler,amy\nphotos/amy/amy2.png,,amy\n"))
		entries, _, err := ReadManifest(context.Background(), "", p)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 || entries[0].DisplayName != "Amy Farrah Fowler" || entries[1].DisplayName != "" {
			t.Errorf("entries %+v", entries)
		}
	})
}

func TestReadManifestErrors(t *testing.T) {
	root := manifestRoot(t)
	tests := []struct {
		name    string
		file    string
		content string
	}{
		{"empty csv", "m.csv", ""},
		{"blank csv", "m.csv", "\n\n   \n"},
		{"byte order mark only", "m.csv", "\ufeff"},
		{"empty jsonl", "m.jsonl", "\n \n"},
		{"no external_id column", "m.csv", "path,display_name\nphotos/amy/amy1.png,Amy\n"},
		{"no path column", "m.csv", "external_id\namy\n"},
		{"unknown column", "m.csv", "path,external_id,age\nphotos/amy/amy1.png,amy,40\n"},
		{"column twice", "m.csv", "path,external_id,path\n"},
		{"no header", "m.csv", "photos/amy/amy1.png,amy\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(root, tc.file)
			importWrite(t, p, []byte(tc.content))
			_, _, err := ReadManifest(context.Background(), root, p)
			if !errors.Is(err, ErrBadManifest) {
				t.Errorf("err = %v, want ErrBadManifest", err)
			}
		})
	}
	t.Run("outside its root", func(t *testing.T) {
		p := filepath.Join(root, "m.csv")
		importWrite(t, p, []byte("path,external_id\n"))
		if _, _, err := ReadManifest(context.Background(), filepath.Join(root, "photos"), p); !errors.Is(err, ErrBadManifest) {
			t.Errorf("err = %v, want ErrBadManifest", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, _, err := ReadManifest(context.Background(), root, filepath.Join(root, "none.csv")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist", err)
		}
	})
}

// archiveDir writes the files under dir as a zip, tar or tar.gz archive,
// each name prefixed with prefix; extra members are added at the end.
func archiveDir(t *testing.T, dir, format, prefix string, extra map[string][]byte) []byte {
	t.Helper()
	type member struct {
		name string
		data []byte
	}
	var ms []member
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		ms = append(ms, member{prefix + filepath.ToSlash(rel), data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range extra {
			if !yield(k) {
				return
			}
		}
	}) {
		ms = append(ms, member{name, extra[name]})
	}
	var buf bytes.Buffer
	switch format {
	case "zip":
		zw := zip.NewWriter(&buf)
		for _, m := range ms {
			w, err := zw.Create(m.name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(m.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	case "tar", "tar.gz":
		tw := tar.NewWriter(&buf)
		for _, m := range ms {
			if err := tw.WriteHeader(&tar.Header{Name: m.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(m.data))}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(m.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if format == "tar.gz" {
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			if _, err := zw.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			return gz.Bytes()
		}
	default:
		t.Fatalf("format %q", format)
	}
	return buf.Bytes()
}

func TestOpenSource(t *testing.T) {
	bbt := testenv.Shared(t, "testdata/faces/bbt")
	base := t.TempDir()

	// A tree: two photos of each person and a stray file.
	treeDir := filepath.Join(base, "tree")
	for _, p := range bbtPeople {
		for _, f := range []string{p + "1.png", p + "2.png"} {
			importCopy(t, filepath.Join(bbt, p, f), filepath.Join(treeDir, p, f))
		}
	}
	importWrite(t, filepath.Join(treeDir, "readme.txt"), []byte("x"))

	// A manifest folder: photos by file name, people by the manifest.
	// (Alone in m/, for the case of a folder holding a manifest folder.)
	manDir := filepath.Join(base, "m", "manifest")
	csv := "path,external_id,display_name\n"
	for i, p := range bbtPeople {
		name := fmt.Sprintf("img/%03d.png", i)
		importCopy(t, filepath.Join(bbt, p, p+"3.png"), filepath.Join(manDir, filepath.FromSlash(name)))
		csv += fmt.Sprintf("%s,%s,%s\n", name, p, strings.ToUpper(p[:1])+p[1:])
	}
	csv += "img/missing.png,nobody,\n"
	importWrite(t, filepath.Join(manDir, "manifest.csv"), []byte(csv))

	treeWant := []string{}
	for _, p := range bbtPeople {
		treeWant = append(treeWant, fmt.Sprintf("%s/%s1.png: entry %s", p, p, p), fmt.Sprintf("%s/%s2.png: entry %s", p, p, p))
	}
	treeWant = append(treeWant, "readme.txt: skip top_level_file")
	manWant := []string{}
	for i, p := range bbtPeople {
		manWant = append(manWant, fmt.Sprintf("img/%03d.png: entry %s", i, p))
	}
	manWant = append(manWant, "10 img/missing.png: skip missing_file")

	writeArchive := func(t *testing.T, data []byte) string {
		p := filepath.Join(t.TempDir(), "upload")
		importWrite(t, p, data)
		return p
	}
	tests := []struct {
		name     string
		path     func(t *testing.T) string
		kind     SourceKind
		archive  archive.Format
		root     func(work string) string
		manifest string // the manifest's name under root, if any
		want     []string
	}{
		{"tree folder", func(*testing.T) string { return treeDir }, SourceTree, "",
			func(string) string { return treeDir }, "", treeWant},
		{"manifest folder", func(*testing.T) string { return manDir }, SourceManifest, "",
			func(string) string { return manDir }, "manifest.csv", manWant},
		{"manifest file", func(*testing.T) string { return filepath.Join(manDir, "manifest.csv") }, SourceManifest, "",
			func(string) string { return manDir }, "manifest.csv", manWant},
		{"folder holding a manifest folder", func(*testing.T) string { return filepath.Dir(manDir) }, SourceManifest, "",
			func(string) string { return manDir }, "manifest.csv", manWant},
		{"zip of a tree", func(t *testing.T) string { return writeArchive(t, archiveDir(t, treeDir, "zip", "", nil)) },
			SourceTree, archive.FormatZip, func(w string) string { return w }, "", treeWant},
		{"tar.gz of a tree", func(t *testing.T) string { return writeArchive(t, archiveDir(t, treeDir, "tar.gz", "", nil)) },
			SourceTree, archive.FormatTarGzip, func(w string) string { return w }, "", treeWant},
		{"tar of a manifest folder", func(t *testing.T) string { return writeArchive(t, archiveDir(t, manDir, "tar", "", nil)) },
			SourceManifest, archive.FormatTar, func(w string) string { return w }, "manifest.csv", manWant},
		{"zip of the folder of a manifest", func(t *testing.T) string {
			return writeArchive(t, archiveDir(t, manDir, "zip", "export/", map[string][]byte{".hidden": []byte("x")}))
		}, SourceManifest, archive.FormatZip, func(w string) string { return filepath.Join(w, "export") }, "manifest.csv", manWant},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			work := filepath.Join(t.TempDir(), "work")
			src, err := OpenSource(context.Background(), tc.path(t), archive.Limits{}, work)
			if err != nil {
				t.Fatal(err)
			}
			if src.Kind != tc.kind || src.Archive != tc.archive {
				t.Errorf("kind %q, archive %q; want %q, %q", src.Kind, src.Archive, tc.kind, tc.archive)
			}
			if want := tc.root(work); src.Root != want {
				t.Errorf("root %s, want %s", src.Root, want)
			}
			wantManifest := ""
			if tc.manifest != "" {
				wantManifest = filepath.Join(src.Root, tc.manifest)
			}
			if src.Manifest != wantManifest {
				t.Errorf("manifest %q, want %q", src.Manifest, wantManifest)
			}
			diffLines(t, "OpenSource", outcomes(src.Entries, src.Skipped), tc.want)
			for _, e := range src.Entries {
				if _, err := os.Stat(filepath.Join(src.Root, filepath.FromSlash(e.Path))); err != nil {
					t.Errorf("entry %s: %v", e.Path, err)
				}
			}
			if tc.archive != "" {
				// Reopening the extracted folder, as after a restart, gives
				// the same source.
				again, err := OpenSource(context.Background(), work, archive.Limits{}, "")
				if err != nil {
					t.Fatal(err)
				}
				diffLines(t, "reopened", outcomes(again.Entries, again.Skipped), tc.want)
			}
		})
	}

	refused := []struct {
		name  string
		path  func(t *testing.T) string
		lim   archive.Limits
		want  error
		prep  func(t *testing.T, work string)
		check func(t *testing.T, err error)
	}{
		{name: "zip escaping its folder", want: archive.ErrUnsafe, path: func(t *testing.T) string {
			return writeArchive(t, archiveDir(t, treeDir, "zip", "", map[string][]byte{"../evil.png": []byte("x")}))
		}, check: func(t *testing.T, err error) {
			var ue *archive.UnsafeEntryError
			if !errors.As(err, &ue) || ue.Name != "../evil.png" || ue.Reason != archive.ReasonTraversal {
				t.Errorf("err = %v, want the entry ../evil.png refused for traversal", err)
			}
		}},
		{name: "tar.gz escaping its folder", want: archive.ErrUnsafe, path: func(t *testing.T) string {
			return writeArchive(t, archiveDir(t, treeDir, "tar.gz", "", map[string][]byte{"amy/../../../evil.png": []byte("x")}))
		}},
		{name: "archive over the limits", want: archive.ErrTooLarge, lim: archive.Limits{MaxTotalBytes: 100 << 10}, path: func(t *testing.T) string {
			return writeArchive(t, archiveDir(t, treeDir, "tar", "", nil))
		}},
		{name: "a photo", want: ErrUnsupportedSource, path: func(*testing.T) string { return filepath.Join(treeDir, "amy", "amy1.png") }},
		{name: "a text file", want: ErrUnsupportedSource, path: func(*testing.T) string { return filepath.Join(treeDir, "readme.txt") }},
		{name: "two manifests", want: ErrBadManifest, path: func(t *testing.T) string {
			dir := t.TempDir()
			importWrite(t, filepath.Join(dir, "manifest.csv"), []byte("path,external_id\n"))
			importWrite(t, filepath.Join(dir, "manifest.jsonl"), []byte("{}\n"))
			return dir
		}},
		{name: "missing", want: fs.ErrNotExist, path: func(t *testing.T) string { return filepath.Join(base, "none") }},
		{name: "work folder not empty", path: func(t *testing.T) string {
			return writeArchive(t, archiveDir(t, treeDir, "zip", "", nil))
		}, prep: func(t *testing.T, work string) { importWrite(t, filepath.Join(work, "old"), []byte("x")) }},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			work := filepath.Join(parent, "work")
			if tc.prep != nil {
				tc.prep(t, work)
			}
			_, err := OpenSource(context.Background(), tc.path(t), tc.lim, work)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.check != nil {
				tc.check(t, err)
			}
			// Nothing was written beside the work folder.
			ents, err := os.ReadDir(parent)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if e.Name() != "work" {
					t.Errorf("%s written beside the work folder", e.Name())
				}
			}
		})
	}
}

// secretLine is the first line of files outside the import root that
// links inside it point to: no error or skipped file may quote it.
const secretLine = "SECRET-first-line-of-an-outside-file-7f3a"

func TestOpenSourceIn(t *testing.T) {
	bbt := testenv.Shared(t, "testdata/faces/bbt")
	root := t.TempDir()
	outside := t.TempDir()
	photo := func(p string, n int) string { return filepath.Join(bbt, p, fmt.Sprintf("%s%d.png", p, n)) }

	// Inside: a tree, a manifest folder and an archive of the tree.
	for _, p := range []string{"amy", "raj"} {
		importCopy(t, photo(p, 1), filepath.Join(root, "tree", p, "1.png"))
		importCopy(t, photo(p, 1), filepath.Join(outside, "tree", p, "1.png"))
	}
	importCopy(t, photo("amy", 2), filepath.Join(root, "m", "img", "amy.png"))
	importWrite(t, filepath.Join(root, "m", "manifest.csv"), []byte("path,external_id\n"+
		"img/amy.png,amy\n"+
		"../tree/raj/1.png,raj\n"+ // leaves the manifest's folder
		"/etc/passwd,root\n"+
		"out/raj/1.png,raj\n"+ // through a link to the outside tree
		"secret.csv,x\n")) // a link to the outside manifest
	importSymlink(t, filepath.Join(outside, "tree"), filepath.Join(root, "m", "out"))
	importSymlink(t, filepath.Join(outside, "secret.csv"), filepath.Join(root, "m", "secret.csv"))
	zipped := archiveDir(t, filepath.Join(root, "tree"), "zip", "", nil)
	importWrite(t, filepath.Join(root, "tree.zip"), zipped)
	importSymlink(t, "/etc", filepath.Join(root, "tree", "etc"))

	// Outside, and the links to it.
	importWrite(t, filepath.Join(outside, "tree.zip"), zipped)
	importWrite(t, filepath.Join(outside, "secret.csv"), []byte(secretLine+"\namy/1.png,amy\n"))
	importWrite(t, filepath.Join(outside, "secretdir", "manifest.csv"), []byte(secretLine+"\n"))
	importWrite(t, filepath.Join(root, "file"), []byte("x"))
	for name, target := range map[string]string{
		"etc": "/etc", "out": filepath.Join(outside, "tree"), "out.zip": filepath.Join(outside, "tree.zip"),
		"secret.csv": filepath.Join(outside, "secret.csv"), "secretdir": filepath.Join(outside, "secretdir"),
		"alias": "tree", "alias.zip": "tree.zip",
	} {
		importSymlink(t, target, filepath.Join(root, name))
	}

	treeWant := []string{"amy/1.png: entry amy", "raj/1.png: entry raj", "etc: skip symlink"}
	manWant := []string{"img/amy.png: entry amy", "3 ../tree/raj/1.png: skip unsafe_path", "4 /etc/passwd: skip unsafe_path",
		"5 out/raj/1.png: skip symlink", "6 secret.csv: skip symlink"}
	opened := []struct {
		name, path string
		kind       SourceKind
		archive    archive.Format
		root       func(work string) string
		want       []string
	}{
		{"tree", "tree", SourceTree, "", func(string) string { return filepath.Join(root, "tree") }, treeWant},
		{"tree named with a trailing slash", "tree/", SourceTree, "", func(string) string { return filepath.Join(root, "tree") }, treeWant},
		{"manifest folder", "m", SourceManifest, "", func(string) string { return filepath.Join(root, "m") }, manWant},
		{"manifest file", "m/manifest.csv", SourceManifest, "", func(string) string { return filepath.Join(root, "m") }, manWant},
		{"archive", "tree.zip", SourceTree, archive.FormatZip, func(w string) string { return w }, treeWant[:2]},
	}
	for _, tc := range opened {
		t.Run(tc.name, func(t *testing.T) {
			work := filepath.Join(t.TempDir(), "work")
			src, err := OpenSourceIn(context.Background(), root, tc.path, archive.Limits{}, work)
			if err != nil {
				t.Fatal(err)
			}
			if src.Kind != tc.kind || src.Archive != tc.archive || src.Root != tc.root(work) {
				t.Errorf("kind %q, archive %q, root %s; want %q, %q, %s", src.Kind, src.Archive, src.Root, tc.kind, tc.archive, tc.root(work))
			}
			got := outcomes(src.Entries, src.Skipped)
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			diffLines(t, "OpenSourceIn", got, want)
			for _, s := range src.Skipped {
				if strings.Contains(strings.ToLower(s.Detail), strings.ToLower(secretLine)) {
					t.Errorf("skipped %s quotes an outside file: %s", s.Path, s.Detail)
				}
			}
		})
	}

	refused := []struct {
		name, path string
		want       error
	}{
		{"link to /etc", "etc", ErrBadSourcePath},
		{"path through a link to /etc", "etc/passwd", ErrBadSourcePath},
		{"link to an outside tree", "out", ErrBadSourcePath},
		{"path through a link to an outside tree", "out/amy", ErrBadSourcePath},
		{"link to an outside archive", "out.zip", ErrBadSourcePath},
		{"link to an outside manifest", "secret.csv", ErrBadSourcePath},
		{"link to an outside manifest folder", "secretdir", ErrBadSourcePath},
		{"link to a tree inside", "alias", ErrBadSourcePath},
		{"link to an archive inside", "alias.zip", ErrBadSourcePath},
		{"link inside a tree", "tree/etc", ErrBadSourcePath},
		{"dot-dot", "../x", ErrBadSourcePath},
		{"dot-dot after a name", "tree/../../x", ErrBadSourcePath},
		{"absolute", "/etc", ErrBadSourcePath},
		{"NUL byte", "tree\x00", ErrBadSourcePath},
		{"name too long", strings.Repeat("n", 256), ErrBadSourcePath},
		{"path too long", strings.Repeat("d/", 2048), ErrBadSourcePath},
		{"path through a file", "file/x", ErrBadSourcePath},
		{"missing", "none", ErrBadSourcePath},
		{"empty", "", ErrBadSourcePath},
		{"a photo", "tree/amy/1.png", ErrUnsupportedSource},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			work := filepath.Join(parent, "work")
			_, err := OpenSourceIn(context.Background(), root, tc.path, archive.Limits{}, work)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var pe *SourcePathError
			if tc.want == ErrBadSourcePath && (!errors.As(err, &pe) || pe.Path != tc.path) {
				t.Errorf("err = %v, want a *SourcePathError for %q", err, tc.path)
			}
			msg := err.Error()
			for _, leak := range []string{secretLine, strings.ToLower(secretLine), root, outside, "root:x:"} {
				if strings.Contains(msg, leak) {
					t.Errorf("the error %q holds %q", msg, leak)
				}
			}
			if ents, _ := os.ReadDir(work); len(ents) > 0 {
				t.Errorf("%d entries extracted for a refused source", len(ents))
			}
		})
	}
}
