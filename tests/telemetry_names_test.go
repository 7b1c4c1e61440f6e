package tests

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// readmeTelemetry returns the names in the first column of docs/operations.md's
// telemetry table, by kind ("span", or a metric's instrument kind).
func readmeTelemetry(t *testing.T) (spans, metrics []string) {
	t.Helper()
	data, err := os.ReadFile("../docs/operations.md")
	require.NoError(t, err)
	text := string(data)
	begin := strings.Index(text, "<!-- telemetry-table:begin -->")
	end := strings.Index(text, "<!-- telemetry-table:end -->")
	require.Truef(t, begin >= 0 && end > begin, "docs/operations.md has no telemetry-table markers")
	row := regexp.MustCompile("^\\| `([^`]+)` \\| (span|histogram|counter|gauge|updowncounter) \\|")
	for _, line := range strings.Split(text[begin:end], "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if m[2] == "span" {
			spans = append(spans, m[1])
		} else {
			metrics = append(metrics, m[1])
		}
	}
	slices.Sort(spans)
	slices.Sort(metrics)
	return spans, metrics
}

// The telemetry table of docs/operations.md (linked from the README) lists exactly the spans and metrics that
// the code emits, on every dialect.
func TestTelemetryNamesMatchREADME(t *testing.T) {
	wantSpans, wantMetrics := readmeTelemetry(t)
	require.NotEmpty(t, wantSpans)
	require.NotEmpty(t, wantMetrics)
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		o := newObserved(t, d.URL(t))
		runOperations(t, o.mem)
		var spans []string
		for _, s := range o.spans.Ended() {
			spans = append(spans, s.Name())
		}
		slices.Sort(spans)
		spans = slices.Compact(spans)
		var metrics []string
		for name := range metricsByName(t, o.reader) {
			metrics = append(metrics, name)
		}
		slices.Sort(metrics)
		assert.Equal(t, wantSpans, spans, "span names: docs/operations.md's table; the code's")
		assert.Equal(t, wantMetrics, metrics, "metric names: docs/operations.md's table; the code's")
	})
}
