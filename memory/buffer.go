package memory

import (
	"context"
	"sync"
	"time"
)

// BufferMemory keeps the newest turns of every session in process memory,
// for tests, demos and programs that need no persistence. It holds every
// session until Clear, so its size grows with the number of sessions.
//
// SaveTurn is idempotent on Turn.ID for the turns the window still holds: a
// second save of such an ID changes nothing. An ID that has left the window
// is stored again.
//
// The zero value is ready to use with the defaults. A BufferMemory is safe
// for concurrent use.
type BufferMemory struct {
	err             error // from NewBufferMemory's options; returned by every method
	maxTurns        int   // 0 means DefaultMaxTurns
	maxMessageBytes int   // 0 means DefaultMaxMessageBytes

	mu       sync.Mutex // protects sessions
	sessions map[string]*ring
}

// NewBufferMemory returns an in-process Memory. It ignores the cache
// options. With an invalid option, every method of the returned
// BufferMemory returns an error wrapping ErrInvalidOption.
func NewBufferMemory(opts ...Option) *BufferMemory {
	c, err := newConfig(opts)
	if err != nil {
		return &BufferMemory{err: err}
	}
	return &BufferMemory{maxTurns: c.maxTurns, maxMessageBytes: c.maxMessageBytes}
}

// SaveTurn validates turn like PrepareTurn and keeps it as the newest turn
// of the session.
func (m *BufferMemory) SaveTurn(ctx context.Context, sessionID string, turn Turn) error {
	if m.err != nil {
		return m.err
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	t, _, err := PrepareTurn(turn, time.Now(), m.maxMessageBytes)
	if err != nil {
		return err
	}
	maxTurns := m.maxTurns
	if maxTurns == 0 {
		maxTurns = DefaultMaxTurns
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.sessions[sessionID]
	if r == nil {
		if m.sessions == nil {
			m.sessions = make(map[string]*ring)
		}
		r = &ring{}
		m.sessions[sessionID] = r
	}
	if !r.has(t.ID) {
		r.push(t, maxTurns)
	}
	return nil
}

// LoadContext returns the newest turns of the session, oldest first, and
// its total turn count; an unknown session yields an empty Window. The
// Turns slice is the caller's; the Metadata maps are shared and must be
// treated as read-only.
func (m *BufferMemory) LoadContext(ctx context.Context, sessionID string) (Window, error) {
	if m.err != nil {
		return Window{}, m.err
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return Window{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.sessions[sessionID]
	if r == nil {
		return Window{}, nil
	}
	return Window{Turns: r.turns(), TurnCount: r.total}, nil
}

// Clear forgets the session.
func (m *BufferMemory) Clear(ctx context.Context, sessionID string) error {
	if m.err != nil {
		return m.err
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.sessions, sessionID)
	m.mu.Unlock()
	return nil
}

// ring holds the newest turns of a session.
type ring struct {
	buf   []Turn // grows to maxTurns, then is overwritten circularly
	head  int    // index of the oldest turn once buf is full
	total int    // every turn ever pushed
}

func (r *ring) push(t Turn, maxTurns int) {
	r.total++
	if len(r.buf) < maxTurns {
		r.buf = append(r.buf, t)
		return
	}
	r.buf[r.head] = t
	r.head = (r.head + 1) % len(r.buf)
}

func (r *ring) has(id string) bool {
	return indexID(r.buf, id) >= 0
}

// turns returns a copy of the held turns, oldest first.
func (r *ring) turns() []Turn {
	if len(r.buf) == 0 {
		return nil
	}
	out := make([]Turn, 0, len(r.buf))
	out = append(out, r.buf[r.head:]...)
	return append(out, r.buf[:r.head]...)
}

func indexID(turns []Turn, id string) int {
	for i := range turns {
		if turns[i].ID == id {
			return i
		}
	}
	return -1
}
