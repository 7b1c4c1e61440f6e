package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// bin is the command, genBin the copy test's generator (testdata/gen),
// built once by TestMain, without -race whatever the test runs with.
var bin, genBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "turnkeep-cmd")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "turnkeep")
	genBin = filepath.Join(dir, "gen")
	for _, b := range [][2]string{{bin, "."}, {genBin, "./testdata/gen"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b[1], err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the command as a user would, with stdin (not a terminal).
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "TURNKEEP_DB_URL=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		r.code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return r
}

// want checks the exit code, and that stderr is one line when it failed.
func (r result) want(t *testing.T, code int) result {
	t.Helper()
	require.Equal(t, code, r.code, "exit code; stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	if code != 0 && code != exitUsage {
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "want a one-line error, got %q", r.stderr)
	}
	return r
}

// seed stores conversations through the library: in the default tenant
// s1 (owned by ada, with a tool call) and s2 (ada's), in acme a1 (bob's).
func seed(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	db, err := dataflow.Open(ctx, url)
	require.NoError(t, err)
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db)
	require.NoError(t, err)
	m, err := memory.NewPersistentBufferMemory(b)
	require.NoError(t, err)
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s1", User: "ada", Title: "Arithmetic", Metadata: map[string]any{"channel": "web"}}))
	ts := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{ID: "t1", Timestamp: ts, Messages: []memory.Message{
		{Role: memory.RoleUser, Content: "What is 6*7?", Name: "ada"},
		{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: "call-1", Name: "calculator", Arguments: `{"expression":"6*7"}`}}},
		{Role: memory.RoleTool, ToolCallID: "call-1", Content: "42"},
		{Role: memory.RoleAssistant, Content: "It is 42."},
	}}))
	require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{ID: "t2", Timestamp: ts.Add(time.Minute), User: "thanks, pineapple", Agent: "You're welcome."}))
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s2", User: "ada"}))
	require.NoError(t, m.SaveTurn(ctx, "s2", memory.Turn{User: "hello", Agent: "hi"}))
	acme := m.ForTenant("acme")
	require.NoError(t, acme.CreateSession(ctx, memory.SessionInfo{ID: "a1", User: "bob"}))
	require.NoError(t, acme.SaveTurn(ctx, "a1", memory.Turn{User: "acme pineapple", Agent: "ok"}))
}

func TestHelpAndUsage(t *testing.T) {
	r := run(t, "", "help").want(t, 0)
	for _, c := range commands {
		require.Contains(t, r.stdout, c.name)
	}
	for _, c := range commands {
		args := append(strings.Fields(c.name), "--help")
		r := run(t, "", args...).want(t, 0)
		require.Contains(t, r.stdout, "Example:\n  turnkeep "+strings.Fields(c.name)[0], c.name)
		require.Contains(t, r.stdout, "-json", c.name)
	}
	run(t, "", "sessions", "--help").want(t, 0)
	run(t, "").want(t, exitUsage)
	run(t, "", "bogus").want(t, exitUsage)
	run(t, "", "sessions").want(t, exitUsage)
	run(t, "", "sessions", "frob").want(t, exitUsage)
	run(t, "", "sessions", "show").want(t, exitUsage)               // no ID
	run(t, "", "sessions", "ls", "--limit", "x").want(t, exitUsage) // bad flag value
	r = run(t, "", "sessions", "ls").want(t, exitUsage)             // no database
	require.Contains(t, r.stderr, "TURNKEEP_DB_URL")
	r = run(t, "", "stats", "--db", "oracle://x").want(t, exitUsage)
	require.Contains(t, r.stderr, "unknown scheme")
	r = run(t, "", "stats", "--db", "sqlite:///"+filepath.Join(t.TempDir(), "none.db")).want(t, exitNotFound)
	require.Contains(t, r.stderr, "no SQLite database")
	r = run(t, "", "stats", "--db", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2").want(t, exitDatabase)
	require.Contains(t, r.stderr, "open database")
}

func TestCommands(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		db := []string{"--db", url}
		with := func(args ...string) []string { return append(args, db...) }

		// migrate: status and plan change nothing; up creates the tables.
		if d.Name == "sqlite" {
			run(t, "", with("migrate", "status")...).want(t, exitNotFound) // no file yet, and none made
			path, _ := sqlitePath(url)
			require.NoError(t, os.WriteFile(path, nil, 0o600))
		}
		r := run(t, "", with("migrate", "status")...).want(t, exitFailure) // not up to date
		require.Regexp(t, `turnkeep_sessions\s+missing`, r.stdout)
		r = run(t, "", with("migrate", "plan")...).want(t, 0)
		require.Contains(t, r.stdout, "CREATE TABLE IF NOT EXISTS")
		run(t, "", with("migrate", "plan")...).want(t, 0) // still missing: plan changed nothing
		r = run(t, "", with("sessions", "ls")...).want(t, exitDatabase)
		require.Contains(t, r.stderr, "migrate up")
		r = run(t, "", with("migrate", "up")...).want(t, 0)
		require.Contains(t, r.stdout, appliedCount(d.Name))
		r = run(t, "", with("migrate", "up")...).want(t, 0)
		require.Contains(t, r.stdout, "nothing applied")
		r = run(t, "", with("migrate", "status", "--json")...).want(t, 0)
		var status []tableStatus
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &status))
		require.Len(t, status, 6) // 3 tables, the search index, the two data upgrades
		for _, s := range status {
			require.Equal(t, "up to date", s.Status)
		}
		r = run(t, "", with("migrate", "plan")...).want(t, 0)
		require.Contains(t, r.stdout, "nothing to do")

		seed(t, url)

		// sessions ls: table, JSON, owner, tenant, paging.
		r = run(t, "", with("sessions", "ls")...).want(t, 0)
		require.Contains(t, r.stdout, "ID")
		require.Contains(t, r.stdout, "Arithmetic")
		require.NotContains(t, r.stdout, "a1")
		r = run(t, "", with("sessions", "ls", "--tenant", "acme", "--user", "bob")...).want(t, 0)
		require.Contains(t, r.stdout, "a1")
		r = run(t, "", with("sessions", "ls", "--limit", "1", "--json")...).want(t, 0)
		var page struct {
			Sessions []sessionJSON `json:"sessions"`
			Next     string        `json:"next"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &page))
		require.Len(t, page.Sessions, 1)
		require.NotEmpty(t, page.Next)
		first := page.Sessions[0].ID
		r = run(t, "", with("sessions", "ls", "--limit", "1", "--json", "--after", page.Next)...).want(t, 0)
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &page))
		require.Len(t, page.Sessions, 1)
		require.NotEqual(t, first, page.Sessions[0].ID)
		require.Empty(t, page.Next)
		run(t, "", with("sessions", "ls", "--after", "garbage")...).want(t, exitUsage)
		run(t, "", with("sessions", "ls", "--limit", "0")...).want(t, exitUsage)

		// sessions show: roles, tool calls, results, times.
		r = run(t, "", with("sessions", "show", "s1")...).want(t, 0)
		for _, want := range []string{"session s1", "user ada", `"Arithmetic"`, "2 turns", "2026-11-30 09:00:00Z · turn t1",
			"user ada: What is 6*7?", `assistant: → calculator({"expression":"6*7"}) [call-1]`, "tool ← call-1: 42",
			"assistant: It is 42.", "user: thanks, pineapple"} {
			require.Contains(t, r.stdout, want)
		}
		r = run(t, "", with("sessions", "show", "nope")...).want(t, exitNotFound)
		require.Contains(t, r.stderr, "session not found")
		run(t, "", with("sessions", "show", "a1")...).want(t, exitNotFound) // another tenant's
		run(t, "", with("sessions", "show", "a1", "--tenant", "acme")...).want(t, 0)
		r = run(t, "", with("sessions", "show", "s1", "--json")...).want(t, 0)
		require.Equal(t, 3, strings.Count(r.stdout, "\n"))

		// export to stdout and to a file; an unknown session writes no file.
		r = run(t, "", with("sessions", "export", "s1")...).want(t, 0)
		export := r.stdout
		require.Contains(t, export, `"format":"turnkeep.session/1"`)
		dir := t.TempDir()
		file := filepath.Join(dir, "s1.jsonl")
		run(t, "", with("sessions", "export", "s1", "-o", file)...).want(t, 0)
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		require.Equal(t, export, string(data))
		run(t, "", with("sessions", "export", "nope", "-o", filepath.Join(dir, "nope.jsonl"))...).want(t, exitNotFound)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "a failed export left a file")

		// import: into another tenant, from a file and from stdin, twice.
		r = run(t, "", with("sessions", "import", file, "--tenant", "copy")...).want(t, 0)
		require.Contains(t, r.stdout, "imported session s1: 2 turns")
		r = run(t, export, with("sessions", "import", "-", "--tenant", "copy")...).want(t, 0)
		require.Contains(t, r.stdout, "imported session s1: 2 turns")
		r = run(t, "", with("sessions", "export", "s1", "--tenant", "copy")...).want(t, 0)
		require.Equal(t, stripTimes(export), stripTimes(r.stdout))
		run(t, "", with("sessions", "import", filepath.Join(dir, "missing.jsonl"))...).want(t, exitNotFound)
		bad := export + "{not json\n"
		r = run(t, bad, with("sessions", "import", "-", "--tenant", "bad")...).want(t, exitUsage)
		require.Contains(t, r.stderr, "line 4")
		run(t, "", with("sessions", "show", "s1", "--tenant", "bad")...).want(t, exitNotFound) // nothing stored

		// search.
		r = run(t, "", with("search", "pineapple")...).want(t, 0)
		require.Contains(t, r.stdout, "s1")
		require.NotContains(t, r.stdout, "a1")
		r = run(t, "", with("search", "pineapple", "--tenant", "acme", "--json")...).want(t, 0)
		var hits []map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &hits))
		require.Len(t, hits, 1)
		require.Equal(t, "a1", hits[0]["session"])
		r = run(t, "", with("search", "zebra")...).want(t, 0)
		require.Contains(t, r.stdout, "(no matches)")

		// stats.
		r = run(t, "", with("stats", "--json")...).want(t, 0)
		var stats map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &stats))
		require.EqualValues(t, 3, stats["tenant_count"]) // "", acme, copy
		require.EqualValues(t, 4, stats["sessions"])
		require.EqualValues(t, 6+2+2+6, stats["messages"]) // s1, s2, acme a1, copy s1
		require.Greater(t, stats["database_bytes"].(float64), 0.0)
		r = run(t, "", with("stats")...).want(t, 0)
		require.Contains(t, r.stdout, "(default)")
		require.Contains(t, r.stdout, "TOTAL")

		// sessions rm.
		r = run(t, "", with("sessions", "rm", "s1", "--tenant", "copy")...).want(t, 0)
		require.Contains(t, r.stdout, "removed session s1 (2 turns)")
		run(t, "", with("sessions", "rm", "s1", "--tenant", "copy")...).want(t, exitNotFound)
		run(t, "", with("sessions", "rm", strings.Repeat("x", 5000))...).want(t, exitUsage) // an invalid ID

		// users delete: refused without a terminal or --yes; then done.
		r = run(t, "y\n", with("users", "delete", "ada")...).want(t, exitUsage)
		require.Contains(t, r.stderr, "--yes")
		run(t, "", with("sessions", "show", "s1")...).want(t, 0) // nothing deleted
		r = run(t, "", with("users", "delete", "ada", "--yes")...).want(t, 0)
		require.Contains(t, r.stdout, "deleted user ada: 2 sessions, 8 messages")
		run(t, "", with("users", "delete", "ada", "--yes")...).want(t, exitNotFound)
		run(t, "", with("sessions", "show", "s1")...).want(t, exitNotFound)

		// expire.
		run(t, "", with("expire")...).want(t, exitUsage)
		run(t, "", with("expire", "--idle", "soon")...).want(t, exitUsage)
		r = run(t, "", with("expire", "--idle", "90d", "--tenant", "acme")...).want(t, 0)
		require.Contains(t, r.stdout, "expired 0 sessions")
		time.Sleep(20 * time.Millisecond)
		r = run(t, "", with("expire", "--idle", "10ms", "--tenant", "acme", "--json", "--yes")...).want(t, 0)
		require.Contains(t, r.stdout, `"sessions": 1`)
		run(t, "", with("sessions", "show", "a1", "--tenant", "acme")...).want(t, exitNotFound)
	})
}

// stripTimes drops the session line's updated_at and created_at, which an
// import sets anew.
func stripTimes(export string) string {
	lines := strings.SplitN(export, "\n", 2)
	var head map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &head); err == nil {
		delete(head, "created_at")
		delete(head, "updated_at")
		b, _ := json.Marshal(head)
		lines[0] = string(b)
	}
	return strings.Join(lines, "\n")
}

func TestParseIdle(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{{"90d", 90 * 24 * time.Hour}, {"36h", 36 * time.Hour}, {"1d12h", 36 * time.Hour}, {"30m", 30 * time.Minute}} {
		got, err := parseIdle(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
	for _, in := range []string{"", "d", "-1d", "0d", "x", "1dd", "1.5d", "-5h"} {
		_, err := parseIdle(in)
		require.Error(t, err, "%q", in)
	}
}

func TestMigrateUpRefusesDestructive(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		seed(t, url)
		ctx := context.Background()
		db, err := dataflow.Open(ctx, url)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `ALTER TABLE turnkeep_sessions ADD COLUMN legacy TEXT`)
		require.NoError(t, err)
		require.NoError(t, db.Close())

		r := run(t, "", "migrate", "plan", "--db", url).want(t, 0)
		require.Contains(t, r.stdout, "-- destructive")
		r = run(t, "", "migrate", "up", "--db", url).want(t, exitFailure)
		require.Contains(t, r.stderr, "drop column turnkeep_sessions.legacy")
		r = run(t, "", "migrate", "plan", "--db", url).want(t, 0)
		require.Contains(t, r.stdout, "-- destructive") // still there: nothing applied
		// A column added behind the migrator's back, the model unchanged:
		// the history says up to date, so package migrate does not drop it
		// even when forced; up says so instead of claiming success.
		r = run(t, "", "migrate", "up", "--db", url, "--force").want(t, exitFailure)
		require.Contains(t, r.stderr, "not applied: drop column turnkeep_sessions.legacy")
		run(t, "", "sessions", "show", "s1", "--db", url).want(t, 0)
	})
}

// appliedCount is what a first `migrate up` reports: 3 tables, their
// indexes (7 on PostgreSQL and SQLite, the forks' two partial ones
// included: their budget windows read no index) and the search index,
// which on SQLite is its FTS5 table, the statement that turns on its
// secure-delete option, and the queue of messages to index with its
// trigger. MySQL's search has no index of its own, and it has no partial
// indexes (the forks' two index every row): 3 tables and their 8 indexes.
func appliedCount(dialect string) string {
	switch dialect {
	case "pg":
		return "11 statements applied"
	case "mysql":
		return "11 statements applied"
	}
	return "14 statements applied"
}
