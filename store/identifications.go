package store

import (
	"time"
)

// EventIdentify is the kind of the audit event of an identification; its
// detail holds "faces" (faces found) and "best_distances" (the distance
// of each face's nearest candidate).
const EventIdentify = "identify"

// maxDistanceBins bounds the histogram of IdentificationStats.
const maxDistanceBins = 1000

// HourCount is the identifications of one UTC hour and the faces they
// found.
type HourCount struct {
	Hour  time.Time `json:"hour"`
	Count int64     `json:"count"`
	Faces int64     `json:"faces"`
}

// DistanceBin counts best-candidate distances in [From, To).
type DistanceBin struct {
	From  float64 `json:"from"`
	To    float64 `json:"to"`
	Count int64   `json:"count"`
}

// IdentificationStats describe a collection's identifications since a
// time: per UTC hour (hours without any left out, oldest first), and the
// histogram of the distance of each face's best candidate, in bins from
// 0 up to the largest distance seen (empty bins included).
type IdentificationStats struct {
	Hours           []HourCount   `json:"hours"`
	Distances       []DistanceBin `json:"distances"`
	Identifications int64         `json:"identifications"`
	Faces           int64         `json:"faces"`
}

// DistanceBinWidth is the width of IdentificationStats' distance bins,
// fixed because counters per bin are kept as events are written
// (migration 0006): 0.05 puts the calibrated thresholds about eight bins
// from 0.
const DistanceBinWidth = 0.05

// distanceBins turns counts by bin index into the histogram: every bin
// from 0 to the largest index, at most maxDistanceBins (larger distances
// are counted in the last).
func distanceBins(counts map[int64]int64, width float64) []DistanceBin {
	last := int64(-1)
	for i := range counts {
		last = max(last, min(i, maxDistanceBins-1))
	}
	bins := make([]DistanceBin, last+1)
	for i := range bins {
		bins[i] = DistanceBin{From: float64(i) * width, To: float64(i+1) * width}
	}
	for i, n := range counts {
		bins[min(max(i, 0), maxDistanceBins-1)].Count += n
	}
	return bins
}

// hourOf is the start of the UTC hour numbered h since the epoch.
func hourOf(h int64) time.Time { return time.Unix(h*3600, 0).UTC() }
