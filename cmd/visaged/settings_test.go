package main

import (
	"io"
	"testing"
)

// TestImportLimitSettings: the import limits have their documented
// defaults and are set by flag or environment, the flag first.
func TestImportLimitSettings(t *testing.T) {
	tests := []struct {
		name          string
		env           map[string]string
		args          []string
		extract, free int64
		jobs          int
	}{
		{name: "defaults", extract: 32 << 30, free: 1 << 30, jobs: 4},
		{name: "flags", args: []string{"--import-max-extract-bytes", "1000", "--import-min-free-bytes", "2000", "--import-max-jobs", "2"},
			extract: 1000, free: 2000, jobs: 2},
		{name: "environment", env: map[string]string{"VISAGE_IMPORT_MAX_EXTRACT_BYTES": "3000", "VISAGE_IMPORT_MIN_FREE_BYTES": "4000", "VISAGE_IMPORT_MAX_JOBS": "8"},
			extract: 3000, free: 4000, jobs: 8},
		{name: "flag over environment", env: map[string]string{"VISAGE_IMPORT_MAX_JOBS": "8"}, args: []string{"--import-max-jobs", "1"},
			extract: 32 << 30, free: 1 << 30, jobs: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"VISAGE_IMPORT_MAX_EXTRACT_BYTES", "VISAGE_IMPORT_MIN_FREE_BYTES", "VISAGE_IMPORT_MAX_JOBS"} {
				t.Setenv(k, tc.env[k])
			}
			s, err := parseSettings(append([]string{"--data", t.TempDir()}, tc.args...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if s.importMaxExtract != tc.extract || s.importMinFree != tc.free || s.importMaxJobs != tc.jobs {
				t.Errorf("extract %d, free %d, jobs %d; want %d, %d, %d", s.importMaxExtract, s.importMinFree, s.importMaxJobs, tc.extract, tc.free, tc.jobs)
			}
		})
	}
}
