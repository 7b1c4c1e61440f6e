// Server is a web chat that remembers: an HTTP server with a JSON API, answers
// streamed as server-sent events, and one embedded page (HTML, script and
// style).
//
//	go run ./examples/server
//	go run ./examples/server -db postgres://user:pass@localhost/chat -addr :8080
//
// Conversations are stored with turnkeep (turnkeep.Open: a
// memory.PersistentBufferMemory on the database), by default in the SQLite file turnkeep-server.db
// in the working directory. Open the URL it prints.
//
// The API (JSON; the user is named by the header X-Turnkeep-User or the
// query parameter user, without authentication, and sees only the sessions
// it owns):
//
//	GET    /                               the web page
//	GET    /api/sessions                   the user's sessions, most recent first (?after=&limit=)
//	POST   /api/sessions                   create one: {"title": …} (optional); the server names it
//	GET    /api/sessions/{id}              one session
//	GET    /api/sessions/{id}/history      its turns (?after=&limit=&newest_first=true), with their versions
//	POST   /api/sessions/{id}/messages     send {"content": …}; the answer streams as server-sent events
//	POST   /api/sessions/{id}/versions     a new version of a turn: {"after": …, "content": …} (see versions.go)
//	DELETE /api/sessions/{id}              delete the session and its forks (its versions)
//	DELETE /api/users/{user}               delete every session of the user (only the user itself)
//
// The server names sessions: POST /api/sessions makes an ID of 128 random
// bits (crypto/rand) and returns it. A body that names one ("id") is refused
// with 400, not ignored, so that a client expecting its own name learns at
// once that it does not get it; and nobody obtains a session, or the turns
// another part of the app saved under a name such as "support-ticket-42",
// by guessing that name.
//
// Every request goes through guard (guard.go), as a server on the open
// network needs: read-header, read and idle timeouts and a header size limit
// on the HTTP server, so a client that sends slowly is cut; a write deadline
// per response, and per event of a streamed answer (no server-wide write
// timeout, which would cut long answers); a body limit; a POST without
// Content-Type: application/json refused with 415, so that no cross-site
// form can post as a user; and on every response a Content-Security-Policy
// that allows only the page's own script, style and API (the page has no
// inline script or style), X-Frame-Options: DENY, X-Content-Type-Options:
// nosniff and Referrer-Policy: no-referrer. Copy these with the rest; a
// production deployment adds authentication, and TLS in front.
//
// The user's message is stored before the agent is asked, and the answer as
// it streams, in segments at most DefaultFlushEvery apart (see answer.go):
// a crash mid-answer loses nothing the user typed, and a reload mid-answer
// shows the answer so far, growing until it is complete.
//
// Any number of servers may share one PostgreSQL database: a conversation
// can move between them from one request to the next. Each server's memory
// caches windows, but its cache is coherent across processes (every load
// confirms its cached window with the database in one small round trip),
// and the session list and history are read from the database itself.
//
// Answers come from a language model when TURNKEEP_LLM_URL names an
// OpenAI-compatible server (TURNKEEP_LLM_MODEL, TURNKEEP_LLM_API_KEY as in
// examples/chat), streamed from it; otherwise an offline agent answers from
// the remembered turns: say "my name is Ada", restart, and ask "what is my
// name?".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

// Defaults of the flags.
const (
	DefaultDB   = "sqlite:///turnkeep-server.db"
	DefaultAddr = "127.0.0.1:8080"
)

// offlineDelay is the pause between the words of the offline agent, so its
// answers visibly stream.
const offlineDelay = 40 * time.Millisecond

// shutdownTimeout bounds how long answers under way may finish at exit.
const shutdownTimeout = 10 * time.Second

// Exit codes of run.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is the whole program, with its surroundings passed in so tests can
// run it in-process. It serves until ctx ends and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("db", DefaultDB, "database `url`: sqlite:///relative.db, sqlite:////absolute.db or postgres://…")
	addr := fs.String("addr", DefaultAddr, "`address` to listen on (port 0 picks a free one)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "server: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	agent, agentName, err := newAgent(env)
	if err != nil {
		fmt.Fprintf(stderr, "server: %v\n", err)
		return exitUsage
	}

	// Turns older than the window are folded into a running summary in
	// the background: by the model when there is one, offline otherwise.
	mem, err := turnkeep.Open(ctx, *dbURL, turnkeep.Memory(memory.WithSummarizer(summarizerFor(agent), summaryTokens)))
	if err != nil {
		fmt.Fprintf(stderr, "server: %v\n", err) // turnkeep keeps passwords out of its errors
		return exitFailure
	}
	defer mem.Close() // and the database

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "server: %v\n", err)
		return exitFailure
	}
	logger := log.New(stderr, "server: ", log.LstdFlags)
	s := newServer(mem, agent, logger)
	hs := newHTTPServer(s, logger, defaultTimeouts)
	fmt.Fprintf(stdout, "turnkeep server on http://%s (database %s; agent: %s)\n", ln.Addr(), redactURL(*dbURL), agentName)

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "server: %v\n", err)
		return exitFailure
	case <-ctx.Done():
	}
	// Answers under way get shutdownTimeout to finish, then are stopped;
	// what they produced is stored either way, before the database closes.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	s.close()
	return exitOK
}

// summaryTokens is the target size of a session's summary.
const summaryTokens = 300

// summarizerFor is the summarizer of the agent's memory: the agent's
// model when it has one (an LLM is configured), the offline extractive
// summarizer otherwise.
func summarizerFor(agent Agent) memory.Summarizer {
	if s, ok := agent.(memory.Summarizer); ok {
		return s
	}
	return summarize.NewExtractive(nil)
}

// newAgent returns the language-model agent if TURNKEEP_LLM_URL is set and
// the offline agent otherwise, with a description of it.
func newAgent(env func(string) string) (Agent, string, error) {
	base := env(EnvLLMURL)
	if base == "" {
		return offlineAgent{delay: offlineDelay}, "offline (set " + EnvLLMURL + " to use a language model)", nil
	}
	a, err := newLLMAgent(base, env(EnvLLMModel), env(EnvLLMAPIKey))
	if err != nil {
		return nil, "", err
	}
	return a, fmt.Sprintf("%s at %s, streaming", a.model, redactURL(a.endpoint)), nil
}
