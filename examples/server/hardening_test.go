package main

// Tests of issue 16, item 8: the server as people will copy it. Slow
// clients are cut, a POST must be JSON, every response carries the
// security headers, and the server names sessions.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// shortTimeouts make the timeout tests fast.
var shortTimeouts = timeouts{readHeader: 300 * time.Millisecond, read: 500 * time.Millisecond, idle: 500 * time.Millisecond}

// cutMargin is how long after its timeout a connection may still be open:
// generous, for -race on a loaded machine.
const cutMargin = 3 * time.Second

// slowClients opens n connections to in, each sending head at once, then
// trickle one byte every 50 ms for as long as the server reads, and returns
// how long each took to be cut (read EOF or an error), or fails if one is
// still open after within. Everything the server answered is returned too.
func slowClients(t *testing.T, in *instance, n int, head, trickle string, within time.Duration) ([]time.Duration, []string) {
	t.Helper()
	addr := in.ts.Listener.Addr().String()
	took := make([]time.Duration, n)
	answers := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_ = c.SetReadDeadline(start.Add(within))
			if _, err := io.WriteString(c, head); err != nil {
				errs <- fmt.Errorf("connection %d: write head: %w", i, err)
				return
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() { // the trickle: stops when the server has cut the connection
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for j := 0; ; j++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := io.WriteString(c, trickle[j%len(trickle):j%len(trickle)+1]); err != nil {
						return
					}
				}
			}()
			data, err := io.ReadAll(c) // until the server closes
			took[i] = time.Since(start)
			answers[i] = string(data)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				errs <- fmt.Errorf("connection %d: still open after %v", i, within)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	return took, answers
}

// TestSlowClientsAreCut opens 40 connections that send a request slowly:
// the server cuts each by its timeout. Before the read timeout, 40
// slow-body connections were still held after 15 s.
func TestSlowClientsAreCut(t *testing.T) {
	const n = 40
	in := newInstanceWith(t, nil, dbtest.SQLiteURL(t), offlineAgent{}, shortTimeouts)
	host := in.ts.Listener.Addr().String()

	t.Run("slow body", func(t *testing.T) {
		head := "POST /api/sessions HTTP/1.1\r\nHost: " + host + "\r\n" + UserHeader + ": ada\r\n" +
			"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n" + `{"title":"`
		took, answers := slowClients(t, in, n, head, "abcdefgh", shortTimeouts.read+cutMargin)
		longest := maxOf(took)
		t.Logf("%d slow-body connections cut after at most %v (read timeout %v)", n, longest, shortTimeouts.read)
		assert.GreaterOrEqual(t, longest, shortTimeouts.read, "cut by the read timeout, not before")
		for _, a := range answers {
			if a != "" { // the server may answer before it closes; never with a session
				assert.NotContains(t, a, "201 Created")
			}
		}
		assert.Empty(t, in.sessions(t, "ada"), "no slow request made a session")
	})
	t.Run("slow headers", func(t *testing.T) {
		head := "GET /api/sessions HTTP/1.1\r\nHost: " + host + "\r\n"
		took, _ := slowClients(t, in, n, head, "X-Slow: aaaaaaaa", shortTimeouts.readHeader+cutMargin)
		t.Logf("%d slow-header connections cut after at most %v (read-header timeout %v)", n, maxOf(took), shortTimeouts.readHeader)
	})
	t.Run("idle", func(t *testing.T) {
		c, err := net.Dial("tcp", host)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET /api/sessions HTTP/1.1\r\nHost: "+host+"\r\n"+UserHeader+": ada\r\n\r\n")
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, c.SetReadDeadline(start.Add(shortTimeouts.idle+cutMargin)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		_, err = c.Read(make([]byte, 1)) // the kept-alive connection, idle
		assert.ErrorIs(t, err, io.EOF, "cut by the idle timeout after %v", time.Since(start))
	})
}

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// TestStreamOutlivesTimeouts sends a message whose answer takes longer
// than the read timeout and the per-response write timeout: it streams
// whole, as there is no server-wide write timeout and each event gets its
// own deadline.
func TestStreamOutlivesTimeouts(t *testing.T) {
	agent := offlineAgent{delay: 100 * time.Millisecond} // 13 words: 1.2 s
	in := newInstanceWith(t, nil, dbtest.SQLiteURL(t), agent, shortTimeouts)
	in.srv.writeTimeout = 300 * time.Millisecond
	s := in.create(t, "ada")
	start := time.Now()
	got := answer(t, in.send(t, "ada", s.ID, "my name is Ada"))
	assert.Equal(t, "Nice to meet you, Ada. I will remember your name, even across restarts.", got)
	assert.Greater(t, time.Since(start), shortTimeouts.read+in.srv.writeTimeout, "the answer outlasted both timeouts")
}

// smallBuffers is a listener whose connections have small send buffers,
// so that a reader that does not read blocks the server's writes soon.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// bigAgent answers with n pieces of size bytes each.
type bigAgent struct{ n, size int }

func (a bigAgent) Stream(_ context.Context, _ memory.Window, _ string, emit func(string)) error {
	piece := strings.Repeat("x", a.size-1) + " "
	for range a.n {
		emit(piece)
	}
	return nil
}

// TestStalledReaderDoesNotHoldAnswer sends a message and never reads the
// answer: its events stop at the write deadline, while the answer is
// stored whole. Without a write deadline the write blocks until the reader
// leaves, and the answer with it.
func TestStalledReaderDoesNotHoldAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	agent := bigAgent{n: 32, size: 32 << 10} // 1 MiB, far over the buffers of the connection
	in := newInstanceWith(t, smallBuffers{ln}, dbtest.SQLiteURL(t), agent, defaultTimeouts)
	in.srv.writeTimeout = 200 * time.Millisecond
	in.srv.flushEvery = 0 // a segment per piece, each under the memory's message limit
	s := in.create(t, "ada")

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() }) // before the instance stops: registered after it
	require.NoError(t, c.(*net.TCPConn).SetReadBuffer(4<<10))
	body := `{"content":"tell me a lot"}`
	_, err = fmt.Fprintf(c, "POST /api/sessions/%s/messages HTTP/1.1\r\nHost: x\r\n%s: ada\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		s.ID, UserHeader, len(body), body)
	require.NoError(t, err)

	// Read from the memory: over this listener's small buffers, a history of
	// 1 MiB is itself cut by the short write deadline.
	var h memory.HistoryPage
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err = in.mem.History(context.Background(), s.ID, memory.HistoryQuery{})
		require.NoError(t, err)
		if len(h.Turns) == 1 && answered(h.Turns[0].Messages) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.Len(t, h.Turns, 1)
	assert.True(t, answered(h.Turns[0].Messages), "the answer was stored whole while its reader did not read")
	assert.Equal(t, agent.n*agent.size, len(answerOf(h.Turns[0].Messages)), "bytes of the answer stored")
}

// TestPostMustBeJSON sends what a cross-site form can: a POST of
// text/plain, form-urlencoded or multipart, naming the user in the query.
// Each is refused with 415 and writes nothing.
func TestPostMustBeJSON(t *testing.T) {
	in := newInstance(t, dbtest.SQLiteURL(t), offlineAgent{})
	s := in.create(t, "ada")
	// <form enctype="text/plain"><input name='{"content":"hi' value='"}'>
	// sends {"content":"hi="}: valid JSON.
	formJSON := `{"content":"hi="}`
	for _, c := range []struct{ name, path, contentType, body string }{
		{"text/plain message", "/api/sessions/" + s.ID + "/messages", "text/plain", formJSON},
		{"text/plain session", "/api/sessions", "text/plain", `{"title":"x="}`},
		{"urlencoded message", "/api/sessions/" + s.ID + "/messages", "application/x-www-form-urlencoded", formJSON},
		{"multipart message", "/api/sessions/" + s.ID + "/messages", "multipart/form-data; boundary=b", formJSON},
		{"no content type", "/api/sessions/" + s.ID + "/messages", "", formJSON},
		{"json look-alike", "/api/sessions/" + s.ID + "/messages", "application/jsonx", formJSON},
		{"empty session body", "/api/sessions", "text/plain", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", in.ts.URL+c.path+"?user=ada", strings.NewReader(c.body))
			require.NoError(t, err)
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			} // else Go sends none
			resp, err := in.ts.Client().Do(req)
			require.NoError(t, err)
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode, "%s", data)
			assert.Contains(t, string(data), "application/json")
		})
	}
	assert.Equal(t, []string{s.ID}, ids(in.sessions(t, "ada")), "no session was made")
	assert.Zero(t, in.history(t, "ada", s.ID).Session.TurnCount, "no message was stored")

	// JSON with parameters is JSON.
	req, err := http.NewRequest("POST", in.ts.URL+"/api/sessions?user=ada", strings.NewReader(`{"title":"t"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "Application/JSON; charset=utf-8")
	resp, err := in.ts.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
}

// TestBodyLimit sends a body over maxBodyBytes: 413, and nothing stored.
func TestBodyLimit(t *testing.T) {
	in := newInstance(t, dbtest.SQLiteURL(t), offlineAgent{})
	s := in.create(t, "ada")
	status, body := in.call(t, "POST", "/api/sessions/"+s.ID+"/messages", "ada", map[string]string{"content": strings.Repeat("x", maxBodyBytes)})
	assert.Equal(t, http.StatusRequestEntityTooLarge, status, "%s", body)
	assert.Zero(t, in.history(t, "ada", s.ID).Session.TurnCount)
}

// TestSecurityHeaders checks the headers of every kind of response, and
// that the page keeps to its Content-Security-Policy: no inline script or
// style, nothing from elsewhere.
func TestSecurityHeaders(t *testing.T) {
	in := newInstance(t, dbtest.SQLiteURL(t), offlineAgent{})
	s := in.create(t, "ada")
	for _, c := range []struct {
		name, method, path, contentType, body string
		want                                  int
	}{
		{"page", "GET", "/", "", "", http.StatusOK},
		{"script", "GET", "/page.js", "", "", http.StatusOK},
		{"style", "GET", "/page.css", "", "", http.StatusOK},
		{"list", "GET", "/api/sessions?user=ada", "", "", http.StatusOK},
		{"stream", "POST", "/api/sessions/" + s.ID + "/messages?user=ada", "application/json", `{"content":"hi"}`, http.StatusOK},
		{"no user", "GET", "/api/sessions", "", "", http.StatusBadRequest},
		{"not found", "GET", "/nothing", "", "", http.StatusNotFound},
		{"wrong method", "PUT", "/api/sessions", "", "", http.StatusMethodNotAllowed},
		{"not JSON", "POST", "/api/sessions?user=ada", "text/plain", "{}", http.StatusUnsupportedMediaType},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, in.ts.URL+c.path, strings.NewReader(c.body))
			require.NoError(t, err)
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			resp, err := in.ts.Client().Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			require.Equal(t, c.want, resp.StatusCode)
			csp := resp.Header.Get("Content-Security-Policy")
			assert.Contains(t, csp, "default-src 'none'")
			assert.Contains(t, csp, "script-src 'self'")
			assert.Contains(t, csp, "frame-ancestors 'none'")
			assert.NotContains(t, csp, "unsafe-")
			assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
			assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			assert.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
		})
	}

	// The page's own files, typed (nosniff trusts the type).
	for path, want := range map[string]string{"/page.js": "text/javascript; charset=utf-8", "/page.css": "text/css; charset=utf-8"} {
		resp, err := in.ts.Client().Get(in.ts.URL + path)
		require.NoError(t, err)
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, want, resp.Header.Get("Content-Type"), path)
		assert.NotEmpty(t, data, path)
		assert.NotContains(t, string(data), "https://", "%s loads nothing from elsewhere", path)
	}
	// What the CSP would block: inline script or style, event attributes.
	html := string(page)
	scripts := regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1)
	require.NotEmpty(t, scripts)
	for _, m := range scripts {
		assert.Contains(t, m[1], `src="/`, "a script of the page's own")
		assert.Empty(t, strings.TrimSpace(m[2]), "no inline script")
	}
	for _, re := range []string{`(?i)<style`, `(?i)\sstyle=`, `(?i)\son[a-z]+=`, `(?i)javascript:`} {
		assert.NotRegexp(t, regexp.MustCompile(re), html, "page.html has what its Content-Security-Policy blocks")
	}
}

// TestSessionIDsMadeByServer checks that the server names sessions, so
// that nobody takes a session by guessing its name: a body that names one
// is refused, whether the name is free, another user's, or that of an
// unowned session other code saved turns in.
func TestSessionIDsMadeByServer(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		in := newInstance(t, d.URL(t), offlineAgent{})
		seen := map[string]bool{}
		hexID := regexp.MustCompile(`^[0-9a-f]{32}$`)
		for range 50 {
			id := in.create(t, "ada").ID
			assert.Regexp(t, hexID, id)
			assert.False(t, seen[id], "id %s made twice", id)
			seen[id] = true
		}

		// Another part of the app stores a conversation under a name of its
		// choosing, with no owner.
		ctx := context.Background()
		const ticket = "support-ticket-42"
		require.NoError(t, in.mem.SaveTurn(ctx, ticket, memory.Turn{ID: "t1",
			Messages: []memory.Message{{Role: memory.RoleUser, Content: "my card number is 4111"}}}))
		ada := in.create(t, "ada")
		answer(t, in.send(t, "ada", ada.ID, "my name is Ada"))

		for _, c := range []struct{ name, body string }{
			{"an unowned session with turns", `{"id":"` + ticket + `"}`},
			{"another user's session", `{"id":"` + ada.ID + `"}`},
			{"a free name", `{"id":"mine","title":"t"}`},
			{"an empty name", `{"id":""}`},
			{"null", `{"id":null}`},
		} {
			t.Run(c.name, func(t *testing.T) {
				req, err := http.NewRequest("POST", in.ts.URL+"/api/sessions", strings.NewReader(c.body))
				require.NoError(t, err)
				req.Header.Set(UserHeader, "bob")
				req.Header.Set("Content-Type", "application/json")
				resp, err := in.ts.Client().Do(req)
				require.NoError(t, err)
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", data)
				assert.Contains(t, string(data), "the server names sessions")
			})
		}
		assert.Empty(t, in.sessions(t, "bob"), "bob has no session")
		for _, id := range []string{ticket, ada.ID, "mine"} {
			for _, path := range []string{"/api/sessions/" + url.PathEscape(id), "/api/sessions/" + url.PathEscape(id) + "/history"} {
				status, body := in.call(t, "GET", path, "bob", nil)
				assert.Equal(t, http.StatusNotFound, status, "%s: %s", path, body)
				assert.NotContains(t, string(body), "4111")
			}
		}
		info, err := in.mem.SessionInfo(ctx, ticket)
		require.NoError(t, err)
		assert.Empty(t, info.User, "the ticket is still unowned")
		assert.Equal(t, 1, info.TurnCount)
		h := in.history(t, "ada", ada.ID)
		assert.Equal(t, "ada", h.Session.User)
		assert.Len(t, h.Turns, 1)
	})
}
