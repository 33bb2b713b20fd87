package gallery

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The rules of the text people give Visage — subjects' external ids,
// display names and metadata, key names — in one place, applied alike by
// the API, import jobs and the CLI, so that what one accepts the others
// do too.
const (
	MaxExternalIDBytes  = 256
	MaxDisplayNameBytes = 256
	MaxMetadataBytes    = 16 << 10
	MaxKeyNameRunes     = 200
)

// CheckText returns an *InvalidError naming field when value is not valid
// UTF-8, holds a control character (NUL, C0, DEL, C1) or a bidirectional
// formatting character, or is longer than maxBytes. Control characters
// break logs, CSV files and terminals; bidirectional overrides make a
// name display as another one (the "Trojan Source" trick) in the
// dashboard and in exported files.
func CheckText(field, value string, maxBytes int) error {
	switch {
	case len(value) > maxBytes:
		return &InvalidError{Field: field, Reason: fmt.Sprintf("at most %d bytes", maxBytes)}
	case !utf8.ValidString(value):
		return &InvalidError{Field: field, Reason: "not valid UTF-8"}
	case strings.ContainsFunc(value, unicode.IsControl):
		return &InvalidError{Field: field, Reason: "control characters are not allowed"}
	case strings.ContainsFunc(value, isBidiControl):
		return &InvalidError{Field: field, Reason: "bidirectional formatting characters are not allowed"}
	}
	return nil
}

// isBidiControl reports the characters of Unicode's Bidi_Control property.
func isBidiControl(r rune) bool {
	return unicode.Is(unicode.Bidi_Control, r)
}

// CheckExternalID checks a subject's external id: 1 to 256 bytes of text.
func CheckExternalID(id string) error {
	if id == "" {
		return &InvalidError{Field: "external_id", Reason: "required, 1 to 256 bytes"}
	}
	return CheckText("external_id", id, MaxExternalIDBytes)
}

// CheckDisplayName checks a subject's display name: up to 256 bytes of text.
func CheckDisplayName(name string) error {
	return CheckText("display_name", name, MaxDisplayNameBytes)
}

// CheckMetadata checks a subject's metadata: absent, null, or a JSON
// object of at most 16 KiB whose keys and string values follow CheckText.
func CheckMetadata(raw json.RawMessage) error {
	if len(raw) > MaxMetadataBytes {
		return &InvalidError{Field: "metadata", Reason: fmt.Sprintf("at most %d bytes", MaxMetadataBytes)}
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return &InvalidError{Field: "metadata", Reason: "must be a JSON object"}
	}
	return checkJSONText(obj)
}

func checkJSONText(v any) error {
	switch v := v.(type) {
	case string:
		return CheckText("metadata", v, MaxMetadataBytes)
	case []any:
		for _, e := range v {
			if err := checkJSONText(e); err != nil {
				return err
			}
		}
	case map[string]any:
		for k, e := range v {
			if err := CheckText("metadata", k, MaxMetadataBytes); err != nil {
				return err
			}
			if err := checkJSONText(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckKeyName checks an API key's name: 1 to 200 characters of text.
func CheckKeyName(name string) error {
	if name == "" || utf8.RuneCountInString(name) > MaxKeyNameRunes {
		return &InvalidError{Field: "name", Reason: fmt.Sprintf("1 to %d characters", MaxKeyNameRunes)}
	}
	return CheckText("name", name, 4*MaxKeyNameRunes)
}
