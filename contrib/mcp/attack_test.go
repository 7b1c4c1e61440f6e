package mcp_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep"
	tkmcp "github.com/turnkeep/turnkeep/contrib/mcp"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// secrets are words only sessions outside ada's scope hold.
var secrets = []string{"bobsecret", "unownedsecret", "tenantsecret"}

func leaks(text string) string {
	for _, s := range secrets {
		if strings.Contains(text, s) {
			return s
		}
	}
	return ""
}

// TestScopeAttacks: no argument of any tool reaches a session outside the
// server's tenant and user: not a crafted session ID, not a search syntax,
// not another user's or tenant's cursor, not another session's turn ID.
// Sessions outside the scope are "not found", worded as a missing one is.
func TestScopeAttacks(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		m, err := turnkeep.Open(ctx, d.URL(t))
		require.NoError(t, err)
		t.Cleanup(func() { m.Close() })
		t2 := m.ForTenant("t2")

		own := func(m *memory.PersistentBufferMemory, id, user, text string) string {
			t.Helper()
			if user != "" {
				require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: id, User: user, Title: text}))
			}
			turn := memory.Turn{User: "pineapple " + text, Agent: "ok"}
			require.NoError(t, m.SaveTurn(ctx, id, turn))
			p, err := m.History(ctx, id, memory.HistoryQuery{NewestFirst: true, Limit: 1})
			require.NoError(t, err)
			return p.Turns[0].ID
		}
		own(m, "a1", "ada", "ada one")
		own(m, "a2", "ada", "ada two")
		bobTurn := own(m, "b1", "bob", "bobsecret")
		own(m, "b2", "bob", "bobsecret again")
		own(m, "shared", "", "unownedsecret")
		own(t2, "a1", "ada", "tenantsecret")
		own(t2, "t2only", "ada", "tenantsecret only")
		own(m, "ada", "bob", "bobsecret named like ada") // an ID equal to the user's name

		cs := connect(t, m, tkmcp.Scope{User: "ada"}, tkmcp.AllowWrites(true))
		missing := call(t, cs, "get_history", map[string]any{"session_id": "zz-missing"})
		require.True(t, missing.isErr)
		notFound := func(id string) string {
			return strings.Replace(missing.text, strconv.Quote("zz-missing"), strconv.Quote(id), 1)
		}

		// The crafted IDs of the sessions tests: case, spaces, LIKE and
		// SQL syntax, another tenant's key, control bytes, over-long.
		crafted := []string{
			"b1", "B1", "b1 ", " b1", "b%", "_1", "%", "b_", "*", "' OR '1'='1", "b1' --", `b1"; DROP TABLE x; --`,
			"shared", "t2only", "t2\x1fa1", "t2\x1ft2only", "\x1fb1", "b1\x00", "../b1", "a1/../b1", "ada",
			strings.Repeat("b", 300), "b1\n", "t2:a1", "t2/a1",
		}
		for _, id := range crafted {
			valid := memory.ValidateSessionID(id) == nil
			for _, c := range []struct {
				tool string
				args map[string]any
			}{
				{"get_history", map[string]any{"session_id": id}},
				{"search_memory", map[string]any{"query": "pineapple", "session_id": id}},
			} {
				r := call(t, cs, c.tool, c.args)
				assert.Empty(t, leaks(r.text), "%s %q: %s", c.tool, id, r.text)
				require.True(t, r.isErr, "%s %q: %s", c.tool, id, r.text)
				if valid {
					assert.Equal(t, notFound(id), r.text, "%s %q reads as missing", c.tool, id)
				}
			}
		}
		// Search syntax never widens the search.
		for _, q := range []string{
			"pineapple", "bobsecret", "unownedsecret", "tenantsecret", "pineapple OR bobsecret", `"bobsecret"`,
			"user_id:bob", "pineapple*", "NEAR(pineapple bobsecret)", "' OR 1=1 --", "%", "b1", "bobsecret) OR (1=1",
			"pineapple -ada", "*", `\`, "t2\x1fa1",
		} {
			r := call(t, cs, "search_memory", map[string]any{"query": q, "limit": 20})
			assert.Empty(t, leaks(r.text), "search %q: %s", q, r.text)
			if r.isErr {
				continue
			}
			var got searchJSON
			decodeText(t, r.text, &got)
			for _, h := range got.Hits {
				assert.Contains(t, []string{"a1", "a2"}, h.SessionID, "search %q", q)
			}
		}
		hits := decode[searchJSON](t, cs, "search_memory", map[string]any{"query": "pineapple"})
		assert.Len(t, hits.Hits, 2, "ada's two sessions in her tenant, and nothing else")

		// Cursors of another user, of another tenant, and crafted ones.
		bobPage, err := m.ListSessions(ctx, memory.SessionQuery{User: "bob", Limit: 1})
		require.NoError(t, err)
		require.NotEmpty(t, bobPage.Next)
		t2Page, err := t2.ListSessions(ctx, memory.SessionQuery{User: "ada", Limit: 1})
		require.NoError(t, err)
		require.NotEmpty(t, t2Page.Next)
		allPage, err := m.ListSessions(ctx, memory.SessionQuery{Limit: 1})
		require.NoError(t, err)
		future := time.Now().Add(time.Hour).UnixMicro()
		craftedCursor := func(key string) string {
			return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"u":%d,"k":%q}`, future, key))
		}
		for _, cursor := range []string{
			bobPage.Next, t2Page.Next, allPage.Next, craftedCursor("b1"), craftedCursor("t2\x1fa1"), craftedCursor("zzz"),
			base64.RawURLEncoding.EncodeToString([]byte(`{"u":1e30,"k":"b1"}`)), "' OR 1=1 --", "eyJ1IjoxfQ",
		} {
			r := call(t, cs, "list_sessions", map[string]any{"cursor": cursor})
			assert.Empty(t, leaks(r.text), "cursor %q: %s", cursor, r.text)
			if r.isErr {
				continue
			}
			var got listJSON
			decodeText(t, r.text, &got)
			for _, s := range got.Sessions {
				assert.Contains(t, []string{"a1", "a2"}, s.SessionID, "cursor %q", cursor)
			}
		}
		list := decode[listJSON](t, cs, "list_sessions", map[string]any{})
		var ids []string
		for _, s := range list.Sessions {
			ids = append(ids, s.SessionID)
		}
		slices.Sort(ids)
		assert.Equal(t, []string{"a1", "a2"}, ids, "ada's sessions in her tenant, no other")

		// A note to a crafted ID is a new session of ada's, or refused;
		// it never lands in a session outside the scope.
		for _, id := range crafted {
			r := call(t, cs, "save_note", map[string]any{"session_id": id, "text": "pineapple note"})
			assert.Empty(t, leaks(r.text), "save_note %q: %s", id, r.text)
			if !r.isErr {
				info, err := m.SessionInfo(ctx, id)
				require.NoError(t, err)
				assert.Equal(t, "ada", info.User, "%q", id)
				assert.Equal(t, 1, info.TurnCount, "%q: a note never lands in another's session", id)
			}
		}
		for _, id := range []string{"b1", "b2", "shared", "ada"} {
			info, err := m.SessionInfo(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, 1, info.TurnCount, "%s: no note landed", id)
		}
		info, err := t2.SessionInfo(ctx, "a1")
		require.NoError(t, err)
		assert.Equal(t, 1, info.TurnCount, "t2's a1: no note landed")

		// Another session's turn ID pages nothing of it.
		r := call(t, cs, "get_history", map[string]any{"session_id": "a1", "before_turn": bobTurn})
		assert.True(t, r.isErr, r.text)
		assert.Empty(t, leaks(r.text), r.text)

		// The same server over the other tenant sees that tenant's a1 only.
		cs2 := connect(t, m, tkmcp.Scope{Tenant: "t2", User: "ada"})
		h := decode[historyJSON](t, cs2, "get_history", map[string]any{"session_id": "a1"})
		require.Len(t, h.Turns, 1)
		assert.Contains(t, h.Turns[0].Messages[0].Content, "tenantsecret")
		r = call(t, cs2, "get_history", map[string]any{"session_id": "a2"})
		assert.True(t, r.isErr, "a2 is the default tenant's")
	})
}
