package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// backends runs fn on every driver.Backend: in process, and DataFlowBackend
// on each dialect.
func backends(t *testing.T, fn func(t *testing.T, b driver.Backend)) {
	t.Run("inmemory", func(t *testing.T) { fn(t, NewInMemoryBackend()) })
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		fn(t, b)
	})
}

// unitCounter counts every message as its Tokens hint in Metadata["t"],
// or 1, so windows are easy to reason about.
var unitCounter = driver.TokenCounterFunc(func(m driver.Message) int {
	if n, ok := m.Metadata["t"].(float64); ok {
		return int(n)
	}
	return 1
})

// agentTurn is an agent loop's turn: user, assistant with 2 tool calls, the
// 2 tool results, the final answer.
func agentTurn(id string) driver.Turn {
	return driver.Turn{ID: id, Messages: []driver.Message{
		{Role: driver.RoleUser, Content: "what is 6*7 and 2+2? " + id, Name: "ada"},
		{Role: driver.RoleAssistant, ToolCalls: []driver.ToolCall{
			{ID: "call-a-" + id, Name: "calc", Arguments: `{"expr": "6*7"}`},
			{ID: "call-b-" + id, Name: "calc", Arguments: "{\"expr\":\"2+2\",\n \"unicode\":\"\u00e9\\u00e9 <&>\"}"},
		}},
		{Role: driver.RoleTool, ToolCallID: "call-a-" + id, Content: "42"},
		{Role: driver.RoleTool, ToolCallID: "call-b-" + id, Content: "4", Metadata: map[string]any{"ms": 3.5}},
		{Role: driver.RoleAssistant, Content: "42 and 4 " + id},
	}}
}

// richTurn holds every field a message has.
func richTurn() driver.Turn {
	return driver.Turn{ID: "rich", Metadata: map[string]any{"model": "m1"}, Messages: []driver.Message{
		{ID: "sys", Role: driver.RoleSystem, Content: "be brief"},
		{ID: "u1", Role: driver.RoleUser, Content: "look", Parts: []driver.Part{
			{Type: "text", Text: "this picture"},
			{Type: "image", URL: "https://example.com/a.png", MIMEType: "image/png"},
			{Type: "audio", MIMEType: "audio/wav", Data: []byte{0, 1, 2, 0xff, 0xfe, 'R', 'I', 'F', 'F'}},
		}, Metadata: map[string]any{"client": "web", "n": []any{1.0, "x"}}},
		{ID: "a1", Role: driver.RoleAssistant, Content: "a cat", Name: "bot"},
	}}
}

func TestConversationRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("cached=%v", cached), func(t *testing.T) {
				ttl := time.Duration(0)
				if cached {
					ttl = time.Minute
				}
				m := newMemory(t, b, memory.WithCacheTTL(ttl))
				sid := fmt.Sprintf("rt-%v", cached)
				want := []driver.Turn{prepared(t, richTurn()), prepared(t, agentTurn("t2")), prepared(t, driver.Turn{ID: "t3", User: "hi", Agent: "hello"})}
				for _, turn := range []driver.Turn{richTurn(), agentTurn("t2"), {ID: "t3", User: "hi", Agent: "hello"}} {
					require.NoError(t, m.SaveTurn(ctx, sid, turn))
				}
				for pass := range 2 { // the second pass is a cache hit when cached
					w, err := m.LoadContext(ctx, sid)
					require.NoError(t, err)
					require.Len(t, w.Turns, 3, "pass %d", pass)
					for i := range want {
						got := w.Turns[i]
						assert.Equal(t, want[i].ID, got.ID)
						assert.Equal(t, want[i].Metadata, got.Metadata)
						assert.Equal(t, want[i].Messages, got.Messages, "turn %d pass %d", i, pass)
						assert.Equal(t, want[i].User, got.User)
						assert.Equal(t, want[i].Agent, got.Agent)
					}
					assert.Equal(t, "look", w.Turns[0].User)
					assert.Equal(t, "a cat", w.Turns[0].Agent)
					assert.Equal(t, "42 and 4 t2", w.Turns[1].Agent, "Agent is the last assistant message")
					assert.Equal(t, `{"expr": "6*7"}`, w.Turns[1].Messages[1].ToolCalls[0].Arguments, "arguments verbatim")
					assert.Equal(t, []byte{0, 1, 2, 0xff, 0xfe, 'R', 'I', 'F', 'F'}, w.Turns[0].Messages[1].Parts[2].Data)
					assert.Equal(t, "t3/0", w.Turns[2].Messages[0].ID, "derived message ID")
					sum := 0
					for _, turn := range w.Turns {
						for _, msg := range turn.Messages {
							assert.Positive(t, msg.Tokens)
							sum += msg.Tokens
						}
					}
					assert.Equal(t, sum, w.Tokens)
				}
				// A loaded turn saves again as it is (a retry: nothing stored).
				w, err := m.LoadContext(ctx, sid)
				require.NoError(t, err)
				require.NoError(t, m.SaveTurn(ctx, sid, w.Turns[1]))
				w2, err := m.LoadContext(ctx, sid)
				require.NoError(t, err)
				assert.Equal(t, 3, w2.TurnCount)
			})
		}
	})
}

// Invalid messages are refused with a typed error and write nothing.
func TestConversationValidation(t *testing.T) {
	big := strings.Repeat("x", 100)
	cases := []struct {
		name string
		turn driver.Turn
		err  error
	}{
		{"unknown role", driver.Turn{Messages: []driver.Message{{Role: "narrator", Content: "x"}}}, driver.ErrInvalidTurn},
		{"no role", driver.Turn{Messages: []driver.Message{{Content: "x"}}}, driver.ErrInvalidTurn},
		{"tool without call id", driver.Turn{Messages: []driver.Message{{Role: driver.RoleTool, Content: "x"}}}, driver.ErrInvalidTurn},
		{"call id on user", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Content: "x", ToolCallID: "c"}}}, driver.ErrInvalidTurn},
		{"tool calls on user", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Content: "x", ToolCalls: []driver.ToolCall{{ID: "c", Name: "f"}}}}}, driver.ErrInvalidTurn},
		{"arguments not JSON", driver.Turn{Messages: []driver.Message{{Role: driver.RoleAssistant, ToolCalls: []driver.ToolCall{{ID: "c", Name: "f", Arguments: "{nope"}}}}}, driver.ErrInvalidTurn},
		{"tool call without id", driver.Turn{Messages: []driver.Message{{Role: driver.RoleAssistant, ToolCalls: []driver.ToolCall{{Name: "f"}}}}}, driver.ErrInvalidTurn},
		{"empty message", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser}}}, driver.ErrInvalidTurn},
		{"nul in content", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Content: "a\x00b"}}}, driver.ErrInvalidTurn},
		{"invalid utf-8 in name", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Content: "x", Name: "\xff"}}}, driver.ErrInvalidTurn},
		{"nul in arguments", driver.Turn{Messages: []driver.Message{{Role: driver.RoleAssistant, ToolCalls: []driver.ToolCall{{ID: "c", Name: "f", Arguments: "\"\x00\""}}}}}, driver.ErrInvalidTurn},
		{"nul in part text", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Parts: []driver.Part{{Type: "text", Text: "\x00"}}}}}, driver.ErrInvalidTurn},
		{"part without type", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Parts: []driver.Part{{Text: "x"}}}}}, driver.ErrInvalidTurn},
		{"nul in metadata", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Content: "x", Metadata: map[string]any{"k": "\x00"}}}}, driver.ErrInvalidTurn},
		{"duplicate message ids", driver.Turn{Messages: []driver.Message{{ID: "a", Role: driver.RoleUser, Content: "x"}, {ID: "a", Role: driver.RoleAssistant, Content: "y"}}}, driver.ErrInvalidTurn},
		{"both forms disagreeing", driver.Turn{User: "other", Messages: []driver.Message{{Role: driver.RoleUser, Content: "x"}}}, driver.ErrInvalidTurn},
		{"content too large", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Content: big}}}, driver.ErrTurnTooLarge},
		{"arguments too large", driver.Turn{Messages: []driver.Message{{Role: driver.RoleAssistant, ToolCalls: []driver.ToolCall{{ID: "c", Name: "f", Arguments: `"` + big + `"`}}}}}, driver.ErrTurnTooLarge},
		{"part data too large", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Parts: []driver.Part{{Type: "file", Data: []byte(big)}}}}}, driver.ErrTurnTooLarge},
		{"message metadata too large", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Content: "x", Metadata: map[string]any{"k": big}}}}, driver.ErrTurnTooLarge},
		{"too many messages", driver.Turn{Messages: make([]driver.Message, driver.MaxTurnMessages+1)}, driver.ErrTurnTooLarge},
	}
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b, memory.WithMaxMessageBytes(50))
		require.NoError(t, m.SaveTurn(ctx, "v", driver.Turn{ID: "t0", User: "u"}))
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				require.ErrorIs(t, m.SaveTurn(ctx, "v", c.turn), c.err)
				if len(c.turn.Messages) <= driver.MaxTurnMessages && c.turn.User == "" { // the messages alone are invalid
					require.ErrorIs(t, m.AppendMessages(ctx, "v", "t0", c.turn.Messages...), c.err, "append")
				}
				w, err := m.LoadContext(ctx, "v")
				require.NoError(t, err)
				require.Equal(t, 1, w.TurnCount, "nothing written")
				require.Len(t, w.Turns[0].Messages, 1, "nothing appended")
			})
		}
	})
}

func TestAppendMessages(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b, memory.WithTokenCounter(unitCounter))
		other := newMemory(t, b, memory.WithTokenCounter(unitCounter)) // another server
		sid := "append"

		// A user message saved before the model answers, the answer
		// appended as it streams.
		require.NoError(t, m.SaveTurn(ctx, sid, driver.Turn{ID: "t1", Messages: []driver.Message{{Role: driver.RoleUser, Content: "hi"}}}))
		_, err := m.LoadContext(ctx, sid) // cached
		require.NoError(t, err)
		require.NoError(t, m.AppendMessages(ctx, sid, "t1", driver.Message{ID: "a1", Role: driver.RoleAssistant, Content: "hel"}))
		require.NoError(t, m.AppendMessages(ctx, sid, "t1", driver.Message{ID: "a2", Role: driver.RoleAssistant, Content: "lo"}))
		// A retry stores nothing twice, also through another memory.
		require.NoError(t, other.AppendMessages(ctx, sid, "t1", driver.Message{ID: "a2", Role: driver.RoleAssistant, Content: "lo"}))
		require.NoError(t, m.AppendMessages(ctx, sid, "t1",
			driver.Message{ID: "a1", Role: driver.RoleAssistant, Content: "hel"},
			driver.Message{ID: "a3", Role: driver.RoleAssistant, Content: "!"}))
		for _, mem := range []*memory.PersistentBufferMemory{m, other} {
			w, err := mem.LoadContext(ctx, sid)
			require.NoError(t, err)
			require.Len(t, w.Turns, 1)
			var ids []string
			for _, msg := range w.Turns[0].Messages {
				ids = append(ids, msg.ID)
			}
			assert.Equal(t, []string{"t1/0", "a1", "a2", "a3"}, ids)
			assert.Equal(t, "!", w.Turns[0].Agent, "Agent is the last assistant message")
			assert.Equal(t, 4, w.Tokens)
			assert.Equal(t, 1, w.TurnCount, "an append is not a turn")
		}

		// Unknown turn or session: ErrTurnNotFound, nothing written.
		require.ErrorIs(t, m.AppendMessages(ctx, sid, "nope", driver.Message{Role: driver.RoleAssistant, Content: "x"}), driver.ErrTurnNotFound)
		require.ErrorIs(t, m.AppendMessages(ctx, "no-session", "t1", driver.Message{Role: driver.RoleAssistant, Content: "x"}), driver.ErrTurnNotFound)
		_, err = b.SessionInfo(ctx, "no-session")
		require.ErrorIs(t, err, driver.ErrSessionNotFound, "a failed append creates no session")

		// Appending to an older turn is supported: token windows stay exact.
		require.NoError(t, m.SaveTurn(ctx, sid, driver.Turn{ID: "t2", User: "u2", Agent: "a2"}))
		require.NoError(t, m.SaveTurn(ctx, sid, driver.Turn{ID: "t3", User: "u3", Agent: "a3"}))
		w, err := m.LoadContext(ctx, sid, memory.LoadTokenBudget(4))
		require.NoError(t, err)
		require.Equal(t, []string{"t2", "t3"}, turnIDs(w))
		require.NoError(t, other.AppendMessages(ctx, sid, "t2", driver.Message{Role: driver.RoleAssistant, Content: "more", Metadata: map[string]any{"t": 2.0}}))
		for _, mem := range []*memory.PersistentBufferMemory{m, other} {
			w, err = mem.LoadContext(ctx, sid, memory.LoadTokenBudget(4))
			require.NoError(t, err)
			assert.Equal(t, []string{"t3"}, turnIDs(w), "t2 grew to 4 tokens and no longer fits beside t3")
			assert.Equal(t, 2, w.Tokens)
			w, err = mem.LoadContext(ctx, sid, memory.LoadTokenBudget(6))
			require.NoError(t, err)
			assert.Equal(t, []string{"t2", "t3"}, turnIDs(w))
			assert.Equal(t, 6, w.Tokens)
		}
	})
}

// Concurrent appends of the same messages store each once.
func TestAppendMessagesConcurrent(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		sid := "append-race"
		seed := newMemory(t, b)
		require.NoError(t, seed.SaveTurn(ctx, sid, driver.Turn{ID: "t1", User: "go"}))
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := newMemory(t, b)
				for i := range 8 {
					msg := driver.Message{ID: fmt.Sprintf("m%d", (i+g)%8), Role: driver.RoleAssistant, Content: fmt.Sprintf("part %d", (i+g)%8)}
					if err := m.AppendMessages(ctx, sid, "t1", msg); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		w, err := seed.LoadContext(ctx, sid)
		require.NoError(t, err)
		require.Len(t, w.Turns, 1)
		assert.Len(t, w.Turns[0].Messages, 9, "the user message and 8 distinct appended ones")
		seen := map[string]bool{}
		for _, msg := range w.Turns[0].Messages {
			assert.False(t, seen[msg.ID], "message %s stored twice", msg.ID)
			seen[msg.ID] = true
		}
	})
}

func turnIDs(w driver.Window) []string {
	var ids []string
	for _, t := range w.Turns {
		ids = append(ids, t.ID)
	}
	return ids
}

// Windows never split a turn: with an agent-loop session and limits that
// fall in every place, both limit kinds, every window is whole turns, the
// newest ones that fit.
func TestWindowsNeverSplitTurns(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b)
		sid := "agent-loop"
		var all []driver.Turn
		for i := range 4 {
			turn := agentTurn(fmt.Sprintf("t%d", i))
			if i%2 == 1 {
				turn = driver.Turn{ID: fmt.Sprintf("t%d", i), User: "short", Agent: "reply"}
			}
			require.NoError(t, m.SaveTurn(ctx, sid, turn))
			p, err := m.LoadContext(ctx, sid, memory.LoadMaxTurns(1))
			require.NoError(t, err)
			all = append(all, p.Turns[0])
		}
		total := 0
		for _, turn := range all {
			total += turn.Tokens()
		}
		for maxTurns := 1; maxTurns <= 5; maxTurns++ {
			for budget := 0; budget <= total+1; budget++ {
				w, err := m.LoadContext(ctx, sid, memory.LoadMaxTurns(maxTurns), memory.LoadTokenBudget(budget))
				require.NoError(t, err)
				want := driver.TrimWindow(driver.Window{Turns: all, TurnCount: 4}, maxTurns, budget)
				require.Equal(t, turnIDs(want), turnIDs(w), "maxTurns %d budget %d", maxTurns, budget)
				require.Equal(t, want.Tokens, w.Tokens)
				sum := 0
				for _, turn := range w.Turns {
					require.Len(t, turn.Messages, len(all[turnIndex(all, turn.ID)].Messages), "turn %s split", turn.ID)
					sum += turn.Tokens()
					calls := map[string]bool{}
					for _, msg := range turn.Messages {
						for _, c := range msg.ToolCalls {
							calls[c.ID] = true
						}
						if msg.Role == driver.RoleTool {
							require.True(t, calls[msg.ToolCallID], "tool result %s without its call", msg.ToolCallID)
						}
					}
				}
				require.Equal(t, sum, w.Tokens)
				if budget > 0 && w.Tokens > budget {
					require.Equal(t, []string{all[len(all)-1].ID}, turnIDs(w), "only the newest turn, alone, is over the budget")
				}
			}
		}
	})
}

func turnIndex(turns []driver.Turn, id string) int {
	for i := range turns {
		if turns[i].ID == id {
			return i
		}
	}
	return -1
}

// A budget window is the newest whole turns that fit; with both limits the
// stricter wins; the default limits come from the options, and a per-call
// override reads through when it asks for more than the cache holds.
func TestTokenBudgetWindow(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b, memory.WithTokenCounter(unitCounter), memory.WithTokenBudget(4), memory.WithMaxTurns(3))
		sid := "budget"
		// Turn tokens: 2, 4, 1, 2, 2.
		sizes := []float64{1, 3, 0, 1, 1}
		for i, agent := range sizes {
			turn := driver.Turn{ID: fmt.Sprintf("t%d", i), Messages: []driver.Message{{Role: driver.RoleUser, Content: "u"}}}
			if agent > 0 {
				turn.Messages = append(turn.Messages, driver.Message{Role: driver.RoleAssistant, Content: "a", Metadata: map[string]any{"t": agent}})
			}
			require.NoError(t, m.SaveTurn(ctx, sid, turn))
		}
		w, err := m.LoadContext(ctx, sid)
		require.NoError(t, err)
		assert.Equal(t, []string{"t3", "t4"}, turnIDs(w), "budget 4: t4 and t3 (2+2) fit, t2 (1) no longer")
		assert.Equal(t, 4, w.Tokens)
		w, err = m.LoadContext(ctx, sid, memory.LoadTokenBudget(0))
		require.NoError(t, err)
		assert.Equal(t, []string{"t2", "t3", "t4"}, turnIDs(w), "no budget: the 3 newest")
		w, err = m.LoadContext(ctx, sid, memory.LoadTokenBudget(100), memory.LoadMaxTurns(5))
		require.NoError(t, err)
		assert.Equal(t, []string{"t0", "t1", "t2", "t3", "t4"}, turnIDs(w))
		assert.Equal(t, 11, w.Tokens)
		assert.Equal(t, 5, w.TurnCount)
		w, err = m.LoadContext(ctx, sid, memory.LoadTokenBudget(1))
		require.NoError(t, err)
		assert.Equal(t, []string{"t4"}, turnIDs(w), "the newest turn alone is over the budget: it is still there")
		assert.Equal(t, 2, w.Tokens, "over the budget")
		assert.Equal(t, 5, w.TurnCount)
		_, err = m.LoadContext(ctx, sid, memory.LoadTokenBudget(-1))
		require.ErrorIs(t, err, driver.ErrInvalidOption)
		_, err = m.LoadContext(ctx, sid, memory.LoadMaxTurns(0))
		require.ErrorIs(t, err, driver.ErrInvalidOption)
	})
}

// The budget statement reads only the window: a budget window's plan is an
// index range scan with no sort, like the turn window's.
func TestBudgetWindowReadsOnlyTheWindow(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, rec := newEnv(t, d)
		m := newMemory(t, b, memory.WithCacheTTL(0), memory.WithTokenBudget(40), memory.WithMaxTurns(1000))
		for i := range 50 {
			require.NoError(t, m.SaveTurn(ctx, "big", driver.Turn{ID: fmt.Sprint(i), User: "hello there", Agent: "general kenobi"}))
		}
		rec.take()
		w, err := m.LoadContext(ctx, "big")
		require.NoError(t, err)
		require.NotEmpty(t, w.Turns)
		require.LessOrEqual(t, w.Tokens, 40)
		qs := rec.take()
		require.Len(t, qs, 1, "one statement: %v", qs)
	})
}

// ReplaceSession swaps a session's whole history atomically: invalid input
// changes nothing, the owner stays, every server and the search index see
// the new history.
func TestReplaceSession(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("rep")
		other := newMemory(t, b).ForTenant("rep")
		require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "s", User: "ada", Title: "kept"}))
		for i := range 3 {
			require.NoError(t, m.SaveTurn(ctx, "s", driver.Turn{ID: fmt.Sprint("old", i), User: "walrus " + fmt.Sprint(i)}))
		}
		w, err := other.LoadContext(ctx, "s")
		require.NoError(t, err)
		require.Equal(t, 3, w.TurnCount)

		// Invalid input: nothing changes.
		require.ErrorIs(t, m.ReplaceSession(ctx, "s", driver.Turn{ID: "a", User: "x"}, driver.Turn{ID: "a", User: "y"}), driver.ErrInvalidTurn)
		require.ErrorIs(t, m.ReplaceSession(ctx, "s", driver.Turn{User: "x"}, driver.Turn{Messages: []driver.Message{{Role: "narrator", Content: "x"}}}), driver.ErrInvalidTurn)
		w, err = other.LoadContext(ctx, "s")
		require.NoError(t, err)
		require.Equal(t, 3, w.TurnCount, "a refused replacement changed the session")

		require.NoError(t, m.ReplaceSession(ctx, "s", agentTurn("n1"), driver.Turn{ID: "n2", User: "penguin", Agent: "ok"}))
		for _, mem := range []*memory.PersistentBufferMemory{m, other} {
			w, err = mem.LoadContext(ctx, "s")
			require.NoError(t, err)
			assert.Equal(t, 2, w.TurnCount)
			assert.Equal(t, []string{"n1", "n2"}, turnIDs(w))
		}
		info, err := m.SessionInfo(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, "ada", info.User)
		assert.Equal(t, "kept", info.Title)
		assert.Equal(t, w.Tokens, info.Tokens, "the running total is the new history's")
		hits, err := m.Search(ctx, driver.SearchQuery{Text: "walrus"})
		require.NoError(t, err)
		assert.Empty(t, hits, "the old history is not found")
		hits, err = m.Search(ctx, driver.SearchQuery{Text: "penguin"})
		require.NoError(t, err)
		assert.Len(t, hits, 1)
		// The new history takes appends and budgets like any other.
		require.NoError(t, m.AppendMessages(ctx, "s", "n1", driver.Message{ID: "late", Role: driver.RoleAssistant, Content: "late"}))
		w, err = m.LoadContext(ctx, "s", memory.LoadTokenBudget(w.Tokens))
		require.NoError(t, err)
		assert.Equal(t, []string{"n2"}, turnIDs(w), "n1 grew past the budget")
		// No turns: the history is empty, the session and its owner stay.
		require.NoError(t, m.ReplaceSession(ctx, "s"))
		info, err = m.SessionInfo(ctx, "s")
		require.NoError(t, err)
		assert.Zero(t, info.TurnCount)
		assert.Equal(t, "ada", info.User)
	})
}

// An error names each layer once: the memory, the backend and the engine,
// never the engine twice (issue 8).
func TestErrorsPrefixedOncePerLayer(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		db, err := dataflow.Open(ctx, d.URL(t), dataflow.WithAutoMigrate(false))
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		m := newMemory(t, b)
		for _, err := range []error{
			m.SaveTurn(ctx, "s", driver.Turn{User: "x"}),
			func() error { _, err := m.LoadContext(ctx, "s"); return err }(),
		} {
			require.ErrorIs(t, err, dataflow.ErrTableMissing)
			require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
			for _, layer := range []string{"memory:", "backend:", "dataflow:"} {
				assert.Equal(t, 1, strings.Count(err.Error(), layer), "%q in %q", layer, err)
			}
		}
	})
}
