package langchaingo_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tmc/langchaingo/chains"
	"github.com/tmc/langchaingo/llms"
	"github.com/tmc/langchaingo/llms/fake"
	lcmemory "github.com/tmc/langchaingo/memory"
	"github.com/tmc/langchaingo/schema"

	"github.com/turnkeep/turnkeep/contrib/langchaingo"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// promptRecorder is langchaingo's fake LLM, recording the prompts it is
// sent.
type promptRecorder struct {
	*fake.LLM
	mu      sync.Mutex // protects prompts
	prompts []string
}

func (r *promptRecorder) GenerateContent(ctx context.Context, msgs []llms.MessageContent, opts ...llms.CallOption) (*llms.ContentResponse, error) {
	var b strings.Builder
	for _, m := range msgs {
		for _, p := range m.Parts {
			if t, ok := p.(llms.TextContent); ok {
				b.WriteString(t.Text)
			}
		}
	}
	r.mu.Lock()
	r.prompts = append(r.prompts, b.String())
	r.mu.Unlock()
	return r.LLM.GenerateContent(ctx, msgs, opts...)
}

var (
	questions = []string{"my name is Ada", "what is 2+2?", "and 3+3?", "what is my name?"}
	answers   = []string{"hello Ada", "4", "6", "Ada"}
)

// converse runs a conversation chain over buf through every question and
// returns the prompts the model was sent.
func converse(t *testing.T, buf schema.Memory) []string {
	t.Helper()
	ctx := context.Background()
	llm := &promptRecorder{LLM: fake.NewFakeLLM(answers)}
	chain := chains.NewConversation(llm, buf)
	for i, q := range questions {
		got, err := chains.Run(ctx, chain, q)
		require.NoError(t, err)
		require.Equal(t, answers[i], got)
	}
	return llm.prompts
}

// requireExchanges checks the session holds the exchanges from the
// first-th on, one turn each.
func requireExchanges(t *testing.T, mem memory.Memory, sessionID string, first int) {
	t.Helper()
	w := allTurns(t, mem, sessionID)
	require.Equal(t, len(questions)-first, w.TurnCount, "turns stored")
	for i, turn := range w.Turns {
		assert.Equal(t, questions[first+i], turn.User, "turn %d", i)
		assert.Equal(t, answers[first+i], turn.Agent, "turn %d", i)
		assert.Len(t, turn.Messages, 2, "turn %d", i)
	}
}

func TestConversationBuffer(t *testing.T) {
	eachStore(t, func(t *testing.T, b driver.Backend) {
		mem := newMemory(t, b)
		h, err := langchaingo.NewHistory(mem, "s")
		require.NoError(t, err)
		prompts := converse(t, lcmemory.NewConversationBuffer(lcmemory.WithChatHistory(h)))

		requireExchanges(t, mem, "s", 0)
		last := prompts[len(prompts)-1]
		assert.Contains(t, last, "Human: my name is Ada\nAI: hello Ada\nHuman: what is 2+2?\nAI: 4\nHuman: and 3+3?\nAI: 6\nHuman: what is my name?")

		// The history survives the process: a new memory over the same
		// backend reads it back.
		h2, err := langchaingo.NewHistory(newMemory(t, b), "s")
		require.NoError(t, err)
		got, err := h2.Messages(context.Background())
		require.NoError(t, err)
		require.Len(t, got, 2*len(questions))
		assert.Equal(t, llms.HumanChatMessage{Content: "my name is Ada"}, got[0])
		assert.Equal(t, llms.AIChatMessage{Content: "Ada"}, got[len(got)-1])
	})
}

// TestConversationBufferWindow: a ConversationBuffer over a History with
// WithWindow sends the model the newest exchanges and keeps them all.
func TestConversationBufferWindow(t *testing.T) {
	eachStore(t, func(t *testing.T, b driver.Backend) {
		mem := newMemory(t, b)
		h, err := langchaingo.NewHistory(mem, "s", langchaingo.WithWindow(2))
		require.NoError(t, err)
		prompts := converse(t, lcmemory.NewConversationBuffer(lcmemory.WithChatHistory(h)))

		requireExchanges(t, mem, "s", 0)
		last := prompts[len(prompts)-1]
		assert.Contains(t, last, "Current conversation:\nHuman: what is 2+2?\nAI: 4\nHuman: and 3+3?\nAI: 6\nHuman: what is my name?")
		assert.NotContains(t, last, "Ada")
	})
}

// TestConversationWindowBuffer: langchaingo's window buffer cuts the store
// itself, through SetMessages, to its last k exchanges, kept as turns.
func TestConversationWindowBuffer(t *testing.T) {
	eachStore(t, func(t *testing.T, b driver.Backend) {
		mem := newMemory(t, b)
		h, err := langchaingo.NewHistory(mem, "s")
		require.NoError(t, err)
		prompts := converse(t, lcmemory.NewConversationWindowBuffer(2, lcmemory.WithChatHistory(h)))

		requireExchanges(t, mem, "s", 2)
		last := prompts[len(prompts)-1]
		assert.Contains(t, last, "Current conversation:\nHuman: what is 2+2?\nAI: 4\nHuman: and 3+3?\nAI: 6\nHuman: what is my name?")
	})
}

// TestReturnMessages: a buffer returning messages hands the chain the
// typed messages, tool calls included.
func TestReturnMessages(t *testing.T) {
	ctx := context.Background()
	h, err := langchaingo.NewHistory(memory.NewBufferMemory(), "s")
	require.NoError(t, err)
	buf := lcmemory.NewConversationBuffer(lcmemory.WithChatHistory(h), lcmemory.WithReturnMessages(true))
	msgs := conversations[1].msgs
	require.NoError(t, h.SetMessages(ctx, msgs))
	vars, err := buf.LoadMemoryVariables(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, msgs, vars["history"])
}
