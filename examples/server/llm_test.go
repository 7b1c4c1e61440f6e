package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// fakeLLM is an OpenAI-compatible server that answers every request with
// respond, and records the requests.
func fakeLLM(t *testing.T, respond func(w http.ResponseWriter, req chatRequest)) (*httptest.Server, *[]chatRequest) {
	t.Helper()
	var got []chatRequest
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Method != "POST" {
			http.NotFound(w, r)
			return
		}
		var req chatRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got = append(got, req) // the handler runs once at a time in these tests
		respond(w, req)
	}))
	t.Cleanup(ts.Close)
	return ts, &got
}

// streamWords streams text word by word, as OpenAI does.
func streamWords(text string) func(http.ResponseWriter, chatRequest) {
	return func(w http.ResponseWriter, _ chatRequest) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": a comment\n\n")
		for _, word := range strings.SplitAfter(text, " ") {
			data, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"delta": map[string]string{"content": word}}}})
			fmt.Fprintf(w, "data: %s\n\n", data)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}
}

func collect(t *testing.T, a Agent, w memory.Window, message string) ([]string, error) {
	t.Helper()
	var pieces []string
	err := a.Stream(context.Background(), w, message, func(s string) { pieces = append(pieces, s) })
	return pieces, err
}

func TestLLMStreams(t *testing.T) {
	ts, got := fakeLLM(t, streamWords("Hello there Ada."))
	a, err := newLLMAgent(ts.URL, "", "secret")
	require.NoError(t, err)
	w := memory.Window{TurnCount: 3, Turns: []memory.Turn{{User: "my name is Ada", Messages: []memory.Message{
		{Role: memory.RoleUser, Content: "my name is Ada"},
		{Role: memory.RoleAssistant, Content: "Nice to ", Metadata: map[string]any{partialKey: true}},
		{Role: memory.RoleAssistant, Content: "meet you."},
	}}}}
	pieces, err := collect(t, a, w, "hi")
	require.NoError(t, err)
	assert.Equal(t, []string{"Hello ", "there ", "Ada."}, pieces)
	require.Len(t, *got, 1)
	req := (*got)[0]
	assert.True(t, req.Stream)
	assert.Equal(t, DefaultLLMModel, req.Model)
	require.Len(t, req.Messages, 4)
	assert.Contains(t, req.Messages[0].Content, "you see the last 1")
	assert.Equal(t, []chatMessage{
		{Role: "user", Content: "my name is Ada"},
		{Role: "assistant", Content: "Nice to meet you."}, // the segments joined
		{Role: "user", Content: "hi"},
	}, req.Messages[1:])
}

func TestLLMResponses(t *testing.T) {
	for _, c := range []struct {
		name    string
		respond func(http.ResponseWriter, chatRequest)
		want    []string
		err     string
	}{
		{name: "not streamed", want: []string{"All at once."}, respond: func(w http.ResponseWriter, _ chatRequest) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"choices":[{"message":{"role":"assistant","content":"All at once."}}]}`)
		}},
		{name: "error status", err: "llm: 404 Not Found: model \"x\" not found", respond: func(w http.ResponseWriter, _ chatRequest) {
			http.Error(w, `model "x" not found`, http.StatusNotFound)
		}},
		{name: "error event", want: []string{"Hal"}, err: "llm: overloaded", respond: func(w http.ResponseWriter, _ chatRequest) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"Hal\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n")
		}},
		{name: "cut short", want: []string{"Hal"}, err: "without [DONE]", respond: func(w http.ResponseWriter, _ chatRequest) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"Hal\"}}]}\n\n")
		}},
		{name: "empty", err: "empty answer", respond: func(w http.ResponseWriter, _ chatRequest) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: [DONE]\n\n")
		}},
		{name: "garbage", err: "decode event", respond: func(w http.ResponseWriter, _ chatRequest) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {nope\n\n")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts, _ := fakeLLM(t, c.respond)
			a, err := newLLMAgent(ts.URL+"/v1/", "m", "")
			require.NoError(t, err)
			pieces, err := collect(t, a, memory.Window{}, "hi")
			assert.Equal(t, c.want, pieces)
			if c.err == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, c.err)
			}
		})
	}
}

func TestLLMURL(t *testing.T) {
	for base, want := range map[string]string{
		"http://localhost:11434":                      "http://localhost:11434/v1/chat/completions",
		"http://localhost:11434/v1":                   "http://localhost:11434/v1/chat/completions",
		"https://api.example.com/v1/chat/completions": "https://api.example.com/v1/chat/completions",
	} {
		a, err := newLLMAgent(base, "", "")
		require.NoError(t, err)
		assert.Equal(t, want, a.endpoint)
	}
	_, err := newLLMAgent("ftp://user:pw@x", "", "")
	assert.ErrorContains(t, err, EnvLLMURL)
	assert.NotContains(t, err.Error(), "pw")
}

// TestServerWithLLM answers through the server from a streaming model.
func TestServerWithLLM(t *testing.T) {
	ts, got := fakeLLM(t, streamWords("Streamed from the model."))
	agent, name, err := newAgent(func(k string) string { return map[string]string{EnvLLMURL: ts.URL, EnvLLMModel: "tiny"}[k] })
	require.NoError(t, err)
	assert.Contains(t, name, "tiny at ")
	in := newInstance(t, dbtest.SQLiteURL(t), agent)
	s := in.create(t, "ada")
	events := in.send(t, "ada", s.ID, "first")
	assert.Equal(t, "Streamed from the model.", answer(t, events))
	assert.Len(t, events, 2+4, "turn, a delta per word, done")
	answer(t, in.send(t, "ada", s.ID, "second"))
	require.Len(t, *got, 2)
	assert.Equal(t, []chatMessage{
		{Role: "user", Content: "first"},
		{Role: "assistant", Content: "Streamed from the model."},
		{Role: "user", Content: "second"},
	}, (*got)[1].Messages[1:], "the model is sent the remembered turns")
}

// summaryTurns are two turns to fold: a name and a number, then a tool
// call with its result.
var summaryTurns = []memory.Turn{
	{ID: "t1", Messages: []memory.Message{{Role: memory.RoleUser, Content: "My name is Ada Lovelace and I was born in 1815."}, {Role: memory.RoleAssistant, Content: "Noted, Ada."}}},
	{ID: "t2", Messages: []memory.Message{
		{Role: memory.RoleUser, Content: "Weather in Oslo?"},
		{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: "c1", Name: "weather", Arguments: `{"city":"Oslo"}`}}},
		{Role: memory.RoleTool, ToolCallID: "c1", Content: "rain"},
		{Role: memory.RoleAssistant, Content: "It rains in Oslo."},
	}},
}

// With an LLM configured the server's summarizer is the model: a fold is
// one request, not streamed, with the summary so far and the new turns,
// tool calls and results included; a model answering no summary is an
// error. Offline, it is the extractive summarizer, which asks no model.
func TestSummarizerFollowsTheAgent(t *testing.T) {
	ctx := context.Background()
	answer := " Ada Lovelace, born 1815; it rains in Oslo. "
	srv, got := fakeLLM(t, func(w http.ResponseWriter, _ chatRequest) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"message": map[string]string{"role": "assistant", "content": answer}}}})
	})
	env := map[string]string{EnvLLMURL: srv.URL, EnvLLMModel: "m"}
	agent, _, err := newAgent(func(k string) string { return env[k] })
	require.NoError(t, err)
	s := summarizerFor(agent)
	require.Same(t, agent.(*llmAgent), s, "the model summarizes")
	text, err := s.Summarize(ctx, memory.SummaryRequest{SessionID: "s", Previous: "Earlier: tea.", Turns: summaryTurns, MaxTokens: 80})
	require.NoError(t, err)
	assert.Equal(t, "Ada Lovelace, born 1815; it rains in Oslo.", text)
	require.Len(t, *got, 1)
	req := (*got)[0]
	assert.False(t, req.Stream)
	require.Len(t, req.Messages, 2)
	assert.Contains(t, req.Messages[0].Content, "at most 80 tokens")
	for _, want := range []string{"Summary so far: Earlier: tea.", "user: My name is Ada Lovelace and I was born in 1815.",
		`assistant called weather({"city":"Oslo"})`, "tool: rain", "assistant: It rains in Oslo."} {
		assert.Contains(t, req.Messages[1].Content, want)
	}

	answer = "  "
	_, err = s.Summarize(ctx, memory.SummaryRequest{SessionID: "s", Turns: summaryTurns[:1], MaxTokens: 80})
	require.ErrorContains(t, err, "no summary in the response")

	agent, _, err = newAgent(func(string) string { return "" })
	require.NoError(t, err)
	s = summarizerFor(agent)
	_, isAgent := s.(Agent)
	assert.False(t, isAgent, "offline, the agent is not the summarizer")
	text, err = s.Summarize(ctx, memory.SummaryRequest{SessionID: "s", Turns: summaryTurns, MaxTokens: 80})
	require.NoError(t, err)
	assert.Contains(t, text, "Ada Lovelace")
	assert.Contains(t, text, "1815")
	assert.Len(t, *got, 2, "offline, no model is asked")
}
