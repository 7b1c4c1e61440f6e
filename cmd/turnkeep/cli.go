package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
)

// A command is a leaf of the command tree.
type command struct {
	name    string // "sessions ls"
	args    string // the positional arguments in the usage line
	summary string
	example string
	flags   func(fs *flag.FlagSet, o *options) // the command's own flags; nil for none
	nargs   int                                // positional arguments required
	run     func(ctx context.Context, a *app, o *options, args []string) error
}

// options are the flags of every command, and those of a few.
type options struct {
	db     string
	tenant string
	json   bool

	user    string
	limit   int
	after   string
	session string
	out     string
	force   bool
	yes     bool
	idle    string
	from    string
	to      string
	workers int
}

// commands is the command tree, in the order help lists it.
var commands = []*command{
	migrateStatusCmd, migratePlanCmd, migrateUpCmd,
	sessionsLsCmd, sessionsShowCmd, sessionsExportCmd, sessionsImportCmd, sessionsRmCmd,
	usersDeleteCmd, expireCmd, searchCmd, statsCmd, copyCmd,
}

// dispatch finds the command args name and runs it.
func dispatch(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		a.help(a.stderr, "")
		return usagef("", "no command given")
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		a.help(a.stdout, strings.Join(args[1:], " "))
		return nil
	}
	// Two words ("sessions ls") or one ("stats").
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c.exec(ctx, a, args[len(words):])
		}
	}
	prefix := args[0]
	var group []*command
	for _, c := range commands {
		if strings.HasPrefix(c.name, prefix+" ") {
			group = append(group, c)
		}
	}
	if len(group) == 0 {
		return usagef("turnkeep", "unknown command %q", prefix)
	}
	if len(args) > 1 && (args[1] == "-h" || args[1] == "--help" || args[1] == "-help") {
		a.help(a.stdout, prefix)
		return nil
	}
	a.help(a.stderr, prefix)
	if len(args) == 1 {
		return usagef("", "%s: missing subcommand", prefix)
	}
	return usagef("", "%s: unknown subcommand %q", prefix, args[1])
}

// help lists the commands starting with prefix ("" for all).
func (a *app) help(w io.Writer, prefix string) {
	fmt.Fprintln(w, "Usage: turnkeep COMMAND [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		if prefix == "" || c.name == prefix || strings.HasPrefix(c.name, prefix+" ") {
			fmt.Fprintf(w, "  %-34s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Every command takes --db URL (or TURNKEEP_DB_URL), --tenant NAME and --json;")
	fmt.Fprintln(w, "'turnkeep COMMAND --help' shows its flags and an example.")
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 failure, 2 usage or invalid input, 3 not found, 4 database error.")
}

// exec parses the command's flags, which may come before, between or
// after its arguments, and runs it.
func (c *command) exec(ctx context.Context, a *app, args []string) error {
	var o options
	fs := flag.NewFlagSet("turnkeep "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if c != copyCmd {
		fs.StringVar(&o.db, "db", "", "database `URL`: sqlite:///relative.db, sqlite:////absolute.db, postgres://… (default $TURNKEEP_DB_URL)")
		fs.StringVar(&o.tenant, "tenant", "", "the tenant to work in (default: the default tenant, \"\")")
	}
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	if c.flags != nil {
		c.flags(fs, &o)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(a.stdout, fs)
				return errHelp
			}
			return usagef("turnkeep "+c.name, "%s: %v", c.name, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != c.nargs {
		what := "no arguments"
		if c.nargs > 0 {
			what = c.args
		}
		return usagef("turnkeep "+c.name, "%s: want %s, got %d argument(s)", c.name, what, len(pos))
	}
	if c != copyCmd && o.db == "" {
		o.db = a.getenv("TURNKEEP_DB_URL")
	}
	return c.run(ctx, a, &o, pos)
}

func (c *command) usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: turnkeep %s [flags]\n\n%s\n\nExample:\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	for _, line := range strings.Split(strings.TrimSpace(c.example), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}
