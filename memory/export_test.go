package memory

import "time"

// SetClock replaces the clock of m.
func SetClock(m *PersistentBufferMemory, now func() time.Time) { m.now = now }

// CachedWindow returns the window m has cached for the session, fresh or
// not, without touching the backend or the LRU order.
func CachedWindow(m *PersistentBufferMemory, sessionID string) (Window, bool) {
	m.cache.mu.Lock()
	defer m.cache.mu.Unlock()
	e := m.cache.entries[sessionID]
	if e == nil || e.snap == nil {
		return Window{}, false
	}
	return e.snap.window(), true
}

// CachedSessions returns how many windows m caches, and how many per-session
// entries it keeps.
func CachedSessions(m *PersistentBufferMemory) (windows, entries int) {
	m.cache.mu.Lock()
	defer m.cache.mu.Unlock()
	return m.cache.lru.Len(), len(m.cache.entries)
}

// SetSummaryTiming sets the summarizer call's timeout and the worker's
// first retry delay of m.
func SetSummaryTiming(m *PersistentBufferMemory, timeout, backoff time.Duration) {
	m.sum.timeout, m.sum.backoff = timeout, backoff
}
