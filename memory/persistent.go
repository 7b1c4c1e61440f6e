package memory

import (
	"context"
	"fmt"
	"time"
)

// PersistentBufferMemory is a Memory that stores turns in a Backend and
// caches each session's window in front of it. See the package doc for its
// consistency guarantees. It is safe for concurrent use.
type PersistentBufferMemory struct {
	backend         Backend
	maxTurns        int
	maxMessageBytes int
	ttl             time.Duration    // 0: no cache
	now             func() time.Time // the clock; replaced in tests
	cache           *sessionCache
}

// NewPersistentBufferMemory returns a Memory over b. An invalid option or a
// nil b yields an error wrapping ErrInvalidOption.
func NewPersistentBufferMemory(b Backend, opts ...Option) (*PersistentBufferMemory, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: backend must not be nil", ErrInvalidOption)
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err // already says which option
	}
	return &PersistentBufferMemory{
		backend:         b,
		maxTurns:        c.maxTurns,
		maxMessageBytes: c.maxMessageBytes,
		ttl:             c.cacheTTL,
		now:             time.Now,
		cache:           newSessionCache(c.maxCachedSessions),
	}, nil
}

// SaveTurn validates turn like PrepareTurn and stores it in the backend;
// invalid input never reaches the backend. If the backend fails, the error
// is returned and the session's cached window is dropped, so the next
// LoadContext reads what the backend really holds. If the session's window is
// cached, the turn is appended to it; otherwise nothing is cached, and the
// next LoadContext reads through. A turn whose ID the cached window holds is
// not appended again; one with a caller-chosen ID unknown to a window that
// does not hold the whole session drops the window, since only the backend
// knows whether an older turn has that ID.
func (m *PersistentBufferMemory) SaveTurn(ctx context.Context, sessionID string, turn Turn) error {
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	t, _, err := PrepareTurn(turn, m.now(), m.maxMessageBytes)
	if err != nil {
		return err
	}
	if m.ttl == 0 {
		if _, _, err := m.store(ctx, sessionID, t); err != nil {
			return fmt.Errorf("memory: save turn: %w", err)
		}
		return nil
	}

	e, err := m.cache.acquire(ctx, sessionID)
	if err != nil {
		return fmt.Errorf("memory: save turn: %w", err)
	}
	defer m.cache.release(e)
	stored, known, err := m.store(ctx, sessionID, t)
	if err != nil {
		// Drop the window rather than keep it: the turn is not in it, and
		// if the failure left the outcome unknown (a connection lost during
		// COMMIT) the next load reads what was really stored.
		m.cache.invalidate(sessionID)
		return fmt.Errorf("memory: save turn: %w", err)
	}
	generatedID := turn.ID == ""
	m.cache.update(e, m.now(), m.ttl, func(s *snapshot) *snapshot {
		switch {
		case known && !stored:
			return s // the backend already held the ID and changed nothing
		case known:
			// stored: a new turn, so the window cannot hold its ID
		case indexID(s.turns, t.ID) >= 0:
			return s // the backend stored it once, the window holds it
		case !generatedID && s.count > len(s.turns):
			// The ID may belong to an older turn outside the window, which
			// the backend kept instead: only a read-through can tell.
			return nil
		}
		return &snapshot{turns: appendTrim(s.turns, t, m.maxTurns), count: s.count + 1, loadedAt: s.loadedAt}
	})
	return nil
}

// LoadContext returns the newest turns of the session, oldest first, and
// its total turn count, from the cache while fresh and from the backend
// otherwise. The Turns slice is the caller's; the Metadata maps are shared
// with the cache and must be treated as read-only. A context that is
// already done is an error, even when the cache could answer.
func (m *PersistentBufferMemory) LoadContext(ctx context.Context, sessionID string) (Window, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return Window{}, err
	}
	if err := ctx.Err(); err != nil { // even when the cache could answer
		return Window{}, fmt.Errorf("memory: load context: %w", err)
	}
	if m.ttl == 0 {
		w, err := m.backend.LoadWindow(ctx, sessionID, m.maxTurns)
		if err != nil {
			return Window{}, fmt.Errorf("memory: load context: %w", err)
		}
		return Window{Turns: lastTurns(w.Turns, m.maxTurns), TurnCount: w.TurnCount}, nil // the backend's slice is ours
	}
	if s := m.cache.get(sessionID, m.now(), m.ttl); s != nil {
		return s.window(), nil
	}

	e, err := m.cache.acquire(ctx, sessionID)
	if err != nil {
		return Window{}, fmt.Errorf("memory: load context: %w", err)
	}
	defer m.cache.release(e)
	start := m.now()
	s, gen := m.cache.peek(e, start, m.ttl)
	if s != nil { // loaded by another caller while this one waited
		return s.window(), nil
	}
	w, err := m.backend.LoadWindow(ctx, sessionID, m.maxTurns)
	if err != nil {
		return Window{}, fmt.Errorf("memory: load context: %w", err)
	}
	// The backend's slice is ours: kept as the immutable snapshot, cloned
	// once for the caller.
	s = &snapshot{turns: lastTurns(w.Turns, m.maxTurns), count: w.TurnCount, loadedAt: start}
	m.cache.install(e, gen, s)
	return s.window(), nil
}

// Clear removes the session from the backend and the cache. The cached
// window is dropped even if the backend fails, since it may have cleared.
func (m *PersistentBufferMemory) Clear(ctx context.Context, sessionID string) error {
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	if m.ttl == 0 {
		if err := m.backend.ClearSession(ctx, sessionID); err != nil {
			return fmt.Errorf("memory: clear: %w", err)
		}
		return nil
	}
	e, err := m.cache.acquire(ctx, sessionID)
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
// LoadContext reads through; use it when another process changed the
// session. A read-through already under way does not cache what it read.
func (m *PersistentBufferMemory) InvalidateCache(sessionID string) {
	m.cache.invalidate(sessionID)
}

// store saves t in the backend. known reports whether the backend told if
// the turn was new (stored) or its ID already held.
func (m *PersistentBufferMemory) store(ctx context.Context, sessionID string, t Turn) (stored, known bool, err error) {
	if ts, ok := m.backend.(TurnStorer); ok {
		stored, err = ts.StoreTurn(ctx, sessionID, t)
		return stored, true, err
	}
	return false, false, m.backend.SaveTurn(ctx, sessionID, t)
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
