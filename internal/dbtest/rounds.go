package dbtest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Rounds times n sides of a benchmark in alternating rounds: round r runs
// every side once, starting with side r mod n, through run(i, r), which
// returns side i's time per operation in that round. It returns each
// side's times and its ratios to side 0's time in the same round, one per
// round.
func Rounds(rounds, n int, run func(i, r int) float64) (times, ratios [][]float64) {
	times, ratios = make([][]float64, n), make([][]float64, n)
	for r := range rounds {
		took := make([]float64, n)
		for k := range n {
			i := (k + r) % n // each round starts with the next side
			took[i] = run(i, r)
		}
		for i := range n {
			times[i] = append(times[i], took[i])
			ratios[i] = append(ratios[i], took[i]/took[0])
		}
	}
	return times, ratios
}

// ReportRounds reports what Rounds measured as b's metrics: each side's
// median time ("<name>-us/save") and, but for side 0, the median of its
// ratios ("<name>/<base>", base being side 0's name). It returns one line
// per side, name, median time, median ratio and the least and largest
// ratio, for one log line (a benchmark's log is cut at ten lines); more
// is appended to a side's line when it returns non-empty.
func ReportRounds(b *testing.B, names []string, times, ratios [][]float64, more func(i int) string) string {
	metric := strings.NewReplacer(" ", "-", "+", "plus", ",", "", ".", "")
	width := 0
	for _, n := range names {
		width = max(width, len([]rune(n)))
	}
	var out strings.Builder
	for i, name := range names {
		b.ReportMetric(Median(times[i]), metric.Replace(name)+"-us/save")
		if i > 0 {
			b.ReportMetric(Median(ratios[i]), metric.Replace(name)+"/"+metric.Replace(names[0]))
		}
		fmt.Fprintf(&out, "\n%-*s %7.1f µs/save  %.2fx %s (%.2f–%.2fx)", width, name, Median(times[i]),
			Median(ratios[i]), names[0], slices.Min(ratios[i]), slices.Max(ratios[i]))
		if more != nil {
			if m := more(i); m != "" {
				out.WriteString("  " + m)
			}
		}
	}
	return out.String()
}
