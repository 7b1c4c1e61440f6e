package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
			got, err := a.Reply(context.Background(), window(0), "hi")
			require.Error(t, err, "reply %q", got)
			assert.Equal(t, tt.want, err.Error())
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
	_, err = a.Reply(ctx, window(0), "hi")
	require.ErrorIs(t, err, context.Canceled)
}
