package main

import (
	"archive/zip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// zipTree zips a directory tree (following hard links, which the tests'
// trees use).
func zipTree(t *testing.T, dir, dst string) {
	t.Helper()
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		w, err := zw.Create(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(w, src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestImportRemote(t *testing.T) {
	bin := buildVisagedForImport(t)
	root := t.TempDir()
	srv := startImportServer(t, bin, "--rate-limit", "0", "--import-root", root)
	t.Setenv("VISAGE_API_KEY", importAdminKey)
	tree := buildTree(t)
	work := t.TempDir()
	archive := filepath.Join(work, "tree.zip")
	zipTree(t, tree, archive)
	if err := os.CopyFS(filepath.Join(root, "tree"), os.DirFS(tree)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, flag, value string
		create            bool // by --create-collection rather than beforehand
	}{
		{"archive", "--archive", archive, false},
		{"server-path", "--server-path", "tree", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			coll := "remote-" + c.name
			args := []string{"--collection", coll, c.flag, c.value, "--failures", filepath.Join(work, coll+"-failures.csv")}
			if c.create {
				args = append(args, "--create-collection")
			} else {
				srv.call(201, "POST", "/v1/collections", strings.NewReader(`{"name":"`+coll+`"}`), "application/json")
			}
			failures := filepath.Join(work, coll+"-failures.csv")
			cfg := importCfg(t, srv, args...)
			sum, stderr, err := importRun(t, context.Background(), cfg)
			if err != nil {
				t.Fatalf("import: %v\n%s", err, stderr)
			}
			// The server counts what the client does: the good photos
			// enrolled, the group photo, the truncated JPEG and the blank
			// PNG failed, the text file and .DS_Store skipped.
			checkCounts(t, sum, map[string]int{"total": treeGood + len(treeBad), "enrolled": treeGood, "failed": 3, "skipped": 2})
			if sum["state"] != "done" || !strings.Contains(stderr, "import job") {
				t.Errorf("summary %v, stderr %q", sum, stderr)
			}
			rows := readFailures(t, failures)
			if len(rows) != len(treeBad) {
				t.Errorf("failures file rows %v, want %d", rows, len(treeBad))
			}
			counts, faces := srv.faceCounts(coll)
			if faces != treeGood || counts["penny"] == 0 {
				t.Errorf("faces after the import: %d (%v), want %d", faces, counts, treeGood)
			}
		})
	}
	t.Run("missing collection", func(t *testing.T) {
		cfg := importCfg(t, srv, "--collection", "remote-nowhere", "--server-path", "tree")
		var out, errOut strings.Builder
		err := importRemote(context.Background(), &cliEnv{stdout: &out, stderr: &errOut}, cfg)
		if err == nil || !strings.Contains(err.Error(), "--create-collection") {
			t.Fatalf("import into a missing collection: %v, want a hint at --create-collection", err)
		}
		srv.call(404, "GET", "/v1/collections/remote-nowhere", nil, "")
	})
	t.Run("refused archive", func(t *testing.T) {
		bad := filepath.Join(work, "bad.zip")
		if err := os.WriteFile(bad, []byte("not a zip"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := importCfg(t, srv, "--collection", "remote-archive", "--archive", bad)
		var out, errOut strings.Builder
		err := importRemote(context.Background(), &cliEnv{stdout: &out, stderr: &errOut}, cfg)
		if err == nil || !strings.Contains(err.Error(), "invalid_request") {
			t.Fatalf("garbage archive: %v", err)
		}
	})
}
