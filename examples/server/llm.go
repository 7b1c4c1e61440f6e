package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/memory"
)

// Environment variables that select and configure the language model, as
// in examples/chat.
const (
	EnvLLMURL    = "TURNKEEP_LLM_URL"     // OpenAI-compatible base URL, e.g. http://localhost:11434
	EnvLLMModel  = "TURNKEEP_LLM_MODEL"   // default DefaultLLMModel
	EnvLLMAPIKey = "TURNKEEP_LLM_API_KEY" // sent as a bearer token if set
)

// Defaults of the language-model agent.
const (
	DefaultLLMModel = "llama3.2"
	// DefaultLLMTimeout bounds a whole answer, streamed or not.
	DefaultLLMTimeout = 2 * time.Minute
)

// maxErrorBytes bounds how much of an error response is read.
const maxErrorBytes = 64 << 10

// llmAgent streams answers from an OpenAI-compatible chat completions
// endpoint ("stream": true, server-sent events of deltas). A server that
// ignores "stream" and answers with one JSON object is understood too; its
// answer is then emitted whole. Unlike examples/chat, it offers no tools:
// the server shows streaming, and a streamed tool call is a protocol of its
// own.
type llmAgent struct {
	endpoint string // …/v1/chat/completions
	model    string
	apiKey   string // "" sends no Authorization header
	client   *http.Client
}

// newLLMAgent returns an agent for the server at base, which may be the
// server's root (http://localhost:11434), its /v1 prefix, or the full
// /v1/chat/completions URL. An empty model means DefaultLLMModel.
func newLLMAgent(base, model, apiKey string) (*llmAgent, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: want an http:// or https:// URL such as http://localhost:11434, got %q", EnvLLMURL, redactURL(base))
	}
	path := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(path, "/chat/completions") {
		if !strings.HasSuffix(path, "/v1") {
			path += "/v1"
		}
		path += "/chat/completions"
	}
	u.Path, u.RawPath = path, ""
	if model = strings.TrimSpace(model); model == "" {
		model = DefaultLLMModel
	}
	return &llmAgent{
		endpoint: u.String(),
		model:    model,
		apiKey:   strings.TrimSpace(apiKey),
		client:   &http.Client{Timeout: DefaultLLMTimeout},
	}, nil
}

type (
	chatRequest struct {
		Model    string        `json:"model"`
		Messages []chatMessage `json:"messages"`
		Stream   bool          `json:"stream"`
	}
	chatMessage struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	// chatChunk is one event of a streamed answer, and (with Message) a
	// whole answer from a server that does not stream.
	chatChunk struct {
		Choices []struct {
			Delta   chatMessage `json:"delta"`
			Message chatMessage `json:"message"`
		} `json:"choices"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
)

// requestMessages returns the request: a system prompt, each remembered
// turn as its user message and its answer (the stored pieces joined), and
// message.
func requestMessages(w memory.Window, message string) []chatMessage {
	prompt := "You are a helpful assistant in a web chat with persistent memory. " +
		"The earlier messages are the conversation so far, remembered across restarts; use them."
	if len(w.Turns) < w.TurnCount {
		prompt += fmt.Sprintf(" The conversation has %d turns; you see the last %d.", w.TurnCount, len(w.Turns))
	}
	if w.Summary != nil && w.Summary.Text != "" {
		prompt += fmt.Sprintf(" A summary of its first %d turns: %s", w.Summary.Turns, w.Summary.Text)
	}
	msgs := []chatMessage{{Role: "system", Content: prompt}}
	for _, t := range w.Turns {
		if t.User != "" {
			msgs = append(msgs, chatMessage{Role: "user", Content: t.User})
		}
		if a := answerOf(t.Messages); a != "" {
			msgs = append(msgs, chatMessage{Role: "assistant", Content: a})
		}
	}
	return append(msgs, chatMessage{Role: "user", Content: message})
}

func (a *llmAgent) Stream(ctx context.Context, w memory.Window, message string, emit func(string)) error {
	body, err := json.Marshal(chatRequest{Model: a.model, Messages: requestMessages(w, message), Stream: true})
	if err != nil {
		return fmt.Errorf("llm: encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("llm: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream, application/json")
	if a.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+a.apiKey)
	}
	resp, err := a.client.Do(req) // the error names the URL without its password
	if err != nil {
		return fmt.Errorf("llm: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
		return fmt.Errorf("llm: %s: %s", resp.Status, excerpt(data))
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "text/event-stream" {
		return emitWhole(resp.Body, emit)
	}
	return emitEvents(resp.Body, emit)
}

// emitWhole emits the answer of a server that did not stream.
func emitWhole(body io.Reader, emit func(string)) error {
	var c chatChunk
	if err := json.NewDecoder(body).Decode(&c); err != nil {
		return fmt.Errorf("llm: decode response: %w", err)
	}
	if c.Error != nil {
		return fmt.Errorf("llm: %s", c.Error.Message)
	}
	if len(c.Choices) == 0 || c.Choices[0].Message.Content == "" {
		return errors.New("llm: empty answer")
	}
	emit(c.Choices[0].Message.Content)
	return nil
}

// emitEvents reads server-sent events of chat completion chunks up to
// "data: [DONE]" and emits the content of each delta.
func emitEvents(body io.Reader, emit func(string)) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	emitted := false
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data:")
		if !ok {
			continue // event names, ids, comments and the blank lines between events
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			if !emitted {
				return errors.New("llm: empty answer")
			}
			return nil
		}
		var c chatChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return fmt.Errorf("llm: decode event: %w: %s", err, excerpt([]byte(data)))
		}
		if c.Error != nil {
			return fmt.Errorf("llm: %s", c.Error.Message)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != "" {
				emit(ch.Delta.Content)
				emitted = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("llm: read stream: %w", err)
	}
	return errors.New("llm: the stream ended without [DONE]")
}

// excerpt returns the start of a response body on one line, for errors.
func excerpt(data []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(data), "\uFFFD")), " ")
	if s == "" {
		return "(empty body)"
	}
	if r := []rune(s); len(r) > 200 {
		s = string(r[:200]) + "…"
	}
	return s
}

// redactURL hides the password of a URL for printing.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)" // the text may hold a password
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	return raw
}

// summaryInstructions is the system message of a summary request.
const summaryInstructions = "You keep the running summary of a conversation between a user and an assistant. " +
	"Fold the new turns into the summary so far. Keep every name, number, date, decision and preference; " +
	"drop small talk. Write plain prose, at most %d tokens. Answer with the summary alone."

// Summarize makes the agent's model the server's summarizer
// (memory.Summarizer): one request, not streamed, holding the summary so
// far and the new turns, tool calls with their results.
func (a *llmAgent) Summarize(ctx context.Context, req memory.SummaryRequest) (string, error) {
	var b strings.Builder
	b.WriteString("Summary so far: ")
	if req.Previous == "" {
		b.WriteString("(none)")
	}
	b.WriteString(req.Previous)
	b.WriteString("\n\nNew turns:\n")
	for _, t := range req.Turns {
		for _, m := range t.Messages {
			if m.Content != "" {
				fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
			}
			for _, c := range m.ToolCalls {
				fmt.Fprintf(&b, "%s called %s(%s)\n", m.Role, c.Name, c.Arguments)
			}
		}
	}
	body, err := json.Marshal(chatRequest{Model: a.model, Messages: []chatMessage{
		{Role: "system", Content: fmt.Sprintf(summaryInstructions, req.MaxTokens)},
		{Role: "user", Content: b.String()},
	}})
	if err != nil {
		return "", fmt.Errorf("llm: encode request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("llm: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if a.apiKey != "" {
		hr.Header.Set("Authorization", "Bearer "+a.apiKey)
	}
	resp, err := a.client.Do(hr)
	if err != nil {
		return "", fmt.Errorf("llm: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("llm: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("llm: %s: %s", resp.Status, excerpt(data))
	}
	var c chatChunk
	if err := json.Unmarshal(data, &c); err != nil || len(c.Choices) == 0 || strings.TrimSpace(c.Choices[0].Message.Content) == "" {
		return "", fmt.Errorf("llm: no summary in the response: %s", excerpt(data))
	}
	return strings.TrimSpace(c.Choices[0].Message.Content), nil
}
