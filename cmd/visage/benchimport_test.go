package main

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/visage/visage/internal/testenv"
)

// benchImportTree copies the first n LFW development photos (by subject
// folder) into a tree, adds a photo with no face and a text file.
func benchImportTree(t *testing.T, n int) string {
	t.Helper()
	lfw := testenv.Shared(t, "testdata/lfw-dev/images")
	root := t.TempDir()
	people, err := os.ReadDir(lfw)
	if err != nil {
		t.Fatal(err)
	}
	copied := 0
	for _, p := range people {
		files, err := os.ReadDir(filepath.Join(lfw, p.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(files, func(i, j int) bool { return files[i].Name() < files[j].Name() })
		for _, f := range files {
			if copied == n {
				break
			}
			data, err := os.ReadFile(filepath.Join(lfw, p.Name(), f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(root, p.Name()), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, p.Name(), f.Name()), data, 0o600); err != nil {
				t.Fatal(err)
			}
			copied++
		}
	}
	var buf bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, 200, 200))
	for i := range img.Pix {
		img.Pix[i] = 0x80
	}
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "nobody"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "nobody", "blank.png"), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "nobody", "notes.txt"), []byte("not a photo"), 0o600); err != nil {
		t.Fatal(err)
	}
	return root
}

// fields parses a printed line's key=value pairs.
func fields(line string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

func TestBenchImport(t *testing.T) {
	models := testenv.ModelDir(t)
	root := benchImportTree(t, 10)
	code, out, errOut := runCLI(t, "bench", "import", "--models", models, "--dir", root, "--repeat", "2", "--interleave")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	t.Log("\n" + out)
	num := `\d+(\.\d+)?`
	formats := map[string]*regexp.Regexp{
		"bench-import": regexp.MustCompile(`^bench-import dir=\S+ photos=11 subjects=\d+ skipped_files=1 workers=2 import_workers=4 repeat=2 into=many nproc=\d+ gomaxprocs=\d+ load1=\S+$`),
		"engine phase": regexp.MustCompile(`^engine phase=(before|after|between-[12]) concurrency=(2|4) photos=11 faces=\d+ with_face=\d+ faces_found=\d+ seconds=` + num +
			` photos_per_second=` + num + ` faces_per_second=` + num + ` cpu_ms_per_photo=` + num + ` others_cpu_seconds=` + num + ` load1=\S+$`),
		"engine peer": regexp.MustCompile(`^engine peer concurrency=(2|4) photos=11 faces=\d+ faces_per_second=` + num + `$`),
		"import rep": regexp.MustCompile(`^import rep=[12] total=12 enrolled=\d+ skipped=1 failed=\d+ seconds=` + num + ` photos_per_second=` + num +
			` faces_per_second=` + num + ` cpu_seconds=` + num + ` cpu_ms_per_photo=` + num + ` sys_ms_per_photo=` + num +
			` others_cpu_seconds=` + num + ` warnings=\d+ rss_mb=\d+ rss_peak_mb=\d+ rss_anon_mb=\d+ rss_file_mb=\d+ go_heap_mb=\d+ go_sys_mb=\d+ db_mb=\d+ load1=\S+$`),
		"interleaved rep": regexp.MustCompile(`^interleaved rep=[12] import_faces_per_second=` + num + ` engine_faces_per_second=` + num + ` ratio=\d+\.\d{3}$`),
		"interleaved total": regexp.MustCompile(`^interleaved total engine_passes=3 engine_faces_per_second=` + num + ` import_faces_per_second=` + num +
			` ratio=\d+\.\d{3} rep_ratio_min=\d+\.\d{3} rep_ratio_median=\d+\.\d{3} rep_ratio_max=\d+\.\d{3}$`),
		"import total": regexp.MustCompile(`^import total reps=2 photos=24 enrolled=\d+ skipped=2 failed=\d+ seconds=` + num + ` faces_per_second=` + num +
			` cpu_ms_per_photo=` + num + ` ratio_to_engine=\d\.\d\d first_rep_ratio=\d\.\d\d last_rep_ratio=\d\.\d\d rss_mb_after_12=\d+ rss_mb_after_24=\d+ rss_peak_mb_after_12=\d+ rss_peak_mb_after_24=\d+$`),
	}
	count := map[string]int{}
	var engineFaces []int
	var reps []map[string]string
	var total map[string]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		kind := ""
		for k := range formats {
			// "import rep=1 …", "import total reps=2 …"
			if strings.HasPrefix(line, k+" ") || strings.HasPrefix(line, k+"=") {
				kind = k
			}
		}
		if kind == "" {
			t.Errorf("unexpected line %q", line)
			continue
		}
		if !formats[kind].MatchString(line) {
			t.Errorf("%s line %q does not have the documented format", kind, line)
			continue
		}
		count[kind]++
		f := fields(line)
		switch kind {
		case "engine phase", "engine peer":
			n, _ := strconv.Atoi(f["faces"])
			engineFaces = append(engineFaces, n)
		case "import rep":
			reps = append(reps, f)
		case "import total":
			total = f
		}
	}
	want := map[string]int{"bench-import": 1, "engine phase": 6, "engine peer": 1, "import rep": 2, "import total": 1,
		"interleaved rep": 2, "interleaved total": 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d %q lines, want %d", count[k], k, n)
		}
	}
	if t.Failed() {
		return
	}
	// The engine counts the same photos every run; each import enrolls
	// exactly those, and fails the rest (at least the blank photo).
	faces := engineFaces[0]
	for _, n := range engineFaces {
		if n != faces {
			t.Fatalf("engine face counts differ between runs: %v", engineFaces)
		}
	}
	if faces < 8 || faces > 10 {
		t.Errorf("the engine found %d enrollable faces in 10 LFW photos", faces)
	}
	for _, r := range reps {
		enrolled, _ := strconv.Atoi(r["enrolled"])
		failed, _ := strconv.Atoi(r["failed"])
		if enrolled != faces || failed != 11-faces {
			t.Errorf("rep %s: enrolled %d, failed %d; want %d and %d", r["rep"], enrolled, failed, faces, 11-faces)
		}
	}
	if total["enrolled"] != strconv.Itoa(2*faces) || total["failed"] != strconv.Itoa(2*(11-faces)) {
		t.Errorf("total: %v", total)
	}
	first, _ := strconv.Atoi(total["rss_peak_mb_after_12"])
	last, _ := strconv.Atoi(total["rss_peak_mb_after_24"])
	if first <= 0 || last < first {
		t.Errorf("peak RSS %d MB after the first import, %d after the second", first, last)
	}
}
