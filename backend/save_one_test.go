package backend

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/testutil"
)

// sessionState is what the tables hold of one session and one of its turn
// IDs.
type sessionState struct {
	count, version int64 // the session row's columns; 0, 0 when there is no row
	messages       int   // message rows of the session
	turnMessages   int   // message rows of the turn ID
}

// readSessionState reads the session's row and counts its messages, from
// the tables themselves.
func readSessionState(t *testing.T, b *DataFlowBackend, sessionID, turnID string) sessionState {
	t.Helper()
	rows, err := b.db.QueryContext(context.Background(), b.db.Rebind(`SELECT
	coalesce((SELECT turn_count FROM `+SessionsTable+` WHERE id = ?), 0),
	coalesce((SELECT version FROM `+SessionsTable+` WHERE id = ?), 0),
	(SELECT count(*) FROM `+MessagesTable+` WHERE session_id = ?),
	(SELECT count(*) FROM `+MessagesTable+` WHERE session_id = ? AND turn_id = ?)`),
		sessionID, sessionID, sessionID, sessionID, turnID)
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next(), "no row: %v", rows.Err())
	var s sessionState
	require.NoError(t, rows.Scan(&s.count, &s.version, &s.messages, &s.turnMessages))
	require.NoError(t, rows.Close())
	return s
}

// assertStoredOnce asserts that a save reported as s stored its turn once
// between the states before and after: two messages, the count and, for a
// session that existed, the version bumped by one, and s reporting them.
func assertStoredOnce(t *testing.T, before, after sessionState, s driver.Saved, what string) {
	t.Helper()
	assert.Equal(t, driver.Saved{Stored: true, Seq: int(before.count) + 1, Version: reported(after.version), Messages: 2}, s, "%s: reported", what)
	assert.Equal(t, before.count+1, after.count, "%s: turn_count", what)
	assert.Equal(t, before.messages+2, after.messages, "%s: message rows of the session", what)
	assert.Equal(t, 2, after.turnMessages, "%s: message rows of the turn", what)
	if before.count > 0 {
		assert.Equal(t, before.version+1, after.version, "%s: version", what)
	}
}

// waitUntil polls cond until it holds, failing the test after 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blockedBy counts the PostgreSQL backends waiting, directly or through
// other waiters, for a lock that the backend pid holds.
func blockedBy(t *testing.T, db *sql.DB, pid int) int {
	t.Helper()
	var n int
	err := db.QueryRowContext(context.Background(), `WITH RECURSIVE blocked (pid) AS (
	SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))
	UNION
	SELECT a.pid FROM pg_stat_activity a JOIN blocked w ON w.pid = ANY (pg_blocking_pids(a.pid))
)
SELECT count(*) FROM blocked`, pid).Scan(&n)
	require.NoError(t, err)
	return n
}

// TestDataFlowBackendSaveInOne checks what a save does, through the
// backend: on PostgreSQL its one statement (saveInOne), on SQLite its
// two-statement transaction, which keeps the same contract. A new turn
// stores its two messages and bumps the count and version once; a
// duplicate ID, sequential or concurrent, stores and bumps nothing and is
// reported not stored, without an error; concurrent distinct saves get
// gap-free turn numbers; and LoadWindow reads back what was stored.
func TestDataFlowBackendSaveInOne(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, rec := newEnv(t, d)
		require.Equal(t, d.Name == "pg", oneStatementSave(b) != nil, "the one-statement save is PostgreSQL's alone")
		require.NoError(t, storeTurn(ctx, b, "warm-up", driver.Turn{User: "u"})) // creates the tables

		t.Run("new-and-sequential-duplicate", func(t *testing.T) {
			const session = "seq"
			for _, id := range []string{"t1", "t2"} {
				before := readSessionState(t, b, session, id)
				s, err := b.Save(ctx, session, driver.PreparedTurn{Turn: driver.Turn{ID: id, User: "user " + id, Agent: "agent " + id, Metadata: map[string]any{"k": 1}}})
				require.NoError(t, err)
				assertStoredOnce(t, before, readSessionState(t, b, session, id), s, "new turn "+id)
			}
			for _, id := range []string{"t1", "t2"} {
				before := readSessionState(t, b, session, id)
				s, err := b.Save(ctx, session, driver.PreparedTurn{Turn: driver.Turn{ID: id, User: "retry", Agent: "retry"}})
				require.NoError(t, err)
				assert.Equal(t, driver.Saved{}, s, "duplicate %s: reported", id)
				assert.Equal(t, before, readSessionState(t, b, session, id), "duplicate %s changed the session", id)
				require.NoError(t, storeTurn(ctx, b, session, driver.Turn{ID: id, User: "retry"}), "duplicate %s through SaveTurn", id)
				assert.Equal(t, before, readSessionState(t, b, session, id), "duplicate %s through SaveTurn changed the session", id)
			}
		})

		// The abort path, made deterministic. Two saves, A and B, of one
		// new turn ID start while another transaction holds the session
		// row's lock, so neither can see the other's turn. On PostgreSQL
		// both statements are seen waiting for that lock: each has then
		// already found the ID unknown in its snapshot (the "known" CTE is
		// read before the upsert). Released, one stores the turn; the
		// other, ordered after it by the row lock, bumps the session row,
		// violates the turn index and is rolled back whole, bump included.
		// On SQLite both have sent BEGIN IMMEDIATE, which cannot return
		// before the release; the second then finds the turn stored. On
		// MySQL both texts are seen waiting for the lock (InnoDB's lock
		// waits), each having read the ID unknown without a lock; the
		// second, after the first commits, fails on the turn index and is
		// rolled back whole.
		at, err := b.db.Bind(now())
		require.NoError(t, err)
		for _, tt := range []struct {
			name, session string
			existing      bool   // the session holds a turn before the saves
			lock          string // takes the session row's lock
			args          []any
			commit        bool // release by COMMIT, else by ROLLBACK
		}{
			{"existing-session-row-updated", "lock-old", true,
				`UPDATE ` + SessionsTable + ` SET turn_count = turn_count WHERE id = ?`, []any{"lock-old"}, true},
			{"new-session-row-inserted", "lock-new", false,
				`INSERT INTO ` + SessionsTable + ` (id, turn_count, version, created_at, updated_at) VALUES (?, 0, 0, ?, ?)`, []any{"lock-new", at, at}, false},
		} {
			t.Run("duplicate-behind-lock/"+tt.name, func(t *testing.T) {
				if tt.existing {
					require.NoError(t, storeTurn(ctx, b, tt.session, driver.Turn{ID: "first", User: "first"}))
				}
				before := readSessionState(t, b, tt.session, "x")
				raw := b.DB().Bun().DB
				tx, err := raw.BeginTx(ctx, nil) // on SQLite BEGIN IMMEDIATE: the write lock
				require.NoError(t, err)
				res, err := tx.ExecContext(ctx, b.db.Rebind(tt.lock), tt.args...)
				require.NoError(t, err)
				n, err := res.RowsAffected()
				require.NoError(t, err)
				require.EqualValues(t, 1, n, "rows the lock statement touched")
				var locker int
				if d.Name == "pg" {
					require.NoError(t, tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&locker))
				}

				first := "BEGIN IMMEDIATE" // a save's first statement
				if st := oneStatementSave(b); st != nil {
					first = st.String()
				}
				if ms, ok := b.store.(*mysqlStore); ok {
					first = ms.saveText(2, guardNone) // the save's one text, of two messages
				}
				var sent atomic.Int32
				rec.arm(func(ctx context.Context, query string) context.Context {
					if query == first {
						sent.Add(1)
					}
					return ctx
				})
				defer rec.arm(nil)

				saveCtx, cancel := context.WithTimeout(ctx, 30*time.Second) // a hang fails, not stalls
				defer cancel()
				var saved [2]driver.Saved
				var errs [2]error
				var wg sync.WaitGroup
				defer func() { _ = tx.Rollback(); wg.Wait() }() // after a failure: release, let the saves end
				for i := range saved {
					wg.Go(func() {
						saved[i], errs[i] = b.Save(saveCtx, tt.session, driver.PreparedTurn{Turn: driver.Turn{ID: "x", User: fmt.Sprint("save ", i), Agent: "a"}})
					})
				}
				waitUntil(t, "both saves waiting for the lock", func() bool {
					switch {
					case sent.Load() != 2:
						return false
					case d.Name == "pg":
						return blockedBy(t, raw, locker) >= 2
					case d.Name == "mysql":
						return mysqlLockWaits(t, raw) >= 2
					}
					return true
				})
				if tt.commit {
					require.NoError(t, tx.Commit())
				} else {
					require.NoError(t, tx.Rollback())
				}
				testutil.Wait(t, &wg, 30*time.Second)

				require.NoError(t, errs[0], "save 0")
				require.NoError(t, errs[1], "save 1")
				require.NotEqual(t, saved[0].Stored, saved[1].Stored, "exactly one save stores the turn: got %+v", saved)
				winner := 0
				if saved[1].Stored {
					winner = 1
				}
				assert.Equal(t, driver.Saved{}, saved[1-winner], "the losing save")
				assertStoredOnce(t, before, readSessionState(t, b, tt.session, "x"), saved[winner], "the winning save")
				w := loadWindow(t, b, tt.session, 1)
				require.Len(t, w.Turns, 1)
				assert.Equal(t, "x", w.Turns[0].ID)
				assert.Equal(t, fmt.Sprint("save ", winner), w.Turns[0].User, "the stored turn is not the winner's")
			})
		}

		t.Run("concurrent-duplicates", func(t *testing.T) {
			const goroutines, rounds = 8, 20
			require.NoError(t, storeTurn(ctx, b, "dup", driver.Turn{User: "first"}))
			for r := range rounds {
				session := "dup" // an existing session
				if r%2 == 1 {
					session = fmt.Sprintf("dup-new-%d", r) // the first save of a session
				}
				id := fmt.Sprintf("d%d", r)
				before := readSessionState(t, b, session, id)
				saveCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
				var saved [goroutines]driver.Saved
				var errs [goroutines]error
				var wg sync.WaitGroup
				start := make(chan struct{})
				for g := range goroutines {
					wg.Go(func() {
						<-start
						saved[g], errs[g] = b.Save(saveCtx, session, driver.PreparedTurn{Turn: driver.Turn{ID: id, User: fmt.Sprint("g", g), Agent: "a"}})
					})
				}
				close(start)
				testutil.Wait(t, &wg, 30*time.Second)
				cancel()
				winner, stored := -1, 0
				for g := range goroutines {
					require.NoError(t, errs[g], "round %d, save %d", r, g)
					if saved[g].Stored {
						winner, stored = g, stored+1
					} else {
						assert.Equal(t, driver.Saved{}, saved[g], "round %d, losing save %d", r, g)
					}
				}
				require.Equal(t, 1, stored, "round %d: saves that stored the turn", r)
				what := fmt.Sprintf("round %d on %s", r, session)
				assertStoredOnce(t, before, readSessionState(t, b, session, id), saved[winner], what)
				w := loadWindow(t, b, session, 1)
				require.Len(t, w.Turns, 1)
				assert.Equal(t, id, w.Turns[0].ID, what)
				assert.Equal(t, fmt.Sprint("g", winner), w.Turns[0].User, "%s: the stored turn is not the winner's", what)
			}
		})

		t.Run("concurrent-distinct-gap-free", func(t *testing.T) {
			const session, goroutines, each = "gapless", 8, 10
			const n = goroutines * each
			saveCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			var saved [goroutines][each]driver.Saved
			var wg sync.WaitGroup
			start := make(chan struct{})
			for g := range goroutines {
				wg.Go(func() {
					<-start
					for i := range each {
						id := fmt.Sprintf("g%d-%d", g, i)
						s, err := b.Save(saveCtx, session, driver.PreparedTurn{Turn: driver.Turn{ID: id, User: "user " + id, Agent: "agent " + id}})
						if !assert.NoError(t, err, "save %s", id) {
							return
						}
						saved[g][i] = s
					}
				})
			}
			close(start)
			testutil.Wait(t, &wg, 60*time.Second)
			if t.Failed() {
				return
			}

			checkSession(t, b, session, n, 2) // seqs 1..n, 2n messages, turn_count n
			after := readSessionState(t, b, session, "")
			var bySeq [n]string // turn ID by the sequence number its save reported
			for g := range goroutines {
				for i, s := range saved[g] {
					id := fmt.Sprintf("g%d-%d", g, i)
					require.True(t, s.Stored, "save %s: not stored", id)
					require.True(t, s.Seq >= 1 && s.Seq <= n, "save %s: got seq %d; want 1..%d", id, s.Seq, n)
					require.Empty(t, bySeq[s.Seq-1], "seq %d reported by saves %s and %s", s.Seq, bySeq[s.Seq-1], id)
					bySeq[s.Seq-1] = id
					// Every save bumps the version by one: the turn numbered
					// seq left the version n-seq below the last.
					assert.Equal(t, reported(after.version-int64(n-s.Seq)), s.Version, "save %s: version", id)
					if i > 0 {
						assert.Greater(t, s.Seq, saved[g][i-1].Seq, "save %s numbered before its predecessor", id)
					}
				}
			}
			w := loadWindow(t, b, session, n)
			require.Equal(t, n, w.TurnCount)
			require.Len(t, w.Turns, n)
			for k, turn := range w.Turns {
				assert.Equal(t, bySeq[k], turn.ID, "turn %d", k+1)
				assert.Equal(t, "user "+bySeq[k], turn.User, "turn %d", k+1)
				assert.Equal(t, "agent "+bySeq[k], turn.Agent, "turn %d", k+1)
			}
			rows, err := b.db.QueryContext(ctx, b.db.Rebind(`SELECT count(*) FROM `+MessagesTable+`
WHERE session_id = ? AND NOT (pos = 0 AND role = '`+string(driver.RoleUser)+`' OR pos = 1 AND role = '`+string(driver.RoleAssistant)+`')`), session)
			require.NoError(t, err)
			defer rows.Close()
			require.True(t, rows.Next(), "no row: %v", rows.Err())
			var misplaced int
			require.NoError(t, rows.Scan(&misplaced))
			assert.Zero(t, misplaced, "messages whose role does not match their position")
		})

		t.Run("load-window-reads-it", func(t *testing.T) {
			const session = "read-back"
			at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
			c1 := driver.Turn{ID: "c1", User: "hello", Agent: "world", Timestamp: at, Metadata: map[string]any{"model": "m"}}
			c2 := driver.Turn{ID: "c2", User: "u2", Agent: "a2", Timestamp: at.Add(time.Second)}
			s1, err := b.Save(ctx, session, driver.PreparedTurn{Turn: c1})
			require.NoError(t, err)
			require.True(t, s1.Stored)
			require.NoError(t, storeTurn(ctx, b, session, c2))
			_, v, err := b.Load(ctx, session, driver.WindowQuery{MaxTurns: 10, Known: driver.UnknownVersion})
			require.NoError(t, err)
			assert.Equal(t, s1.Version+1, v, "version after two saves")

			require.NoError(t, storeTurn(ctx, b, session, driver.Turn{ID: "c1", User: "again", Agent: "again"})) // a duplicate
			assert.Equal(t, wantWindow([]driver.Turn{prepared(t, c1), prepared(t, c2)}, 2),
				loadWindow(t, b, session, 10))
			w, v2, err := b.Load(ctx, session, driver.WindowQuery{MaxTurns: 10, Known: v})
			require.NoError(t, err)
			assert.Equal(t, v, v2, "a duplicate moved the version")
			assert.Equal(t, driver.Window{}, w, "the window of an unchanged session")
		})
	})
}

// mysqlLockWaits is how many InnoDB transactions wait for a lock.
func mysqlLockWaits(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRowContext(context.Background(),
		`SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'`).Scan(&n))
	return n
}

// oneStatementSave is the engine's one-statement save, or nil for an
// engine whose save is a transaction.
func oneStatementSave(b *DataFlowBackend) *dataflow.Stmt {
	if s, ok := b.store.(*postgresStore); ok {
		return s.saveTurn
	}
	return nil
}
