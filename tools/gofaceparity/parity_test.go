package gofaceparity

import (
	"image"
	"math"
	"testing"

	"github.com/visage/visage/gallery"
	"github.com/visage/visage/tools/gofaceparity/internal/fixture"
)

// maxDescriptorDiff is the largest per-component difference allowed
// between go-face's and Visage's descriptors. Both run the same dlib code
// on the same pixels; what remains (a few 1e-7) is the last layer, which
// Visage sums in double precision in a fixed order, so that a descriptor
// does not depend on the batch it was computed in, where go-face calls
// BLAS's sgemm.
const maxDescriptorDiff = 1e-5

// minFaces is the fewest faces a parity run must compare to mean
// anything.
const minFaces = 20

// TestDescriptorsMatchGoFace runs every shared JPEG through go-face's
// Recognize (in gofacedump, a process of its own) and through Visage's
// public pipeline (Engine.Faces on the same bytes) configured as go-face
// works, and requires the same faces, boxes, landmarks and descriptors.
// Visage decodes JPEGs with libjpeg and dlib's loader settings, as go-face
// does, so both see the same pixels.
func TestDescriptorsMatchGoFace(t *testing.T) {
	imgs := fixture.Images(t)
	gf := goFaceResults(t, imgs)
	eng := engine(t, goFaceConfig(fixture.ModelDir(t), 1))

	var total int
	var worst float64
	var worstAt string
	for _, im := range imgs {
		t.Run(im.Name, func(t *testing.T) {
			want, ok := gf[im.Path]
			switch {
			case !ok:
				t.Fatalf("gofacedump reported nothing for %s", im.Path)
			case want.Error != "":
				t.Fatalf("go-face Recognize: %s", want.Error)
			}
			res, err := eng.Faces(t.Context(), im.Data)
			if err != nil {
				t.Fatalf("Visage: %v", err)
			}
			n, diff := compareFaces(t, want.Faces, res.Faces)
			total += n
			if diff > worst {
				worst, worstAt = diff, im.Name
			}
			t.Logf("%d faces, max abs descriptor difference %.3g", n, diff)
		})
	}
	t.Logf("compared %d faces in %d images; max abs descriptor difference %.3g (%s), tolerance %.0e",
		total, len(imgs), worst, worstAt, maxDescriptorDiff)
	if total < minFaces {
		t.Errorf("only %d faces compared, want at least %d", total, minFaces)
	}
}

// compareFaces matches go-face's faces with Visage's by box and reports
// how many matched and the largest descriptor component difference.
func compareFaces(t *testing.T, want []fixture.GoFaceFace, got []gallery.Face) (matched int, worst float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("Visage found %d faces %v, go-face %d %v", len(got), visageBoxes(got), len(want), goFaceBoxes(want))
	}
	byBox := make(map[image.Rectangle]int, len(got))
	for i, f := range got {
		byBox[f.Box] = i
	}
	for _, w := range want {
		box := goFaceBox(w.Rect)
		i, ok := byBox[box]
		if !ok {
			t.Errorf("go-face face %v has no Visage face with the same box (Visage: %v)", box, visageBoxes(got))
			if j, off := nearestBox(box, got); off <= 2 {
				t.Logf("nearest Visage box %v is off by %d px; its descriptor differs by up to %.3g. "+
					"A box a pixel off is the signature of go-face's -march=native build fusing "+
					"multiply-adds in dlib's HOG code: build with CGO_CXXFLAGS=-ffp-contract=off (run.sh does)",
					got[j].Box, off, maxAbsDiff(w.Descriptor, got[j].Descriptor))
			}
			continue
		}
		g := got[i]
		matched++
		if !sameLandmarks(w.Shapes, g) {
			t.Errorf("face %v: landmarks differ:\n go-face %v\n Visage  %v", box, w.Shapes, g.Landmarks)
		}
		d := maxAbsDiff(w.Descriptor, g.Descriptor)
		worst = math.Max(worst, d)
		if d > maxDescriptorDiff {
			t.Errorf("face %v: max abs descriptor difference %.3g > %.0e", box, d, maxDescriptorDiff)
		}
	}
	return matched, worst
}

// goFaceBox converts go-face's rectangle, which copies dlib's inclusive
// right and bottom edges into image.Rectangle's Max, to Visage's half-open
// box: the same pixels, Max one larger.
func goFaceBox(r image.Rectangle) image.Rectangle {
	return image.Rect(r.Min.X, r.Min.Y, r.Max.X+1, r.Max.Y+1)
}

// nearestBox returns the index of the face whose box edges are closest to
// box and the largest edge offset, for diagnosing a near miss.
func nearestBox(box image.Rectangle, fs []gallery.Face) (index, offset int) {
	index, offset = -1, math.MaxInt
	for i, f := range fs {
		d := max(abs(f.Box.Min.X-box.Min.X), abs(f.Box.Min.Y-box.Min.Y),
			abs(f.Box.Max.X-box.Max.X), abs(f.Box.Max.Y-box.Max.Y))
		if d < offset {
			index, offset = i, d
		}
	}
	return index, offset
}

func abs(x int) int { return max(x, -x) }

func goFaceBoxes(fs []fixture.GoFaceFace) []image.Rectangle {
	out := make([]image.Rectangle, len(fs))
	for i, f := range fs {
		out[i] = goFaceBox(f.Rect)
	}
	return out
}

func visageBoxes(fs []gallery.Face) []image.Rectangle {
	out := make([]image.Rectangle, len(fs))
	for i, f := range fs {
		out[i] = f.Box
	}
	return out
}

func sameLandmarks(want []image.Point, got gallery.Face) bool {
	if len(want) != len(got.Landmarks) {
		return false
	}
	for i, p := range want {
		if p.X != got.Landmarks[i].X || p.Y != got.Landmarks[i].Y {
			return false
		}
	}
	return true
}

func maxAbsDiff(a, b [128]float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}
