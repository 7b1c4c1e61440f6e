package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A file the store refuses (a message ID repeated across two turns)
// exits 2 and stores nothing: 'sessions show' finds no session.
func TestSessionsImportAllOrNothing(t *testing.T) {
	db := "sqlite:///" + filepath.Join(t.TempDir(), "a.db")
	file := `{"format":"turnkeep.session/1","id":"s1","turn_count":2,"created_at":"2026-12-01T10:00:00Z","updated_at":"2026-12-01T10:00:00Z"}
{"id":"t1","timestamp":"2026-12-01T10:00:01Z","messages":[{"id":"m1","role":"user","content":"first"}]}
{"id":"t2","timestamp":"2026-12-01T10:00:02Z","messages":[{"id":"m1","role":"user","content":"second"}]}
`
	r := run(t, file, "sessions", "import", "-", "--db", db).want(t, exitUsage)
	assert.Contains(t, r.stderr, "line 3")
	r = run(t, "", "sessions", "show", "s1", "--db", db).want(t, exitNotFound)
	assert.False(t, strings.Contains(r.stdout, "t1"), "turn t1 was stored: %s", r.stdout)

	fixed := strings.Replace(file, `"id":"m1","role":"user","content":"second"`, `"id":"m2","role":"user","content":"second"`, 1)
	run(t, fixed, "sessions", "import", "-", "--db", db).want(t, 0)
	run(t, fixed, "sessions", "import", "-", "--db", db).want(t, 0) // again: no change
	r = run(t, "", "sessions", "show", "s1", "--db", db, "--json").want(t, 0)
	assert.Contains(t, r.stdout, `"turn_count":2`)
}
