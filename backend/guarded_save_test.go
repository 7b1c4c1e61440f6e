package backend

import (
	"context"
	"errors"
	"fmt"
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
	dbtest.RunAll(t, func(t *testing.T, d dbtest.Dialect) {
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
	dbtest.RunAll(t, func(t *testing.T, d dbtest.Dialect) {
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
