package archive

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
)

// ExtractTar extracts the tar archive read from r, gzip-compressed or not
// (told by its first bytes), into dst, created (0o700) if absent; dst
// should be empty. It streams: r is read once, so it may be an upload.
func ExtractTar(ctx context.Context, r io.Reader, dst string, lim Limits) (Report, error) {
	return extractTar(ctx, r, 0, dst, lim)
}

// extractTar is ExtractTar for an archive of size bytes (0 if unknown):
// what the free space is judged by. Plain, the tar writes less than its
// size; compressed, about its size too, since photos barely compress
// (and the free space is checked again while writing).
func extractTar(ctx context.Context, r io.Reader, size int64, dst string, lim Limits) (Report, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return Report{}, fmt.Errorf("read archive: %w", err)
	}
	format := FormatTar
	var src io.Reader = br
	var zr *gzip.Reader
	switch DetectFormat(head) {
	case FormatTar:
	case FormatTarGzip:
		format = FormatTarGzip
		counted := &countingReader{r: br}
		if zr, err = gzip.NewReader(counted); err != nil {
			return Report{Format: format}, fmt.Errorf("read gzip header: %w", corrupt(err))
		}
		defer zr.Close()
		// The ratio is checked over the whole stream: a tar's entries
		// cannot be matched to the compressed bytes they came from.
		zbr := bufio.NewReaderSize(&ratioReader{r: zr, compressed: counted, lim: lim.WithDefaults()}, 64<<10)
		inner, err := zbr.Peek(512)
		if err != nil && !errors.Is(err, io.EOF) {
			return Report{Format: format}, fmt.Errorf("read gzip stream: %w", corrupt(err))
		}
		if !isTarHeader(inner) {
			return Report{Format: format}, fmt.Errorf("gzip stream holds no tar archive: %w", ErrUnsupported)
		}
		src = zbr
	default:
		return Report{}, fmt.Errorf("extract: %w", ErrUnsupported)
	}

	x, err := newExtractor(ctx, dst, lim, format, size)
	if err != nil {
		return Report{Format: format}, err
	}
	defer x.close()
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		// ErrInsecurePath (with GODEBUG tarinsecurepath=0) comes with a
		// usable header: names are checked by the extractor.
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return x.rep, fmt.Errorf("read tar header: %w", corrupt(err))
		}
		if err := x.next(); err != nil {
			return x.rep, err
		}
		if err := x.tarEntry(hdr, tr); err != nil {
			return x.rep, err
		}
	}
	if zr != nil {
		if err := drainGzip(src); err != nil {
			return x.rep, err
		}
	}
	return x.rep, nil
}

// tarEntry extracts one entry of a tar archive.
func (x *extractor) tarEntry(hdr *tar.Header, tr *tar.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont: // archive/tar turns the old TypeRegA into one of TypeReg and TypeDir
	case tar.TypeDir:
		if hdr.Size != 0 {
			// tar would skip the data unread: a way to make us inflate
			// gigabytes for nothing.
			return fmt.Errorf("tar directory %q with %d bytes of data: %w", hdr.Name, hdr.Size, ErrCorrupt)
		}
		return x.dir(hdr.Name)
	case tar.TypeXGlobalHeader:
		return nil // metadata for the entries that follow; nothing to write
	case tar.TypeSymlink:
		return &UnsafeEntryError{Name: hdr.Name, Reason: ReasonSymlink}
	case tar.TypeLink:
		return &UnsafeEntryError{Name: hdr.Name, Reason: ReasonHardlink}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return &UnsafeEntryError{Name: hdr.Name, Reason: ReasonSpecial}
	default:
		// GNU sparse files, volume labels, multi-volume parts...
		return &UnsafeEntryError{Name: hdr.Name, Reason: ReasonUnsupportedType}
	}
	c := x.capOf(-1)
	if hdr.Size > c.bytes {
		return &LimitError{Name: hdr.Name, Limit: c.limit, Max: c.max}
	}
	return x.file(hdr.Name, tr, c, func(err error) error {
		var le *LimitError
		if errors.As(err, &le) {
			return err // the gzip stream's ratio
		}
		return fmt.Errorf("read tar entry %q: %w", hdr.Name, corrupt(err))
	})
}

// drainGzip reads what follows the tar's end in the gzip stream, up to a
// bound, so that a truncated or damaged stream is noticed (gzip checks its
// CRC at the end). Past the bound the rest is left unread: it cannot hold
// anything that was extracted.
func drainGzip(r io.Reader) error {
	_, err := io.Copy(io.Discard, io.LimitReader(r, 1<<20))
	var le *LimitError
	if err != nil && !errors.As(err, &le) {
		return fmt.Errorf("read gzip stream end: %w", corrupt(err))
	}
	return err
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ratioReader refuses, with a *LimitError, to inflate more than MaxRatio
// times the compressed bytes read so far (once past ratioFloor).
type ratioReader struct {
	r          io.Reader
	compressed *countingReader
	lim        Limits
	n          int64
}

func (rr *ratioReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.n += int64(n)
	if rr.n > ratioFloor && float64(rr.n) > rr.lim.MaxRatio*float64(rr.compressed.n) {
		return 0, &LimitError{Limit: LimitRatio, Max: int64(rr.lim.MaxRatio)}
	}
	return n, err
}
