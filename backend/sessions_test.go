package backend

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

func sessionIDsOf(p driver.SessionPage) []string {
	var ids []string
	for _, s := range p.Sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

// The same session ID in two tenants is two sessions, in windows, info,
// listing, search, export and deletion; the default tenant is one like any
// other.
func TestTenantsAreIsolated(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		root := newMemory(t, b)
		a, c := root.ForTenant("acme"), root.ForTenant("cyber")
		require.NoError(t, a.CreateSession(ctx, driver.SessionInfo{ID: "s1", User: "ada", Title: "acme chat"}))
		require.NoError(t, a.SaveTurn(ctx, "s1", driver.Turn{User: "acme secret pineapple", Agent: "ok"}))
		require.NoError(t, c.SaveTurn(ctx, "s1", driver.Turn{User: "cyber pineapple", Agent: "ok"}))
		require.NoError(t, c.SaveTurn(ctx, "s1", driver.Turn{User: "again", Agent: "ok"}))
		require.NoError(t, root.SaveTurn(ctx, "s1", driver.Turn{User: "default pineapple", Agent: "ok"}))

		for _, x := range []struct {
			m     *memory.PersistentBufferMemory
			turns int
			user  string
		}{{a, 1, "acme secret pineapple"}, {c, 2, "cyber pineapple"}, {root, 1, "default pineapple"}} {
			w, err := x.m.LoadContext(ctx, "s1")
			require.NoError(t, err)
			require.Equal(t, x.turns, w.TurnCount, "tenant %q", x.m.Tenant())
			assert.Equal(t, x.user, w.Turns[0].User)
			p, err := x.m.ListSessions(ctx, driver.SessionQuery{})
			require.NoError(t, err)
			assert.Equal(t, []string{"s1"}, sessionIDsOf(p), "tenant %q lists its own", x.m.Tenant())
			hits, err := x.m.Search(ctx, driver.SearchQuery{Text: "pineapple"})
			require.NoError(t, err)
			require.Len(t, hits, 1, "tenant %q finds its own", x.m.Tenant())
			assert.Equal(t, x.user, hits[0].Message.Content)
		}
		info, err := c.SessionInfo(ctx, "s1")
		require.NoError(t, err)
		assert.Equal(t, "", info.User, "cyber's s1 is not acme's")
		info, err = a.SessionInfo(ctx, "s1")
		require.NoError(t, err)
		assert.Equal(t, "ada", info.User)
		assert.Equal(t, "acme chat", info.Title)

		r, err := a.DeleteUser(ctx, "ada")
		require.NoError(t, err)
		assert.Equal(t, driver.DeleteReport{Sessions: 1, Messages: 2}, r)
		_, err = a.SessionInfo(ctx, "s1")
		require.ErrorIs(t, err, driver.ErrSessionNotFound)
		w, err := c.LoadContext(ctx, "s1")
		require.NoError(t, err)
		assert.Equal(t, 2, w.TurnCount, "another tenant's session of the same ID stays")

		_, err = root.ForTenant("bad\x1ftenant").LoadContext(ctx, "s1")
		require.ErrorIs(t, err, driver.ErrInvalidTenant)
		_, err = root.ForTenant(strings.Repeat("t", driver.MaxTenantBytes+1)).ListSessions(ctx, driver.SessionQuery{})
		require.ErrorIs(t, err, driver.ErrInvalidTenant)
		require.ErrorIs(t, root.SaveTurn(ctx, "a\x1fb", driver.Turn{User: "x"}), driver.ErrInvalidSessionID)
	})
}

// Owners are exact: user_1 is not userX1, user_%, or user\_1.
func TestOwnersAreExact(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("tenantA")
		owners := []string{"user_1", "userX1", "user_%", `user\_1`, "USER_1"}
		for i, u := range owners {
			id := fmt.Sprintf("s%d", i)
			require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: id, User: u}))
			require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{User: "marmalade from " + u}))
		}
		for i, u := range owners {
			p, err := m.ListSessions(ctx, driver.SessionQuery{User: u})
			require.NoError(t, err)
			assert.Equal(t, []string{fmt.Sprintf("s%d", i)}, sessionIDsOf(p), "owner %q", u)
			hits, err := m.Search(ctx, driver.SearchQuery{Text: "marmalade", User: u})
			require.NoError(t, err)
			require.Len(t, hits, 1, "owner %q", u)
			assert.Equal(t, fmt.Sprintf("s%d", i), hits[0].SessionID)
		}
		r, err := m.DeleteUser(ctx, "user_1")
		require.NoError(t, err)
		assert.Equal(t, 1, r.Sessions)
		p, err := m.ListSessions(ctx, driver.SessionQuery{})
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"s1", "s2", "s3", "s4"}, sessionIDsOf(p), "only user_1's session went")

		// A session another user owns is not taken.
		require.ErrorIs(t, m.CreateSession(ctx, driver.SessionInfo{ID: "s2", User: "mallory"}), driver.ErrSessionOwned)
		require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "s2", User: "user_%", Title: "renamed"}), "idempotent for the owner")
		// An unowned session is claimed only by ClaimSession.
		require.NoError(t, m.SaveTurn(ctx, "loose", driver.Turn{User: "x"}))
		require.ErrorIs(t, m.CreateSession(ctx, driver.SessionInfo{ID: "loose", User: "ada"}), driver.ErrSessionExists)
		require.NoError(t, m.ClaimSession(ctx, "loose", "ada"))
		info, err := m.SessionInfo(ctx, "loose")
		require.NoError(t, err)
		assert.Equal(t, "ada", info.User)
		assert.Equal(t, 1, info.TurnCount)
		_, err = m.DeleteUser(ctx, "")
		require.ErrorIs(t, err, driver.ErrInvalidUser)
	})
}

// Listing is keyset-paged, newest first: while saves move listed sessions
// to the top, none is listed twice and none that stays put is skipped.
func TestListSessionsPaging(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("paging")
		const n = 23
		for i := range n {
			require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: fmt.Sprintf("s%02d", i), User: "u"}))
			time.Sleep(time.Millisecond) // distinct update times, newest last
		}
		seen := map[string]int{}
		var order []string
		q := driver.SessionQuery{User: "u", Limit: 5}
		for page := 0; ; page++ {
			p, err := m.ListSessions(ctx, q)
			require.NoError(t, err)
			for _, s := range p.Sessions {
				seen[s.ID]++
				order = append(order, s.ID)
			}
			if page == 1 {
				// Move two listed sessions to the top.
				require.NoError(t, m.SaveTurn(ctx, order[0], driver.Turn{User: "bump"}))
				require.NoError(t, m.SaveTurn(ctx, order[6], driver.Turn{User: "bump"}))
			}
			if p.Next == "" {
				break
			}
			q.After = p.Next
		}
		assert.Len(t, seen, n, "every session listed")
		for id, k := range seen {
			assert.Equal(t, 1, k, "session %s listed %d times", id, k)
		}
		assert.Equal(t, "s22", order[0], "newest first")

		_, err := m.ListSessions(ctx, driver.SessionQuery{After: "not a cursor"})
		require.ErrorIs(t, err, driver.ErrInvalidCursor)
		_, err = m.ListSessions(ctx, driver.SessionQuery{Limit: -1})
		require.ErrorIs(t, err, driver.ErrInvalidOption)
	})
}

// Expire from 4 processes at once removes every old session exactly once,
// and keeps the fresh ones.
func TestExpireConcurrently(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("exp")
		const old = 250
		for i := range old {
			require.NoError(t, m.SaveTurn(ctx, fmt.Sprintf("old-%03d", i), driver.Turn{User: "u", Agent: "a"}))
		}
		cut := time.Now()
		time.Sleep(2 * time.Millisecond)
		require.NoError(t, m.SaveTurn(ctx, "fresh", driver.Turn{User: "u"}))

		var wg sync.WaitGroup
		reports := make([]driver.DeleteReport, 4)
		errs := make([]error, 4)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reports[g], errs[g] = newMemory(t, b).ForTenant("exp").Expire(ctx, cut)
			}()
		}
		wg.Wait()
		var total driver.DeleteReport
		for g := range 4 {
			require.NoError(t, errs[g])
			total.Sessions += reports[g].Sessions
			total.Messages += reports[g].Messages
		}
		assert.Equal(t, driver.DeleteReport{Sessions: old, Messages: 2 * old}, total, "each removed and counted once")
		p, err := m.ListSessions(ctx, driver.SessionQuery{})
		require.NoError(t, err)
		assert.Equal(t, []string{"fresh"}, sessionIDsOf(p))
		w, err := m.LoadContext(ctx, "old-007")
		require.NoError(t, err)
		assert.Zero(t, w.TurnCount, "a cached window of an expired session is gone")
	})
}

// History pages through a whole session, both ways; Export and Import
// round-trip it, across backends and dialects, idempotently.
func TestHistoryExportImport(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("exp-src")
		require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "conv", User: "ada", Title: "A long one", Metadata: map[string]any{"lang": "en"}}))
		var want []driver.Turn
		for i := range 12 {
			turn := driver.Turn{ID: fmt.Sprintf("t%02d", i), User: fmt.Sprintf("q%d", i), Agent: fmt.Sprintf("a%d", i)}
			if i%4 == 0 {
				turn = agentTurn(fmt.Sprintf("t%02d", i))
				turn.Messages[0].Parts = []driver.Part{{Type: "file", Data: []byte{0, 1, 2, 255}, MIMEType: "application/x-bin"}}
			}
			require.NoError(t, m.SaveTurn(ctx, "conv", turn))
			w, err := m.LoadContext(ctx, "conv", memory.LoadMaxTurns(1))
			require.NoError(t, err)
			want = append(want, w.Turns[0])
		}
		for _, newest := range []bool{false, true} {
			var got []driver.Turn
			q := driver.HistoryQuery{Limit: 5, NewestFirst: newest}
			for {
				p, err := m.History(ctx, "conv", q)
				require.NoError(t, err)
				got = append(got, p.Turns...)
				if p.Next == "" {
					break
				}
				q.After = p.Next
			}
			require.Len(t, got, 12)
			for i := range got {
				k := i
				if newest {
					k = 11 - i
				}
				assert.Equal(t, want[k].ID, got[i].ID, "newest first %v, turn %d", newest, i)
			}
		}

		var buf bytes.Buffer
		require.NoError(t, m.Export(ctx, "conv", &buf))
		exported := buf.String()
		lines := strings.Split(strings.TrimSpace(exported), "\n")
		require.Len(t, lines, 13, "a session line and a line per turn")
		assert.Contains(t, lines[0], `"format":"turnkeep.session/1"`)

		dst := newMemory(t, NewInMemoryBackend()).ForTenant("exp-dst")
		for range 2 { // twice: nothing stored twice
			info, err := dst.Import(ctx, strings.NewReader(exported))
			require.NoError(t, err)
			assert.Equal(t, 12, info.TurnCount)
			assert.Equal(t, "ada", info.User)
			assert.Equal(t, "A long one", info.Title)
			assert.Equal(t, map[string]any{"lang": "en"}, info.Metadata)
		}
		w, err := dst.LoadContext(ctx, "conv", memory.LoadMaxTurns(100))
		require.NoError(t, err)
		require.Len(t, w.Turns, 12)
		for i := range want {
			assert.Equal(t, want[i].ID, w.Turns[i].ID)
			assert.Equal(t, want[i].Messages, w.Turns[i].Messages, "turn %d round-trips", i)
			assert.True(t, want[i].Timestamp.Equal(w.Turns[i].Timestamp))
		}
		var again bytes.Buffer
		require.NoError(t, dst.Export(ctx, "conv", &again))
		assert.Equal(t, lines[1:], strings.Split(strings.TrimSpace(again.String()), "\n")[1:], "turn lines byte for byte")

		// Malformed input: a typed error, and nothing stored.
		for _, bad := range []string{
			"",
			"{not json\n",
			`{"format":"other/1","id":"x"}` + "\n",
			`{"format":"turnkeep.session/1","id":"bad"}` + "\n" + `{"id":"t","timestamp":"2020-01-01T00:00:00Z","messages":[{"role":"narrator","content":"x"}]}` + "\n",
			`{"format":"turnkeep.session/1","id":"bad"}` + "\n" + `{"id":"t1","timestamp":"2020-01-01T00:00:00Z","messages":[{"role":"user","content":"ok"}]}` + "\n{oops\n",
		} {
			_, err := dst.Import(ctx, strings.NewReader(bad))
			require.Error(t, err, "%q", bad)
			if !strings.Contains(bad, "narrator") {
				require.ErrorIs(t, err, driver.ErrInvalidImport, "%q", bad)
			}
		}
		_, err = dst.SessionInfo(ctx, "bad")
		require.ErrorIs(t, err, driver.ErrSessionNotFound, "a malformed import stores nothing")
	})
}

// Importing into every dialect (PostgreSQL and MySQL among them) what was
// exported from SQLite.
func TestExportSQLiteImportPostgres(t *testing.T) {
	ctx := context.Background()
	src := newMemory(t, func() *DataFlowBackend {
		b, _ := newEnv(t, dbtest.Dialect{Name: "sqlite", URL: dbtest.SQLiteURL})
		return b
	}())
	require.NoError(t, src.CreateSession(ctx, driver.SessionInfo{ID: "mv", User: "bob", Title: "moving"}))
	require.NoError(t, src.SaveTurn(ctx, "mv", richTurn()))
	require.NoError(t, src.SaveTurn(ctx, "mv", agentTurn("t2")))
	var buf bytes.Buffer
	require.NoError(t, src.Export(ctx, "mv", &buf))
	want, err := src.LoadContext(ctx, "mv")
	require.NoError(t, err)
	exported := buf.String()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		m := newMemory(t, b)
		info, err := m.ForTenant("moved").Import(ctx, strings.NewReader(exported))
		require.NoError(t, err)
		assert.Equal(t, "bob", info.User)
		got, err := m.ForTenant("moved").LoadContext(ctx, "mv")
		require.NoError(t, err)
		require.Len(t, got.Turns, len(want.Turns))
		for i := range want.Turns {
			assert.Equal(t, want.Turns[i].Messages, got.Turns[i].Messages)
		}
	})
}

// Search is the database's full-text search: words in any order, CJK by
// its characters, and the syntax characters of the search languages taken
// as text, never as operators.
func TestSearch(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("find")
		docs := []string{
			"The quick brown fox jumps over the lazy dog",
			"我们明天在东京见面吧",
			"NEAR the OR gate: a-b \"quoted\" * star",
			"fox and hound",
		}
		for i, d := range docs {
			require.NoError(t, m.SaveTurn(ctx, fmt.Sprintf("s%d", i), driver.Turn{User: d}))
		}
		find := func(text string) []string {
			t.Helper()
			hits, err := m.Search(ctx, driver.SearchQuery{Text: text})
			require.NoError(t, err, "%q", text)
			var out []string
			for _, h := range hits {
				out = append(out, h.SessionID)
				assert.NotEmpty(t, h.Snippet)
			}
			return out
		}
		assert.ElementsMatch(t, []string{"s0", "s3"}, find("fox"))
		assert.Equal(t, []string{"s0"}, find("lazy FOX"))
		assert.Equal(t, []string{"s1"}, find("东京"), "CJK by its characters")
		assert.Equal(t, []string{"s2"}, find("NEAR"))
		assert.Equal(t, []string{"s2"}, find("OR gate"))
		assert.Equal(t, []string{"s2"}, find(`"quoted"`))
		assert.Equal(t, []string{"s2"}, find("a-b"))
		for _, syntax := range []string{`"`, `*`, `-`, `:`, `NEAR(fox dog)`, `fox OR nothing`, `body:fox`, `fox*`} {
			_ = find(syntax) // never an error, never an injection
		}
		assert.Empty(t, find("fox OR nothing"), "OR is a word, not an operator")
		assert.Empty(t, find("nothing"))

		hits, err := m.Search(ctx, driver.SearchQuery{Text: "fox", SessionID: "s3"})
		require.NoError(t, err)
		require.Len(t, hits, 1)
		assert.Equal(t, "fox and hound", hits[0].Message.Content)
		assert.Equal(t, driver.RoleUser, hits[0].Message.Role)
		info, err := m.SessionInfo(ctx, "s3")
		require.NoError(t, err)
		page, err := m.History(ctx, "s3", driver.HistoryQuery{})
		require.NoError(t, err)
		require.Len(t, page.Turns, 1)
		assert.Equal(t, page.Turns[0].Timestamp, hits[0].Time, "a hit's time is its turn's timestamp")
		assert.False(t, hits[0].Time.Before(info.CreatedAt.Add(-time.Second)), "got %v; session created %v", hits[0].Time, info.CreatedAt)

		// A cleared session is never found.
		require.NoError(t, m.Clear(ctx, "s3"))
		assert.Equal(t, []string{"s0"}, find("fox"))
	})
}
