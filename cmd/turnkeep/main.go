// Command turnkeep operates a turnkeep database: migrations, sessions,
// users, retention, search, statistics, and copying everything from one
// database to another.
//
//	go install github.com/turnkeep/turnkeep/cmd/turnkeep@latest
//	export TURNKEEP_DB_URL=sqlite:///chat.db   # or pass --db, or postgres://…
//	turnkeep migrate status
//	turnkeep sessions ls --user ada
//	turnkeep sessions show s1
//	turnkeep copy --from sqlite:///chat.db --to postgres://app@db/chat
//
// Run `turnkeep help` for every command, `turnkeep COMMAND --help` for its
// flags and an example, and `turnkeep --version` for the version. The
// global flags --db, --tenant and --json go before the command or after
// it. Output is a table for people; --json prints JSON for scripts.
// Progress and questions go to stderr; a reader of stdout that stops early
// (`| head`) ends the command quietly, never a copy midway.
//
// Only `migrate up`, `sessions import` and the destination of `copy`
// create or change the schema (additively, as the library does at first
// use). Every other command opens the database with auto-migration off,
// refuses a SQLite file that does not exist, and asks for `migrate up` when
// the tables are missing or out of date.
//
// Exit codes:
//
//	0  success
//	1  any other failure (a refused destructive migration, a schema migrate status finds not up to date,
//	   copy counts that differ, a declined confirmation)
//	2  usage: bad flags or arguments, or invalid input (a malformed URL, session ID or import file)
//	3  not found: the session, user, file or SQLite database named does not exist
//	4  database: unreachable, missing tables, a statement that failed
//
// Dependencies: the standard library's flag package with a two-level
// dispatcher (a framework such as cobra would add a dozen modules to the
// core module's graph, which every user of the library inherits, for what
// one table of commands does), and github.com/mattn/go-isatty, already in
// the module graph through modernc.org/sqlite, to tell a terminal from a
// pipe. The progress bar of copy is one line redrawn in place (progress.go)
// rather than a library for the same reason.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A reader that goes away (`turnkeep sessions ls | head -1`) makes a
	// write fail with EPIPE instead of killing the process mid-work: a
	// copy goes on, and run ends the others quietly.
	signal.Ignore(syscall.SIGPIPE)
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		stdinTTY: isTerminal(os.Stdin), stderrTTY: isTerminal(os.Stderr)}
	os.Exit(a.run(ctx, os.Args[1:]))
}

// app is one run of the command: its streams and environment.
type app struct {
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	getenv    func(string) string
	stdinTTY  bool // a person may answer a confirmation
	stderrTTY bool // progress is redrawn in place
}

// Exit codes (see the package doc).
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 2
	exitNotFound = 3
	exitDatabase = 4
)

// run runs the command line args and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	err := dispatch(ctx, a, args)
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	if errors.Is(err, syscall.EPIPE) {
		// The reader of the output stopped reading (head, less quit): what
		// it wanted it has, and it is not there to read an error.
		return exitOK
	}
	code := exitCode(err)
	fmt.Fprintf(a.stderr, "turnkeep: %s\n", oneLine(err.Error()))
	if code == exitUsage {
		if u, ok := errors.AsType[*usageError](err); ok && u.hint != "" {
			fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", u.hint)
		}
	}
	return code
}

// version is the command's version: the main module's, as the build
// recorded it ("v1.2.3" from go install …@v1.2.3), or "(devel)".
func version() string {
	info, ok := debug.ReadBuildInfo()
	return versionOf(info, ok)
}

func versionOf(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil || info.Main.Version == "" {
		return "(devel)"
	}
	return info.Main.Version
}
