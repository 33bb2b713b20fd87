package gallery

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestFieldRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check func() error
		ok    bool
	}{
		{"plain id", func() error { return CheckExternalID("emp-0042") }, true},
		{"accented id", func() error { return CheckExternalID("Zoë Ångström") }, true},
		{"empty id", func() error { return CheckExternalID("") }, false},
		{"long id", func() error { return CheckExternalID(strings.Repeat("x", 257)) }, false},
		{"NUL in id", func() error { return CheckExternalID("a\x00b") }, false},
		{"newline in id", func() error { return CheckExternalID("a\nb") }, false},
		{"C1 control in id", func() error { return CheckExternalID("a\u0085b") }, false},
		{"right-to-left override in id", func() error { return CheckExternalID("invoice\u202Efdp.exe") }, false},
		{"isolate in display name", func() error { return CheckDisplayName("a\u2067b") }, false},
		{"invalid UTF-8 name", func() error { return CheckDisplayName("a\xffb") }, false},
		{"empty display name", func() error { return CheckDisplayName("") }, true},
		{"metadata object", func() error { return CheckMetadata(json.RawMessage(`{"team":"blue","n":[1,"two"]}`)) }, true},
		{"null metadata", func() error { return CheckMetadata(json.RawMessage(`null`)) }, true},
		{"metadata array", func() error { return CheckMetadata(json.RawMessage(`[1]`)) }, false},
		{"escaped NUL in metadata value", func() error { return CheckMetadata(json.RawMessage(`{"a":"x\u0000"}`)) }, false},
		{"bidi in nested metadata key", func() error { return CheckMetadata(json.RawMessage(`{"a":{"k\u202e":1}}`)) }, false},
		{"key name", func() error { return CheckKeyName("door 3 reader") }, true},
		{"empty key name", func() error { return CheckKeyName("") }, false},
		{"key name with tab", func() error { return CheckKeyName("a\tb") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check()
			var inv *InvalidError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tc.ok && !errors.As(err, &inv):
				t.Fatalf("err = %v, want an *InvalidError", err)
			}
		})
	}
}
