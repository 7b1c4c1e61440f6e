package backend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// ClaimSession makes user the owner of the unowned session key in one
// statement, an update conditioned on the row being unowned: two claims at
// once are ordered by the row's lock, and the second finds it owned. Only
// when nothing was updated is the owner read, to tell a claim the user
// made already (no change) from a session another user owns
// (driver.ErrSessionOwned) or none (driver.ErrSessionNotFound). It
// implements driver.SessionStore.
func (b *DataFlowBackend) ClaimSession(ctx context.Context, key, user string) error {
	if err := b.check(key); err != nil {
		return err
	}
	if user == "" {
		return fmt.Errorf("backend: %w: empty", driver.ErrInvalidUser)
	}
	st := b.stmt("claim", func() *dataflow.Stmt {
		return b.db.NewStmt(b.form("claim", `UPDATE `+SessionsTable+` SET user_id = ?, updated_at = ? WHERE id = ? AND user_id = '' RETURNING id`), b.sessions)
	})
	rows, err := st.Query(ctx, user, now(), key)
	if err != nil {
		return fmt.Errorf("backend: %w", b.writeOutcome(ctx, "claim session", err))
	}
	var got string
	switch err := scanOne(rows, &got); {
	case err == nil:
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("backend: %w", b.writeOutcome(ctx, "claim session", err))
	}
	owner, err := b.owner(ctx, key)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("backend: %s: %w", sessionName(key), bare{driver.ErrSessionNotFound})
	case err != nil:
		return fmt.Errorf("backend: %w", err)
	case owner == user:
		return nil
	}
	return fmt.Errorf("backend: %s: %w", sessionName(key), bare{driver.ErrSessionOwned})
}

// owner reads the session's owner; sql.ErrNoRows when there is no session.
func (b *DataFlowBackend) owner(ctx context.Context, key string) (string, error) {
	st := b.stmt("owner", func() *dataflow.Stmt {
		return b.db.NewReadStmt(`SELECT user_id FROM `+SessionsTable+` WHERE id = ?`, b.sessions)
	})
	rows, err := st.Query(ctx, key)
	if err != nil {
		return "", err
	}
	var owner string
	err = scanOne(rows, &owner)
	return owner, err
}

// refusedOwner is the error of a CreateSession or Import that may not
// take the session with the given owner: driver.ErrSessionExists for an
// unowned one (it holds turns), driver.ErrSessionOwned for another's.
func refusedOwner(key, owner string) error {
	if owner == "" {
		return fmt.Errorf("backend: %s: %w", sessionName(key), bare{driver.ErrSessionExists})
	}
	return fmt.Errorf("backend: %s: %w", sessionName(key), bare{driver.ErrSessionOwned})
}

// ClaimSession makes user the owner of the unowned session key. It
// implements driver.SessionStore.
func (b *InMemoryBackend) ClaimSession(ctx context.Context, key, user string) error {
	if err := checkRequest(ctx, key); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if user == "" {
		return fmt.Errorf("backend: %w: empty", driver.ErrInvalidUser)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[key]
	switch {
	case s == nil:
		return fmt.Errorf("backend: %s: %w", sessionName(key), bare{driver.ErrSessionNotFound})
	case s.user == "":
		s.user, s.updatedAt = user, time.Now().UTC().Truncate(time.Microsecond)
		return nil
	case s.user == user:
		return nil
	}
	return fmt.Errorf("backend: %s: %w", sessionName(key), bare{driver.ErrSessionOwned})
}
