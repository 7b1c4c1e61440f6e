package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
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
	w, err := readWindow(ctx, b, session, 1000)
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
		{"unknown scheme", nil, []string{"-db", "oracle://localhost/chat"}, exitFailure, `invalid database url: unknown scheme "oracle"`},
		{"not a url", nil, []string{"-db", "chat.db"}, exitFailure, "invalid database url"},
		{"missing directory", nil, []string{"-db", missingDir}, exitFailure, "does not exist"},
		{"postgres password not echoed", nil, []string{"-db", "postgres://u:s3cret@/chat"}, exitFailure, "no host"},
		{"max turns", nil, []string{"-db", sqliteURL(t), "-max-turns", "0"}, exitUsage, "-max-turns: turnkeep: invalid option: max turns must be at least 1"},
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

// newLLMServer answers each request with reply(last message), or fails
// with status and body when reply returns a status other than 200.
func newLLMServer(t *testing.T, reply func(message string) (status int, body string)) *llmServer {
	return newChatServer(t, func(req chatRequest) (int, any) {
		msgs := req.Messages
		status, body := reply(msgs[len(msgs)-1].Content)
		if status != http.StatusOK {
			return status, body
		}
		return status, map[string]any{"role": "assistant", "content": body}
	})
}

// newChatServer answers each request with the assistant message (a JSON
// object) that answer returns, or fails with status and the text answer
// returns when the status is not 200.
func newChatServer(t *testing.T, answer func(req chatRequest) (status int, msg any)) *llmServer {
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
		if len(req.body.Messages) == 0 {
			http.Error(w, "no messages", http.StatusBadRequest)
			return
		}
		status, msg := answer(req.body)
		if status != http.StatusOK {
			http.Error(w, msg.(string), status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "model": req.body.Model,
			"choices": []map[string]any{{"index": 0, "finish_reason": "stop", "message": msg}},
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

// chatRequests splits recorded requests into the chat's and the
// summarizer's.
func chatRequests(all []llmRequest) (chat, summaries []llmRequest) {
	for _, r := range all {
		if len(r.body.Messages) > 0 && strings.HasPrefix(r.body.Messages[0].Content, "You keep the running summary") {
			summaries = append(summaries, r)
		} else {
			chat = append(chat, r)
		}
	}
	return chat, summaries
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

	// The model is also the summarizer: a save that pushes "old turn"
	// out of the window may have it folded, in the background, by a
	// request of its own (whether it ran before the chat ended is timing).
	reqs, summaries := chatRequests(srv.recorded())
	require.Len(t, reqs, 1)
	for _, sr := range summaries {
		assert.Contains(t, sr.body.Messages[1].Content, "user: old turn")
		assert.NotContains(t, sr.body.Messages[1].Content, "I like tea", "a turn of the window folded")
	}
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

func TestLLMFailureKeepsTheMessage(t *testing.T) {
	dbURL := sqliteURL(t)
	srv := newLLMServer(t, func(m string) (int, string) {
		if m == "boom" {
			return http.StatusInternalServerError, "model exploded"
		}
		return http.StatusOK, "fine"
	})
	r := runChat(t, map[string]string{EnvLLMURL: srv.URL}, "hello\nboom\nafter\n/history\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Equal(t, "chat: agent: llm: 500 Internal Server Error: model exploded (your message is remembered without an answer)\n", r.stderr)
	assert.Len(t, regexp.MustCompile(`(?m)^agent: fine$`).FindAllString(r.stdout, -1), 2, "the chat went on after the failure")
	assert.Contains(t, r.stdout, "   2. you:   boom\n      (no answer)\n   3. you:   after\n")

	w := stored(t, dbURL, DefaultSession)
	assert.Equal(t, []string{"hello", "boom", "after"}, users(w))
	assert.Equal(t, 3, w.TurnCount)
	assert.Len(t, w.Turns[1].Messages, 1)
	assert.Empty(t, w.Turns[1].Agent)

	reqs := srv.recorded()
	require.Len(t, reqs, 3)
	assert.Equal(t, []chatMessage{
		{Role: "user", Content: "hello"},
		{Role: "assistant", Content: "fine"},
		{Role: "user", Content: "boom"},
		{Role: "user", Content: "after"},
	}, reqs[2].body.Messages[1:], "the unanswered message is remembered")
}

func TestLLMUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close() // nothing listens there now
	dbURL := sqliteURL(t)
	r := runChat(t, map[string]string{EnvLLMURL: base}, "hello\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stderr, "chat: agent: llm: Post ")
	w := stored(t, dbURL, DefaultSession)
	assert.Equal(t, []string{"hello"}, users(w), "what the user typed is kept")
	assert.Empty(t, w.Turns[0].Agent)
}

// loadFresh reads the session back through a new memory on a new handle
// of the database, as the next run of the program would.
func loadFresh(t *testing.T, dbURL, session string) memory.Window {
	t.Helper()
	ctx := context.Background()
	db, err := dataflow.Open(ctx, dbURL)
	require.NoError(t, err)
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db)
	require.NoError(t, err)
	mem, err := memory.NewPersistentBufferMemory(b, memory.WithMaxTurns(100))
	require.NoError(t, err)
	defer mem.Close()
	w, err := mem.LoadContext(ctx, session)
	require.NoError(t, err)
	return w
}

// withoutTokens returns msgs with their token counts, which it checks
// were counted, zeroed, to compare the rest.
func withoutTokens(t *testing.T, msgs []memory.Message) []memory.Message {
	t.Helper()
	out := append([]memory.Message(nil), msgs...)
	for i := range out {
		assert.Positive(t, out[i].Tokens, "message %d has its tokens counted", i)
		out[i].Tokens = 0
	}
	return out
}

func TestOfflineCalculatorTurn(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) { testOfflineCalculatorTurn(t, d.URL(t)) })
}

func testOfflineCalculatorTurn(t *testing.T, dbURL string) {
	r := runChat(t, nil, "hello\nwhat is 6*7\nwhat is 1/0\n/history\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Empty(t, r.stderr)
	assert.Contains(t, r.stdout, "\nagent → calculator({\"expression\":\"6*7\"})\ntool calculator: 42\nagent: 6*7 = 42\n", "the tool at work")
	assert.Contains(t, r.stdout, `History of session "default": 3 turns:`+"\n"+
		"   1. you:   hello\n"+
		"      agent: Hello! This is the start of our conversation; I will remember what you say.\n"+
		"   2. you:   what is 6*7\n"+
		"      agent → calculator({\"expression\":\"6*7\"})\n"+
		"      tool calculator: 42\n"+
		"      agent: 6*7 = 42\n"+
		"   3. you:   what is 1/0\n"+
		"      agent → calculator({\"expression\":\"1/0\"})\n"+
		"      tool calculator: error: division by zero\n"+
		"      agent: I could not work out 1/0: division by zero.\n")

	w := loadFresh(t, dbURL, DefaultSession)
	require.Equal(t, 3, w.TurnCount)
	turn := w.Turns[1]
	require.Len(t, turn.Messages, 4)
	require.Len(t, turn.Messages[1].ToolCalls, 1)
	callID := turn.Messages[1].ToolCalls[0].ID
	assert.NotEmpty(t, callID)
	assert.Equal(t, []memory.Message{
		{ID: driver.DerivedMessageID(turn.ID, 0), Role: memory.RoleUser, Content: "what is 6*7"},
		{ID: driver.DerivedMessageID(turn.ID, 1), Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{
			{ID: callID, Name: calculatorName, Arguments: `{"expression":"6*7"}`},
		}},
		{ID: driver.DerivedMessageID(turn.ID, 2), Role: memory.RoleTool, Name: calculatorName, ToolCallID: callID, Content: "42"},
		{ID: driver.DerivedMessageID(turn.ID, 3), Role: memory.RoleAssistant, Content: "6*7 = 42"},
	}, withoutTokens(t, turn.Messages))
	assert.Equal(t, "what is 6*7", turn.User)
	assert.Equal(t, "6*7 = 42", turn.Agent)
	assert.Equal(t, turn.Tokens(), w.Tokens-w.Turns[0].Tokens()-w.Turns[2].Tokens())

	// The next run shows the stored exchange when it starts.
	r = runChat(t, nil, "", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, "I remember 3 turns of this session:\n")
	assert.Contains(t, r.stdout, "   2. you:   what is 6*7\n      agent → calculator({\"expression\":\"6*7\"})\n      tool calculator: 42\n")
}

func TestMaxTokens(t *testing.T) {
	// budget gets the tokens of the newest turn and of the two newest.
	tests := []struct {
		name    string
		budget  func(last, lastTwo int) int
		history string // the start of the greeting's listing
		reply   string
	}{
		{"no budget", func(int, int) int { return 0 },
			"I remember 3 turns of this session:\n   1. you:   one\n", `agent: The first thing you said was "one".`},
		{"two turns", func(_, lastTwo int) int { return lastTwo },
			"I remember 3 turns of this session, the last 2 shown:\n   2. you:   two\n", `agent: Of the last 2 turns I keep in mind, the first thing you said was "two".`},
		{"one turn", func(_, lastTwo int) int { return lastTwo - 1 },
			"I remember 3 turns of this session, the last 1 shown:\n   3. you:   three\n", `agent: Of the last 1 turn I keep in mind, the first thing you said was "three".`},
		{"exactly one turn", func(last, _ int) int { return last },
			"I remember 3 turns of this session, the last 1 shown:\n   3. you:   three\n", `agent: Of the last 1 turn I keep in mind, the first thing you said was "three".`},
		{"newest over the budget", func(last, _ int) int { return last - 1 }, // a window always holds the newest turn
			"I remember 3 turns of this session, the last 1 shown:\n   3. you:   three\n", `agent: Of the last 1 turn I keep in mind, the first thing you said was "three".`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbURL := sqliteURL(t)
			r := runChat(t, nil, "one\ntwo\nthree\n", "-db", dbURL)
			require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
			w := loadFresh(t, dbURL, DefaultSession)
			require.Len(t, w.Turns, 3)
			budget := tt.budget(w.Turns[2].Tokens(), w.Turns[1].Tokens()+w.Turns[2].Tokens())

			r = runChat(t, nil, "what did I say first?\n", "-db", dbURL, "-max-tokens", strconv.Itoa(budget))
			require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
			assert.Empty(t, r.stderr)
			assert.Contains(t, r.stdout, tt.history)
			assert.Contains(t, r.stdout, tt.reply+"\n")
		})
	}

	for _, bad := range []struct{ value, want string }{
		{"-1", `invalid value "-1" for flag -max-tokens: want 0 (no budget) or more`},
		{"many", `invalid value "many" for flag -max-tokens: want a whole number`},
		{"1.5", `invalid value "1.5" for flag -max-tokens: want a whole number`},
	} {
		missing := filepath.Join(t.TempDir(), "not-created.db")
		r := runChat(t, nil, "hello\n", "-db", "sqlite:///"+missing, "-max-tokens", bad.value)
		assert.Equal(t, exitUsage, r.code, "-max-tokens %s", bad.value)
		assert.Contains(t, r.stderr, bad.want)
		assert.Contains(t, r.stderr, "usage: chat [flags]")
		assert.NoFileExists(t, missing, "a usage error opens no database")
	}
	r := runChat(t, nil, "", "-h")
	assert.Contains(t, r.stderr, "-max-tokens budget")
}

// An LLM turn with a tool call is stored message by message, and the
// stored tool calls are sent back to the model, role by role.
func TestLLMToolCallsThroughChat(t *testing.T) {
	dbURL := sqliteURL(t)
	// An offline calculator turn first, which the model is later sent.
	r := runChat(t, nil, "what is 6*7\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	offline := loadFresh(t, dbURL, DefaultSession).Turns[0]
	offlineCall := offline.Messages[1].ToolCalls[0].ID

	var calls atomic.Int32
	srv := newChatServer(t, func(req chatRequest) (int, any) {
		switch calls.Add(1) {
		case 1:
			return http.StatusOK, toolCallMessage("call_1", "(2+3)*4")
		case 2:
			return http.StatusOK, map[string]any{"role": "assistant", "content": "It is 20."}
		}
		return http.StatusOK, map[string]any{"role": "assistant", "content": "ok"}
	})
	r = runChat(t, map[string]string{EnvLLMURL: srv.URL}, "what is (2+3)*4 in words?\nthanks\n/history\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Empty(t, r.stderr)
	assert.Contains(t, r.stdout, "\nagent → calculator({\"expression\":\"(2+3)*4\"})\ntool calculator: 20\nagent: It is 20.\n")
	assert.Contains(t, r.stdout, "   2. you:   what is (2+3)*4 in words?\n"+
		"      agent → calculator({\"expression\":\"(2+3)*4\"})\n"+
		"      tool calculator: 20\n"+
		"      agent: It is 20.\n"+
		"   3. you:   thanks\n      agent: ok\n")

	history := []chatMessage{
		{Role: "user", Content: "what is 6*7"},
		{Role: "assistant", ToolCalls: []wireToolCall{{ID: offlineCall, Type: "function", Function: wireFunction{Name: calculatorName, Arguments: `{"expression":"6*7"}`}}}},
		{Role: "tool", Content: "42", ToolCallID: offlineCall},
		{Role: "assistant", Content: "6*7 = 42"},
	}
	question := chatMessage{Role: "user", Content: "what is (2+3)*4 in words?"}
	call := chatMessage{Role: "assistant", ToolCalls: []wireToolCall{{ID: "call_1", Type: "function", Function: wireFunction{Name: calculatorName, Arguments: `{"expression":"(2+3)*4"}`}}}}
	result := chatMessage{Role: "tool", Content: "20", ToolCallID: "call_1"}
	reqs := srv.recorded()
	require.Len(t, reqs, 3)
	assert.Equal(t, "system", reqs[0].body.Messages[0].Role)
	assert.Equal(t, append(append([]chatMessage(nil), history...), question), reqs[0].body.Messages[1:], "the stored tool call is sent role by role")
	assert.Equal(t, append(append([]chatMessage(nil), history...), question, call, result), reqs[1].body.Messages[1:],
		"the second request holds the assistant's tool call and its result")
	assert.Equal(t, append(append([]chatMessage(nil), history...), question, call, result,
		chatMessage{Role: "assistant", Content: "It is 20."}, chatMessage{Role: "user", Content: "thanks"}), reqs[2].body.Messages[1:],
		"the stored LLM turn is sent back whole")

	w := loadFresh(t, dbURL, DefaultSession)
	require.Equal(t, 3, w.TurnCount)
	turn := w.Turns[1]
	assert.Equal(t, []memory.Message{
		{ID: driver.DerivedMessageID(turn.ID, 0), Role: memory.RoleUser, Content: "what is (2+3)*4 in words?"},
		{ID: driver.DerivedMessageID(turn.ID, 1), Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{{ID: "call_1", Name: calculatorName, Arguments: `{"expression":"(2+3)*4"}`}}},
		{ID: driver.DerivedMessageID(turn.ID, 2), Role: memory.RoleTool, Name: calculatorName, ToolCallID: "call_1", Content: "20"},
		{ID: driver.DerivedMessageID(turn.ID, 3), Role: memory.RoleAssistant, Content: "It is 20."},
	}, withoutTokens(t, turn.Messages))
}

// A failure after a tool call keeps what came before it: the question, the
// call and its result.
func TestLLMFailureMidAnswer(t *testing.T) {
	dbURL := sqliteURL(t)
	var calls atomic.Int32
	srv := newChatServer(t, func(req chatRequest) (int, any) {
		if calls.Add(1) == 1 {
			return http.StatusOK, toolCallMessage("call_1", "6*7")
		}
		return http.StatusBadGateway, "upstream died"
	})
	r := runChat(t, map[string]string{EnvLLMURL: srv.URL}, "what is 6*7\n/history\n", "-db", dbURL)
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stderr, "chat: agent: llm: 502 Bad Gateway: upstream died (your message is remembered without an answer)")
	assert.Contains(t, r.stdout, "   1. you:   what is 6*7\n"+
		"      agent → calculator({\"expression\":\"6*7\"})\n"+
		"      tool calculator: 42\n"+
		"      (no answer)\n")

	turn := loadFresh(t, dbURL, DefaultSession).Turns[0]
	require.Len(t, turn.Messages, 3)
	assert.Equal(t, memory.RoleTool, turn.Messages[2].Role)
	assert.Equal(t, "call_1", turn.Messages[2].ToolCallID)
	assert.Empty(t, turn.Agent)
}

// /history shows the summary of the turns older than the window, which
// the chat keeps with the offline summarizer when no model is set.
func TestHistoryShowsSummary(t *testing.T) {
	ctx := context.Background()
	dbURL := sqliteURL(t)
	mem, err := turnkeep.Open(ctx, dbURL, turnkeep.Memory(memory.WithMaxTurns(2),
		memory.WithSummarizer(summarize.NewExtractive(nil), summaryTokens)))
	require.NoError(t, err)
	require.NoError(t, mem.SaveTurn(ctx, DefaultSession, memory.Turn{User: "My name is Ada Lovelace and I was born in 1815.", Agent: "Nice to meet you."}))
	for _, u := range []string{"two", "three", "four"} {
		require.NoError(t, mem.SaveTurn(ctx, DefaultSession, memory.Turn{User: u, Agent: "ok"}))
	}
	_, err = mem.Summarize(ctx, DefaultSession)
	require.NoError(t, err)
	require.NoError(t, mem.Close())

	r := runChat(t, nil, "/history\n", "-db", dbURL, "-max-turns", "2")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	assert.Contains(t, r.stdout, `History of session "default": 4 turns, the last 2 shown:`)
	assert.Contains(t, r.stdout, "Summary of turns 1-2: My name is Ada Lovelace and I was born in 1815.")
}
