package csvsafe

import (
	"bytes"
	"encoding/csv"
	"slices"
	"testing"
)

func TestEscape(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"amy/1.png", "amy/1.png"},
		{`=HYPERLINK("http://evil.example/","click")`, `'=HYPERLINK("http://evil.example/","click")`},
		{"+1+2", "'+1+2"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\tcmd", "'\tcmd"},
		{"\rcmd", "'\rcmd"},
		{"a=b", "a=b"},
		{"'=already quoted", "'=already quoted"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := Escape(tc.in); got != tc.want {
				t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestWriter: every cell is escaped, the caller's record is left alone,
// and the file reads back as CSV.
func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	rec := []string{"1", "=cmd|' /C calc'!A0", "ok, fine", "-1"}
	orig := slices.Clone(rec)
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rec, orig) {
		t.Errorf("Write changed its record: %q", rec)
	}
	got, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"1", "'=cmd|' /C calc'!A0", "ok, fine", "'-1"}}
	if len(got) != 1 || !slices.Equal(got[0], want[0]) {
		t.Errorf("read back %q, want %q", got, want)
	}
}
