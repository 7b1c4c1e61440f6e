// Chat is a terminal chat that remembers the conversation across restarts.
//
//	go run ./examples/chat
//	go run ./examples/chat -db postgres://user:pass@localhost/chat -session alice
//
// Turns are stored with turnkeep (turnkeep.Open: a
// memory.PersistentBufferMemory on the database), by default in the SQLite file turnkeep-chat.db
// in the working directory, which is created on first use. On start the
// program says how many turns it remembers and shows the recent ones. It
// reads standard input line by line, so piped input works too; the commands
// are /history, /edit TEXT, /retry, /clear, /help and /quit. -max-turns and
// -max-tokens bound the window of recent turns the agent sees.
//
// /edit TEXT says TEXT instead of the last message, and /retry asks for
// another answer to it: each forks the session at the turn before the last
// (memory.Fork: the fork shares the turns before, stored once) and says
// the message there, and the chat goes on in the fork, named after the
// session with six random hex digits added (-session NAME resumes it); the
// session itself stays as it was. When the last turn is the first, there is
// nothing to fork at, and the message is said in a new, empty session.
//
// Each turn is stored as the messages of the exchange: the user's message
// is saved before the agent answers, and the agent's messages (tool calls,
// tool results, the answer) are appended as they come, so a failure or a
// crash mid-answer loses nothing the user typed.
//
// The agent answering is a language model when TURNKEEP_LLM_URL names an
// OpenAI-compatible server (for example http://localhost:11434 for Ollama;
// TURNKEEP_LLM_MODEL picks the model, default llama3.2, and
// TURNKEEP_LLM_API_KEY is sent as a bearer token if set). It is sent the
// remembered window as role-tagged messages, tool calls included, and
// offered a calculator tool. Without it an offline agent answers from the
// remembered turns: tell it "my name is Ada", restart, and ask "what is my
// name?"; ask "what is 6*7" to see it call the calculator, and /history to
// see the call stored.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

// Defaults of the flags.
const (
	DefaultDB      = "sqlite:///turnkeep-chat.db"
	DefaultSession = "default"
)

// Exit codes of run.
const (
	exitOK          = 0
	exitFailure     = 1   // the database or standard input failed
	exitUsage       = 2   // bad flags or environment
	exitInterrupted = 130 // ctx ended, as after SIGINT
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is the whole program, with its surroundings passed in so tests can
// run it in-process. env looks up environment variables (os.Getenv); nil
// means an empty environment. It returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, env func(string) string) int {
	if env == nil {
		env = func(string) string { return "" }
	}
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("db", DefaultDB, "database `url`: sqlite:///relative.db, sqlite:////absolute.db or postgres://…")
	session := fs.String("session", DefaultSession, "session `id` to remember the conversation under")
	maxTurns := fs.Int("max-turns", memory.DefaultMaxTurns, "how many recent turns the agent sees")
	maxTokens := 0
	fs.Func("max-tokens", "token `budget` of the turns the agent sees: only the newest whole turns that fit (default 0, no budget)", func(s string) error {
		n, err := strconv.Atoi(s)
		switch {
		case err != nil:
			return errors.New("want a whole number")
		case n < 0:
			return errors.New("want 0 (no budget) or more")
		}
		maxTokens = n
		return nil
	})
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: chat [flags]\n\nA terminal chat that remembers across restarts. Set TURNKEEP_LLM_URL to an\nOpenAI-compatible server to answer with a language model.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // the flag package printed the error and usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chat: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if err := memory.ValidateSessionID(*session); err != nil {
		fmt.Fprintf(stderr, "chat: -session: %v\n", err)
		return exitUsage
	}
	agent, agentName, err := newAgent(env)
	if err != nil {
		fmt.Fprintf(stderr, "chat: %v\n", err)
		return exitUsage
	}

	// -max-tokens is checked by its flag, so an invalid option is -max-turns.
	// Turns older than the window are folded into a running summary in
	// the background: by the model when there is one, offline otherwise.
	mem, err := turnkeep.Open(ctx, *dbURL, turnkeep.Memory(memory.WithMaxTurns(*maxTurns), memory.WithTokenBudget(maxTokens),
		memory.WithSummarizer(summarizerFor(agent), summaryTokens)))
	switch {
	case errors.Is(err, turnkeep.ErrInvalidOption):
		fmt.Fprintf(stderr, "chat: -max-turns: %v\n", err)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "chat: %v\n", err) // turnkeep keeps passwords out of its errors
		return failure(ctx)
	}
	defer mem.Close() // and the database

	c := &chat{mem: mem, session: *session, agent: agent, out: stdout, errOut: stderr}
	fmt.Fprintf(stdout, "turnkeep chat: session %q in %s; agent: %s\n", *session, redactURL(*dbURL), agentName)
	if err := c.greet(ctx); err != nil {
		fmt.Fprintf(stderr, "chat: %v\n", err)
		return failure(ctx)
	}
	return c.loop(ctx, stdin, isTerminal(stdin))
}

// failure returns the exit code of a fatal error: exitInterrupted if it
// came from the end of ctx, exitFailure otherwise.
func failure(ctx context.Context) int {
	if ctx.Err() != nil {
		return exitInterrupted
	}
	return exitFailure
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
// the offline agent otherwise, with a description of it for the banner.
func newAgent(env func(string) string) (Agent, string, error) {
	base := env(EnvLLMURL)
	if base == "" {
		return offlineAgent{}, "offline (set " + EnvLLMURL + " to use a language model)", nil
	}
	a, err := newLLMAgent(base, env(EnvLLMModel), env(EnvLLMAPIKey))
	if err != nil {
		return nil, "", err
	}
	return a, fmt.Sprintf("%s at %s", a.model, redactURL(a.endpoint)), nil
}

// redactURL hides the password of a URL for printing; other URLs are
// printed as given.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)" // the text may hold a password
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	return raw
}

// isTerminal reports whether r is a terminal (character device), so the
// program prompts only when someone types.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
