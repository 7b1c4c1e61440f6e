package backend

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/testutil"
	"github.com/turnkeep/turnkeep/memory"
)

// checkSession asserts the stored invariants of a session: turn_count equals
// the number of turns, seqs are exactly 1..count, every turn has all its
// perTurn message rows (2 for a turn of User and Agent, 1 for User alone).
func checkSession(t *testing.T, b *DataFlowBackend, sessionID string, wantCount, perTurn int) {
	t.Helper()
	want := make([]int64, wantCount)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if wantCount == 0 {
		want = nil
	}
	assert.Equal(t, want, seqs(t, b, sessionID), "seqs of %s", sessionID)
	assert.Equal(t, perTurn*wantCount, countMessages(t, b, sessionID), "message rows of %s", sessionID)
	info, err := b.SessionInfo(context.Background(), sessionID)
	if wantCount == 0 {
		assert.ErrorIs(t, err, driver.ErrSessionNotFound)
		return
	}
	require.NoError(t, err)
	assert.Equal(t, wantCount, info.TurnCount, "turn_count of %s", sessionID)
}

// "g-i" users: goroutine g's i-th save.
func parseGI(t *testing.T, s string) (g, i int) {
	t.Helper()
	a, b, ok := strings.Cut(s, "-")
	require.True(t, ok, "user %q", s)
	g, err := strconv.Atoi(a)
	require.NoError(t, err)
	i, err = strconv.Atoi(b)
	require.NoError(t, err)
	return g, i
}

// assertPerGoroutineOrder checks that each goroutine's turns appear in the
// order it saved them, and returns how many turns each goroutine has.
func assertPerGoroutineOrder(t *testing.T, turns []driver.Turn) map[int]int {
	t.Helper()
	last := map[int]int{}
	n := map[int]int{}
	for _, turn := range turns {
		g, i := parseGI(t, turn.User)
		if prev, ok := last[g]; ok {
			assert.Greater(t, i, prev, "goroutine %d's turns out of order", g)
		}
		last[g] = i
		n[g]++
	}
	return n
}

func TestDataFlowBackendConcurrentSaves(t *testing.T) {
	const goroutines, saves = 3, 10
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		for _, via := range []string{"backend", "memory"} {
			t.Run(via, func(t *testing.T) {
				sid := "one-" + via
				var mem memory.Memory = newMemory(t, b, memory.WithMaxTurns(5), memory.WithCacheTTL(time.Hour))
				save := func(ctx context.Context, sessionID string, turn driver.Turn) error {
					return storeTurn(ctx, b, sessionID, turn)
				}
				if via == "memory" {
					save = mem.SaveTurn
					loadContext(t, mem, sid) // cache the empty window, so saves update it
				}
				var wg sync.WaitGroup
				var ok atomic.Int32
				start := make(chan struct{})
				for g := range goroutines {
					wg.Go(func() {
						<-start
						for i := range saves {
							if assert.NoError(t, save(ctx, sid, driver.Turn{User: fmt.Sprint(g, "-", i), Agent: "a"})) {
								ok.Add(1)
							}
						}
					})
				}
				close(start)
				testutil.Wait(t, &wg, 60*time.Second)
				require.EqualValues(t, goroutines*saves, ok.Load(), "successful saves")

				w := loadWindow(t, b, sid, 100)
				assert.Equal(t, goroutines*saves, w.TurnCount)
				require.Len(t, w.Turns, goroutines*saves)
				ids := map[string]bool{}
				for _, turn := range w.Turns {
					ids[turn.ID] = true
				}
				assert.Len(t, ids, goroutines*saves, "distinct turn IDs")
				per := assertPerGoroutineOrder(t, w.Turns)
				assert.Equal(t, map[int]int{0: saves, 1: saves, 2: saves}, per, "turns per goroutine")
				checkSession(t, b, sid, goroutines*saves, 2)
				if via == "memory" {
					assert.Equal(t, loadWindow(t, b, sid, 5), loadContext(t, mem, sid), "cached window differs from read-through")
				}
			})
		}
	})
}

// Goroutines racing to save the same turn IDs on one session store each ID
// once, with no gap in the sequence.
func TestDataFlowBackendConcurrentDuplicates(t *testing.T) {
	const goroutines, ids = 8, 12
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range goroutines {
			wg.Go(func() {
				<-start
				for i := range ids {
					assert.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: fmt.Sprint("id-", i), User: fmt.Sprint(g, "-", i)}))
				}
			})
		}
		close(start)
		testutil.Wait(t, &wg, 60*time.Second)
		checkSession(t, b, "s", ids, 1)
		w := loadWindow(t, b, "s", 100)
		for i, turn := range w.Turns {
			assert.Equal(t, fmt.Sprint("id-", i), turn.ID, "turn %d", i)
			_, gi := parseGI(t, turn.User)
			assert.Equal(t, i, gi, "turn %d holds another save's text", i)
		}
	})
}

// 16 goroutines on sessions of their own and 16 on one shared session,
// saving and reading: no errors, exact counts, and every read consistent.
func TestDataFlowBackendConcurrentMixed(t *testing.T) {
	const solo, shared, saves, maxTurns = 16, 16, 6, 4
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		var wg sync.WaitGroup
		var saved, loads atomic.Int64
		start := make(chan struct{})
		worker := func(g int, sid string) {
			<-start
			for i := range saves {
				if !assert.NoError(t, storeTurn(ctx, b, sid, driver.Turn{User: fmt.Sprint(g, "-", i), Agent: "a"})) {
					return
				}
				saved.Add(1)
				w, err := readWindow(ctx, b, sid, maxTurns)
				if !assert.NoError(t, err) {
					return
				}
				loads.Add(1)
				// A read is one snapshot: the window matches the count.
				assert.Len(t, w.Turns, min(w.TurnCount, maxTurns), "window of %s", sid)
				if sid != "shared" {
					assert.Equal(t, i+1, w.TurnCount, "count of %s after %d saves", sid, i+1)
				} else {
					assert.GreaterOrEqual(t, w.TurnCount, i+1, "count of shared after my %d saves", i+1)
				}
			}
		}
		for g := range solo {
			wg.Go(func() { worker(g, fmt.Sprint("solo-", g)) })
		}
		for g := range shared {
			wg.Go(func() { worker(solo+g, "shared") })
		}
		close(start)
		testutil.Wait(t, &wg, 120*time.Second)
		require.EqualValues(t, (solo+shared)*saves, saved.Load(), "successful saves")
		require.EqualValues(t, (solo+shared)*saves, loads.Load(), "successful loads")

		for g := range solo {
			checkSession(t, b, fmt.Sprint("solo-", g), saves, 2)
		}
		checkSession(t, b, "shared", shared*saves, 2)
		w := loadWindow(t, b, "shared", 1000)
		require.Len(t, w.Turns, shared*saves)
		per := assertPerGoroutineOrder(t, w.Turns)
		assert.Len(t, per, shared)
		for g, n := range per {
			assert.Equal(t, saves, n, "turns of goroutine %d", g)
		}
		assert.Equal(t, [2]int{solo + 1, 2 * (solo + shared) * saves}, tableCounts(t, b))
	})
}

// Concurrent saves and clears of one session leave it consistent: the
// count, the sequence numbers and the message rows agree.
func TestDataFlowBackendConcurrentSaveAndClear(t *testing.T) {
	const savers, saves, clears = 4, 25, 15
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "warm"})) // create the tables
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range savers {
			wg.Go(func() {
				<-start
				for i := range saves {
					assert.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: fmt.Sprint(g, "-", i)}))
				}
			})
		}
		wg.Go(func() {
			<-start
			for range clears {
				assert.NoError(t, b.ClearSession(ctx, "s"))
				time.Sleep(time.Millisecond)
			}
		})
		close(start)
		testutil.Wait(t, &wg, 60*time.Second)

		w := loadWindow(t, b, "s", 1000)
		t.Logf("%d turns left after the clears", w.TurnCount)
		assert.Len(t, w.Turns, w.TurnCount, "turns the window shows vs the count")
		checkSession(t, b, "s", w.TurnCount, 1)
		assertPerGoroutineOrder(t, w.Turns)

		// A window never shows turns that the count does not include.
		for _, n := range []int{1, 3} {
			small := loadWindow(t, b, "s", n)
			assert.Len(t, small.Turns, min(n, w.TurnCount))
		}
	})
}

// Random concurrent saves (some retrying IDs), loads and clears through one
// PersistentBufferMemory: afterwards each session's cached window equals a
// read-through by a fresh backend on the same database.
func TestPersistentMemoryOverDataFlowCacheEqualsReadThrough(t *testing.T) {
	const (
		goroutines = 8
		ops        = 40
		maxTurns   = 4
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	sessions := []string{"s0", "s1", "s2"}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := d.URL(t)
		db, _ := openDB(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		m := newMemory(t, b, memory.WithMaxTurns(maxTurns), memory.WithCacheTTL(time.Hour))

		var wg sync.WaitGroup
		for g := range goroutines {
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			wg.Go(func() {
				for i := range ops {
					id := sessions[rng.IntN(len(sessions))]
					var err error
					switch p := rng.IntN(100); {
					case p < 40:
						err = m.SaveTurn(ctx, id, driver.Turn{User: fmt.Sprint(g, "-", i), Metadata: map[string]any{"g": g, "i": i}})
					case p < 55:
						err = m.SaveTurn(ctx, id, driver.Turn{ID: fmt.Sprint("retry-", rng.IntN(5)), User: fmt.Sprint(g, "-", i)})
					case p < 97:
						var w driver.Window
						w, err = m.LoadContext(ctx, id)
						if err == nil && len(w.Turns) != min(w.TurnCount, maxTurns) {
							err = fmt.Errorf("window of %d turns for a count of %d", len(w.Turns), w.TurnCount)
						}
					default:
						err = m.Clear(ctx, id)
					}
					if err != nil {
						t.Errorf("goroutine %d op %d on %s: %v", g, i, id, err)
						return
					}
				}
			})
		}
		testutil.Wait(t, &wg, 120*time.Second)

		freshDB, _ := openDB(t, url)
		fresh, err := NewDataFlowBackend(freshDB)
		require.NoError(t, err)
		hits := 0
		for _, id := range sessions {
			want := loadWindow(t, fresh, id, maxTurns)
			before := m.Stats().Hits
			got := loadContext(t, m, id)
			if m.Stats().Hits > before {
				hits++ // served from the cache
			}
			assert.Equal(t, want, got, "session %s: cached window differs from a fresh read-through", id)
			checkSession(t, fresh, id, want.TurnCount, 1)
		}
		t.Logf("%d of %d sessions compared from the cache", hits, len(sessions))
		// Make sure at least one comparison was of a cached window: load
		// every session once more (now cached), save, and compare again.
		for _, id := range sessions {
			loadContext(t, m, id)
			require.NoError(t, m.SaveTurn(ctx, id, driver.Turn{User: "last"}))
			before := m.Stats().Hits
			got := loadContext(t, m, id)
			require.Equal(t, before+1, m.Stats().Hits, "session %s: not served from the cache", id)
			assert.Equal(t, loadWindow(t, fresh, id, maxTurns), got, "session %s: cached window after a save", id)
		}
	})
}

// After a restart (a new memory over a new backend and DB on the same
// database), a SaveTurn before any LoadContext must not hide older history.
func TestPersistentMemoryOverDataFlowRestart(t *testing.T) {
	const maxTurns = 3
	tests := []struct {
		name       string
		before     int  // turns saved before the restart
		explicitID bool // the first save after the restart has a caller-chosen ID
		retryOld   bool // ... and it is the ID of a turn saved before
	}{
		{"generated ID", 5, false, false},
		{"explicit new ID", 5, true, false},
		{"retry of a turn from before", 5, true, true},
		{"short history", 1, false, false},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := d.URL(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				sid := "restart-" + tt.name
				db1, _ := openDB(t, url)
				b1, err := NewDataFlowBackend(db1)
				require.NoError(t, err)
				m1 := newMemory(t, b1, memory.WithMaxTurns(maxTurns), memory.WithCacheTTL(time.Hour))
				for i := range tt.before {
					require.NoError(t, m1.SaveTurn(ctx, sid, driver.Turn{ID: fmt.Sprint("old-", i), User: fmt.Sprint("old", i)}))
				}
				loadContext(t, m1, sid)
				require.NoError(t, db1.Close())

				db2, _ := openDB(t, url)
				b2, err := NewDataFlowBackend(db2)
				require.NoError(t, err)
				m2 := newMemory(t, b2, memory.WithMaxTurns(maxTurns), memory.WithCacheTTL(time.Hour))
				turn := driver.Turn{User: "new"}
				wantCount := tt.before + 1
				if tt.explicitID {
					turn.ID = "new-id"
				}
				if tt.retryOld {
					turn.ID = "old-0"
					wantCount = tt.before
				}
				require.NoError(t, m2.SaveTurn(ctx, sid, turn))
				w := loadContext(t, m2, sid)
				assert.Equal(t, wantCount, w.TurnCount, "the older history is hidden")
				assert.Equal(t, loadWindow(t, b2, sid, maxTurns), w)
				if !tt.retryOld {
					var want []string
					for i := max(0, tt.before-maxTurns+1); i < tt.before; i++ {
						want = append(want, fmt.Sprint("old", i))
					}
					assert.Equal(t, append(want, "new"), users(w))
				}
				// Now cached: a second save appends to the full window.
				require.NoError(t, m2.SaveTurn(ctx, sid, driver.Turn{User: "newer"}))
				w = loadContext(t, m2, sid)
				assert.Equal(t, wantCount+1, w.TurnCount)
				assert.Equal(t, loadWindow(t, b2, sid, maxTurns), w)
			})
		}
	})
}
