package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/testutil"
	"github.com/turnkeep/turnkeep/memory"
)

// flakyAppender stores appended messages, failing the calls it is told to.
type flakyAppender struct {
	fail   int // how many of the next calls fail
	calls  [][]memory.Message
	stored []memory.Message
}

func (f *flakyAppender) AppendMessages(_ context.Context, _, _ string, msgs ...memory.Message) error {
	f.calls = append(f.calls, append([]memory.Message(nil), msgs...))
	if f.fail > 0 {
		f.fail--
		return errors.New("database down")
	}
	f.stored = append(f.stored, msgs...)
	return nil
}

func contents(msgs []memory.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Content)
	}
	return out
}

func TestAnswerWriterSegments(t *testing.T) {
	ctx := context.Background()
	clock := testutil.NewClock()
	f := &flakyAppender{}
	a := newAnswerWriter(f, "s", "t", time.Second)
	a.now = clock.Now
	a.flushed = clock.Now()

	a.write(ctx, "Hel")
	a.write(ctx, "lo")
	assert.Empty(t, f.calls, "nothing is stored within flushEvery")
	clock.Advance(time.Second)
	a.write(ctx, ", wor")
	require.Len(t, f.calls, 1)
	assert.Equal(t, []string{"Hello"}, contents(f.stored), "the text before the newest piece")
	assert.Equal(t, "t/1", f.stored[0].ID)
	assert.Equal(t, map[string]any{partialKey: true}, f.stored[0].Metadata)

	// A failed write is retried with the next segment, in order.
	f.fail = 1
	clock.Advance(time.Second)
	a.write(ctx, "ld")
	assert.Equal(t, []string{"Hello"}, contents(f.stored))
	require.NoError(t, a.finish(ctx, true))
	assert.Equal(t, []string{"Hello", ", wor", "ld"}, contents(f.stored))
	assert.Equal(t, []string{"t/1", "t/2", "t/3"}, []string{f.stored[0].ID, f.stored[1].ID, f.stored[2].ID})
	assert.Nil(t, f.stored[2].Metadata, "the last segment is not partial")
	assert.True(t, answered(f.stored))
	assert.Equal(t, "Hello, world", answerOf(f.stored))
}

func TestAnswerWriterFailure(t *testing.T) {
	ctx := context.Background()
	f := &flakyAppender{fail: 5}
	a := newAnswerWriter(f, "s", "t", time.Hour)
	a.write(ctx, "cut")
	assert.ErrorContains(t, a.finish(ctx, false), "database down")
	f.fail = 0
	a = newAnswerWriter(f, "s", "t2", time.Hour)
	a.write(ctx, "cut")
	require.NoError(t, a.finish(ctx, false))
	assert.False(t, answered(f.stored), "an answer cut short is partial")

	a = newAnswerWriter(f, "s", "t3", time.Hour)
	require.NoError(t, a.finish(ctx, true))
	assert.Len(t, f.stored, 1, "an empty answer stores nothing")
}

func TestAnswered(t *testing.T) {
	user := memory.Message{Role: memory.RoleUser, Content: "hi"}
	for _, c := range []struct {
		msgs []memory.Message
		want bool
	}{
		{nil, false},
		{[]memory.Message{user}, false},
		{[]memory.Message{user, {Role: memory.RoleAssistant, Content: "a", Metadata: map[string]any{partialKey: true}}}, false},
		{[]memory.Message{user, {Role: memory.RoleAssistant, Content: "a"}}, true},
		{[]memory.Message{user, {Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: "c", Name: "calc"}}}}, false},
	} {
		assert.Equal(t, c.want, answered(c.msgs), "%+v", c.msgs)
	}
}
