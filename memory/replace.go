package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// ReplaceSession makes turns, in order, the session's whole history,
// atomically: every turn is validated first (nothing changes if one is
// invalid), then the old turns are removed and the new ones stored in one
// transaction, so a reader sees the old history or the new one, never a
// mix, and a failure leaves the old one. The session's owner, title and
// metadata are kept. With no turns it is Clear, but for them. Turn IDs, and
// message IDs, must be unique across turns (ErrInvalidTurn). A turn's Seq,
// when not 0, must be its position in turns (1 for the first), as loaded
// turns carry it: ErrInvalidTurn otherwise. A backend that is not a
// driver.Replacer is ErrNotSupported.
func (m *PersistentBufferMemory) ReplaceSession(ctx context.Context, sessionID string, turns ...Turn) (err error) {
	defer m.trace(&ctx, opReplaceSession, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return err
	}
	r, ok := m.backend.(driver.Replacer)
	if !ok {
		return fmt.Errorf("%w: %T is not a driver.Replacer", ErrNotSupported, m.backend)
	}
	prepared, err := prepareAll(turns, m.now(), m.maxBytes, m.counter)
	if err != nil {
		return err
	}
	if !m.cached {
		if _, err := r.Replace(ctx, key, prepared); err != nil {
			return fmt.Errorf("memory: replace session: %w", err)
		}
		return nil
	}
	e, err := m.cache.acquire(ctx, key, m.now())
	if err != nil {
		return fmt.Errorf("memory: replace session: %w", err)
	}
	defer m.cache.release(e)
	_, err = r.Replace(ctx, key, prepared)
	m.cache.invalidate(key)
	if err != nil {
		return fmt.Errorf("memory: replace session: %w", err)
	}
	return nil
}

// prepareAll validates turns for a replacement: each as SaveTurn would,
// and their turn and message IDs unique across them.
func prepareAll(turns []Turn, now time.Time, limit int, counter TokenCounter) ([]driver.PreparedTurn, error) {
	out := make([]driver.PreparedTurn, len(turns))
	turnIDs := make(map[string]bool, len(turns))
	msgIDs := make(map[string]bool)
	for i, t := range turns {
		p, err := driver.Prepare(t, now, limit, counter)
		if err != nil {
			return nil, fmt.Errorf("turn %d: %w", i, err)
		}
		if p.Seq > 0 && p.Seq != i+1 {
			return nil, fmt.Errorf("%w: turn %d (%q) has Seq %d", ErrInvalidTurn, i, p.ID, p.Seq)
		}
		if turnIDs[p.ID] {
			return nil, fmt.Errorf("%w: turn id %q given twice", ErrInvalidTurn, p.ID)
		}
		turnIDs[p.ID] = true
		for _, msg := range p.Encoded {
			if msgIDs[msg.ID] {
				return nil, fmt.Errorf("%w: message id %q given twice", ErrInvalidTurn, msg.ID)
			}
			msgIDs[msg.ID] = true
		}
		out[i] = p
	}
	return out, nil
}

// ReplaceSession makes turns the session's whole history (of which the
// BufferMemory keeps the window), validating them all first.
func (m *BufferMemory) ReplaceSession(ctx context.Context, sessionID string, turns ...Turn) error {
	if m.err != nil {
		return m.err
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	prepared, err := prepareAll(turns, time.Now(), m.maxMessageBytes, m.tokenCounter())
	if err != nil {
		return err
	}
	r := &ring{}
	for i, p := range prepared {
		p.Seq = i + 1
		r.push(p.Turn, m.limits().maxTurns)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions == nil {
		m.sessions = make(map[string]*ring)
	}
	if len(prepared) == 0 {
		delete(m.sessions, sessionID)
	} else {
		m.sessions[sessionID] = r
	}
	return nil
}
