package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// flakyMemory fails the AppendMessages calls that fail says to, after
// storing the messages when stored says so: a lost acknowledgement. Like
// a database, it refuses to append under a context that has ended.
type flakyMemory struct {
	memory.Memory
	calls    int
	fail     func(call int) (fail, stored bool)
	appended [][]string // the IDs given to each call
}

var errLost = errors.New("connection lost")

func (m *flakyMemory) AppendMessages(ctx context.Context, session, turnID string, msgs ...memory.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.calls++
	ids := make([]string, len(msgs))
	for i := range msgs {
		ids[i] = msgs[i].ID
	}
	m.appended = append(m.appended, ids)
	fail, stored := m.fail(m.calls)
	if fail && !stored {
		return errLost
	}
	if err := m.Memory.AppendMessages(ctx, session, turnID, msgs...); err != nil {
		return err
	}
	if fail {
		return errLost
	}
	return nil
}

func newTestChat(mem memory.Memory) (*chat, *strings.Builder, *strings.Builder) {
	var out, errOut strings.Builder
	return &chat{mem: mem, session: "s", agent: offlineAgent{}, out: &out, errOut: &errOut}, &out, &errOut
}

func TestAnswerRetriedIdempotently(t *testing.T) {
	ctx := context.Background()
	// The first append (the tool call) is stored but reported failed; the
	// second (the call again, and the result) fails outright; the third
	// stores the rest.
	mem := &flakyMemory{Memory: memory.NewBufferMemory(), fail: func(call int) (bool, bool) {
		return call <= 2, call == 1
	}}
	c, out, errOut := newTestChat(mem)
	c.say(ctx, "what is 6*7")
	assert.Empty(t, errOut.String())
	assert.Contains(t, out.String(), "agent: 6*7 = 42\n")

	w, err := mem.LoadContext(ctx, "s")
	require.NoError(t, err)
	require.Len(t, w.Turns, 1)
	turn := w.Turns[0]
	id := func(pos int) string { return driver.DerivedMessageID(turn.ID, pos) }
	assert.Equal(t, [][]string{{id(1)}, {id(1), id(2)}, {id(1), id(2), id(3)}}, mem.appended, "pending messages are sent again with the same IDs")
	var roles []memory.Role
	for i, m := range turn.Messages {
		assert.Equal(t, id(i), m.ID)
		roles = append(roles, m.Role)
	}
	assert.Equal(t, []memory.Role{memory.RoleUser, memory.RoleAssistant, memory.RoleTool, memory.RoleAssistant}, roles, "each message stored once, in order")
}

func TestAnswerNotRemembered(t *testing.T) {
	ctx := context.Background()
	mem := &flakyMemory{Memory: memory.NewBufferMemory(), fail: func(int) (bool, bool) { return true, false }}
	c, out, errOut := newTestChat(mem)
	c.say(ctx, "hello")
	assert.Equal(t, "agent: Hello! This is the start of our conversation; I will remember what you say.\n", out.String(), "the answer is shown")
	assert.Equal(t, "chat: the answer was not remembered: connection lost\n", errOut.String())
	assert.Equal(t, 2, mem.calls, "tried when the answer came, and once more at its end")

	w, err := mem.LoadContext(ctx, "s")
	require.NoError(t, err)
	require.Len(t, w.Turns, 1)
	assert.Equal(t, "hello", w.Turns[0].User, "the user's message is kept")
	assert.Len(t, w.Turns[0].Messages, 1)
}

// cancelAgent answers with a tool call, then finds its context ended.
type cancelAgent struct{ cancel context.CancelFunc }

func (a cancelAgent) Reply(ctx context.Context, _ memory.Window, _ string, emit func(memory.Message)) error {
	call := calculatorCall("1+1")
	emit(memory.Message{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{call}})
	a.cancel()
	result, _ := callTool(call)
	emit(result)
	return ctx.Err()
}

func TestInterruptedAnswerIsStored(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mem := &flakyMemory{Memory: memory.NewBufferMemory(), fail: func(int) (bool, bool) { return false, false }}
	c, _, errOut := newTestChat(mem)
	c.agent = cancelAgent{cancel}
	c.say(ctx, "add")
	assert.Equal(t, "chat: agent: context canceled (your message is remembered without an answer)\n", errOut.String())

	w, err := mem.LoadContext(context.Background(), "s")
	require.NoError(t, err)
	require.Len(t, w.Turns, 1)
	assert.Len(t, w.Turns[0].Messages, 3, "the call and its result are stored after the context ended")
}
