// Command saver is the program the process tests of package tests start,
// kill and race against each other. It opens a database the way an
// application does (dataflow.Open, backend.NewDataFlowBackend,
// memory.NewPersistentBufferMemory) and saves turns with explicit IDs,
// prefix plus a six-digit counter, in a loop.
//
// Each turn's user message is "u:"+ID and its agent message "a:"+ID, so a
// checker can recompute every stored message from its turn ID. After
// SaveTurn returns nil, saver writes "ack <id>" to stdout in one unbuffered
// write: a line the test reads is a turn the library acknowledged. On the
// first error it writes "error <op> <id>: <err>" to stdout and exits 1; it
// never retries, so a test counting errors sees every one.
//
// Modes:
//
//	save      SaveTurn in a loop (the default)
//	saveload  SaveTurn, then LoadContext, checking that every turn of the
//	          window is whole (both messages, matching its ID) and that the
//	          turn count is not below the window
//
// With -wait, saver writes "ready" and blocks until it reads a line from
// stdin before it opens the database, so a test can start many processes
// and release them at the same moment. With -resend, it first saves the
// listed turn IDs again, as a client retrying after a lost acknowledgement
// would, acknowledging each like any other turn.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

func main() {
	var (
		dbURL   = flag.String("db", "", "database URL (sqlite:// or postgres://)")
		session = flag.String("session", "s", "session ID")
		prefix  = flag.String("prefix", "t", "turn ID prefix")
		n       = flag.Int("n", 100, "turns to save (the counter runs from -start to -start+n-1)")
		start   = flag.Int("start", 0, "first counter value")
		mode    = flag.String("mode", "save", "save or saveload")
		resend  = flag.String("resend", "", "comma-separated turn IDs to save again before the loop")
		wait    = flag.Bool("wait", false, `print "ready" and wait for a line on stdin before opening the database`)
	)
	flag.Parse()
	if *dbURL == "" || (*mode != "save" && *mode != "saveload") {
		fmt.Fprintln(os.Stderr, "usage: saver -db URL [-session S] [-prefix P] [-n N] [-start K] [-mode save|saveload] [-resend IDS] [-wait]")
		os.Exit(2)
	}
	if *wait {
		say("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fail("wait", "", err)
		}
	}

	ctx := context.Background()
	db, err := dataflow.Open(ctx, *dbURL)
	if err != nil {
		fail("open", "", err)
	}
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		fail("backend", "", err)
	}
	m, err := memory.NewPersistentBufferMemory(b)
	if err != nil {
		fail("memory", "", err)
	}

	var resent []string
	if *resend != "" {
		resent = strings.Split(*resend, ",")
	}
	saved := 0
	for i := range len(resent) + *n {
		id := fmt.Sprintf("%s%06d", *prefix, *start+i-len(resent))
		if i < len(resent) {
			id = resent[i]
		}
		if err := m.SaveTurn(ctx, *session, memory.Turn{ID: id, User: "u:" + id, Agent: "a:" + id}); err != nil {
			fail("save", id, err)
		}
		say("ack " + id)
		saved++
		if *mode == "saveload" {
			w, err := m.LoadContext(ctx, *session)
			if err != nil {
				fail("load", id, err)
			}
			if err := check(w); err != nil {
				fail("load", id, err)
			}
		}
	}
	say(fmt.Sprintf("done %d", saved))
}

// check reports a window holding a half or mismatched turn.
func check(w memory.Window) error {
	if len(w.Turns) == 0 || w.TurnCount < len(w.Turns) {
		return fmt.Errorf("window of %d turns with turn count %d", len(w.Turns), w.TurnCount)
	}
	for _, t := range w.Turns {
		if t.User != "u:"+t.ID || t.Agent != "a:"+t.ID {
			return fmt.Errorf("turn %q is not whole: user %q, agent %q", t.ID, t.User, t.Agent)
		}
	}
	return nil
}

// say writes one line to stdout with a single write, unbuffered.
func say(line string) {
	if _, err := os.Stdout.WriteString(line + "\n"); err != nil {
		os.Exit(3)
	}
}

func fail(op, id string, err error) {
	say(fmt.Sprintf("error %s %s: %v", op, id, err))
	os.Exit(1)
}
