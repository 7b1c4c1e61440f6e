package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// guardedBackends are the backends the guarded-save tests run on: the
// SQL backend on every dialect and the in-memory one, each from a fresh,
// empty database.
func guardedBackends(t *testing.T, fn func(t *testing.T, b driver.Backend)) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		fn(t, b)
	})
	t.Run("inmemory", func(t *testing.T) { fn(t, NewInMemoryBackend()) })
}

// save is Save of turn, prepared.
func save(ctx context.Context, b driver.Backend, key string, turn driver.Turn) (driver.Saved, error) {
	p, err := driver.Prepare(turn, time.Now(), 0, nil)
	if err != nil {
		return driver.Saved{}, err
	}
	return b.Save(ctx, key, p)
}

// A turn with Seq lands at exactly that position or not at all: into an
// empty session only Seq 1, then only the next; a turn the session holds
// is no conflict whatever its Seq; loaded turns carry their Seq.
func TestGuardedSave(t *testing.T) {
	guardedBackends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		key := driver.SessionKey("acme", "g")
		conflict := func(turn driver.Turn, why string) {
			t.Helper()
			before := loadWindow(t, b, key, 100)
			_, err := save(ctx, b, key, turn)
			require.ErrorIs(t, err, driver.ErrConflict, why)
			assert.Equal(t, before, loadWindow(t, b, key, 100), "%s: nothing written", why)
		}

		conflict(driver.Turn{ID: "x", User: "u", Seq: 2}, "Seq 2 into an empty session")
		info, err := b.(driver.SessionStore).SessionInfo(ctx, key)
		assert.ErrorIs(t, err, driver.ErrSessionNotFound, "a refused save makes no session row: %+v", info)

		s, err := save(ctx, b, key, driver.Turn{ID: "a", User: "first", Seq: 1})
		require.NoError(t, err)
		assert.Equal(t, driver.Saved{Stored: true, Seq: 1, Version: s.Version, Messages: 1}, s)

		conflict(driver.Turn{ID: "b", User: "u", Seq: 1}, "Seq 1 taken")
		conflict(driver.Turn{ID: "b", User: "u", Seq: 3}, "Seq beyond count+1")
		s, err = save(ctx, b, key, driver.Turn{ID: "b", User: "second", Seq: 2})
		require.NoError(t, err)
		assert.Equal(t, 2, s.Seq)
		s, err = save(ctx, b, key, driver.Turn{ID: "c", User: "third"}) // Seq 0: no condition
		require.NoError(t, err)
		assert.Equal(t, 3, s.Seq)

		// A retry of a stored ID with any Seq stores nothing and is no
		// conflict.
		for _, seq := range []int{0, 1, 2, 3, 4, 9} {
			s, err := save(ctx, b, key, driver.Turn{ID: "a", User: "first", Seq: seq})
			require.NoError(t, err, "retry of a with Seq %d", seq)
			assert.False(t, s.Stored, "retry of a with Seq %d", seq)
		}

		w := loadWindow(t, b, key, 100)
		require.Len(t, w.Turns, 3)
		for i, id := range []string{"a", "b", "c"} {
			assert.Equal(t, id, w.Turns[i].ID)
			assert.Equal(t, i+1, w.Turns[i].Seq, "window turn %s", id)
		}
		w2 := loadWindow(t, b, key, 2)
		assert.Equal(t, []int{2, 3}, []int{w2.Turns[0].Seq, w2.Turns[1].Seq}, "a partial window's Seq")

		// A loaded turn saved again as it is: held, no conflict.
		s, err = b.Save(ctx, key, driver.PreparedTurn{Turn: w.Turns[1]})
		require.NoError(t, err)
		assert.False(t, s.Stored)

		st := b.(driver.SessionStore)
		p, err := st.History(ctx, key, driver.HistoryQuery{Limit: 2})
		require.NoError(t, err)
		require.Len(t, p.Turns, 2)
		assert.Equal(t, []int{1, 2}, []int{p.Turns[0].Seq, p.Turns[1].Seq}, "history page")
		p, err = st.History(ctx, key, driver.HistoryQuery{Limit: 2, After: p.Next})
		require.NoError(t, err)
		require.Len(t, p.Turns, 1)
		assert.Equal(t, 3, p.Turns[0].Seq, "second history page")
		p, err = st.History(ctx, key, driver.HistoryQuery{Limit: 3, NewestFirst: true})
		require.NoError(t, err)
		assert.Equal(t, []int{3, 2, 1}, []int{p.Turns[0].Seq, p.Turns[1].Seq, p.Turns[2].Seq}, "newest-first history")
		if ss, ok := b.(driver.SummaryStore); ok {
			turns, err := ss.SummaryTurns(ctx, key, 1, 3, 10)
			require.NoError(t, err)
			require.Len(t, turns, 2)
			assert.Equal(t, []int{2, 3}, []int{turns[0].Seq, turns[1].Seq}, "summary turns")
		}

		// A session made empty by CreateSession takes Seq 1.
		empty := driver.SessionKey("acme", "created")
		require.NoError(t, st.CreateSession(ctx, empty, driver.SessionInfo{Title: "t"}))
		_, err = save(ctx, b, empty, driver.Turn{ID: "x", User: "u", Seq: 2})
		require.ErrorIs(t, err, driver.ErrConflict)
		s, err = save(ctx, b, empty, driver.Turn{ID: "x", User: "u", Seq: 1})
		require.NoError(t, err)
		assert.Equal(t, 1, s.Seq)
	})
}

// Two servers (two memories, each on its own database handle) save a
// turn of the same Seq to one session at once, round after round: exactly
// one stores it, the other gets ErrConflict, and the history has no gap
// and no double.
func TestGuardedSaveRace(t *testing.T) {
	const rounds = 30
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		b1, _ := newEnvURL(t, url)
		b2, _ := newEnvURL(t, url)
		race(t, rounds, newMemory(t, b1, memory.WithCacheTTL(time.Hour)), newMemory(t, b2, memory.WithCacheTTL(time.Hour)))
	})
	t.Run("inmemory", func(t *testing.T) {
		b := NewInMemoryBackend()
		race(t, rounds, newMemory(t, b), newMemory(t, b))
	})
}

func race(t *testing.T, rounds int, servers ...*memory.PersistentBufferMemory) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const session = "race"
	var want []string
	for n := 1; n <= rounds; n++ {
		errs := make([]error, len(servers))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, m := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = m.SaveTurn(ctx, session, memory.Turn{ID: fmt.Sprintf("r%d-s%d", n, i), User: fmt.Sprint("round ", n), Seq: n})
			}()
		}
		close(start)
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil:
				require.Equal(t, -1, won, "round %d: servers %d and %d both stored turn %d", n, won, i, n)
				won = i
			case !errors.Is(err, memory.ErrConflict):
				t.Fatalf("round %d: server %d: %v; want nil or ErrConflict", n, i, err)
			}
		}
		require.NotEqual(t, -1, won, "round %d: no server stored turn %d: %v", n, n, errs)
		want = append(want, fmt.Sprintf("r%d-s%d", n, won))

		// Each server's window, cached or not, is the stored history.
		for i, m := range servers {
			w, err := m.LoadContext(ctx, session, memory.LoadMaxTurns(rounds))
			require.NoError(t, err)
			require.Equal(t, n, w.TurnCount, "round %d: server %d: count", n, i)
			got := make([]string, len(w.Turns))
			for k, turn := range w.Turns {
				got[k] = turn.ID
				require.Equal(t, k+1, turn.Seq, "round %d: server %d: turn %s", n, i, turn.ID)
			}
			require.Equal(t, want, got, "round %d: server %d: history", n, i)
		}
	}
}

// On MySQL a guarded save is one round trip, as an unguarded one: its
// count is checked by the statements of the save's own text.
func TestMySQLGuardedSaveRoundTrips(t *testing.T) {
	b := newMySQLBackend(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, storeTurn(ctx, b, driver.SessionKey("acme", "warm"), driver.Turn{ID: "w", User: "u", Agent: "a"}))
	key := driver.SessionKey("acme", "g")
	for seq := 1; seq <= 3; seq++ {
		before := roundTrips()
		s, err := save(ctx, b, key, driver.Turn{User: "u", Agent: "a", Seq: seq})
		got := roundTrips() - before
		require.NoError(t, err)
		assert.Equal(t, seq, s.Seq)
		assert.Equal(t, 1, got, "guarded save of Seq %d: round trips", seq)
	}
	before := roundTrips()
	s, err := save(ctx, b, key, driver.Turn{User: "u", Agent: "a"})
	require.NoError(t, err)
	assert.Equal(t, 4, s.Seq)
	assert.Equal(t, 1, roundTrips()-before, "unguarded save: round trips")
}

// Replace and Import take a turn's Seq as its position: a replacement's
// turn Seq must be its place in the list, an imported turn's the place
// it is held at or lands at; otherwise nothing is written.
func TestSeqReplaceImport(t *testing.T) {
	guardedBackends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		key := driver.SessionKey("acme", "r")
		r := b.(driver.Replacer)
		st := b.(driver.SessionStore)
		prep := func(turns ...driver.Turn) []driver.PreparedTurn {
			out := make([]driver.PreparedTurn, len(turns))
			for i, turn := range turns {
				p, err := driver.Prepare(turn, time.Now(), 0, nil)
				require.NoError(t, err)
				out[i] = p
			}
			return out
		}
		_, err := r.Replace(ctx, key, prep(driver.Turn{ID: "a", User: "a", Seq: 1}, driver.Turn{ID: "b", User: "b", Seq: 3}))
		require.ErrorIs(t, err, driver.ErrInvalidTurn)
		assert.Equal(t, 0, loadWindow(t, b, key, 10).TurnCount, "nothing written")
		_, err = r.Replace(ctx, key, prep(driver.Turn{ID: "a", User: "a", Seq: 1}, driver.Turn{ID: "b", User: "b"}, driver.Turn{ID: "c", User: "c", Seq: 3}))
		require.NoError(t, err)
		w := loadWindow(t, b, key, 10)
		require.Len(t, w.Turns, 3)
		assert.Equal(t, []int{1, 2, 3}, []int{w.Turns[0].Seq, w.Turns[1].Seq, w.Turns[2].Seq})

		// Replaced with its own loaded turns: the same history.
		p := make([]driver.PreparedTurn, len(w.Turns))
		for i := range w.Turns {
			p[i] = driver.PreparedTurn{Turn: w.Turns[i]}
		}
		_, err = r.Replace(ctx, key, p)
		require.NoError(t, err)
		assert.Equal(t, w.Turns, loadWindow(t, b, key, 10).Turns)

		imp := func(turns ...driver.Turn) error {
			ps := prep(turns...)
			return st.Import(ctx, key, driver.SessionInfo{}, func() (driver.PreparedTurn, error) {
				if len(ps) == 0 {
					return driver.PreparedTurn{}, io.EOF
				}
				p := ps[0]
				ps = ps[1:]
				return p, nil
			})
		}
		for _, bad := range [][]driver.Turn{
			{{ID: "a", User: "a", Seq: 2}},                               // held as turn 1
			{{ID: "d", User: "d", Seq: 5}},                               // would be turn 4
			{{ID: "d", User: "d", Seq: 4}, {ID: "e", User: "e", Seq: 4}}, // e would be turn 5
		} {
			require.ErrorIs(t, imp(bad...), driver.ErrInvalidImport, "%+v", bad)
			assert.Equal(t, w, loadWindow(t, b, key, 10), "nothing written")
		}
		require.NoError(t, imp(driver.Turn{ID: "a", User: "a", Seq: 1}, driver.Turn{ID: "d", User: "d", Seq: 4}, driver.Turn{ID: "e", User: "e"}))
		w = loadWindow(t, b, key, 10)
		require.Len(t, w.Turns, 5)
		assert.Equal(t, "d", w.Turns[3].ID)
		assert.Equal(t, 5, w.Turns[4].Seq)
	})
}

// An append racing a ReplaceSession that removes its turn either lands
// in the old history (and goes with it) or is ErrTurnNotFound: never a
// write into the new history, whose turns reuse the sequence numbers
// (TestAppendRacingReplace's rule, here on MySQL and the in-memory
// backend too, with the turns' Seq checked after every round).
func TestAppendRacingReplaceSeq(t *testing.T) {
	const rounds = 25
	run := func(t *testing.T, b1, b2 driver.Backend) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		key := driver.SessionKey("acme", "ar")
		r := b2.(driver.Replacer)
		for n := range rounds {
			old := make([]driver.PreparedTurn, 3)
			fresh := make([]driver.PreparedTurn, 3)
			for i := range old {
				var err error
				old[i], err = driver.Prepare(driver.Turn{ID: fmt.Sprintf("old%d-%d", n, i), User: "old"}, time.Now(), 0, nil)
				require.NoError(t, err)
				fresh[i], err = driver.Prepare(driver.Turn{ID: fmt.Sprintf("new%d-%d", n, i), User: "new"}, time.Now(), 0, nil)
				require.NoError(t, err)
			}
			_, err := r.Replace(ctx, key, old)
			require.NoError(t, err)
			msgs, err := driver.PrepareMessages([]driver.Message{{ID: fmt.Sprintf("late%d", n), Role: driver.RoleAssistant, Content: "late"}}, 0, nil)
			require.NoError(t, err)
			target := old[n%3].ID // the newest turn (one statement on PostgreSQL) or an older one
			var appendErr, replaceErr error
			var wg sync.WaitGroup
			start := make(chan struct{})
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				_, appendErr = b1.Append(ctx, key, target, msgs)
			}()
			go func() {
				defer wg.Done()
				<-start
				_, replaceErr = r.Replace(ctx, key, fresh)
			}()
			close(start)
			wg.Wait()
			require.NoError(t, replaceErr, "round %d", n)
			if appendErr != nil {
				require.ErrorIs(t, appendErr, driver.ErrTurnNotFound, "round %d", n)
			}
			w := loadWindow(t, b1, key, 10)
			require.Len(t, w.Turns, 3, "round %d", n)
			for i, turn := range w.Turns {
				assert.Equal(t, fresh[i].ID, turn.ID, "round %d", n)
				assert.Len(t, turn.Messages, 1, "round %d: turn %s holds a message appended to %s", n, turn.ID, target)
				assert.Equal(t, i+1, turn.Seq)
			}
			// And after the replace, the append is refused.
			_, err = b1.Append(ctx, key, target, msgs)
			require.ErrorIs(t, err, driver.ErrTurnNotFound, "round %d", n)
		}
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		b1, _ := newEnvURL(t, url)
		b2, _ := newEnvURL(t, url)
		run(t, b1, b2)
	})
	t.Run("inmemory", func(t *testing.T) {
		b := NewInMemoryBackend()
		run(t, b, b)
	})
}

// On PostgreSQL a guarded save is the one statement of a save, and it
// touches about the same buffers: its session step is the upsert (Seq 1)
// or an UPDATE of the session row by primary key, and it reads no
// message index.
// buffersRuns is how many times TestPGGuardedSaveBuffers explains each
// save.
const buffersRuns = 3

func TestPGGuardedSaveBuffers(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b := grownPG(t, d)
		_, err := b.db.ExecContext(ctx, "ANALYZE "+MessagesTable)
		require.NoError(t, err)
		s := b.store.(*postgresStore)
		explainSave(t, b, "grows") // warms the caches: the first run reads the catalog
		// Each explained save is rolled back, leaving dead index entries
		// that the next insert at the same keys checks: so the guarded
		// statement runs between two unguarded ones, and is compared with
		// the later.
		args := saveArgs(t, "grows", driver.NewTurnID())
		// saveLater's session step binds tokens, time, session, count,
		// erased digest and begun where the upsert binds its eight.
		tokens, at, begun := args[4], args[5], args[8]
		guardedArgs := append([]any{"grows", tokens, at, "grows", int64(20), erasedDigest("grows"), begun}, args[9:]...)
		//
		// Each is measured buffersRuns times, alternating, and its least
		// count kept: a one-off (the GIN pending list's flush, the heap's
		// extension, autovacuum's pages) only adds to a count.
		var before, guarded, after, newBefore, first, newAfter int
		least := func(k *int, n int) {
			if *k == 0 || n < *k {
				*k = n
			}
		}
		for range buffersRuns {
			_, n := explainSave(t, b, "grows")
			least(&before, n)
			plan, n := explainStmt(t, b, s.saveLater, guardedArgs)
			least(&guarded, n)
			_, n = explainSave(t, b, "grows")
			least(&after, n)
			assert.NotContains(t, plan, `"Index Name": "`+MessagesTable, "the guarded save reads a message index")
			assert.Contains(t, plan, `"Relation Name": "`+MessagesTable, "the guarded save inserted the messages")
			_, n = explainSave(t, b, "empty")
			least(&newBefore, n)
			_, n = explainStmt(t, b, s.saveFirst, saveArgs(t, "empty", driver.NewTurnID()))
			least(&first, n)
			_, n = explainSave(t, b, "empty")
			least(&newAfter, n)
		}
		t.Logf("save buffers at 20 turns: unguarded %d, guarded (Seq 21) %d, unguarded %d; into a new session: unguarded %d, guarded (Seq 1) %d, unguarded %d",
			before, guarded, after, newBefore, first, newAfter)
		// The UPDATE of a later Seq finds the session row by its primary
		// key (about 2 buffers, which explainStmt's sum counts twice: the
		// CTE's and its scan's), where the upsert's insertion finds it.
		assert.LessOrEqualf(t, guarded, after+4, "guarded save buffers: got %d; want at most the next unguarded save's %d and the row lookup", guarded, after)
		assert.LessOrEqualf(t, first, newAfter, "guarded first save buffers: got %d; want at most the next unguarded save's", first)
	})
}
