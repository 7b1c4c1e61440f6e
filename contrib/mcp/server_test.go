package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	sdkmcp "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	tkmcp "github.com/turnkeep/turnkeep/contrib/mcp"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

func TestNewServerRefusesBadInput(t *testing.T) {
	m := openSQLite(t)
	for _, c := range []struct {
		name  string
		m     *memory.PersistentBufferMemory
		scope tkmcp.Scope
		opts  []tkmcp.Option
		want  error
	}{
		{"no user", m, tkmcp.Scope{}, nil, memory.ErrInvalidUser},
		{"invalid user", m, tkmcp.Scope{User: "a\x00b"}, nil, memory.ErrInvalidUser},
		{"invalid tenant", m, tkmcp.Scope{Tenant: "t\x1fx", User: "ada"}, nil, memory.ErrInvalidTenant},
		{"nil memory", nil, tkmcp.Scope{User: "ada"}, nil, memory.ErrInvalidOption},
		{"nil option", m, tkmcp.Scope{User: "ada"}, []tkmcp.Option{nil}, memory.ErrInvalidOption},
		{"zero timeout", m, tkmcp.Scope{User: "ada"}, []tkmcp.Option{tkmcp.CallTimeout(0)}, memory.ErrInvalidOption},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, err := tkmcp.NewServer(c.m, c.scope, c.opts...)
			require.ErrorIs(t, err, c.want)
			assert.Nil(t, srv)
		})
	}
}

func toolNames(t *testing.T, cs *sdkmcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		assert.NotEmpty(t, tool.Description, tool.Name)
		assert.NotNil(t, tool.InputSchema, tool.Name)
		assert.NotNil(t, tool.OutputSchema, tool.Name)
	}
	slices.Sort(names)
	return names
}

func TestSaveNoteOnlyWithAllowWrites(t *testing.T) {
	m := openSQLite(t)
	assert.Equal(t, []string{"get_history", "list_sessions", "search_memory"}, toolNames(t, connect(t, m, tkmcp.Scope{User: "ada"})))
	assert.Equal(t, []string{"get_history", "list_sessions", "search_memory"},
		toolNames(t, connect(t, m, tkmcp.Scope{User: "ada"}, tkmcp.AllowWrites(false))))
	assert.Equal(t, []string{"get_history", "list_sessions", "save_note", "search_memory"},
		toolNames(t, connect(t, m, tkmcp.Scope{User: "ada"}, tkmcp.AllowWrites(true))))
}

// TestToolsAgainstTheStore: each tool's answer is what the store holds.
func TestToolsAgainstTheStore(t *testing.T) {
	ctx := context.Background()
	m := openSQLite(t)
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "trip", User: "ada", Title: "Lisbon trip"}))
	for i := range 60 {
		require.NoError(t, m.SaveTurn(ctx, "trip", memory.Turn{User: fmt.Sprintf("day %d: pastel de nata number %d", i, i), Agent: "noted"}))
	}
	for i := range 57 {
		id := fmt.Sprintf("s%02d", i)
		require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: id, User: "ada", Title: "chat " + id}))
		require.NoError(t, m.SaveTurn(ctx, id, memory.Turn{User: "hello " + id, Agent: "hi"}))
	}
	cs := connect(t, m, tkmcp.Scope{User: "ada"}, tkmcp.AllowWrites(true))

	t.Run("search_memory", func(t *testing.T) {
		got := decode[searchJSON](t, cs, "search_memory", map[string]any{"query": "pastel nata", "limit": 500})
		require.Len(t, got.Hits, tkmcp.MaxSearchHits, "a larger limit is clamped")
		want, err := m.Search(ctx, memory.SearchQuery{Text: "pastel nata", User: "ada", Limit: tkmcp.MaxSearchHits})
		require.NoError(t, err)
		for i, h := range got.Hits {
			assert.Equal(t, want[i].SessionID, h.SessionID)
			assert.Equal(t, want[i].TurnID, h.TurnID)
			assert.Equal(t, "user", h.Role)
			assert.Equal(t, want[i].Snippet, h.Snippet)
			assert.Equal(t, want[i].Time.Format(time.RFC3339), h.Time)
		}
		got = decode[searchJSON](t, cs, "search_memory", map[string]any{"query": "hello s03", "session_id": "s03"})
		require.Len(t, got.Hits, 1)
		assert.Equal(t, "s03", got.Hits[0].SessionID)
		assert.Len(t, decode[searchJSON](t, cs, "search_memory", map[string]any{"query": "pastel"}).Hits, 10, "the default limit")
	})

	t.Run("list_sessions", func(t *testing.T) {
		var got []sessionJSON
		cursor := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			args := map[string]any{"limit": 25}
			if cursor != "" {
				args["cursor"] = cursor
			}
			page := decode[listJSON](t, cs, "list_sessions", args)
			got = append(got, page.Sessions...)
			if cursor = page.NextCursor; cursor == "" {
				break
			}
		}
		var want []memory.SessionInfo
		q := memory.SessionQuery{User: "ada", Limit: 1000}
		p, err := m.ListSessions(ctx, q)
		require.NoError(t, err)
		want = p.Sessions
		require.Len(t, got, len(want))
		for i, s := range got {
			assert.Equal(t, want[i].ID, s.SessionID)
			assert.Equal(t, want[i].Title, s.Title)
			assert.Equal(t, want[i].TurnCount, s.TurnCount)
			assert.Equal(t, want[i].UpdatedAt.Format(time.RFC3339), s.UpdatedAt)
		}
		assert.Len(t, decode[listJSON](t, cs, "list_sessions", map[string]any{"limit": 1000}).Sessions, tkmcp.MaxPageLimit, "clamped")
	})

	t.Run("get_history", func(t *testing.T) {
		// Paging back with next_before_turn reads the whole session,
		// each turn once, as History does.
		var got []turnJSON
		before := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 20)
			args := map[string]any{"session_id": "trip", "limit": 7}
			if before != "" {
				args["before_turn"] = before
			}
			page := decode[historyJSON](t, cs, "get_history", args)
			assert.Equal(t, "Lisbon trip", page.Title)
			assert.Equal(t, 60, page.TurnCount)
			require.LessOrEqual(t, len(page.Turns), 7)
			got = append(page.Turns, got...)
			if before = page.NextBeforeTurn; before == "" {
				break
			}
			assert.Equal(t, page.Turns[0].TurnID, before)
		}
		want, err := m.History(ctx, "trip", memory.HistoryQuery{Limit: 100})
		require.NoError(t, err)
		require.Len(t, got, len(want.Turns))
		for i, turn := range got {
			assert.Equal(t, want.Turns[i].ID, turn.TurnID)
			assert.Equal(t, want.Turns[i].User, turn.Messages[0].Content)
			assert.Equal(t, want.Turns[i].Timestamp.Format(time.RFC3339), turn.Time)
		}
		r := call(t, cs, "get_history", map[string]any{"session_id": "trip", "before_turn": "no-such-turn"})
		assert.True(t, r.isErr)
		assert.Contains(t, r.text, "before_turn")
	})

	t.Run("save_note", func(t *testing.T) {
		got := decode[noteJSON](t, cs, "save_note", map[string]any{"session_id": "notes", "text": "Ada prefers aisle seats"})
		assert.Equal(t, 1, got.TurnCount)
		info, err := m.SessionInfo(ctx, "notes")
		require.NoError(t, err)
		assert.Equal(t, "ada", info.User, "a new session is the user's")
		page, err := m.History(ctx, "notes", memory.HistoryQuery{})
		require.NoError(t, err)
		require.Len(t, page.Turns, 1)
		assert.Equal(t, got.TurnID, page.Turns[0].ID)
		assert.Equal(t, memory.RoleUser, page.Turns[0].Messages[0].Role)
		assert.Equal(t, "Ada prefers aisle seats", page.Turns[0].Messages[0].Content)

		got = decode[noteJSON](t, cs, "save_note", map[string]any{"session_id": "trip", "text": "and window seats on trains"})
		assert.Equal(t, 61, got.TurnCount, "appended to an existing session of the user")
		info, err = m.SessionInfo(ctx, "trip")
		require.NoError(t, err)
		assert.Equal(t, "Lisbon trip", info.Title, "the title is kept")
		hits := decode[searchJSON](t, cs, "search_memory", map[string]any{"query": "aisle seats"})
		require.Len(t, hits.Hits, 1)
		assert.Equal(t, "notes", hits.Hits[0].SessionID)
	})
}

// TestBadArgumentsAreToolErrors: never a protocol error, never a panic,
// and each says what to pass.
func TestBadArgumentsAreToolErrors(t *testing.T) {
	ctx := context.Background()
	m := openSQLite(t)
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s", User: "ada"}))
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: "hello", Agent: "hi"}))
	cs := connect(t, m, tkmcp.Scope{User: "ada"}, tkmcp.AllowWrites(true))
	for _, c := range []struct {
		tool string
		args any
		want string
	}{
		{"search_memory", map[string]any{}, "query"},
		{"search_memory", map[string]any{"query": ""}, "query"},
		{"search_memory", map[string]any{"query": 7}, "query"},
		{"search_memory", map[string]any{"query": "x", "limit": -1}, "limit"},
		{"search_memory", map[string]any{"query": "x", "limit": "ten"}, "limit"},
		{"search_memory", map[string]any{"query": strings.Repeat("word ", 2000)}, "query"},
		{"search_memory", map[string]any{"query": "x", "bogus": true}, "bogus"},
		{"list_sessions", map[string]any{"cursor": "not a cursor"}, "cursor"},
		{"list_sessions", map[string]any{"limit": -5}, "limit"},
		{"get_history", map[string]any{}, "session_id"},
		{"get_history", map[string]any{"session_id": ""}, "session_id"},
		{"get_history", map[string]any{"session_id": strings.Repeat("x", 300)}, "session_id"},
		{"get_history", map[string]any{"session_id": "s", "limit": 0.5}, "limit"},
		{"save_note", map[string]any{"session_id": "s"}, "text"},
		{"save_note", map[string]any{"session_id": "s", "text": "  "}, "text"},
		{"save_note", map[string]any{"session_id": "s", "text": "bad \x00 byte"}, "text"},
		{"save_note", map[string]any{"session_id": "", "text": "x"}, "session_id"},
	} {
		r := call(t, cs, c.tool, c.args)
		assert.True(t, r.isErr, "%s %v: %s", c.tool, c.args, r.text)
		assert.Contains(t, r.text, c.want, "%s %v", c.tool, c.args)
	}
	page, err := m.History(ctx, "s", memory.HistoryQuery{})
	require.NoError(t, err)
	assert.Len(t, page.Turns, 1, "a refused note writes nothing")
}

// TestDeadlinesAreHonoured: a call cut off by its deadline, or by a
// closed memory, is a tool error that says so.
func TestDeadlinesAreHonoured(t *testing.T) {
	ctx := context.Background()
	m := openSQLite(t)
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s", User: "ada"}))
	cs := connect(t, m, tkmcp.Scope{User: "ada"}, tkmcp.CallTimeout(time.Nanosecond))
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"search_memory", map[string]any{"query": "x"}},
		{"list_sessions", map[string]any{}},
		{"get_history", map[string]any{"session_id": "s"}},
	} {
		r := call(t, cs, c.tool, c.args)
		assert.True(t, r.isErr, "%s: %s", c.tool, r.text)
		assert.Contains(t, r.text, "deadline", c.tool)
	}

	closed, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend())
	require.NoError(t, err)
	cs = connect(t, closed, tkmcp.Scope{User: "ada"})
	require.NoError(t, closed.Close())
	r := call(t, cs, "list_sessions", map[string]any{})
	assert.True(t, r.isErr, r.text)
	assert.Contains(t, r.text, "closed")
}

// TestOutputIsBounded: a session of long turns is cut to the output
// budget, the newest turn included even when it alone is over it.
func TestOutputIsBounded(t *testing.T) {
	ctx := context.Background()
	m := openSQLite(t)
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "long", User: "ada"}))
	para := strings.Repeat("the quick brown fox jumps over the lazy dog ", 250) // ~2,400 tokens
	for i := range 12 {
		require.NoError(t, m.SaveTurn(ctx, "long", memory.Turn{User: fmt.Sprintf("turn %d %s", i, para), Agent: "ok"}))
	}
	require.NoError(t, m.SaveTurn(ctx, "long", memory.Turn{User: strings.Repeat(para, 5), Agent: "ok"})) // ~12,000 tokens
	cs := connect(t, m, tkmcp.Scope{User: "ada"})

	r := call(t, cs, "get_history", map[string]any{"session_id": "long"})
	require.False(t, r.isErr, r.text)
	assert.LessOrEqual(t, memory.EstimateTokens(r.text), tkmcp.OutputBudget+tkmcp.OutputBudget/20, "the answer's tokens")
	var h historyJSON
	require.NoError(t, json.Unmarshal([]byte(r.text), &h))
	require.Len(t, h.Turns, 1, "the newest turn alone fills the budget")
	assert.True(t, h.Turns[0].Messages[0].Truncated)
	require.NotEmpty(t, h.NextBeforeTurn)

	h = decode[historyJSON](t, cs, "get_history", map[string]any{"session_id": "long", "before_turn": h.NextBeforeTurn, "limit": 50})
	require.Len(t, h.Turns, 1, "two 2,400-token turns are over the budget")
	assert.False(t, h.Turns[0].Messages[0].Truncated)
	assert.True(t, "turn 11 "+para == h.Turns[0].Messages[0].Content, "the turn whole")

	r = call(t, cs, "search_memory", map[string]any{"query": "quick fox", "limit": 20})
	require.False(t, r.isErr, r.text)
	assert.LessOrEqual(t, memory.EstimateTokens(r.text), tkmcp.OutputBudget+tkmcp.OutputBudget/20)
}

// TestHistoryShowsSummary: get_history carries the session's summary of
// its older turns, as the memory folded it.
func TestHistoryShowsSummary(t *testing.T) {
	ctx := context.Background()
	m := openSQLite(t, memory.WithSummarizer(summarize.NewExtractive(nil), 200), memory.WithMaxTurns(2))
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s", User: "ada"}))
	for i := range 6 {
		require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: fmt.Sprintf("fact %d: the key is under mat %d", i, i), Agent: "ok"}))
	}
	sum, err := m.Summarize(ctx, "s")
	require.NoError(t, err)
	require.NotEmpty(t, sum.Text)
	cs := connect(t, m, tkmcp.Scope{User: "ada"})
	h := decode[historyJSON](t, cs, "get_history", map[string]any{"session_id": "s", "limit": 2})
	require.NotNil(t, h.Summary, "the session has a summary")
	assert.Equal(t, sum.Text, h.Summary.Text)
	assert.Equal(t, sum.Turns, h.Summary.Turns)
	assert.Len(t, h.Turns, 2)

	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "fresh", User: "ada"}))
	require.NoError(t, m.SaveTurn(ctx, "fresh", memory.Turn{User: "hi", Agent: "hello"}))
	assert.Nil(t, decode[historyJSON](t, cs, "get_history", map[string]any{"session_id": "fresh"}).Summary, "none for a session without one")
}
