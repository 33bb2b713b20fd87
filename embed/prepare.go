package embed

import (
	"archive/tar"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/visage/visage/internal/dlib"
)

// Model directory file names (go-face's, so either tool can use the
// other's directory).
const (
	Landmarks5File  = "shape_predictor_5_face_landmarks.dat"
	Landmarks68File = "shape_predictor_68_face_landmarks.dat"
	CNNFile         = "mmod_human_face_detector.dat"
	// SumsFile records the sha256 of every file in the directory.
	SumsFile = "SHA256SUMS"
)

// Known checksums of the registry inputs and of the converted network.
const (
	FaceAPIPackage       = "@vladmandic/face-api@1.7.15"
	faceAPIManifestPath  = "package/model/face_recognition_model-weights_manifest.json"
	faceAPIBinPath       = "package/model/face_recognition_model.bin"
	faceAPIManifestSHA   = "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"
	faceAPIBinSHA        = "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"
	DebianLandmarks68    = "/usr/share/dlib/shape_predictor_68_face_landmarks.dat"
	debianLandmarks68SHA = "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"
	// convertedNetSHA is the network BuildFromFaceAPI writes with dlib
	// 19.24 (Debian 12); any other result means the conversion changed.
	convertedNetSHA = "cdb1d47b961fe310ef1f3aa2974c5f65d29c079346760f6b6785c7e405f7266a"
	// cnnSHA is dlib-models' mmod_human_face_detector.dat (unpacked).
	cnnSHA = "be467b1a76f482693de3b0f6a1ff91d092319be71523d4d4b0628f6a53fcb87a"
)

// PrepareConfig says where Prepare takes its inputs from.
type PrepareConfig struct {
	// Dir is the model directory to fill.
	Dir string
	// FaceAPITarball is `npm pack @vladmandic/face-api@1.7.15`'s output.
	FaceAPITarball string
	// Landmarks68 is Debian's libdlib-data file.
	Landmarks68 string
	// Extra are user-supplied official dlib files (.dat or .dat.bz2): the
	// 5-point predictor, the original ResNet, the CNN detector. Each is
	// recognised by loading it.
	Extra []string
	// Log receives one line per action.
	Log func(format string, args ...any)
}

// ErrChecksum means a file's sha256 is not the expected one.
var ErrChecksum = errors.New("checksum mismatch")

// Prepare fills the model directory: it converts face-api's ResNet weights
// into dlib's .dat, links Debian's 68-point landmark model, installs extra
// files, verifies every input and output against known sha256 sums and
// records them in SHA256SUMS. Files already present with the right sum are
// kept, so running it again changes nothing.
func Prepare(cfg PrepareConfig) error {
	logf := cfg.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("prepare models: %w", err)
	}
	sums, err := readSums(filepath.Join(cfg.Dir, SumsFile))
	if err != nil {
		return err
	}

	// Landmarks: a copy, not a link, so the directory stands alone.
	lm := filepath.Join(cfg.Dir, Landmarks68File)
	if ok, _ := hasSum(lm, debianLandmarks68SHA); ok {
		logf("ok %s", Landmarks68File)
	} else {
		if err := checkSum(cfg.Landmarks68, debianLandmarks68SHA); err != nil {
			return fmt.Errorf("prepare models: 68-point landmarks (apt package libdlib-data): %w", err)
		}
		if err := copyFile(cfg.Landmarks68, lm); err != nil {
			return err
		}
		logf("installed %s from %s", Landmarks68File, cfg.Landmarks68)
	}
	sums[Landmarks68File] = debianLandmarks68SHA

	// The ResNet, converted from the npm package unless an official file
	// (recorded in SHA256SUMS) is already there.
	net := filepath.Join(cfg.Dir, ModelFile)
	switch ok, got := hasSum(net, convertedNetSHA); {
	case ok:
		logf("ok %s (converted from %s)", ModelFile, FaceAPIPackage)
	case got != "" && sums[ModelFile] == got:
		logf("ok %s (user-supplied, sha256 %s)", ModelFile, got[:12])
	default:
		if err := convertFaceAPI(cfg.FaceAPITarball, net); err != nil {
			return err
		}
		logf("built %s from %s", ModelFile, FaceAPIPackage)
		sums[ModelFile] = convertedNetSHA
	}
	if _, ok := sums[ModelFile]; !ok {
		sums[ModelFile] = convertedNetSHA
	}

	for _, src := range cfg.Extra {
		name, sum, err := installExtra(src, cfg.Dir)
		if err != nil {
			return err
		}
		sums[name] = sum
		logf("installed %s from %s (sha256 %s)", name, src, sum[:12])
	}
	// Verify the whole directory against the record, then rewrite it.
	for name, want := range sums {
		if err := checkSum(filepath.Join(cfg.Dir, name), want); err != nil {
			return fmt.Errorf("prepare models: %s changed since it was installed: %w", name, err)
		}
	}
	return writeSums(filepath.Join(cfg.Dir, SumsFile), sums)
}

// convertFaceAPI extracts the two weight files from the npm tarball,
// checks them, builds the network and checks the result.
func convertFaceAPI(tarball, out string) error {
	if tarball == "" {
		return fmt.Errorf("prepare models: no %s tarball given (npm pack %s)", FaceAPIPackage, FaceAPIPackage)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), ".faceapi-")
	if err != nil {
		return fmt.Errorf("prepare models: %w", err)
	}
	defer os.RemoveAll(tmp)
	want := map[string]string{faceAPIManifestPath: faceAPIManifestSHA, faceAPIBinPath: faceAPIBinSHA}
	if err := extractFiles(tarball, tmp, want); err != nil {
		return err
	}
	manifest, bin := filepath.Join(tmp, path.Base(faceAPIManifestPath)), filepath.Join(tmp, path.Base(faceAPIBinPath))
	built := filepath.Join(tmp, ModelFile)
	if err := BuildFromFaceAPI(manifest, bin, built); err != nil {
		return err
	}
	if err := checkSum(built, convertedNetSHA); err != nil {
		return fmt.Errorf("prepare models: converted network: %w", err)
	}
	if err := os.Rename(built, out); err != nil {
		return fmt.Errorf("prepare models: %w", err)
	}
	return nil
}

// extractFiles copies the named entries of a .tgz into dir (by base
// name), verifying each sha256.
func extractFiles(tarball, dir string, want map[string]string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return fmt.Errorf("prepare models: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("prepare models: read %s: %w", tarball, err)
	}
	tr := tar.NewReader(gz)
	found := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("prepare models: read %s: %w", tarball, err)
		}
		sum, ok := want[h.Name]
		if !ok {
			continue
		}
		dst := filepath.Join(dir, path.Base(h.Name))
		got, err := writeHashed(dst, io.LimitReader(tr, 64<<20))
		if err != nil {
			return err
		}
		if got != sum {
			return fmt.Errorf("prepare models: %s in %s: %w (got %s, want %s)", h.Name, tarball, ErrChecksum, got, sum)
		}
		found++
	}
	if found != len(want) {
		return fmt.Errorf("prepare models: %s lacks the face recognition weights", tarball)
	}
	return nil
}

// installExtra recognises a user-supplied dlib file by loading it and
// installs it under its go-face name; .bz2 files are unpacked first.
func installExtra(src, dir string) (name, sum string, err error) {
	tmp, err := os.CreateTemp(dir, ".extra-")
	if err != nil {
		return "", "", fmt.Errorf("prepare models: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName)
	in, err := os.Open(src)
	if err != nil {
		return "", "", fmt.Errorf("prepare models: %w", err)
	}
	defer in.Close()
	var r io.Reader = in
	if strings.HasSuffix(src, ".bz2") {
		r = bzip2.NewReader(in)
	}
	if sum, err = writeHashed(tmpName, io.LimitReader(r, 1<<30)); err != nil {
		return "", "", err
	}
	switch {
	case sum == cnnSHA || loads(func() (closer, error) { return dlib.LoadCNN(tmpName) }):
		name = CNNFile
	case loads(func() (closer, error) { return dlib.LoadNet(tmpName) }):
		name = ModelFile
	default:
		sp, err := dlib.LoadShapePredictor(tmpName)
		if err != nil {
			return "", "", fmt.Errorf("prepare models: %s is not a dlib CNN detector, face network or shape predictor", src)
		}
		parts := sp.NumParts()
		sp.Close()
		switch parts {
		case 5:
			name = Landmarks5File
		case 68:
			name = Landmarks68File
		default:
			return "", "", fmt.Errorf("prepare models: %s predicts %d landmarks; want 5 or 68", src, parts)
		}
	}
	if err := os.Chmod(tmpName, 0o644); err != nil {
		return "", "", fmt.Errorf("prepare models: %w", err)
	}
	if err := os.Rename(tmpName, filepath.Join(dir, name)); err != nil {
		return "", "", fmt.Errorf("prepare models: %w", err)
	}
	return name, sum, nil
}

type closer interface{ Close() }

func loads(open func() (closer, error)) bool {
	c, err := open()
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func writeHashed(dst string, r io.Reader) (string, error) {
	out, err := os.Create(dst)
	if err != nil {
		return "", fmt.Errorf("prepare models: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("prepare models: write %s: %w", dst, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("prepare models: %w", err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	if _, err := writeHashed(tmp, in); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("prepare models: %w", err)
	}
	return nil
}

// FileSHA256 returns the hex sha256 of a file.
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hasSum reports whether p exists with sha256 want, and its actual sum.
func hasSum(p, want string) (bool, string) {
	got, err := FileSHA256(p)
	if err != nil {
		return false, ""
	}
	return got == want, got
}

func checkSum(p, want string) error {
	got, err := FileSHA256(p)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s: %w (got %s, want %s)", p, ErrChecksum, got, want)
	}
	return nil
}

// readSums parses a SHA256SUMS file ("<hex>  <name>" lines); a missing
// file is an empty record.
func readSums(p string) (map[string]string, error) {
	sums := map[string]string{}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return sums, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prepare models: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && len(f[0]) == 64 {
			sums[f[1]] = f[0]
		}
	}
	return sums, nil
}

func writeSums(p string, sums map[string]string) error {
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", sums[n], n)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("prepare models: %w", err)
	}
	return nil
}
