package summarize_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

// The summarizer is deterministic and keeps within MaxTokens.
func TestExtractiveSummarizerDeterministic(t *testing.T) {
	s := summarize.NewExtractive(nil)
	req := memory.SummaryRequest{SessionID: "s", MaxTokens: 20, Turns: []memory.Turn{
		{ID: "a", Messages: []memory.Message{{Role: memory.RoleUser, Content: "I live in Bergen. The sky is blue. My PIN hint is 7781."}}},
	}}
	one, err := s.Summarize(context.Background(), req)
	require.NoError(t, err)
	two, err := s.Summarize(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, one, two)
	assert.Contains(t, one, "7781")
	assert.LessOrEqual(t, memory.DefaultTokenCounter.CountTokens(memory.Message{Role: memory.RoleSystem, Content: one}), 20)
}

// A turn given by its shorthand is read as the messages it stands for, and
// a turn with messages as those messages.
func TestMessages(t *testing.T) {
	assert.Equal(t, []memory.Message{{Role: memory.RoleUser, Content: "hi"}, {Role: memory.RoleAssistant, Content: "hello"}},
		summarize.Messages(memory.Turn{User: "hi", Agent: "hello"}))
	msgs := []memory.Message{{Role: memory.RoleUser, Content: "q"}, {Role: memory.RoleTool, Content: "r", ToolCallID: "c"}}
	assert.Equal(t, msgs, summarize.Messages(memory.Turn{User: "ignored", Messages: msgs}))
	assert.Empty(t, summarize.Messages(memory.Turn{}))
}

// The extractive summarizer keeps the sentences that name and number
// things, within the target size.
func ExampleNewExtractive() {
	s := summarize.NewExtractive(nil)
	text, err := s.Summarize(context.Background(), memory.SummaryRequest{
		SessionID: "support-42",
		MaxTokens: 30,
		Turns: []memory.Turn{
			{User: "Hello there. My name is Ada Lovelace and my ticket is 5521.", Agent: "Thanks, Ada. How can I help?"},
			{User: "it keeps crashing", Agent: "Sorry to hear that."},
		},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(text)
	// Output: My name is Ada Lovelace and my ticket is 5521. How can I help?
}
