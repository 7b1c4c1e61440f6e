package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdkmcp "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/turnkeep/turnkeep/memory"
)

// Defaults of the tools' limit arguments.
const (
	defaultSearchHits = 10
	defaultPageLimit  = 20
	historyScanPage   = 200 // turns per History read while looking for before_turn
)

// tools serves the tools of one scope: mem is already the tenant's view,
// and every session is checked to be user's before it is read.
type tools struct {
	mem     *memory.PersistentBufferMemory
	user    string
	timeout time.Duration
}

// A toolError is a bad argument or a refused call: the tool's answer is an
// error result with this text, written for the model that called.
type toolError struct{ msg string }

func (e *toolError) Error() string { return e.msg }

func toolErrorf(format string, args ...any) error {
	return &toolError{fmt.Sprintf(format, args...)}
}

// errNotFound is the one answer for a session that is missing, another
// user's, another tenant's or unowned: they must read alike.
func errNotFound(id string) error {
	return toolErrorf("session_id %q: no such session. Call list_sessions or search_memory to find this user's session IDs.", id)
}

type searchInput struct {
	Query     string `json:"query" jsonschema:"Words to find; every word must occur in a message. Plain words only: quotes, operators and wildcards are taken as text."`
	SessionID string `json:"session_id,omitempty" jsonschema:"Search only this session (an ID from list_sessions or an earlier hit). Omit to search all of the user's sessions."`
	Limit     int    `json:"limit,omitempty" jsonschema:"Most hits to return, 1 to 20 (default 10; larger values are clamped to 20)."`
}

type searchHit struct {
	SessionID string `json:"session_id" jsonschema:"The session the message is in; pass it to get_history to read around it."`
	TurnID    string `json:"turn_id" jsonschema:"The turn the message is in."`
	Role      string `json:"role" jsonschema:"Who wrote it: user, assistant, system or tool."`
	Snippet   string `json:"snippet" jsonschema:"The text around the first match."`
	Time      string `json:"time" jsonschema:"When the turn was saved (RFC 3339, UTC)."`
}

type searchOutput struct {
	Hits    []searchHit `json:"hits" jsonschema:"Best match first."`
	Omitted int         `json:"omitted,omitempty" jsonschema:"Hits left out to keep the answer within its token budget; narrow the query or pass session_id to see them."`
}

type listInput struct {
	Cursor string `json:"cursor,omitempty" jsonschema:"The next_cursor of the previous answer, for the next page; omit for the first page."`
	Limit  int    `json:"limit,omitempty" jsonschema:"Most sessions per page, 1 to 50 (default 20; larger values are clamped to 50)."`
}

type sessionItem struct {
	SessionID string `json:"session_id"`
	Title     string `json:"title,omitempty"`
	TurnCount int    `json:"turn_count"`
	UpdatedAt string `json:"updated_at" jsonschema:"The last write (RFC 3339, UTC)."`
}

type listOutput struct {
	Sessions   []sessionItem `json:"sessions" jsonschema:"The user's sessions, most recently updated first."`
	NextCursor string        `json:"next_cursor,omitempty" jsonschema:"Pass as cursor for the next page; absent on the last page."`
}

type historyInput struct {
	SessionID  string `json:"session_id" jsonschema:"The session to read (an ID from list_sessions or search_memory)."`
	BeforeTurn string `json:"before_turn,omitempty" jsonschema:"A turn ID: return the turns before it (the previous answer's next_before_turn pages back). Omit for the newest turns."`
	Limit      int    `json:"limit,omitempty" jsonschema:"Most turns to return, 1 to 50 (default 20; larger values are clamped to 50)."`
}

type historyMessage struct {
	Role      string   `json:"role"`
	Name      string   `json:"name,omitempty"`
	Content   string   `json:"content,omitempty"`
	ToolCalls []string `json:"tool_calls,omitempty" jsonschema:"Names of the tools the assistant called."`
	Truncated bool     `json:"truncated,omitempty" jsonschema:"The content was cut to fit the answer's token budget."`
}

type historyTurn struct {
	TurnID   string           `json:"turn_id"`
	Time     string           `json:"time" jsonschema:"When the turn was saved (RFC 3339, UTC)."`
	Messages []historyMessage `json:"messages"`
}

type historySummary struct {
	Text  string `json:"text"`
	Turns int    `json:"turns" jsonschema:"The session's first turns that the summary covers."`
}

type historyOutput struct {
	SessionID      string          `json:"session_id"`
	Title          string          `json:"title,omitempty"`
	TurnCount      int             `json:"turn_count" jsonschema:"Every turn the session holds."`
	Summary        *historySummary `json:"summary,omitempty" jsonschema:"The session's running summary of its older turns, when it has one."`
	Turns          []historyTurn   `json:"turns" jsonschema:"Oldest first."`
	NextBeforeTurn string          `json:"next_before_turn,omitempty" jsonschema:"Pass as before_turn to read the older turns; absent when there are none."`
}

type noteInput struct {
	SessionID string `json:"session_id" jsonschema:"The session to add the note to; a new ID creates a session of this user."`
	Text      string `json:"text" jsonschema:"The note, as the user would say it."`
}

type noteOutput struct {
	SessionID string `json:"session_id"`
	TurnID    string `json:"turn_id"`
	TurnCount int    `json:"turn_count" jsonschema:"The session's turns, the note included."`
}

// register adds the tools to s.
func (t *tools) register(s *sdkmcp.Server, writes bool) error {
	readOnly := &sdkmcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: new(false)}
	if err := addTool(s, t, &sdkmcp.Tool{
		Name:        "search_memory",
		Title:       "Search memory",
		Annotations: readOnly,
		Description: "Search everything this user said (and was told) in past conversations, by words that must all occur. " +
			"Returns the best-matching messages with their session, turn, role, time and a snippet. " +
			"Use it before answering questions about the user's preferences, facts or earlier decisions; " +
			"then call get_history with a hit's session_id to read the conversation around it.",
	}, t.search); err != nil {
		return err
	}
	if err := addTool(s, t, &sdkmcp.Tool{
		Name:        "list_sessions",
		Title:       "List sessions",
		Annotations: readOnly,
		Description: "List this user's conversations, most recently updated first, with title, turn count and last update. " +
			"Page on with next_cursor.",
	}, t.list); err != nil {
		return err
	}
	if err := addTool(s, t, &sdkmcp.Tool{
		Name:        "get_history",
		Title:       "Read a conversation",
		Annotations: readOnly,
		Description: "Read one of this user's conversations: the newest turns (oldest first within the page), " +
			"with the session's summary of older turns when it has one. Pass next_before_turn as before_turn to read further back. " +
			"Long answers are cut to a token budget; read less with limit.",
	}, t.history); err != nil {
		return err
	}
	if !writes {
		return nil
	}
	return addTool(s, t, &sdkmcp.Tool{
		Name:        "save_note",
		Title:       "Save a note",
		Annotations: &sdkmcp.ToolAnnotations{DestructiveHint: new(false), OpenWorldHint: new(false)},
		Description: "Save a note to remember later, as a user message in one of this user's sessions " +
			"(a new session_id creates the session). search_memory finds it afterwards.",
	}, t.saveNote)
}

// addTool adds tool with handler h: schemas from In and Out, the call
// bounded by t.timeout, and every error an error result, never a protocol
// error or a panic. Arguments are decoded strictly here rather than by the
// SDK's generic validation, whose messages a model acts on less well and
// which re-encodes every argument and answer (a measured fifth of a
// search_memory call's cost).
func addTool[In, Out any](s *sdkmcp.Server, t *tools, tool *sdkmcp.Tool, h func(context.Context, In) (Out, error)) error {
	in, err := jsonschema.For[In](nil)
	if err != nil {
		return fmt.Errorf("mcp: input schema of %s: %w", tool.Name, err)
	}
	out, err := jsonschema.For[Out](nil)
	if err != nil {
		return fmt.Errorf("mcp: output schema of %s: %w", tool.Name, err)
	}
	tool.InputSchema, tool.OutputSchema = in, out
	s.AddTool(tool, func(ctx context.Context, req *sdkmcp.CallToolRequest) (res *sdkmcp.CallToolResult, _ error) {
		defer func() {
			if p := recover(); p != nil {
				res = errorResult(toolErrorf("%s failed: internal error (%v)", tool.Name, p))
			}
		}()
		var args In
		if err := decodeArgs(req.Params.Arguments, &args); err != nil {
			return errorResult(err), nil
		}
		ctx, cancel := context.WithTimeout(ctx, t.timeout)
		defer cancel()
		v, err := h(ctx, args)
		if err != nil {
			return errorResult(t.describe(ctx, tool.Name, err)), nil
		}
		data, err := json.Marshal(v)
		if err != nil {
			return errorResult(toolErrorf("%s failed: %v", tool.Name, err)), nil
		}
		return &sdkmcp.CallToolResult{
			Content:           []sdkmcp.Content{&sdkmcp.TextContent{Text: string(data)}},
			StructuredContent: json.RawMessage(data),
		}, nil
	})
	return nil
}

func errorResult(err error) *sdkmcp.CallToolResult {
	var res sdkmcp.CallToolResult
	res.SetError(err)
	return &res
}

// decodeArgs decodes a call's arguments into v strictly: an unknown
// argument, or one of the wrong type, is a tool error naming it.
func decodeArgs(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data")
	}
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return toolErrorf("%s: got a JSON %s; see the tool's input schema for its type.", typeErr.Field, typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return toolErrorf("unknown argument %s; see the tool's input schema for the arguments it takes.", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return toolErrorf("arguments: %v; pass a JSON object as the tool's input schema says.", err)
}

// describe turns err into the text of an error result.
func (t *tools) describe(ctx context.Context, name string, err error) error {
	if _, ok := errors.AsType[*toolError](err); ok {
		return err
	}
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return toolErrorf("%s was cut off by its deadline or cancelled before it finished; try again, with a smaller limit.", name)
	case errors.Is(err, memory.ErrInvalidQuery):
		return toolErrorf("query: %v. Use fewer, plain words.", err)
	case errors.Is(err, memory.ErrInvalidCursor):
		return toolErrorf("cursor: not a cursor of list_sessions. Pass the next_cursor of the previous answer, or omit it for the first page.")
	case errors.Is(err, memory.ErrInvalidSessionID):
		return toolErrorf("session_id: %v", err)
	}
	return toolErrorf("%s failed: %v", name, err)
}

func clamp(limit, def, max int) (int, error) {
	switch {
	case limit < 0:
		return 0, toolErrorf("limit: %d is below 1; pass a limit from 1 to %d, or omit it.", limit, max)
	case limit == 0:
		return def, nil
	}
	return min(limit, max), nil
}

// owned returns the session's info if it is the user's; any other
// session, or none, is errNotFound.
func (t *tools) owned(ctx context.Context, id string) (memory.SessionInfo, error) {
	if id == "" {
		return memory.SessionInfo{}, toolErrorf("session_id is required; call list_sessions or search_memory to find one.")
	}
	if err := memory.ValidateSessionID(id); err != nil {
		return memory.SessionInfo{}, toolErrorf("session_id %q is not a valid session ID; pass one from list_sessions or search_memory.", id)
	}
	info, err := t.mem.SessionInfo(ctx, id)
	switch {
	case errors.Is(err, memory.ErrSessionNotFound):
		return memory.SessionInfo{}, errNotFound(id)
	case err != nil:
		return memory.SessionInfo{}, err
	case info.User != t.user:
		return memory.SessionInfo{}, errNotFound(id)
	}
	return info, nil
}

func (t *tools) search(ctx context.Context, in searchInput) (searchOutput, error) {
	limit, err := clamp(in.Limit, defaultSearchHits, MaxSearchHits)
	if err != nil {
		return searchOutput{}, err
	}
	if strings.TrimSpace(in.Query) == "" {
		return searchOutput{}, toolErrorf("query is empty; pass the words to find.")
	}
	if in.SessionID != "" {
		if _, err := t.owned(ctx, in.SessionID); err != nil {
			return searchOutput{}, err
		}
	}
	hits, err := t.mem.Search(ctx, memory.SearchQuery{Text: in.Query, User: t.user, SessionID: in.SessionID, Limit: limit})
	if err != nil {
		return searchOutput{}, err
	}
	out := searchOutput{Hits: []searchHit{}}
	b := newBudget(OutputBudget)
	for i, h := range hits {
		hit := searchHit{SessionID: h.SessionID, TurnID: h.TurnID, Role: string(h.Message.Role), Time: formatTime(h.Time)}
		cost := fieldTokens(hit.SessionID, hit.TurnID, hit.Role, hit.Time, "") + snippetTokens(h.Message, h.Snippet)
		if !b.take(cost) {
			out.Omitted = len(hits) - i
			break
		}
		hit.Snippet = h.Snippet
		out.Hits = append(out.Hits, hit)
	}
	return out, nil
}

func (t *tools) list(ctx context.Context, in listInput) (listOutput, error) {
	limit, err := clamp(in.Limit, defaultPageLimit, MaxPageLimit)
	if err != nil {
		return listOutput{}, err
	}
	q := memory.SessionQuery{User: t.user, After: in.Cursor, Limit: limit}
	page, err := t.mem.ListSessions(ctx, q)
	if err != nil {
		return listOutput{}, err
	}
	items, fit := sessionItems(page.Sessions)
	if fit < len(items) {
		// Over the budget (long titles): read the page again cut where
		// it fits, so that its cursor goes on from there.
		q.Limit = max(fit, 1)
		if page, err = t.mem.ListSessions(ctx, q); err != nil {
			return listOutput{}, err
		}
		items, _ = sessionItems(page.Sessions)
		items = items[:min(len(items), q.Limit)]
	}
	return listOutput{Sessions: items, NextCursor: page.Next}, nil
}

// sessionItems renders sessions and says how many of them fit the budget.
func sessionItems(ss []memory.SessionInfo) ([]sessionItem, int) {
	items := make([]sessionItem, 0, len(ss))
	b := newBudget(OutputBudget)
	fit := -1
	for i, s := range ss {
		it := sessionItem{SessionID: s.ID, Title: s.Title, TurnCount: s.TurnCount, UpdatedAt: formatTime(s.UpdatedAt)}
		if !b.take(fieldTokens(it.SessionID, it.Title, "0", it.UpdatedAt)) && fit < 0 {
			fit = i
		}
		items = append(items, it)
	}
	if fit < 0 {
		fit = len(items)
	}
	return items, fit
}

func (t *tools) history(ctx context.Context, in historyInput) (historyOutput, error) {
	limit, err := clamp(in.Limit, defaultPageLimit, MaxPageLimit)
	if err != nil {
		return historyOutput{}, err
	}
	info, err := t.owned(ctx, in.SessionID)
	if err != nil {
		return historyOutput{}, err
	}
	turns, more, err := t.turnsBefore(ctx, in.SessionID, in.BeforeTurn, limit)
	if err != nil {
		return historyOutput{}, err
	}
	out := historyOutput{SessionID: info.ID, Title: info.Title, TurnCount: info.TurnCount, Turns: []historyTurn{}}
	b := newBudget(OutputBudget)
	b.take(fieldTokens(out.SessionID, out.Title, "0", "", "") + 2)
	w, err := t.mem.LoadContext(ctx, in.SessionID, memory.LoadMaxTurns(1))
	if err != nil {
		return historyOutput{}, err
	}
	if w.Summary != nil && w.Summary.Text != "" {
		// The summary takes at most a quarter of the budget.
		text, tokens := fitText(w.Summary.Text, w.Summary.Tokens, OutputBudget/4)
		out.Summary = &historySummary{Text: text, Turns: w.Summary.Turns}
		b.take(tokens + fieldTokens("", "0"))
	}
	// turns are newest first: keep the newest that fit, then put them in
	// reading order.
	var kept []historyTurn
	for i, turn := range turns {
		ht, cost := renderTurn(turn)
		if !b.take(cost) {
			if len(kept) > 0 {
				more = true
				break
			}
			// The newest turn alone is over what is left: cut it.
			ht, cost = renderTurnWithin(turn, b.left())
			b.take(cost)
			more = more || i < len(turns)-1
			kept = append(kept, ht)
			break
		}
		kept = append(kept, ht)
	}
	for i := len(kept) - 1; i >= 0; i-- {
		out.Turns = append(out.Turns, kept[i])
	}
	if more && len(kept) > 0 {
		out.NextBeforeTurn = kept[len(kept)-1].TurnID
	}
	return out, nil
}

// turnsBefore returns up to limit turns of the session before the turn
// before (the newest ones when before is ""), newest first, and whether
// older ones exist. A before that the session does not hold is a tool
// error.
func (t *tools) turnsBefore(ctx context.Context, id, before string, limit int) ([]memory.Turn, bool, error) {
	if before == "" {
		page, err := t.mem.History(ctx, id, memory.HistoryQuery{Limit: limit, NewestFirst: true})
		return page.Turns, page.Next != "", err
	}
	// Turns are paged by position, not by ID: read back from the newest
	// until the turn is found.
	q := memory.HistoryQuery{Limit: historyScanPage, NewestFirst: true}
	var out []memory.Turn
	found := false
	for {
		page, err := t.mem.History(ctx, id, q)
		if err != nil {
			return nil, false, err
		}
		for i, turn := range page.Turns {
			if found {
				out = append(out, turn)
				if len(out) == limit {
					return out, i < len(page.Turns)-1 || page.Next != "", nil
				}
			} else if turn.ID == before {
				found = true
			}
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if !found {
		return nil, false, toolErrorf("before_turn %q: session %q holds no such turn; pass a next_before_turn or turn_id this session returned, or omit before_turn.", before, id)
	}
	return out, false, nil
}

// renderTurn renders turn whole and returns its cost.
func renderTurn(turn memory.Turn) (historyTurn, int) {
	ht := historyTurn{TurnID: turn.ID, Time: formatTime(turn.Timestamp), Messages: make([]historyMessage, 0, len(turn.Messages))}
	cost := 0
	for _, m := range turn.Messages {
		hm := historyMessage{Role: string(m.Role), Name: m.Name, Content: messageText(m), ToolCalls: toolNames(m)}
		cost += messageTokens(m) + messageOverhead(hm)
		ht.Messages = append(ht.Messages, hm)
	}
	return ht, cost + fieldTokens(ht.TurnID, ht.Time, "")
}

// renderTurnWithin renders turn with its messages' text cut so that the
// whole costs at most left.
func renderTurnWithin(turn memory.Turn, left int) (historyTurn, int) {
	ht := historyTurn{TurnID: turn.ID, Time: formatTime(turn.Timestamp), Messages: make([]historyMessage, 0, len(turn.Messages))}
	cost := fieldTokens(ht.TurnID, ht.Time, "")
	for _, m := range turn.Messages {
		hm := historyMessage{Role: string(m.Role), Name: m.Name, ToolCalls: toolNames(m), Truncated: true}
		over := messageOverhead(hm) + fieldTokens("true")
		room := left - cost - over
		if room <= 0 {
			break
		}
		text, tokens := fitText(messageText(m), messageTokens(m), room)
		hm.Content = text
		hm.Truncated = text != messageText(m)
		cost += over + tokens
		ht.Messages = append(ht.Messages, hm)
	}
	return ht, cost
}

func (t *tools) saveNote(ctx context.Context, in noteInput) (noteOutput, error) {
	if strings.TrimSpace(in.Text) == "" {
		return noteOutput{}, toolErrorf("text is empty; pass the note to save.")
	}
	if _, err := t.owned(ctx, in.SessionID); err != nil {
		if te, ok := errors.AsType[*toolError](err); !ok || te.msg != errNotFound(in.SessionID).Error() {
			return noteOutput{}, err
		}
		// Missing, or not this user's: create it as the user's. Another
		// user's (or an unowned session with turns) refuses, and reads as
		// not found.
		err := t.mem.CreateSession(ctx, memory.SessionInfo{ID: in.SessionID, User: t.user})
		switch {
		case errors.Is(err, memory.ErrSessionOwned) || errors.Is(err, memory.ErrSessionExists):
			return noteOutput{}, toolErrorf("session_id %q: no such session of this user, and the ID cannot be used for a new one; pick another session_id.", in.SessionID)
		case errors.Is(err, memory.ErrInvalidTurn) || errors.Is(err, memory.ErrTurnTooLarge):
			return noteOutput{}, toolErrorf("session_id %q: %v", in.SessionID, err)
		case err != nil:
			return noteOutput{}, err
		}
	}
	turn := memory.Turn{
		ID:       memory.NewTurnID(),
		Messages: []memory.Message{{Role: memory.RoleUser, Content: in.Text}},
		Metadata: map[string]any{"source": "mcp", "kind": "note"},
	}
	err := t.mem.SaveTurn(ctx, in.SessionID, turn)
	switch {
	case errors.Is(err, memory.ErrInvalidTurn) || errors.Is(err, memory.ErrTurnTooLarge):
		return noteOutput{}, toolErrorf("text: %v", err)
	case err != nil:
		return noteOutput{}, err
	}
	info, err := t.mem.SessionInfo(ctx, in.SessionID)
	if err != nil {
		return noteOutput{}, err
	}
	return noteOutput{SessionID: in.SessionID, TurnID: turn.ID, TurnCount: info.TurnCount}, nil
}

func formatTime(at time.Time) string {
	if at.IsZero() {
		return ""
	}
	return at.UTC().Format(time.RFC3339)
}

// messageText is what a model reads of m: its content, or its parts'
// text when it has no content.
func messageText(m memory.Message) string {
	if m.Content != "" {
		return m.Content
	}
	var parts []string
	for _, p := range m.Parts {
		if p.Text != "" {
			parts = append(parts, p.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func toolNames(m memory.Message) []string {
	var names []string
	for _, c := range m.ToolCalls {
		names = append(names, c.Name)
	}
	return names
}
