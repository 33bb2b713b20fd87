package gallery

import (
	"fmt"

	"github.com/visage/visage/embed"
)

// DefaultVariant is the descriptor augmentation chosen on the LFW
// development fold (see docs/benchmarks.md, "Accuracy levers").
func DefaultVariant() embed.Variant { return embed.Variant{Normalize: true} }

// DefaultEnrollVariant is the augmentation of enrolled faces: the mean of
// the chip's and its mirror image's descriptors, L2-normalised. Measured
// with `visage eval identification` on lfw-open (docs/benchmarks.md,
// "Open-set identification"): against plain probes it lowers FNIR at FPIR
// 1% by about 2 points for one more network pass per enrolled face;
// jittered enrollment (4 or 16 passes) did no better.
func DefaultEnrollVariant() embed.Variant { return embed.Variant{Mirror: true, Normalize: true} }

// ThresholdFor returns a descriptor variant's same/different distance
// threshold, chosen on the LFW development fold (fold 1 of View 2, 600
// pairs) by `visage eval lfw --variants ...`; docs/benchmarks.md has the
// operating points. A variant not calibrated needs an explicit threshold.
func ThresholdFor(v embed.Variant) (float64, error) {
	switch v.String() {
	case "plain":
		return 0.622, nil
	case "plain+l2":
		return 0.421, nil
	case "mirror":
		return 0.606, nil
	case "mirror+l2":
		return 0.419, nil
	case "jitter10+l2":
		return 0.410, nil
	case "mirror+jitter10+l2":
		return 0.406, nil
	}
	return 0, fmt.Errorf("no calibrated threshold for variant %s: pass one explicitly", v)
}

// Distance is the Euclidean distance between two faces' descriptors.
func Distance(a, b Face) float64 { return embed.Distance(a.Descriptor, b.Descriptor) }
