package langchaingo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tmc/langchaingo/llms"

	"github.com/turnkeep/turnkeep/contrib/langchaingo"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

func toolCall(id, typ, name, args string) llms.ToolCall {
	return llms.ToolCall{ID: id, Type: typ, FunctionCall: &llms.FunctionCall{Name: name, Arguments: args}}
}

// conversations are the round-trip cases: the messages, and the number of
// messages of each turn they are stored as.
var conversations = []struct {
	name  string
	msgs  []llms.ChatMessage
	turns []int
}{
	{"exchanges", []llms.ChatMessage{
		llms.HumanChatMessage{Content: "hi"},
		llms.AIChatMessage{Content: "hello"},
		llms.HumanChatMessage{Content: "how are you?"},
		llms.AIChatMessage{Content: "fine"},
	}, []int{2, 2}},
	{"tool calls", []llms.ChatMessage{
		llms.HumanChatMessage{Content: "weather in Paris and Rome?"},
		llms.AIChatMessage{ToolCalls: []llms.ToolCall{
			toolCall("call_1", "function", "weather", `{"city":"Paris"}`),
			toolCall("call_2", "function", "weather", `{"city": "Rome", "units": ["C"]}`),
		}},
		llms.ToolChatMessage{ID: "call_1", Content: "18C"},
		llms.ToolChatMessage{ID: "call_2", Content: "24C"},
		llms.AIChatMessage{Content: "Paris 18C, Rome 24C", ReasoningContent: "both answered"},
		llms.HumanChatMessage{Content: "thanks"},
		llms.AIChatMessage{Content: "you're welcome", ToolCalls: []llms.ToolCall{
			toolCall("call_3", "", "log", ""),
			toolCall("call_4", "custom", "log", `{}`),
		}},
	}, []int{5, 2}},
	{"system prompt", []llms.ChatMessage{
		llms.SystemChatMessage{Content: "be brief"},
		llms.HumanChatMessage{Content: "hi"},
		llms.AIChatMessage{Content: "hello"},
		llms.SystemChatMessage{Content: "now be verbose"},
		llms.HumanChatMessage{Content: "bye"},
		llms.AIChatMessage{Content: "goodbye, and thank you"},
	}, []int{4, 2}},
	{"generic", []llms.ChatMessage{
		llms.GenericChatMessage{Role: "narrator", Name: "bob", Content: "once upon a time"},
		llms.GenericChatMessage{Role: "AI", Content: "go on"},
		llms.GenericChatMessage{Role: "system", Name: "rules", Content: "no spoilers"},
		llms.GenericChatMessage{Role: "human", Content: "and then?"},
		llms.GenericChatMessage{Role: "assistant", Name: "ada", Content: "the end"},
		llms.GenericChatMessage{Role: "tool", Content: "looked up"},
	}, []int{3, 2, 1}},
	{"legacy functions", []llms.ChatMessage{
		llms.HumanChatMessage{Content: "time?"},
		llms.AIChatMessage{FunctionCall: &llms.FunctionCall{Name: "now", Arguments: `{"tz":"UTC"}`}},
		llms.FunctionChatMessage{Name: "now", Content: "12:00"},
		llms.AIChatMessage{Content: "noon"},
	}, []int{4}},
	{"empty contents", []llms.ChatMessage{
		llms.HumanChatMessage{},
		llms.AIChatMessage{},
		llms.AIChatMessage{ToolCalls: []llms.ToolCall{toolCall("c", "function", "f", "")}},
		llms.ToolChatMessage{ID: "c"},
		llms.GenericChatMessage{Role: "x"},
	}, []int{4, 1}},
	{"answer first", []llms.ChatMessage{
		llms.AIChatMessage{Content: "how can I help?"},
		llms.ToolChatMessage{ID: "t", Content: "ready"},
		llms.HumanChatMessage{Content: "héllo 👋 \u2028"},
		llms.AIChatMessage{Content: "hi"},
	}, []int{2, 2}},
}

// TestRoundTrip stores every kind of message, by AddMessage and by
// SetMessages, and reads it back as it was, in turns as the package doc
// says.
func TestRoundTrip(t *testing.T) {
	eachStore(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		mem := newMemory(t, b)
		for _, c := range conversations {
			t.Run(c.name, func(t *testing.T) {
				for _, how := range []string{"add", "set"} {
					sid := c.name + "/" + how
					h, err := langchaingo.NewHistory(mem, sid, langchaingo.WithWindow(100))
					require.NoError(t, err)
					if how == "add" {
						for _, m := range c.msgs {
							require.NoError(t, h.AddMessage(ctx, m))
						}
					} else {
						require.NoError(t, h.SetMessages(ctx, []llms.ChatMessage{llms.HumanChatMessage{Content: "replaced"}}))
						require.NoError(t, h.SetMessages(ctx, c.msgs))
					}
					got, err := h.Messages(ctx)
					require.NoError(t, err)
					assert.Equal(t, c.msgs, got, "%s: messages read back", how)

					w := allTurns(t, mem, sid)
					var sizes []int
					for _, turn := range w.Turns {
						sizes = append(sizes, len(turn.Messages))
					}
					assert.Equal(t, c.turns, sizes, "%s: messages per turn", how)
					assert.Equal(t, len(c.turns), w.TurnCount, "%s: turn count", how)
				}
			})
		}
	})
}

// TestStoredForm checks what other turnkeep programs see.
func TestStoredForm(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewBufferMemory()
	h, err := langchaingo.NewHistory(mem, "s")
	require.NoError(t, err)
	require.NoError(t, h.SetMessages(ctx, conversations[1].msgs[:4]))
	require.NoError(t, h.AddMessage(ctx, llms.GenericChatMessage{Role: "narrator", Name: "bob", Content: "meanwhile"}))

	w := allTurns(t, mem, "s")
	require.Len(t, w.Turns, 2)
	msgs := w.Turns[0].Messages
	require.Len(t, msgs, 4)
	assert.Equal(t, "weather in Paris and Rome?", w.Turns[0].User)
	assert.Equal(t, memory.RoleAssistant, msgs[1].Role)
	assert.Equal(t, []memory.ToolCall{
		{ID: "call_1", Name: "weather", Arguments: `{"city":"Paris"}`},
		{ID: "call_2", Name: "weather", Arguments: `{"city": "Rome", "units": ["C"]}`},
	}, msgs[1].ToolCalls)
	assert.Nil(t, msgs[1].Metadata, "tool calls of type function need no metadata")
	assert.Equal(t, memory.RoleTool, msgs[2].Role)
	assert.Equal(t, "call_1", msgs[2].ToolCallID)

	g := w.Turns[1].Messages[0]
	assert.Equal(t, memory.RoleUser, g.Role)
	assert.Equal(t, "bob", g.Name)
	assert.Equal(t, map[string]any{"langchaingo_type": "generic", "langchaingo_role": "narrator"}, g.Metadata)
}

// TestForeignMessages reads messages another turnkeep program stored.
func TestForeignMessages(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewBufferMemory()
	require.NoError(t, mem.SaveTurn(ctx, "s", memory.Turn{Messages: []memory.Message{
		{Role: memory.RoleUser, Name: "ada", Parts: []memory.Part{{Type: "text", Text: "look "}, {Type: "image", URL: "http://x/y.png"}, {Type: "text", Text: "here"}}},
		{Role: memory.RoleAssistant, Content: "nice", Metadata: map[string]any{"model": "m"}},
	}}))
	h, err := langchaingo.NewHistory(mem, "s")
	require.NoError(t, err)
	got, err := h.Messages(ctx)
	require.NoError(t, err)
	assert.Equal(t, []llms.ChatMessage{llms.HumanChatMessage{Content: "look here"}, llms.AIChatMessage{Content: "nice"}}, got)
}

func TestPointerMessages(t *testing.T) {
	ctx := context.Background()
	h, err := langchaingo.NewHistory(memory.NewBufferMemory(), "s")
	require.NoError(t, err)
	in := []llms.ChatMessage{
		&llms.HumanChatMessage{Content: "a"}, &llms.AIChatMessage{Content: "b"}, &llms.SystemChatMessage{Content: "c"},
		&llms.GenericChatMessage{Role: "r", Content: "d"}, &llms.FunctionChatMessage{Name: "f", Content: "e"},
		&llms.ToolChatMessage{ID: "i", Content: "f"},
	}
	for _, m := range in {
		require.NoError(t, h.AddMessage(ctx, m))
	}
	got, err := h.Messages(ctx)
	require.NoError(t, err)
	want := []llms.ChatMessage{
		llms.HumanChatMessage{Content: "a"}, llms.AIChatMessage{Content: "b"}, llms.SystemChatMessage{Content: "c"},
		llms.GenericChatMessage{Role: "r", Content: "d"}, llms.FunctionChatMessage{Name: "f", Content: "e"},
		llms.ToolChatMessage{ID: "i", Content: "f"},
	}
	assert.Equal(t, want, got)
}

type customMessage struct{}

func (customMessage) GetType() llms.ChatMessageType { return "custom" }
func (customMessage) GetContent() string            { return "?" }

// TestSetMessagesValidatesFirst: input turnkeep refuses leaves the session
// as it was.
func TestSetMessagesValidatesFirst(t *testing.T) {
	before := []llms.ChatMessage{llms.HumanChatMessage{Content: "keep me"}, llms.AIChatMessage{Content: "kept"}}
	for _, c := range []struct {
		name string
		bad  llms.ChatMessage
		want error
	}{
		{"tool without call id", llms.ToolChatMessage{Content: "x"}, memory.ErrInvalidTurn},
		{"arguments not json", llms.AIChatMessage{ToolCalls: []llms.ToolCall{toolCall("c", "function", "f", "{")}}, memory.ErrInvalidTurn},
		{"tool call without function", llms.AIChatMessage{ToolCalls: []llms.ToolCall{{ID: "c"}}}, memory.ErrInvalidTurn},
		{"invalid utf-8", llms.HumanChatMessage{Content: "\xff"}, memory.ErrInvalidTurn},
		{"unknown type", customMessage{}, llms.ErrUnexpectedChatMessageType},
		{"nil", nil, llms.ErrUnexpectedChatMessageType},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			h, err := langchaingo.NewHistory(memory.NewBufferMemory(), "s")
			require.NoError(t, err)
			require.NoError(t, h.SetMessages(ctx, before))

			err = h.SetMessages(ctx, []llms.ChatMessage{llms.HumanChatMessage{Content: "new"}, llms.AIChatMessage{Content: "ok"}, c.bad})
			assert.ErrorIs(t, err, c.want)
			got, err := h.Messages(ctx)
			require.NoError(t, err)
			assert.Equal(t, before, got, "the session after a refused SetMessages")

			assert.ErrorIs(t, h.AddMessage(ctx, c.bad), c.want)
		})
	}
}

// failingMemory fails its failAt-th SaveTurn call.
type failingMemory struct {
	memory.Memory
	mu     sync.Mutex // protects saves and failAt
	saves  int
	failAt int // 0: never
}

var errInjected = errors.New("injected failure")

func (m *failingMemory) SaveTurn(ctx context.Context, sessionID string, turn memory.Turn) error {
	m.mu.Lock()
	m.saves++
	fail := m.saves == m.failAt
	m.mu.Unlock()
	if fail {
		return errInjected
	}
	return m.Memory.SaveTurn(ctx, sessionID, turn)
}

// TestSetMessagesRetry documents the non-atomic replacement: a failure
// part-way leaves the first turns, and a retry completes it.
func TestSetMessagesRetry(t *testing.T) {
	ctx := context.Background()
	mem := &failingMemory{Memory: memory.NewBufferMemory()}
	h, err := langchaingo.NewHistory(mem, "s")
	require.NoError(t, err)
	require.NoError(t, h.SetMessages(ctx, []llms.ChatMessage{llms.HumanChatMessage{Content: "old"}}))

	msgs := conversations[0].msgs // two turns
	mem.mu.Lock()
	mem.failAt = mem.saves + 2 // the second turn of the replacement
	mem.mu.Unlock()
	err = h.SetMessages(ctx, msgs)
	require.ErrorIs(t, err, errInjected)
	assert.Contains(t, err.Error(), "turn 2 of 2")
	got, err := h.Messages(ctx)
	require.NoError(t, err)
	assert.Equal(t, msgs[:2], got, "after a failure at the second turn")

	require.NoError(t, h.SetMessages(ctx, msgs))
	got, err = h.Messages(ctx)
	require.NoError(t, err)
	assert.Equal(t, msgs, got, "after the retry")
	assert.Equal(t, 2, allTurns(t, mem, "s").TurnCount)
}

// clearingMemory clears the session before each AppendMessages, as another
// process clearing it between a History's read and write would.
type clearingMemory struct{ memory.Memory }

func (m clearingMemory) AppendMessages(ctx context.Context, sessionID, turnID string, msgs ...memory.Message) error {
	if err := m.Clear(ctx, sessionID); err != nil {
		return err
	}
	return m.Memory.AppendMessages(ctx, sessionID, turnID, msgs...)
}

func TestAddAfterConcurrentClear(t *testing.T) {
	ctx := context.Background()
	mem := clearingMemory{memory.NewBufferMemory()}
	h, err := langchaingo.NewHistory(mem, "s")
	require.NoError(t, err)
	require.NoError(t, h.AddUserMessage(ctx, "hi"))
	require.NoError(t, h.AddAIMessage(ctx, "hello"))
	got, err := h.Messages(ctx)
	require.NoError(t, err)
	assert.Equal(t, []llms.ChatMessage{llms.AIChatMessage{Content: "hello"}}, got)
}

// TestWindow: Messages and AddMessage read only the turns they need.
func TestWindow(t *testing.T) {
	eachStore(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		rb := &recordingBackend{Backend: b}
		mem := newMemory(t, rb, memory.WithCacheTTL(0), memory.WithMaxTurns(3))
		h, err := langchaingo.NewHistory(mem, "s")
		require.NoError(t, err)
		for i := range 6 {
			require.NoError(t, h.AddUserMessage(ctx, fmt.Sprint("q", i)))
			if i == 4 {
				require.NoError(t, h.AddMessage(ctx, llms.AIChatMessage{ToolCalls: []llms.ToolCall{toolCall("c", "function", "f", "{}")}}))
				require.NoError(t, h.AddMessage(ctx, llms.ToolChatMessage{ID: "c", Content: "r"}))
			}
			require.NoError(t, h.AddAIMessage(ctx, fmt.Sprint("a", i)))
		}
		for _, n := range rb.loads() {
			require.Equal(t, 1, n, "AddMessage loads at most 1 turn")
		}

		got, err := h.Messages(ctx)
		require.NoError(t, err)
		assert.Len(t, got, 8, "the memory's window: 3 turns, one with a tool call")
		assert.Equal(t, []int{3}, rb.loads())

		h2, err := langchaingo.NewHistory(mem, "s", langchaingo.WithWindow(2))
		require.NoError(t, err)
		got, err = h2.Messages(ctx)
		require.NoError(t, err)
		assert.Equal(t, []llms.ChatMessage{
			llms.HumanChatMessage{Content: "q4"},
			llms.AIChatMessage{ToolCalls: []llms.ToolCall{toolCall("c", "function", "f", "{}")}},
			llms.ToolChatMessage{ID: "c", Content: "r"},
			llms.AIChatMessage{Content: "a4"},
			llms.HumanChatMessage{Content: "q5"},
			llms.AIChatMessage{Content: "a5"},
		}, got)
		assert.Equal(t, []int{2}, rb.loads())

		// A budget that fits the newest turn but not the one before: the
		// tool call is never returned without its result.
		newest := allTurns(t, mem, "s").Turns[5].Tokens()
		rb.loads()
		h3, err := langchaingo.NewHistory(mem, "s", langchaingo.WithWindow(5), langchaingo.WithTokenBudget(newest+1))
		require.NoError(t, err)
		got, err = h3.Messages(ctx)
		require.NoError(t, err)
		assert.Equal(t, []llms.ChatMessage{llms.HumanChatMessage{Content: "q5"}, llms.AIChatMessage{Content: "a5"}}, got)
		assert.Equal(t, []int{5}, rb.loads())
	})
}

// TestAddIgnoresMemoryBudget: the newest turn is found even when it is
// larger than the memory's token budget.
func TestAddIgnoresMemoryBudget(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewBufferMemory(memory.WithTokenBudget(5))
	h, err := langchaingo.NewHistory(mem, "s")
	require.NoError(t, err)
	require.NoError(t, h.AddUserMessage(ctx, "a question long enough to exceed a budget of five tokens"))
	require.NoError(t, h.AddAIMessage(ctx, "and an answer"))
	w := allTurns(t, mem, "s")
	assert.Equal(t, 1, w.TurnCount)
	got, err := h.Messages(ctx)
	require.NoError(t, err)
	assert.Equal(t, []llms.ChatMessage{
		llms.HumanChatMessage{Content: "a question long enough to exceed a budget of five tokens"},
		llms.AIChatMessage{Content: "and an answer"},
	}, got, "the newest turn, though over the memory's budget")
}

func TestClear(t *testing.T) {
	ctx := context.Background()
	mem := memory.NewBufferMemory()
	h, err := langchaingo.NewHistory(mem, "s")
	require.NoError(t, err)
	other, err := langchaingo.NewHistory(mem, "other")
	require.NoError(t, err)
	require.NoError(t, h.SetMessages(ctx, conversations[0].msgs))
	require.NoError(t, other.AddUserMessage(ctx, "stay"))
	require.NoError(t, h.Clear(ctx))
	got, err := h.Messages(ctx)
	require.NoError(t, err)
	assert.Empty(t, got)
	got, err = other.Messages(ctx)
	require.NoError(t, err)
	assert.Len(t, got, 1, "another session")

	require.NoError(t, h.SetMessages(ctx, nil))
	assert.Equal(t, 0, allTurns(t, mem, "s").TurnCount)
}

func TestNewHistoryErrors(t *testing.T) {
	mem := memory.NewBufferMemory()
	for _, c := range []struct {
		name string
		mem  memory.Memory
		sid  string
		opts []langchaingo.Option
		want error
	}{
		{"nil memory", nil, "s", nil, memory.ErrInvalidOption},
		{"empty session", mem, "", nil, memory.ErrInvalidSessionID},
		{"window 0", mem, "s", []langchaingo.Option{langchaingo.WithWindow(0)}, memory.ErrInvalidOption},
		{"negative budget", mem, "s", []langchaingo.Option{langchaingo.WithTokenBudget(-1)}, memory.ErrInvalidOption},
		{"nil option", mem, "s", []langchaingo.Option{nil}, memory.ErrInvalidOption},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := langchaingo.NewHistory(c.mem, c.sid, c.opts...)
			assert.ErrorIs(t, err, c.want)
			assert.Nil(t, h)
		})
	}
}

func TestZeroHistory(t *testing.T) {
	ctx := context.Background()
	for name, h := range map[string]*langchaingo.History{"zero": {}, "nil": nil} {
		t.Run(name, func(t *testing.T) {
			_, err := h.Messages(ctx)
			assert.ErrorIs(t, err, memory.ErrClosed)
			assert.ErrorIs(t, h.AddUserMessage(ctx, "x"), memory.ErrClosed)
			assert.ErrorIs(t, h.Clear(ctx), memory.ErrClosed)
			assert.ErrorIs(t, h.SetMessages(ctx, nil), memory.ErrClosed)
		})
	}
}

// TestConcurrentExchanges: exchanges added by many goroutines through one
// History each stay one turn.
func TestConcurrentExchanges(t *testing.T) {
	eachStore(t, func(t *testing.T, b driver.Backend) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		mem := newMemory(t, b)
		h, err := langchaingo.NewHistory(mem, "s")
		require.NoError(t, err)
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				errs <- h.AddUserMessage(ctx, fmt.Sprint("q", i))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.NoError(t, h.AddAIMessage(ctx, "a"))
		w := allTurns(t, mem, "s")
		assert.Equal(t, n, w.TurnCount)
		assert.Len(t, w.Turns[n-1].Messages, 2, "the answer joins the newest turn")
	})
}
