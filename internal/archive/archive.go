// Package archive extracts zip and tar (optionally gzip-compressed)
// archives safely: every entry lands inside the destination directory or
// extraction stops, and limits on entries and bytes stop archive bombs.
//
// What is refused, and why:
//   - names that are absolute, carry a Windows drive letter or a
//     backslash, hold a NUL byte, or escape the destination once cleaned
//     (an *UnsafeEntryError wrapping ErrUnsafe);
//   - symbolic links, hard links, devices, FIFOs and entry types this
//     package does not know: a gallery import needs none of them, and each
//     is a way out of the destination or into the host (ErrUnsafe);
//   - two entries resolving to the same path (or a file where a directory
//     was already made): the second would silently replace the first
//     (ErrUnsafe);
//   - more entries, bigger entries, more bytes in all, or a higher
//     compression ratio than Limits allow (a *LimitError wrapping
//     ErrTooLarge). Bytes are counted while they are written, never taken
//     from the archive's headers. The ratio holds per zip entry and over
//     the whole archive, with one 1 MiB allowance per archive for small,
//     very compressible files: small entries cannot each take it, so what
//     an extraction writes stays below MaxRatio times the archive's size
//     plus 1 MiB;
//   - an archive that would leave less than MinFreeBytes free on the
//     destination's file system, judged before extraction from its
//     declared size and checked again while writing (ErrNoSpace).
//
// Directories are created 0o700 and files 0o600 whatever the archive
// says; modes, owners and times in the archive are ignored. Files are
// created with O_EXCL through an os.Root opened on the destination, so an
// existing file or symbolic link there is never followed or overwritten.
//
// On any error extraction stops where it is; what was written so far
// stays, and the caller removes the destination directory.
package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// Format is an archive format this package recognises.
type Format string

// The recognised formats; FormatUnknown is the zero value.
const (
	FormatUnknown Format = ""
	FormatZip     Format = "zip"
	FormatTar     Format = "tar"
	FormatTarGzip Format = "tar.gz"
)

// Default limits, chosen for photo galleries: a million photos of at most
// 64 MiB each (the service's request and image limit), 32 GiB in all
// (twice the server's default upload limit: photos barely compress, so an
// upload extracts to about its own size). Photos barely compress (JPEG,
// PNG and WebP are compressed already), so a ratio above 200 is no photo
// gallery. 1 GiB left free keeps the rest of the server (its database,
// its index snapshots) writing.
const (
	DefaultMaxEntries          = 1_000_000
	DefaultMaxFileBytes  int64 = 64 << 20
	DefaultMaxTotalBytes int64 = 32 << 30
	DefaultMaxRatio            = 200.0
	DefaultMinFreeBytes  int64 = 1 << 30
)

// ratioFloor is the allowance beyond the compression ratio of a whole
// archive: small text files (a manifest, a README) compress far better
// than 200:1 when short and repetitive. It is one budget for the archive,
// not a floor per entry: granted to every entry, thousands of tiny
// entries inflating to 1 MiB each would write gigabytes from megabytes.
const ratioFloor int64 = 1 << 20

// Limits bound what an extraction may write. A zero (or negative) field
// takes its Default value, so the zero Limits is the default; a server
// sets MaxTotalBytes from its configuration.
type Limits struct {
	// MaxEntries bounds the number of entries of every kind (files,
	// directories, tar's global headers).
	MaxEntries int
	// MaxFileBytes bounds one file's bytes.
	MaxFileBytes int64
	// MaxTotalBytes bounds the bytes written by the whole extraction.
	MaxTotalBytes int64
	// MaxRatio bounds uncompressed/compressed size: per entry and over the
	// whole archive in a zip archive, over the whole stream in a
	// gzip-compressed tar. One allowance of 1 MiB per archive goes beyond
	// it (see ratioFloor).
	MaxRatio float64
	// MinFreeBytes is the free space an extraction leaves on the
	// destination's file system: an archive whose declared size would
	// leave less is refused before anything is written, and extraction
	// stops when the free space falls below it (ErrNoSpace).
	MinFreeBytes int64
}

// WithDefaults returns l with every unset field set to its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	if l.MinFreeBytes <= 0 {
		l.MinFreeBytes = DefaultMinFreeBytes
	}
	return l
}

// Report says what an extraction did, also when it failed (then up to the
// failure).
type Report struct {
	Format  Format
	Entries int   // entries read, of every kind
	Files   int   // regular files written
	Dirs    int   // directory entries
	Bytes   int64 // bytes written to files
}

// Sentinel errors, for errors.Is.
var (
	// ErrUnsupported: not a zip, tar or gzip-compressed tar archive, a
	// gzip stream holding something other than a tar, or a zip entry that
	// is encrypted or compressed with a method other than store and
	// deflate.
	ErrUnsupported = errors.New("archive: unsupported format")
	// ErrCorrupt: the archive is recognised but malformed or truncated.
	ErrCorrupt = errors.New("archive: corrupt archive")
	// ErrUnsafe: an entry was refused; the error is an *UnsafeEntryError.
	ErrUnsafe = errors.New("archive: unsafe entry")
	// ErrTooLarge: a limit was exceeded; the error is a *LimitError.
	ErrTooLarge = errors.New("archive: limit exceeded")
	// ErrNoSpace: the destination's file system has not the room for the
	// archive and the free space Limits.MinFreeBytes keeps.
	ErrNoSpace = errors.New("archive: not enough disk space")
)

// Reasons an entry is refused, in UnsafeEntryError.Reason.
const (
	ReasonBadName         = "bad_name"       // empty, NUL byte, or "." as a file
	ReasonAbsolute        = "absolute_path"  // starts with "/"
	ReasonDriveLetter     = "drive_letter"   // starts with "C:"
	ReasonBackslash       = "backslash"      // a "\" anywhere: a Windows separator on extraction elsewhere
	ReasonTraversal       = "path_traversal" // escapes the destination once cleaned
	ReasonSymlink         = "symlink"
	ReasonHardlink        = "hardlink"
	ReasonSpecial         = "special_file" // device, FIFO, socket
	ReasonUnsupportedType = "unsupported_type"
	ReasonDuplicate       = "duplicate" // a second entry for a path already extracted
)

// UnsafeEntryError reports an entry that was refused; it wraps ErrUnsafe.
type UnsafeEntryError struct {
	Name   string // the entry's name as the archive has it
	Reason string // one of the Reason* constants
}

// Error formats the error as "archive: unsafe entry "<name>": <reason>".
func (e *UnsafeEntryError) Error() string {
	return fmt.Sprintf("archive: unsafe entry %q: %s", e.Name, e.Reason)
}

// Unwrap returns ErrUnsafe.
func (e *UnsafeEntryError) Unwrap() error { return ErrUnsafe }

// Limits a LimitError names.
const (
	LimitEntries    = "entries"
	LimitFileBytes  = "file_bytes"
	LimitTotalBytes = "total_bytes"
	LimitRatio      = "ratio"
	// LimitDeclaredSize: a zip entry inflated to more than its header
	// declared, which only a crafted archive does.
	LimitDeclaredSize = "declared_size"
)

// LimitError reports an exceeded limit; it wraps ErrTooLarge.
type LimitError struct {
	Name  string // the entry being read when the limit was hit ("" for the archive as a whole)
	Limit string // one of the Limit* constants
	Max   int64  // the limit's value (for ratio, rounded down)
}

// Error formats the error as "archive: entry "<name>": <limit> limit of <max> exceeded".
func (e *LimitError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("archive: %s limit of %d exceeded", e.Limit, e.Max)
	}
	return fmt.Sprintf("archive: entry %q: %s limit of %d exceeded", e.Name, e.Limit, e.Max)
}

// Unwrap returns ErrTooLarge.
func (e *LimitError) Unwrap() error { return ErrTooLarge }

// DetectFormat tells the format from an archive's first bytes (at least
// 262 of them for a plain tar). A gzip stream is reported as FormatTarGzip
// without looking inside; extraction checks it holds a tar.
func DetectFormat(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		// A local file header, or the end record of an empty archive.
		return FormatZip
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return FormatTarGzip
	case isTarHeader(head):
		return FormatTar
	}
	return FormatUnknown
}

// isTarHeader reports whether block starts like a tar archive: the
// "ustar" magic of POSIX and GNU headers at offset 257, or an all-zero
// first block (an empty archive). Pre-POSIX (v7) archives are not
// recognised.
func isTarHeader(block []byte) bool {
	if len(block) >= 262 && string(block[257:262]) == "ustar" {
		return true
	}
	if len(block) < 512 {
		return false
	}
	for _, b := range block[:512] {
		if b != 0 {
			return false
		}
	}
	return true
}

// ExtractFile extracts the archive at path into dst, choosing the format
// from the file's first bytes: zip, tar, or gzip-compressed tar; anything
// else is ErrUnsupported. dst is created (0o700) if absent; it should be
// empty.
func ExtractFile(ctx context.Context, path, dst string, lim Limits) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	rep, err := Extract(ctx, f, dst, lim)
	if errors.Is(err, errUnknownFormat) {
		return rep, fmt.Errorf("extract %s: %w", filepath.Base(path), ErrUnsupported)
	}
	return rep, err
}

// errUnknownFormat: Extract's file is no archive it knows.
var errUnknownFormat = fmt.Errorf("not a zip, tar or tar.gz archive: %w", ErrUnsupported)

// Extract extracts the archive f, already open (say, through an os.Root),
// into dst like ExtractFile. It reads f from its start.
func Extract(ctx context.Context, f *os.File, dst string, lim Limits) (Report, error) {
	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return Report{}, fmt.Errorf("read archive: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return Report{}, fmt.Errorf("stat archive: %w", err)
	}
	switch DetectFormat(head[:n]) {
	case FormatZip:
		return ExtractZip(ctx, f, fi.Size(), dst, lim)
	case FormatTar, FormatTarGzip:
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return Report{}, fmt.Errorf("rewind archive: %w", err)
		}
		return extractTar(ctx, f, fi.Size(), dst, lim)
	}
	return Report{}, errUnknownFormat
}

// kind is what the extractor made at a path.
type kind uint8

const (
	madeFile kind = iota + 1
	madeDir
)

// extractor holds one extraction's state: the destination, the limits,
// what was made where, and the counts.
type extractor struct {
	ctx  context.Context
	root *os.Root
	dst  string
	lim  Limits
	made map[string]kind // by cleaned, slash-separated path
	rep  Report
	buf  []byte
	// floor is what is left of the archive's ratioFloor allowance (zip).
	floor int64
	// archiveCap bounds the bytes of the whole extraction by the ratio
	// over the archive's size; -1 when another check bounds them (tar's
	// stream ratio, or no compression at all).
	archiveCap int64
	// unchecked counts the bytes written since the free space was last
	// checked.
	unchecked int64
}

// spaceCheckEvery is how many bytes an extraction writes between two
// checks of the free space: often enough that other writers cannot fill
// the margin meanwhile, rarely enough to cost nothing.
const spaceCheckEvery = 64 << 20

// newExtractor makes dst and checks that need more bytes would leave
// MinFreeBytes free there.
func newExtractor(ctx context.Context, dst string, lim Limits, f Format, need int64) (*extractor, error) {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return nil, fmt.Errorf("create destination: %w", err)
	}
	x := &extractor{
		ctx:        ctx,
		dst:        dst,
		lim:        lim.WithDefaults(),
		made:       map[string]kind{".": madeDir},
		rep:        Report{Format: f},
		floor:      ratioFloor,
		archiveCap: -1,
	}
	if err := x.checkSpace(min(need, x.lim.MaxTotalBytes)); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return nil, fmt.Errorf("open destination: %w", err)
	}
	x.root, x.buf = root, make([]byte, 64<<10)
	return x, nil
}

// checkSpace refuses (ErrNoSpace) when writing need more bytes would
// leave less than MinFreeBytes free on the destination's file system. A
// system that cannot tell its free space is not checked.
func (x *extractor) checkSpace(need int64) error {
	x.unchecked = 0
	free, ok, err := freeBytes(x.dst)
	if err != nil {
		return fmt.Errorf("check free disk space: %w", err)
	}
	if ok && free-need < x.lim.MinFreeBytes {
		return fmt.Errorf("%w: %d MiB free on the import directory's file system; %d MiB needed and %d MiB kept free",
			ErrNoSpace, free>>20, need>>20, x.lim.MinFreeBytes>>20)
	}
	return nil
}

func (x *extractor) close() { x.root.Close() }

// next counts an entry, checking the entry limit and the context first.
func (x *extractor) next() error {
	if err := x.ctx.Err(); err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	if x.rep.Entries >= x.lim.MaxEntries {
		return &LimitError{Limit: LimitEntries, Max: int64(x.lim.MaxEntries)}
	}
	x.rep.Entries++
	return nil
}

// cleanName returns the slash-separated path an entry name stands for
// inside the destination, or the reason it is refused. "." (the
// destination itself, as in tar's "./") is returned as is.
func cleanName(name string) (string, string) {
	switch {
	case name == "" || strings.ContainsRune(name, 0):
		return "", ReasonBadName
	case strings.ContainsRune(name, '\\'):
		return "", ReasonBackslash
	case len(name) >= 2 && name[1] == ':' && ('a' <= name[0]|0x20 && name[0]|0x20 <= 'z'):
		return "", ReasonDriveLetter
	case strings.HasPrefix(name, "/"):
		return "", ReasonAbsolute
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") || !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", ReasonTraversal
	}
	return clean, ""
}

// dir handles a directory entry.
func (x *extractor) dir(name string) error {
	rel, reason := cleanName(name)
	if reason != "" {
		return &UnsafeEntryError{Name: name, Reason: reason}
	}
	x.rep.Dirs++
	return x.mkdirs(name, rel)
}

// mkdirs makes directory rel and its parents, refusing to make one where
// a file was extracted.
func (x *extractor) mkdirs(name, rel string) error {
	if x.made[rel] == madeDir {
		return nil
	}
	for p := rel; p != "."; p = path.Dir(p) {
		if x.made[p] == madeFile {
			return &UnsafeEntryError{Name: name, Reason: ReasonDuplicate}
		}
	}
	if err := x.root.MkdirAll(filepath.FromSlash(rel), 0o700); err != nil {
		return fmt.Errorf("create directory %q: %w", name, err)
	}
	for p := rel; p != "." && x.made[p] != madeDir; p = path.Dir(p) {
		x.made[p] = madeDir
	}
	return nil
}

// entryCap is what one file may hold: the smallest of the file limit,
// what is left of the total, and ratioCap (zip entries; -1 for none),
// with the limit that sets it and that limit's value.
type entryCap struct {
	bytes int64
	limit string
	max   int64
}

func (x *extractor) capOf(ratioCap int64) entryCap {
	c := entryCap{bytes: x.lim.MaxFileBytes, limit: LimitFileBytes, max: x.lim.MaxFileBytes}
	if left := x.lim.MaxTotalBytes - x.rep.Bytes; left < c.bytes {
		c = entryCap{bytes: left, limit: LimitTotalBytes, max: x.lim.MaxTotalBytes}
	}
	if x.archiveCap >= 0 && x.archiveCap-x.rep.Bytes < c.bytes {
		c = entryCap{bytes: x.archiveCap - x.rep.Bytes, limit: LimitRatio, max: int64(x.lim.MaxRatio)}
	}
	if ratioCap >= 0 && ratioCap < c.bytes {
		c = entryCap{bytes: ratioCap, limit: LimitRatio, max: int64(x.lim.MaxRatio)}
	}
	return c
}

// file writes a regular file entry from r, refusing to write more than
// c.bytes; readErr maps an error reading r to the error to return.
func (x *extractor) file(name string, r io.Reader, c entryCap, readErr func(error) error) error {
	rel, reason := cleanName(name)
	if reason == "" && rel == "." {
		reason = ReasonBadName
	}
	if reason != "" {
		return &UnsafeEntryError{Name: name, Reason: reason}
	}
	if x.made[rel] != 0 {
		return &UnsafeEntryError{Name: name, Reason: ReasonDuplicate}
	}
	if err := x.mkdirs(name, path.Dir(rel)); err != nil {
		return err
	}
	// O_EXCL: an existing name, symbolic links included, is never opened.
	f, err := x.root.OpenFile(filepath.FromSlash(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return &UnsafeEntryError{Name: name, Reason: ReasonDuplicate}
	}
	if err != nil {
		return fmt.Errorf("create %q: %w", name, err)
	}
	x.made[rel] = madeFile
	x.rep.Files++
	n, err := x.copy(f, r, name, c.bytes, readErr)
	x.rep.Bytes += n
	cerr := f.Close()
	switch {
	case errors.Is(err, errCapped):
		return &LimitError{Name: name, Limit: c.limit, Max: c.max}
	case err != nil:
		return err
	case cerr != nil:
		return fmt.Errorf("write %q: %w", name, cerr)
	}
	return nil
}

// errCapped: a copy reached its cap with bytes left to read.
var errCapped = errors.New("archive: cap reached")

// copy copies r to w until r ends, refusing (errCapped) to go past max
// bytes, and checking the context between chunks so that a large entry
// does not delay a cancellation.
func (x *extractor) copy(w io.Writer, r io.Reader, name string, max int64, readErr func(error) error) (int64, error) {
	var n int64
	for {
		if err := x.ctx.Err(); err != nil {
			return n, fmt.Errorf("extract %q: %w", name, err)
		}
		// One byte more than allowed tells "exactly max" from "more".
		want := int64(len(x.buf))
		if left := max - n + 1; left < want {
			want = left
		}
		m, err := r.Read(x.buf[:want])
		if int64(m) > max-n {
			return n, errCapped
		}
		if m > 0 {
			if _, werr := w.Write(x.buf[:m]); werr != nil {
				if errors.Is(werr, syscall.ENOSPC) {
					return n, fmt.Errorf("write %q: %w: %w", name, ErrNoSpace, werr)
				}
				return n, fmt.Errorf("write %q: %w", name, werr)
			}
			n += int64(m)
			if x.unchecked += int64(m); x.unchecked >= spaceCheckEvery {
				if err := x.checkSpace(0); err != nil {
					return n, err
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, readErr(err)
		}
	}
}

// corrupt marks the errors of a malformed archive with ErrCorrupt (both
// stay visible to errors.Is); others, I/O errors of the source included,
// pass through.
func corrupt(err error) error {
	var flateErr flate.CorruptInputError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, tar.ErrHeader),
		errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.As(err, &flateErr),
		errors.Is(err, zip.ErrFormat), errors.Is(err, zip.ErrChecksum):
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	case errors.Is(err, zip.ErrAlgorithm):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return err
}
