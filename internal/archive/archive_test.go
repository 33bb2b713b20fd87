package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/visage/visage/internal/testenv"
)

// member is one entry of an archive a test builds.
type member struct {
	name string
	body []byte
	kind byte // tar's typeflag: tar.TypeReg, TypeDir, TypeSymlink, TypeLink, TypeFifo, TypeChar
	link string
}

func file(name string, body []byte) member { return member{name: name, body: body, kind: tar.TypeReg} }
func dir(name string) member               { return member{name: name, kind: tar.TypeDir} }

// buildZip writes members as a zip archive, deflated.
func buildZip(t *testing.T, ms []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	// The fastest level: the bombs' 100 MiB of zeros take seconds at the
	// default one under the race detector.
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestSpeed)
	})
	for _, m := range ms {
		h := &zip.FileHeader{Name: m.name, Method: zip.Deflate}
		body := m.body
		switch m.kind {
		case tar.TypeReg:
			h.SetMode(0o644)
		case tar.TypeDir:
			h.SetMode(fs.ModeDir | 0o755)
			h.Method = zip.Store
		case tar.TypeSymlink:
			h.SetMode(fs.ModeSymlink | 0o777)
			body = []byte(m.link)
		case tar.TypeFifo:
			h.SetMode(fs.ModeNamedPipe | 0o644)
		case tar.TypeChar:
			h.SetMode(fs.ModeDevice | fs.ModeCharDevice | 0o644)
		default:
			t.Fatalf("zip has no entry of kind %q", m.kind)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildTar writes members as a tar archive, gzip-compressed if gz.
func buildTar(t *testing.T, ms []member, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Typeflag: m.kind, Mode: 0o644, Linkname: m.link, Size: int64(len(m.body))}
		if m.kind != tar.TypeReg {
			h.Size = 0
		}
		if m.kind == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.body); err != nil && m.kind == tar.TypeReg {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if !gz {
		return buf.Bytes()
	}
	return gzipped(t, buf.Bytes())
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// builder writes an archive of one format.
type builder struct {
	name  string
	build func(*testing.T, []member) []byte
}

// builders are the formats every safety test runs on.
func builders() []builder {
	return []builder{
		{"zip", buildZip},
		{"tar", func(t *testing.T, ms []member) []byte { return buildTar(t, ms, false) }},
		{"tar.gz", func(t *testing.T, ms []member) []byte { return buildTar(t, ms, true) }},
	}
}

// extract writes data into a fresh temporary directory as an archive
// file and extracts it into out/ beside it, returning that directory.
func extract(t *testing.T, data []byte, lim Limits) (string, Report, error) {
	t.Helper()
	base := t.TempDir()
	src := filepath.Join(base, "archive")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := ExtractFile(context.Background(), src, filepath.Join(base, "out"), lim)
	return base, rep, err
}

// assertContained fails unless base holds only the archive and out/: an
// escaping entry would have left something beside them.
func assertContained(t *testing.T, base string) {
	t.Helper()
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"archive", "out"}) && !slices.Equal(names, []string{"archive"}) {
		t.Errorf("the extraction's parent directory holds %q, want only archive and out", names)
	}
}

// tree lists dir: each file's path with its content, each directory's
// path with "/" appended and the value "dir"; it fails on anything else
// and on modes other than 0o600 and 0o700.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", rel, fi.Mode().Perm())
			}
			got[rel+"/"] = "dir"
		case d.Type().IsRegular():
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", rel, fi.Mode().Perm())
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[rel] = string(b)
		default:
			t.Errorf("%s: extracted as %v", rel, d.Type())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestExtractFormatsAgree(t *testing.T) {
	photo := testenv.ReadShared(t, "testdata/faces/bbt/amy/amy1.png")
	ms := []member{
		dir("amy/"),
		file("amy/amy1.png", photo),
		file("amy/empty.txt", nil),
		file("bob/nested/deep/b.jpg", []byte("not really a jpeg")),
		file("./dot/a.txt", []byte("leading ./")),
		file("café ☕/x y.txt", []byte("unicode and spaces")),
		dir("empty-dir/"),
	}
	want := map[string]string{
		"amy/": "dir", "amy/amy1.png": string(photo), "amy/empty.txt": "",
		"bob/": "dir", "bob/nested/": "dir", "bob/nested/deep/": "dir", "bob/nested/deep/b.jpg": "not really a jpeg",
		"dot/": "dir", "dot/a.txt": "leading ./",
		"café ☕/": "dir", "café ☕/x y.txt": "unicode and spaces",
		"empty-dir/": "dir",
	}
	wantBytes := int64(len(photo) + len("not really a jpeg") + len("leading ./") + len("unicode and spaces"))
	for _, b := range builders() {
		t.Run(b.name, func(t *testing.T) {
			data := b.build(t, ms)
			base, rep, err := extract(t, data, Limits{})
			if err != nil {
				t.Fatalf("ExtractFile: %v", err)
			}
			if got := tree(t, filepath.Join(base, "out")); !mapsEqual(got, want) {
				t.Errorf("extracted tree:\n%v\nwant:\n%v", keys(got), keys(want))
			}
			wantRep := Report{Format: Format(b.name), Entries: len(ms), Files: 5, Dirs: 2, Bytes: wantBytes}
			if rep != wantRep {
				t.Errorf("report %+v, want %+v", rep, wantRep)
			}
			assertContained(t, base)
		})
	}
	// The same archives through the functions that take a reader.
	t.Run("ExtractZip", func(t *testing.T) {
		data := buildZip(t, ms)
		dst := t.TempDir()
		if _, err := ExtractZip(context.Background(), bytes.NewReader(data), int64(len(data)), dst, Limits{}); err != nil {
			t.Fatal(err)
		}
		if got := tree(t, dst); !mapsEqual(got, want) {
			t.Errorf("extracted tree %v, want %v", keys(got), keys(want))
		}
	})
	t.Run("ExtractTar stream", func(t *testing.T) {
		// A reader with no ReadAt, Seek or Stat: extraction streams.
		r := struct{ io.Reader }{bytes.NewReader(buildTar(t, ms, true))}
		dst := filepath.Join(t.TempDir(), "new", "dir")
		rep, err := ExtractTar(context.Background(), r, dst, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Format != FormatTarGzip {
			t.Errorf("format %q, want %q", rep.Format, FormatTarGzip)
		}
		if got := tree(t, dst); !mapsEqual(got, want) {
			t.Errorf("extracted tree %v, want %v", keys(got), keys(want))
		}
	})
}

func TestExtractRefusesUnsafeEntries(t *testing.T) {
	ok := file("ok.txt", []byte("fine"))
	abs := filepath.Join(os.TempDir(), fmt.Sprintf("visage-archive-escape-%d", rand.Int64()))
	tests := []struct {
		name    string
		members []member
		reason  string
		only    string // "" for every format, else the one format that can express it
		escapee string // a path outside the destination that must not appear (relative to the parent directory, or absolute)
	}{
		{"parent", []member{ok, file("../evil", []byte("x"))}, ReasonTraversal, "", "evil"},
		{"parent after a directory", []member{ok, file("a/../../x", []byte("x"))}, ReasonTraversal, "", "x"},
		{"parent deep", []member{file("a/b/../../../c/x", []byte("x"))}, ReasonTraversal, "", "c"},
		{"bare parent", []member{dir("../")}, ReasonTraversal, "", ""},
		{"absolute", []member{file(abs, []byte("x"))}, ReasonAbsolute, "", abs},
		{"absolute etc", []member{file("/etc/visage-archive-test", []byte("x"))}, ReasonAbsolute, "", "/etc/visage-archive-test"},
		{"drive letter", []member{file("C:/x", []byte("x"))}, ReasonDriveLetter, "", ""},
		{"drive letter relative", []member{file("c:x", []byte("x"))}, ReasonDriveLetter, "", ""},
		{"backslash traversal", []member{file(`a\..\..\x`, []byte("x"))}, ReasonBackslash, "", ""},
		{"dot as a file", []member{file(".", []byte("x"))}, ReasonBadName, "", ""},
		{"symlink", []member{{name: "link", kind: tar.TypeSymlink, link: "../outside"}}, ReasonSymlink, "", ""},
		{"symlink then through it", []member{{name: "link", kind: tar.TypeSymlink, link: ".."}, file("link/x", []byte("x"))}, ReasonSymlink, "", "x"},
		{"hardlink", []member{ok, {name: "hard", kind: tar.TypeLink, link: "/etc/passwd"}}, ReasonHardlink, "tar", ""},
		{"fifo", []member{{name: "fifo", kind: tar.TypeFifo}}, ReasonSpecial, "", ""},
		{"device", []member{{name: "null", kind: tar.TypeChar}}, ReasonSpecial, "", ""},
		{"duplicate", []member{file("a/x", []byte("1")), file("a/x", []byte("2"))}, ReasonDuplicate, "", ""},
		{"duplicate once cleaned", []member{file("a/x", []byte("1")), file("a/./b/../x", []byte("2"))}, ReasonDuplicate, "", ""},
		{"directory over a file", []member{file("a", []byte("1")), dir("a/")}, ReasonDuplicate, "", ""},
		{"file under a file", []member{file("a", []byte("1")), file("a/x", []byte("2"))}, ReasonDuplicate, "", ""},
		{"file over a directory", []member{file("a/x", []byte("1")), file("a", []byte("2"))}, ReasonDuplicate, "", ""},
	}
	for _, tc := range tests {
		for _, b := range builders() {
			if tc.only != "" && !strings.HasPrefix(b.name, tc.only) {
				continue
			}
			t.Run(tc.name+"/"+b.name, func(t *testing.T) {
				base, _, err := extract(t, b.build(t, tc.members), Limits{})
				var ue *UnsafeEntryError
				if !errors.Is(err, ErrUnsafe) || !errors.As(err, &ue) {
					t.Fatalf("err = %v, want an *UnsafeEntryError", err)
				}
				if ue.Reason != tc.reason {
					t.Errorf("reason %q, want %q (%v)", ue.Reason, tc.reason, err)
				}
				assertContained(t, base)
				if tc.escapee != "" {
					p := tc.escapee
					if !filepath.IsAbs(p) {
						p = filepath.Join(base, p)
					}
					if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s exists (or cannot be checked: %v)", p, err)
					}
				}
				if tc.members[0].name == ok.name {
					// Extraction went as far as the bad entry.
					if b, err := os.ReadFile(filepath.Join(base, "out", "ok.txt")); err != nil || string(b) != "fine" {
						t.Errorf("ok.txt before the bad entry: %q, %v", b, err)
					}
				}
			})
		}
	}
}

// TestExtractDoesNotFollowSymlinksInDestination: a destination that is
// not empty cannot be used to write through a symbolic link.
func TestExtractDoesNotFollowSymlinksInDestination(t *testing.T) {
	for _, b := range builders() {
		t.Run(b.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			dst := filepath.Join(base, "dst")
			for _, d := range []string{outside, dst} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			victim := filepath.Join(outside, "victim")
			if err := os.WriteFile(victim, []byte("original"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(dst, "dirlink")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, filepath.Join(dst, "filelink")); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"dirlink/x", "dirlink/victim", "filelink"} {
				data := b.build(t, []member{file(name, []byte("overwritten"))})
				src := filepath.Join(base, "archive")
				if err := os.WriteFile(src, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := ExtractFile(context.Background(), src, dst, Limits{}); err == nil {
					t.Errorf("%s: extracted through a symbolic link", name)
				}
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "original" {
				t.Errorf("victim holds %q, %v", b, err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("outside holds %d entries, want only the victim", len(ents))
			}
		})
	}
}

// zeros is n zero bytes.
func zeros(n int) []byte { return make([]byte, n) }

// random is n bytes that do not compress.
func random(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// lyingZip is a zip whose one entry declares 1 KiB but inflates to 2 MiB.
func lyingZip(t *testing.T) []byte {
	t.Helper()
	var comp bytes.Buffer
	fw, err := flate.NewWriter(&comp, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(zeros(2 << 20)); err != nil {
		t.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{
		Name: "small.jpg", Method: zip.Deflate,
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: 1 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(comp.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hugeTarHeader is a tar whose one entry declares 1 TiB, with no data.
func hugeTarHeader(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "huge.jpg", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	// No data and no Close: the header is all there is.
	return buf.Bytes()
}

func manyFiles(n, size int) []member {
	ms := make([]member, n)
	for i := range ms {
		ms[i] = file(fmt.Sprintf("d/%03d.jpg", i), random(size))
	}
	return ms
}

func TestExtractLimits(t *testing.T) {
	tests := []struct {
		name      string
		data      func(*testing.T) []byte
		lim       Limits
		limit     string
		maxFiles  int   // at most this many files written before the refusal
		maxBytes  int64 // at most this many bytes written in all
		wantEntry bool  // the error names an entry
	}{
		{
			// 100 MiB of zeros deflates to about 130 KiB: refused on the
			// headers' ratio (about 800) with the default limits, before a
			// byte is written.
			name: "zip bomb", data: func(t *testing.T) []byte { return buildZip(t, []member{file("bomb.jpg", zeros(100<<20))}) },
			limit: LimitRatio, maxFiles: 0, maxBytes: 0, wantEntry: true,
		},
		{
			name: "zip entry inflating past its declared size", data: lyingZip,
			limit: LimitDeclaredSize, maxFiles: 1, maxBytes: 1 << 10, wantEntry: true,
		},
		{
			name: "tar.gz bomb", data: func(t *testing.T) []byte { return buildTar(t, []member{file("bomb.jpg", zeros(20<<20))}, true) },
			lim:   Limits{MaxFileBytes: 1 << 30},
			limit: LimitRatio, maxFiles: 1, maxBytes: 20 << 20,
		},
		{
			name: "tar header declaring 1 TiB", data: hugeTarHeader,
			limit: LimitFileBytes, maxFiles: 0, maxBytes: 0, wantEntry: true,
		},
		{
			name: "zip file over MaxFileBytes", data: func(t *testing.T) []byte { return buildZip(t, manyFiles(1, 5000)) },
			lim:   Limits{MaxFileBytes: 4096},
			limit: LimitFileBytes, maxFiles: 0, maxBytes: 0, wantEntry: true,
		},
		{
			name: "tar file over MaxFileBytes", data: func(t *testing.T) []byte { return buildTar(t, manyFiles(1, 5000), false) },
			lim:   Limits{MaxFileBytes: 4096},
			limit: LimitFileBytes, maxFiles: 0, maxBytes: 0, wantEntry: true,
		},
		{
			name: "zip over MaxTotalBytes", data: func(t *testing.T) []byte { return buildZip(t, manyFiles(3, 4000)) },
			lim:   Limits{MaxTotalBytes: 10000},
			limit: LimitTotalBytes, maxFiles: 2, maxBytes: 10000, wantEntry: true,
		},
		{
			name: "tar.gz over MaxTotalBytes", data: func(t *testing.T) []byte { return buildTar(t, manyFiles(3, 4000), true) },
			lim:   Limits{MaxTotalBytes: 10000},
			limit: LimitTotalBytes, maxFiles: 2, maxBytes: 10000, wantEntry: true,
		},
		{
			name: "zip with too many entries", data: func(t *testing.T) []byte { return buildZip(t, manyFiles(11, 10)) },
			lim:   Limits{MaxEntries: 10},
			limit: LimitEntries, maxFiles: 0, maxBytes: 0,
		},
		{
			name: "tar with too many entries", data: func(t *testing.T) []byte { return buildTar(t, manyFiles(11, 10), false) },
			lim:   Limits{MaxEntries: 10},
			limit: LimitEntries, maxFiles: 10, maxBytes: 100,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, rep, err := extract(t, tc.data(t), tc.lim)
			var le *LimitError
			if !errors.Is(err, ErrTooLarge) || !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LimitError", err)
			}
			if le.Limit != tc.limit {
				t.Errorf("limit %q, want %q (%v)", le.Limit, tc.limit, err)
			}
			if tc.wantEntry && le.Name == "" {
				t.Errorf("the error names no entry: %v", err)
			}
			if rep.Files > tc.maxFiles || rep.Bytes > tc.maxBytes {
				t.Errorf("%d files, %d bytes written, want at most %d, %d", rep.Files, rep.Bytes, tc.maxFiles, tc.maxBytes)
			}
			// The report counts what is on disk.
			var onDisk int64
			for p, body := range tree(t, filepath.Join(base, "out")) {
				if !strings.HasSuffix(p, "/") {
					onDisk += int64(len(body))
				}
			}
			if onDisk != rep.Bytes {
				t.Errorf("%d bytes on disk, report says %d", onDisk, rep.Bytes)
			}
			assertContained(t, base)
		})
	}
}

// setTarSize rewrites the size field of the tar header at off and its
// checksum.
func setTarSize(hdr []byte, size int64) {
	copy(hdr[124:136], fmt.Sprintf("%011o\x00", size))
	copy(hdr[148:156], "        ")
	var sum int64
	for _, b := range hdr[:512] {
		sum += int64(b)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func TestExtractCorrupt(t *testing.T) {
	body := random(3000)
	plain := buildTar(t, []member{file("a.jpg", body), file("b.jpg", []byte("b"))}, false)
	zipped := buildZip(t, []member{file("a.jpg", body)})
	tests := []struct {
		name string
		data func() []byte
	}{
		{"tar cut inside an entry", func() []byte { return plain[:512+1000] }},
		{"tar header declaring less than its data", func() []byte {
			d := bytes.Clone(plain)
			setTarSize(d, 100) // the rest of the data is read as a header
			return d
		}},
		{"tar header declaring more than its data", func() []byte {
			d := bytes.Clone(plain[:512+3072])
			setTarSize(d, 10000)
			return d
		}},
		{"tar header with a bad checksum", func() []byte {
			d := bytes.Clone(plain)
			d[0] ^= 0x20
			return d
		}},
		{"tar.gz cut short", func() []byte { g := gzipped(t, plain); return g[:len(g)/2] }},
		{"tar.gz with a damaged trailer", func() []byte {
			g := bytes.Clone(gzipped(t, plain))
			g[len(g)-6] ^= 0xff // inside the CRC-32
			return g
		}},
		{"zip without its central directory", func() []byte { return zipped[:len(zipped)-30] }},
		{"zip with damaged data", func() []byte {
			d := bytes.Clone(zipped)
			d[30+len("a.jpg")+100] ^= 0xff // inside the deflated data of a.jpg
			return d
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, _, err := extract(t, tc.data(), Limits{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			assertContained(t, base)
		})
	}
}

func TestExtractUnsupported(t *testing.T) {
	encrypted := func() []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "secret.jpg", Method: zip.Store, Flags: 0x1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(random(100)); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"garbage", random(4096)},
		{"gzip of garbage", gzipped(t, random(4096))},
		{"gzip of a short text", gzipped(t, []byte("hello"))},
		{"a photo", testenv.ReadShared(t, "testdata/faces/bbt/amy/amy1.png")},
		{"a jpeg", testenv.ReadShared(t, "testdata/faces/bbt/bbt1.jpg")},
		{"encrypted zip entry", encrypted()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, _, err := extract(t, tc.data, Limits{})
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			assertContained(t, base)
		})
	}
}

func TestDetectFormat(t *testing.T) {
	tarHead := buildTar(t, manyFiles(1, 10), false)
	tests := []struct {
		name string
		head []byte
		want Format
	}{
		{"zip", buildZip(t, manyFiles(1, 10)), FormatZip},
		{"empty zip", buildZip(t, nil), FormatZip},
		{"tar", tarHead, FormatTar},
		{"tar header only", tarHead[:262], FormatTar},
		{"empty tar", buildTar(t, nil, false), FormatTar},
		{"gzip", gzipped(t, []byte("x")), FormatTarGzip},
		{"short", []byte("PK"), FormatUnknown},
		{"text", []byte(strings.Repeat("path,external_id\n", 40)), FormatUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DetectFormat(tc.head); got != tc.want {
				t.Errorf("DetectFormat = %q, want %q", got, tc.want)
			}
		})
	}
}

// cancelAfter cancels a context once n bytes were read through it.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= int64(n); c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func TestExtractCancel(t *testing.T) {
	big := buildTar(t, []member{file("a.jpg", random(4<<20)), file("b.jpg", random(10))}, false)
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		rep, err := ExtractTar(ctx, bytes.NewReader(big), t.TempDir(), Limits{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if rep.Files != 0 {
			t.Errorf("%d files written after cancellation", rep.Files)
		}
	})
	t.Run("inside a large entry", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := &cancelAfter{r: bytes.NewReader(big), n: 1 << 20, cancel: cancel}
		rep, err := ExtractTar(ctx, r, t.TempDir(), Limits{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if rep.Files != 1 || rep.Bytes >= 4<<20 {
			t.Errorf("report %+v: want the copy of a.jpg stopped midway", rep)
		}
	})
	t.Run("between zip entries", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		data := buildZip(t, manyFiles(3, 10))
		_, err := ExtractZip(ctx, bytes.NewReader(data), int64(len(data)), t.TempDir(), Limits{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestLimitsWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Limits
		want Limits
	}{
		{"zero", Limits{}, Limits{MaxEntries: 1_000_000, MaxFileBytes: 64 << 20, MaxTotalBytes: 32 << 30, MaxRatio: 200, MinFreeBytes: 1 << 30}},
		{"negative", Limits{MaxEntries: -1, MaxFileBytes: -1, MaxTotalBytes: -1, MaxRatio: -1, MinFreeBytes: -1},
			Limits{MaxEntries: 1_000_000, MaxFileBytes: 64 << 20, MaxTotalBytes: 32 << 30, MaxRatio: 200, MinFreeBytes: 1 << 30}},
		{"set", Limits{MaxEntries: 5, MaxFileBytes: 6, MaxTotalBytes: 7, MaxRatio: 8, MinFreeBytes: 9}, Limits{MaxEntries: 5, MaxFileBytes: 6, MaxTotalBytes: 7, MaxRatio: 8, MinFreeBytes: 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.in.WithDefaults(); got != tc.want {
				t.Errorf("WithDefaults = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k, v := range m {
		ks = append(ks, k+" ("+strconv.Itoa(len(v))+" bytes)")
	}
	slices.Sort(ks)
	return ks
}

// TestExtractFloorBomb: entries too small for the ratio check one by one
// (each under 1 MiB) share one 1 MiB allowance, so that many of them
// cannot add up: what is written stays within MaxRatio times the archive's
// size plus that allowance.
func TestExtractFloorBomb(t *testing.T) {
	var ms []member
	for i := range 64 {
		ms = append(ms, file(fmt.Sprintf("p%02d/x.jpg", i), zeros(1<<20)))
	}
	for _, b := range builders() {
		if b.name == "tar" {
			continue // not compressed: it writes no more than its size
		}
		t.Run(b.name, func(t *testing.T) {
			data := b.build(t, ms)
			base, rep, err := extract(t, data, Limits{})
			var le *LimitError
			if !errors.As(err, &le) || le.Limit != LimitRatio {
				t.Fatalf("err = %v, want the ratio limit (%d MiB from %d KiB)", err, rep.Bytes>>20, len(data)>>10)
			}
			if bound := int64(DefaultMaxRatio*float64(len(data))) + ratioFloor; rep.Bytes > bound {
				t.Errorf("%d bytes written from %d, want at most %d", rep.Bytes, len(data), bound)
			}
			assertContained(t, base)
		})
	}
}

// overlappingZip is a zip whose n central directory records all point at
// the same deflated data, each within MaxRatio of its compressed size:
// together they inflate to n times the data from an archive barely larger
// than one copy.
func overlappingZip(t *testing.T, n int) (data []byte, ratio float64) {
	t.Helper()
	body := make([]byte, 2<<20)
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < len(body); i += 64 {
		body[i] = byte(r.Uint32())
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "a/000.jpg", Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	end := len(b) - 22 // the end record, no comment
	cdSize := int(binary.LittleEndian.Uint32(b[end+12:]))
	cdOff := int(binary.LittleEndian.Uint32(b[end+16:]))
	rec := b[cdOff : cdOff+cdSize]
	comp := binary.LittleEndian.Uint32(rec[20:])
	out := slices.Clone(b[:cdOff])
	for i := range n {
		r := slices.Clone(rec)
		copy(r[46:], fmt.Sprintf("a/%03d.jpg", i)) // same length as the name
		out = append(out, r...)
	}
	eocd := slices.Clone(b[end:])
	binary.LittleEndian.PutUint16(eocd[8:], uint16(n))
	binary.LittleEndian.PutUint16(eocd[10:], uint16(n))
	binary.LittleEndian.PutUint32(eocd[12:], uint32(n*cdSize))
	return append(out, eocd...), float64(len(body)) / float64(comp)
}

// TestExtractOverlappingZip: the ratio also holds over the whole archive,
// so that entries sharing their compressed bytes cannot multiply them.
func TestExtractOverlappingZip(t *testing.T) {
	data, ratio := overlappingZip(t, 40)
	if ratio > DefaultMaxRatio {
		t.Fatalf("each entry's ratio is %.0f, want it under %v for the test to mean anything", ratio, DefaultMaxRatio)
	}
	base, rep, err := extract(t, data, Limits{})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitRatio {
		t.Fatalf("err = %v, want the ratio limit (%d files, %d MiB from %d KiB)", err, rep.Files, rep.Bytes>>20, len(data)>>10)
	}
	if bound := int64(DefaultMaxRatio*float64(len(data))) + ratioFloor; rep.Bytes > bound {
		t.Errorf("%d bytes written from %d, want at most %d", rep.Bytes, len(data), bound)
	}
	assertContained(t, base)
}

// TestExtractChecksFreeSpace: an archive that would not leave
// MinFreeBytes free on the destination's file system, with its declared
// size written, is refused before anything is written.
func TestExtractChecksFreeSpace(t *testing.T) {
	free, ok, err := freeBytes(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skip("this system does not tell its free space")
	}
	// More than the disk holds, declared by a zip entry's header or, for
	// a tar, by the archive's own size (a sparse file).
	huge := free + 16<<30
	declaringZip := func(t *testing.T) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.CreateRaw(&zip.FileHeader{Name: "a/huge.jpg", Method: zip.Store, CompressedSize64: 4, UncompressedSize64: uint64(huge)})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("jpeg"))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	small := manyFiles(4, 1<<10)
	tests := []struct {
		name    string
		data    func(*testing.T) []byte
		size    int64 // the archive file's size, if larger than data (sparse)
		lim     Limits
		refused bool
	}{
		{name: "zip, no room for the margin", data: func(t *testing.T) []byte { return buildZip(t, small) }, lim: Limits{MinFreeBytes: free + 1<<40}, refused: true},
		{name: "tar, no room for the margin", data: func(t *testing.T) []byte { return buildTar(t, small, false) }, lim: Limits{MinFreeBytes: free + 1<<40}, refused: true},
		{name: "tar.gz, no room for the margin", data: func(t *testing.T) []byte { return buildTar(t, small, true) }, lim: Limits{MinFreeBytes: free + 1<<40}, refused: true},
		{name: "zip declaring more than the disk holds", data: declaringZip,
			lim: Limits{MinFreeBytes: 1 << 20, MaxFileBytes: math.MaxInt64, MaxTotalBytes: math.MaxInt64, MaxRatio: 1e15}, refused: true},
		{name: "tar larger than the disk holds", data: func(t *testing.T) []byte { return buildTar(t, small, false) }, size: huge,
			lim: Limits{MinFreeBytes: 1 << 20, MaxTotalBytes: math.MaxInt64}, refused: true},
		{name: "zip with room", data: func(t *testing.T) []byte { return buildZip(t, small) }, lim: Limits{MinFreeBytes: 1 << 20}},
		{name: "tar with room", data: func(t *testing.T) []byte { return buildTar(t, small, false) }, lim: Limits{MinFreeBytes: 1 << 20}},
		{name: "tar.gz with room", data: func(t *testing.T) []byte { return buildTar(t, small, true) }, lim: Limits{MinFreeBytes: 1 << 20}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			src := filepath.Join(base, "archive")
			if err := os.WriteFile(src, tc.data(t), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.size > 0 {
				if err := os.Truncate(src, tc.size); err != nil {
					t.Skipf("no sparse file here: %v", err)
				}
			}
			rep, err := ExtractFile(context.Background(), src, filepath.Join(base, "out"), tc.lim)
			if !tc.refused {
				if err != nil || rep.Files != len(small) {
					t.Fatalf("err = %v, %d files; want all %d", err, rep.Files, len(small))
				}
				return
			}
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("err = %v, want ErrNoSpace", err)
			}
			if rep.Files != 0 {
				t.Errorf("%d files written before the refusal", rep.Files)
			}
			assertContained(t, base)
		})
	}
}
