// Command turnkeep-mcp serves one user's turnkeep memory to an agent over
// the Model Context Protocol: search_memory, list_sessions, get_history and
// save_note (see package github.com/turnkeep/turnkeep/contrib/mcp).
//
//	go install github.com/turnkeep/turnkeep/contrib/mcp/cmd/turnkeep-mcp@latest
//	turnkeep-mcp --db sqlite:///chat.db --user ada                 # stdio, for an MCP client to launch
//	TURNKEEP_MCP_TOKEN=secret turnkeep-mcp --db postgres://… --user ada --http :8765
//
// Flags:
//
//	--db URL         the database (or TURNKEEP_DB_URL); sqlite:// or postgres:// or mysql://
//	--tenant T       the tenant ("" for the default)
//	--user U         the user whose sessions the agent sees; required
//	--read-only      leave save_note out: the agent only reads
//	--http ADDR      serve streamable HTTP at ADDR (path /mcp) instead of stdio;
//	                 a bare :PORT listens on the loopback interface only
//	--token T        the bearer token HTTP clients must send (or TURNKEEP_MCP_TOKEN); required with --http
//	--origin O       an Origin allowed to call over HTTP (repeatable); requests with any other Origin are refused
//	--timeout D      the deadline of one tool call (default 30s)
//
// save_note is on unless --read-only: the server is launched for one user,
// and a note is written only into that user's sessions.
//
// The command never changes the schema: it opens the database with
// auto-migration off, refuses a SQLite file that does not exist, and a
// database whose tables, search index or data upgrades are not up to date
// is an error asking for `turnkeep migrate up`.
//
// Over stdio nothing but JSON-RPC is written to stdout; diagnostics go to
// stderr. Exit codes: 0 when the client hangs up, 1 on a failure, 2 on a
// usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	sdkmcp "github.com/modelcontextprotocol/go-sdk/mcp"

	tkmcp "github.com/turnkeep/turnkeep/contrib/mcp"
)

// usageError is a bad flag or argument: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "turnkeep-mcp:", err)
		if _, ok := errors.AsType[*usageError](err); ok {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type options struct {
	db, tenant, user string
	readOnly         bool
	http, token      string
	origins          []string
	timeout          time.Duration
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("turnkeep-mcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.db, "db", os.Getenv("TURNKEEP_DB_URL"), "database `URL` (or TURNKEEP_DB_URL)")
	fs.StringVar(&o.tenant, "tenant", "", "the `tenant` (\"\" for the default)")
	fs.StringVar(&o.user, "user", "", "the `user` whose sessions the agent sees (required)")
	fs.BoolVar(&o.readOnly, "read-only", false, "leave save_note out: the agent only reads")
	fs.StringVar(&o.http, "http", "", "serve streamable HTTP at `ADDR` (path /mcp) instead of stdio; :PORT is loopback only")
	fs.StringVar(&o.token, "token", os.Getenv("TURNKEEP_MCP_TOKEN"), "bearer `token` HTTP clients must send (or TURNKEEP_MCP_TOKEN)")
	fs.Func("origin", "an `Origin` allowed over HTTP (repeatable)", func(s string) error {
		o.origins = append(o.origins, strings.TrimSuffix(s, "/"))
		return nil
	})
	fs.DurationVar(&o.timeout, "timeout", tkmcp.DefaultCallTimeout, "the deadline of one tool call")
	if err := fs.Parse(args); err != nil {
		return o, &usageError{err.Error()}
	}
	switch {
	case fs.NArg() > 0:
		return o, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	case o.db == "":
		return o, &usageError{"no database: pass --db URL or set TURNKEEP_DB_URL"}
	case o.user == "":
		return o, &usageError{"no user: pass --user, the user whose sessions the agent may see"}
	case o.http != "" && o.token == "":
		return o, &usageError{"--http needs a bearer token: pass --token or set TURNKEEP_MCP_TOKEN"}
	case o.timeout <= 0:
		return o, &usageError{"--timeout must be positive"}
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	mem, err := open(ctx, o.db)
	if err != nil {
		return err
	}
	defer mem.Close()
	srv, err := tkmcp.NewServer(mem, tkmcp.Scope{Tenant: o.tenant, User: o.user},
		tkmcp.AllowWrites(!o.readOnly), tkmcp.CallTimeout(o.timeout), tkmcp.Implementation("turnkeep-mcp", version()))
	if err != nil {
		return &usageError{err.Error()}
	}
	if o.http != "" {
		return serveHTTP(ctx, srv, o, stderr)
	}
	in := &drainingReader{r: stdin, grace: o.timeout + 5*time.Second}
	srv.AddReceivingMiddleware(in.track)
	err = srv.Run(ctx, &sdkmcp.IOTransport{Reader: io.NopCloser(in), Writer: nopWriteCloser{stdout}})
	if err == nil || errors.Is(err, io.EOF) || ctx.Err() != nil {
		return nil // the client hung up, or we were told to stop
	}
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// A drainingReader is stdin that holds back its end until the requests
// already read are answered: a client that writes its requests and closes
// its end of the pipe (a script's communicate) still gets every answer.
type drainingReader struct {
	r        io.Reader
	grace    time.Duration // the longest it holds back
	inflight atomic.Int64  // requests being handled
}

func (d *drainingReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != io.EOF {
		return n, err
	}
	// A request read just before the end may not have reached track yet:
	// the end is passed on once nothing has been in flight for a while.
	deadline := time.Now().Add(d.grace)
	for idle := 0; idle < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if d.inflight.Load() == 0 {
			idle++
		} else {
			idle = 0
		}
	}
	return n, err
}

// track is the server's middleware counting the requests in flight.
func (d *drainingReader) track(next sdkmcp.MethodHandler) sdkmcp.MethodHandler {
	return func(ctx context.Context, method string, req sdkmcp.Request) (sdkmcp.Result, error) {
		d.inflight.Add(1)
		defer d.inflight.Add(-1)
		return next(ctx, method, req)
	}
}
