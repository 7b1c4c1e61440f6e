package memory

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// PersistentBufferMemory is a Memory that stores turns in a Backend and
// caches each session's window in front of it. See the package doc for its
// consistency guarantees. It is safe for concurrent use; the zero value is
// not usable (its methods return ErrClosed): make one with
// NewPersistentBufferMemory.
type PersistentBufferMemory struct {
	backend   Backend
	versioned VersionedBackend // backend, when it versions sessions; else nil
	maxTurns  int
	maxBytes  int
	cached    bool          // windows are cached
	stale     time.Duration // WithStaleReads: how long a hit may skip the backend
	now       func() time.Time
	cache     *sessionCache
	closed    atomic.Bool
}

// NewPersistentBufferMemory returns a Memory over b. An invalid option or a
// nil b yields an error wrapping ErrInvalidOption.
//
// Windows are cached when b is a VersionedBackend (every backend in package
// backend is), or when WithStaleReads allows stale windows; otherwise every
// LoadContext reads through.
func NewPersistentBufferMemory(b Backend, opts ...Option) (*PersistentBufferMemory, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: backend must not be nil", ErrInvalidOption)
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err // already says which option
	}
	m := &PersistentBufferMemory{
		backend:  b,
		maxTurns: c.maxTurns,
		maxBytes: c.maxMessageBytes,
		stale:    c.staleReads,
		now:      time.Now,
		cache:    newSessionCache(c.maxCachedSessions, c.cacheTTL),
	}
	m.versioned, _ = b.(VersionedBackend)
	m.cached = c.cacheTTL > 0 && (m.versioned != nil || m.stale > 0)
	return m, nil
}

// Close makes every later call return ErrClosed and drops every cached
// window. It does not close the backend. Calling it again returns nil.
func (m *PersistentBufferMemory) Close() error {
	if m == nil || m.cache == nil || m.closed.Swap(true) {
		return nil
	}
	m.cache.clear()
	return nil
}

// check returns ErrClosed for a closed or zero memory, then validates the
// session ID.
func (m *PersistentBufferMemory) check(sessionID string) error {
	if m == nil || m.backend == nil {
		return fmt.Errorf("%w: not made by NewPersistentBufferMemory", ErrClosed)
	}
	if m.closed.Load() {
		return ErrClosed
	}
	return ValidateSessionID(sessionID)
}

// SaveTurn validates turn like PrepareTurn and stores it in the backend;
// invalid input never reaches the backend. If the backend fails, the error
// is returned and the session's cached window is dropped, so the next
// LoadContext reads what the backend really holds.
//
// The turn is appended to a cached window only when the backend's answer
// proves the window was the session's newest state just before the save
// (its turn count and version moved by exactly this turn); otherwise the
// window is dropped. So a save never appends onto a stale window, whatever
// other processes did.
func (m *PersistentBufferMemory) SaveTurn(ctx context.Context, sessionID string, turn Turn) error {
	if err := m.check(sessionID); err != nil {
		return err
	}
	p, err := Prepare(turn, m.now(), m.limit())
	if err != nil {
		return err
	}
	t := p.Turn
	if !m.cached {
		if _, err := m.store(ctx, sessionID, p); err != nil {
			return fmt.Errorf("memory: save turn: %w", err)
		}
		return nil
	}

	e, err := m.cache.acquire(ctx, sessionID, m.now())
	if err != nil {
		return fmt.Errorf("memory: save turn: %w", err)
	}
	defer m.cache.release(e)
	res, err := m.store(ctx, sessionID, p)
	if err != nil {
		// Drop the window rather than keep it: the turn is not in it, and
		// if the failure left the outcome unknown (a connection lost during
		// COMMIT) the next load reads what was really stored.
		m.cache.invalidate(sessionID)
		return fmt.Errorf("memory: save turn: %w", err)
	}
	m.cache.update(e, m.now(), func(s *snapshot) *snapshot {
		switch {
		case res.known && !res.Stored:
			return s // the backend already held the ID and changed nothing
		case !res.known || res.Version == UnknownVersion:
			return nil // only a read can tell what the session holds now
		case res.Seq == 1:
			// The session held nothing before this turn, whatever the
			// window said: it is exactly this turn now.
			return &snapshot{turns: []Turn{t}, count: 1, version: res.Version}
		case s == nil || s.count+1 != res.Seq || s.version+1 != res.Version:
			return nil // another writer moved the session: the window is stale
		}
		return &snapshot{turns: appendTrim(s.turns, t, m.maxTurns), count: res.Seq, version: res.Version}
	})
	return nil
}

// LoadContext returns the newest turns of the session, oldest first, and
// its total turn count. A cached window is returned only once the backend
// confirms, in one small read, that the session has not changed (or, under
// WithStaleReads, while the window was confirmed within that bound). The
// Turns slice is the caller's; the Metadata maps are shared with the cache
// and must be treated as read-only. A context that is already done is an
// error, even when the cache could answer.
func (m *PersistentBufferMemory) LoadContext(ctx context.Context, sessionID string) (Window, error) {
	if err := m.check(sessionID); err != nil {
		return Window{}, err
	}
	if err := ctx.Err(); err != nil { // even when the cache could answer
		return Window{}, fmt.Errorf("memory: load context: %w", err)
	}
	if !m.cached {
		m.cache.stats.misses.Add(1)
		w, err := m.backend.LoadWindow(ctx, sessionID, m.maxTurns)
		if err != nil {
			return Window{}, fmt.Errorf("memory: load context: %w", err)
		}
		return Window{Turns: lastTurns(w.Turns, m.maxTurns), TurnCount: w.TurnCount}, nil // the backend's slice is ours
	}

	start := m.now()
	if m.stale > 0 {
		if s, checked := m.cache.get(sessionID, start); s != nil && start.Sub(checked) < m.stale {
			if err := m.backendErr(); err != nil {
				return Window{}, fmt.Errorf("memory: load context: %w", err)
			}
			m.cache.stats.hits.Add(1)
			return s.window(), nil
		}
	}
	e, s, gen := m.cache.pin(sessionID, start)
	defer m.cache.unpin(e)
	known := UnknownVersion
	if s != nil {
		known = s.version
	}
	w, v, changed, err := m.loadIfChanged(ctx, sessionID, known)
	if err != nil {
		return Window{}, fmt.Errorf("memory: load context: %w", err)
	}
	if !changed {
		m.cache.stats.hits.Add(1)
		m.cache.confirm(e, gen, start)
		return s.window(), nil
	}
	if s != nil {
		m.cache.stats.stale.Add(1)
	}
	m.cache.stats.misses.Add(1)
	// The backend's slice is ours: kept as the immutable snapshot, cloned
	// once for the caller.
	s = &snapshot{turns: lastTurns(w.Turns, m.maxTurns), count: w.TurnCount, version: v}
	m.cache.install(e, gen, s, start)
	return s.window(), nil
}

// Stats returns a snapshot of the cache counters.
func (m *PersistentBufferMemory) Stats() CacheStats {
	if m == nil || m.cache == nil {
		return CacheStats{}
	}
	return m.cache.stats.snapshot()
}

// loadIfChanged asks a VersionedBackend whether the session moved from
// known, and reads any other backend through.
func (m *PersistentBufferMemory) loadIfChanged(ctx context.Context, sessionID string, known Version) (Window, Version, bool, error) {
	if m.versioned != nil {
		return m.versioned.LoadWindowIfChanged(ctx, sessionID, m.maxTurns, known)
	}
	w, err := m.backend.LoadWindow(ctx, sessionID, m.maxTurns)
	return w, UnknownVersion, true, err
}

// backendErr reports a backend that can say it is closed (such as one
// over a closed database), so that a cache never answers for it.
func (m *PersistentBufferMemory) backendErr() error {
	if c, ok := m.backend.(interface{ Err() error }); ok {
		return c.Err()
	}
	return nil
}

// Clear removes the session from the backend and the cache. The cached
// window is dropped even if the backend fails, since it may have cleared.
func (m *PersistentBufferMemory) Clear(ctx context.Context, sessionID string) error {
	if err := m.check(sessionID); err != nil {
		return err
	}
	if !m.cached {
		if err := m.backend.ClearSession(ctx, sessionID); err != nil {
			return fmt.Errorf("memory: clear: %w", err)
		}
		return nil
	}
	e, err := m.cache.acquire(ctx, sessionID, m.now())
	if err != nil {
		return fmt.Errorf("memory: clear: %w", err)
	}
	defer m.cache.release(e)
	err = m.backend.ClearSession(ctx, sessionID)
	m.cache.invalidate(sessionID)
	if err != nil {
		return fmt.Errorf("memory: clear: %w", err)
	}
	return nil
}

// InvalidateCache drops the cached window of the session, so the next
// LoadContext reads it whole. It is never needed for correctness: loads
// confirm cached windows with the backend (see the package doc).
func (m *PersistentBufferMemory) InvalidateCache(sessionID string) {
	if m == nil || m.cache == nil {
		return
	}
	m.cache.invalidate(sessionID)
}

// storeResult is Saved, and whether the backend could report it.
type storeResult struct {
	Saved
	known bool // false: a plain Backend, which says nothing of what it did
}

// limit is the size limit turns are prepared with: the smaller of the
// memory's and a VersionedBackend's, so that the backend stores them
// without validating them again.
func (m *PersistentBufferMemory) limit() int {
	if m.versioned != nil {
		if b := m.versioned.MaxMessageBytes(); b > 0 && b < m.maxBytes {
			return b
		}
	}
	return m.maxBytes
}

// store saves p in the backend, learning as much as the backend tells.
func (m *PersistentBufferMemory) store(ctx context.Context, sessionID string, p PreparedTurn) (storeResult, error) {
	if m.versioned != nil {
		s, err := m.versioned.SaveTurnVersioned(ctx, sessionID, p)
		return storeResult{Saved: s, known: true}, err
	}
	t := p.Turn
	if ts, ok := m.backend.(TurnStorer); ok {
		stored, err := ts.StoreTurn(ctx, sessionID, t)
		return storeResult{Saved: Saved{Stored: stored, Version: UnknownVersion}, known: true}, err
	}
	return storeResult{}, m.backend.SaveTurn(ctx, sessionID, t)
}

// appendTrim returns a new slice: the newest maxTurns-1 of turns, then t.
func appendTrim(turns []Turn, t Turn, maxTurns int) []Turn {
	turns = lastTurns(turns, maxTurns-1)
	out := make([]Turn, 0, len(turns)+1)
	out = append(out, turns...)
	return append(out, t)
}

// lastTurns returns the newest n of turns.
func lastTurns(turns []Turn, n int) []Turn {
	if len(turns) > n {
		return turns[len(turns)-n:]
	}
	return turns
}
