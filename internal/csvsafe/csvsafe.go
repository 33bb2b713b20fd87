// Package csvsafe writes CSV that spreadsheets open as data: a cell
// starting with a character that makes a spreadsheet read it as a formula
// (=, +, -, @, tab or carriage return) is prefixed with a single quote,
// as OWASP's guidance on CSV injection says. The files it is for list
// paths, external ids and reasons taken from uploads and manifests, which
// whoever made them controls: `=HYPERLINK(...)` in a failures file would
// otherwise run when an operator opens it.
package csvsafe

import (
	"encoding/csv"
	"io"
	"strings"
)

// formulaStart holds the characters that make a cell a formula.
const formulaStart = "=+-@\t\r"

// Escape returns cell prefixed with a single quote if it starts a
// formula, else cell unchanged.
func Escape(cell string) string {
	if cell != "" && strings.IndexByte(formulaStart, cell[0]) >= 0 {
		return "'" + cell
	}
	return cell
}

// Writer is a csv.Writer that escapes every cell.
type Writer struct {
	w   *csv.Writer
	rec []string
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: csv.NewWriter(w)} }

// Write writes one record, its cells escaped; rec is not modified.
func (w *Writer) Write(rec []string) error {
	w.rec = w.rec[:0]
	for _, c := range rec {
		w.rec = append(w.rec, Escape(c))
	}
	return w.w.Write(w.rec)
}

// Flush writes any buffered data to the underlying writer.
func (w *Writer) Flush() { w.w.Flush() }

// Error reports any error of a previous Write or Flush.
func (w *Writer) Error() error { return w.w.Error() }
