// Package testenv finds what tests need outside the repository: the
// shared photos beside it and the prepared model directory. A missing
// file fails the test with its path; nothing is skipped silently.
package testenv

import (
	"bytes"
	"compress/bzip2"
	"image"
	"image/jpeg"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/image/draw"

	"github.com/visage/visage/internal/config"
)

// Root returns the repository root (the directory holding the main
// module's go.mod).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		// The main module's go.mod, not a nested tool module's.
		if mod, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(mod, []byte("module github.com/visage/visage\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Shared returns the path of a file under ../shared (beside the
// repository), failing the test if it is absent.
func Shared(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Root(t), "..", "shared", rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: shared test data %s is missing: %v", p, err)
	}
	return p
}

// ReadShared reads a file under ../shared.
func ReadShared(t testing.TB, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(Shared(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ModelDir returns the model directory ($VISAGE_MODELS or the default),
// failing the test if the required files are absent: run
// ./scripts/setup.sh (or `visage models`) first.
func ModelDir(t testing.TB) string {
	t.Helper()
	dir := config.ModelDir("")
	for _, f := range []string{"dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_68_face_landmarks.dat"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("testenv: model file %s is missing (run ./scripts/setup.sh): %v", filepath.Join(dir, f), err)
		}
	}
	return dir
}

// GroupPhoto1920 returns the benchmark photo of the engine targets: the
// shared 4-person photo bbt1.jpg cropped to 3:2 around its faces and
// enlarged to 1920×1280, as a quality-90 JPEG.
func GroupPhoto1920(t testing.TB) []byte {
	t.Helper()
	src, err := jpeg.Decode(bytes.NewReader(ReadShared(t, "testdata/faces/bbt/bbt1.jpg")))
	if err != nil {
		t.Fatal(err)
	}
	dst := image.NewRGBA(image.Rect(0, 0, 1920, 1280))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, image.Rect(107, 0, 1259, 768), draw.Src, nil)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// CNNModel returns the path of dlib's CNN face detector: the model
// directory's copy if `visage models` installed one, else the shared
// .bz2 unpacked into a temporary directory (never into the repository).
func CNNModel(t testing.TB) string {
	t.Helper()
	if p := filepath.Join(config.ModelDir(""), "mmod_human_face_detector.dat"); fileExists(p) {
		return p
	}
	f, err := os.Open(Shared(t, "models/mmod_human_face_detector.dat.bz2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := filepath.Join(t.TempDir(), "mmod_human_face_detector.dat")
	data, err := io.ReadAll(bzip2.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
