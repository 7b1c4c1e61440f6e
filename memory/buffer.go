package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// BufferMemory keeps the newest turns of every session in process memory,
// for tests, demos and programs that need no persistence. It holds every
// session until Clear, so its size grows with the number of sessions.
//
// SaveTurn is idempotent on Turn.ID, and AppendMessages on Message.ID, for
// the turns the window still holds: a second save of such an ID changes
// nothing. An ID that has left the window is stored again, and appending
// to a turn that has left it is ErrTurnNotFound.
//
// The zero value is ready to use with the defaults. A BufferMemory is safe
// for concurrent use.
type BufferMemory struct {
	err             error // from NewBufferMemory's options; returned by every method
	maxTurns        int   // 0 means DefaultMaxTurns
	maxMessageBytes int   // 0 means DefaultMaxMessageBytes
	tokenBudget     int
	counter         TokenCounter // nil means DefaultTokenCounter

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
	return &BufferMemory{maxTurns: c.maxTurns, maxMessageBytes: c.maxMessageBytes, tokenBudget: c.tokenBudget, counter: c.counter}
}

func (m *BufferMemory) limits() limits {
	l := limits{maxTurns: m.maxTurns, tokenBudget: m.tokenBudget}
	if l.maxTurns == 0 {
		l.maxTurns = DefaultMaxTurns
	}
	return l
}

func (m *BufferMemory) tokenCounter() TokenCounter {
	if m.counter == nil {
		return DefaultTokenCounter
	}
	return m.counter
}

// SaveTurn validates turn like PrepareTurn and keeps it as the newest turn
// of the session. A turn with Seq > 0 that it does not hold already must
// land at exactly that position, or SaveTurn returns ErrConflict and keeps
// nothing; the turns LoadContext returns carry their Seq.
func (m *BufferMemory) SaveTurn(ctx context.Context, sessionID string, turn Turn) error {
	if m.err != nil {
		return m.err
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	p, err := driver.Prepare(turn, time.Now(), m.maxMessageBytes, m.tokenCounter())
	if err != nil {
		return err
	}
	t := p.Turn

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
	if r.has(t.ID) {
		return nil
	}
	if t.Seq > 0 && t.Seq != r.total+1 {
		return fmt.Errorf("%w: session %q turn %q: seq %d, but the session holds %d turns", ErrConflict, sessionID, t.ID, t.Seq, r.total)
	}
	t.Seq = r.total + 1
	r.push(t, m.limits().maxTurns)
	return nil
}

// AppendMessages adds msgs to the session's turn turnID, skipping every
// message whose ID a held turn has already. It is ErrTurnNotFound if no
// held turn has that ID.
func (m *BufferMemory) AppendMessages(ctx context.Context, sessionID, turnID string, msgs ...Message) error {
	if m.err != nil {
		return m.err
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	enc, err := driver.PrepareMessages(msgs, m.maxMessageBytes, m.tokenCounter())
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.sessions[sessionID]
	i := -1
	if r != nil {
		i = indexID(r.buf, turnID)
	}
	if i < 0 {
		return fmt.Errorf("%w: session %q has no turn %q", ErrTurnNotFound, sessionID, turnID)
	}
	t := r.buf[i]
	t.Messages = append([]Message(nil), t.Messages...) // a loaded window may share the old slice
	for _, p := range enc {
		if !r.hasMessage(p.ID) {
			t.Messages = append(t.Messages, p.Message)
		}
	}
	driver.FillShorthand(&t)
	r.buf[i] = t
	return nil
}

// LoadContext returns the newest turns of the session, oldest first,
// within the window's limits, and its total turn count; an unknown session
// yields an empty Window. The Turns slice is the caller's; the messages
// and Metadata maps are shared and must be treated as read-only.
func (m *BufferMemory) LoadContext(ctx context.Context, sessionID string, opts ...LoadOption) (Window, error) {
	if m.err != nil {
		return Window{}, m.err
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return Window{}, err
	}
	l, err := m.limits().apply(opts)
	if err != nil {
		return Window{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.sessions[sessionID]
	if r == nil {
		return Window{}, nil
	}
	return driver.TrimWindow(Window{Turns: r.turns(), TurnCount: r.total}, l.maxTurns, l.tokenBudget), nil
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

func (r *ring) hasMessage(id string) bool {
	for i := range r.buf {
		for j := range r.buf[i].Messages {
			if r.buf[i].Messages[j].ID == id {
				return true
			}
		}
	}
	return false
}

func indexID(turns []Turn, id string) int {
	for i := range turns {
		if turns[i].ID == id {
			return i
		}
	}
	return -1
}
