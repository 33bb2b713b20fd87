package align

import (
	"image"
	"math"
)

// Quality describes how well a face lends itself to recognition. Pose
// angles are estimates from the landmarks (a cylinder model of the head),
// good to about ±10°: enough to refuse profiles and nods, not to measure.
type Quality struct {
	// Size is the shorter side of the face box in full-resolution pixels.
	Size int `json:"size"`
	// Score is the detector's confidence.
	Score float64 `json:"score"`
	// Sharpness is the variance of the Laplacian over the chip's face
	// area; blur and upscaled tiny faces score low.
	Sharpness float64 `json:"sharpness"`
	// Brightness is the mean grey level (0–255) and Contrast its standard
	// deviation over the chip's face area.
	Brightness float64 `json:"brightness"`
	Contrast   float64 `json:"contrast"`
	// Yaw (turn left/right), Pitch (nod) and Roll (tilt) in degrees.
	Yaw   float64 `json:"yaw"`
	Pitch float64 `json:"pitch"`
	Roll  float64 `json:"roll"`
	// MouthOpen is the inner-lip gap relative to the face height (68-point
	// landmarks only; 0 otherwise): a wide-open mouth changes the
	// descriptor.
	MouthOpen float64 `json:"mouth_open"`
}

// Reason codes of quality gates, stable across releases.
const (
	ReasonTooSmall    = "face_too_small"
	ReasonLowScore    = "low_detector_score"
	ReasonBlurry      = "blurry"
	ReasonTooDark     = "too_dark"
	ReasonTooBright   = "too_bright"
	ReasonLowContrast = "low_contrast"
	ReasonYaw         = "yaw_too_large"
	ReasonPitch       = "pitch_too_large"
	ReasonRoll        = "roll_too_large"
	ReasonExpression  = "expression_too_strong"
)

// Gates are the quality thresholds; a zero field disables its gate. Every
// threshold lives here so that one place says what "good enough" means.
type Gates struct {
	MinSize       int
	MinScore      float64
	MinSharpness  float64
	MinBrightness float64
	MaxBrightness float64
	MinContrast   float64
	MaxYaw        float64
	MaxPitch      float64
	MaxRoll       float64
	MaxMouthOpen  float64
}

// EnrollGates are the defaults for faces stored in a gallery: a stored
// face is compared against every later probe, so it must be clear,
// near-frontal and evenly lit. Identification and verification report
// quality but do not gate on it by default.
func EnrollGates() Gates {
	return Gates{
		MinSize:       40,
		MinScore:      -0.5,
		MinSharpness:  15,
		MinBrightness: 35,
		MaxBrightness: 225,
		MinContrast:   12,
		MaxYaw:        40,
		MaxPitch:      35,
		MaxRoll:       40,
		MaxMouthOpen:  0.30,
	}
}

// Check returns the reason codes of every gate q fails, in a fixed order.
func (g Gates) Check(q Quality) []string {
	var r []string
	fail := func(bad bool, code string) {
		if bad {
			r = append(r, code)
		}
	}
	fail(g.MinSize > 0 && q.Size < g.MinSize, ReasonTooSmall)
	fail(g.MinScore != 0 && q.Score < g.MinScore, ReasonLowScore)
	fail(g.MinSharpness > 0 && q.Sharpness < g.MinSharpness, ReasonBlurry)
	fail(g.MinBrightness > 0 && q.Brightness < g.MinBrightness, ReasonTooDark)
	fail(g.MaxBrightness > 0 && q.Brightness > g.MaxBrightness, ReasonTooBright)
	fail(g.MinContrast > 0 && q.Contrast < g.MinContrast, ReasonLowContrast)
	fail(g.MaxYaw > 0 && math.Abs(q.Yaw) > g.MaxYaw, ReasonYaw)
	fail(g.MaxPitch > 0 && math.Abs(q.Pitch) > g.MaxPitch, ReasonPitch)
	fail(g.MaxRoll > 0 && math.Abs(q.Roll) > g.MaxRoll, ReasonRoll)
	fail(g.MaxMouthOpen > 0 && q.MouthOpen > g.MaxMouthOpen, ReasonExpression)
	return r
}

// Measure computes the quality of a face from its box, detector score,
// landmarks (5 or 68) and aligned chip.
func Measure(box image.Rectangle, score float64, pts []Point, chip []byte) Quality {
	q := Quality{Size: min(box.Dx(), box.Dy()), Score: score}
	q.Sharpness, q.Brightness, q.Contrast = chipStats(chip)
	q.Yaw, q.Pitch, q.Roll, q.MouthOpen = pose(pts)
	return q
}

// chipStats measures the central face area of a chip: with padding 0.25
// the face spans the middle two thirds.
func chipStats(chip []byte) (sharpness, brightness, contrast float64) {
	if len(chip) != ChipSize*ChipSize*3 {
		return 0, 0, 0
	}
	const lo, hi = ChipSize / 6, ChipSize - ChipSize/6
	grey := func(x, y int) float64 {
		i := 3 * (y*ChipSize + x)
		return 0.299*float64(chip[i]) + 0.587*float64(chip[i+1]) + 0.114*float64(chip[i+2])
	}
	var sum, sum2, lsum, lsum2 float64
	n := 0
	for y := lo; y < hi; y++ {
		for x := lo; x < hi; x++ {
			g := grey(x, y)
			sum += g
			sum2 += g * g
			lap := grey(x-1, y) + grey(x+1, y) + grey(x, y-1) + grey(x, y+1) - 4*g
			lsum += lap
			lsum2 += lap * lap
			n++
		}
	}
	fn := float64(n)
	brightness = sum / fn
	contrast = math.Sqrt(math.Max(0, sum2/fn-brightness*brightness))
	lm := lsum / fn
	sharpness = math.Max(0, lsum2/fn-lm*lm)
	return sharpness, brightness, contrast
}

type fpoint struct{ x, y float64 }

func mean(pts []Point, idx ...int) fpoint {
	var p fpoint
	for _, i := range idx {
		p.x += float64(pts[i].X)
		p.y += float64(pts[i].Y)
	}
	return fpoint{p.x / float64(len(idx)), p.y / float64(len(idx))}
}

// pose estimates yaw, pitch and roll (degrees) and mouth opening from
// landmarks. Roll is the tilt of the line between the eyes. Yaw treats the
// head as a cylinder: the nose's horizontal place between the face's
// edges (68 points) or relative to the eyes (5 points) is the sine of the
// turn. Pitch compares the nose's height between eyes and chin (or its
// drop below the eyes) with a frontal face's ratio.
func pose(pts []Point) (yaw, pitch, roll, mouth float64) {
	var eyeA, eyeB, nose fpoint
	switch len(pts) {
	case 68:
		eyeA, eyeB, nose = mean(pts, 36, 37, 38, 39, 40, 41), mean(pts, 42, 43, 44, 45, 46, 47), mean(pts, 30)
	case 5:
		// dlib's 5-point model: 0–1 one eye's corners, 2–3 the other's, 4 under the nose.
		eyeA, eyeB, nose = mean(pts, 2, 3), mean(pts, 0, 1), mean(pts, 4)
	default:
		return 0, 0, 0, 0
	}
	dx, dy := eyeB.x-eyeA.x, eyeB.y-eyeA.y
	iod := math.Hypot(dx, dy)
	if iod < 1 {
		return 0, 0, 0, 0
	}
	roll = deg(math.Atan2(dy, dx))
	// Rotate into the eye line's frame so roll does not leak into yaw/pitch.
	c, s := dx/iod, dy/iod
	local := func(p fpoint) fpoint {
		x, y := p.x-eyeA.x, p.y-eyeA.y
		return fpoint{x*c + y*s, -x*s + y*c}
	}
	n := local(nose)
	mid := fpoint{iod / 2, 0}
	asinDeg := func(v float64) float64 { return deg(math.Asin(math.Max(-1, math.Min(1, v)))) }
	if len(pts) == 68 {
		l, r := local(mean(pts, 0, 1, 2)), local(mean(pts, 14, 15, 16))
		if w := r.x - l.x; w > 1 {
			yaw = asinDeg(2*(n.x-l.x)/w - 1)
		}
		chin := local(mean(pts, 8))
		if chin.y > 1 {
			// The nose tip sits at 0.28–0.32 of the eye–chin height in
			// frontal portraits (measured on the shared photos).
			pitch = asinDeg((n.y/chin.y - 0.30) / 0.35)
		}
		inner := math.Abs(local(mean(pts, 66)).y - local(mean(pts, 62)).y)
		if chin.y > 1 {
			mouth = inner / chin.y
		}
	} else {
		yaw = asinDeg(2 * (n.x - mid.x) / iod)
		// Frontal: the point under the nose is about 0.8 IOD below the eye
		// corners' centres (68-point equivalents on the shared portraits).
		pitch = asinDeg((n.y/iod - 0.8) / 0.6)
	}
	return yaw, pitch, roll, mouth
}

func deg(rad float64) float64 { return rad * 180 / math.Pi }

// Rounded returns q with each measure rounded to the precision it has:
// what APIs and command output show.
func (q Quality) Rounded() Quality {
	round := func(v float64, digits int) float64 {
		p := math.Pow(10, float64(digits))
		return math.Round(v*p) / p
	}
	q.Score = round(q.Score, 4)
	q.Sharpness, q.Brightness, q.Contrast = round(q.Sharpness, 1), round(q.Brightness, 1), round(q.Contrast, 1)
	q.Yaw, q.Pitch, q.Roll, q.MouthOpen = round(q.Yaw, 1), round(q.Pitch, 1), round(q.Roll, 1), round(q.MouthOpen, 3)
	return q
}
