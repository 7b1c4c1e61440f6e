package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/turnkeep/turnkeep/memory"
)

// Environment variables that select and configure the language model.
const (
	EnvLLMURL    = "TURNKEEP_LLM_URL"     // OpenAI-compatible base URL, e.g. http://localhost:11434
	EnvLLMModel  = "TURNKEEP_LLM_MODEL"   // default DefaultLLMModel
	EnvLLMAPIKey = "TURNKEEP_LLM_API_KEY" // sent as a bearer token if set
)

// Defaults of the language-model agent.
const (
	DefaultLLMModel   = "llama3.2"
	DefaultLLMTimeout = 60 * time.Second
)

// maxResponseBytes bounds how much of a response is read.
const maxResponseBytes = 8 << 20

// maxToolRounds bounds how many times in one answer the model may call
// tools before it must answer.
const maxToolRounds = 4

// llmAgent asks an OpenAI-compatible chat completions endpoint, sending the
// remembered window as the earlier messages, role by role, tool calls
// included. It offers the model the calculator; when the model calls it,
// the agent runs it and asks again with the result.
type llmAgent struct {
	endpoint string // …/v1/chat/completions
	model    string
	apiKey   string // "" sends no Authorization header
	client   *http.Client
	noTools  atomic.Bool // the server refused a request offering tools
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

// The chat completions wire format.
type (
	chatRequest struct {
		Model    string        `json:"model"`
		Messages []chatMessage `json:"messages"`
		Tools    []toolSpec    `json:"tools,omitempty"`
		Stream   bool          `json:"stream"`
	}
	chatMessage struct {
		Role       string         `json:"role"`
		Content    string         `json:"content,omitempty"` // none in an assistant message that only calls tools
		Name       string         `json:"name,omitempty"`
		ToolCalls  []wireToolCall `json:"tool_calls,omitempty"`
		ToolCallID string         `json:"tool_call_id,omitempty"`
	}
	wireToolCall struct {
		ID       string       `json:"id"`
		Type     string       `json:"type"` // "function"
		Function wireFunction `json:"function"`
	}
	wireFunction struct {
		Name      string        `json:"name"`
		Arguments toolArguments `json:"arguments"`
	}
	toolSpec struct {
		Type     string       `json:"type"` // "function"
		Function toolFunction `json:"function"`
	}
	toolFunction struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"` // a JSON Schema
	}
	chatResponse struct {
		Choices []struct {
			Message      chatMessage `json:"message"`
			FinishReason string      `json:"finish_reason"`
		} `json:"choices"`
	}
)

// toolArguments is the JSON text of a call's arguments. It is sent as a
// string, as OpenAI does; a server that answers with an object instead
// (as Ollama's own API does) is understood too.
type toolArguments string

func (a *toolArguments) UnmarshalJSON(data []byte) error {
	switch {
	case bytes.Equal(data, []byte("null")):
		*a = ""
		return nil
	case len(data) > 0 && data[0] == '"':
		return json.Unmarshal(data, (*string)(a))
	}
	*a = toolArguments(data)
	return nil
}

// systemPrompt introduces the remembered turns, and the summary of the
// older ones, to the model.
func systemPrompt(w memory.Window) string {
	s := "You are a helpful assistant in a terminal chat with persistent memory. " +
		"The earlier messages are the conversation so far, remembered across restarts; use them."
	if len(w.Turns) < w.TurnCount {
		s += fmt.Sprintf(" The conversation has %d turns; you see the last %d.", w.TurnCount, len(w.Turns))
	}
	if w.Summary != nil && w.Summary.Text != "" {
		s += fmt.Sprintf(" A summary of its first %d turns: %s", w.Summary.Turns, w.Summary.Text)
	}
	return s
}

// summaryInstructions is the system message of a summary request.
const summaryInstructions = "You keep the running summary of a conversation between a user and an assistant. " +
	"Fold the new turns into the summary so far. Keep every name, number, date, decision and preference; " +
	"drop small talk. Write plain prose, at most %d tokens. Answer with the summary alone."

// Summarize makes the agent's model the chat's summarizer
// (memory.Summarizer): one request, without tools, holding the summary so
// far and the new turns.
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
			if text := messageText(m, false); text != "" {
				fmt.Fprintf(&b, "%s: %s\n", m.Role, text)
			}
			for _, c := range m.ToolCalls {
				fmt.Fprintf(&b, "%s called %s(%s)\n", m.Role, c.Name, c.Arguments)
			}
		}
	}
	r, err := a.post(ctx, chatRequest{Model: a.model, Messages: []chatMessage{
		{Role: "system", Content: fmt.Sprintf(summaryInstructions, req.MaxTokens)},
		{Role: "user", Content: b.String()},
	}})
	if err != nil {
		return "", err
	}
	if len(r.Choices) == 0 || strings.TrimSpace(r.Choices[0].Message.Content) == "" {
		return "", errors.New("llm: no summary in the response")
	}
	return strings.TrimSpace(r.Choices[0].Message.Content), nil
}

// requestMessages returns the request messages: the system prompt, the
// messages of each remembered turn, then message.
func requestMessages(w memory.Window, message string) []chatMessage {
	msgs := []chatMessage{{Role: "system", Content: systemPrompt(w)}}
	for _, t := range w.Turns {
		msgs = append(msgs, turnMessages(t.Messages)...)
	}
	return append(msgs, chatMessage{Role: "user", Content: message})
}

// turnMessages returns the messages of one turn for a request. A turn cut
// short by a crash may hold a tool call without its result, which servers
// refuse; so only the calls answered in the turn are sent, and only the
// results of calls sent.
func turnMessages(turn []memory.Message) []chatMessage {
	answered := map[string]bool{}
	for _, m := range turn {
		if m.Role == memory.RoleTool {
			answered[m.ToolCallID] = true
		}
	}
	sent := map[string]bool{}
	var out []chatMessage
	for _, m := range turn {
		cm := chatMessage{Role: string(m.Role), Content: messageText(m, false)}
		switch m.Role {
		case memory.RoleTool:
			if !sent[m.ToolCallID] {
				continue
			}
			cm.ToolCallID = m.ToolCallID
		case memory.RoleAssistant:
			for _, c := range m.ToolCalls {
				if answered[c.ID] && !sent[c.ID] {
					sent[c.ID] = true
					cm.ToolCalls = append(cm.ToolCalls, wireCall(c))
				}
			}
			fallthrough
		default:
			cm.Name = m.Name
		}
		if cm.Content == "" && len(cm.ToolCalls) == 0 {
			continue // nothing a model can read, such as only an image
		}
		out = append(out, cm)
	}
	return out
}

func wireCall(c memory.ToolCall) wireToolCall {
	return wireToolCall{ID: c.ID, Type: "function", Function: wireFunction{Name: c.Name, Arguments: toolArguments(c.Arguments)}}
}

func (a *llmAgent) Reply(ctx context.Context, w memory.Window, message string, emit func(memory.Message)) error {
	history := requestMessages(w, message)
	var answer []memory.Message // the tool calls and results so far, sent as a stored turn would be
	for round := 0; ; round++ {
		reply, err := a.complete(ctx, slices.Concat(history, turnMessages(answer)))
		if err != nil {
			return err
		}
		reply.Content = strings.TrimSpace(reply.Content)
		if len(reply.ToolCalls) == 0 {
			if reply.Content == "" {
				return fmt.Errorf("llm: empty reply (finish_reason %q)", reply.finishReason)
			}
			emit(reply.Message)
			return nil
		}
		if round == maxToolRounds {
			return fmt.Errorf("llm: the model still calls tools after %d rounds", maxToolRounds)
		}
		emit(reply.Message)
		answer = append(answer, reply.Message)
		for _, call := range reply.ToolCalls {
			result, _ := callTool(call) // a failure is the result the model reads
			emit(result)
			answer = append(answer, result)
		}
	}
}

// completion is the model's reply to one request.
type completion struct {
	memory.Message // an assistant message
	finishReason   string
}

// complete sends one request and returns the reply as an assistant message.
// Tools are offered unless the server has refused them: a model without
// tool support (Ollama says "does not support tools") is asked again
// without, and from then on.
func (a *llmAgent) complete(ctx context.Context, msgs []chatMessage) (completion, error) {
	req := chatRequest{Model: a.model, Messages: msgs}
	if !a.noTools.Load() {
		req.Tools = []toolSpec{calculatorTool}
	}
	r, err := a.post(ctx, req)
	var refused *statusError
	if req.Tools != nil && errors.As(err, &refused) && refused.status == http.StatusBadRequest &&
		strings.Contains(strings.ToLower(string(refused.body)), "tool") {
		a.noTools.Store(true)
		req.Tools = nil
		r, err = a.post(ctx, req)
	}
	if err != nil {
		return completion{}, err
	}
	if len(r.Choices) == 0 {
		return completion{}, errors.New("llm: response has no choices")
	}
	m := r.Choices[0].Message
	c := completion{Message: memory.Message{Role: memory.RoleAssistant, Content: m.Content}, finishReason: r.Choices[0].FinishReason}
	for _, wc := range m.ToolCalls {
		call := memory.ToolCall{ID: wc.ID, Name: wc.Function.Name, Arguments: string(wc.Function.Arguments)}
		if call.ID == "" { // some servers leave it out; a result must name it
			call.ID = newCallID()
		}
		if call.Arguments != "" && !json.Valid([]byte(call.Arguments)) {
			// Stored arguments must be JSON; kept as a JSON string, the
			// calculator reports them as bad arguments.
			quoted, _ := json.Marshal(call.Arguments)
			call.Arguments = string(quoted)
		}
		c.ToolCalls = append(c.ToolCalls, call)
	}
	return c, nil
}

// A statusError is a response with a status other than 2xx.
type statusError struct {
	status int
	text   string // "404 Not Found"
	body   []byte
	hint   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("llm: %s: %s%s", e.text, excerpt(e.body), e.hint)
}

// post sends req and decodes the response.
func (a *llmAgent) post(ctx context.Context, req chatRequest) (chatResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return chatResponse{}, fmt.Errorf("llm: encode request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint, bytes.NewReader(body))
	if err != nil {
		return chatResponse{}, fmt.Errorf("llm: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if a.apiKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+a.apiKey)
	}
	resp, err := a.client.Do(hreq) // the error names the URL without its password
	if err != nil {
		return chatResponse{}, fmt.Errorf("llm: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return chatResponse{}, fmt.Errorf("llm: read response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &statusError{status: resp.StatusCode, text: resp.Status, body: data}
		if resp.StatusCode == http.StatusNotFound {
			e.hint = fmt.Sprintf(" (is %s the base URL of an OpenAI-compatible server, and model %q available?)", EnvLLMURL, a.model)
		}
		return chatResponse{}, e
	}
	var r chatResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return chatResponse{}, fmt.Errorf("llm: decode response: %w: %s", err, excerpt(data))
	}
	return r, nil
}

// excerpt returns the start of a response body on one line, for errors.
func excerpt(data []byte) string {
	const maxRunes = 200
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(data), "\uFFFD")), " ")
	if s == "" {
		return "(empty body)"
	}
	if utf8.RuneCountInString(s) > maxRunes {
		s = string([]rune(s)[:maxRunes]) + "…"
	}
	return s
}
