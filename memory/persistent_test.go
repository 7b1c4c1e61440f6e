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
func requireCacheConsistent(t testing.TB, m *memory.PersistentBufferMemory, b memory.Backend, sessionID string) {
	t.Helper()
	if w, ok := memory.CachedWindow(m, sessionID); ok {
		require.Equal(t, readThrough(t, b, sessionID, maxTurns), w, "cache differs from read-through")
	}
}

func TestPersistentCachesWindow(t *testing.T) {
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	save(t, m, "s", memory.Turn{User: "u0", Metadata: map[string]any{"n": 1}})

	w := load(t, m, "s")
	assert.Equal(t, int64(1), b.loads.Load())
	assert.Equal(t, w, load(t, m, "s"))
	assert.Equal(t, int64(1), b.loads.Load(), "second load was not served from the cache")

	for i := 1; i < 5; i++ {
		save(t, m, "s", memory.Turn{User: fmt.Sprint("u", i), Metadata: map[string]any{"n": i}})
		requireCacheConsistent(t, m, b.InMemoryBackend, "s")
	}
	w = load(t, m, "s")
	assert.Equal(t, int64(1), b.loads.Load(), "saves on a cached session must update the cache, not drop it")
	assert.Equal(t, 5, w.TurnCount)
	assert.Equal(t, []string{"u2", "u3", "u4"}, users(w))
	assert.Equal(t, readThrough(t, b.InMemoryBackend, "s", maxTurns), w)

	w.Turns[0].User = "corrupted"
	assert.Equal(t, "u2", load(t, m, "s").Turns[0].User, "caller changed the cache")
}

func TestPersistentTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Minute
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns), memory.WithCacheTTL(ttl))
	clock := testutil.NewClock()
	memory.SetClock(m, clock.Now)
	save(t, m, "s", memory.Turn{User: "u0"})
	assert.Equal(t, 1, load(t, m, "s").TurnCount)

	// Another process writes: invisible until the window expires.
	require.NoError(t, b.InMemoryBackend.SaveTurn(ctx, "s", memory.Turn{User: "other"}))
	clock.Advance(ttl - time.Nanosecond)
	assert.Equal(t, 1, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(1), b.loads.Load())

	clock.Advance(time.Nanosecond)
	assert.Equal(t, 2, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(2), b.loads.Load())

	// A save on an expired window drops it instead of extending it.
	clock.Advance(ttl)
	save(t, m, "s", memory.Turn{User: "u2"})
	_, cached := memory.CachedWindow(m, "s")
	assert.False(t, cached)
	assert.Equal(t, 3, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(3), b.loads.Load())
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
	for _, id := range []string{"a", "b", "c"} {
		save(t, m, id, memory.Turn{User: id})
	}
	loadsOf := func() int64 { return b.loads.Load() }

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
}

func TestPersistentSaveErrorDropsCache(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	save(t, m, "s", memory.Turn{User: "u0"})
	before := load(t, m, "s")

	boom := errors.New("boom")
	b.fail(boom, nil, nil)
	err := m.SaveTurn(ctx, "s", memory.Turn{User: "refused"})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "save turn")
	b.fail(nil, nil, nil)

	// The window is dropped, not kept: the cache never holds the refused
	// turn, and after a failure whose outcome is unknown (a connection lost
	// during COMMIT) the next load reads what was really stored.
	_, ok := memory.CachedWindow(m, "s")
	require.False(t, ok, "a failed save must drop the window")
	assert.Equal(t, before, load(t, m, "s"))
	assert.Equal(t, int64(2), b.loads.Load())
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
		require.NoError(t, b.InMemoryBackend.SaveTurn(ctx, "s", memory.Turn{User: fmt.Sprint("old", i)}))
	}
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	save(t, m, "s", memory.Turn{User: "new"})

	w := load(t, m, "s")
	assert.Equal(t, 6, w.TurnCount)
	assert.Equal(t, []string{"old3", "old4", "new"}, users(w))
	assert.Equal(t, readThrough(t, b.InMemoryBackend, "s", maxTurns), w)
}

func TestPersistentIdempotentSave(t *testing.T) {
	tests := []struct {
		name      string
		saveOnly  bool   // hide the backend's StoreTurn (memory.TurnStorer)
		prefill   int    // turns saved before the window is cached
		resave    string // ID saved again after the cache holds the window
		wantCount int
		wantLoads int64 // LoadWindow calls, including the first
	}{
		// The ID is in the window: the cache keeps it once.
		{"in window", false, 2, "t1", 2, 1},
		{"in window, save only", true, 2, "t1", 2, 1},
		// The whole session is cached: a new ID is certainly new.
		{"new ID, whole session cached", true, 2, "fresh", 3, 1},
		// The ID left the window: the backend says whether it stored it.
		{"ID outside window", false, 5, "t0", 5, 1},
		{"new ID outside window", false, 5, "fresh", 6, 1},
		// Without StoreTurn only a read-through can tell.
		{"ID outside window, save only", true, 5, "t0", 5, 2},
		{"new ID outside window, save only", true, 5, "fresh", 6, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newRecordingBackend()
			var mb memory.Backend = b
			if tt.saveOnly {
				mb = saveOnly{b}
			}
			m := newPersistent(t, mb, memory.WithMaxTurns(maxTurns))
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
			assert.Equal(t, tt.wantLoads, b.loads.Load())
		})
	}
}

// Turns with generated IDs are appended to a cached window however long the
// session is.
func TestPersistentGeneratedIDsStayCached(t *testing.T) {
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(maxTurns))
	save(t, m, "s", memory.Turn{User: "u"})
	load(t, m, "s")
	for range 10 {
		save(t, m, "s", memory.Turn{User: "u"})
	}
	assert.Equal(t, 11, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(1), b.loads.Load())
	requireCacheConsistent(t, m, b.InMemoryBackend, "s")
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

func TestPersistentInvalidateCache(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	m := newPersistent(t, b)
	save(t, m, "s", memory.Turn{User: "u"})
	load(t, m, "s")
	require.NoError(t, b.InMemoryBackend.SaveTurn(ctx, "s", memory.Turn{User: "other"}))
	assert.Equal(t, 1, load(t, m, "s").TurnCount)

	m.InvalidateCache("s")
	m.InvalidateCache("never-loaded")
	assert.Equal(t, 2, load(t, m, "s").TurnCount)
	assert.Equal(t, int64(2), b.loads.Load())
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

func (b *gatedBackend) LoadWindow(ctx context.Context, id string, n int) (memory.Window, error) {
	if err := b.wait(ctx); err != nil {
		return memory.Window{}, err
	}
	return b.recordingBackend.LoadWindow(ctx, id, n)
}

func (b *gatedBackend) SaveTurn(ctx context.Context, id string, t memory.Turn) error {
	_, err := b.StoreTurn(ctx, id, t)
	return err
}

func (b *gatedBackend) StoreTurn(ctx context.Context, id string, t memory.Turn) (bool, error) {
	if err := b.wait(ctx); err != nil {
		return false, err
	}
	return b.recordingBackend.StoreTurn(ctx, id, t)
}

func TestPersistentConcurrentMissesReadOnce(t *testing.T) {
	b := &gatedBackend{recordingBackend: newRecordingBackend(), entered: make(chan struct{}, 100), release: make(chan struct{})}
	m := newPersistent(t, b)
	const callers = 20
	var wg sync.WaitGroup
	var done atomic.Int64
	for range callers {
		wg.Go(func() {
			_, err := m.LoadContext(context.Background(), "s")
			assert.NoError(t, err)
			done.Add(1)
		})
	}
	<-b.entered                       // one caller is reading through
	time.Sleep(10 * time.Millisecond) // let the others queue up behind it
	assert.Zero(t, done.Load())
	close(b.release)
	wg.Wait()
	assert.Equal(t, int64(callers), done.Load())
	assert.Equal(t, int64(1), b.loads.Load())
}

// A caller waiting for a session that another caller is working on gives up
// when its context ends.
func TestPersistentWaitHonorsContext(t *testing.T) {
	b := &gatedBackend{recordingBackend: newRecordingBackend(), entered: make(chan struct{}, 100), release: make(chan struct{})}
	m := newPersistent(t, b)
	go func() { _ = m.SaveTurn(context.Background(), "s", memory.Turn{User: "slow"}) }()
	<-b.entered

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := m.LoadContext(ctx, "s")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, m.SaveTurn(ctx, "s", memory.Turn{User: "u"}), context.DeadlineExceeded)
	require.ErrorIs(t, m.Clear(ctx, "s"), context.DeadlineExceeded)
	assert.Empty(t, b.entered, "a caller that gave up reached the backend")

	close(b.release)
	assert.Eventually(t, func() bool { return load(t, m, "s").TurnCount == 1 }, 5*time.Second, time.Millisecond)
}
