package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/memory"
)

// maxLineBytes bounds one input line. It is above the size limit of a
// stored message, so an over-long line is refused by the memory with a
// clear error and the chat goes on; only a line beyond this ends it.
const maxLineBytes = 4 * memory.DefaultMaxMessageBytes

const help = "Commands: /history shows what I remember, /clear forgets it, /quit (or end of input) exits."

// chat is one conversation: a session of a memory, answered by an agent.
type chat struct {
	mem     memory.Memory
	session string
	agent   Agent
	out     io.Writer // replies and listings
	errOut  io.Writer // errors
}

// greet says how many turns the session holds and shows the remembered
// ones. Its error is fatal: the memory cannot be read.
func (c *chat) greet(ctx context.Context) error {
	w, err := c.mem.LoadContext(ctx, c.session)
	if err != nil {
		return err
	}
	if w.TurnCount == 0 {
		fmt.Fprintln(c.out, "I remember no turns of this session yet.")
	} else {
		fmt.Fprintf(c.out, "I remember %s of this session%s:\n", turns(w.TurnCount), shown(w))
		printTurns(c.out, w)
	}
	fmt.Fprintln(c.out, help)
	return nil
}

// loop reads stdin line by line until /quit, end of input or the end of
// ctx, and returns the exit code.
func (c *chat) loop(ctx context.Context, stdin io.Reader, interactive bool) int {
	// Lines are read in a goroutine so that the end of ctx (Ctrl-C) is seen
	// while waiting for input; stop lets the goroutine go once loop returns.
	lines := make(chan string)
	stop := make(chan struct{})
	defer close(stop)
	var readErr error // written before lines is closed
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
		readErr = sc.Err()
	}()

	for {
		if ctx.Err() != nil { // select would not prefer it over a ready line
			return c.interrupted(interactive)
		}
		if interactive {
			fmt.Fprint(c.out, "you: ")
		}
		var (
			line string
			ok   bool
		)
		select {
		case <-ctx.Done():
			return c.interrupted(interactive)
		case line, ok = <-lines:
		}
		if !ok {
			if readErr != nil {
				if errors.Is(readErr, bufio.ErrTooLong) {
					readErr = fmt.Errorf("a line is longer than %d bytes", maxLineBytes)
				}
				fmt.Fprintf(c.errOut, "chat: read input: %v\n", readErr)
				return exitFailure
			}
			if interactive {
				fmt.Fprintln(c.out)
			}
			return exitOK
		}
		if quit := c.handle(ctx, line); quit {
			return exitOK
		}
	}
}

func (c *chat) interrupted(interactive bool) int {
	if interactive {
		fmt.Fprintln(c.out) // end the prompt's line
	}
	return exitInterrupted
}

// handle runs a command or answers a message, and reports whether the chat
// should end. Errors are printed; none ends the chat.
func (c *chat) handle(ctx context.Context, line string) (quit bool) {
	// Stored text must be valid UTF-8 without NUL bytes; a terminal in
	// another encoding should not make every line fail.
	line = strings.ReplaceAll(strings.ToValidUTF8(line, "\uFFFD"), "\x00", "")
	line = strings.TrimSpace(line)
	if line == "" {
		return false
	}
	if strings.HasPrefix(line, "/") {
		switch strings.ToLower(line) {
		case "/quit", "/exit":
			return true
		case "/history":
			c.history(ctx)
		case "/clear":
			c.clear(ctx)
		case "/help":
			fmt.Fprintln(c.out, help)
		default:
			fmt.Fprintf(c.errOut, "chat: unknown command %s. %s\n", line, help)
		}
		return false
	}
	c.say(ctx, line)
	return false
}

// say answers message and remembers the turn. Nothing is stored when the
// agent fails.
func (c *chat) say(ctx context.Context, message string) {
	// Refuse what the memory would refuse before asking the agent.
	if _, _, err := memory.PrepareTurn(memory.Turn{User: message}, time.Now(), 0); err != nil {
		fmt.Fprintf(c.errOut, "chat: cannot remember this message: %v\n", err)
		return
	}
	w, err := c.mem.LoadContext(ctx, c.session)
	if err != nil {
		fmt.Fprintf(c.errOut, "chat: %v\n", err)
		return
	}
	reply, err := c.agent.Reply(ctx, w, message)
	if err != nil {
		fmt.Fprintf(c.errOut, "chat: agent: %v (not remembered)\n", err)
		return
	}
	saveErr := c.mem.SaveTurn(ctx, c.session, memory.Turn{User: message, Agent: reply})
	fmt.Fprintf(c.out, "agent: %s\n", indent(reply, "       "))
	if saveErr != nil {
		fmt.Fprintf(c.errOut, "chat: this turn was not remembered: %v\n", saveErr)
	}
}

func (c *chat) history(ctx context.Context) {
	w, err := c.mem.LoadContext(ctx, c.session)
	if err != nil {
		fmt.Fprintf(c.errOut, "chat: %v\n", err)
		return
	}
	if w.TurnCount == 0 {
		fmt.Fprintf(c.out, "History of session %q: no turns.\n", c.session)
		return
	}
	fmt.Fprintf(c.out, "History of session %q: %s%s:\n", c.session, turns(w.TurnCount), shown(w))
	printTurns(c.out, w)
}

func (c *chat) clear(ctx context.Context) {
	if err := c.mem.Clear(ctx, c.session); err != nil {
		fmt.Fprintf(c.errOut, "chat: %v\n", err)
		return
	}
	fmt.Fprintf(c.out, "Cleared session %q: I remember no turns now.\n", c.session)
}

// printTurns lists the turns of w, numbered by their place in the whole
// session.
func printTurns(out io.Writer, w memory.Window) {
	first := w.TurnCount - len(w.Turns) + 1
	for i, t := range w.Turns {
		fmt.Fprintf(out, "%4d. you:   %s\n", first+i, indent(t.User, "             "))
		fmt.Fprintf(out, "      agent: %s\n", indent(t.Agent, "             "))
	}
}

// shown says which turns of a session a listing of w shows.
func shown(w memory.Window) string {
	if len(w.Turns) < w.TurnCount {
		return fmt.Sprintf(", the last %d shown", len(w.Turns))
	}
	return ""
}

// turns returns "1 turn" or "n turns".
func turns(n int) string {
	if n == 1 {
		return "1 turn"
	}
	return fmt.Sprintf("%d turns", n)
}

// indent indents the continuation lines of a multi-line text.
func indent(s, prefix string) string {
	return strings.ReplaceAll(s, "\n", "\n"+prefix)
}
