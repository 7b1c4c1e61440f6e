package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"time"
)

// progress reports how far a copy got: on a terminal one line redrawn in
// place (a bar, the rate and the time left), elsewhere a plain line every
// interval. It is safe for concurrent use.
type progress struct {
	w        io.Writer
	tty      bool
	unit     string
	total    int64
	start    time.Time
	interval time.Duration
	now      func() time.Time

	mu       sync.Mutex // protects done, last and lastDone
	done     int64
	last     time.Time // of the last line written
	lastDone int64     // done at the last line
}

func newProgress(w io.Writer, tty bool, unit string, total int64) *progress {
	interval := time.Second
	if tty {
		interval = 100 * time.Millisecond
	}
	p := &progress{w: w, tty: tty, unit: unit, total: total, interval: interval, now: time.Now}
	p.start = p.now()
	return p
}

// add counts n more units done, and writes a line if one is due: after
// the interval, or, without a terminal, also after each 5% of the total.
func (p *progress) add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	t := p.now()
	if t.Sub(p.last) >= p.interval || (!p.tty && (p.done-p.lastDone)*20 >= p.total) {
		p.last, p.lastDone = t, p.done
		p.write(t)
	}
}

// finish writes the last line, and ends the redrawn one.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.write(p.now())
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) write(t time.Time) {
	elapsed := t.Sub(p.start)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.done) / elapsed.Seconds()
	}
	eta := "-"
	if left := float64(p.total-p.done) / rate * float64(time.Second); rate > 0 && p.total >= p.done && left < math.MaxInt64 {
		eta = time.Duration(left).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = min(100, 100*float64(p.done)/float64(p.total))
	}
	if !p.tty {
		fmt.Fprintf(p.w, "copied %d/%d %s (%.1f%%), %.0f %s/s, ETA %s\n", p.done, p.total, p.unit, pct, rate, p.unit, eta)
		return
	}
	const width = 30
	fill := int(pct / 100 * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	if fill < width {
		bar = bar[:fill] + ">" + bar[fill+1:]
	}
	fmt.Fprintf(p.w, "\r[%s] %5.1f%%  %d/%d %s  %.0f/s  ETA %-8s", bar, pct, p.done, p.total, p.unit, rate, eta)
}
