//go:build race

package mcp_test

// raceEnabled: under the race detector every call is many times slower,
// and unevenly, so the speed test does not run under it.
const raceEnabled = true
