package store

import (
	"math"
	"time"
)

// dayNanos is a UTC day in the stores' time unit.
const dayNanos = int64(24 * time.Hour)

// dayName names the UTC day numbered day since the epoch (YYYY-MM-DD).
func dayName(day int64) string { return time.Unix(day*86400, 0).UTC().Format("2006-01-02") }

// hourNanos is a UTC hour in the stores' time unit.
const hourNanos = int64(time.Hour)

// splitAt splits a range that starts at since into the whole periods of
// length unit that counters answer, numbered from the epoch, from first
// on, and, when since falls inside a period, that period's part from
// since on, [from, to) in nanoseconds, which only the events can answer.
func splitAt(since time.Time, unit int64) (first int64, partial bool, from, to int64) {
	if since.IsZero() {
		return math.MinInt64, false, 0, 0
	}
	ns := toNanos(since)
	n := ns / unit
	if ns%unit < 0 {
		n-- // floor, for times before 1970
	}
	if ns == n*unit {
		return n, false, 0, 0
	}
	return n + 1, true, ns, (n + 1) * unit
}
