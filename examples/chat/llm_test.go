package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/memory"
)

func TestLLMEndpoint(t *testing.T) {
	tests := []struct{ base, want string }{
		{"http://localhost:11434", "http://localhost:11434/v1/chat/completions"},
		{"http://localhost:11434/", "http://localhost:11434/v1/chat/completions"},
		{"http://localhost:11434/v1", "http://localhost:11434/v1/chat/completions"},
		{"http://localhost:11434/v1/", "http://localhost:11434/v1/chat/completions"},
		{" https://api.example.com/v1 ", "https://api.example.com/v1/chat/completions"},
		{"https://api.example.com/v1/chat/completions", "https://api.example.com/v1/chat/completions"},
		{"https://gw.example.com/openai?api-version=1", "https://gw.example.com/openai/v1/chat/completions?api-version=1"},
	}
	for _, tt := range tests {
		a, err := newLLMAgent(tt.base, "", "")
		require.NoError(t, err, "base %q", tt.base)
		assert.Equal(t, tt.want, a.endpoint, "base %q", tt.base)
		assert.Equal(t, DefaultLLMModel, a.model)
		assert.Equal(t, DefaultLLMTimeout, a.client.Timeout)
	}
	for _, bad := range []string{"localhost:11434", "ftp://host/", "http://", "://x", "http://user:hunter2@[::1"} {
		_, err := newLLMAgent(bad, "", "")
		require.Error(t, err, "base %q", bad)
		assert.Contains(t, err.Error(), EnvLLMURL)
		assert.NotContains(t, err.Error(), "hunter2")
	}
}

func TestLLMBadResponses(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"no choices", 200, `{"choices":[]}`, "llm: response has no choices"},
		{"empty reply", 200, `{"choices":[{"message":{"role":"assistant","content":"  "},"finish_reason":"length"}]}`, `llm: empty reply (finish_reason "length")`},
		{"not json", 200, "<html>\n<body>Welcome</body></html>", "llm: decode response: invalid character '<' looking for beginning of value: <html> <body>Welcome</body></html>"},
		{"not found", 404, "404 page not found", `llm: 404 Not Found: 404 page not found (is TURNKEEP_LLM_URL the base URL of an OpenAI-compatible server, and model "llama3.2" available?)`},
		{"long error", 502, strings.Repeat("é", 500), "llm: 502 Bad Gateway: " + strings.Repeat("é", 200) + "…"},
		{"empty error", 401, "", "llm: 401 Unauthorized: (empty body)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			a, err := newLLMAgent(srv.URL, "", "")
			require.NoError(t, err)
			var emitted []memory.Message
			err = a.Reply(context.Background(), window(0), "hi", func(m memory.Message) { emitted = append(emitted, m) })
			require.Error(t, err, "emitted %v", emitted)
			assert.Equal(t, tt.want, err.Error())
			assert.Empty(t, emitted)
		})
	}
}

func TestLLMReplyHonoursContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	a, err := newLLMAgent(srv.URL, "", "")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = a.Reply(ctx, window(0), "hi", func(memory.Message) { t.Error("emitted a message") })
	require.ErrorIs(t, err, context.Canceled)
}

// toolCallMessage is an assistant message of a response calling the
// calculator.
func toolCallMessage(id, expr string) map[string]any {
	args, _ := json.Marshal(calculatorArgs{Expression: expr})
	return map[string]any{"role": "assistant", "content": nil, "tool_calls": []map[string]any{{
		"id": id, "type": "function", "function": map[string]any{"name": calculatorName, "arguments": string(args)},
	}}}
}

func TestLLMToolRounds(t *testing.T) {
	calls := 0
	srv := newChatServer(t, func(req chatRequest) (int, any) {
		calls++
		if calls <= 2 { // two rounds of tool calls, the second with two calls and an unknown tool
			if calls == 2 {
				m := toolCallMessage("c2", "2+2")
				m["content"] = "  Let me check.\n"
				m["tool_calls"] = append(m["tool_calls"].([]map[string]any), map[string]any{
					"type": "function", "function": map[string]any{"name": "weather", "arguments": map[string]any{"city": "Oslo"}},
				})
				return http.StatusOK, m
			}
			return http.StatusOK, toolCallMessage("c1", "6*7")
		}
		return http.StatusOK, map[string]any{"role": "assistant", "content": "42, and 4."}
	})
	a, err := newLLMAgent(srv.URL, "", "")
	require.NoError(t, err)
	msgs := reply(t, a, window(0), "6*7 and 2+2?")
	require.Len(t, msgs, 6, "%v", msgs)

	assert.Equal(t, memory.Message{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: "c1", Name: calculatorName, Arguments: `{"expression":"6*7"}`}}}, msgs[0])
	assert.Equal(t, memory.Message{Role: memory.RoleTool, Name: calculatorName, ToolCallID: "c1", Content: "42"}, msgs[1])
	assert.Equal(t, "Let me check.", msgs[2].Content, "trimmed")
	require.Len(t, msgs[2].ToolCalls, 2)
	generated := msgs[2].ToolCalls[1].ID
	assert.True(t, strings.HasPrefix(generated, "call_"), "a call without an ID gets one: %q", generated)
	assert.Equal(t, memory.ToolCall{ID: generated, Name: "weather", Arguments: `{"city":"Oslo"}`}, msgs[2].ToolCalls[1], "object arguments are taken as JSON text")
	assert.Equal(t, memory.Message{Role: memory.RoleTool, Name: calculatorName, ToolCallID: "c2", Content: "4"}, msgs[3])
	assert.Equal(t, memory.Message{Role: memory.RoleTool, Name: "weather", ToolCallID: generated, Content: `error: unknown tool "weather"`}, msgs[4])
	assert.Equal(t, memory.Message{Role: memory.RoleAssistant, Content: "42, and 4."}, msgs[5])

	reqs := srv.recorded()
	require.Len(t, reqs, 3)
	for i, req := range reqs {
		require.Len(t, req.body.Tools, 1, "request %d offers the calculator", i)
		assert.Equal(t, calculatorTool, req.body.Tools[0])
	}
	assert.Equal(t, []chatMessage{
		{Role: "user", Content: "6*7 and 2+2?"},
		{Role: "assistant", ToolCalls: []wireToolCall{{ID: "c1", Type: "function", Function: wireFunction{Name: calculatorName, Arguments: `{"expression":"6*7"}`}}}},
		{Role: "tool", Content: "42", ToolCallID: "c1"},
		{Role: "assistant", Content: "Let me check.", ToolCalls: []wireToolCall{
			{ID: "c2", Type: "function", Function: wireFunction{Name: calculatorName, Arguments: `{"expression":"2+2"}`}},
			{ID: generated, Type: "function", Function: wireFunction{Name: "weather", Arguments: `{"city":"Oslo"}`}},
		}},
		{Role: "tool", Content: "4", ToolCallID: "c2"},
		{Role: "tool", Content: `error: unknown tool "weather"`, ToolCallID: generated},
	}, reqs[2].body.Messages[1:])
	// Arguments go out as a JSON string, as OpenAI sends them.
	last := reqs[2].raw["messages"].([]any)
	fn := last[2].(map[string]any)["tool_calls"].([]any)[0].(map[string]any)["function"].(map[string]any)
	assert.Equal(t, `{"expression":"6*7"}`, fn["arguments"])
	assert.NotContains(t, last[2].(map[string]any), "content", "an assistant message that only calls tools has no content")
}

func TestLLMToolRoundsAreBounded(t *testing.T) {
	srv := newChatServer(t, func(chatRequest) (int, any) { return http.StatusOK, toolCallMessage("c", "1+1") })
	a, err := newLLMAgent(srv.URL, "", "")
	require.NoError(t, err)
	var emitted []memory.Message
	err = a.Reply(context.Background(), window(0), "loop", func(m memory.Message) { emitted = append(emitted, m) })
	require.Error(t, err)
	assert.Equal(t, "llm: the model still calls tools after 4 rounds", err.Error())
	assert.Len(t, srv.recorded(), maxToolRounds+1)
	assert.Len(t, emitted, 2*maxToolRounds, "each round's call and result")
}

func TestLLMWithoutToolSupport(t *testing.T) {
	srv := newChatServer(t, func(req chatRequest) (int, any) {
		if len(req.Tools) > 0 {
			return http.StatusBadRequest, `{"error":{"message":"registry.ollama.ai/library/gemma:2b does not support tools"}}`
		}
		return http.StatusOK, map[string]any{"role": "assistant", "content": "hi"}
	})
	a, err := newLLMAgent(srv.URL, "", "")
	require.NoError(t, err)
	assert.Equal(t, []memory.Message{{Role: memory.RoleAssistant, Content: "hi"}}, reply(t, a, window(0), "hello"))
	assert.Equal(t, []memory.Message{{Role: memory.RoleAssistant, Content: "hi"}}, reply(t, a, window(0), "again"))
	reqs := srv.recorded()
	require.Len(t, reqs, 3, "tools are offered once, then not any more")
	assert.NotEmpty(t, reqs[0].body.Tools)
	assert.Empty(t, reqs[1].body.Tools)
	assert.Empty(t, reqs[2].body.Tools)
	assert.NotContains(t, reqs[2].raw, "tools")

	// Any other 400 is an error as before.
	srv = newChatServer(t, func(chatRequest) (int, any) { return http.StatusBadRequest, "bad model" })
	a, err = newLLMAgent(srv.URL, "", "")
	require.NoError(t, err)
	err = a.Reply(context.Background(), window(0), "hello", func(memory.Message) {})
	require.Error(t, err)
	assert.Equal(t, "llm: 400 Bad Request: bad model", err.Error())
	assert.Len(t, srv.recorded(), 1)
}

func TestTurnMessages(t *testing.T) {
	call := func(id string) memory.ToolCall {
		return memory.ToolCall{ID: id, Name: calculatorName, Arguments: `{"expression":"1"}`}
	}
	wire := func(id string) wireToolCall {
		return wireToolCall{ID: id, Type: "function", Function: wireFunction{Name: calculatorName, Arguments: `{"expression":"1"}`}}
	}
	turn := []memory.Message{
		{Role: memory.RoleSystem, Content: "be brief"},
		{Role: memory.RoleUser, Content: "look", Name: "ada", Parts: []memory.Part{{Type: "text", Text: "at this"}, {Type: "image", URL: "http://x/a.png"}}},
		{Role: memory.RoleUser, Parts: []memory.Part{{Type: "image", URL: "http://x/b.png"}}}, // nothing to read
		{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{call("a"), call("b")}},
		{Role: memory.RoleTool, Name: calculatorName, ToolCallID: "a", Content: "1"},
		{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{call("c")}}, // cut short: no result
		{Role: memory.RoleTool, ToolCallID: "zz", Content: "orphan"},
	}
	assert.Equal(t, []chatMessage{
		{Role: "system", Content: "be brief"},
		{Role: "user", Content: "look\nat this", Name: "ada"},
		{Role: "assistant", ToolCalls: []wireToolCall{wire("a")}},
		{Role: "tool", Content: "1", ToolCallID: "a"},
	}, turnMessages(turn))
}

// With an LLM configured the chat's summarizer is the model: a fold is
// one request, without tools, with the summary so far and the new turns,
// tool calls and results included; a model answering no summary is an
// error. Offline, it is the extractive summarizer, which asks no model.
func TestSummarizerFollowsTheAgent(t *testing.T) {
	ctx := context.Background()
	answer := " Ada Lovelace, born 1815; 6*7 is 42. "
	srv := newLLMServer(t, func(string) (int, string) { return http.StatusOK, answer })
	env := map[string]string{EnvLLMURL: srv.URL, EnvLLMModel: "m"}
	agent, _, err := newAgent(func(k string) string { return env[k] })
	require.NoError(t, err)
	s := summarizerFor(agent)
	require.Same(t, agent.(*llmAgent), s, "the model summarizes")
	turns := []memory.Turn{
		{ID: "t1", Messages: []memory.Message{{Role: memory.RoleUser, Content: "My name is Ada Lovelace and I was born in 1815."}, {Role: memory.RoleAssistant, Content: "Noted, Ada."}}},
		{ID: "t2", Messages: []memory.Message{
			{Role: memory.RoleUser, Content: "What is 6*7?"},
			{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: "c1", Name: "calc", Arguments: `{"expr":"6*7"}`}}},
			{Role: memory.RoleTool, ToolCallID: "c1", Content: "42"},
			{Role: memory.RoleAssistant, Content: "It is 42."},
		}},
	}
	text, err := s.Summarize(ctx, memory.SummaryRequest{SessionID: "s", Previous: "Earlier: tea.", Turns: turns, MaxTokens: 80})
	require.NoError(t, err)
	assert.Equal(t, "Ada Lovelace, born 1815; 6*7 is 42.", text)
	reqs := srv.recorded()
	require.Len(t, reqs, 1)
	req := reqs[0].body
	assert.Empty(t, req.Tools, "a summary request offers no tools")
	require.Len(t, req.Messages, 2)
	assert.Contains(t, req.Messages[0].Content, "at most 80 tokens")
	for _, want := range []string{"Summary so far: Earlier: tea.", "user: My name is Ada Lovelace and I was born in 1815.",
		`assistant called calc({"expr":"6*7"})`, "tool: 42", "assistant: It is 42."} {
		assert.Contains(t, req.Messages[1].Content, want)
	}

	answer = "  "
	_, err = s.Summarize(ctx, memory.SummaryRequest{SessionID: "s", Turns: turns[:1], MaxTokens: 80})
	require.ErrorContains(t, err, "no summary in the response")

	agent, _, err = newAgent(func(string) string { return "" })
	require.NoError(t, err)
	s = summarizerFor(agent)
	_, isAgent := s.(Agent)
	assert.False(t, isAgent, "offline, the agent is not the summarizer")
	text, err = s.Summarize(ctx, memory.SummaryRequest{SessionID: "s", Turns: turns, MaxTokens: 80})
	require.NoError(t, err)
	assert.Contains(t, text, "Ada Lovelace")
	assert.Contains(t, text, "1815")
	assert.Len(t, srv.recorded(), 2, "offline, no model is asked")
}
