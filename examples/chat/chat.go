package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// maxLineBytes bounds one input line. It is above the size limit of a
// stored message, so an over-long line is refused by the memory with a
// clear error and the chat goes on; only a line beyond this ends it.
const maxLineBytes = 4 * memory.DefaultMaxMessageBytes

const help = "Commands: /history shows what I remember, /edit TEXT says TEXT instead of your last message, " +
	"/retry asks for another answer to it (both in a new session, a fork, that the chat moves to), " +
	"/clear forgets the session, /quit (or end of input) exits."

// chat is one conversation: a session of a memory, answered by an agent.
type chat struct {
	mem     memory.Memory
	session string
	base    string // the session the chat started in, which names its forks ("": session)
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
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd = strings.ToLower(cmd); cmd {
		case "/edit":
			if arg = strings.TrimSpace(arg); arg == "" {
				fmt.Fprintln(c.errOut, "chat: /edit TEXT: say what to say instead of your last message")
				return false
			}
			c.redo(ctx, arg)
			return false
		case "/retry":
			c.redo(ctx, "")
			return false
		}
		if arg != "" {
			cmd = line // the other commands take no argument
		}
		switch cmd {
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

// A forker forks sessions and reads their history: a
// memory.PersistentBufferMemory (a memory.BufferMemory does not).
type forker interface {
	memory.Memory
	History(ctx context.Context, sessionID string, q memory.HistoryQuery) (memory.HistoryPage, error)
	Fork(ctx context.Context, sessionID, atTurnID, newSessionID string) error
}

// redo says a new version of the session's last turn, /edit's message or
// (message "", /retry) the last turn's own again, in a fork of the session
// at the turn before the last: the fork shares the history before it, and
// the chat moves to it, leaving the session as it was. The last turn being
// the first, it is said in a new, empty session instead.
func (c *chat) redo(ctx context.Context, message string) {
	f, ok := c.mem.(forker)
	if !ok {
		fmt.Fprintf(c.errOut, "chat: %T cannot fork a session\n", c.mem)
		return
	}
	p, err := f.History(ctx, c.session, memory.HistoryQuery{NewestFirst: true, Limit: 2})
	if err != nil {
		fmt.Fprintf(c.errOut, "chat: %v\n", err)
		return
	}
	if len(p.Turns) == 0 {
		fmt.Fprintln(c.errOut, "chat: there is no message to edit or answer again yet")
		return
	}
	if message == "" {
		if message = p.Turns[0].User; message == "" {
			fmt.Fprintln(c.errOut, "chat: the last turn has no message of yours to answer again")
			return
		}
	}
	if c.base == "" {
		c.base = c.session
	}
	fork := forkName(c.base)
	if len(p.Turns) == 2 {
		if err := f.Fork(ctx, c.session, p.Turns[1].ID, fork); err != nil {
			fmt.Fprintf(c.errOut, "chat: %v\n", err)
			return
		}
		fmt.Fprintf(c.out, "Now in session %q, a fork of %q before its last turn (-session %s resumes it).\n", fork, c.session, fork)
	} else {
		fmt.Fprintf(c.out, "Now in session %q, a new one: %q has no turn before its last (-session %s resumes it).\n", fork, c.session, fork)
	}
	c.session = fork
	c.say(ctx, message)
}

// forkName names a fork of a chat that started in session: its name and
// six random hex digits.
func forkName(session string) string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // never returns an error
	return fmt.Sprintf("%s-%x", session, b)
}

// storeTimeout bounds each write of an answer's messages. Writes run
// detached from the chat's context, so that what the agent did before a
// Ctrl-C is still stored.
const storeTimeout = 10 * time.Second

// say answers message and remembers the turn. The user's message is
// stored before the agent is asked, and each message of the answer as it
// comes, so a failure or a crash mid-answer loses nothing the user typed.
func (c *chat) say(ctx context.Context, message string) {
	w, err := c.mem.LoadContext(ctx, c.session)
	if err != nil {
		fmt.Fprintf(c.errOut, "chat: %v\n", err)
		return
	}
	tw := &turnWriter{mem: c.mem, session: c.session, turnID: memory.NewTurnID()}
	user := memory.Message{ID: tw.nextID(), Role: memory.RoleUser, Content: message}
	if err := c.mem.SaveTurn(ctx, c.session, memory.Turn{ID: tw.turnID, Messages: []memory.Message{user}}); err != nil {
		fmt.Fprintf(c.errOut, "chat: cannot remember this message: %v\n", err)
		return
	}
	names := toolNames{}
	err = c.agent.Reply(ctx, w, message, func(m memory.Message) {
		tw.add(ctx, m)
		printMessage(c.out, m, names, "", "       ")
		names.note(m)
	})
	if err != nil {
		fmt.Fprintf(c.errOut, "chat: agent: %v (your message is remembered without an answer)\n", err)
	}
	if err := tw.flush(ctx); err != nil {
		fmt.Fprintf(c.errOut, "chat: the answer was not remembered: %v\n", err)
	}
}

// A turnWriter appends the messages of an answer to its stored turn as
// they come. Each message gets the ID of its place in the turn
// (driver.DerivedMessageID), so a write is idempotent: a message that
// failed to store stays pending and is sent again with the next one, and
// the memory skips any that an earlier, seemingly failed, write stored.
// Later messages are never stored before an earlier one.
type turnWriter struct {
	mem     memory.Memory
	session string
	turnID  string
	next    int              // the place in the turn of the next message
	pending []memory.Message // not stored yet, in order
}

func (tw *turnWriter) nextID() string {
	id := driver.DerivedMessageID(tw.turnID, tw.next)
	tw.next++
	return id
}

// add stores m after the pending messages; a failure leaves them pending.
func (tw *turnWriter) add(ctx context.Context, m memory.Message) {
	m.ID = tw.nextID()
	tw.pending = append(tw.pending, m)
	_ = tw.flush(ctx) // a failure is retried with the next message, and reported by the last flush
}

// flush stores the pending messages.
func (tw *turnWriter) flush(ctx context.Context) error {
	if len(tw.pending) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := tw.mem.AppendMessages(ctx, tw.session, tw.turnID, tw.pending...); err != nil {
		return err
	}
	tw.pending = tw.pending[:0]
	return nil
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
	printSummary(c.out, w)
}

// printSummary shows what the window does not: the summary of the older
// turns, and how many of them it does not cover yet.
func printSummary(out io.Writer, w memory.Window) {
	if s := w.Summary; s != nil {
		fmt.Fprintf(out, "Summary of turns 1-%d: %s\n", s.Turns, s.Text)
	}
	if w.Unsummarized > 0 {
		fmt.Fprintf(out, "(%s before these not summarized yet)\n", turns(w.Unsummarized))
	}
}

func (c *chat) clear(ctx context.Context) {
	if err := c.mem.Clear(ctx, c.session); err != nil {
		fmt.Fprintf(c.errOut, "chat: %v\n", err)
		return
	}
	fmt.Fprintf(c.out, "Cleared session %q: I remember no turns now.\n", c.session)
}

// printTurns lists the turns of w, numbered by their place in the whole
// session, with every message: what the user said, the agent's tool calls
// and their results, and the answer.
func printTurns(out io.Writer, w memory.Window) {
	const margin = "      " // below the turn's number
	first := w.TurnCount - len(w.Turns) + 1
	for i, t := range w.Turns {
		names := toolNames{}
		for j, m := range t.Messages {
			prefix := margin
			if j == 0 {
				prefix = fmt.Sprintf("%4d. ", first+i)
			}
			printMessage(out, m, names, prefix, margin+"       ")
			names.note(m)
		}
		if n := len(t.Messages); n == 0 || t.Messages[n-1].Role != memory.RoleAssistant || len(t.Messages[n-1].ToolCalls) > 0 {
			fmt.Fprintln(out, margin+"(no answer)")
		}
	}
}

// printMessage writes m in lines each starting with prefix:
//
//	you:   what is 6*7
//	agent → calculator({"expression":"6*7"})
//	tool calculator: 42
//	agent: 6*7 = 42
//
// Continuation lines of a multi-line text are indented by indentBy. names
// gives the names of the tools the turn called, for a tool message that
// does not say its own.
func printMessage(out io.Writer, m memory.Message, names toolNames, prefix, indentBy string) {
	var label string
	switch m.Role {
	case memory.RoleUser:
		label = "you:"
	case memory.RoleAssistant:
		label = "agent:"
	case memory.RoleTool:
		name := m.Name
		if name == "" {
			name = names[m.ToolCallID]
		}
		label = "tool " + name + ":"
		if name == "" {
			label = "tool:"
		}
	default:
		label = string(m.Role) + ":"
	}
	if text := messageText(m, true); text != "" || len(m.ToolCalls) == 0 {
		fmt.Fprintf(out, "%s%-6s %s\n", prefix, label, indent(text, indentBy))
		prefix = strings.Repeat(" ", len(prefix))
	}
	for _, call := range m.ToolCalls {
		fmt.Fprintf(out, "%sagent → %s(%s)\n", prefix, call.Name, indent(call.Arguments, indentBy))
		prefix = strings.Repeat(" ", len(prefix))
	}
}

// toolNames maps the IDs of a turn's tool calls to the tools' names.
type toolNames map[string]string

// note records the tool calls of m.
func (n toolNames) note(m memory.Message) {
	for _, call := range m.ToolCalls {
		n[call.ID] = call.Name
	}
}

// messageText returns the text of m: its content and its text parts.
// With placeholders, a part of another type shows as "[type url]".
func messageText(m memory.Message, placeholders bool) string {
	texts := make([]string, 0, 1+len(m.Parts))
	if m.Content != "" {
		texts = append(texts, m.Content)
	}
	for _, p := range m.Parts {
		switch {
		case p.Type == "text":
			if p.Text != "" {
				texts = append(texts, p.Text)
			}
		case placeholders:
			texts = append(texts, strings.TrimSpace("["+p.Type+" "+p.URL)+"]")
		}
	}
	return strings.Join(texts, "\n")
}

// shown says which turns of a session a listing of w shows.
func shown(w memory.Window) string {
	if len(w.Turns) == 0 && w.TurnCount > 0 {
		return ", none within the token budget"
	}
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
