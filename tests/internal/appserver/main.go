// Command appserver is the application server the coherence tests of
// package tests run two of on one database, as behind a load balancer. It
// opens the database the way an application does (dataflow.Open,
// backend.NewDataFlowBackend, memory.NewPersistentBufferMemory with the
// default options, plus -max-turns and -stale), then serves one command per
// line of stdin and answers each with one JSON line on stdout:
//
//	save SESSION TURNID USERTEXT   store a turn (the agent text is "a:"+TURNID)
//	load SESSION                   {"turns":[IDs, oldest first],"turn_count":N}
//	clear SESSION                  clear the session
//	stats                          {"stats":memory.CacheStats}
//	quit                           answer, then exit 0
//
// Every answer holds "ok"; a failed command answers {"ok":false,"error":…}
// and the server goes on serving. It writes {"ok":true} once the database
// is open, before it reads the first command, and exits 0 at the end of
// stdin.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

// reply is one answer line.
type reply struct {
	OK        bool               `json:"ok"`
	Error     string             `json:"error,omitempty"`
	Turns     []string           `json:"turns,omitempty"`
	TurnCount int                `json:"turn_count,omitempty"`
	Stats     *memory.CacheStats `json:"stats,omitempty"`
}

func main() {
	var (
		dbURL    = flag.String("db", "", "database URL (sqlite:///path or postgres://…)")
		maxTurns = flag.Int("max-turns", memory.DefaultMaxTurns, "turns LoadContext returns")
		stale    = flag.Duration("stale", 0, "memory.WithStaleReads bound; 0 keeps the coherent default")
	)
	flag.Parse()
	if *dbURL == "" {
		fmt.Fprintln(os.Stderr, "usage: appserver -db URL [-max-turns N] [-stale DURATION]")
		os.Exit(2)
	}
	out := json.NewEncoder(os.Stdout) // os.Stdout is unbuffered: one write per answer

	ctx := context.Background()
	m, closeDB, err := open(ctx, *dbURL, *maxTurns, *stale)
	if err != nil {
		_ = out.Encode(reply{Error: err.Error()})
		os.Exit(1)
	}
	defer closeDB()
	if err := out.Encode(reply{OK: true}); err != nil {
		os.Exit(3)
	}

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 4<<20)
	for in.Scan() {
		r, quit := serve(ctx, m, in.Text())
		if err := out.Encode(r); err != nil {
			os.Exit(3)
		}
		if quit {
			return
		}
	}
}

// open builds the memory an application would, over a database of its own.
func open(ctx context.Context, url string, maxTurns int, stale time.Duration) (*memory.PersistentBufferMemory, func() error, error) {
	db, err := dataflow.Open(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	opts := []memory.Option{memory.WithMaxTurns(maxTurns)}
	if stale > 0 {
		opts = append(opts, memory.WithStaleReads(stale))
	}
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return m, db.Close, nil
}

// serve runs one command line and reports whether it was quit.
func serve(ctx context.Context, m *memory.PersistentBufferMemory, line string) (reply, bool) {
	f := strings.SplitN(line, " ", 4)
	fail := func(err error) reply { return reply{Error: err.Error()} }
	switch {
	case f[0] == "save" && len(f) == 4:
		id := f[2]
		if err := m.SaveTurn(ctx, f[1], memory.Turn{ID: id, User: f[3], Agent: "a:" + id}); err != nil {
			return fail(err), false
		}
	case f[0] == "load" && len(f) == 2:
		w, err := m.LoadContext(ctx, f[1])
		if err != nil {
			return fail(err), false
		}
		r := reply{OK: true, Turns: make([]string, len(w.Turns)), TurnCount: w.TurnCount}
		for i, t := range w.Turns {
			r.Turns[i] = t.ID
		}
		return r, false
	case f[0] == "clear" && len(f) == 2:
		if err := m.Clear(ctx, f[1]); err != nil {
			return fail(err), false
		}
	case f[0] == "stats" && len(f) == 1:
		s := m.Stats()
		return reply{OK: true, Stats: &s}, false
	case f[0] == "quit" && len(f) == 1:
		return reply{OK: true}, true
	default:
		return fail(fmt.Errorf("unknown command %q", line)), false
	}
	return reply{OK: true}, false
}
