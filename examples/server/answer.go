package main

import (
	"context"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// How an answer is stored while it streams.
//
// A stored message cannot be changed (AppendMessages skips an ID the
// session holds), so a growing answer is stored as a run of assistant
// messages, its segments: the text that arrived since the previous one,
// appended at most every flushEvery. Every segment but the last carries
// the metadata "partial": true; the last, stored when the agent is done,
// carries none. The history joins a turn's segments into one answer and
// calls it complete when its last message is an assistant message without
// "partial".
//
// So a reload mid-answer shows the answer up to the latest segment, marked
// as still being written (the page polls until it is complete), and a crash
// loses at most flushEvery of the model's text, never what the user typed,
// which is stored before the agent is asked. Segments bound the writes to
// a few per second however fast tokens come, where a message per token
// would write a row per token.

// DefaultFlushEvery is how often, at most, a streaming answer is stored.
const DefaultFlushEvery = 250 * time.Millisecond

// storeTimeout bounds each write of an answer. Writes run detached from
// the request, so an answer is stored after its reader has gone.
const storeTimeout = 10 * time.Second

// partialKey marks a segment of an answer that is not the last.
const partialKey = "partial"

// An appender stores messages into a turn: a memory.Memory.
type appender interface {
	AppendMessages(ctx context.Context, sessionID, turnID string, msgs ...memory.Message) error
}

// An answerWriter stores the answer of one turn as it streams. It is used
// by one goroutine.
type answerWriter struct {
	mem        appender
	session    string
	turnID     string
	flushEvery time.Duration
	now        func() time.Time

	next    int              // the place in the turn of the next segment
	buf     strings.Builder  // text not yet in a segment
	flushed time.Time        // when the latest segment was made
	pending []memory.Message // segments not stored yet, in order
	err     error            // the latest failure to store
}

func newAnswerWriter(mem appender, session, turnID string, flushEvery time.Duration) *answerWriter {
	return &answerWriter{mem: mem, session: session, turnID: turnID, flushEvery: flushEvery,
		now: time.Now, next: 1, flushed: time.Now()} // place 0 is the user's message
}

// write adds text to the answer. Once flushEvery has passed since the
// latest segment, the text before it becomes a segment and is stored;
// text is held back, so the segment the agent's end makes is never empty.
func (a *answerWriter) write(ctx context.Context, text string) {
	if text == "" {
		return
	}
	if a.buf.Len() > 0 && a.now().Sub(a.flushed) >= a.flushEvery {
		a.segment(true)
		a.store(ctx)
	}
	a.buf.WriteString(text)
}

// finish stores the rest of the answer: as its last segment when complete,
// else (the agent failed or was stopped) as one more partial segment. It
// returns the error of the last write, or nil if everything was stored.
func (a *answerWriter) finish(ctx context.Context, complete bool) error {
	if a.buf.Len() > 0 {
		a.segment(!complete)
	}
	a.store(ctx)
	return a.err
}

// segment turns the held text into a pending segment.
func (a *answerWriter) segment(partial bool) {
	m := memory.Message{ID: driver.DerivedMessageID(a.turnID, a.next), Role: memory.RoleAssistant, Content: a.buf.String()}
	if partial {
		m.Metadata = map[string]any{partialKey: true}
	}
	a.next++
	a.buf.Reset()
	a.flushed = a.now()
	a.pending = append(a.pending, m)
}

// store appends the pending segments. A failure leaves them pending, to be
// sent again with the next segment: IDs make the retry idempotent, and no
// segment is stored before an earlier one.
func (a *answerWriter) store(ctx context.Context) {
	if len(a.pending) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if a.err = a.mem.AppendMessages(ctx, a.session, a.turnID, a.pending...); a.err == nil {
		a.pending = a.pending[:0]
	}
}

// answerOf joins the text of a turn's assistant messages: the segments of
// its answer.
func answerOf(msgs []memory.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		if m.Role == memory.RoleAssistant {
			b.WriteString(m.Content)
		}
	}
	return b.String()
}

// answered reports whether the turn's answer is complete: its last message
// is an assistant message that is not a partial segment.
func answered(msgs []memory.Message) bool {
	if len(msgs) == 0 {
		return false
	}
	last := msgs[len(msgs)-1]
	partial, _ := last.Metadata[partialKey].(bool)
	return last.Role == memory.RoleAssistant && len(last.ToolCalls) == 0 && !partial
}
