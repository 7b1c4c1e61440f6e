package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

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

// dispatch finds the command args name and runs it. The global flags may
// come before the command too: they are handed on to its own flag set.
func dispatch(ctx context.Context, a *app, args []string) error {
	globals, args, showVersion, err := splitGlobals(args)
	if err != nil {
		return err
	}
	if showVersion {
		fmt.Fprintf(a.stdout, "turnkeep %s\n", version())
		return nil
	}
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
			return c.exec(ctx, a, append(globals, args[len(words):]...))
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

// splitGlobals takes the global flags (--db, --tenant, --json, and
// --version) from the front of args, before the command: it returns them
// as arguments for the command's flag set, the rest of args, and whether
// --version was asked for.
func splitGlobals(args []string) (globals, rest []string, showVersion bool, err error) {
	for len(args) > 0 {
		arg := args[0]
		if !strings.HasPrefix(arg, "-") || arg == "-" || arg == "--" {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-"), "=")
		switch name {
		case "version":
			showVersion = true
		case "json":
			globals = append(globals, arg)
		case "db", "tenant":
			globals = append(globals, arg)
			if !hasValue {
				if len(args) < 2 {
					return nil, nil, false, usagef("turnkeep", "flag needs an argument: %s", arg)
				}
				globals = append(globals, args[1])
				args = args[1:]
			}
		case "h", "help":
			return globals, args, showVersion, nil
		default:
			return nil, nil, false, usagef("turnkeep", "unknown flag %s before the command (there: --db, --tenant, --json, --version)", arg)
		}
		args = args[1:]
	}
	return globals, args, showVersion, nil
}

// helpWidth is the width help text is wrapped to, and summaryColumn where
// the summaries of the command list start.
const (
	helpWidth     = 80
	summaryColumn = 24
)

// help lists the commands starting with prefix ("" for all).
func (a *app) help(w io.Writer, prefix string) {
	fmt.Fprintln(w, "Usage: turnkeep [--db URL] [--tenant NAME] [--json] COMMAND [flags]")
	fmt.Fprintln(w, "       turnkeep --version")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands {
		if prefix == "" || c.name == prefix || strings.HasPrefix(c.name, prefix+" ") {
			lines := wrap(c.summary, helpWidth-summaryColumn)
			fmt.Fprintf(w, "  %-*s %s\n", summaryColumn-3, strings.TrimSpace(c.name+" "+c.args), lines[0])
			for _, l := range lines[1:] {
				fmt.Fprintf(w, "%*s%s\n", summaryColumn, "", l)
			}
		}
	}
	fmt.Fprintln(w)
	for _, l := range wrap("Every command takes --db URL (default $TURNKEEP_DB_URL; for copy, the source) and --json, "+
		"and every one but copy --tenant NAME, before or after the command. "+
		"'turnkeep COMMAND --help' shows its flags and an example. "+
		"Exit codes: 0 ok, 1 failure, 2 usage or invalid input, 3 not found, 4 database error.", helpWidth) {
		fmt.Fprintln(w, l)
	}
}

// wrap splits text into lines of at most width runes, breaking between
// words (a word longer than width gets a line of its own); the line breaks
// text holds are spaces to it.
func wrap(text string, width int) []string {
	var (
		lines []string
		line  strings.Builder
	)
	for _, word := range strings.Fields(text) {
		n, m := utf8.RuneCountInString(line.String()), utf8.RuneCountInString(word)
		if n > 0 && n+1+m > width {
			lines = append(lines, line.String())
			line.Reset()
		} else if n > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(word)
	}
	return append(lines, line.String())
}

// exec parses the command's flags, which may come before, between or
// after its arguments, and runs it.
func (c *command) exec(ctx context.Context, a *app, args []string) error {
	var o options
	fs := flag.NewFlagSet("turnkeep "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if c == copyCmd {
		fs.StringVar(&o.db, "db", "", "the source database `URL`, as --from (default $TURNKEEP_DB_URL)")
	} else {
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
		return usagef("turnkeep "+c.name, "%s: want %s, got %s", c.name, what, plural(len(pos), "argument"))
	}
	if c != copyCmd && o.db == "" {
		o.db = a.getenv("TURNKEEP_DB_URL")
	}
	return c.run(ctx, a, &o, pos)
}

func (c *command) usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: turnkeep %s [flags]\n\n%s\n\nExample:\n", strings.TrimSpace(c.name+" "+c.args), strings.Join(wrap(c.summary, helpWidth), "\n"))
	for _, line := range strings.Split(strings.TrimSpace(c.example), "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprintln(w, "\nFlags:")
	// As flag.PrintDefaults, with each usage wrapped under its flag.
	const indent = "        "
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  -%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintln(w)
		switch f.DefValue {
		case "", "false", "0":
		default:
			usage += fmt.Sprintf(" (default %v)", f.DefValue)
		}
		for _, l := range wrap(usage, helpWidth-len(indent)) {
			fmt.Fprintf(w, "%s%s\n", indent, l)
		}
	})
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}
