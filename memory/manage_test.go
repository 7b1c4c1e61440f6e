package memory_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// countingStore is a SessionStore over the in-memory backend that counts
// every call reaching it, and can fail DeleteSessions on demand.
type countingStore struct {
	*backend.InMemoryBackend
	calls   atomic.Int64 // every call
	deletes atomic.Int64 // DeleteSessions calls

	mu        sync.Mutex // protects deleteErr
	deleteErr []error    // returned by the next DeleteSessions calls, in order
}

var _ driver.SessionStore = (*countingStore)(nil)

func newCountingStore() *countingStore {
	return &countingStore{InMemoryBackend: backend.NewInMemoryBackend()}
}

func (s *countingStore) Save(ctx context.Context, key string, t driver.PreparedTurn) (driver.Saved, error) {
	s.calls.Add(1)
	return s.InMemoryBackend.Save(ctx, key, t)
}

func (s *countingStore) Append(ctx context.Context, key, turnID string, msgs []driver.PreparedMessage) (driver.Saved, error) {
	s.calls.Add(1)
	return s.InMemoryBackend.Append(ctx, key, turnID, msgs)
}

func (s *countingStore) Load(ctx context.Context, key string, q driver.WindowQuery) (memory.Window, driver.Version, error) {
	s.calls.Add(1)
	return s.InMemoryBackend.Load(ctx, key, q)
}

func (s *countingStore) ClearSession(ctx context.Context, key string) error {
	s.calls.Add(1)
	return s.InMemoryBackend.ClearSession(ctx, key)
}

func (s *countingStore) SessionInfo(ctx context.Context, key string) (memory.SessionInfo, error) {
	s.calls.Add(1)
	return s.InMemoryBackend.SessionInfo(ctx, key)
}

func (s *countingStore) CreateSession(ctx context.Context, key string, info memory.SessionInfo) error {
	s.calls.Add(1)
	return s.InMemoryBackend.CreateSession(ctx, key, info)
}

func (s *countingStore) ListSessions(ctx context.Context, tenant string, q memory.SessionQuery) (memory.SessionPage, error) {
	s.calls.Add(1)
	return s.InMemoryBackend.ListSessions(ctx, tenant, q)
}

func (s *countingStore) DeleteSessions(ctx context.Context, tenant string, user *string, before time.Time, batch int) (memory.DeleteReport, []string, error) {
	s.calls.Add(1)
	s.deletes.Add(1)
	s.mu.Lock()
	var err error
	if len(s.deleteErr) > 0 {
		err, s.deleteErr = s.deleteErr[0], s.deleteErr[1:]
	}
	s.mu.Unlock()
	if err != nil {
		return memory.DeleteReport{}, nil, err
	}
	return s.InMemoryBackend.DeleteSessions(ctx, tenant, user, before, batch)
}

func (s *countingStore) Search(ctx context.Context, tenant string, q memory.SearchQuery) ([]memory.SearchHit, error) {
	s.calls.Add(1)
	return s.InMemoryBackend.Search(ctx, tenant, q)
}

func (s *countingStore) History(ctx context.Context, key string, q memory.HistoryQuery) (memory.HistoryPage, error) {
	s.calls.Add(1)
	return s.InMemoryBackend.History(ctx, key, q)
}

// plainBackend is a Backend and nothing more: not a SessionStore.
type plainBackend struct{ driver.Backend }

// exportOf returns the export of a session of two turns, owned by ada.
func exportOf(t *testing.T, id string) string {
	t.Helper()
	ctx := context.Background()
	m := newPersistent(t, backend.NewInMemoryBackend())
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: id, User: "ada", Title: "t"}))
	require.NoError(t, m.SaveTurn(ctx, id, memory.Turn{ID: "t1", User: "q1", Agent: "a1"}))
	require.NoError(t, m.SaveTurn(ctx, id, memory.Turn{ID: "t2", User: "q2", Agent: "a2"}))
	var buf bytes.Buffer
	require.NoError(t, m.Export(ctx, id, &buf))
	return buf.String()
}

// A method call of the table tests, returning only its error.
type call struct {
	name string
	run  func(ctx context.Context, m *memory.PersistentBufferMemory) error
}

// everyMethod calls every method of m that takes a session, a user or the
// tenant, with valid arguments but for m itself.
func everyMethod(export string) []call {
	return []call{
		{"SaveTurn", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			return m.SaveTurn(ctx, "s1", memory.Turn{User: "q", Agent: "a"})
		}},
		{"AppendMessages", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			return m.AppendMessages(ctx, "s1", "t1", memory.Message{Role: memory.RoleAssistant, Content: "more"})
		}},
		{"LoadContext", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.LoadContext(ctx, "s1")
			return err
		}},
		{"Clear", func(ctx context.Context, m *memory.PersistentBufferMemory) error { return m.Clear(ctx, "s1") }},
		{"CreateSession", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			return m.CreateSession(ctx, memory.SessionInfo{ID: "s1", User: "ada"})
		}},
		{"SessionInfo", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.SessionInfo(ctx, "s1")
			return err
		}},
		{"ListSessions", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.ListSessions(ctx, memory.SessionQuery{})
			return err
		}},
		{"ListSessions of a user", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.ListSessions(ctx, memory.SessionQuery{User: "ada"})
			return err
		}},
		{"DeleteUser", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.DeleteUser(ctx, "ada")
			return err
		}},
		{"Expire", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.Expire(ctx, time.Now())
			return err
		}},
		{"Search", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.Search(ctx, memory.SearchQuery{Text: "q1"})
			return err
		}},
		{"Search of a session", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.Search(ctx, memory.SearchQuery{Text: "q1", User: "ada", SessionID: "s1"})
			return err
		}},
		{"History", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.History(ctx, "s1", memory.HistoryQuery{})
			return err
		}},
		{"Export", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			var buf bytes.Buffer
			err := m.Export(ctx, "s1", &buf)
			if err != nil && buf.Len() > 0 {
				return errors.New("a failed export wrote " + buf.String())
			}
			return err
		}},
		{"Import", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			_, err := m.Import(ctx, strings.NewReader(export))
			return err
		}},
		{"ExpireEvery", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
			// Failed runs go to onError: the first one's error is the call's.
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var first error
			err := m.ExpireEvery(ctx, time.Millisecond, time.Hour, func(err error) {
				if first == nil {
					first = err
				}
				cancel()
			})
			if first != nil {
				return first
			}
			return err
		}},
	}
}

// A tenant ValidateTenant refuses makes every method of its view fail with
// ErrInvalidTenant, and none reaches the backend.
func TestInvalidTenantOnEveryMethod(t *testing.T) {
	export := exportOf(t, "s1")
	for _, tc := range []struct{ name, tenant string }{
		{"too long", strings.Repeat("t", memory.MaxTenantBytes+1)},
		{"NUL", "ac\x00me"},
		{"invalid UTF-8", "ac\xffme"},
		{"control character", "ac\nme"},
		{"DEL", "ac\x7fme"},
		{"key separator", "ac\x1fme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := newCountingStore()
			root := newPersistent(t, store)
			m := root.ForTenant(tc.tenant)
			assert.Equal(t, tc.tenant, m.Tenant())
			for _, c := range everyMethod(export) {
				assert.ErrorIs(t, c.run(ctx, m), memory.ErrInvalidTenant, c.name)
			}
			assert.Zero(t, store.calls.Load(), "calls that reached the backend")
			// A valid tenant of the longest length works.
			ok := root.ForTenant(strings.Repeat("t", memory.MaxTenantBytes))
			require.NoError(t, ok.SaveTurn(ctx, "s1", memory.Turn{User: "q"}))
			p, err := root.ListSessions(ctx, memory.SessionQuery{})
			require.NoError(t, err)
			assert.Empty(t, p.Sessions, "nothing written to the default tenant")
		})
	}
}

// An owner ValidateUser refuses is ErrInvalidUser, and writes nothing.
func TestInvalidUser(t *testing.T) {
	for _, tc := range []struct{ name, user string }{
		{"too long", strings.Repeat("u", memory.MaxUserBytes+1)},
		{"NUL", "a\x00da"},
		{"invalid UTF-8", "a\xffda"},
		{"control character", "a\tda"},
		{"key separator", "a\x1fda"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := newCountingStore()
			m := newPersistent(t, store).ForTenant("acme")
			for _, c := range []call{
				{"CreateSession", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
					return m.CreateSession(ctx, memory.SessionInfo{ID: "s1", User: tc.user})
				}},
				{"ListSessions", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
					_, err := m.ListSessions(ctx, memory.SessionQuery{User: tc.user})
					return err
				}},
				{"DeleteUser", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
					_, err := m.DeleteUser(ctx, tc.user)
					return err
				}},
				{"Search", func(ctx context.Context, m *memory.PersistentBufferMemory) error {
					_, err := m.Search(ctx, memory.SearchQuery{Text: "q", User: tc.user})
					return err
				}},
			} {
				assert.ErrorIs(t, c.run(ctx, m), memory.ErrInvalidUser, c.name)
			}
			assert.Zero(t, store.calls.Load(), "calls that reached the backend")
			_, err := m.SessionInfo(ctx, "s1")
			assert.ErrorIs(t, err, memory.ErrSessionNotFound, "CreateSession wrote nothing")
			p, err := m.ListSessions(ctx, memory.SessionQuery{})
			require.NoError(t, err)
			assert.Empty(t, p.Sessions)
		})
	}
	// The longest valid owner works; the empty one is nobody's to delete.
	ctx := context.Background()
	m := newPersistent(t, backend.NewInMemoryBackend())
	long := strings.Repeat("u", memory.MaxUserBytes)
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s1", User: long}))
	_, err := m.DeleteUser(ctx, "")
	require.ErrorIs(t, err, memory.ErrInvalidUser)
	info, err := m.SessionInfo(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, long, info.User)
}

// A title the store would not keep as given is ErrInvalidTurn, and
// CreateSession writes nothing.
func TestCreateSessionInvalidTitle(t *testing.T) {
	ctx := context.Background()
	store := newCountingStore()
	m := newPersistent(t, store)
	for _, title := range []string{strings.Repeat("x", memory.MaxTitleBytes+1), "a\x00b", "a\xffb"} {
		require.ErrorIs(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s1", User: "ada", Title: title}), memory.ErrInvalidTurn)
	}
	assert.Zero(t, store.calls.Load())
	require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s1", User: "ada", Title: strings.Repeat("x", memory.MaxTitleBytes)}))
}

// A cursor no page returned is ErrInvalidCursor, for listing and history.
func TestInvalidCursor(t *testing.T) {
	ctx := context.Background()
	m := newPersistent(t, backend.NewInMemoryBackend()).ForTenant("acme")
	for i := range 3 {
		require.NoError(t, m.CreateSession(ctx, memory.SessionInfo{ID: "s" + string(rune('1'+i)), User: "ada"}))
		require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{User: "q", Agent: "a"}))
	}
	bad := []string{
		"not a cursor",
		"%%%",
		base64.RawURLEncoding.EncodeToString([]byte(`{"x":1}`)), // unknown field
		base64.RawURLEncoding.EncodeToString([]byte(`[1,2]`)),
		base64.StdEncoding.EncodeToString([]byte(`{"s":1}`)) + "==", // not URL-safe raw
	}
	for _, c := range bad {
		_, err := m.ListSessions(ctx, memory.SessionQuery{After: c})
		assert.ErrorIs(t, err, memory.ErrInvalidCursor, "ListSessions after %q", c)
		_, err = m.History(ctx, "s1", memory.HistoryQuery{After: c})
		assert.ErrorIs(t, err, memory.ErrInvalidCursor, "History after %q", c)
	}
	// The cursors pages return work.
	p, err := m.ListSessions(ctx, memory.SessionQuery{Limit: 1})
	require.NoError(t, err)
	require.NotEmpty(t, p.Next)
	_, err = m.ListSessions(ctx, memory.SessionQuery{Limit: 1, After: p.Next})
	require.NoError(t, err)
	h, err := m.History(ctx, "s1", memory.HistoryQuery{Limit: 1})
	require.NoError(t, err)
	require.NotEmpty(t, h.Next)
	_, err = m.History(ctx, "s1", memory.HistoryQuery{Limit: 1, After: h.Next})
	require.NoError(t, err)
}

// Search text the store could not take is refused before the backend.
func TestSearchInvalidText(t *testing.T) {
	ctx := context.Background()
	store := newCountingStore()
	m := newPersistent(t, store, memory.WithMaxMessageBytes(1024))
	for _, text := range []string{"pine\x00apple", "pine\xffapple", strings.Repeat("a", 1025)} {
		_, err := m.Search(ctx, memory.SearchQuery{Text: text})
		assert.ErrorIs(t, err, memory.ErrInvalidOption, "%q", text)
	}
	_, err := m.Search(ctx, memory.SearchQuery{Text: "x", SessionID: "a\x00b"})
	assert.ErrorIs(t, err, memory.ErrInvalidSessionID)
	assert.Zero(t, store.calls.Load())
	hits, err := m.Search(ctx, memory.SearchQuery{Text: strings.Repeat("a", 1024)})
	require.NoError(t, err)
	assert.Empty(t, hits)
}

// Limits out of range are ErrInvalidOption, and reach nothing; the
// bounds themselves work.
func TestLimitsOutOfRange(t *testing.T) {
	ctx := context.Background()
	store := newCountingStore()
	m := newPersistent(t, store).ForTenant("acme")
	for _, limit := range []int{-1, memory.MaxListLimit + 1} {
		_, err := m.ListSessions(ctx, memory.SessionQuery{Limit: limit})
		assert.ErrorIs(t, err, memory.ErrInvalidOption, "ListSessions limit %d", limit)
		_, err = m.Search(ctx, memory.SearchQuery{Text: "q", Limit: limit})
		assert.ErrorIs(t, err, memory.ErrInvalidOption, "Search limit %d", limit)
		_, err = m.History(ctx, "s1", memory.HistoryQuery{Limit: limit})
		assert.ErrorIs(t, err, memory.ErrInvalidOption, "History limit %d", limit)
	}
	_, err := m.Expire(ctx, time.Time{})
	assert.ErrorIs(t, err, memory.ErrInvalidOption, "Expire needs a time")
	assert.Zero(t, store.calls.Load())

	require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{User: "q", Agent: "a"}))
	for _, limit := range []int{0, 1, memory.MaxListLimit} {
		p, err := m.ListSessions(ctx, memory.SessionQuery{Limit: limit})
		require.NoError(t, err)
		assert.Len(t, p.Sessions, 1)
		hits, err := m.Search(ctx, memory.SearchQuery{Text: "q", Limit: limit})
		require.NoError(t, err)
		assert.Len(t, hits, 1)
		h, err := m.History(ctx, "s1", memory.HistoryQuery{Limit: limit})
		require.NoError(t, err)
		assert.Len(t, h.Turns, 1)
	}
}

// ExpireEvery runs Expire on a ticker until its context ends, and returns
// the context's error; sessions idle longer than idle go, the others stay.
func TestExpireEvery(t *testing.T) {
	ctx := context.Background()
	store := newCountingStore()
	m := newPersistent(t, store).ForTenant("acme")
	var clock atomic.Int64 // the memory's now, in Unix nanoseconds
	clock.Store(time.Now().UnixNano())
	memory.SetClock(m, func() time.Time { return time.Unix(0, clock.Load()) })
	const idle = time.Hour

	require.NoError(t, m.SaveTurn(ctx, "old-1", memory.Turn{User: "q"}))
	require.NoError(t, m.SaveTurn(ctx, "old-2", memory.Turn{User: "q"}))
	time.Sleep(2 * time.Millisecond)
	cut := time.Now()
	time.Sleep(2 * time.Millisecond)
	require.NoError(t, m.SaveTurn(ctx, "fresh", memory.Turn{User: "q"}))

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var onErr atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- m.ExpireEvery(runCtx, 5*time.Millisecond, idle, func(error) { onErr.Add(1) })
	}()
	ids := func() []string {
		p, err := m.ListSessions(ctx, memory.SessionQuery{})
		require.NoError(t, err)
		var out []string
		for _, s := range p.Sessions {
			out = append(out, s.ID)
		}
		return out
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		}
	}
	// Runs go ahead, and expire nothing while every session is fresh.
	waitFor("three runs", func() bool { return store.deletes.Load() >= 3 })
	assert.ElementsMatch(t, []string{"old-1", "old-2", "fresh"}, ids())

	// An hour later by the memory's clock (since cut), the old ones go.
	clock.Store(cut.Add(idle).UnixNano())
	waitFor("the old sessions to expire", func() bool { return len(ids()) == 1 })
	assert.Equal(t, []string{"fresh"}, ids())
	runs := store.deletes.Load()
	waitFor("two more runs", func() bool { return store.deletes.Load() >= runs+2 })
	assert.Equal(t, []string{"fresh"}, ids(), "the fresh one stays")
	w, err := m.LoadContext(ctx, "old-1")
	require.NoError(t, err)
	assert.Zero(t, w.TurnCount)

	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("ExpireEvery did not return when its context ended")
	}
	assert.Zero(t, onErr.Load(), "no run failed")
}

// A failed run of ExpireEvery goes to onError, and the next run goes ahead.
func TestExpireEveryGoesOnAfterAnError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := newCountingStore()
	boom := errors.New("boom")
	store.deleteErr = []error{boom, boom}
	m := newPersistent(t, store)
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: "q"}))
	memory.SetClock(m, func() time.Time { return time.Now().Add(2 * time.Hour) })

	var mu sync.Mutex
	var errs []error
	done := make(chan error, 1)
	go func() {
		done <- m.ExpireEvery(ctx, time.Millisecond, time.Hour, func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		})
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := m.SessionInfo(ctx, "s"); errors.Is(err, memory.ErrSessionNotFound) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the session never expired")
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, errs, 2, "each failed run reported once")
	for _, err := range errs {
		assert.ErrorIs(t, err, boom)
	}
	assert.GreaterOrEqual(t, store.deletes.Load(), int64(3))
}

// ExpireEvery with a non-positive interval or idle time is
// ErrInvalidOption at once, and runs nothing.
func TestExpireEveryInvalid(t *testing.T) {
	store := newCountingStore()
	m := newPersistent(t, store)
	for _, c := range []struct{ interval, idle time.Duration }{
		{0, time.Hour}, {-time.Second, time.Hour}, {time.Second, 0}, {time.Second, -time.Hour},
	} {
		err := m.ExpireEvery(context.Background(), c.interval, c.idle, func(err error) { t.Errorf("onError(%v)", err) })
		assert.ErrorIs(t, err, memory.ErrInvalidOption, "interval %v idle %v", c.interval, c.idle)
	}
	assert.Zero(t, store.calls.Load())
}

// A memory over a Backend that is not a SessionStore keeps windows, and
// returns ErrNotSupported from every session method, writing nothing.
func TestNotASessionStore(t *testing.T) {
	ctx := context.Background()
	m := newPersistent(t, plainBackend{backend.NewInMemoryBackend()}).ForTenant("acme")
	require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{ID: "t1", User: "q1", Agent: "a1"}))
	require.NoError(t, m.AppendMessages(ctx, "s1", "t1", memory.Message{Role: memory.RoleAssistant, Content: "more"}))
	info, err := m.SessionInfo(ctx, "s1")
	require.NoError(t, err)
	require.Equal(t, 1, info.TurnCount)

	export := strings.ReplaceAll(exportOf(t, "s2"), `"id":"s2"`, `"id":"imported"`)
	for _, c := range everyMethod(export) {
		switch c.name {
		case "SaveTurn", "AppendMessages", "LoadContext", "Clear", "SessionInfo":
			continue // a Backend's own
		}
		assert.ErrorIs(t, c.run(ctx, m), memory.ErrNotSupported, c.name)
	}
	w, err := m.LoadContext(ctx, "imported")
	require.NoError(t, err)
	assert.Zero(t, w.TurnCount, "Import stored nothing")
	w, err = m.LoadContext(ctx, "s1")
	require.NoError(t, err)
	assert.Equal(t, 1, w.TurnCount, "DeleteUser and Expire removed nothing")
}

// InvalidateCache drops the cached window of the session of the memory's
// own tenant: under WithStaleReads, the next load then reads what another
// server saved.
func TestInvalidateCacheInTenant(t *testing.T) {
	for _, tenant := range []string{"", "acme"} {
		t.Run("tenant="+tenant, func(t *testing.T) {
			ctx := context.Background()
			store := backend.NewInMemoryBackend()
			a := newPersistent(t, store, memory.WithStaleReads(time.Hour)).ForTenant(tenant)
			b := newPersistent(t, store).ForTenant(tenant)
			require.NoError(t, a.SaveTurn(ctx, "s", memory.Turn{User: "one"}))
			w, err := a.LoadContext(ctx, "s")
			require.NoError(t, err)
			require.Equal(t, 1, w.TurnCount)
			require.NoError(t, b.SaveTurn(ctx, "s", memory.Turn{User: "two"}))

			a.InvalidateCache("s")
			w, err = a.LoadContext(ctx, "s")
			require.NoError(t, err)
			assert.Equal(t, 2, w.TurnCount, "the load after InvalidateCache reads the session")
		})
	}
}
