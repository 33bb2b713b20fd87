package store

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"
)

func testIdentificationStats(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.openTest(t)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	identify := func(at time.Time, collection string, dists ...float64) {
		t.Helper()
		d, _ := json.Marshal(map[string]any{"faces": len(dists), "matches": 0, "threshold": 0.42, "best_distances": dists})
		_, err := s.AppendEvent(ctx, Event{At: at, Kind: EventIdentify, KeyID: "k", Collection: collection, Outcome: "x", Detail: d})
		noErr(t, "append", err)
	}
	identify(t0.Add(-time.Hour), "staff", 0.9)                   // before since
	identify(t0.Add(5*time.Minute), "staff", 0.31, 0.62)         // hour 10
	identify(t0.Add(50*time.Minute), "staff", 0.33)              // hour 10
	identify(t0.Add(2*time.Hour+time.Minute), "staff", 0.05)     // hour 12
	identify(t0.Add(2*time.Hour+2*time.Minute), "staff")         // hour 12, no face (best_distances null)
	identify(t0.Add(30*time.Minute), "visitors", 0.1, 0.2, 0.25) // other collection
	_, err := s.AppendEvent(ctx, Event{At: t0.Add(time.Minute), Kind: EventEnroll, Collection: "staff", Outcome: OutcomeEnrolled})
	noErr(t, "append", err)

	check := func(t *testing.T, since time.Time, wantHours []HourCount, wantBins []int64) {
		t.Helper()
		got, err := s.IdentificationStats(ctx, "staff", since)
		noErr(t, "stats", err)
		if len(got.Hours) != len(wantHours) {
			t.Fatalf("hours %+v, want %+v", got.Hours, wantHours)
		}
		var n, faces int64
		for i, h := range got.Hours {
			if !h.Hour.Equal(wantHours[i].Hour) || h.Count != wantHours[i].Count || h.Faces != wantHours[i].Faces {
				t.Errorf("hour %d: %+v, want %+v", i, h, wantHours[i])
			}
			n, faces = n+wantHours[i].Count, faces+wantHours[i].Faces
		}
		if got.Identifications != n || got.Faces != faces {
			t.Errorf("totals %d identifications, %d faces; want %d and %d", got.Identifications, got.Faces, n, faces)
		}
		if len(got.Distances) != len(wantBins) {
			t.Fatalf("distances %+v, want counts %v", got.Distances, wantBins)
		}
		for i, bin := range got.Distances {
			if bin.Count != wantBins[i] || math.Abs(bin.From-0.05*float64(i)) > 1e-9 || math.Abs(bin.To-0.05*float64(i+1)) > 1e-9 {
				t.Errorf("bin %d: %+v, want [%.2f, %.2f) × %d", i, bin, 0.05*float64(i), 0.05*float64(i+1), wantBins[i])
			}
		}
	}
	// Bins of 0.05: 0.05 → 1, 0.31 and 0.33 → 6, 0.62 → 12.
	t.Run("whole hours", func(t *testing.T) {
		check(t, t0, []HourCount{{Hour: t0, Count: 2, Faces: 3}, {Hour: t0.Add(2 * time.Hour), Count: 2, Faces: 1}},
			[]int64{0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1})
	})
	t.Run("since within an hour", func(t *testing.T) {
		check(t, t0.Add(30*time.Minute), []HourCount{{Hour: t0, Count: 1, Faces: 1}, {Hour: t0.Add(2 * time.Hour), Count: 2, Faces: 1}},
			[]int64{0, 1, 0, 0, 0, 0, 1})
	})
	t.Run("from the start", func(t *testing.T) {
		check(t, time.Time{}, []HourCount{{Hour: t0.Add(-time.Hour), Count: 1, Faces: 1}, {Hour: t0, Count: 2, Faces: 3},
			{Hour: t0.Add(2 * time.Hour), Count: 2, Faces: 1}},
			[]int64{0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1})
	})
	t.Run("nothing yet", func(t *testing.T) {
		got, err := s.IdentificationStats(ctx, "empty", t0)
		noErr(t, "stats", err)
		if len(got.Hours) != 0 || len(got.Distances) != 0 || got.Identifications != 0 {
			t.Errorf("stats of a collection without identifications: %+v", got)
		}
	})
}
