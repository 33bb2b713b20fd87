package gallery

import (
	"math"
	"strings"
	"testing"
)

func TestParseLFWPairs(t *testing.T) {
	const two = "2\t2\nA\t1\t2\nB\t1\t3\nA\t1\tC\t2\nB\t2\tD\t1\n" +
		"E\t1\t2\nF\t2\t3\nE\t1\tG\t1\nF\t1\tH\t4\n"
	p, err := ParseLFWPairs(strings.NewReader(two))
	if err != nil {
		t.Fatal(err)
	}
	if p.Folds != 2 || p.PerFold != 2 || len(p.Pairs) != 8 {
		t.Fatalf("got folds=%d per=%d pairs=%d", p.Folds, p.PerFold, len(p.Pairs))
	}
	want := []Pair{
		{"A/A_0001.jpg", "A/A_0002.jpg", true, 0},
		{"B/B_0001.jpg", "B/B_0003.jpg", true, 0},
		{"A/A_0001.jpg", "C/C_0002.jpg", false, 0},
		{"B/B_0002.jpg", "D/D_0001.jpg", false, 0},
		{"E/E_0001.jpg", "E/E_0002.jpg", true, 1},
	}
	for i, w := range want {
		if p.Pairs[i] != w {
			t.Errorf("pair %d = %+v, want %+v", i, p.Pairs[i], w)
		}
	}
	for _, bad := range []string{"", "x\n", "1\t2\nA\t1\t2\n", "1\t1\nA\t1\nB\t1\tC\t1\n", "1\t1\nA\t1\t2\nB\t0\tC\t1\n"} {
		if _, err := ParseLFWPairs(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseLFWPairs(%q) succeeded, want an error", bad)
		}
	}
}

func TestBestThreshold(t *testing.T) {
	tests := []struct {
		name    string
		ps      []Scored
		wantT   float64
		wantAcc float64
	}{
		{"separable", []Scored{{0.1, true, 0}, {0.3, true, 0}, {0.5, false, 0}, {0.9, false, 0}}, 0.4, 1},
		{"one error", []Scored{{0.1, true, 0}, {0.6, true, 0}, {0.5, false, 0}, {0.9, false, 0}}, 0.3, 0.75},
		{"all same", []Scored{{0.2, true, 0}, {0.4, true, 0}}, 0.4, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			th, acc := BestThreshold(tc.ps)
			if math.Abs(acc-tc.wantAcc) > 1e-9 {
				t.Errorf("accuracy %.3f, want %.3f", acc, tc.wantAcc)
			}
			if got := AccuracyAt(tc.ps, th); math.Abs(got-acc) > 1e-9 {
				t.Errorf("AccuracyAt(best threshold %.3f) = %.3f, want %.3f", th, got, acc)
			}
			if tc.name == "separable" && math.Abs(th-tc.wantT) > 1e-9 {
				t.Errorf("threshold %.4f, want %.4f (middle of the gap)", th, tc.wantT)
			}
		})
	}
}

func TestCrossValidateAndTAR(t *testing.T) {
	var ps []Scored
	for f := 0; f < 3; f++ {
		for i := 0; i < 10; i++ {
			ps = append(ps, Scored{Distance: 0.2 + 0.01*float64(i), Same: true, Fold: f})
			ps = append(ps, Scored{Distance: 0.6 + 0.01*float64(i), Same: false, Fold: f})
		}
	}
	// One impostor closer than every genuine pair in fold 2.
	ps = append(ps, Scored{Distance: 0.1, Same: false, Fold: 2})
	folds, mean, std, overall := CrossValidate(ps, 3)
	if len(folds) != 3 {
		t.Fatalf("%d folds", len(folds))
	}
	if folds[0].Accuracy != 1 || folds[1].Accuracy != 1 || math.Abs(folds[2].Accuracy-20.0/21) > 1e-9 {
		t.Errorf("fold accuracies %+v", folds)
	}
	if math.Abs(mean-(2+20.0/21)/3) > 1e-9 || std <= 0 {
		t.Errorf("mean %.4f std %.4f", mean, std)
	}
	if overall < 0.29 || overall > 0.6 {
		t.Errorf("overall threshold %.3f outside the gap", overall)
	}
	tar, th := TARAtFAR(ps, 0.0)
	if tar != 0 || th != 0.1 {
		t.Errorf("TAR at FAR 0 = %.3f at %.3f, want 0 at 0.1 (the closest impostor)", tar, th)
	}
	tar, _ = TARAtFAR(ps, 0.05) // 31 impostors: one may pass
	if tar != 1 {
		t.Errorf("TAR at FAR 5%% = %.3f, want 1", tar)
	}
}
