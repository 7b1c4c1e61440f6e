package main

// Issue 16, item 11: the command's rough edges, each run as a user runs
// the command (a subprocess, see main_test.go).

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// runClosedStdout runs the command with a stdout whose reader is gone, as
// in `turnkeep … | head -1` once head has exited.
func runClosedStdout(t *testing.T, args ...string) result {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "TURNKEEP_DB_URL=")
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &errb
	err = cmd.Run()
	res := result{stderr: errb.String()}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		res.code = ee.ExitCode() // -1 when a signal (SIGPIPE) killed it
	} else {
		require.NoError(t, err)
	}
	return res
}

// TestCopyProgressOnStderr: progress goes to stderr, so a reader of stdout
// that went away (| head) does not kill the copy, which completes.
func TestCopyProgressOnStderr(t *testing.T) {
	src, dst := dbtest.SQLiteURL(t), dbtest.SQLiteURL(t)
	seed(t, src)
	r := runClosedStdout(t, "copy", "--from", src, "--to", dst)
	require.Equal(t, 0, r.code, "exit code (-1: killed by a signal); stderr:\n%s", r.stderr)
	require.Contains(t, r.stderr, "copied 4/4 turns", "progress on stderr")
	require.NotContains(t, r.stderr, "goroutine")
	a := run(t, "", "stats", "--db", src, "--json").want(t, 0).stdout
	b := run(t, "", "stats", "--db", dst, "--json").want(t, 0).stdout
	require.Equal(t, dropSize(a), dropSize(b), "the copy completed")

	// With stdout read, it holds the result and no progress line.
	r = run(t, "", "copy", "--from", src, "--to", dbtest.SQLiteURL(t)).want(t, 0)
	require.NotContains(t, r.stdout, "copied 4/4")
	require.Contains(t, r.stdout, "copied 3 sessions")
	require.Contains(t, r.stderr, "copied 4/4 turns")
}

// TestClosedStdoutExitsQuietly: ls, search, export, show and stats into a
// pipe nobody reads end with exit 0 and nothing on stderr, not killed by
// SIGPIPE and never with a stack.
func TestClosedStdoutExitsQuietly(t *testing.T) {
	url := dbtest.SQLiteURL(t)
	seed(t, url)
	for _, args := range [][]string{
		{"sessions", "ls"},
		{"sessions", "ls", "--json"},
		{"search", "pineapple"},
		{"sessions", "export", "s1"},
		{"sessions", "show", "s1"},
		{"stats"},
	} {
		r := runClosedStdout(t, append(args, "--db", url)...)
		require.Equal(t, 0, r.code, "%v: exit code (-1: killed by a signal); stderr:\n%s", args, r.stderr)
		require.Empty(t, r.stderr, "%v", args)
	}
}

// TestMigrateSearchIndexStatements: plan prints, and up applies and
// reports, the search index's statement (FTS5 on SQLite, GIN on
// PostgreSQL); status lists the index, and exits 1 until all is up to date.
func TestMigrateSearchIndexStatements(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		if d.Name == "mysql" {
			t.Skip("MySQL's search has no index of its own to plan or apply: it matches the messages' search_text with LIKE (backend mysqlStore.searchStmt)")
		}
		url := d.URL(t)
		want := "CREATE VIRTUAL TABLE IF NOT EXISTS turnkeep_search USING fts5("
		index := "turnkeep_search"
		if d.Name == "pg" {
			want = "CREATE INDEX CONCURRENTLY IF NOT EXISTS turnkeep_messages_search_idx ON turnkeep_messages USING GIN ("
			index = "turnkeep_messages_search_idx"
		} else {
			path, _ := sqlitePath(url)
			require.NoError(t, os.WriteFile(path, nil, 0o600))
		}
		r := run(t, "", "migrate", "status", "--db", url).want(t, exitFailure)
		require.Regexp(t, `turnkeep_sessions\s+missing`, r.stdout)
		require.Regexp(t, index+`\s+missing`, r.stdout)
		require.Contains(t, r.stderr, "not up to date")

		r = run(t, "", "migrate", "plan", "--db", url).want(t, 0)
		require.Contains(t, r.stdout, "-- "+index+"\n"+want)
		r = run(t, "", "migrate", "up", "--db", url).want(t, 0)
		require.Contains(t, r.stdout, "applied: "+want)
		require.Contains(t, r.stdout, appliedCount(d.Name))

		r = run(t, "", "migrate", "status", "--db", url).want(t, 0)
		require.Regexp(t, index+`\s+up to date`, r.stdout)
		run(t, "", "migrate", "status", "--db", url, "--json").want(t, 0)
		r = run(t, "", "migrate", "plan", "--db", url).want(t, 0)
		require.Contains(t, r.stdout, "nothing to do")

		// The index alone missing: status says so, plan and up (re)make it.
		ctx := context.Background()
		db, err := dataflow.Open(ctx, url)
		require.NoError(t, err)
		drop := "DROP TABLE turnkeep_search"
		if d.Name == "pg" {
			drop = "DROP INDEX turnkeep_messages_search_idx"
		}
		_, err = db.ExecContext(ctx, drop)
		require.NoError(t, err)
		require.NoError(t, db.Close())
		r = run(t, "", "migrate", "status", "--db", url).want(t, exitFailure)
		require.Regexp(t, index+`\s+missing`, r.stdout)
		require.Regexp(t, `turnkeep_messages\s+up to date`, r.stdout)
		r = run(t, "", "migrate", "plan", "--db", url, "--json").want(t, 0)
		require.Contains(t, r.stdout, `"table": "`+index+`"`)
		r = run(t, "", "migrate", "up", "--db", url).want(t, 0)
		if d.Name == "pg" {
			require.Contains(t, r.stdout, "1 statement applied")
		} else {
			require.Contains(t, r.stdout, "2 statements applied") // FTS5 table, secure-delete (the queue stays)
		}
		run(t, "", "migrate", "status", "--db", url).want(t, 0)
	})
}

// TestMigratePlanNewSQLiteFile: plan on a SQLite file that does not exist
// prints the whole plan of a new database and creates no file.
func TestMigratePlanNewSQLiteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	r := run(t, "", "migrate", "plan", "--db", "sqlite:///"+path).want(t, 0)
	require.Contains(t, r.stdout, `CREATE TABLE IF NOT EXISTS "turnkeep_sessions"`)
	require.Contains(t, r.stdout, `CREATE TABLE IF NOT EXISTS "turnkeep_messages"`)
	require.Contains(t, r.stdout, "USING fts5(")
	require.Contains(t, r.stdout, "no SQLite database at "+path)
	run(t, "", "migrate", "plan", "--db", "sqlite:///"+path, "--json").want(t, 0)
	_, err := os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "plan created the file")
	run(t, "", "migrate", "status", "--db", "sqlite:///"+path).want(t, exitNotFound)
}

// TestGlobalFlagsBeforeCommand: --db, --tenant and --json go before the
// command too; copy takes --db as its source, as the help says.
func TestGlobalFlagsBeforeCommand(t *testing.T) {
	url := dbtest.SQLiteURL(t)
	seed(t, url)
	r := run(t, "", "--db", url, "--tenant", "acme", "--json", "sessions", "ls").want(t, 0)
	require.Contains(t, r.stdout, `"id": "a1"`)
	r = run(t, "", "--db="+url, "-tenant=acme", "search", "pineapple").want(t, 0)
	require.Contains(t, r.stdout, "a1")
	r = run(t, "", "--json", "stats", "--db", url).want(t, 0)
	require.Contains(t, r.stdout, `"tenant_count": 2`)
	// A flag given after the command wins, as a later one does.
	r = run(t, "", "--tenant", "acme", "sessions", "ls", "--db", url, "--tenant", "").want(t, 0)
	require.Contains(t, r.stdout, "s1")
	run(t, "", "--db").want(t, exitUsage)
	run(t, "", "--bogus", "stats", "--db", url).want(t, exitUsage)

	dst := dbtest.SQLiteURL(t)
	r = run(t, "", "copy", "--db", url, "--to", dst).want(t, 0)
	require.Contains(t, r.stdout, "copied 3 sessions")
	r = run(t, "", "--db", url, "--json", "copy", "--to", dst).want(t, 0)
	require.Contains(t, r.stdout, `"ok": true`)
	r = run(t, "", "copy", "--db", url, "--from", dst, "--to", dbtest.SQLiteURL(t)).want(t, exitUsage)
	require.Contains(t, r.stderr, "--db and --from")
}

// TestVersion: --version prints the main module's version, "(devel)" in a
// build from a checkout without one.
func TestVersion(t *testing.T) {
	r := run(t, "", "--version").want(t, 0)
	require.Regexp(t, regexp.MustCompile(`^turnkeep (\(devel\)|v\S+)\n$`), r.stdout)
}

// TestPluralsInOutput: one of a thing is "1 thing", in every message that
// counts.
func TestPluralsInOutput(t *testing.T) {
	url := dbtest.SQLiteURL(t)
	seed(t, url)
	with := func(args ...string) []string { return append(args, "--db", url) }
	run(t, "", with("sessions", "rm", "s1")...).want(t, 0)
	r := run(t, "", with("sessions", "show", "s2")...).want(t, 0)
	require.Contains(t, r.stdout, "\n1 turn · ")
	export := run(t, "", with("sessions", "export", "s2")...).want(t, 0).stdout
	r = run(t, export, with("sessions", "import", "-", "--tenant", "one")...).want(t, 0)
	require.Contains(t, r.stdout, "imported session s2: 1 turn\n")
	r = run(t, "", with("sessions", "rm", "s2", "--tenant", "one")...).want(t, 0)
	require.Contains(t, r.stdout, "removed session s2 (1 turn)\n")
	r = run(t, "", with("stats", "--tenant", "acme")...).want(t, 0)
	require.Contains(t, r.stdout, "1 tenant · ")
	r = run(t, "", with("users", "delete", "ada", "--yes")...).want(t, 0)
	require.Contains(t, r.stdout, "deleted user ada: 1 session, 2 messages\n")
	time.Sleep(1500 * time.Millisecond) // acme's session is idle for over the 1s below
	r = run(t, "", with("expire", "--idle", "1s", "--yes", "--tenant", "acme")...).want(t, 0)
	require.Contains(t, r.stdout, "expired 1 session (2 messages)")
	r = run(t, "", "sessions", "show", "a", "b").want(t, exitUsage)
	require.Contains(t, r.stderr, "got 2 arguments")
}

// TestHelpWraps: help lines fit 80 columns, and a command's summary wraps
// under its own column.
func TestHelpWraps(t *testing.T) {
	outs := []string{run(t, "", "help").want(t, 0).stdout}
	for _, c := range commands {
		outs = append(outs, run(t, "", append(strings.Fields(c.name), "--help")...).want(t, 0).stdout)
	}
	for _, out := range outs {
		for _, l := range strings.Split(out, "\n") {
			require.LessOrEqual(t, len([]rune(l)), 80, "line over 80 columns: %q", l)
		}
	}
	_, list, ok := strings.Cut(outs[0], "Commands:\n")
	require.True(t, ok)
	list, _, _ = strings.Cut(list, "\n\n")
	indent := strings.Repeat(" ", 24)
	for _, l := range strings.Split(list, "\n") {
		named := false
		for _, c := range commands {
			named = named || strings.HasPrefix(l, "  "+c.name+" ")
		}
		require.True(t, named || strings.HasPrefix(l, indent) && l[24] != ' ', "a summary line outside its column: %q", l)
	}
}

// TestExpireShortIdleConfirms: an idle time under an hour may remove
// conversations going on: expire asks, as users delete does, and refuses
// without a terminal unless --yes.
func TestExpireShortIdleConfirms(t *testing.T) {
	url := dbtest.SQLiteURL(t)
	seed(t, url)
	time.Sleep(20 * time.Millisecond)
	r := run(t, "", "expire", "--idle", "10ms", "--db", url).want(t, exitUsage)
	require.Contains(t, r.stderr, "--yes")
	run(t, "", "sessions", "show", "s1", "--db", url).want(t, 0) // nothing removed

	// On a terminal: asked; "n" removes nothing, "y" goes ahead.
	inProcess := func(answer string) (int, string) {
		var out, errb bytes.Buffer
		a := &app{stdin: strings.NewReader(answer), stdout: &out, stderr: &errb,
			getenv: func(string) string { return "" }, stdinTTY: true}
		return a.run(context.Background(), []string{"expire", "--idle", "10ms", "--db", url}), out.String() + errb.String()
	}
	code, out := inProcess("n\n")
	require.Equal(t, exitFailure, code, out)
	require.Contains(t, out, "[y/N]")
	run(t, "", "sessions", "show", "s1", "--db", url).want(t, 0)
	code, out = inProcess("y\n")
	require.Equal(t, exitOK, code, out)
	require.Contains(t, out, "expired 2 sessions")
	run(t, "", "sessions", "show", "s1", "--db", url).want(t, exitNotFound)

	// An hour or more: no question.
	run(t, "", "expire", "--idle", "1h", "--db", url, "--tenant", "acme").want(t, 0)
}
