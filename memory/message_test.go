package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

func TestPrepareExpandsShorthand(t *testing.T) {
	p, _, err := driver.PrepareTurn(memory.Turn{ID: "t", User: "hi", Agent: "hello"}, time.Now(), 0)
	require.NoError(t, err)
	require.Len(t, p.Messages, 2)
	assert.Equal(t, memory.Message{ID: "t/0", Role: memory.RoleUser, Content: "hi", Tokens: memory.DefaultTokenCounter.CountTokens(memory.Message{Role: memory.RoleUser, Content: "hi"})}, p.Messages[0])
	assert.Equal(t, "t/1", p.Messages[1].ID)
	assert.Equal(t, memory.RoleAssistant, p.Messages[1].Role)
	assert.Equal(t, "hi", p.User)
	assert.Equal(t, "hello", p.Agent)

	// Only an agent message: one assistant message.
	p, _, err = driver.PrepareTurn(memory.Turn{ID: "t", Agent: "hello"}, time.Now(), 0)
	require.NoError(t, err)
	require.Len(t, p.Messages, 1)
	assert.Equal(t, memory.RoleAssistant, p.Messages[0].Role)

	// A prepared (or loaded) turn has both forms, in agreement: accepted
	// as it is.
	again, _, err := driver.PrepareTurn(p, time.Now(), 0)
	require.NoError(t, err)
	assert.Equal(t, p, again)
}

func TestPrepareMessagesGivesIDs(t *testing.T) {
	msgs, err := driver.PrepareMessages([]memory.Message{{Role: memory.RoleAssistant, Content: "a"}, {ID: "b", Role: memory.RoleAssistant, Content: "b", Tokens: 99}}, 0, nil)
	require.NoError(t, err)
	assert.Len(t, msgs[0].ID, 32, "a random ID")
	assert.Equal(t, "b", msgs[1].ID)
	assert.Equal(t, memory.DefaultTokenCounter.CountTokens(memory.Message{ID: "b", Role: memory.RoleAssistant, Content: "b"}), msgs[1].Tokens, "Tokens given are recounted")
	_, err = driver.PrepareMessages(nil, 0, nil)
	require.ErrorIs(t, err, memory.ErrInvalidTurn)
}

func TestTrimWindow(t *testing.T) {
	turn := func(id string, tokens ...int) memory.Turn {
		tr := memory.Turn{ID: id}
		for _, n := range tokens {
			tr.Messages = append(tr.Messages, memory.Message{Tokens: n})
		}
		return tr
	}
	w := memory.Window{Turns: []memory.Turn{turn("a", 1, 2), turn("b", 5), turn("c", 1, 1)}, TurnCount: 7}
	ids := func(w memory.Window) (out []string) {
		for _, t := range w.Turns {
			out = append(out, t.ID)
		}
		return out
	}
	for _, c := range []struct {
		maxTurns, budget int
		want             []string
		tokens           int
	}{
		{10, 0, []string{"a", "b", "c"}, 10},
		{2, 0, []string{"b", "c"}, 7},
		{10, 7, []string{"b", "c"}, 7},
		{10, 9, []string{"b", "c"}, 7},
		{10, 10, []string{"a", "b", "c"}, 10},
		{10, 6, []string{"c"}, 2},
		{10, 1, []string{"c"}, 2}, // the newest turn, alone over the budget
		{1, 100, []string{"c"}, 2},
		{0, 0, nil, 0},
	} {
		got := driver.TrimWindow(w, c.maxTurns, c.budget)
		assert.Equal(t, c.want, ids(got), "maxTurns %d budget %d", c.maxTurns, c.budget)
		assert.Equal(t, c.tokens, got.Tokens, "maxTurns %d budget %d", c.maxTurns, c.budget)
		assert.Equal(t, 7, got.TurnCount)
	}
}

func TestBufferMemoryConversation(t *testing.T) {
	ctx := context.Background()
	m := memory.NewBufferMemory(memory.WithTokenCounter(memory.TokenCounterFunc(func(memory.Message) int { return 1 })), memory.WithTokenBudget(3))
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "t1", User: "a", Agent: "b"}))
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "t2", Messages: []memory.Message{{Role: memory.RoleUser, Content: "c"}}}))
	require.NoError(t, m.AppendMessages(ctx, "s", "t2", memory.Message{ID: "x", Role: memory.RoleAssistant, Content: "d"}))
	require.NoError(t, m.AppendMessages(ctx, "s", "t2", memory.Message{ID: "x", Role: memory.RoleAssistant, Content: "d"}), "a retry")
	require.ErrorIs(t, m.AppendMessages(ctx, "s", "nope", memory.Message{Role: memory.RoleAssistant, Content: "d"}), memory.ErrTurnNotFound)
	w, err := m.LoadContext(ctx, "s")
	require.NoError(t, err)
	require.Len(t, w.Turns, 1, "the budget of 3 holds t2 (2 tokens) only")
	assert.Equal(t, "d", w.Turns[0].Agent)
	assert.Equal(t, 2, w.Tokens)
	w, err = m.LoadContext(ctx, "s", memory.LoadTokenBudget(0))
	require.NoError(t, err)
	assert.Len(t, w.Turns, 2)
	assert.Equal(t, 4, w.Tokens)
}

func TestTokenOptions(t *testing.T) {
	_, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), memory.WithTokenBudget(-1))
	require.ErrorIs(t, err, memory.ErrInvalidOption)
	_, err = memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), memory.WithTokenCounter(nil))
	require.ErrorIs(t, err, memory.ErrInvalidOption)
	m := memory.NewBufferMemory()
	_, err = m.LoadContext(context.Background(), "s", nil)
	require.ErrorIs(t, err, memory.ErrInvalidOption)
}
