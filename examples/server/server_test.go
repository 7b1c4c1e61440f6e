package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

// instance is one server process in a test: its own database handle,
// memory and HTTP server.
type instance struct {
	srv  *server
	mem  *memory.PersistentBufferMemory
	ts   *httptest.Server
	stop func() // stops it, as at the test's end
}

// newInstance starts a server on dbURL answered by agent. It stops at the
// test's end.
func newInstance(t *testing.T, dbURL string, agent Agent) *instance {
	t.Helper()
	return newInstanceOn(t, nil, dbURL, agent)
}

// newInstanceOn starts a server listening on ln (nil: a free port). It
// stops at the test's end, or at stop: the HTTP server, then the answers,
// the memory, the database.
func newInstanceOn(t *testing.T, ln net.Listener, dbURL string, agent Agent) *instance {
	t.Helper()
	return newInstanceWith(t, ln, dbURL, agent, defaultTimeouts)
}

// newInstanceWith is newInstanceOn with the HTTP server's timeouts to.
func newInstanceWith(t *testing.T, ln net.Listener, dbURL string, agent Agent, to timeouts) *instance {
	t.Helper()
	ctx := context.Background()
	mem, err := turnkeep.Open(ctx, dbURL, turnkeep.Memory(memory.WithSummarizer(summarize.NewExtractive(nil), summaryTokens))) // as run opens it
	require.NoError(t, err)
	logger := log.New(testWriter{t}, "server: ", 0)
	s := newServer(mem, agent, logger)
	ts := httptest.NewUnstartedServer(s)
	ts.Config = newHTTPServer(s, logger, to) // as run makes it
	if ln != nil {
		ts.Listener.Close()
		ts.Listener = ln
	}
	ts.Start()
	in := &instance{srv: s, mem: mem, ts: ts}
	in.stop = sync.OnceFunc(func() {
		ts.Close()
		s.close()
		mem.Close() // and the database
	})
	t.Cleanup(in.stop)
	return in
}

// testWriter sends a server's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// call sends a request as user ("" sends none) and returns the status and
// the body.
func (in *instance) call(t *testing.T, method, path, user string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, in.ts.URL+path, r)
	require.NoError(t, err)
	if user != "" {
		req.Header.Set(UserHeader, user)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := in.ts.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, data
}

// get calls and decodes a JSON answer of status want into v.
func (in *instance) get(t *testing.T, method, path, user string, body any, want int, v any) {
	t.Helper()
	status, data := in.call(t, method, path, user, body)
	require.Equal(t, want, status, "%s %s: %s", method, path, data)
	if v != nil {
		require.NoError(t, json.Unmarshal(data, v), "%s", data)
	}
}

func (in *instance) create(t *testing.T, user string) sessionJSON {
	t.Helper()
	var s sessionJSON
	in.get(t, "POST", "/api/sessions", user, map[string]string{}, http.StatusCreated, &s)
	return s
}

type event struct {
	name string
	data map[string]any
}

// send posts a message and reads the whole event stream of its answer.
func (in *instance) send(t *testing.T, user, session, text string) []event {
	t.Helper()
	return readEvents(t, in.post(t, context.Background(), user, session, text))
}

func (in *instance) post(t *testing.T, ctx context.Context, user, session, text string) *http.Response {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"content": text})
	req, err := http.NewRequestWithContext(ctx, "POST", in.ts.URL+"/api/sessions/"+url.PathEscape(session)+"/messages", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(UserHeader, user)
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.ts.Client().Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	return resp
}

func readEvents(t *testing.T, resp *http.Response) []event {
	t.Helper()
	defer resp.Body.Close()
	var events []event
	sc := bufio.NewScanner(resp.Body)
	var ev event
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data))
		case line == "":
			events = append(events, ev)
			ev = event{}
		}
	}
	require.NoError(t, sc.Err())
	return events
}

// answer checks the events of a whole answer and returns its text.
func answer(t *testing.T, events []event) string {
	t.Helper()
	require.GreaterOrEqual(t, len(events), 3, "turn, a delta and done: %v", events)
	require.Equal(t, "turn", events[0].name)
	last := events[len(events)-1]
	require.Equal(t, "done", last.name)
	require.Equal(t, true, last.data["complete"], "%v", last.data)
	var b strings.Builder
	for _, e := range events[1 : len(events)-1] {
		require.Equal(t, "delta", e.name)
		b.WriteString(e.data["text"].(string))
	}
	return b.String()
}

type historyJSON struct {
	Session      sessionJSON  `json:"session"`
	Root         string       `json:"root"`
	Summary      *summaryJSON `json:"summary"`
	Unsummarized int          `json:"unsummarized"`
	Turns        []turnJSON   `json:"turns"`
	Next         string       `json:"next"`
}

func (in *instance) history(t *testing.T, user, session string) historyJSON {
	t.Helper()
	var h historyJSON
	in.get(t, "GET", "/api/sessions/"+url.PathEscape(session)+"/history", user, nil, http.StatusOK, &h)
	return h
}

func (in *instance) sessions(t *testing.T, user string) []sessionJSON {
	t.Helper()
	var out struct{ Sessions []sessionJSON }
	in.get(t, "GET", "/api/sessions?user="+url.QueryEscape(user), "", nil, http.StatusOK, &out)
	return out.Sessions
}

func TestAPI(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		in := newInstance(t, d.URL(t), offlineAgent{})
		in.srv.flushEvery = time.Hour // each answer in one message, for the counts below

		s := in.create(t, "ada")
		assert.Equal(t, "ada", s.User)
		assert.Len(t, s.ID, 32)
		assert.Equal(t, []string{s.ID}, ids(in.sessions(t, "ada")))
		assert.Empty(t, in.sessions(t, "bob"))

		got := answer(t, in.send(t, "ada", s.ID, "my name is Ada"))
		assert.Equal(t, "Nice to meet you, Ada. I will remember your name, even across restarts.", got)
		got = answer(t, in.send(t, "ada", s.ID, "  what is my name?\n"))
		assert.Equal(t, "Your name is Ada.", got)

		h := in.history(t, "ada", s.ID)
		assert.Equal(t, "my name is Ada", h.Session.Title, "a session is named after its first message")
		assert.Equal(t, 2, h.Session.TurnCount)
		require.Len(t, h.Turns, 2)
		assert.Equal(t, "what is my name?", h.Turns[1].User)
		assert.Equal(t, "Your name is Ada.", h.Turns[1].Answer)
		assert.True(t, h.Turns[1].Complete)
		assert.Equal(t, memory.RoleUser, h.Turns[1].Messages[0].Role)
		assert.Equal(t, "ada", h.Turns[1].Messages[0].Name)

		var newest historyJSON
		in.get(t, "GET", "/api/sessions/"+s.ID+"/history?newest_first=true&limit=1", "ada", nil, http.StatusOK, &newest)
		require.Len(t, newest.Turns, 1)
		assert.Equal(t, h.Turns[1].ID, newest.Turns[0].ID)
		assert.NotEmpty(t, newest.Next)

		var info sessionJSON
		in.get(t, "GET", "/api/sessions/"+s.ID+"?user=ada", "", nil, http.StatusOK, &info)
		assert.Equal(t, 2, info.TurnCount)

		// Another user sees nothing of ada's and cannot change it.
		for _, r := range []struct{ method, path string }{
			{"GET", "/api/sessions/" + s.ID},
			{"GET", "/api/sessions/" + s.ID + "/history"},
			{"POST", "/api/sessions/" + s.ID + "/messages"},
			{"DELETE", "/api/sessions/" + s.ID},
		} {
			status, body := in.call(t, r.method, r.path, "bob", map[string]string{"content": "hi"})
			assert.Equal(t, http.StatusNotFound, status, "%s %s: %s", r.method, r.path, body)
		}
		status, _ := in.call(t, "DELETE", "/api/users/ada", "bob", nil)
		assert.Equal(t, http.StatusForbidden, status)
		status, _ = in.call(t, "POST", "/api/sessions", "bob", map[string]string{"id": s.ID})
		assert.Equal(t, http.StatusBadRequest, status, "bob cannot take ada's session: the server names sessions")

		in.get(t, "DELETE", "/api/sessions/"+s.ID, "ada", nil, http.StatusNoContent, nil)
		status, _ = in.call(t, "GET", "/api/sessions/"+s.ID+"/history", "ada", nil)
		assert.Equal(t, http.StatusNotFound, status)
		assert.Empty(t, in.sessions(t, "ada"))

		a, b := in.create(t, "ada"), in.create(t, "ada")
		answer(t, in.send(t, "ada", a.ID, "hello"))
		bobs := in.create(t, "bob")
		var rep map[string]int
		in.get(t, "DELETE", "/api/users/ada", "ada", nil, http.StatusOK, &rep)
		assert.Equal(t, map[string]int{"sessions": 2, "messages": 2}, rep)
		assert.Empty(t, in.sessions(t, "ada"))
		status, _ = in.call(t, "GET", "/api/sessions/"+b.ID, "ada", nil)
		assert.Equal(t, http.StatusNotFound, status)
		assert.Equal(t, []string{bobs.ID}, ids(in.sessions(t, "bob")))
	})
}

func ids(ss []sessionJSON) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

func TestBadRequests(t *testing.T) {
	in := newInstance(t, dbtest.SQLiteURL(t), offlineAgent{})
	s := in.create(t, "ada")
	for _, c := range []struct {
		name, method, path, user string
		body                     any
		want                     int
	}{
		{"no user", "GET", "/api/sessions", "", nil, http.StatusBadRequest},
		{"user with a control character", "GET", "/api/sessions", "a\tb", nil, http.StatusBadRequest},
		{"bad limit", "GET", "/api/sessions?limit=0", "ada", nil, http.StatusBadRequest},
		{"bad cursor", "GET", "/api/sessions?after=nonsense", "ada", nil, http.StatusBadRequest},
		{"bad newest_first", "GET", "/api/sessions/" + s.ID + "/history?newest_first=maybe", "ada", nil, http.StatusBadRequest},
		{"unknown session", "GET", "/api/sessions/nope/history", "ada", nil, http.StatusNotFound},
		{"empty message", "POST", "/api/sessions/" + s.ID + "/messages", "ada", map[string]string{"content": " \x00 "}, http.StatusBadRequest},
		{"unknown field", "POST", "/api/sessions/" + s.ID + "/messages", "ada", map[string]string{"text": "hi"}, http.StatusBadRequest},
		{"no body", "POST", "/api/sessions/" + s.ID + "/messages", "ada", nil, http.StatusBadRequest},
		{"message too large", "POST", "/api/sessions/" + s.ID + "/messages", "ada",
			map[string]string{"content": strings.Repeat("x", memory.DefaultMaxMessageBytes+1)}, http.StatusRequestEntityTooLarge},
		{"unknown path", "GET", "/api/nothing", "ada", nil, http.StatusNotFound},
		{"wrong method", "PUT", "/api/sessions", "ada", nil, http.StatusMethodNotAllowed},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := in.call(t, c.method, c.path, c.user, c.body)
			assert.Equal(t, c.want, status, "%s", body)
		})
	}
	assert.Zero(t, in.history(t, "ada", s.ID).Session.TurnCount, "no refused message was stored")
}

func TestPage(t *testing.T) {
	in := newInstance(t, dbtest.SQLiteURL(t), offlineAgent{})
	resp, err := in.ts.Client().Get(in.ts.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, string(body), "<title>turnkeep chat</title>")
	assert.NotContains(t, string(body), "https://", "the page loads nothing from elsewhere")
}

// stepAgent emits "one ", "two ", then waits for release (or the end of
// its context) before emitting "three". It reports, before emitting
// anything, what the history held.
type stepAgent struct {
	mem     *memory.PersistentBufferMemory
	session string
	started chan []memory.Turn // the history when asked
	midway  chan struct{}      // closed after "two "
	release chan struct{}
	stopped chan error // the context's error, if it ended the answer
	midOnce sync.Once
}

func newStepAgent() *stepAgent {
	return &stepAgent{started: make(chan []memory.Turn, 1), midway: make(chan struct{}), release: make(chan struct{}), stopped: make(chan error, 1)}
}

func (a *stepAgent) Stream(ctx context.Context, _ memory.Window, _ string, emit func(string)) error {
	if a.mem != nil {
		p, err := a.mem.History(ctx, a.session, memory.HistoryQuery{})
		if err != nil {
			return err
		}
		a.started <- p.Turns
	}
	emit("one ")
	emit("two ")
	a.midOnce.Do(func() { close(a.midway) })
	select {
	case <-a.release:
	case <-ctx.Done():
		a.stopped <- ctx.Err()
		return ctx.Err()
	}
	emit("three")
	return nil
}

// TestAnswerStoredAsItStreams follows one answer: the user's message is
// stored before the agent is asked; mid-answer the history holds the
// answer so far, not complete; the reader leaving does not stop the answer;
// at the end the history holds it whole and complete.
func TestAnswerStoredAsItStreams(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		agent := newStepAgent()
		in := newInstance(t, d.URL(t), agent)
		in.srv.flushEvery = 0 // a segment whenever text comes after text
		s := in.create(t, "ada")
		agent.mem, agent.session = in.mem, s.ID

		ctx, cancel := context.WithCancel(context.Background())
		resp := in.post(t, ctx, "ada", s.ID, "count to three")
		turns := <-agent.started
		require.Len(t, turns, 1, "the user's message is stored before the agent is asked")
		assert.Equal(t, "count to three", turns[0].User)
		assert.Len(t, turns[0].Messages, 1)

		<-agent.midway
		h := in.history(t, "ada", s.ID)
		require.Len(t, h.Turns, 1)
		assert.Equal(t, "one ", h.Turns[0].Answer, "mid-answer, the history holds the segments stored so far")
		assert.False(t, h.Turns[0].Complete)

		// The reader leaves (a reload); the answer goes on.
		cancel()
		resp.Body.Close()
		close(agent.release)
		deadline := time.Now().Add(10 * time.Second)
		for {
			h = in.history(t, "ada", s.ID)
			if h.Turns[0].Complete || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		assert.True(t, h.Turns[0].Complete, "the answer was completed after its reader left")
		assert.Equal(t, "one two three", h.Turns[0].Answer)
		require.Len(t, h.Turns[0].Messages, 4, "the user's message and a segment per piece")
		assert.Equal(t, map[string]any{partialKey: true}, h.Turns[0].Messages[1].Metadata)
		assert.Equal(t, map[string]any{partialKey: true}, h.Turns[0].Messages[2].Metadata)
		assert.Nil(t, h.Turns[0].Messages[3].Metadata, "the last segment")
		select {
		case err := <-agent.stopped:
			t.Fatalf("the answer was stopped: %v", err)
		default:
		}
	})
}

// failingAgent emits part of an answer, then fails.
type failingAgent struct{}

func (failingAgent) Stream(_ context.Context, _ memory.Window, _ string, emit func(string)) error {
	emit("I was about to say ")
	return errors.New("the model went away")
}

func TestAgentFailureKeepsWhatWasSaid(t *testing.T) {
	in := newInstance(t, dbtest.SQLiteURL(t), failingAgent{})
	s := in.create(t, "ada")
	events := in.send(t, "ada", s.ID, "tell me something")
	last := events[len(events)-1]
	assert.Equal(t, "done", last.name)
	assert.Equal(t, false, last.data["complete"])
	assert.Contains(t, last.data["error"], "the model went away")
	h := in.history(t, "ada", s.ID)
	require.Len(t, h.Turns, 1)
	assert.Equal(t, "tell me something", h.Turns[0].User)
	assert.Equal(t, "I was about to say ", h.Turns[0].Answer)
	assert.False(t, h.Turns[0].Complete, "a cut answer is not complete")
}

// TestCloseStopsAnswers checks that closing a server stops an answer under
// way, stores what it produced, and waits for that.
func TestCloseStopsAnswers(t *testing.T) {
	agent := newStepAgent()
	in := newInstance(t, dbtest.SQLiteURL(t), agent)
	in.srv.flushEvery = time.Hour // nothing is stored before the end
	s := in.create(t, "ada")
	resp := in.post(t, context.Background(), "ada", s.ID, "count")
	defer resp.Body.Close()
	<-agent.midway
	in.srv.close()
	require.ErrorIs(t, <-agent.stopped, context.Canceled)
	h := in.history(t, "ada", s.ID)
	require.Len(t, h.Turns, 1)
	assert.Equal(t, "one two ", h.Turns[0].Answer, "stored before close returned")
	assert.False(t, h.Turns[0].Complete)
	status, _ := in.call(t, "POST", "/api/sessions/"+s.ID+"/messages", "ada", map[string]string{"content": "more"})
	assert.Equal(t, http.StatusServiceUnavailable, status)
}

// TestTwoServersShareConversations runs two servers on one database, as
// two processes would, and alternates requests between them: each sees
// the other's writes at once, although each caches windows. PostgreSQL is
// the case that matters (servers on many hosts); two processes on one
// SQLite file behave the same.
func TestTwoServersShareConversations(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		dbURL := d.URL(t)
		a, b := newInstance(t, dbURL, offlineAgent{}), newInstance(t, dbURL, offlineAgent{})

		s := a.create(t, "ada")
		assert.Equal(t, []string{s.ID}, ids(b.sessions(t, "ada")), "B lists the session A made")
		answer(t, a.send(t, "ada", s.ID, "hello")) // A caches the window
		assert.Equal(t, "Nice to meet you, Ada. I will remember your name, even across restarts.",
			answer(t, b.send(t, "ada", s.ID, "my name is Ada")))
		assert.Equal(t, "Your name is Ada.", answer(t, a.send(t, "ada", s.ID, "what is my name?")),
			"A's cached window holds B's turn")

		servers := []*instance{a, b}
		for i := range 6 {
			got := answer(t, servers[i%2].send(t, "ada", s.ID, "message "+string(rune('a'+i))))
			assert.Contains(t, got, "I remember "+itoa(3+i)+" earlier turns", "sent to server %d", i%2)
		}
		ha, hb := a.history(t, "ada", s.ID), b.history(t, "ada", s.ID)
		assert.Equal(t, ha, hb)
		require.Len(t, hb.Turns, 9)
		for _, turn := range hb.Turns {
			assert.True(t, turn.Complete)
		}

		// Many writers at once, on both servers, each on a session of its own
		// and on one shared one.
		shared := b.create(t, "bob")
		own := make([]sessionJSON, 8)
		for i := range own {
			own[i] = servers[i%2].create(t, "bob")
		}
		errs := make(chan error, 2*len(own))
		var wg sync.WaitGroup
		for i := range own {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := servers[i%2]
				errs <- in.trySend("bob", own[i].ID, "hello")
				errs <- in.trySend("bob", shared.ID, "hello from "+itoa(i))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err)
		}
		assert.Len(t, a.sessions(t, "bob"), 9)
		assert.Len(t, b.history(t, "bob", shared.ID).Turns, 8)

		a.get(t, "DELETE", "/api/sessions/"+s.ID, "ada", nil, http.StatusNoContent, nil)
		status, _ := b.call(t, "GET", "/api/sessions/"+s.ID+"/history", "ada", nil)
		assert.Equal(t, http.StatusNotFound, status, "B sees the session A deleted")
		var rep map[string]int
		b.get(t, "DELETE", "/api/users/bob", "bob", nil, http.StatusOK, &rep)
		assert.Equal(t, 9, rep["sessions"])
		assert.Empty(t, a.sessions(t, "bob"))
	})
}

// trySend sends a message and reads its answer, for goroutines other than
// the test's: it returns an error where send fails the test.
func (in *instance) trySend(user, session, text string) error {
	body, _ := json.Marshal(map[string]string{"content": text})
	req, err := http.NewRequest("POST", in.ts.URL+"/api/sessions/"+url.PathEscape(session)+"/messages", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(UserHeader, user)
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.ts.Client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), `"complete":true`) {
		return fmt.Errorf("send %q: %s: %s", text, resp.Status, data)
	}
	return nil
}

func itoa(i int) string {
	data, _ := json.Marshal(i)
	return string(data)
}

// /history holds the summary of the turns older than the agent's window.
func TestHistoryShowsSummary(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		in := newInstance(t, d.URL(t), offlineAgent{})
		s := in.create(t, "ada")
		require.NoError(t, in.mem.SaveTurn(ctx, s.ID, memory.Turn{User: "My name is Ada Lovelace, born 1815.", Agent: "Hello Ada."}))
		n := memory.DefaultMaxTurns + 3
		for i := 2; i <= n; i++ {
			require.NoError(t, in.mem.SaveTurn(ctx, s.ID, memory.Turn{User: "go on", Agent: "ok"}))
		}
		h := in.history(t, "ada", s.ID)
		covered := 0
		if h.Summary != nil {
			covered = h.Summary.Turns
		}
		assert.Equal(t, 3, covered+h.Unsummarized, "every turn older than the window is summarized or counted")
		sum, err := in.mem.Summarize(ctx, s.ID)
		require.NoError(t, err)
		h = in.history(t, "ada", s.ID)
		require.NotNil(t, h.Summary)
		assert.Equal(t, sum.Text, h.Summary.Text)
		assert.Equal(t, 3, h.Summary.Turns)
		assert.Equal(t, 0, h.Unsummarized)
		assert.Contains(t, h.Summary.Text, "Ada Lovelace")
		assert.Len(t, h.Turns, n, "the history still holds every turn")
	})
}
