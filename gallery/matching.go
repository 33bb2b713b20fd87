package gallery

import (
	"fmt"

	"github.com/visage/visage/embed"
)

// DefaultVariant is the descriptor augmentation chosen on the LFW
// development fold (see docs/benchmarks.md, "Accuracy levers").
func DefaultVariant() embed.Variant { return embed.Variant{Normalize: true} }

// calibratedThresholds are same/different distance thresholds per
// descriptor variant, chosen on the LFW development fold (fold 1 of View 2,
// 600 pairs) by `visage eval lfw --variants ...`; docs/benchmarks.md has
// the operating points. A variant missing here has no calibrated
// threshold and needs an explicit one.
var calibratedThresholds = map[string]float64{
	"plain":              0.622,
	"plain+l2":           0.421,
	"mirror":             0.606,
	"mirror+l2":          0.419,
	"jitter10+l2":        0.410,
	"mirror+jitter10+l2": 0.406,
}

// ThresholdFor returns the calibrated threshold of a variant.
func ThresholdFor(v embed.Variant) (float64, error) {
	if t, ok := calibratedThresholds[v.String()]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("no calibrated threshold for variant %s: pass one explicitly", v)
}

// Distance is the Euclidean distance between two faces' descriptors.
func Distance(a, b Face) float64 { return embed.Distance(a.Descriptor, b.Descriptor) }
