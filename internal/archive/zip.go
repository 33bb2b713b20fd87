package archive

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"strings"
)

// ExtractZip extracts the zip archive r (of size bytes) into dst, created
// (0o700) if absent; dst should be empty. The entry count is checked
// against the limit before anything is written.
func ExtractZip(ctx context.Context, r io.ReaderAt, size int64, dst string, lim Limits) (Report, error) {
	zr, err := zip.NewReader(r, size)
	// ErrInsecurePath (with GODEBUG zipinsecurepath=0) comes with a usable
	// reader: names are checked below, one by one, with the entry named.
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return Report{Format: FormatZip}, fmt.Errorf("read zip directory: %w", corrupt(err))
	}
	l := lim.WithDefaults()
	// What the whole archive may write: MaxRatio times its size, which
	// bounds entries sharing their compressed bytes too (a zip's directory
	// may point any number of entries at the same data).
	archiveCap := satAdd(satMul(l.MaxRatio, uint64(max(size, 0))), ratioFloor)
	// archive/zip stops every entry at its declared size, so their sum
	// bounds what is written, and the free space is judged by it.
	var declared int64
	for _, f := range zr.File {
		declared = satAdd(declared, int64(min(f.UncompressedSize64, math.MaxInt64)))
	}
	x, err := newExtractor(ctx, dst, lim, FormatZip, min(declared, archiveCap))
	if err != nil {
		return Report{Format: FormatZip}, err
	}
	defer x.close()
	x.archiveCap = archiveCap
	if len(zr.File) > x.lim.MaxEntries {
		return x.rep, &LimitError{Limit: LimitEntries, Max: int64(x.lim.MaxEntries)}
	}
	for _, f := range zr.File {
		if err := x.next(); err != nil {
			return x.rep, err
		}
		if err := x.zipEntry(f); err != nil {
			return x.rep, err
		}
	}
	return x.rep, nil
}

// zipEntry extracts one entry of a zip archive.
func (x *extractor) zipEntry(f *zip.File) error {
	mode := f.Mode()
	switch {
	case mode&fs.ModeSymlink != 0:
		return &UnsafeEntryError{Name: f.Name, Reason: ReasonSymlink}
	case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0:
		return &UnsafeEntryError{Name: f.Name, Reason: ReasonSpecial}
	case mode&fs.ModeIrregular != 0:
		return &UnsafeEntryError{Name: f.Name, Reason: ReasonUnsupportedType}
	case mode.IsDir() || strings.HasSuffix(f.Name, "/"):
		return x.dir(f.Name)
	case f.Flags&0x1 != 0:
		return fmt.Errorf("zip entry %q is encrypted: %w", f.Name, ErrUnsupported)
	}

	// The headers' sizes refuse a bomb before a byte is written; the copy
	// then counts what is actually inflated, and archive/zip itself stops
	// an entry at the size its header declared. An entry may go beyond
	// its ratio by what is left of the archive's allowance, and what it
	// takes of it is gone for the next ones.
	byRatio := satMul(x.lim.MaxRatio, f.CompressedSize64)
	c := x.capOf(satAdd(byRatio, x.floor))
	if f.UncompressedSize64 > uint64(c.bytes) {
		return &LimitError{Name: f.Name, Limit: c.limit, Max: c.max}
	}
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("open zip entry %q: %w", f.Name, corrupt(err))
	}
	defer rc.Close()
	before := x.rep.Bytes
	err = x.file(f.Name, rc, c, func(err error) error {
		// Reading, archive/zip returns ErrFormat only for an entry that
		// inflates past its declared size.
		if errors.Is(err, zip.ErrFormat) {
			return &LimitError{Name: f.Name, Limit: LimitDeclaredSize, Max: int64(f.UncompressedSize64)}
		}
		return fmt.Errorf("read zip entry %q: %w", f.Name, corrupt(err))
	})
	if over := x.rep.Bytes - before - byRatio; over > 0 {
		x.floor -= over
	}
	return err
}

// satMul is ratio × n in bytes, saturating at math.MaxInt64.
func satMul(ratio float64, n uint64) int64 {
	c := ratio * float64(n)
	if c >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(c)
}

// satAdd is a + b for non-negative a and b, saturating at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
