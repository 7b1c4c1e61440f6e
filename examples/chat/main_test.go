package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

type result struct {
	code           int
	stdout, stderr string
}

// runChat runs the program in-process with input on stdin and env as its
// whole environment.
func runChat(t *testing.T, env map[string]string, input string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, args, strings.NewReader(input), &stdout, &stderr, func(k string) string { return env[k] })
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// stored reads the session straight from the database, past the program.
func stored(t *testing.T, dbURL, session string) memory.Window {
	t.Helper()
	ctx := context.Background()
	db, err := dataflow.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db)
	require.NoError(t, err)
	w, err := b.LoadWindow(ctx, session, 1000)
	require.NoError(t, err)
	return w
}

func users(w memory.Window) []string {
	var out []string
	for _, t := range w.Turns {
		out = append(out, t.User)
	}
	return out
}

func sqliteURL(t *testing.T) string {
	return "sqlite:///" + filepath.Join(t.TempDir(), "chat.db")
}

func TestRemembersAcrossRestarts(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		dbURL := d.URL(t)

		first := runChat(t, nil, "hello\nmy name is Ada\nI like tea\n", "-db", dbURL)
		require.Equal(t, 0, first.code, "stderr: %s", first.stderr)
		assert.Empty(t, first.stderr)
		assert.Contains(t, first.stdout, "I remember no turns of this session yet.")
		assert.Contains(t, first.stdout, "agent: Nice to meet you, Ada.")
		assert.Contains(t, first.stdout, `agent: I remember 2 turns of our conversation. You said: "my name is Ada".`)
		assert.NotContains(t, first.stdout, "you: ", "prompted although stdin is not a terminal")

		second := runChat(t, nil, "what is my name?\nwhat did I say first?\n", "-db", dbURL)
		require.Equal(t, 0, second.code, "stderr: %s", second.stderr)
		assert.Empty(t, second.stderr)
		assert.Contains(t, second.stdout, "I remember 3 turns of this session:\n"+
			"   1. you:   hello\n")
		assert.Contains(t, second.stdout, "   2. you:   my name is Ada\n      agent: Nice to meet you, Ada. I will remember your name.\n")
		assert.Contains(t, second.stdout, "   3. you:   I like tea\n")
		assert.Contains(t, second.stdout, "agent: Your name is Ada.\n")
		assert.Contains(t, second.stdout, `agent: The first thing you said was "hello".`)

		w := stored(t, dbURL, DefaultSession)
		assert.Equal(t, 5, w.TurnCount)
		assert.Equal(t, []string{"hello", "my name is Ada", "I like tea", "what is my name?", "what did I say first?"}, users(w))
		assert.Equal(t, "Your name is Ada.", w.Turns[3].Agent)
	})
}

func TestHistoryAndClear(t *testing.T) {
	dbURL := sqliteURL(t)

	r := runChat(t, nil, "/history\none\ntwo\nthree\n/history\n/clear\n/history\nafter clear\n/quit\nnot read\n",
		"-db", dbURL, "-max-turns", "2")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Empty(t, r.stderr)
	out := r.stdout
	assert.Contains(t, out, `History of session "default": no turns.`)
	assert.Contains(t, out, `History of session "default": 3 turns, the last 2 shown:`+"\n"+
		"   2. you:   two\n"+
		"      agent: I remember 1 turn of our conversation. You said: \"one\".\n"+
		"   3. you:   three\n")
	assert.Contains(t, out, `Cleared session "default": I remember no turns now.`)
	assert.Equal(t, 2, strings.Count(out, `History of session "default": no turns.`), "after /clear; output:\n%s", out)
	assert.NotContains(t, out, "not read", "/quit did not stop reading")

	w := stored(t, dbURL, DefaultSession)
	assert.Equal(t, 1, w.TurnCount)
	assert.Equal(t, []string{"after clear"}, users(w))

	r = runChat(t, nil, "/clear\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	r = runChat(t, nil, "", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, "I remember no turns of this session yet.")
	assert.Equal(t, 0, stored(t, dbURL, DefaultSession).TurnCount)
}

func TestCommandsAndOddInput(t *testing.T) {
	dbURL := sqliteURL(t)
	huge := strings.Repeat("x", memory.DefaultMaxMessageBytes+1)
	input := "/HELP\n/nope\n   \n\r\nbad \xff byte\x00\r\n" + huge + "\nstill here\n"

	r := runChat(t, nil, input, "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Equal(t, 2, strings.Count(r.stdout, help), "the greeting and /help show the commands")
	assert.Contains(t, r.stderr, "chat: unknown command /nope.")
	assert.Contains(t, r.stderr, "chat: cannot remember this message: memory: turn too large")
	assert.Contains(t, r.stdout, "You said: \"bad \ufffd byte\".")

	w := stored(t, dbURL, DefaultSession)
	assert.Equal(t, []string{"bad \ufffd byte", "still here"}, users(w))
}

func TestLineTooLong(t *testing.T) {
	r := runChat(t, nil, "ok\n"+strings.Repeat("x", maxLineBytes+1)+"\n", "-db", sqliteURL(t))
	assert.Equal(t, exitFailure, r.code)
	assert.Contains(t, r.stderr, "chat: read input: a line is longer than")
}

func TestSessionsAreSeparate(t *testing.T) {
	dbURL := sqliteURL(t)
	r := runChat(t, nil, "my name is Ada\n", "-db", dbURL, "-session", "alice")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)

	r = runChat(t, nil, "what is my name?\n", "-db", dbURL, "-session", "bob")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, `session "bob"`)
	assert.Contains(t, r.stdout, "I remember no turns of this session yet.")
	assert.Contains(t, r.stdout, "agent: You haven't told me your name yet.")

	r = runChat(t, nil, "what is my name?\n", "-db", dbURL, "-session", "alice")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, "agent: Your name is Ada.")
}

func TestDefaultDatabaseInWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := runChat(t, nil, "hello\n")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, `session "default" in sqlite:///turnkeep-chat.db`)
	_, err := os.Stat(filepath.Join(dir, "turnkeep-chat.db"))
	require.NoError(t, err, "the default database is a file in the working directory")
	assert.Equal(t, 1, stored(t, DefaultDB, DefaultSession).TurnCount)
}

func TestBadArguments(t *testing.T) {
	missingDir := "sqlite:///" + filepath.Join(t.TempDir(), "no", "such", "dir", "chat.db")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string // in stderr
	}{
		{"unknown scheme", nil, []string{"-db", "mysql://localhost/chat"}, exitFailure, `invalid database url: unknown scheme "mysql"`},
		{"not a url", nil, []string{"-db", "chat.db"}, exitFailure, "invalid database url"},
		{"missing directory", nil, []string{"-db", missingDir}, exitFailure, "does not exist"},
		{"postgres password not echoed", nil, []string{"-db", "postgres://u:s3cret@/chat"}, exitFailure, "no host"},
		{"max turns", nil, []string{"-db", sqliteURL(t), "-max-turns", "0"}, exitUsage, "-max-turns: memory: invalid option: max turns must be at least 1"},
		{"empty session", nil, []string{"-session", ""}, exitUsage, "-session: memory: invalid session id: empty"},
		{"unknown flag", nil, []string{"-nope"}, exitUsage, "flag provided but not defined: -nope"},
		{"argument", nil, []string{"-db", sqliteURL(t), "hello"}, exitUsage, `unexpected argument "hello"`},
		{"llm url", map[string]string{EnvLLMURL: "localhost:11434"}, nil, exitUsage, EnvLLMURL + ": want an http:// or https:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runChat(t, tt.env, "hello\n", tt.args...)
			assert.Equal(t, tt.code, r.code, "exit code; stderr: %s", r.stderr)
			assert.Contains(t, r.stderr, tt.want)
			assert.NotContains(t, r.stderr, "s3cret")
			assert.NotContains(t, r.stdout, "agent:", "answered despite the error")
		})
	}
}

func TestHelpFlag(t *testing.T) {
	r := runChat(t, nil, "", "-h")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stderr, "-max-turns")
	assert.Contains(t, r.stderr, EnvLLMURL)
}

func TestInterruptEndsChat(t *testing.T) {
	stdinR, stdinW := io.Pipe() // input that never comes
	defer stdinW.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"-db", sqliteURL(t)}, stdinR, &stdout, &stderr, nil)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), help) { // greeted: waiting for input
		require.True(t, time.Now().Before(deadline), "no greeting; stdout: %s; stderr: %s", stdout.String(), stderr.String())
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, exitInterrupted, code, "stderr: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestInterruptWhileOpening(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr strings.Builder
	code := run(ctx, []string{"-db", sqliteURL(t)}, strings.NewReader("hello\n"), &stdout, &stderr, nil)
	assert.Equal(t, exitInterrupted, code, "stderr: %s", stderr.String())
	assert.NotContains(t, stdout.String(), "agent:")
}

// lockedBuffer is a strings.Builder safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex // protects b
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// llmServer is a fake OpenAI-compatible server recording what it is sent.
type llmServer struct {
	*httptest.Server

	mu       sync.Mutex // protects requests
	requests []llmRequest
}

type llmRequest struct {
	method, path, auth, contentType string
	body                            chatRequest
	raw                             map[string]any
}

// newLLMServer answers each request with reply(last user message), or
// fails with status and body when reply returns a status other than 200.
func newLLMServer(t *testing.T, reply func(message string) (status int, body string)) *llmServer {
	s := &llmServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := llmRequest{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type")}
		if err := json.Unmarshal(data, &req.body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.Unmarshal(data, &req.raw)
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
		msgs := req.body.Messages
		if len(msgs) == 0 {
			http.Error(w, "no messages", http.StatusBadRequest)
			return
		}
		status, body := reply(msgs[len(msgs)-1].Content)
		if status != http.StatusOK {
			http.Error(w, body, status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "model": req.body.Model,
			"choices": []map[string]any{{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": body}}},
		})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *llmServer) recorded() []llmRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]llmRequest(nil), s.requests...)
}

func TestLLMSendsRememberedTurns(t *testing.T) {
	dbURL := sqliteURL(t)
	r := runChat(t, nil, "old turn\nmy name is Ada\nI like tea\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	before := stored(t, dbURL, DefaultSession)
	require.Len(t, before.Turns, 3)

	srv := newLLMServer(t, func(string) (int, string) { return http.StatusOK, "You are Ada, and you like tea." })
	env := map[string]string{
		EnvLLMURL:    srv.URL + "/", // a trailing slash is trimmed
		EnvLLMModel:  "test-model",
		EnvLLMAPIKey: "sk-test",
	}
	// -max-turns 2: the model sees the two newest turns, not "old turn".
	r = runChat(t, env, "what do you know about me?\n", "-db", dbURL, "-max-turns", "2")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Empty(t, r.stderr)
	assert.Contains(t, r.stdout, "agent: test-model at "+srv.URL+"/v1/chat/completions")
	assert.Contains(t, r.stdout, "agent: You are Ada, and you like tea.\n")

	reqs := srv.recorded()
	require.Len(t, reqs, 1)
	req := reqs[0]
	assert.Equal(t, http.MethodPost, req.method)
	assert.Equal(t, "/v1/chat/completions", req.path)
	assert.Equal(t, "Bearer sk-test", req.auth)
	assert.Equal(t, "application/json", req.contentType)
	assert.Equal(t, "test-model", req.body.Model)
	assert.Equal(t, false, req.raw["stream"])
	require.NotEmpty(t, req.body.Messages)
	assert.Equal(t, "system", req.body.Messages[0].Role)
	assert.Contains(t, req.body.Messages[0].Content, "The conversation has 3 turns; you see the last 2.")
	assert.Equal(t, []chatMessage{
		{Role: "user", Content: "my name is Ada"},
		{Role: "assistant", Content: before.Turns[1].Agent},
		{Role: "user", Content: "I like tea"},
		{Role: "assistant", Content: before.Turns[2].Agent},
		{Role: "user", Content: "what do you know about me?"},
	}, req.body.Messages[1:])

	after := stored(t, dbURL, DefaultSession)
	assert.Equal(t, 4, after.TurnCount)
	assert.Equal(t, memory.Turn{User: "what do you know about me?", Agent: "You are Ada, and you like tea."},
		memory.Turn{User: after.Turns[3].User, Agent: after.Turns[3].Agent})
}

func TestLLMWithoutKeyOrModel(t *testing.T) {
	srv := newLLMServer(t, func(m string) (int, string) { return http.StatusOK, "echo: " + m })
	env := map[string]string{EnvLLMURL: srv.URL + "/v1"} // /v1 is not doubled
	r := runChat(t, env, "first\nsecond\n", "-db", sqliteURL(t))
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, "agent: echo: second\n")

	reqs := srv.recorded()
	require.Len(t, reqs, 2)
	for _, req := range reqs {
		assert.Equal(t, "/v1/chat/completions", req.path)
		assert.Empty(t, req.auth, "Authorization sent without a key")
		assert.Equal(t, DefaultLLMModel, req.body.Model)
	}
	assert.Equal(t, []chatMessage{
		{Role: "user", Content: "first"},
		{Role: "assistant", Content: "echo: first"},
		{Role: "user", Content: "second"},
	}, reqs[1].body.Messages[1:], "the turn saved in this run is sent with the next")
}

func TestLLMFailureStoresNothing(t *testing.T) {
	dbURL := sqliteURL(t)
	srv := newLLMServer(t, func(m string) (int, string) {
		if m == "boom" {
			return http.StatusInternalServerError, "model exploded"
		}
		return http.StatusOK, "fine"
	})
	r := runChat(t, map[string]string{EnvLLMURL: srv.URL}, "hello\nboom\nafter\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stderr, "chat: agent: llm: 500 Internal Server Error: model exploded (not remembered)")
	assert.Equal(t, 2, strings.Count(r.stdout, "agent: fine\n"), "the chat went on after the failure")

	w := stored(t, dbURL, DefaultSession)
	assert.Equal(t, []string{"hello", "after"}, users(w))
	assert.Equal(t, 2, w.TurnCount)

	reqs := srv.recorded()
	require.Len(t, reqs, 3)
	assert.Equal(t, []chatMessage{
		{Role: "user", Content: "hello"},
		{Role: "assistant", Content: "fine"},
		{Role: "user", Content: "after"},
	}, reqs[2].body.Messages[1:], "the failed message is not in the memory")
}

func TestLLMUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there now
	dbURL := sqliteURL(t)
	r := runChat(t, map[string]string{EnvLLMURL: base}, "hello\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stderr, "chat: agent: llm: Post ")
	assert.Equal(t, 0, stored(t, dbURL, DefaultSession).TurnCount)
}
