package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/testutil"
	"github.com/turnkeep/turnkeep/memory"
)

// Two PersistentBufferMemory values over one store stand for two app
// servers sharing a database. In the default mode each shows every write
// either has finished; under WithStaleReads(d) the other server's writes may
// go unseen for up to d, never a server's own.

// twoServers returns two memories over one in-memory store. Only maxTurns is
// set (small, so windows are trimmed); the cache options are the defaults.
func twoServers(t *testing.T, opts ...memory.Option) (a, b *memory.PersistentBufferMemory, store *recordingBackend) {
	t.Helper()
	store = newRecordingBackend()
	opts = append([]memory.Option{memory.WithMaxTurns(maxTurns)}, opts...)
	return newPersistent(t, store, opts...), newPersistent(t, store, opts...), store
}

// Random saves (some retrying an ID the other server may have stored),
// loads and clears alternate between two servers; after every operation
// both servers' windows equal a read-through, and a save never leaves its
// server a window the store does not hold.
func TestTwoServersNeverStale(t *testing.T) {
	const ops = 400
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	ctx := context.Background()
	a, b, store := twoServers(t)
	servers := []*memory.PersistentBufferMemory{a, b}
	names := []string{"A", "B"}
	sessions := []string{"s0", "s1", "s2"}
	truth := func(id string) memory.Window { return readThrough(t, store.InMemoryBackend, id, maxTurns) }
	var staleSaves, hits int

	for i := range ops {
		x := rng.IntN(2)
		m, id := servers[x], sessions[rng.IntN(len(sessions))]
		where := fmt.Sprintf("seed %d op %d: %s on %s", seed, i, names[x], id)
		switch p := rng.IntN(100); {
		case p < 50:
			turn := memory.Turn{User: fmt.Sprint(names[x], i), Metadata: map[string]any{"op": i}}
			if p < 12 {
				turn.ID = fmt.Sprint("dup-", rng.IntN(4)) // a retry, maybe of the other server's turn
			}
			before := truth(id)
			cachedBefore, wasCached := memory.CachedWindow(m, id)
			if wasCached && !assert.ObjectsAreEqual(before, cachedBefore) {
				staleSaves++
			}
			require.NoError(t, m.SaveTurn(ctx, id, turn), where)
			after := truth(id)
			cached, ok := memory.CachedWindow(m, id)
			switch {
			case after.TurnCount == before.TurnCount: // the ID was stored already: nothing changed
				require.Equal(t, wasCached, ok, "%s: a save that stored nothing changed the cache", where)
				if ok {
					require.Equal(t, cachedBefore, cached, "%s: a save that stored nothing changed the window", where)
				}
			case ok:
				require.Equal(t, after, cached, "%s: save left a window the store never held", where)
			}
		case p < 93:
			w, err := m.LoadContext(ctx, id)
			require.NoError(t, err, where)
			require.Equal(t, truth(id), w, "%s: stale or wrong window", where)
		default:
			require.NoError(t, m.Clear(ctx, id), where)
			_, ok := memory.CachedWindow(m, id)
			require.False(t, ok, "%s: clear kept a window", where)
		}

		// Both servers, on a session picked at random so that windows of
		// the others may go stale (and be saved onto) meanwhile.
		check := sessions[rng.IntN(len(sessions))]
		for j, m := range servers {
			h := m.Stats().Hits
			w, err := m.LoadContext(ctx, check)
			require.NoError(t, err)
			require.Equal(t, truth(check), w, "seed %d after op %d: %s on %s: stale or wrong window", seed, i, names[j], check)
			hits += int(m.Stats().Hits - h)
		}
	}
	t.Logf("%d saves onto a stale window, %d hits; A %+v; B %+v", staleSaves, hits, a.Stats(), b.Stats())
	require.Positive(t, staleSaves, "no save met a stale window; the test proves nothing")
	require.Positive(t, hits, "no load was served from a cache; the test proves nothing")
	require.Positive(t, a.Stats().Stale+b.Stats().Stale)
}

// Both servers cache a window; the other server moves the session; then B
// saves. The backend's answer shows B's window was not the session's newest
// state, so B drops it instead of appending its turn, and its next load
// reads what is stored. Under WithStaleReads B may serve its stale window
// until it writes (the documented trade), never after.
func TestSaveNeverAppendsOntoStaleWindow(t *testing.T) {
	ctx := context.Background()
	moves := []struct {
		name string
		move func(t *testing.T, a *memory.PersistentBufferMemory)
	}{
		{"A saves twice", func(t *testing.T, a *memory.PersistentBufferMemory) {
			save(t, a, "s", memory.Turn{User: "a1"})
			save(t, a, "s", memory.Turn{User: "a2"})
		}},
		{"A saves once", func(t *testing.T, a *memory.PersistentBufferMemory) {
			save(t, a, "s", memory.Turn{User: "a1"})
		}},
		// The count B's window holds is right again; only the version
		// tells the window is not the session's.
		{"A clears and saves as many turns", func(t *testing.T, a *memory.PersistentBufferMemory) {
			require.NoError(t, a.Clear(ctx, "s"))
			save(t, a, "s", memory.Turn{User: "a1"})
			save(t, a, "s", memory.Turn{User: "a2"})
		}},
		// B's turn is the session's first: B's window becomes exactly it.
		{"A clears", func(t *testing.T, a *memory.PersistentBufferMemory) {
			require.NoError(t, a.Clear(ctx, "s"))
		}},
	}
	modes := []struct {
		name string
		opts []memory.Option
	}{
		{"default", nil},
		{"stale reads", []memory.Option{memory.WithStaleReads(time.Hour)}},
	}
	for _, mode := range modes {
		for _, mv := range moves {
			t.Run(mode.name+"/"+mv.name, func(t *testing.T) {
				a, b, store := twoServers(t, mode.opts...)
				save(t, a, "s", memory.Turn{User: "p0"})
				save(t, a, "s", memory.Turn{User: "p1"})
				load(t, a, "s")
				old := load(t, b, "s")
				_, ok := memory.CachedWindow(b, "s")
				require.True(t, ok, "precondition: B caches the window")
				require.Equal(t, 2, old.TurnCount)

				mv.move(t, a)
				if mode.opts != nil {
					// The documented trade: B has not written since, so it
					// may serve its window; it must be the one it had.
					assert.Equal(t, old, load(t, b, "s"), "stale read")
				}

				save(t, b, "s", memory.Turn{User: "b"})
				want := readThrough(t, store.InMemoryBackend, "s", maxTurns)
				if w, ok := memory.CachedWindow(b, "s"); ok {
					require.Equal(t, want, w, "B's save produced a window that never existed")
				}
				got := load(t, b, "s")
				assert.Equal(t, want.TurnCount, got.TurnCount)
				assert.Equal(t, users(want), users(got))
				assert.Equal(t, want, got)
				if mode.opts == nil {
					assert.Equal(t, want, load(t, a, "s"), "A")
				}
			})
		}
	}
}

// A Clear on one server is seen by the other's next load.
func TestClearSeenByOtherServer(t *testing.T) {
	ctx := context.Background()
	a, b, store := twoServers(t)
	for i := range 4 {
		save(t, a, "s", memory.Turn{User: fmt.Sprint("u", i)})
	}
	load(t, a, "s")
	require.Equal(t, 4, load(t, b, "s").TurnCount)
	_, ok := memory.CachedWindow(b, "s")
	require.True(t, ok, "precondition: B caches the window")

	require.NoError(t, a.Clear(ctx, "s"))
	w := load(t, b, "s")
	assert.Equal(t, memory.Window{}, w)
	assert.Zero(t, w.TurnCount)
	assert.Equal(t, uint64(1), b.Stats().Stale, "B did not find its window changed")
	assert.Equal(t, readThrough(t, store.InMemoryBackend, "s", maxTurns), w)
}

// Under WithStaleReads(d), another server's write is unseen by a load less
// than d after the backend last confirmed the window, and seen at d.
func TestStaleReadsBound(t *testing.T) {
	const d = time.Minute
	a, b, store := twoServers(t, memory.WithStaleReads(d))
	clock := testutil.NewClock()
	memory.SetClock(b, clock.Now)
	save(t, a, "s", memory.Turn{User: "u0"})
	require.Equal(t, 1, load(t, b, "s").TurnCount) // confirmed now
	calls := store.loads.Load() + store.checks.Load()

	save(t, a, "s", memory.Turn{User: "u1"})
	clock.Advance(d - time.Nanosecond)
	assert.Equal(t, 1, load(t, b, "s").TurnCount, "within d: B serves its window")
	assert.Equal(t, calls, store.loads.Load()+store.checks.Load(), "a stale read reached the backend")

	clock.Advance(time.Nanosecond)
	w := load(t, b, "s")
	assert.Equal(t, 2, w.TurnCount, "at d: B must ask the backend")
	assert.Equal(t, readThrough(t, store.InMemoryBackend, "s", maxTurns), w)

	// B's own save is seen at once, whatever d.
	save(t, b, "s", memory.Turn{User: "b"})
	assert.Equal(t, []string{"u0", "u1", "b"}, users(load(t, b, "s")))

	_, err := memory.NewPersistentBufferMemory(store, memory.WithStaleReads(-time.Nanosecond))
	assert.ErrorIs(t, err, memory.ErrInvalidOption)
}

// pausingBackend lets a test hold a Load after it has read the store and
// before it returns, to order it against a save.
type pausingBackend struct {
	*recordingBackend
	read   chan struct{} // receives when a paused load has read
	resume chan struct{} // closed to let it return
}

func (b *pausingBackend) Load(ctx context.Context, id string, q driver.WindowQuery) (memory.Window, driver.Version, error) {
	w, v, err := b.recordingBackend.Load(ctx, id, q)
	b.read <- struct{}{}
	<-b.resume
	return w, v, err
}

// A load that read the session before this server's save, and returns
// after it, must not install its older window: the cache must equal the
// store once both return, and under WithStaleReads the next load would
// serve that window and hide the server's own save. (In the default mode the
// next load still reads through, so only the cache would be wrong.) Every
// save bumps the entry's generation, even when it leaves no window, so the
// load's install no longer matches.
func TestOwnSaveNotHiddenByLoadInFlight(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []memory.Option
	}{
		{"default", nil},
		{"stale reads", []memory.Option{memory.WithStaleReads(time.Hour)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			store := &pausingBackend{recordingBackend: newRecordingBackend(), read: make(chan struct{}), resume: make(chan struct{})}
			m := newPersistent(t, store, append([]memory.Option{memory.WithMaxTurns(maxTurns)}, tt.opts...)...)
			// Stored behind m's back: m caches nothing for the session.
			require.NoError(t, storeTurn(ctx, store.InMemoryBackend, "s", memory.Turn{User: "u0"}))

			loaded := make(chan memory.Window, 1)
			go func() {
				w, err := m.LoadContext(ctx, "s")
				assert.NoError(t, err)
				loaded <- w
			}()
			<-store.read                              // the load has read one turn
			save(t, m, "s", memory.Turn{User: "own"}) // saves take no load path: not paused
			close(store.resume)
			assert.Equal(t, 1, (<-loaded).TurnCount, "the paused load returns what it read")

			go func() { // later loads are not paused
				for range store.read {
				}
			}()
			defer close(store.read)
			if w, ok := memory.CachedWindow(m, "s"); ok {
				assert.Equal(t, readThrough(t, store.InMemoryBackend, "s", maxTurns), w, "the cache holds a window older than its own save")
			}
			assert.Equal(t, []string{"u0", "own"}, users(load(t, m, "s")), "the server's own save is hidden")
		})
	}
}
