package gallery

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Pair is one LFW verification pair.
type Pair struct {
	A, B string // image paths relative to the images directory
	Same bool
	Fold int
}

// LFWPairs is a parsed pairs file.
type LFWPairs struct {
	Folds, PerFold int // PerFold matched and PerFold mismatched pairs per fold
	Pairs          []Pair
}

// lfwImage is the standard path of an LFW image: name/name_NNNN.jpg.
func lfwImage(name, idx string) (string, error) {
	n, err := strconv.Atoi(idx)
	if err != nil || n < 1 {
		return "", fmt.Errorf("bad image number %q", idx)
	}
	return filepath.Join(name, fmt.Sprintf("%s_%04d.jpg", name, n)), nil
}

// ParseLFWPairs reads the standard View 2 pairs format: a header
// "FOLDS<TAB>N", then per fold N matched lines "name i j" and N mismatched
// lines "name1 i name2 j".
func ParseLFWPairs(r io.Reader) (*LFWPairs, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return nil, fmt.Errorf("parse pairs: empty file")
	}
	head := strings.Fields(sc.Text())
	if len(head) != 2 {
		return nil, fmt.Errorf("parse pairs: header %q is not FOLDS<TAB>N", sc.Text())
	}
	folds, err1 := strconv.Atoi(head[0])
	per, err2 := strconv.Atoi(head[1])
	if err1 != nil || err2 != nil || folds < 1 || per < 1 {
		return nil, fmt.Errorf("parse pairs: header %q is not FOLDS<TAB>N", sc.Text())
	}
	out := &LFWPairs{Folds: folds, PerFold: per}
	line := 1
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		i := len(out.Pairs)
		p := Pair{Fold: i / (2 * per), Same: i%(2*per) < per}
		var err error
		switch {
		case p.Same && len(f) == 3:
			if p.A, err = lfwImage(f[0], f[1]); err == nil {
				p.B, err = lfwImage(f[0], f[2])
			}
		case !p.Same && len(f) == 4:
			if p.A, err = lfwImage(f[0], f[1]); err == nil {
				p.B, err = lfwImage(f[2], f[3])
			}
		default:
			err = fmt.Errorf("want %d fields", map[bool]int{true: 3, false: 4}[p.Same])
		}
		if err != nil {
			return nil, fmt.Errorf("parse pairs: line %d: %w", line, err)
		}
		out.Pairs = append(out.Pairs, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse pairs: %w", err)
	}
	if len(out.Pairs) != 2*per*folds {
		return nil, fmt.Errorf("parse pairs: %d pairs, header promises %d", len(out.Pairs), 2*per*folds)
	}
	return out, nil
}

// Scored is a pair's distance and truth.
type Scored struct {
	Distance float64
	Same     bool
	Fold     int
}

// BestThreshold returns the threshold (same when distance <= t) that
// maximises accuracy on ps, taking the middle of the best plateau so that
// the choice does not sit on one pair's distance.
func BestThreshold(ps []Scored) (threshold, accuracy float64) {
	if len(ps) == 0 {
		return 0, 0
	}
	s := append([]Scored(nil), ps...)
	sort.Slice(s, func(i, j int) bool { return s[i].Distance < s[j].Distance })
	negatives := 0
	for _, p := range s {
		if !p.Same {
			negatives++
		}
	}
	// Cutting after the first k distances accepts them as "same".
	correct := negatives
	best, bestLo, bestHi, plateau := correct, 0, 0, true
	for k := 1; k <= len(s); k++ {
		if s[k-1].Same {
			correct++
		} else {
			correct--
		}
		if k < len(s) && s[k].Distance == s[k-1].Distance {
			continue // no cut between equal distances
		}
		switch {
		case correct > best:
			best, bestLo, bestHi, plateau = correct, k, k, true
		case correct == best && plateau:
			bestHi = k
		default:
			plateau = false
		}
	}
	cut := func(k int) float64 {
		switch {
		case k == 0:
			return s[0].Distance - 1e-6
		case k == len(s):
			return s[len(s)-1].Distance + 1e-6
		default:
			return (s[k-1].Distance + s[k].Distance) / 2
		}
	}
	return (cut(bestLo) + cut(bestHi)) / 2, float64(best) / float64(len(s))
}

// AccuracyAt is the fraction of pairs decided right at threshold t.
func AccuracyAt(ps []Scored, t float64) float64 {
	ok := 0
	for _, p := range ps {
		if (p.Distance <= t) == p.Same {
			ok++
		}
	}
	return float64(ok) / float64(len(ps))
}

// FoldResult is one fold's accuracy at the threshold chosen without it
// (or on it, when there is a single fold).
type FoldResult struct {
	Fold      int
	Threshold float64
	Accuracy  float64
}

// CrossValidate runs the LFW protocol: for each fold, choose the threshold
// on the other folds and measure accuracy on it. With one fold the
// threshold is chosen on that fold itself (the protocol's documented
// single-fold case). Returns per-fold results, mean and standard
// deviation, and the threshold best on all pairs.
func CrossValidate(ps []Scored, folds int) (res []FoldResult, mean, std, overall float64) {
	for f := 0; f < folds; f++ {
		var train, test []Scored
		for _, p := range ps {
			if p.Fold == f {
				test = append(test, p)
			} else {
				train = append(train, p)
			}
		}
		if folds == 1 {
			train = test
		}
		t, _ := BestThreshold(train)
		res = append(res, FoldResult{Fold: f + 1, Threshold: t, Accuracy: AccuracyAt(test, t)})
	}
	for _, r := range res {
		mean += r.Accuracy
	}
	mean /= float64(len(res))
	for _, r := range res {
		std += (r.Accuracy - mean) * (r.Accuracy - mean)
	}
	std = math.Sqrt(std / float64(len(res)))
	overall, _ = BestThreshold(ps)
	return res, mean, std, overall
}

// TARAtFAR returns the true-accept rate at the loosest threshold whose
// false-accept rate does not exceed far, and that threshold.
func TARAtFAR(ps []Scored, far float64) (tar, threshold float64) {
	var pos, neg []float64
	for _, p := range ps {
		if p.Same {
			pos = append(pos, p.Distance)
		} else {
			neg = append(neg, p.Distance)
		}
	}
	if len(pos) == 0 || len(neg) == 0 {
		return 0, 0
	}
	sort.Float64s(neg)
	allowed := int(math.Floor(far * float64(len(neg))))
	// Accept distances strictly below the (allowed+1)-th smallest impostor.
	threshold = neg[min(allowed, len(neg)-1)]
	if allowed >= len(neg) {
		threshold = math.Inf(1)
	}
	n := 0
	for _, d := range pos {
		if d < threshold {
			n++
		}
	}
	return float64(n) / float64(len(pos)), threshold
}
