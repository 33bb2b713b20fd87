package align

import (
	"context"
	"math"
	"testing"

	"github.com/visage/visage/detect"
	"github.com/visage/visage/internal/imageio"
	"github.com/visage/visage/internal/testenv"
)

// faceOf returns the landmarks and chip of the largest face in a photo.
func faceOf(t *testing.T, lm *Landmarker, rel string) ([]Point, []byte, detect.Box) {
	t.Helper()
	img, err := imageio.Decode(testenv.ReadShared(t, rel), imageio.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	det, err := detect.NewHOG(detect.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	boxes, err := det.Detect(context.Background(), img)
	if err != nil || len(boxes) == 0 {
		t.Fatalf("%s: no face (%v)", rel, err)
	}
	pts, err := lm.Landmarks(img, boxes[0].Rect)
	if err != nil {
		t.Fatal(err)
	}
	chip, err := Chip(img, boxes[0].Rect, pts)
	if err != nil {
		t.Fatal(err)
	}
	return pts, chip, boxes[0]
}

func TestQualityOfRealFaces(t *testing.T) {
	lm, err := NewLandmarker(testenv.ModelDir(t) + "/shape_predictor_68_face_landmarks.dat")
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Close()
	if lm.Points() != 68 {
		t.Fatalf("%d points", lm.Points())
	}
	pts, chip, box := faceOf(t, lm, "testdata/faces/misc/obama.jpg")
	q := Measure(box.Rect, box.Score, pts, chip)
	if len(chip) != ChipSize*ChipSize*3 {
		t.Fatalf("chip has %d bytes", len(chip))
	}
	if r := EnrollGates().Check(q); len(r) != 0 {
		t.Errorf("official portrait rejected for %v (quality %+v)", r, q)
	}
	if math.Abs(q.Yaw) > 15 || math.Abs(q.Roll) > 10 || math.Abs(q.Pitch) > 20 {
		t.Errorf("frontal portrait pose yaw %.1f pitch %.1f roll %.1f", q.Yaw, q.Pitch, q.Roll)
	}

	t.Run("mirror flips yaw and roll", func(t *testing.T) {
		mirrored := make([]Point, len(pts))
		for i, p := range pts {
			mirrored[i] = Point{X: 1000 - p.X, Y: p.Y}
		}
		// Mirroring swaps the subject's left and right landmarks.
		swap := mirror68()
		flipped := make([]Point, len(pts))
		for i := range pts {
			flipped[i] = mirrored[swap[i]]
		}
		m := Measure(box.Rect, box.Score, flipped, chip)
		if math.Abs(m.Yaw+q.Yaw) > 1 || math.Abs(m.Roll+q.Roll) > 1 {
			t.Errorf("mirror: yaw %.2f→%.2f roll %.2f→%.2f", q.Yaw, m.Yaw, q.Roll, m.Roll)
		}
	})

	t.Run("blur and darkness are caught", func(t *testing.T) {
		dark := make([]byte, len(chip))
		for i, v := range chip {
			dark[i] = v / 8
		}
		flat := make([]byte, len(chip))
		for i := range flat {
			flat[i] = 128
		}
		qd := Measure(box.Rect, box.Score, pts, dark)
		qf := Measure(box.Rect, box.Score, pts, flat)
		if !contains(EnrollGates().Check(qd), ReasonTooDark) {
			t.Errorf("dark chip (brightness %.1f) passed", qd.Brightness)
		}
		r := EnrollGates().Check(qf)
		if !contains(r, ReasonBlurry) || !contains(r, ReasonLowContrast) {
			t.Errorf("flat chip reasons %v", r)
		}
	})
}

// mirror68 maps each 68-point index to its mirror-image counterpart.
func mirror68() [68]int {
	var m [68]int
	for i := range m {
		m[i] = i
	}
	pair := func(a, b int) { m[a], m[b] = b, a }
	for i := 0; i < 8; i++ {
		pair(i, 16-i) // jaw
	}
	for i := 0; i < 5; i++ {
		pair(17+i, 26-i) // brows
	}
	pair(31, 35)
	pair(32, 34)
	pair(36, 45)
	pair(37, 44)
	pair(38, 43)
	pair(39, 42)
	pair(40, 47)
	pair(41, 46)
	pair(48, 54)
	pair(49, 53)
	pair(50, 52)
	pair(55, 59)
	pair(56, 58)
	pair(60, 64)
	pair(61, 63)
	pair(65, 67)
	return m
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestGatesCheck(t *testing.T) {
	g := EnrollGates()
	good := Quality{Size: 120, Score: 1, Sharpness: 100, Brightness: 120, Contrast: 40}
	tests := []struct {
		name string
		mod  func(*Quality)
		want string
	}{
		{"small", func(q *Quality) { q.Size = 20 }, ReasonTooSmall},
		{"weak detection", func(q *Quality) { q.Score = -0.8 }, ReasonLowScore},
		{"blurry", func(q *Quality) { q.Sharpness = 2 }, ReasonBlurry},
		{"dark", func(q *Quality) { q.Brightness = 10 }, ReasonTooDark},
		{"bright", func(q *Quality) { q.Brightness = 250 }, ReasonTooBright},
		{"flat", func(q *Quality) { q.Contrast = 3 }, ReasonLowContrast},
		{"profile", func(q *Quality) { q.Yaw = -70 }, ReasonYaw},
		{"nod", func(q *Quality) { q.Pitch = 50 }, ReasonPitch},
		{"tilt", func(q *Quality) { q.Roll = 60 }, ReasonRoll},
		{"shouting", func(q *Quality) { q.MouthOpen = 0.5 }, ReasonExpression},
	}
	if r := g.Check(good); len(r) != 0 {
		t.Fatalf("good face rejected: %v", r)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := good
			tc.mod(&q)
			if r := g.Check(q); len(r) != 1 || r[0] != tc.want {
				t.Errorf("reasons %v, want [%s]", r, tc.want)
			}
		})
	}
	if r := (Gates{}).Check(Quality{}); len(r) != 0 {
		t.Errorf("zero gates rejected: %v", r)
	}
}
