package openai_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tkopenai "github.com/turnkeep/turnkeep/contrib/openai"
	"github.com/turnkeep/turnkeep/memory"
)

// summaryModel answers every chat completion with a summary naming what
// the request held, and records the requests.
type summaryModel struct {
	requests []chatRequest
	fail     bool
}

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

func (s *summaryModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if r.Method != http.MethodPost || r.URL.Path != "/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.requests = append(s.requests, req)
	if s.fail {
		http.Error(w, `{"error":{"message":"overloaded"}}`, http.StatusServiceUnavailable)
		return
	}
	text := "The user is Ada (order 48213)."
	if n := len(s.requests); n > 1 {
		text += " She asked about the weather in Oslo."
	}
	body, _ := json.Marshal(map[string]any{"id": "c", "object": "chat.completion", "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": text}}}})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func TestSummarizer(t *testing.T) {
	model := &summaryModel{}
	srv := httptest.NewServer(model)
	defer srv.Close()
	client := openai.NewClient(option.WithBaseURL(srv.URL), option.WithAPIKey("test"), option.WithMaxRetries(0))
	s := tkopenai.NewSummarizer(client, openai.ChatModelGPT5_4Mini)

	ctx := context.Background()
	got, err := s.Summarize(ctx, memory.SummaryRequest{SessionID: "s1", MaxTokens: 120, Turns: []memory.Turn{
		{ID: "t1", User: "I am Ada, order 48213.", Agent: "Hello Ada."},
		{ID: "t2", Messages: []memory.Message{
			{Role: memory.RoleUser, Content: "Weather in Oslo?"},
			{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: "c1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}},
			{Role: memory.RoleTool, ToolCallID: "c1", Content: `{"sky":"rain"}`},
			{Role: memory.RoleAssistant, Content: "It rains in Oslo."},
		}},
	}})
	require.NoError(t, err)
	assert.Equal(t, "The user is Ada (order 48213).", got)
	require.Len(t, model.requests, 1)
	req := model.requests[0]
	assert.Equal(t, string(openai.ChatModelGPT5_4Mini), req.Model)
	require.Len(t, req.Messages, 2)
	assert.Equal(t, "system", req.Messages[0].Role)
	assert.Contains(t, req.Messages[0].Content, "at most 120 tokens")
	assert.Equal(t, "user", req.Messages[1].Role)
	for _, want := range []string{"Summary so far:\n(none)", "user: I am Ada, order 48213.", "assistant: Hello Ada.",
		`assistant called get_weather({"city":"Oslo"})`, `tool result for c1: {"sky":"rain"}`, "assistant: It rains in Oslo."} {
		assert.Contains(t, req.Messages[1].Content, want)
	}

	// The summary so far is sent with the next turns.
	_, err = s.Summarize(ctx, memory.SummaryRequest{SessionID: "s1", Previous: got, MaxTokens: 120, Turns: []memory.Turn{{ID: "t3", User: "thanks", Agent: "welcome"}}})
	require.NoError(t, err)
	assert.Contains(t, model.requests[1].Messages[1].Content, "Summary so far:\n"+got)

	// A failing model is an error, never an empty summary.
	model.fail = true
	_, err = s.Summarize(ctx, memory.SummaryRequest{SessionID: "s1", MaxTokens: 120, Turns: []memory.Turn{{ID: "t4", User: "x"}}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "summarize session s1")
}

// Messages starts a window with a summary with a system message holding it.
func TestMessagesWithSummary(t *testing.T) {
	w := memory.Window{Turns: []memory.Turn{{ID: "t9", User: "and now?", Agent: "now this"}}, TurnCount: 9,
		Summary: &memory.Summary{Text: "Ada, order 48213.", Turns: 8, Tokens: 6}}
	w.Turns[0].Messages = []memory.Message{{Role: memory.RoleUser, Content: "and now?"}, {Role: memory.RoleAssistant, Content: "now this"}}
	msgs, err := tkopenai.Messages(w)
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	raw, err := json.Marshal(msgs[0])
	require.NoError(t, err)
	assert.True(t, strings.Contains(string(raw), `"role":"system"`) && strings.Contains(string(raw), tkopenai.SummaryPrefix+"Ada, order 48213."), "%s", raw)
}
