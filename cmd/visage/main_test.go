package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/visage/visage/internal/config"
	"github.com/visage/visage/internal/testenv"
)

// runCLI runs the CLI in-process and returns its exit code and streams.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &cliEnv{stdout: &out, stderr: &errOut}
	code := run(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func TestEvalLFWDevelopmentFold(t *testing.T) {
	models := testenv.ModelDir(t)
	images := testenv.Shared(t, "testdata/lfw-dev/images")
	pairs := testenv.Shared(t, "testdata/lfw-dev/pairs.txt")
	code, out, errOut := runCLI(t, "eval", "lfw", "--models", models, "--images", images, "--pairs", pairs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "align: 807/807") {
		t.Errorf("no progress on stderr: %q", errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	t.Log(last)
	re := regexp.MustCompile(`^lfw folds=1 pairs=600 accuracy=(0\.\d{4}|1\.0000) std=(\d\.\d{4}) threshold=(\d\.\d{3}) no_face=(\d+)$`)
	m := re.FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q does not have the documented format", last)
	}
	acc, _ := strconv.ParseFloat(m[1], 64)
	if acc < 0.99 {
		t.Errorf("accuracy %.4f < 0.99", acc)
	}
	if noFace, _ := strconv.Atoi(m[4]); noFace > 10 {
		t.Errorf("no_face=%d: the detector misses too many LFW faces", noFace)
	}
}

func TestDetectAndCompare(t *testing.T) {
	models := testenv.ModelDir(t)
	group := testenv.Shared(t, "testdata/faces/bbt/bbt4.jpg")
	code, out, errOut := runCLI(t, "detect", "--models", models, group)
	if code != 0 {
		t.Fatalf("detect exit %d: %s", code, errOut)
	}
	var res imageJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("detect output is not JSON: %v\n%s", err, out)
	}
	if len(res.Faces) != 6 || res.Width != 710 || res.Height != 473 {
		t.Errorf("detect: %dx%d with %d faces, want 710x473 with 6", res.Width, res.Height, len(res.Faces))
	}
	for _, f := range res.Faces {
		if len(f.Landmarks) != 68 || f.Box[2] <= f.Box[0] || f.Quality.Size <= 0 {
			t.Errorf("incomplete face %+v", f)
		}
	}

	tests := []struct {
		a, b, want string
	}{
		{"testdata/faces/misc/obama.jpg", "testdata/faces/misc/obama-480p.jpg", "same"},
		{"testdata/faces/misc/lennon-1.jpg", "testdata/faces/misc/lennon-2.jpg", "same"},
		{"testdata/faces/misc/obama.jpg", "testdata/faces/misc/biden.jpg", "different"},
		{"testdata/faces/bbt/amy/amy1.png", "testdata/faces/bbt/penny/penny1.png", "different"},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.a)+"-"+filepath.Base(tc.b), func(t *testing.T) {
			code, out, errOut := runCLI(t, "compare", "--models", models, testenv.Shared(t, tc.a), testenv.Shared(t, tc.b))
			if code != 0 {
				t.Fatalf("compare exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, "decision="+tc.want) {
				t.Errorf("compare: %q, want decision=%s", out, tc.want)
			}
		})
	}

	t.Run("one line per image", func(t *testing.T) {
		code, out, errOut := runCLI(t, "detect", "--models", models, group, testenv.Shared(t, "testdata/faces/misc/obama.jpg"))
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d lines for 2 images", len(lines))
		}
		for i, want := range []int{6, 1} {
			var r imageJSON
			if err := json.Unmarshal([]byte(lines[i]), &r); err != nil || len(r.Faces) != want {
				t.Errorf("line %d: %d faces (%v), want %d", i+1, len(r.Faces), err, want)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "note.jpg")
		if err := os.WriteFile(bad, []byte("not an image"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, _ := runCLI(t, "detect", "--models", models, bad)
		if code != 1 || !strings.Contains(out, `"code":"unsupported_format"`) {
			t.Errorf("exit %d, output %s; want exit 1 with code unsupported_format", code, out)
		}
	})
}

// TestModelsIsIdempotent prepares a fresh model directory from the npm
// tarball and Debian's landmarks, then again: the second run keeps every
// file.
func TestModelsIsIdempotent(t *testing.T) {
	tarball := filepath.Join(config.CacheDir(), "vladmandic-face-api-1.7.15.tgz")
	if _, err := os.Stat(tarball); err != nil {
		t.Fatalf("%s is missing (run ./scripts/setup.sh): %v", tarball, err)
	}
	dir := t.TempDir()
	code, _, errOut := runCLI(t, "models", "--models", dir, "--faceapi", tarball)
	if code != 0 {
		t.Fatalf("models exit %d: %s", code, errOut)
	}
	stat := func() map[string]int64 {
		m := map[string]int64{}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			info, _ := e.Info()
			m[e.Name()] = info.ModTime().UnixNano()
		}
		return m
	}
	first := stat()
	for _, want := range []string{"dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_68_face_landmarks.dat", "SHA256SUMS"} {
		if _, ok := first[want]; !ok {
			t.Errorf("%s not created", want)
		}
	}
	code, _, errOut = runCLI(t, "models", "--models", dir, "--faceapi", tarball)
	if code != 0 {
		t.Fatalf("second models run exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "ok dlib_face_recognition_resnet_model_v1.dat") {
		t.Errorf("second run rebuilt the network: %s", errOut)
	}
	second := stat()
	for name, mt := range first {
		if name != "SHA256SUMS" && second[name] != mt {
			t.Errorf("%s was rewritten by the second run", name)
		}
	}

	t.Run("tampered file is refused", func(t *testing.T) {
		f := filepath.Join(dir, "shape_predictor_68_face_landmarks.dat")
		if err := os.WriteFile(f, []byte("tampered"), 0o644); err != nil {
			t.Fatal(err)
		}
		// The landmarks are reinstalled from Debian's verified copy.
		code, _, errOut := runCLI(t, "models", "--models", dir, "--faceapi", tarball)
		if code != 0 || !strings.Contains(errOut, "installed shape_predictor_68_face_landmarks.dat") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		bad := filepath.Join(t.TempDir(), "fake.tgz")
		os.WriteFile(bad, []byte("not a tarball"), 0o644)
		os.Remove(filepath.Join(dir, "dlib_face_recognition_resnet_model_v1.dat"))
		if code, _, _ := runCLI(t, "models", "--models", dir, "--faceapi", bad); code == 0 {
			t.Error("a bad tarball was accepted")
		}
	})
}

// TestEvalLFWSeveralFolds splits the development fold into two folds of
// 150+150 pairs (header "2<TAB>150"), as the protocol's 10-fold files are
// laid out, and checks the cross-validated report.
func TestEvalLFWSeveralFolds(t *testing.T) {
	models := testenv.ModelDir(t)
	images := testenv.Shared(t, "testdata/lfw-dev/images")
	lines := strings.Split(strings.TrimSpace(string(testenv.ReadShared(t, "testdata/lfw-dev/pairs.txt"))), "\n")
	if len(lines) != 601 {
		t.Fatalf("dev pairs file has %d lines, want 601", len(lines))
	}
	matched, mismatched := lines[1:301], lines[301:601]
	var b strings.Builder
	b.WriteString("2\t150\n")
	for f := 0; f < 2; f++ {
		for _, l := range matched[f*150 : (f+1)*150] {
			b.WriteString(l + "\n")
		}
		for _, l := range mismatched[f*150 : (f+1)*150] {
			b.WriteString(l + "\n")
		}
	}
	pairs := filepath.Join(t.TempDir(), "pairs2.txt")
	if err := os.WriteFile(pairs, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "eval", "lfw", "--models", models, "--images", images, "--pairs", pairs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "fold=1 ") || !strings.Contains(out, "fold=2 ") {
		t.Errorf("no per-fold accuracy lines:\n%s", out)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	m := regexp.MustCompile(`^lfw folds=2 pairs=600 accuracy=(0\.\d{4}|1\.0000) std=(\d\.\d{4}) threshold=\d\.\d{3} no_face=\d+$`).FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q", last)
	}
	if acc, _ := strconv.ParseFloat(m[1], 64); acc < 0.98 {
		t.Errorf("2-fold cross-validated accuracy %.4f < 0.98", acc)
	}
}
