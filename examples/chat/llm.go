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
	"strings"
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

// llmAgent asks an OpenAI-compatible chat completions endpoint, sending the
// remembered window as the earlier messages.
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

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	Stream   bool          `json:"stream"`
}

type chatResponse struct {
	Choices []struct {
		Message      chatMessage `json:"message"`
		FinishReason string      `json:"finish_reason"`
	} `json:"choices"`
}

// systemPrompt introduces the remembered turns to the model.
func systemPrompt(w memory.Window) string {
	s := "You are a helpful assistant in a terminal chat with persistent memory. " +
		"The earlier messages are the conversation so far, remembered across restarts; use them."
	if len(w.Turns) < w.TurnCount {
		s += fmt.Sprintf(" The conversation has %d turns; you see the last %d.", w.TurnCount, len(w.Turns))
	}
	return s
}

// messages returns the request messages: the system prompt, each remembered
// turn as a user and an assistant message, then message.
func messages(w memory.Window, message string) []chatMessage {
	msgs := make([]chatMessage, 0, 2+2*len(w.Turns))
	msgs = append(msgs, chatMessage{Role: "system", Content: systemPrompt(w)})
	for _, t := range w.Turns {
		if t.User != "" {
			msgs = append(msgs, chatMessage{Role: "user", Content: t.User})
		}
		if t.Agent != "" {
			msgs = append(msgs, chatMessage{Role: "assistant", Content: t.Agent})
		}
	}
	return append(msgs, chatMessage{Role: "user", Content: message})
}

func (a *llmAgent) Reply(ctx context.Context, w memory.Window, message string) (string, error) {
	body, err := json.Marshal(chatRequest{Model: a.model, Messages: messages(w, message)})
	if err != nil {
		return "", fmt.Errorf("llm: encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.endpoint, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("llm: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if a.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+a.apiKey)
	}
	resp, err := a.client.Do(req) // the error names the URL without its password
	if err != nil {
		return "", fmt.Errorf("llm: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return "", fmt.Errorf("llm: read response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		hint := ""
		if resp.StatusCode == http.StatusNotFound {
			hint = fmt.Sprintf(" (is %s the base URL of an OpenAI-compatible server, and model %q available?)", EnvLLMURL, a.model)
		}
		return "", fmt.Errorf("llm: %s: %s%s", resp.Status, excerpt(data), hint)
	}
	var r chatResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return "", fmt.Errorf("llm: decode response: %w: %s", err, excerpt(data))
	}
	if len(r.Choices) == 0 {
		return "", errors.New("llm: response has no choices")
	}
	reply := strings.TrimSpace(r.Choices[0].Message.Content)
	if reply == "" {
		return "", fmt.Errorf("llm: empty reply (finish_reason %q)", r.Choices[0].FinishReason)
	}
	return reply, nil
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
