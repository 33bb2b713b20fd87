package gallery

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/visage/visage/internal/archive"
)

// ImportEntry is one photo of an import: where it is (a path relative to
// the source's root, slash-separated) and whose it is.
type ImportEntry struct {
	Path        string
	ExternalID  string          // the subject's external id
	DisplayName string          // optional
	Metadata    json.RawMessage // optional JSON object
}

// SkippedFile is a file (or a manifest line) of an import source that
// will not be imported, and why.
type SkippedFile struct {
	// Path is relative to the source's root and slash-separated for a
	// tree; for a manifest line it is the path as the line wrote it (empty
	// if the line has none).
	Path string
	// Line is the manifest line (from 1); 0 for a tree.
	Line int
	// Reason is one of the Skip* codes.
	Reason string
	// Detail says more, for people; it is not meant to be parsed.
	Detail string
}

// Reasons a file of an import source is skipped, in SkippedFile.Reason.
// They are reported to operators and written to failure files, so they
// never change once released.
const (
	// SkipNotImage: a tree's file whose extension is not one of .jpg
	// .jpeg .png .gif .webp .bmp (in any case).
	SkipNotImage = "not_image"
	// SkipHidden: a name starting with "." (or macOS's "__MACOSX"
	// folder); a hidden directory is reported once, not file by file.
	SkipHidden = "hidden"
	// SkipSymlink: a symbolic link, never followed (it may lead out of
	// the source).
	SkipSymlink = "symlink"
	// SkipNotRegular: a device, FIFO or socket; in a manifest, also a
	// directory.
	SkipNotRegular = "not_regular"
	// SkipTopLevelFile: a file directly under a tree's root, which names
	// no subject.
	SkipTopLevelFile = "top_level_file"
	// SkipNested: a file in a folder below a subject's folder.
	SkipNested = "nested"
	// SkipBadExternalID: a tree's folder name that is not a valid
	// external id (see ScanTree).
	SkipBadExternalID = "bad_external_id"
	// SkipUnsafePath: a manifest path that is absolute or escapes the
	// root.
	SkipUnsafePath = "unsafe_path"
	// SkipMissingFile: a manifest path naming no file.
	SkipMissingFile = "missing_file"
	// SkipBadLine: a manifest line that cannot be read: bad CSV or JSON,
	// no path, a bad external id, display name or metadata.
	SkipBadLine = "bad_line"
	// SkipDuplicate: a manifest line repeating the path and external id
	// of an earlier line.
	SkipDuplicate = "duplicate"
)

// Sentinel errors of import sources.
var (
	// ErrBadManifest: the manifest as a whole cannot be used: empty, no
	// or a bad CSV header, outside its root, or several in one directory.
	ErrBadManifest = errors.New("gallery: bad manifest")
	// ErrUnsupportedSource: a file that is neither an archive (zip, tar,
	// tar.gz) nor a manifest (.csv, .jsonl, .ndjson).
	ErrUnsupportedSource = errors.New("gallery: unsupported import source")
	// ErrBadSourcePath: a server-local source's path names nothing an
	// import may read under the import root; the error is a
	// *SourcePathError.
	ErrBadSourcePath = errors.New("gallery: bad import source path")
)

// SourcePathError reports a path OpenSourceIn refused; it wraps
// ErrBadSourcePath. Its message quotes the path as given and says what is
// wrong with it, never where a link leads or what a file outside the
// root holds.
type SourcePathError struct {
	Path   string // as given
	Reason string
}

// Error formats the error as `import source "<path>": <reason>`.
func (e *SourcePathError) Error() string {
	p := e.Path
	if len(p) > 200 {
		p = p[:200] + "…"
	}
	return fmt.Sprintf("import source %q: %s", p, e.Reason)
}

// Unwrap returns ErrBadSourcePath.
func (e *SourcePathError) Unwrap() error { return ErrBadSourcePath }

// isImageName reports whether a name has the extension of a format the
// engine decodes.
func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp":
		return true
	}
	return false
}

// isHiddenName reports whether a name is hidden: a dot file, or the
// folder macOS adds to the archives it makes.
func isHiddenName(name string) bool {
	return strings.HasPrefix(name, ".") || name == "__MACOSX"
}

// checkExternalID returns what is wrong with an external id, or "".
func checkExternalID(id string) string {
	if err := CheckExternalID(id); err != nil {
		return err.Error()
	}
	return ""
}

// ScanTree lists the photos of a folder tree <subject external id>/<images>
// under root, in path order. Only files directly inside a first-level
// folder are photos, recognised by their extension; the folder's name is
// the external id (1–256 bytes of UTF-8, no control characters). Every
// other file is in the second result, with its reason, also in path
// order: files directly under root, in deeper folders, hidden ones,
// non-images, symbolic links (never followed), special files, and files
// of folders whose name is no valid external id.
func ScanTree(ctx context.Context, root string) ([]ImportEntry, []SkippedFile, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, nil, fmt.Errorf("scan tree: %w", err)
	}
	defer r.Close()
	return scanTree(ctx, r.FS())
}

// scanTree is ScanTree of the tree at the top of fsys. With an os.Root's
// file system nothing outside the root is read, even if the tree changes
// while it is scanned.
func scanTree(ctx context.Context, fsys fs.FS) ([]ImportEntry, []SkippedFile, error) {
	top, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, nil, fmt.Errorf("scan tree: %w", err)
	}
	var entries []ImportEntry
	var skipped []SkippedFile
	skip := func(p, reason, detail string) {
		skipped = append(skipped, SkippedFile{Path: p, Reason: reason, Detail: detail})
	}
	for _, d := range top {
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("scan tree: %w", err)
		}
		name := d.Name()
		switch {
		case isHiddenName(name):
			skip(name, SkipHidden, dirDetail(d))
		case d.Type()&fs.ModeSymlink != 0:
			skip(name, SkipSymlink, "")
		case d.IsDir():
			e, s, err := scanSubject(ctx, fsys, name)
			if err != nil {
				return nil, nil, err
			}
			entries = append(entries, e...)
			skipped = append(skipped, s...)
		case d.Type().IsRegular():
			skip(name, SkipTopLevelFile, "photos go in a folder named by the subject's external id")
		default:
			skip(name, SkipNotRegular, d.Type().String())
		}
	}
	slices.SortFunc(entries, func(a, b ImportEntry) int { return strings.Compare(a.Path, b.Path) })
	slices.SortStableFunc(skipped, func(a, b SkippedFile) int { return strings.Compare(a.Path, b.Path) })
	return entries, skipped, nil
}

// dirDetail is the detail of a skipped directory, reported once for all
// it holds.
func dirDetail(d fs.DirEntry) string {
	if d.IsDir() {
		return "a folder, not read"
	}
	return ""
}

// scanSubject lists the photos of one subject's folder.
func scanSubject(ctx context.Context, fsys fs.FS, id string) ([]ImportEntry, []SkippedFile, error) {
	ents, err := fs.ReadDir(fsys, id)
	if err != nil {
		return nil, nil, fmt.Errorf("scan folder %q: %w", id, err)
	}
	idProblem := checkExternalID(id)
	var entries []ImportEntry
	var skipped []SkippedFile
	skip := func(p, reason, detail string) {
		skipped = append(skipped, SkippedFile{Path: p, Reason: reason, Detail: detail})
	}
	for i, d := range ents {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, nil, fmt.Errorf("scan folder %q: %w", id, err)
			}
		}
		rel := id + "/" + d.Name()
		switch {
		case isHiddenName(d.Name()):
			skip(rel, SkipHidden, dirDetail(d))
		case d.Type()&fs.ModeSymlink != 0:
			skip(rel, SkipSymlink, "")
		case d.IsDir():
			s, err := scanNested(ctx, fsys, rel)
			if err != nil {
				return nil, nil, err
			}
			skipped = append(skipped, s...)
		case !d.Type().IsRegular():
			skip(rel, SkipNotRegular, d.Type().String())
		case !isImageName(d.Name()):
			skip(rel, SkipNotImage, "")
		case idProblem != "":
			skip(rel, SkipBadExternalID, idProblem)
		default:
			entries = append(entries, ImportEntry{Path: rel, ExternalID: id})
		}
	}
	return entries, skipped, nil
}

// scanNested reports the files of a folder below a subject's folder: none
// is imported, since which subject they belong to is a guess.
func scanNested(ctx context.Context, fsys fs.FS, rel string) ([]SkippedFile, error) {
	var skipped []SkippedFile
	err := fs.WalkDir(fsys, rel, func(r string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case r == rel:
		case isHiddenName(d.Name()):
			skipped = append(skipped, SkippedFile{Path: r, Reason: SkipHidden, Detail: dirDetail(d)})
			if d.IsDir() {
				return fs.SkipDir
			}
		case d.Type()&fs.ModeSymlink != 0:
			skipped = append(skipped, SkippedFile{Path: r, Reason: SkipSymlink})
		case d.IsDir():
		case !d.Type().IsRegular():
			skipped = append(skipped, SkippedFile{Path: r, Reason: SkipNotRegular, Detail: d.Type().String()})
		default:
			skipped = append(skipped, SkippedFile{Path: r, Reason: SkipNested,
				Detail: "photos go directly in the folder named by the subject's external id"})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan folder %q: %w", rel, err)
	}
	return skipped, nil
}

// manifestFormat is how a manifest is written.
type manifestFormat int

const (
	manifestCSV manifestFormat = iota
	manifestJSONL
)

// manifestFormatOf tells a manifest's format from its name, or else from
// its first byte.
func manifestFormatOf(name string, head []byte) manifestFormat {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return manifestCSV
	case ".jsonl", ".ndjson":
		return manifestJSONL
	}
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("{")) {
		return manifestJSONL
	}
	return manifestCSV
}

func isManifestName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv", ".jsonl", ".ndjson":
		return true
	}
	return false
}

// ReadManifest reads a manifest of photos: CSV with a header row naming
// its columns, in any order, among path, external_id (both required),
// display_name and metadata (a JSON object); or JSON Lines, one object per
// line with those keys. The format follows the extension (.csv; .jsonl or
// .ndjson), or else the first byte ("{" for JSON Lines). A UTF-8 byte
// order mark is ignored.
//
// Paths are relative to the manifest's directory and slash-separated;
// they must stay inside root (if empty, the manifest's directory), which
// entries' paths are relative to. A line is skipped, and reported with its
// number, when its path is absolute or leaves root (SkipUnsafePath), names
// nothing (SkipMissingFile), passes through or is a symbolic link
// (SkipSymlink), or is no regular file (SkipNotRegular); when it cannot
// be read or its fields are invalid (SkipBadLine); and when it repeats the
// path and external id of an accepted line (SkipDuplicate). Extensions
// are not checked: the manifest names its photos. The error is for the
// manifest as a whole: unreadable, empty, a bad CSV header
// (ErrBadManifest).
func ReadManifest(ctx context.Context, root, manifestPath string) ([]ImportEntry, []SkippedFile, error) {
	if root == "" {
		root = filepath.Dir(manifestPath)
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	absManifest, err := filepath.Abs(manifestPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	base, err := filepath.Rel(absRoot, filepath.Dir(absManifest))
	if err != nil || !filepath.IsLocal(base) {
		return nil, nil, fmt.Errorf("manifest %s is outside root %s: %w", manifestPath, root, ErrBadManifest)
	}
	// The manifest is the caller's own file, opened as named; the photos
	// it lists are looked up through root, and never outside it.
	f, err := os.Open(manifestPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	r, err := os.OpenRoot(absRoot)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest: %w", err)
	}
	defer r.Close()
	return readManifest(ctx, r, filepath.ToSlash(base), manifestPath, f)
}

// readManifest reads the manifest f, named name (for its format and the
// errors), whose directory is base (slash-separated) in root: the photos
// it lists are looked up through root, so none outside it is ever
// reached.
func readManifest(ctx context.Context, root *os.Root, base, name string, f io.Reader) ([]ImportEntry, []SkippedFile, error) {
	br := bufio.NewReaderSize(f, 64<<10)
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3) // cannot fail: Peek returned the 3 bytes
	}
	head, _ := br.Peek(512)
	m := &manifestReader{ctx: ctx, root: root, base: base, dirs: map[string]error{}, seen: map[[2]string]bool{}}
	var err error
	if manifestFormatOf(name, head) == manifestJSONL {
		err = m.readJSONL(br)
	} else {
		err = m.readCSV(br)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	return m.entries, m.skipped, nil
}

// manifestReader holds the state of one ReadManifest.
type manifestReader struct {
	ctx     context.Context
	root    *os.Root           // where the photos are looked up
	base    string             // the manifest's directory, relative to root, slash-separated
	dirs    map[string]error   // directories checked: nil, or why paths through them are refused
	seen    map[[2]string]bool // accepted (path, external id)
	entries []ImportEntry
	skipped []SkippedFile
}

// manifestLine is one manifest line's fields, as read.
type manifestLine struct {
	num         int
	path        string
	externalID  string
	displayName string
	metadata    json.RawMessage
}

func (m *manifestReader) skip(l manifestLine, reason, detail string) {
	m.skipped = append(m.skipped, SkippedFile{Path: l.path, Line: l.num, Reason: reason, Detail: detail})
}

// add checks one line and records it as an entry or a skipped file.
func (m *manifestReader) add(l manifestLine) {
	if l.path == "" {
		m.skip(l, SkipBadLine, "no path")
		return
	}
	if p := checkExternalID(l.externalID); p != "" {
		m.skip(l, SkipBadLine, p)
		return
	}
	if err := CheckDisplayName(l.displayName); err != nil {
		m.skip(l, SkipBadLine, err.Error())
		return
	}
	meta, problem := checkMetadata(l.metadata)
	if problem != "" {
		m.skip(l, SkipBadLine, problem)
		return
	}
	rel, reason, detail := m.resolve(l.path)
	if reason != "" {
		m.skip(l, reason, detail)
		return
	}
	key := [2]string{rel, l.externalID}
	if m.seen[key] {
		m.skip(l, SkipDuplicate, "the same path and external id as an earlier line")
		return
	}
	m.seen[key] = true
	m.entries = append(m.entries, ImportEntry{Path: rel, ExternalID: l.externalID, DisplayName: l.displayName, Metadata: meta})
}

// checkMetadata returns metadata if it is a JSON object of at most
// MaxMetadataBytes (nil for none or null), or what is wrong with it.
func checkMetadata(raw json.RawMessage) (json.RawMessage, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, ""
	}
	if err := CheckMetadata(raw); err != nil {
		return nil, err.Error()
	}
	return raw, ""
}

// resolve returns a manifest path as a path relative to root, or the
// reason it is refused.
func (m *manifestReader) resolve(p string) (rel, reason, detail string) {
	switch {
	case strings.ContainsRune(p, 0):
		return "", SkipBadLine, "NUL byte in path"
	case strings.HasPrefix(p, "/"):
		return "", SkipUnsafePath, "absolute path"
	case len(p) >= 2 && p[1] == ':' && 'a' <= p[0]|0x20 && p[0]|0x20 <= 'z':
		return "", SkipUnsafePath, "drive letter"
	case strings.ContainsRune(p, '\\'):
		// A legal name character here, but almost surely a Windows
		// separator: refusing says so instead of "missing file".
		return "", SkipBadLine, `backslash in path: separate folders with "/"`
	}
	rel = path.Clean(path.Join(m.base, p))
	if !filepath.IsLocal(filepath.FromSlash(rel)) {
		return "", SkipUnsafePath, "path leaves the import's root"
	}
	// Each directory on the way is checked with Lstat, so that no
	// symbolic link is followed; a manifest of a million photos in a few
	// folders checks each folder once.
	if err := m.checkDirs(path.Dir(rel)); err != nil {
		return "", reasonOf(err), err.Error()
	}
	fi, err := m.root.Lstat(filepath.FromSlash(rel))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", SkipMissingFile, "no such file"
	case err != nil:
		return "", SkipMissingFile, pathErrText(err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", SkipSymlink, ""
	case fi.IsDir():
		return "", SkipNotRegular, "a directory"
	case !fi.Mode().IsRegular():
		return "", SkipNotRegular, fi.Mode().Type().String()
	}
	return rel, "", ""
}

// pathErrText is what a failed look-up of a path says: without the path
// (the caller names it), which an os.Root gives relative anyway.
func pathErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// manifestPathError is why a directory on a manifest path is refused.
type manifestPathError struct {
	reason string
	msg    string
}

func (e *manifestPathError) Error() string { return e.msg }

func reasonOf(err error) string {
	var pe *manifestPathError
	if errors.As(err, &pe) {
		return pe.reason
	}
	return SkipMissingFile
}

// checkDirs checks dir (relative to root) and its parents, from the
// top, remembering the outcome of each.
func (m *manifestReader) checkDirs(dir string) error {
	if dir == "." {
		return nil
	}
	if err, ok := m.dirs[dir]; ok {
		return err
	}
	err := m.checkDirs(path.Dir(dir))
	if err == nil {
		fi, lerr := m.root.Lstat(filepath.FromSlash(dir))
		switch {
		case errors.Is(lerr, fs.ErrNotExist):
			err = &manifestPathError{SkipMissingFile, "no folder " + dir}
		case lerr != nil:
			err = &manifestPathError{SkipMissingFile, pathErrText(lerr)}
		case fi.Mode()&fs.ModeSymlink != 0:
			err = &manifestPathError{SkipSymlink, "folder " + dir + " is a symbolic link"}
		case !fi.IsDir():
			err = &manifestPathError{SkipMissingFile, dir + " is not a folder"}
		}
	}
	m.dirs[dir] = err
	return err
}

func (m *manifestReader) readCSV(r io.Reader) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // a line with too few or many fields is that line's problem
	cr.TrimLeadingSpace = true
	// The known columns; the first two are required.
	columns := []string{"path", "external_id", "display_name", "metadata"}
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("empty: %w", ErrBadManifest)
	}
	if err != nil {
		return fmt.Errorf("read CSV header: %w: %w", ErrBadManifest, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(columns, h) {
			return fmt.Errorf("CSV header: unknown column %q (known: %s): %w", h, strings.Join(columns, ", "), ErrBadManifest)
		}
		if _, dup := col[h]; dup {
			return fmt.Errorf("CSV header: column %q twice: %w", h, ErrBadManifest)
		}
		col[h] = i
	}
	for _, need := range columns[:2] {
		if _, ok := col[need]; !ok {
			return fmt.Errorf("CSV header: no %q column: %w", need, ErrBadManifest)
		}
	}
	field := func(rec []string, name string) string {
		if i, ok := col[name]; ok {
			return rec[i]
		}
		return ""
	}
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := m.ctx.Err(); err != nil {
				return err
			}
		}
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			m.skip(manifestLine{num: pe.StartLine}, SkipBadLine, pe.Err.Error())
			continue
		}
		if err != nil {
			return fmt.Errorf("read CSV: %w", err)
		}
		num, _ := cr.FieldPos(0)
		l := manifestLine{num: num}
		if len(rec) != len(header) {
			if len(rec) > col["path"] {
				l.path = rec[col["path"]]
			}
			m.skip(l, SkipBadLine, fmt.Sprintf("%d fields, the header has %d", len(rec), len(header)))
			continue
		}
		l.path = field(rec, "path")
		l.externalID = field(rec, "external_id")
		l.displayName = field(rec, "display_name")
		l.metadata = json.RawMessage(field(rec, "metadata"))
		m.add(l)
	}
}

// maxJSONLine bounds a JSON Lines manifest's line: room for the largest
// metadata and then some.
const maxJSONLine = 4 * MaxMetadataBytes

// jsonLine is one line of a JSON Lines manifest.
type jsonLine struct {
	Path        *string         `json:"path"`
	ExternalID  *string         `json:"external_id"`
	DisplayName *string         `json:"display_name"`
	Metadata    json.RawMessage `json:"metadata"`
}

func (m *manifestReader) readJSONL(r *bufio.Reader) error {
	empty := true
	for num := 1; ; num++ {
		if num%1024 == 0 {
			if err := m.ctx.Err(); err != nil {
				return err
			}
		}
		text, tooLong, err := readManifestLine(r, maxJSONLine)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read line %d: %w", num, err)
		}
		text = bytes.TrimSpace(text)
		switch {
		case tooLong:
			m.skip(manifestLine{num: num}, SkipBadLine, fmt.Sprintf("line longer than %d bytes", maxJSONLine))
		case len(text) > 0:
			m.addJSON(num, text)
		}
		empty = empty && !tooLong && len(text) == 0
		if errors.Is(err, io.EOF) && empty {
			return fmt.Errorf("empty: %w", ErrBadManifest)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

func (m *manifestReader) addJSON(num int, text []byte) {
	var jl jsonLine
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	err := dec.Decode(&jl)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value on the line")
	}
	l := manifestLine{num: num}
	if jl.Path != nil {
		l.path = *jl.Path
	}
	if err != nil {
		m.skip(l, SkipBadLine, err.Error())
		return
	}
	if jl.ExternalID != nil {
		l.externalID = *jl.ExternalID
	}
	if jl.DisplayName != nil {
		l.displayName = *jl.DisplayName
	}
	l.metadata = jl.Metadata
	m.add(l)
}

// readManifestLine reads one line (without its newline) of at most max bytes;
// tooLong reports a longer one, which is read to its end and dropped.
func readManifestLine(r *bufio.Reader, max int) (text []byte, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if len(text)+len(chunk) > max+1 { // +1: the newline
			tooLong = true
			text = text[:0]
		} else if !tooLong {
			text = append(text, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(text, []byte("\n")), tooLong, err
	}
}

// SourceKind is how an import source lists its photos.
type SourceKind string

// The kinds of source.
const (
	SourceTree     SourceKind = "tree"     // <subject external id>/<images> folders
	SourceManifest SourceKind = "manifest" // a CSV or JSON Lines manifest
)

// Source is an opened import source: where its photos are and which
// they are.
type Source struct {
	Kind SourceKind
	// Root is the directory entries' paths are relative to.
	Root string
	// Manifest is the manifest's path when Kind is SourceManifest.
	Manifest string
	// Archive is the format of the archive the source was extracted from,
	// or archive.FormatUnknown.
	Archive archive.Format
	Entries []ImportEntry
	Skipped []SkippedFile
}

// OpenSource opens the import source at path:
//   - a directory holding a manifest (manifest.csv, manifest.jsonl or
//     manifest.ndjson) is read as that manifest (ReadManifest, rooted at
//     the directory); so is a directory whose only visible entry is a
//     directory holding a manifest (an archive of the folder rather than
//     of its contents). Two manifests are ErrBadManifest;
//   - any other directory is a folder tree (ScanTree). A tree is never
//     looked for one level down: a lone folder holding folders may be one
//     subject's photos sorted by year, and taking the years for subjects
//     would enroll the wrong people;
//   - a file that starts like a zip, tar or gzip-compressed tar is
//     extracted with lim into workDir (which must be absent or empty),
//     then opened as a directory as above. On error the caller removes
//     workDir; after a restart, opening workDir gives the same source;
//   - a file named *.csv, *.jsonl or *.ndjson is a manifest, rooted at its
//     directory;
//   - anything else is ErrUnsupportedSource.
//
// path itself is the caller's (a symbolic link there is followed); inside
// the directory nothing outside it is read, as with OpenSourceIn. For a
// path a client names, use OpenSourceIn.
//
// Extraction errors wrap the archive package's sentinels (ErrUnsafe,
// ErrTooLarge, ErrCorrupt, ErrUnsupported, ErrNoSpace).
func OpenSource(ctx context.Context, path string, lim archive.Limits, workDir string) (Source, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Source{}, fmt.Errorf("open import source: %w", err)
	}
	if fi.IsDir() {
		r, err := os.OpenRoot(path)
		if err != nil {
			return Source{}, fmt.Errorf("open import source: %w", err)
		}
		defer r.Close()
		return openDir(ctx, r, path, filepath.Base(path))
	}
	if !fi.Mode().IsRegular() {
		return Source{}, fmt.Errorf("open import source %s: not a file or directory: %w", filepath.Base(path), ErrUnsupportedSource)
	}
	f, err := os.Open(path)
	if err != nil {
		return Source{}, fmt.Errorf("open import source: %w", err)
	}
	defer f.Close()
	head, err := readHead(f)
	if err != nil {
		return Source{}, err
	}
	if archive.DetectFormat(head) != archive.FormatUnknown {
		return extractSource(ctx, f, filepath.Base(path), lim, workDir)
	}
	if isManifestName(path) {
		entries, skipped, err := ReadManifest(ctx, filepath.Dir(path), path)
		if err != nil {
			return Source{}, err
		}
		return Source{Kind: SourceManifest, Root: filepath.Dir(path), Manifest: path, Entries: entries, Skipped: skipped}, nil
	}
	return Source{}, fmt.Errorf("open import source %s: %w", filepath.Base(path), ErrUnsupportedSource)
}

// Bounds of a server-local source's path: Linux's NAME_MAX and PATH_MAX
// (less its NUL), so that a longer one is refused for what it is rather
// than as an error of the file system.
const (
	maxSourceNameBytes = 255
	maxSourcePathBytes = 4095
)

// OpenSourceIn opens the import source at name, a slash-separated path
// relative to the directory root (the server's import root), as
// OpenSource does, without ever reading outside root:
//   - name must be relative and stay inside root once cleaned, hold no
//     NUL byte and fit the file system's limits;
//   - no symbolic link is followed, on the way to name or at name, even
//     one that stays inside root: the source must be named by its real
//     path (inside it, links are skipped as ScanTree and ReadManifest do);
//   - everything is opened through an os.Root on root, so a link or a
//     ".." swapped in while the source is read cannot lead out either.
//
// A refused name is a *SourcePathError (ErrBadSourcePath), as is a name
// that names nothing or passes through a file. Errors name paths relative
// to root, and quote nothing read outside it (nothing is).
func OpenSourceIn(ctx context.Context, root, name string, lim archive.Limits, workDir string) (Source, error) {
	clean, err := checkSourcePath(name)
	if err != nil {
		return Source{}, err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return Source{}, fmt.Errorf("open the import root: %w", err)
	}
	defer r.Close()
	fi, err := lstatNoLinks(r, name, clean)
	if err != nil {
		return Source{}, err
	}
	local := filepath.FromSlash(clean)
	switch {
	case fi.IsDir():
		sub, err := r.OpenRoot(local)
		if err != nil {
			return Source{}, fmt.Errorf("open import source %q: %w", clean, err)
		}
		defer sub.Close()
		return openDir(ctx, sub, filepath.Join(root, local), clean)
	case !fi.Mode().IsRegular():
		return Source{}, fmt.Errorf("open import source %q: not a file or directory: %w", clean, ErrUnsupportedSource)
	}
	f, err := r.Open(local)
	if err != nil {
		return Source{}, fmt.Errorf("open import source %q: %w", clean, err)
	}
	defer f.Close()
	head, err := readHead(f)
	if err != nil {
		return Source{}, err
	}
	if archive.DetectFormat(head) != archive.FormatUnknown {
		return extractSource(ctx, f, clean, lim, workDir)
	}
	if !isManifestName(clean) {
		return Source{}, fmt.Errorf("open import source %q: %w", clean, ErrUnsupportedSource)
	}
	dir := path.Dir(clean)
	dr, err := r.OpenRoot(filepath.FromSlash(dir))
	if err != nil {
		return Source{}, fmt.Errorf("open import source %q: %w", dir, err)
	}
	defer dr.Close()
	entries, skipped, err := readManifest(ctx, dr, ".", clean, f)
	if err != nil {
		return Source{}, err
	}
	return Source{Kind: SourceManifest, Root: filepath.Join(root, filepath.FromSlash(dir)), Manifest: filepath.Join(root, local),
		Entries: entries, Skipped: skipped}, nil
}

// checkSourcePath returns name cleaned, or why it is refused.
func checkSourcePath(name string) (string, error) {
	bad := func(reason string) (string, error) { return "", &SourcePathError{Path: name, Reason: reason} }
	switch {
	case name == "":
		return bad("empty: name a tree, manifest or archive relative to the import root")
	case strings.ContainsRune(name, 0):
		return bad("NUL byte in the path")
	case len(name) > maxSourcePathBytes:
		return bad(fmt.Sprintf("path longer than %d bytes", maxSourcePathBytes))
	case strings.HasPrefix(name, "/"):
		return bad("absolute path: name it relative to the import root")
	}
	clean := path.Clean(name)
	if !filepath.IsLocal(filepath.FromSlash(clean)) {
		return bad("the path leaves the import root")
	}
	for _, elem := range strings.Split(clean, "/") {
		if len(elem) > maxSourceNameBytes {
			return bad(fmt.Sprintf("a name longer than %d bytes", maxSourceNameBytes))
		}
	}
	return clean, nil
}

// lstatNoLinks looks up clean in r one name at a time, refusing symbolic
// links and paths through files, and returns what clean names. name is
// the path as given, for the errors.
func lstatNoLinks(r *os.Root, name, clean string) (fs.FileInfo, error) {
	elems := strings.Split(clean, "/")
	for i := range elems {
		p := strings.Join(elems[:i+1], "/")
		last := i == len(elems)-1
		fi, err := r.Lstat(filepath.FromSlash(p))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, &SourcePathError{Path: name, Reason: "no such file or folder under the import root"}
		case errors.Is(err, fs.ErrPermission):
			return nil, &SourcePathError{Path: name, Reason: "permission denied"}
		case err != nil:
			return nil, fmt.Errorf("look up import source %q: %w", p, err)
		case fi.Mode()&fs.ModeSymlink != 0 && last:
			return nil, &SourcePathError{Path: name, Reason: "a symbolic link, which imports never follow"}
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, &SourcePathError{Path: name, Reason: fmt.Sprintf("%q is a symbolic link, which imports never follow", p)}
		case !last && !fi.IsDir():
			return nil, &SourcePathError{Path: name, Reason: fmt.Sprintf("%q is not a folder", p)}
		case last:
			return fi, nil
		}
	}
	panic("unreachable: a clean path has at least one name")
}

// extractSource extracts the archive f, named name in errors, into
// workDir and opens the result.
func extractSource(ctx context.Context, f *os.File, name string, lim archive.Limits, workDir string) (Source, error) {
	if workDir == "" {
		return Source{}, errors.New("open import source: an archive needs a work directory")
	}
	if ents, err := os.ReadDir(workDir); err == nil && len(ents) > 0 {
		return Source{}, errors.New("open import source: the work directory is not empty")
	}
	rep, err := archive.Extract(ctx, f, workDir, lim)
	if err != nil {
		return Source{}, fmt.Errorf("extract %s: %w", path.Base(name), err)
	}
	r, err := os.OpenRoot(workDir)
	if err != nil {
		return Source{}, fmt.Errorf("open extracted archive: %w", err)
	}
	defer r.Close()
	src, err := openDir(ctx, r, workDir, ".")
	src.Archive = rep.Format
	return src, err
}

// readHead reads the first bytes of a file, enough to tell an archive.
func readHead(f *os.File) ([]byte, error) {
	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read import source: %w", err)
	}
	return head[:n], nil
}

// openDir opens the directory source at the top of r, whose path is dir
// and whose name in errors is name: a manifest if it has one (itself or
// its lone visible subdirectory), else a tree.
func openDir(ctx context.Context, r *os.Root, dir, name string) (Source, error) {
	manifest, err := findManifest(r, ".", name)
	if err != nil {
		return Source{}, err
	}
	if manifest == "" {
		if sub := loneDir(r); sub != "" {
			if manifest, err = findManifest(r, sub, path.Join(name, sub)); err != nil {
				return Source{}, err
			}
		}
	}
	if manifest == "" {
		entries, skipped, err := scanTree(ctx, r.FS())
		if err != nil {
			return Source{}, err
		}
		return Source{Kind: SourceTree, Root: dir, Entries: entries, Skipped: skipped}, nil
	}
	mdir := path.Dir(manifest)
	mr, err := r.OpenRoot(filepath.FromSlash(mdir))
	if err != nil {
		return Source{}, fmt.Errorf("open import source %q: %w", path.Join(name, mdir), err)
	}
	defer mr.Close()
	f, err := mr.Open(path.Base(manifest))
	if err != nil {
		return Source{}, fmt.Errorf("read manifest %s: %w", path.Join(name, manifest), err)
	}
	defer f.Close()
	entries, skipped, err := readManifest(ctx, mr, ".", path.Join(name, manifest), f)
	if err != nil {
		return Source{}, err
	}
	return Source{Kind: SourceManifest, Root: filepath.Join(dir, filepath.FromSlash(mdir)), Manifest: filepath.Join(dir, filepath.FromSlash(manifest)),
		Entries: entries, Skipped: skipped}, nil
}

// findManifest returns the path in r of dir's manifest, "" if it has
// none; name is dir's name in errors.
func findManifest(r *os.Root, dir, name string) (string, error) {
	names := []string{"manifest.csv", "manifest.jsonl", "manifest.ndjson"}
	var found []string
	for _, n := range names {
		p := path.Join(dir, n)
		// Lstat: a symbolic link is no manifest, as it is no photo.
		if fi, err := r.Lstat(filepath.FromSlash(p)); err == nil && fi.Mode().IsRegular() {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%s holds %d manifests (%s): %w", name, len(found), strings.Join(names, ", "), ErrBadManifest)
}

// loneDir returns the name of the only visible entry at the top of r if
// it is a directory (not a symbolic link), else "".
func loneDir(r *os.Root) string {
	ents, err := fs.ReadDir(r.FS(), ".")
	if err != nil {
		return ""
	}
	var visible []fs.DirEntry
	for _, e := range ents {
		if !isHiddenName(e.Name()) {
			visible = append(visible, e)
		}
	}
	if len(visible) != 1 || !visible[0].IsDir() {
		return ""
	}
	return visible[0].Name()
}
