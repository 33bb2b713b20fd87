//go:build linux

package pgtest

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// ServerCPU is the CPU time used so far by the PostgreSQL server this
// process started (pgtest's private cluster): its postmaster, a child
// of this process, with the children it has reaped, and its live children
// (backends, checkpointer, WAL writer, ...). ok is false when there is no
// such server (VISAGE_TEST_DATABASE_URL names another one).
func ServerCPU() (cpu time.Duration, ok bool) {
	type proc struct {
		ppid         int
		comm         string
		self, reaped int64 // clock ticks
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid … utime stime cutime cstime …; comm may
		// hold spaces and parentheses.
		s := string(raw)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 15 {
			continue
		}
		num := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
		procs[pid] = proc{ppid: int(num(1)), comm: s[open+1 : end], self: num(11) + num(12), reaped: num(13) + num(14)}
	}
	var ticks int64
	me := os.Getpid()
	for pid, p := range procs {
		if p.ppid != me || p.comm != "postgres" {
			continue
		}
		ok = true
		ticks += p.self + p.reaped
		for _, c := range procs {
			if c.ppid == pid {
				ticks += c.self
			}
		}
	}
	// /proc counts in USER_HZ, 100 per second on Linux.
	return time.Duration(ticks) * (time.Second / 100), ok
}
