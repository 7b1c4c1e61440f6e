package memory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/testutil"
	"github.com/turnkeep/turnkeep/memory"
)

const maxTurns = 3

// load calls LoadContext and fails the test on error.
func load(t testing.TB, m memory.Memory, sessionID string) memory.Window {
	t.Helper()
	w, err := m.LoadContext(context.Background(), sessionID)
	require.NoError(t, err)
	return w
}

func save(t testing.TB, m memory.Memory, sessionID string, turn memory.Turn) {
	t.Helper()
	require.NoError(t, m.SaveTurn(context.Background(), sessionID, turn))
}

// requireCacheConsistent checks that the cached window of the session, if
// any, equals a read-through.
func requireCacheConsistent(t testing.TB, m *memory.PersistentBufferMemory, b driver.Backend, sessionID string) {
	t.Helper()
	if w, ok := memory.CachedWindow(m, sessionID); ok {
		require.Equal(t, readThrough(t, b, sessionID, maxTurns), w, "cache differs from read-through")
	}
}

// A hit still asks the backend, in one check that reads no turns (see
// recordingBackend); the window itself comes from the cache.
func TestPersistentCachesWindow(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	require.NoError(t, storeTurn(ctx, b.InMemoryBackend, "s", memory.Turn{User: "u0", Metadata: map[string]any{"n": 0}}))

	w := load(t, m, "s")
	assert.Equal(t, int64(1), b.loads.Load())
	assert.Equal(t, memory.CacheStats{Misses: 1}, m.Stats())
	assert.Equal(t, w, load(t, m, "s"))
	assert.Equal(t, int64(1), b.loads.Load(), "second load read the window again")
	assert.Equal(t, int64(1), b.checks.Load(), "second load was not confirmed with the backend")
	assert.Equal(t, memory.CacheStats{Hits: 1, Misses: 1}, m.Stats())

	for i := 1; i < 5; i++ {
		save(t, m, "s", memory.Turn{User: fmt.Sprint("u", i), Metadata: map[string]any{"n": i}})
		requireCacheConsistent(t, m, b.InMemoryBackend, "s")
	}
	w = load(t, m, "s")
	assert.Equal(t, int64(1), b.loads.Load(), "saves on a cached session must update the cache, not drop it")
	assert.Equal(t, memory.CacheStats{Hits: 2, Misses: 1}, m.Stats())
	assert.Equal(t, 5, w.TurnCount)
	assert.Equal(t, []string{"u2", "u3", "u4"}, users(w))
	assert.Equal(t, readThrough(t, b.InMemoryBackend, "s", maxTurns), w)

	w.Turns[0].User = "corrupted"
	assert.Equal(t, "u2", load(t, m, "s").Turns[0].User, "caller changed the cache")
}

// WithCacheTTL bounds how long a window the backend has not confirmed is
// kept. (It used to bound how long other processes' writes could go unseen;
// loads now confirm every hit, so those are seen at once: see
// coherence_test.go.)
func TestPersistentTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Minute
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns), memory.WithCacheTTL(ttl))
	clock := testutil.NewClock()
	memory.SetClock(m, clock.Now)
	require.NoError(t, storeTurn(ctx, b.InMemoryBackend, "s", memory.Turn{User: "u0"}))
	assert.Equal(t, 1, load(t, m, "s").TurnCount)
	require.Equal(t, int64(1), b.loads.Load())

	// Each confirmed hit renews the window: it outlives the TTL.
	for range 3 {
		clock.Advance(ttl - time.Nanosecond)
		assert.Equal(t, 1, load(t, m, "s").TurnCount)
	}
	assert.Equal(t, int64(1), b.loads.Load(), "a confirmed window expired")
	assert.Equal(t, int64(3), b.checks.Load())

	// Another process writes: seen at once, TTL or not.
	require.NoError(t, storeTurn(ctx, b.InMemoryBackend, "s", memory.Turn{User: "other"}))
	assert.Equal(t, 2, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(2), b.loads.Load())
	assert.Equal(t, uint64(1), m.Stats().Stale)

	// Unconfirmed for the TTL, the window expires: the load reads it whole.
	clock.Advance(ttl)
	assert.Equal(t, 2, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(3), b.loads.Load())
	assert.Equal(t, uint64(1), m.Stats().Evictions)

	// A save on an expired window drops it instead of extending it.
	clock.Advance(ttl)
	save(t, m, "s", memory.Turn{User: "u2"})
	_, cached := memory.CachedWindow(m, "s")
	assert.False(t, cached)
	assert.Equal(t, 3, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(4), b.loads.Load())
}

func TestPersistentTTLZeroReadsThrough(t *testing.T) {
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns), memory.WithCacheTTL(0))
	for i := range 3 {
		save(t, m, "s", memory.Turn{User: fmt.Sprint("u", i)})
		w := load(t, m, "s")
		assert.Equal(t, i+1, w.TurnCount)
		assert.Equal(t, int64(i+1), b.loads.Load())
	}
	windows, entries := memory.CachedSessions(m)
	assert.Zero(t, windows)
	assert.Zero(t, entries)
	require.NoError(t, m.Clear(context.Background(), "s"))
	assert.Zero(t, load(t, m, "s").TurnCount)
}

func TestPersistentLRU(t *testing.T) {
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxCachedSessions(2))
	// Stored behind the memory's back: a save through it would cache the
	// one-turn window (see TestPersistentFirstSaveCaches).
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, storeTurn(context.Background(), b.InMemoryBackend, id, memory.Turn{User: id}))
	}
	loadsOf := func() int64 { return b.loads.Load() } // whole windows read; hits only check

	load(t, m, "a")
	load(t, m, "b")
	load(t, m, "a") // hit; a is now the most recently used
	require.Equal(t, int64(2), loadsOf())
	load(t, m, "c") // evicts b
	require.Equal(t, int64(3), loadsOf())
	windows, entries := memory.CachedSessions(m)
	assert.Equal(t, 2, windows)
	assert.Equal(t, 2, entries, "evicted entries must not leak")

	load(t, m, "a")
	assert.Equal(t, int64(3), loadsOf(), "a should still be cached")
	load(t, m, "b")
	assert.Equal(t, int64(4), loadsOf(), "b should have been evicted")
	_, cached := memory.CachedWindow(m, "c")
	assert.False(t, cached, "c should have been evicted by b")
	assert.Equal(t, memory.CacheStats{Hits: 2, Misses: 4, Evictions: 2}, m.Stats())
}

func TestPersistentSaveErrorDropsCache(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	save(t, m, "s", memory.Turn{User: "u0"})
	before := load(t, m, "s")
	_, ok := memory.CachedWindow(m, "s")
	require.True(t, ok, "precondition: the window is cached")
	require.Zero(t, b.loads.Load(), "precondition: the first save cached the window")

	boom := errors.New("boom")
	b.fail(boom, nil, nil)
	err := m.SaveTurn(ctx, "s", memory.Turn{User: "refused"})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "save turn")
	b.fail(nil, nil, nil)

	// The window is dropped, not kept: the cache never holds the refused
	// turn, and after a failure whose outcome is unknown (a connection lost
	// during COMMIT) the next load reads what was really stored.
	_, ok = memory.CachedWindow(m, "s")
	require.False(t, ok, "a failed save must drop the window")
	assert.Equal(t, before, load(t, m, "s"))
	assert.Equal(t, int64(1), b.loads.Load(), "the load after a failed save must read the window whole")
	assert.Equal(t, uint64(1), m.Stats().Invalidations)
}

func TestPersistentLoadErrorCachesNothing(t *testing.T) {
	b := newRecordingBackend()
	m := newPersistent(t, b)
	boom := errors.New("boom")
	b.fail(nil, boom, nil)
	_, err := m.LoadContext(context.Background(), "s")
	require.ErrorIs(t, err, boom)
	windows, entries := memory.CachedSessions(m)
	assert.Zero(t, windows)
	assert.Zero(t, entries)
}

// A save on a session that is not cached must not create a window that
// hides the history the backend already holds.
func TestPersistentSaveUncachedKeepsHistory(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	for i := range 5 {
		require.NoError(t, storeTurn(ctx, b.InMemoryBackend, "s", memory.Turn{User: fmt.Sprint("old", i)}))
	}
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	save(t, m, "s", memory.Turn{User: "new"})

	w := load(t, m, "s")
	assert.Equal(t, 6, w.TurnCount)
	assert.Equal(t, []string{"old3", "old4", "new"}, users(w))
	assert.Equal(t, readThrough(t, b.InMemoryBackend, "s", maxTurns), w)
}

func TestPersistentIdempotentSave(t *testing.T) {
	type kind int
	const (
		versioned kind = iota // recordingBackend: versions its sessions
		storer                // unversioned: says whether a save stored, no versions
		plain                 // saveOnly: neither
	)
	stale := []memory.Option{memory.WithStaleReads(time.Hour)}
	tests := []struct {
		name      string
		kind      kind
		opts      []memory.Option
		prefill   int    // turns saved through the memory before the window is loaded
		resave    string // ID saved twice after the load
		wantCount int
		wantLoads int64 // whole windows read, including the first load
	}{
		// A versioned backend reports whether it stored the turn and the
		// version it moved to: the window stays cached and exact whether
		// the ID is in it, left it, or is new. (The first save cached the
		// window, so even the first load is a hit.)
		{"in window", versioned, nil, 2, "t1", 2, 0},
		{"new ID, whole session cached", versioned, nil, 2, "fresh", 3, 0},
		{"ID outside window", versioned, nil, 5, "t0", 5, 0},
		{"new ID outside window", versioned, nil, 5, "fresh", 6, 0},
		// Stored without versions, under WithStaleReads: a save that
		// stored nothing keeps the window; one that stored drops it, since
		// nothing proves the window was the session's newest state.
		{"in window, storer", storer, stale, 2, "t1", 2, 1},
		{"ID outside window, storer", storer, stale, 5, "t0", 5, 1},
		{"new ID outside window, storer", storer, stale, 5, "fresh", 6, 2},
		// A plain Backend says nothing of what a save did: every save
		// drops the window. (The memory used to look the ID up in its
		// window itself; that shortcut is gone.)
		{"in window, save only", plain, stale, 2, "t1", 2, 2},
		{"new ID outside window, save only", plain, stale, 5, "fresh", 6, 2},
		// Neither versioned nor WithStaleReads: nothing is cached.
		{"in window, storer, no stale reads", storer, nil, 2, "t1", 2, 2},
		{"in window, save only, no stale reads", plain, nil, 2, "t1", 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newRecordingBackend()
			var mb driver.Backend = b
			switch tt.kind {
			case storer:
				mb = unversioned{b}
			case plain:
				mb = newSaveOnly(b)
			}
			m := newPersistent(t, mb, append([]memory.Option{memory.WithMaxTurns(maxTurns)}, tt.opts...)...)
			for i := range tt.prefill {
				save(t, m, "s", memory.Turn{ID: fmt.Sprint("t", i), User: fmt.Sprint("u", i)})
			}
			load(t, m, "s")
			save(t, m, "s", memory.Turn{ID: tt.resave, User: "again"})
			save(t, m, "s", memory.Turn{ID: tt.resave, User: "and again"})
			requireCacheConsistent(t, m, b.InMemoryBackend, "s")

			w := load(t, m, "s")
			assert.Equal(t, tt.wantCount, w.TurnCount)
			assert.Equal(t, readThrough(t, b.InMemoryBackend, "s", maxTurns), w)
			assert.Equal(t, tt.wantLoads, b.loads.Load(), "whole windows read")
			st := m.Stats()
			assert.Equal(t, uint64(2), st.Hits+st.Misses, "every load counts as a hit or a miss")
			assert.Equal(t, uint64(tt.wantLoads), st.Misses)
		})
	}
}

// Turns with generated IDs are appended to a cached window however long the
// session is.
func TestPersistentGeneratedIDsStayCached(t *testing.T) {
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	require.NoError(t, storeTurn(context.Background(), b.InMemoryBackend, "s", memory.Turn{User: "u"}))
	load(t, m, "s")
	require.Equal(t, int64(1), b.loads.Load())
	for range 10 {
		save(t, m, "s", memory.Turn{User: "u"})
	}
	assert.Equal(t, 11, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(1), b.loads.Load(), "a save dropped the window")
	assert.Equal(t, memory.CacheStats{Hits: 1, Misses: 1}, m.Stats())
	requireCacheConsistent(t, m, b.InMemoryBackend, "s")
}

// The first turn of a session is the whole session: its save caches it,
// whatever window was cached before (another process may have cleared the
// session).
func TestPersistentFirstSaveCaches(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	save(t, m, "s", memory.Turn{User: "first"})
	requireCacheConsistent(t, m, b.InMemoryBackend, "s")
	assert.Equal(t, []string{"first"}, users(load(t, m, "s")))
	assert.Zero(t, b.loads.Load(), "the first save did not cache the session")

	for range 2 {
		save(t, m, "s", memory.Turn{User: "more"})
	}
	require.NoError(t, b.InMemoryBackend.ClearSession(ctx, "s")) // another process
	save(t, m, "s", memory.Turn{User: "again"})
	w, ok := memory.CachedWindow(m, "s")
	require.True(t, ok)
	assert.Equal(t, memory.Window{Turns: w.Turns, TurnCount: 1, Tokens: w.Turns[0].Tokens()}, w)
	assert.Equal(t, []string{"again"}, users(w))
	requireCacheConsistent(t, m, b.InMemoryBackend, "s")
	assert.Equal(t, w, load(t, m, "s"))
	assert.Zero(t, b.loads.Load())
}

// A backend that does not version its sessions (it reports UnknownVersion)
// cannot confirm a window: without
// WithStaleReads nothing is cached and every load reads through; with it,
// windows are cached and every save that stores a turn drops the window.
func TestPersistentUnversionedBackend(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		wrap func(*recordingBackend) driver.Backend
	}{
		{"storer", func(b *recordingBackend) driver.Backend { return unversioned{b} }},
		{"save only", func(b *recordingBackend) driver.Backend { return newSaveOnly(b) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mb := tt.wrap(newRecordingBackend())
			_, err := mb.Save(ctx, "s", driver.PreparedTurn{Turn: memory.Turn{User: "u"}})
			require.NoError(t, err)
			_, v, err := mb.Load(ctx, "s", driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion})
			require.NoError(t, err)
			require.Equal(t, driver.UnknownVersion, v, "precondition: the wrapper hides the versions")

			t.Run("no stale reads", func(t *testing.T) {
				b := newRecordingBackend()
				m := newPersistent(t, tt.wrap(b), memory.WithMaxTurns(maxTurns))
				for i := range 4 {
					save(t, m, "s", memory.Turn{User: fmt.Sprint("u", i)})
					for range 2 {
						assert.Equal(t, readThrough(t, b.InMemoryBackend, "s", maxTurns), load(t, m, "s"))
					}
					windows, entries := memory.CachedSessions(m)
					require.Zero(t, windows+entries, "something was cached")
				}
				assert.Equal(t, int64(8), b.loads.Load(), "a load did not reach LoadWindow")
				assert.Zero(t, b.checks.Load())
				assert.Equal(t, memory.CacheStats{Misses: 8}, m.Stats())
				// So another process's write is seen at once.
				require.NoError(t, storeTurn(ctx, b.InMemoryBackend, "s", memory.Turn{User: "other"}))
				assert.Equal(t, 5, load(t, m, "s").TurnCount)
			})

			t.Run("stale reads", func(t *testing.T) {
				b := newRecordingBackend()
				m := newPersistent(t, tt.wrap(b), memory.WithMaxTurns(maxTurns), memory.WithStaleReads(time.Hour))
				for i := range 4 {
					save(t, m, "s", memory.Turn{User: fmt.Sprint("u", i)})
					_, cached := memory.CachedWindow(m, "s")
					require.False(t, cached, "save %d kept a window it cannot prove current", i)
					before := b.loads.Load()
					want := readThrough(t, b.InMemoryBackend, "s", maxTurns)
					assert.Equal(t, want, load(t, m, "s"))
					assert.Equal(t, before+1, b.loads.Load(), "the load after a save did not read through")
					assert.Equal(t, want, load(t, m, "s"))
					assert.Equal(t, before+1, b.loads.Load(), "the second load was not served from the cache")
				}
				assert.Equal(t, memory.CacheStats{Hits: 4, Misses: 4, Stale: 3}, m.Stats())
			})
		})
	}
}

func TestPersistentClear(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	m := newPersistent(t, b)
	save(t, m, "s", memory.Turn{User: "u"})
	load(t, m, "s")

	require.NoError(t, m.Clear(ctx, "s"))
	assert.Equal(t, memory.Window{}, load(t, m, "s"))
	_, err := b.SessionInfo(ctx, "s")
	assert.ErrorIs(t, err, memory.ErrSessionNotFound)

	// A failed clear may or may not have cleared: the cache must not guess.
	save(t, m, "s", memory.Turn{User: "u"})
	load(t, m, "s")
	boom := errors.New("boom")
	b.fail(nil, nil, boom)
	require.ErrorIs(t, m.Clear(ctx, "s"), boom)
	b.fail(nil, nil, nil)
	_, cached := memory.CachedWindow(m, "s")
	assert.False(t, cached)
}

// InvalidateCache is never needed for correctness in the default mode (loads
// confirm every hit; see coherence_test.go), so this shows it under
// WithStaleReads, where another process's write is unseen until it is used.
func TestPersistentInvalidateCache(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithStaleReads(time.Hour))
	save(t, m, "s", memory.Turn{User: "u"})
	load(t, m, "s")
	require.NoError(t, storeTurn(ctx, b.InMemoryBackend, "s", memory.Turn{User: "other"}))
	assert.Equal(t, 1, load(t, m, "s").TurnCount)
	assert.Zero(t, b.loads.Load()+b.checks.Load(), "a stale read reached the backend")

	m.InvalidateCache("s")
	m.InvalidateCache("never-loaded")
	assert.Equal(t, 2, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(1), b.loads.Load())
	assert.Equal(t, uint64(1), m.Stats().Invalidations)
}

// gatedBackend blocks every call until release is closed.
type gatedBackend struct {
	*recordingBackend
	entered chan struct{} // receives once per call
	release chan struct{}
}

func (b *gatedBackend) wait(ctx context.Context) error {
	b.entered <- struct{}{}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *gatedBackend) Load(ctx context.Context, id string, q driver.WindowQuery) (memory.Window, driver.Version, error) {
	if err := b.wait(ctx); err != nil {
		return memory.Window{}, 0, err
	}
	return b.recordingBackend.Load(ctx, id, q)
}

func (b *gatedBackend) Save(ctx context.Context, id string, t driver.PreparedTurn) (driver.Saved, error) {
	if err := b.wait(ctx); err != nil {
		return driver.Saved{}, err
	}
	return b.recordingBackend.Save(ctx, id, t)
}

func (b *gatedBackend) Append(ctx context.Context, id, turnID string, msgs []driver.PreparedMessage) (driver.Saved, error) {
	if err := b.wait(ctx); err != nil {
		return driver.Saved{}, err
	}
	return b.recordingBackend.Append(ctx, id, turnID, msgs)
}

func newGatedBackend() *gatedBackend {
	return &gatedBackend{recordingBackend: newRecordingBackend(), entered: make(chan struct{}, 100), release: make(chan struct{})}
}

// Concurrent misses on one session all return what the backend holds, and
// leave one window cached. (They used to be serialized behind one read;
// loads now take no session lock, so each may read: only the outcome is
// asserted, and the count of reads is logged.)
func TestPersistentConcurrentMissesAgree(t *testing.T) {
	b := newGatedBackend()
	require.NoError(t, storeTurn(context.Background(), b.InMemoryBackend, "s", memory.Turn{User: "u"}))
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	want := readThrough(t, b.InMemoryBackend, "s", maxTurns)
	const callers = 20
	var wg sync.WaitGroup
	var done atomic.Int64
	for range callers {
		wg.Go(func() {
			w, err := m.LoadContext(context.Background(), "s")
			assert.NoError(t, err)
			assert.Equal(t, want, w)
			done.Add(1)
		})
	}
	<-b.entered // one caller is reading through
	assert.Zero(t, done.Load(), "a load returned before the backend answered")
	close(b.release)
	testutil.Wait(t, &wg, 10*time.Second)
	assert.Equal(t, int64(callers), done.Load())
	reads := b.loads.Load()
	t.Logf("%d concurrent misses read the window %d times", callers, reads)
	assert.True(t, reads >= 1 && reads <= callers, "got %d reads; want 1 to %d", reads, callers)

	requireCacheConsistent(t, m, b.InMemoryBackend, "s")
	windows, entries := memory.CachedSessions(m)
	assert.Equal(t, 1, windows)
	assert.Equal(t, 1, entries, "pinned entries leaked")
	load(t, m, "s")
	assert.Equal(t, reads, b.loads.Load(), "the window was not cached")
}

// A caller waiting for a session that another caller is writing gives up
// when its context ends. Only writes (SaveTurn, Clear) take the session
// lock: a load is not queued behind a slow save but goes to the backend,
// and honors its context there.
func TestPersistentWaitHonorsContext(t *testing.T) {
	b := newGatedBackend()
	m := newPersistent(t, b)
	go func() { _ = m.SaveTurn(context.Background(), "s", memory.Turn{User: "slow"}) }()
	<-b.entered

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, m.SaveTurn(ctx, "s", memory.Turn{User: "u"}), context.DeadlineExceeded)
	require.ErrorIs(t, m.Clear(ctx, "s"), context.DeadlineExceeded)
	assert.Empty(t, b.entered, "a writer that gave up reached the backend")

	// A fresh deadline: LoadContext refuses a done context before anything.
	lctx, lcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer lcancel()
	_, err := m.LoadContext(lctx, "s")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Len(t, b.entered, 1, "the load did not reach the backend")
	<-b.entered

	close(b.release)
	assert.Eventually(t, func() bool { return load(t, m, "s").TurnCount == 1 }, 5*time.Second, time.Millisecond)
}

// A zero or nil PersistentBufferMemory fails with ErrClosed; it never
// panics.
func TestPersistentZeroValue(t *testing.T) {
	ctx := context.Background()
	var zero memory.PersistentBufferMemory
	var nilMem *memory.PersistentBufferMemory
	for name, m := range map[string]*memory.PersistentBufferMemory{"zero": &zero, "nil": nilMem} {
		t.Run(name, func(t *testing.T) {
			assert.ErrorIs(t, m.SaveTurn(ctx, "s", memory.Turn{User: "u"}), memory.ErrClosed)
			_, err := m.LoadContext(ctx, "s")
			assert.ErrorIs(t, err, memory.ErrClosed)
			assert.ErrorIs(t, m.Clear(ctx, "s"), memory.ErrClosed)
			assert.NotPanics(t, func() { m.InvalidateCache("s") })
			assert.Equal(t, memory.CacheStats{}, m.Stats())
			assert.NoError(t, m.Close())
		})
	}
}

// After Close every method returns ErrClosed, without reaching the backend
// or answering from the cache, even under WithStaleReads.
func TestPersistentClose(t *testing.T) {
	ctx := context.Background()
	for _, opts := range [][]memory.Option{nil, {memory.WithStaleReads(time.Hour)}} {
		t.Run(fmt.Sprint(len(opts), " options"), func(t *testing.T) {
			b := newRecordingBackend()
			m := newPersistent(t, b, opts...)
			save(t, m, "s", memory.Turn{User: "u"})
			load(t, m, "s")
			_, cached := memory.CachedWindow(m, "s")
			require.True(t, cached, "precondition: the window is cached")
			calls, stats := b.calls(), m.Stats()

			require.NoError(t, m.Close())
			assert.ErrorIs(t, m.SaveTurn(ctx, "s", memory.Turn{User: "u"}), memory.ErrClosed)
			w, err := m.LoadContext(ctx, "s")
			assert.ErrorIs(t, err, memory.ErrClosed)
			assert.Equal(t, memory.Window{}, w)
			assert.ErrorIs(t, m.Clear(ctx, "s"), memory.ErrClosed)
			m.InvalidateCache("s")
			assert.NoError(t, m.Close(), "a second Close")

			assert.Equal(t, calls, b.calls(), "a closed memory reached the backend")
			assert.Equal(t, stats, m.Stats(), "a closed memory served a load")
			windows, entries := memory.CachedSessions(m)
			assert.Zero(t, windows+entries, "Close kept cached windows")
			assert.Equal(t, 1, readThrough(t, b.InMemoryBackend, "s", maxTurns).TurnCount, "Close changed the store")
		})
	}
}
