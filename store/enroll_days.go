package store

import (
	"math"
	"time"
)

// dayNanos is a UTC day in the stores' time unit.
const dayNanos = int64(24 * time.Hour)

// dayName names the UTC day numbered day since the epoch (YYYY-MM-DD).
func dayName(day int64) string { return time.Unix(day*86400, 0).UTC().Format("2006-01-02") }

// enrollDaysFrom splits EnrollmentsPerDay's range at since: the first
// whole day, read from the enroll_day counters, and, when since falls
// inside a day, that day's part from since on, [from, to) in nanoseconds,
// which only the events can answer.
func enrollDaysFrom(since time.Time) (first int64, partial bool, from, to int64) {
	if since.IsZero() {
		return math.MinInt64, false, 0, 0
	}
	ns := toNanos(since)
	day := ns / dayNanos
	if ns%dayNanos < 0 {
		day-- // floor, for times before 1970
	}
	if ns == day*dayNanos {
		return day, false, 0, 0
	}
	return day + 1, true, ns, (day + 1) * dayNanos
}
