package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"time"
)

// importProgress shows an import's progress on stderr: on a terminal one live
// line redrawn in place, otherwise (a log file, a CI job) a plain line
// every period, which stays readable when appended to.
type importProgress struct {
	w        io.Writer
	tally    *importTally
	terminal bool
	stopc    chan struct{}
	wg       sync.WaitGroup
}

// barRedraw is how often the live line is redrawn: often enough to look
// live, rarely enough to cost nothing.
const barRedraw = 200 * time.Millisecond

// barWidth is the bar's width in characters, inside its brackets.
const barWidth = 30

// startImportProgress starts the display; finish stops it. terminal forces the
// style (nil: a live line if w is a terminal).
func startImportProgress(w io.Writer, t *importTally, every time.Duration, terminal *bool) *importProgress {
	p := &importProgress{w: w, tally: t, stopc: make(chan struct{})}
	if terminal != nil {
		p.terminal = *terminal
	} else {
		p.terminal = isTerminal(w)
	}
	period := every
	if p.terminal {
		period = barRedraw
	}
	p.wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				p.draw()
			case <-p.stopc:
				return
			}
		}
	})
	return p
}

// finish stops the display after a last drawing, so that it ends on the
// final counts.
func (p *importProgress) finish() {
	close(p.stopc)
	p.wg.Wait()
	p.draw()
	if p.terminal {
		fmt.Fprintln(p.w)
	}
}

func (p *importProgress) draw() {
	p.tally.mu.Lock()
	done, total := p.tally.doneLocked(), p.tally.total
	rate := p.tally.rateLocked()
	enrolled, skipped, failed := p.tally.enrolled, p.tally.exists+p.tally.scanSkip, p.tally.failed
	p.tally.mu.Unlock()

	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	eta := "--"
	if rate > 0 {
		eta = formatETA(time.Duration(float64(total-done) / rate * float64(time.Second)))
	}
	if p.terminal {
		// \r and erase to the end of the line: the line may get shorter.
		fmt.Fprintf(p.w, "\r%s %d/%d %d%% %.1f photos/s ETA %s enrolled %d skipped %d failed %d\x1b[K",
			bar(frac), done, total, int(math.Floor(frac*100)), rate, eta, enrolled, skipped, failed)
		return
	}
	fmt.Fprintf(p.w, "import: %d/%d %d%% %.1f photos/s ETA %s enrolled=%d skipped=%d failed=%d\n",
		done, total, int(math.Floor(frac*100)), rate, eta, enrolled, skipped, failed)
}

// bar draws [=====>    ] for a fraction in [0, 1].
func bar(frac float64) string {
	n := int(frac * barWidth)
	n = max(0, min(n, barWidth))
	var b strings.Builder
	b.WriteByte('[')
	b.WriteString(strings.Repeat("=", n))
	if n < barWidth {
		b.WriteByte('>')
		b.WriteString(strings.Repeat(" ", barWidth-n-1))
	}
	b.WriteByte(']')
	return b.String()
}

// formatETA writes 17s, 3m05s or 2h04m.
func formatETA(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
}

// isTerminal reports whether w is a terminal (a character device), where
// redrawing a line in place works.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
