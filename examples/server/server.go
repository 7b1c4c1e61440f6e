package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// UserHeader names the request header that says who the user is; the query
// parameter "user" does too, for links and EventSource-less clients. There
// is no authentication: this is an example, and whoever names a user acts
// as that user. A user only sees and changes the sessions it owns.
const UserHeader = "X-Turnkeep-User"

// Limits of a request.
const (
	maxBodyBytes  = 2 * memory.DefaultMaxMessageBytes // above the memory's limit, so it is the memory that refuses
	maxTitleRunes = 60                                // of a title made from the first message
	answerTimeout = 5 * time.Minute                   // bounds an agent's whole answer
)

// The web page: its HTML, script and style, each served from its own path
// so that the Content-Security-Policy needs no inline script or style.
var (
	//go:embed page.html
	page []byte
	//go:embed page.js
	pageJS []byte
	//go:embed page.css
	pageCSS []byte
)

// A server is the HTTP chat: a JSON API over a memory, answers streamed as
// server-sent events, and the web page. Many servers may share one
// database (see the package doc). It is safe for concurrent use.
type server struct {
	mem          *memory.PersistentBufferMemory
	agent        Agent
	flushEvery   time.Duration // see answerWriter
	writeTimeout time.Duration // per response, and per event of an answer (see guard)
	log          *log.Logger
	base         context.Context // answers run under it, not under their request; close ends it
	stop         context.CancelFunc
	mux          *http.ServeMux

	mu      sync.Mutex     // protects closed, and answers.Add against close's Wait
	closed  bool           // close has begun: no answer starts
	answers sync.WaitGroup // the answers under way
}

func newServer(mem *memory.PersistentBufferMemory, agent Agent, logger *log.Logger) *server {
	base, stop := context.WithCancel(context.Background())
	s := &server{mem: mem, agent: agent, flushEvery: DefaultFlushEvery, writeTimeout: DefaultWriteTimeout,
		log: logger, base: base, stop: stop, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", asset("text/html; charset=utf-8", page))
	s.mux.HandleFunc("GET /page.js", asset("text/javascript; charset=utf-8", pageJS))
	s.mux.HandleFunc("GET /page.css", asset("text/css; charset=utf-8", pageCSS))
	s.mux.HandleFunc("GET /api/sessions", s.listSessions)
	s.mux.HandleFunc("POST /api/sessions", s.createSession)
	s.mux.HandleFunc("GET /api/sessions/{id}", s.sessionInfo)
	s.mux.HandleFunc("DELETE /api/sessions/{id}", s.deleteSession)
	s.mux.HandleFunc("GET /api/sessions/{id}/history", s.history)
	s.mux.HandleFunc("POST /api/sessions/{id}/messages", s.sendMessage)
	s.mux.HandleFunc("POST /api/sessions/{id}/versions", s.newVersion)
	s.mux.HandleFunc("DELETE /api/users/{user}", s.deleteUser)
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.guard(w, r, s.mux) }

// close stops the answers under way and waits until what they produced is
// stored. Messages sent after it are refused.
func (s *server) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.answers.Wait()
}

// startAnswer registers an answer, or reports false once close has begun.
func (s *server) startAnswer() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.answers.Add(1)
	return true
}

// asset serves a file of the page.
func asset(contentType string, data []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(data)
	}
}

// The JSON of the API.
type (
	sessionJSON struct {
		ID        string    `json:"id"`
		User      string    `json:"user"`
		Title     string    `json:"title"`
		TurnCount int       `json:"turn_count"`
		CreatedAt time.Time `json:"created_at"`
		UpdatedAt time.Time `json:"updated_at"`
		ForkOf    *forkJSON `json:"fork_of,omitempty"` // see versions.go
	}
	turnJSON struct {
		ID       string        `json:"id"`
		Seq      int           `json:"seq"` // its place in the session, from 1
		Time     time.Time     `json:"time"`
		User     string        `json:"user"`               // what the user said
		Answer   string        `json:"answer"`             // the answer's segments joined
		Complete bool          `json:"complete"`           // false while the answer streams, or if it was cut short
		Messages []messageJSON `json:"messages"`           // as stored
		First    bool          `json:"first,omitempty"`    // the session's first: a new version of it is a new session
		Fork     *forkJSON     `json:"fork,omitempty"`     // where a new version forks (see versions.go); none for a first turn
		Versions *versionsJSON `json:"versions,omitempty"` // when the turn has more than one
	}
	messageJSON struct {
		ID       string         `json:"id"`
		Role     memory.Role    `json:"role"`
		Content  string         `json:"content,omitempty"`
		Name     string         `json:"name,omitempty"`
		Metadata map[string]any `json:"metadata,omitempty"`
	}
)

func toSessionJSON(info memory.SessionInfo) sessionJSON {
	j := sessionJSON{ID: info.ID, User: info.User, Title: info.Title, TurnCount: info.TurnCount,
		CreatedAt: info.CreatedAt, UpdatedAt: info.UpdatedAt}
	if f := info.ForkOf; f != nil {
		j.ForkOf = &forkJSON{SessionID: f.SessionID, TurnID: f.TurnID}
	}
	return j
}

func toTurnJSON(t memory.Turn) turnJSON {
	j := turnJSON{ID: t.ID, Seq: t.Seq, Time: t.Timestamp, User: t.User, Answer: answerOf(t.Messages), Complete: answered(t.Messages),
		Messages: make([]messageJSON, 0, len(t.Messages))}
	for _, m := range t.Messages {
		j.Messages = append(j.Messages, messageJSON{ID: m.ID, Role: m.Role, Content: m.Content, Name: m.Name, Metadata: m.Metadata})
	}
	return j
}

// user returns the user the request names, or writes a 400 and returns
// false.
func (s *server) user(w http.ResponseWriter, r *http.Request) (string, bool) {
	u := r.Header.Get(UserHeader)
	if u == "" {
		u = r.URL.Query().Get("user")
	}
	u = strings.TrimSpace(u)
	if u == "" {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("say who you are: header %s or query parameter user", UserHeader))
		return "", false
	}
	if err := memory.ValidateUser(u); err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return "", false
	}
	return u, true
}

// owned returns the session of the request's path if the user owns it, or
// writes an error and returns false. A session of another user is not
// found, as one that does not exist.
func (s *server) owned(w http.ResponseWriter, r *http.Request) (string, memory.SessionInfo, bool) {
	user, ok := s.user(w, r)
	if !ok {
		return "", memory.SessionInfo{}, false
	}
	info, err := s.mem.SessionInfo(r.Context(), r.PathValue("id"))
	if err == nil && info.User != user {
		err = fmt.Errorf("session %q: %w", info.ID, memory.ErrSessionNotFound)
	}
	if err != nil {
		s.error(w, err)
		return "", memory.SessionInfo{}, false
	}
	return user, info, true
}

func (s *server) listSessions(w http.ResponseWriter, r *http.Request) {
	user, ok := s.user(w, r)
	if !ok {
		return
	}
	q := memory.SessionQuery{User: user, After: r.URL.Query().Get("after")}
	if q.Limit, ok = s.limit(w, r); !ok {
		return
	}
	p, err := s.mem.ListSessions(r.Context(), q)
	if err != nil {
		s.error(w, err)
		return
	}
	out := struct {
		Sessions []sessionJSON `json:"sessions"`
		Next     string        `json:"next"`
	}{Sessions: make([]sessionJSON, 0, len(p.Sessions)), Next: p.Next}
	for _, info := range p.Sessions {
		out.Sessions = append(out.Sessions, toSessionJSON(info))
	}
	s.json(w, http.StatusOK, out)
}

func (s *server) createSession(w http.ResponseWriter, r *http.Request) {
	user, ok := s.user(w, r)
	if !ok {
		return
	}
	var in struct {
		ID    json.RawMessage `json:"id"` // refused: see the package doc
		Title string          `json:"title"`
	}
	if !s.decode(w, r, &in, true) {
		return
	}
	if in.ID != nil {
		s.fail(w, http.StatusBadRequest, errors.New(`id: the server names sessions: leave "id" out and use the one in the answer`))
		return
	}
	id := newSessionID()
	if err := s.mem.CreateSession(r.Context(), memory.SessionInfo{ID: id, User: user, Title: strings.TrimSpace(in.Title)}); err != nil {
		s.error(w, err)
		return
	}
	info, err := s.mem.SessionInfo(r.Context(), id)
	if err != nil {
		s.error(w, err)
		return
	}
	s.json(w, http.StatusCreated, toSessionJSON(info))
}

// newSessionID returns 128 random bits from crypto/rand, in hex: a name
// nobody guesses.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never returns an error
	return hex.EncodeToString(b[:])
}

func (s *server) sessionInfo(w http.ResponseWriter, r *http.Request) {
	if _, info, ok := s.owned(w, r); ok {
		s.json(w, http.StatusOK, toSessionJSON(info))
	}
}

func (s *server) deleteSession(w http.ResponseWriter, r *http.Request) {
	_, info, ok := s.owned(w, r)
	if !ok {
		return
	}
	if err := s.clearTree(r.Context(), info.ID); err != nil {
		s.error(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteUser removes every session of the user named in the path, who
// must be the user making the request.
func (s *server) deleteUser(w http.ResponseWriter, r *http.Request) {
	user, ok := s.user(w, r)
	if !ok {
		return
	}
	if r.PathValue("user") != user {
		s.fail(w, http.StatusForbidden, errors.New("a user can delete only itself"))
		return
	}
	rep, err := s.mem.DeleteUser(r.Context(), user)
	if err != nil {
		s.error(w, err)
		return
	}
	s.json(w, http.StatusOK, map[string]int{"sessions": rep.Sessions, "messages": rep.Messages})
}

// summaryJSON is a session's summary in /history: its text and the
// number of the session's first turns it covers.
type summaryJSON struct {
	Text      string    `json:"text"`
	Turns     int       `json:"turns"`
	Tokens    int       `json:"tokens"`
	UpdatedAt time.Time `json:"updated_at"`
}

// history returns a page of the session's turns: oldest first, or with
// newest_first=true from the newest back (what a chat shows first), with
// their versions (see versions.go).
func (s *server) history(w http.ResponseWriter, r *http.Request) {
	user, info, ok := s.owned(w, r)
	if !ok {
		return
	}
	q := memory.HistoryQuery{After: r.URL.Query().Get("after")}
	if q.Limit, ok = s.limit(w, r); !ok {
		return
	}
	if v := r.URL.Query().Get("newest_first"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.fail(w, http.StatusBadRequest, fmt.Errorf("newest_first: want true or false, got %q", v))
			return
		}
		q.NewestFirst = b
	}
	p, err := s.mem.History(r.Context(), info.ID, q)
	if err != nil {
		s.error(w, err)
		return
	}
	// The summary of the turns older than the agent's window, and how
	// many of them it does not cover yet: one more statement.
	win, err := s.mem.LoadContext(r.Context(), info.ID)
	if err != nil {
		s.error(w, err)
		return
	}
	out := struct {
		Session      sessionJSON  `json:"session"`
		Root         string       `json:"root"` // the session it is a version in: its first ancestor, or itself
		Summary      *summaryJSON `json:"summary,omitempty"`
		Unsummarized int          `json:"unsummarized"`
		Turns        []turnJSON   `json:"turns"`
		Next         string       `json:"next"`
	}{Session: toSessionJSON(info), Unsummarized: win.Unsummarized, Turns: make([]turnJSON, 0, len(p.Turns)), Next: p.Next}
	if sm := win.Summary; sm != nil {
		out.Summary = &summaryJSON{Text: sm.Text, Turns: sm.Turns, Tokens: sm.Tokens, UpdatedAt: sm.UpdatedAt}
	}
	for _, t := range p.Turns {
		out.Turns = append(out.Turns, toTurnJSON(t))
	}
	// The versions of a turn depend on the turn before it, so they are
	// worked out on the page's turns oldest first, with the turn before
	// them: for a newest-first page, the first of the next page.
	view := make([]*turnJSON, len(out.Turns))
	for i := range out.Turns {
		view[i] = &out.Turns[i]
	}
	before, first := "", q.After == ""
	if q.NewestFirst {
		slices.Reverse(view)
		first = p.Next == ""
		if !first {
			prev, err := s.mem.History(r.Context(), info.ID, memory.HistoryQuery{After: p.Next, Limit: 1, NewestFirst: true})
			if err != nil {
				s.error(w, err)
				return
			}
			if len(prev.Turns) == 1 {
				before = prev.Turns[0].ID
			}
		}
	}
	if out.Root, err = s.versions(r.Context(), user, info, view, before, first); err != nil {
		s.error(w, err)
		return
	}
	s.json(w, http.StatusOK, out)
}

// sendMessage stores the user's message, then streams the agent's answer
// as server-sent events while storing it (see answerWriter):
//
//	event: turn   data: {"session_id": …, "turn_id": …, "title": …}  the message is stored
//	event: delta  data: {"text": …}                                   a piece of the answer
//	event: done   data: {"turn_id": …, "complete": …, "error": …}     the answer ended
//
// Errors before the message is stored are plain JSON errors. The answer
// runs under the server's context, not the request's: a reader that leaves
// (a reload) does not cut it short, and the history shows it growing.
func (s *server) sendMessage(w http.ResponseWriter, r *http.Request) {
	user, info, ok := s.owned(w, r)
	if !ok {
		return
	}
	var in struct {
		Content string `json:"content"`
	}
	if !s.decode(w, r, &in, false) {
		return
	}
	content, ok := s.content(w, in.Content)
	if !ok {
		return
	}
	if !s.startAnswer() {
		s.fail(w, http.StatusServiceUnavailable, errors.New("the server is shutting down"))
		return
	}
	defer s.answers.Done()
	s.answer(w, r, user, info, content)
}

// content cleans a message the user sent, or writes a 400 and returns
// false: stored text must be valid UTF-8 without NUL bytes, and not empty.
func (s *server) content(w http.ResponseWriter, text string) (string, bool) {
	content := strings.TrimSpace(strings.ReplaceAll(strings.ToValidUTF8(text, "\uFFFD"), "\x00", ""))
	if content == "" {
		s.fail(w, http.StatusBadRequest, errors.New("content: empty message"))
		return "", false
	}
	return content, true
}

// answer stores content as a new turn of the session info, owned by user,
// and streams the agent's answer (see sendMessage). The caller has
// registered the answer with startAnswer.
func (s *server) answer(w http.ResponseWriter, r *http.Request, user string, info memory.SessionInfo, content string) {
	ctx := r.Context()
	win, err := s.mem.LoadContext(ctx, info.ID)
	if err != nil {
		s.error(w, err)
		return
	}
	turnID := memory.NewTurnID()
	msg := memory.Message{ID: driver.DerivedMessageID(turnID, 0), Role: memory.RoleUser, Content: content, Name: user}
	if err := s.mem.SaveTurn(ctx, info.ID, memory.Turn{ID: turnID, Messages: []memory.Message{msg}}); err != nil {
		s.error(w, err)
		return
	}
	if info.Title == "" { // name the session after its first message
		info.Title = titleOf(content)
		if err := s.mem.CreateSession(ctx, memory.SessionInfo{ID: info.ID, User: user, Title: info.Title}); err != nil {
			s.log.Printf("set title of session %q: %v", info.ID, err)
		}
	}

	ev := newEventWriter(w, s.writeTimeout)
	ev.send("turn", map[string]string{"session_id": info.ID, "turn_id": turnID, "title": info.Title})

	actx, cancel := context.WithTimeout(s.base, answerTimeout)
	defer cancel()
	aw := newAnswerWriter(s.mem, info.ID, turnID, s.flushEvery)
	err = s.agent.Stream(actx, win, content, func(text string) {
		aw.write(actx, text)
		ev.send("delta", map[string]string{"text": text})
	})
	done := map[string]any{"turn_id": turnID, "complete": err == nil}
	if err != nil {
		s.log.Printf("session %q turn %s: agent: %v", info.ID, turnID, err)
		done["error"] = "the agent failed: " + err.Error() + " (your message is stored)"
	}
	if serr := aw.finish(actx, err == nil); serr != nil {
		s.log.Printf("session %q turn %s: store answer: %v", info.ID, turnID, serr)
		done["complete"] = false
		done["error"] = "the answer was not stored: " + serr.Error()
	}
	ev.send("done", done)
}

// titleOf makes a session title of a first message.
func titleOf(content string) string {
	title := strings.Join(strings.Fields(content), " ")
	if utf8.RuneCountInString(title) > maxTitleRunes {
		title = string([]rune(title)[:maxTitleRunes-1]) + "…"
	}
	return title
}

// An eventWriter writes server-sent events. Each event gets timeout (0:
// none) to be written, so a reader that stops reading is cut rather than
// holding the answer up. After a failed write (the reader has gone or
// stalled) it writes nothing more; the answer goes on being stored.
type eventWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	err     error
}

func newEventWriter(w http.ResponseWriter, timeout time.Duration) *eventWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // a proxy such as nginx must not hold events back
	w.WriteHeader(http.StatusOK)
	return &eventWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (e *eventWriter) send(event string, v any) {
	if e.err != nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		e.err = err
		return
	}
	if e.timeout > 0 {
		_ = e.rc.SetWriteDeadline(time.Now().Add(e.timeout)) // see guard
	}
	if _, e.err = fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", event, data); e.err == nil {
		e.err = e.rc.Flush()
	}
}

// limit parses the query parameter limit (0 when absent: the memory's
// default), or writes a 400 and returns false.
func (s *server) limit(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > memory.MaxListLimit {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("limit: want 1 to %d, got %q", memory.MaxListLimit, v))
		return 0, false
	}
	return n, true
}

// decode reads the JSON body (bounded by guard) into v, or writes a 400
// (413 if it is over maxBodyBytes) and returns false. With optional, an
// empty body is an empty object.
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if optional && errors.Is(err, io.EOF) {
		return true
	}
	if tooLarge := new(http.MaxBytesError); errors.As(err, &tooLarge) {
		s.fail(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body: over %d bytes", tooLarge.Limit))
		return false
	}
	if err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

// error writes err with the status it calls for.
func (s *server) error(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, memory.ErrSessionNotFound), errors.Is(err, memory.ErrSessionOwned),
		errors.Is(err, memory.ErrSessionExists):
		// Another user's session, or an unowned one that holds turns, is
		// not found, as one that does not exist.
		s.fail(w, http.StatusNotFound, errors.New("no such session"))
	case errors.Is(err, memory.ErrInvalidSessionID), errors.Is(err, memory.ErrInvalidUser),
		errors.Is(err, memory.ErrInvalidTurn), errors.Is(err, memory.ErrInvalidCursor),
		errors.Is(err, memory.ErrInvalidOption):
		s.fail(w, http.StatusBadRequest, err)
	case errors.Is(err, memory.ErrTurnNotFound):
		s.fail(w, http.StatusNotFound, errors.New("no such turn in this session"))
	case errors.Is(err, memory.ErrConflict):
		s.fail(w, http.StatusConflict, errors.New("the session moved on meanwhile: reload it"))
	case errors.Is(err, memory.ErrNotSupported):
		s.fail(w, http.StatusNotImplemented, err)
	case errors.Is(err, memory.ErrTurnTooLarge):
		s.fail(w, http.StatusRequestEntityTooLarge, err)
	case errors.Is(err, context.Canceled):
		// The client has gone; nobody reads an answer.
	default:
		s.log.Printf("error: %v", err)
		s.fail(w, http.StatusInternalServerError, errors.New("internal error (see the server's log)"))
	}
}

func (s *server) fail(w http.ResponseWriter, status int, err error) {
	s.json(w, status, map[string]string{"error": err.Error()})
}

func (s *server) json(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Printf("write response: %v", err)
	}
}
