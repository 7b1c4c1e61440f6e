package openai

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

// DefaultSummaryInstructions is the system message a Summarizer sends
// unless its Instructions say otherwise.
const DefaultSummaryInstructions = "You keep the running summary of a conversation between a user and an assistant. " +
	"Fold the new turns into the summary so far. Keep every name, number, date, decision, preference and open question; " +
	"drop small talk. Write plain prose in the third person, at most %d tokens. Answer with the summary alone."

// A Summarizer is a memory.Summarizer that asks a chat completions model
// to fold turns into a session's summary (memory.WithSummarizer). It is
// safe for concurrent use.
type Summarizer struct {
	Client       openai.Client
	Model        string // e.g. openai.ChatModelGPT5_4Mini
	Instructions string // a format with one %d, the target tokens; "" for DefaultSummaryInstructions
}

// NewSummarizer returns a Summarizer calling model through client.
func NewSummarizer(client openai.Client, model string) *Summarizer {
	return &Summarizer{Client: client, Model: model}
}

// Summarize implements memory.Summarizer: one chat completion whose
// system message is the instructions and whose user message holds the
// summary so far and the new turns as a transcript (tool calls with their
// results, as they are in the turns).
func (s *Summarizer) Summarize(ctx context.Context, req memory.SummaryRequest) (string, error) {
	if s == nil || s.Model == "" {
		return "", fmt.Errorf("%w: summarizer without a model", ErrInvalid)
	}
	instr := s.Instructions
	if instr == "" {
		instr = DefaultSummaryInstructions
	}
	resp, err := s.Client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: s.Model,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage(fmt.Sprintf(instr, req.MaxTokens)),
			openai.UserMessage(Transcript(req)),
		},
	})
	if err != nil {
		return "", fmt.Errorf("summarize session %s: %w", req.SessionID, err)
	}
	if len(resp.Choices) == 0 {
		return "", fmt.Errorf("summarize session %s: %w", req.SessionID, errNoSummary)
	}
	text := strings.TrimSpace(resp.Choices[0].Message.Content)
	if text == "" {
		return "", fmt.Errorf("summarize session %s: %w", req.SessionID, errNoSummary)
	}
	return text, nil
}

var errNoSummary = errors.New("the model answered no summary")

// Transcript is the user message a Summarizer sends: the summary so far,
// then each turn's messages as "role: text" lines, tool calls and their
// results included.
func Transcript(req memory.SummaryRequest) string {
	var b strings.Builder
	b.WriteString("Summary so far:\n")
	if req.Previous == "" {
		b.WriteString("(none)\n")
	} else {
		b.WriteString(req.Previous)
		b.WriteByte('\n')
	}
	b.WriteString("\nNew turns:\n")
	for _, t := range req.Turns {
		for _, m := range summarize.Messages(t) {
			switch {
			case len(m.ToolCalls) > 0:
				if m.Content != "" {
					fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
				}
				for _, c := range m.ToolCalls {
					fmt.Fprintf(&b, "%s called %s(%s)\n", m.Role, c.Name, c.Arguments)
				}
			case m.Role == memory.RoleTool:
				fmt.Fprintf(&b, "tool result for %s: %s\n", m.ToolCallID, m.Content)
			default:
				fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
			}
		}
	}
	return b.String()
}
