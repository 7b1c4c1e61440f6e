package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProgressETA: the time left is the work left over the rate so far,
// on an injected clock.
func TestProgressETA(t *testing.T) {
	for _, tc := range []struct {
		name      string
		total     int64
		done      int64
		elapsed   time.Duration
		wantETA   string
		wantStart string
	}{
		{"a quarter in 5s", 100, 25, 5 * time.Second, "ETA 15s", "copied 25/100 turns (25.0%), 5 turns/s"},
		{"a tenth in a minute", 1000, 100, time.Minute, "ETA 9m0s", "copied 100/1000 turns (10.0%), 2 turns/s"},
		{"done", 10, 10, time.Second, "ETA 0s", "copied 10/10 turns (100.0%)"},
		{"nothing yet", 10, 0, time.Second, "ETA -", "copied 0/10 turns (0.0%)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			clock := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			p := newProgress(&buf, false, "turns", tc.total)
			p.now = func() time.Time { return clock }
			p.start = clock
			clock = clock.Add(tc.elapsed)
			p.add(tc.done) // due: the first line
			line := buf.String()
			require.Contains(t, line, tc.wantStart)
			require.Truef(t, strings.HasSuffix(line, tc.wantETA+"\n"), "got %q; want it to end in %q", line, tc.wantETA)
		})
	}
}

func TestPlural(t *testing.T) {
	require.Equal(t, "0 sessions", plural(0, "session"))
	require.Equal(t, "1 session", plural(1, "session"))
	require.Equal(t, "2 sessions", plural(int64(2), "session"))
}

func TestVersionOf(t *testing.T) {
	require.Equal(t, "v1.2.3", versionOf(&debug.BuildInfo{Main: debug.Module{Path: "github.com/turnkeep/turnkeep", Version: "v1.2.3"}}, true))
	require.Equal(t, "(devel)", versionOf(&debug.BuildInfo{}, true))
	require.Equal(t, "(devel)", versionOf(nil, false))
}

func TestWrap(t *testing.T) {
	require.Equal(t, []string{"one two", "three", "four"}, wrap("one two\nthree four", 9))
	require.Equal(t, []string{"a", "longerthanwidth", "b"}, wrap("a longerthanwidth b", 5))
	require.Equal(t, []string{""}, wrap("", 10))
}
