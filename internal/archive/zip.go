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
	x, err := newExtractor(ctx, dst, lim, FormatZip)
	if err != nil {
		return Report{Format: FormatZip}, err
	}
	defer x.close()
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
	// an entry at the size its header declared.
	c := x.capOf(x.ratioCap(f.CompressedSize64))
	if f.UncompressedSize64 > uint64(c.bytes) {
		return &LimitError{Name: f.Name, Limit: c.limit, Max: c.max}
	}
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("open zip entry %q: %w", f.Name, corrupt(err))
	}
	defer rc.Close()
	return x.file(f.Name, rc, c, func(err error) error {
		// Reading, archive/zip returns ErrFormat only for an entry that
		// inflates past its declared size.
		if errors.Is(err, zip.ErrFormat) {
			return &LimitError{Name: f.Name, Limit: LimitDeclaredSize, Max: int64(f.UncompressedSize64)}
		}
		return fmt.Errorf("read zip entry %q: %w", f.Name, corrupt(err))
	})
}

// ratioCap is the most an entry of compressed bytes may inflate to under
// MaxRatio, never below ratioFloor.
func (x *extractor) ratioCap(compressed uint64) int64 {
	c := x.lim.MaxRatio * float64(compressed)
	if c >= math.MaxInt64 {
		return math.MaxInt64
	}
	return max(int64(c), ratioFloor)
}
