package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// A search over memory.MaxSearchTerms distinct words is invalid input
// (exit 2, naming the limit); one at the limit runs.
func TestSearchQueryLimits(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		seed(t, url)
		var words []string
		for i := range memory.MaxSearchTerms + 1 {
			words = append(words, fmt.Sprintf("w%d", i))
		}
		r := run(t, "", "search", strings.Join(words, " "), "--db", url).want(t, exitUsage)
		require.Contains(t, r.stderr, "invalid query")
		require.Contains(t, r.stderr, fmt.Sprint(memory.MaxSearchTerms))
		r = run(t, "", "search", strings.Join(words[:memory.MaxSearchTerms], " "), "--db", url).want(t, 0)
		require.Contains(t, r.stdout, "(no matches)")
		r = run(t, "", "search", "--help").want(t, 0)
		require.Contains(t, r.stdout+r.stderr, fmt.Sprintf("at most %d distinct words", memory.MaxSearchTerms))
	})
}
