package memory

import (
	"context"
	"fmt"

	"github.com/turnkeep/turnkeep/driver"
)

// forker returns the backend as a driver.Forker, or ErrNotSupported.
func (m *PersistentBufferMemory) forker() (driver.Forker, error) {
	if err := m.usable(); err != nil {
		return nil, err
	}
	f, ok := m.backend.(driver.Forker)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not a driver.Forker", ErrNotSupported, m.backend)
	}
	return f, nil
}

// Fork makes newSessionID a session that holds sessionID's turns up to and
// including atTurnID, then continues on its own: how an app lets a user
// edit a sent message (fork at the turn before it, then save the edited
// turn) or ask for another answer. The fork shares the parent's turns
// instead of copying them, so it costs the same whatever the parent
// holds, and it is owned by the parent's owner. Afterwards the two are
// independent: clearing, replacing or deleting the parent leaves the fork
// whole.
//
// It returns ErrTurnNotFound if the session has no such turn, and
// ErrSessionExists if newSessionID holds turns (ErrSessionOwned if another
// user owns it).
func (m *PersistentBufferMemory) Fork(ctx context.Context, sessionID, atTurnID, newSessionID string) (err error) {
	defer m.trace(&ctx, opFork, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return err
	}
	child, err := m.check(newSessionID)
	if err != nil {
		return err
	}
	if err := driver.ValidateTurnID(atTurnID); err != nil {
		return err
	}
	f, err := m.forker()
	if err != nil {
		return err
	}
	if key == child {
		return fmt.Errorf("memory: fork: %w: session %q cannot be forked into itself", ErrSessionExists, sessionID)
	}
	if m.cached {
		e, err := m.cache.acquire(ctx, child, m.now())
		if err != nil {
			return fmt.Errorf("memory: fork: %w", err)
		}
		defer m.cache.release(e)
		// The new session's window is whatever the backend holds now,
		// even after a failure whose outcome is unknown.
		defer m.cache.invalidate(child)
	}
	if err := f.Fork(ctx, key, atTurnID, child); err != nil {
		return fmt.Errorf("memory: fork: %w", err)
	}
	return nil
}

// ListForks returns the sessions forked from sessionID, newest first (at
// most driver.MaxForks, 1,000): the versions an app lets a user move
// between after an edit or a regenerated answer. Each one's ForkOf names
// sessionID and the turn it was forked at.
func (m *PersistentBufferMemory) ListForks(ctx context.Context, sessionID string) (_ []SessionInfo, err error) {
	defer m.trace(&ctx, opListForks, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return nil, err
	}
	f, err := m.forker()
	if err != nil {
		return nil, err
	}
	forks, err := f.ListForks(ctx, key, driver.MaxForks)
	if err != nil {
		return nil, fmt.Errorf("memory: list forks: %w", err)
	}
	return forks, nil
}
