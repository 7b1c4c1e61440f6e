package backend

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// forkTurn is turn i of a test history: its ID, and words that make its
// tokens differ from turn to turn.
func forkTurn(prefix string, i int) driver.Turn {
	return driver.Turn{ID: fmt.Sprintf("%s-%d", prefix, i),
		User:  fmt.Sprintf("%s question %d %s", prefix, i, strings.Repeat("word ", i%5)),
		Agent: fmt.Sprintf("%s answer %d", prefix, i), Timestamp: time.Unix(int64(1000+i), 0).UTC()}
}

func saveTurns(t *testing.T, b *DataFlowBackend, key string, turns ...driver.Turn) {
	t.Helper()
	for _, turn := range turns {
		p, err := driver.Prepare(turn, time.Now(), 0, nil)
		require.NoError(t, err)
		_, err = b.Save(context.Background(), key, p)
		require.NoError(t, err)
	}
}

// replaceTurns makes turns key's history in one transaction (fast for long
// histories).
func replaceTurns(t *testing.T, b *DataFlowBackend, key string, turns []driver.Turn) {
	t.Helper()
	ps := make([]driver.PreparedTurn, len(turns))
	for i, turn := range turns {
		p, err := driver.Prepare(turn, time.Now(), 0, nil)
		require.NoError(t, err)
		ps[i] = p
	}
	_, err := b.Replace(context.Background(), key, ps)
	require.NoError(t, err)
}

// windowIDs is what a window says, by turn ID and content, for comparing a
// fork's window with that of a session holding the same turns.
func windowShape(w driver.Window) string {
	var s strings.Builder
	fmt.Fprintf(&s, "count=%d tokens=%d:", w.TurnCount, w.Tokens)
	for _, turn := range w.Turns {
		fmt.Fprintf(&s, " %s[", turn.ID)
		for _, m := range turn.Messages {
			fmt.Fprintf(&s, "%s:%q/%d ", m.Role, m.Content, m.Tokens)
		}
		s.WriteString("]")
	}
	return s.String()
}

// sameReads requires every window, budget window and history page of fork
// and plain (a session holding the same turns, stored by saves) to read
// alike.
func sameReads(t *testing.T, b *DataFlowBackend, fork, plain string) {
	t.Helper()
	ctx := context.Background()
	info, err := b.SessionInfo(ctx, plain)
	require.NoError(t, err)
	n := info.TurnCount
	for _, maxTurns := range []int{1, 2, 3, 5, 8, 13, 100} {
		for _, budget := range []int{0, 1, 15, 40, 90, 200, 100000} {
			q := driver.WindowQuery{MaxTurns: maxTurns, TokenBudget: budget, Known: driver.UnknownVersion}
			wf, _, err := b.Load(ctx, fork, q)
			require.NoError(t, err)
			wp, _, err := b.Load(ctx, plain, q)
			require.NoError(t, err)
			require.Equal(t, windowShape(wp), windowShape(wf), "window of %d turns, budget %d", maxTurns, budget)
		}
	}
	for _, newest := range []bool{false, true} {
		for _, limit := range []int{1, 3, 7} {
			var pages [2][]string
			for i, key := range []string{plain, fork} {
				q := driver.HistoryQuery{Limit: limit, NewestFirst: newest}
				for {
					p, err := b.History(ctx, key, q)
					require.NoError(t, err)
					pages[i] = append(pages[i], windowShape(driver.Window{Turns: p.Turns}))
					if p.Next == "" {
						break
					}
					q.After = p.Next
				}
			}
			require.Equal(t, pages[0], pages[1], "history newest first %t, limit %d", newest, limit)
		}
	}
	for after := 0; after < n; after += 2 {
		tp, err := b.SummaryTurns(ctx, plain, after, after+3, 2)
		require.NoError(t, err)
		tf, err := b.SummaryTurns(ctx, fork, after, after+3, 2)
		require.NoError(t, err)
		require.Equal(t, windowShape(driver.Window{Turns: tp}), windowShape(driver.Window{Turns: tf}), "summary turns after %d", after)
	}
}

// A fork reads its inherited prefix and its own turns in every window,
// budget window, history page and summary range exactly as a session
// holding the same turns does; the parent is unchanged, and ForkOf and
// ListForks name the fork point.
func TestForkReads(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		var parent []driver.Turn
		for i := 1; i <= 9; i++ {
			parent = append(parent, forkTurn("p", i))
		}
		saveTurns(t, b, "p", parent...)
		saveTurns(t, b, "plain-p", parent...)

		require.NoError(t, b.Fork(ctx, "p", "p-4", "f"))
		saveTurns(t, b, "plain-f", parent[:4]...)
		sameReads(t, b, "f", "plain-f")
		// An append to an inherited turn never writes into the parent.
		before := tableCounts(t, b)
		more, err := driver.PrepareMessages([]driver.Message{{Role: driver.RoleAssistant, Content: "more"}}, driver.DefaultMaxMessageBytes, nil)
		require.NoError(t, err)
		_, err = b.Append(ctx, "f", "p-4", more)
		require.ErrorIs(t, err, driver.ErrNotSupported)
		_, err = b.Append(ctx, "f", "p-5", more)
		require.ErrorIs(t, err, driver.ErrTurnNotFound, "past the fork point")
		require.Equal(t, before, tableCounts(t, b))
		own := []driver.Turn{forkTurn("f", 5), forkTurn("f", 6), forkTurn("f", 7)}
		saveTurns(t, b, "f", own...)
		saveTurns(t, b, "plain-f", own...)
		sameReads(t, b, "f", "plain-f")
		sameReads(t, b, "p", "plain-p")

		info, err := b.SessionInfo(ctx, "f")
		require.NoError(t, err)
		require.Equal(t, &driver.ForkPoint{SessionID: "p", TurnID: "p-4"}, info.ForkOf)
		plainInfo, err := b.SessionInfo(ctx, "plain-f")
		require.NoError(t, err)
		require.Nil(t, plainInfo.ForkOf)
		require.Equal(t, plainInfo.TurnCount, info.TurnCount)
		require.Equal(t, plainInfo.Tokens, info.Tokens)

		// A search scoped to the fork finds its inherited turns (up to the
		// fork point) and its own, under its name; a tenant-wide search
		// finds each stored message once, under the session storing it.
		hits, err := b.Search(ctx, "", driver.SearchQuery{Text: "answer", SessionID: "f", Limit: 100})
		require.NoError(t, err)
		var got []string
		for _, h := range hits {
			require.Equal(t, "f", h.SessionID)
			got = append(got, h.TurnID)
		}
		require.ElementsMatch(t, []string{"p-1", "p-2", "p-3", "p-4", "f-5", "f-6", "f-7"}, got)
		hits, err = b.Search(ctx, "", driver.SearchQuery{Text: "answer", SessionID: "f", Limit: 2})
		require.NoError(t, err)
		require.Len(t, hits, 2)
		hits, err = b.Search(ctx, "", driver.SearchQuery{Text: "answer", Limit: 100})
		require.NoError(t, err)
		per := map[string]int{}
		for _, h := range hits {
			per[h.SessionID]++
		}
		require.Equal(t, map[string]int{"p": 9, "plain-p": 9, "f": 3, "plain-f": 7}, per)

		time.Sleep(2 * time.Millisecond)
		require.NoError(t, b.Fork(ctx, "p", "p-9", "g"))
		forks, err := b.ListForks(ctx, "p", driver.MaxForks)
		require.NoError(t, err)
		require.Len(t, forks, 2)
		require.Equal(t, []string{"g", "f"}, []string{forks[0].ID, forks[1].ID}, "newest first")
		require.Equal(t, "p-9", forks[0].ForkOf.TurnID)
		page, err := b.ListSessions(ctx, "", driver.SessionQuery{Limit: 100})
		require.NoError(t, err)
		for _, s := range page.Sessions {
			if s.ID == "f" {
				require.Equal(t, info.ForkOf, s.ForkOf, "ListSessions fills ForkOf")
			}
		}
		one, err := b.ListForks(ctx, "p", 1)
		require.NoError(t, err)
		require.Len(t, one, 1)
		none, err := b.ListForks(ctx, "f", driver.MaxForks)
		require.NoError(t, err)
		require.Empty(t, none)
		_, err = b.ListForks(ctx, "p", 0)
		require.ErrorIs(t, err, driver.ErrInvalidQuery)
	})
}

// Forks of forks read right at every depth, each forking somewhere in the
// chain (in its own turns or in an inherited one).
func TestForkChains(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		const depth = 12
		hist := []driver.Turn{forkTurn("c0", 1), forkTurn("c0", 2), forkTurn("c0", 3)}
		saveTurns(t, b, "c0", hist...)
		for i := 1; i <= depth; i++ {
			// Fork at the newest turn, or at an inherited one every third.
			at := len(hist) - 1
			if i%3 == 0 {
				at = len(hist) - 3
			}
			require.NoError(t, b.Fork(ctx, fmt.Sprintf("c%d", i-1), hist[at].ID, fmt.Sprintf("c%d", i)))
			hist = append(hist[:at+1:at+1], forkTurn(fmt.Sprintf("c%d", i), 1), forkTurn(fmt.Sprintf("c%d", i), 2))
			saveTurns(t, b, fmt.Sprintf("c%d", i), hist[at+1:]...)
			plain := fmt.Sprintf("plain-c%d", i)
			saveTurns(t, b, plain, hist...)
			sameReads(t, b, fmt.Sprintf("c%d", i), plain)
		}
	})
}

// Fork's errors: no such turn or parent, a child holding turns or owned by
// another user, a child in another tenant; each writes nothing.
func TestForkErrors(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		saveTurns(t, b, "p", forkTurn("p", 1), forkTurn("p", 2))
		saveTurns(t, b, "busy", forkTurn("b", 1))
		require.NoError(t, b.CreateSession(ctx, "owned", driver.SessionInfo{User: "eve"}))
		before := tableCounts(t, b)
		require.ErrorIs(t, b.Fork(ctx, "p", "nope", "c"), driver.ErrTurnNotFound)
		require.ErrorIs(t, b.Fork(ctx, "missing", "p-1", "c"), driver.ErrTurnNotFound)
		require.ErrorIs(t, b.Fork(ctx, "p", "b-1", "c"), driver.ErrTurnNotFound, "another session's turn")
		require.ErrorIs(t, b.Fork(ctx, "p", "p-1", "busy"), driver.ErrSessionExists)
		require.ErrorIs(t, b.Fork(ctx, "p", "p-1", "owned"), driver.ErrSessionOwned)
		require.ErrorIs(t, b.Fork(ctx, "p", "p-1", "p"), driver.ErrSessionExists)
		require.ErrorIs(t, b.Fork(ctx, "p", "p-1", driver.SessionKey("acme", "c")), driver.ErrInvalidQuery)
		require.Equal(t, before, tableCounts(t, b))

		// An empty child the parent's owner made is taken, keeping its title.
		require.NoError(t, b.CreateSession(ctx, "q", driver.SessionInfo{User: "ada"}))
		saveTurns(t, b, "q", forkTurn("q", 1), forkTurn("q", 2))
		require.NoError(t, b.CreateSession(ctx, "qc", driver.SessionInfo{User: "ada", Title: "edit"}))
		require.NoError(t, b.Fork(ctx, "q", "q-1", "qc"))
		info, err := b.SessionInfo(ctx, "qc")
		require.NoError(t, err)
		require.Equal(t, "ada", info.User)
		require.Equal(t, "edit", info.Title)
		require.Equal(t, 1, info.TurnCount)
		require.ErrorIs(t, b.Fork(ctx, "q", "q-2", "qc"), driver.ErrSessionExists, "the child holds turns now")
		// A fork of an owned session is owned by its owner.
		require.NoError(t, b.Fork(ctx, "q", "q-2", "qd"))
		info, err = b.SessionInfo(ctx, "qd")
		require.NoError(t, err)
		require.Equal(t, "ada", info.User)
	})
}

// A fork costs the same statements and rows whether the parent holds 10
// turns or 10,000, and writes no message row.
func TestForkCostIsFlat(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, rec := newEnv(t, d)
		cost := func(n int) (stmts []string, rows [2]int) {
			key := fmt.Sprintf("long%d", n)
			turns := make([]driver.Turn, n)
			for i := range turns {
				turns[i] = forkTurn(key, i+1)
			}
			replaceTurns(t, b, key, turns)
			// Fork in the middle of the parent, then from a fork of it
			// (a chain of two).
			require.NoError(t, b.Fork(ctx, key, turns[n/2].ID, key+"-a"))
			before := tableCounts(t, b)
			rec.take()
			require.NoError(t, b.Fork(ctx, key+"-a", turns[n/3].ID, key+"-b"))
			stmts = rec.take()
			after := tableCounts(t, b)
			w := loadWindow(t, b, key+"-b", 3)
			require.Equal(t, n/3+1, w.TurnCount)
			require.Equal(t, turns[n/3].ID, w.Turns[len(w.Turns)-1].ID)
			return stmts, [2]int{after[0] - before[0], after[1] - before[1]}
		}
		small, smallRows := cost(10)
		large, largeRows := cost(10_000)
		require.Equal(t, len(small), len(large), "statements of a fork of 10 and 10,000 turns:\n%s\n---\n%s", strings.Join(small, "\n"), strings.Join(large, "\n"))
		require.Equal(t, [2]int{1, 0}, smallRows, "a fork writes its session row and no message")
		require.Equal(t, smallRows, largeRows)
		t.Logf("%s: a fork is %d statements and 1 row at 10 and at 10,000 turns", d.Name, len(small))
	})
}

// Clearing, replacing, expiring or deleting the parent (and the
// grandparent) leaves every fork whole, searchable, and the deleted
// sessions' rows gone.
func TestForkIndependence(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		for _, op := range []string{"clear", "replace", "expire", "deleteuser"} {
			t.Run(op, func(t *testing.T) {
				b, _ := newEnv(t, d)
				require.NoError(t, b.CreateSession(ctx, "g", driver.SessionInfo{User: "ada"}))
				g := []driver.Turn{forkTurn("g", 1), forkTurn("g", 2), {ID: "g-3", User: "zebraword secret", Agent: "ok"}, forkTurn("g", 4)}
				saveTurns(t, b, "g", g...)
				require.NoError(t, b.Fork(ctx, "g", "g-3", "p"))
				p := append(g[:3:3], forkTurn("p", 1), forkTurn("p", 2))
				saveTurns(t, b, "p", p[3:]...)
				require.NoError(t, b.Fork(ctx, "p", "p-1", "f"))
				require.NoError(t, b.Fork(ctx, "p", "g-2", "f2"))
				f := append(p[:4:4], forkTurn("f", 1))
				saveTurns(t, b, "f", f[4:]...)
				saveTurns(t, b, "plain-f", f...)
				saveTurns(t, b, "plain-f2", g[:2]...)
				saveTurns(t, b, "plain-p", p...)

				switch op {
				case "clear":
					require.NoError(t, b.ClearSession(ctx, "g"))
					sameReads(t, b, "p", "plain-p")
					require.NoError(t, b.ClearSession(ctx, "p"))
				case "replace":
					replaceTurns(t, b, "g", []driver.Turn{forkTurn("r", 1)})
					sameReads(t, b, "p", "plain-p")
					replaceTurns(t, b, "p", []driver.Turn{forkTurn("r", 2)})
					w := loadWindow(t, b, "p", 10)
					require.Equal(t, 1, w.TurnCount, "a fork replaced holds its new turns alone")
					require.Equal(t, "r-2", w.Turns[0].ID)
				case "expire":
					// Only the ancestors are older than the cutoff.
					_, err := b.db.ExecContext(ctx, b.db.Rebind(`UPDATE `+SessionsTable+` SET updated_at = ? WHERE id IN ('g', 'p')`), time.Unix(100, 0).UTC())
					require.NoError(t, err)
					_, _, err = b.DeleteSessions(ctx, "", nil, time.Unix(200, 0), 1)
					require.NoError(t, err)
				case "deleteuser":
					// The user's forks go with the parent; a fork another
					// user now owns (a copy of it) stays whole.
					_, err := b.db.ExecContext(ctx, b.db.Rebind(`UPDATE `+SessionsTable+` SET user_id = 'bob' WHERE id = 'f'`))
					require.NoError(t, err)
					user := "ada"
					_, keys, err := b.DeleteSessions(ctx, "", &user, time.Time{}, 1)
					require.NoError(t, err)
					require.ElementsMatch(t, []string{"g", "p", "f2"}, keys)
				}
				sameReads(t, b, "f", "plain-f")
				if op != "deleteuser" {
					sameReads(t, b, "f2", "plain-f2")
				}
				info, err := b.SessionInfo(ctx, "f")
				require.NoError(t, err)
				require.Equal(t, &driver.ForkPoint{SessionID: "p", TurnID: "p-1"}, info.ForkOf, "provenance stays")
				hits, err := b.Search(ctx, "", driver.SearchQuery{Text: "zebraword", SessionID: "f", Limit: 10})
				require.NoError(t, err)
				require.Len(t, hits, 1, "the fork finds its copied turn")
				// Only the sessions still there hold rows.
				rows, err := b.db.QueryContext(ctx, `SELECT COUNT(*) FROM `+MessagesTable+` WHERE session_id IN ('g', 'p')`)
				require.NoError(t, err)
				var n int
				require.NoError(t, scanOne(rows, &n))
				if op == "replace" {
					require.Equal(t, 4, n, "the replaced histories' rows alone")
				} else {
					require.Zero(t, n)
				}
			})
		}
	})
}

// previousWindow is the turn-window load statement of the release before
// forks, per dialect: the baseline of TestForkLoadCost.
func previousWindow(b *DataFlowBackend, dialect string) string {
	turns := `s.turn_count - CASE WHEN s.version = CAST(? AS BIGINT) THEN 0 ELSE CAST(? AS BIGINT) END`
	cols := loadColumns + b.db.TimeColumn("m.created_at")
	switch dialect {
	case "pg":
		return cols + ` FROM (SELECT s.id, s.turn_count, s.version, ` + turns + ` AS lo FROM ` + SessionsTable + ` s WHERE s.id = ? OFFSET 0) s
LEFT JOIN LATERAL (SELECT * FROM ` + MessagesTable + ` x WHERE x.session_id = s.id AND x.seq > s.lo) m ON TRUE`
	case "mysql":
		return cols + ` FROM ` + SessionsTable + ` s LEFT JOIN ` + MessagesTable + ` m ON m.session_id = s.id AND m.seq > ` +
			strings.ReplaceAll(turns, " AS BIGINT)", " AS SIGNED)") + ` WHERE s.id = ?`
	}
	return cols + ` FROM (SELECT s.id, s.turn_count, s.version, ` + turns + ` AS lo FROM ` + SessionsTable + ` s WHERE s.id = ? LIMIT 1) s
LEFT JOIN ` + MessagesTable + ` m ON m.session_id = s.id AND m.seq > s.lo`
}

// The load of a session that is no fork costs about what the statement
// before forks cost, and a fork's (depth 1 and 10) about what a session of
// the same length that is no fork costs. Ratios of one run, logged (not
// asserted: wall clock); the statement count is asserted.
func TestForkLoadCost(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, rec := newEnv(t, d)
		const n, window, rounds = 200, 20, 400
		var turns []driver.Turn
		for i := 1; i <= n; i++ {
			turns = append(turns, forkTurn("x", i))
		}
		replaceTurns(t, b, "plain", turns)
		replaceTurns(t, b, "root", turns[:n-50])
		require.NoError(t, b.Fork(ctx, "root", turns[n-51].ID, "fork1"))
		saveTurns(t, b, "fork1", turns[n-50:]...)
		// A chain of 10: each fork 5 turns past its parent, the last 10
		// turns in the window spread over several sessions.
		replaceTurns(t, b, "d0", turns[:n-50])
		key := "d0"
		for i := 1; i <= 10; i++ {
			next := fmt.Sprintf("d%d", i)
			require.NoError(t, b.Fork(ctx, key, turns[n-50+5*(i-1)-1].ID, next))
			saveTurns(t, b, next, turns[n-50+5*(i-1):n-50+5*i]...)
			key = next
		}
		for _, k := range []string{"fork1", key} {
			sameReads(t, b, k, "plain")
		}
		if d.Name == "pg" {
			_, err := b.db.ExecContext(ctx, "ANALYZE")
			require.NoError(t, err)
		}
		rec.take()
		loadWindow(t, b, key, window)
		require.Len(t, byKind(rec.take())[kindData], 1, "a load of a fork of depth 10 is one statement")

		// The plan of the depth-10 fork's load: key lookups of the chain,
		// a primary-key range per chain row, no scan of the messages.
		for _, st := range []string{b.loadWindow.String(), b.loadBudget.String()} {
			args := []any{int64(driver.UnknownVersion) - 1, window}
			if st == b.loadBudget.String() {
				args = append(args, 60)
			}
			args = append(args, key)
			var plan string
			if d.Name == "mysql" {
				// A text of two statements (chainForm), which EXPLAIN
				// does not take: the rows it reads are counted below.
				continue
			} else {
				plan = strings.Join(explainQuery(t, b, planPrefix(b), st, args...), "\n")
				require.NotContains(t, plan, "Seq Scan on "+MessagesTable)
				require.NotContains(t, plan, "SCAN m")
			}
			t.Logf("%s plan:\n%s", d.Name, plan)
		}
		if d.Name == "mysql" {
			// The rows the server reads for a load (its handler counters):
			// about the window's messages, not the session's.
			for _, k := range []string{"plain", "fork1", key} {
				for _, budget := range []int{0, 60} {
					n := mysqlHandlerReads(t, b, func() {
						_, _, err := b.Load(ctx, k, driver.WindowQuery{MaxTurns: window, TokenBudget: budget, Known: driver.UnknownVersion})
						require.NoError(t, err)
					})
					t.Logf("mysql: a load of %s (budget %d) reads %d index entries and rows", k, budget, n)
					require.Less(t, n, int64(4*2*window+40), "a load reads about its window, not the history")
				}
			}
		}
		old := b.db.Rebind(previousWindow(b, d.Name))
		q := driver.WindowQuery{MaxTurns: window, Known: driver.UnknownVersion}
		runs := map[string]func() error{
			"previous": func() error {
				rows, err := b.db.QueryContext(ctx, old, int64(q.Known)-1, q.MaxTurns, "plain")
				if err != nil {
					return err
				}
				w, _, err := scanWindow(rows, q, nil)
				if err == nil && len(w.Turns) != window {
					err = fmt.Errorf("%d turns", len(w.Turns))
				}
				return err
			},
		}
		for _, k := range []string{"plain", "fork1", key} {
			runs[k] = func() error {
				w, _, err := b.Load(ctx, k, q)
				if err == nil && len(w.Turns) != window {
					err = fmt.Errorf("%d turns", len(w.Turns))
				}
				return err
			}
		}
		spent := map[string]time.Duration{}
		names := []string{"previous", "plain", "fork1", key}
		for r := range rounds {
			for i := range names {
				name := names[(i+r)%len(names)] // interleaved, rotating
				start := time.Now()
				require.NoError(t, runs[name]())
				spent[name] += time.Since(start)
			}
		}
		ratio := func(a, b string) float64 { return float64(spent[a]) / float64(spent[b]) }
		t.Logf("%s: window of %d of %d turns, %d rounds: no fork now/before %.2fx; fork/no fork %.2fx (depth 1), %.2fx (depth 10)",
			d.Name, window, n, rounds, ratio("plain", "previous"), ratio("fork1", "plain"), ratio(key, "plain"))
	})
}

// Forks racing a clear of their parent (and of the grandparent) are
// ordered by the parent's row lock: each fork either fails with
// ErrTurnNotFound (the clear came first) or holds the whole prefix after
// the clear.
func TestForkRacesClear(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		var turns []driver.Turn
		for i := 1; i <= 12; i++ {
			turns = append(turns, forkTurn("r", i))
		}
		saveTurns(t, b, "g", turns[:6]...)
		require.NoError(t, b.Fork(ctx, "g", "r-6", "p"))
		saveTurns(t, b, "p", turns[6:]...)
		saveTurns(t, b, "plain", turns[:10]...)
		const forks = 8
		errs := make(chan error, forks+2)
		for i := range forks {
			go func() { errs <- b.Fork(ctx, "p", "r-10", fmt.Sprintf("f%d", i)) }()
			if i == forks/2 {
				go func() { errs <- b.ClearSession(ctx, "g") }()
				go func() { errs <- b.ClearSession(ctx, "p") }()
			}
		}
		made := 0
		for range forks + 2 {
			err := <-errs
			if err == nil {
				made++
				continue
			}
			require.ErrorIs(t, err, driver.ErrTurnNotFound)
		}
		for i := range forks {
			key := fmt.Sprintf("f%d", i)
			if _, err := b.SessionInfo(ctx, key); err == nil {
				sameReads(t, b, key, "plain")
			}
		}
		rows, err := b.db.QueryContext(ctx, `SELECT COUNT(*) FROM `+MessagesTable+` WHERE session_id IN ('g', 'p')`)
		require.NoError(t, err)
		var n int
		require.NoError(t, scanOne(rows, &n))
		require.Zero(t, n)
		t.Logf("%s: %d of %d forks came before the clears", d.Name, made-2, forks)
	})
}

// A fork starts with its parent's summary only when the summary covers no
// turn past the fork point; otherwise with none, and makes its own.
func TestForkSummary(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		var turns []driver.Turn
		for i := 1; i <= 6; i++ {
			turns = append(turns, forkTurn("s", i))
		}
		saveTurns(t, b, "p", turns...)
		require.NoError(t, b.PutSummary(ctx, "p", driver.Summary{Text: "first two", Turns: 2, Tokens: 3, UpdatedAt: time.Unix(500, 0).UTC()}))
		require.NoError(t, b.Fork(ctx, "p", "s-3", "covered"))
		require.NoError(t, b.PutSummary(ctx, "p", driver.Summary{Text: "first five", Turns: 5, Tokens: 4, UpdatedAt: time.Unix(600, 0).UTC()}))
		require.NoError(t, b.Fork(ctx, "p", "s-3", "past"))
		load := func(key string) driver.Window {
			w, _, err := b.Load(ctx, key, driver.WindowQuery{MaxTurns: 10, Known: driver.UnknownVersion, Summary: true})
			require.NoError(t, err)
			return w
		}
		w := load("covered")
		require.NotNil(t, w.Summary)
		require.Equal(t, "first two", w.Summary.Text)
		require.Equal(t, 2, w.Summary.Turns)
		require.Len(t, w.Turns, 3)
		require.Nil(t, load("past").Summary, "the parent's summary covers turns past the fork point")
		require.Equal(t, "first five", load("p").Summary.Text)
	})
}
