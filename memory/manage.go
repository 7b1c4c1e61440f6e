package memory

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// store returns the backend as a driver.SessionStore, or ErrNotSupported.
func (m *PersistentBufferMemory) store() (driver.SessionStore, error) {
	if err := m.usable(); err != nil {
		return nil, err
	}
	s, ok := m.backend.(driver.SessionStore)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not a driver.SessionStore", ErrNotSupported, m.backend)
	}
	return s, nil
}

// CreateSession records a session's owner, title and metadata, creating
// the session with no turns if need be (SaveTurn still creates unowned
// sessions implicitly). It is idempotent for the same owner, whose title
// and metadata it updates. A session another user owns is
// ErrSessionOwned. An unowned session that holds turns is ErrSessionExists
// when s.User is set: nobody takes a conversation by guessing its ID, and
// taking one is ClaimSession's explicit call. An unowned session with no
// turns (never saved to, or cleared) takes s.User as its owner, as a new
// one would: it shows nothing that a new session would not. Only ID, User,
// Title and Metadata are read; a zero CreatedAt means now.
func (m *PersistentBufferMemory) CreateSession(ctx context.Context, s SessionInfo) (err error) {
	defer m.trace(&ctx, opCreateSession, s.ID).end(&err)
	key, err := m.check(s.ID)
	if err != nil {
		return err
	}
	if s, err = m.checkSessionInfo(s); err != nil {
		return err
	}
	st, err := m.store()
	if err != nil {
		return err
	}
	if err := st.CreateSession(ctx, key, s); err != nil {
		return fmt.Errorf("memory: create session: %w", err)
	}
	return nil
}

// checkSessionInfo validates what CreateSession and Import record of a
// session (owner, title, metadata) and returns s with its metadata
// normalized.
func (m *PersistentBufferMemory) checkSessionInfo(s SessionInfo) (SessionInfo, error) {
	return driver.PrepareSessionInfo(s, m.maxBytes)
}

// ClaimSession makes user the owner of the unowned session sessionID,
// with its turns: the one way to take a session that SaveTurn created
// without an owner. It is atomic: of two claims at once exactly one wins,
// and the other is ErrSessionOwned, as is a claim of a session another
// user owns. A claim of a session the user owns already is no change. A
// session that does not exist is ErrSessionNotFound (CreateSession makes
// one), and an empty user ErrInvalidUser. An app lets a user claim only a
// session it knows is theirs: the ID alone proves nothing.
func (m *PersistentBufferMemory) ClaimSession(ctx context.Context, sessionID, user string) (err error) {
	defer m.trace(&ctx, opClaimSession, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return err
	}
	if err := ValidateUser(user); err != nil {
		return err
	}
	if user == "" {
		return fmt.Errorf("%w: empty", ErrInvalidUser)
	}
	st, err := m.store()
	if err != nil {
		return err
	}
	if err := st.ClaimSession(ctx, key, user); err != nil {
		return fmt.Errorf("memory: claim session: %w", err)
	}
	return nil
}

// SessionInfo describes the session: owner, title, metadata, counts and
// times. A session that does not exist is ErrSessionNotFound.
func (m *PersistentBufferMemory) SessionInfo(ctx context.Context, sessionID string) (_ SessionInfo, err error) {
	defer m.trace(&ctx, opSessionInfo, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return SessionInfo{}, err
	}
	info, err := m.backend.SessionInfo(ctx, key)
	if err != nil {
		return SessionInfo{}, fmt.Errorf("memory: session info: %w", err)
	}
	info.ID = sessionID
	return info, nil
}

// ListSessions returns a page of the tenant's sessions (of q.User's
// exactly, when given), most recently updated first. Pages are cut by
// keyset, never OFFSET: while sessions are updated, one moved to the top
// after its page was read is not listed again, and no session that stays
// put is skipped. A malformed q.After is ErrInvalidCursor.
func (m *PersistentBufferMemory) ListSessions(ctx context.Context, q SessionQuery) (_ SessionPage, err error) {
	defer m.trace(&ctx, opListSessions, "").end(&err)
	st, err := m.store()
	if err != nil {
		return SessionPage{}, err
	}
	if err := ValidateUser(q.User); err != nil {
		return SessionPage{}, err
	}
	switch {
	case q.Limit < 0 || q.Limit > MaxListLimit:
		return SessionPage{}, fmt.Errorf("%w: limit %d, want 0 to %d", ErrInvalidOption, q.Limit, MaxListLimit)
	case q.Limit == 0:
		q.Limit = DefaultListLimit
	}
	p, err := st.ListSessions(ctx, m.tenant, q)
	if err != nil {
		return SessionPage{}, fmt.Errorf("memory: list sessions: %w", err)
	}
	return p, nil
}

// DeleteUser removes every session of the user in this tenant (the owner
// matched exactly): turns, search entries and cached windows, on every
// server (another server's cached window is found gone at its next load).
// It works in batches of driver.DeleteBatch sessions, and reports how many
// sessions and messages it removed. A save racing it either lands before a
// batch and is removed with it, or fails with ErrSessionDeleted; never
// half, and the user's words never survive in a new session. A save begun
// after DeleteUser returned starts a new, unowned session. Cut off by ctx,
// it returns what it removed so far with the error; every session is
// removed whole or not at all, saves into those removed are refused until
// it is run again, and running it again removes the rest. An empty user
// is ErrInvalidUser: unowned sessions are not a user's.
func (m *PersistentBufferMemory) DeleteUser(ctx context.Context, user string) (_ DeleteReport, err error) {
	defer m.trace(&ctx, opDeleteUser, "").end(&err)
	if err := ValidateUser(user); err != nil {
		return DeleteReport{}, err
	}
	if user == "" {
		return DeleteReport{}, fmt.Errorf("%w: empty", ErrInvalidUser)
	}
	return m.deleteSessions(ctx, "delete user", &user, time.Time{})
}

// Expire removes the tenant's sessions not updated since before, with
// their turns, search entries and cached windows, in batches of
// driver.DeleteBatch sessions. It is safe to run from many servers at once: each
// session is removed, and counted, once. A session updated while Expire
// runs is kept. Cut off by ctx, it returns what it removed so far with the
// error, every session removed whole or not at all.
func (m *PersistentBufferMemory) Expire(ctx context.Context, before time.Time) (_ DeleteReport, err error) {
	defer m.trace(&ctx, opExpire, "").end(&err)
	if before.IsZero() {
		return DeleteReport{}, fmt.Errorf("%w: expire needs a time", ErrInvalidOption)
	}
	return m.deleteSessions(ctx, "expire", nil, before)
}

func (m *PersistentBufferMemory) deleteSessions(ctx context.Context, op string, user *string, before time.Time) (DeleteReport, error) {
	st, err := m.store()
	if err != nil {
		return DeleteReport{}, err
	}
	r, keys, err := st.DeleteSessions(ctx, m.tenant, user, before, driver.DeleteBatch)
	for _, k := range keys {
		m.cache.invalidate(k)
	}
	if l := m.logOn(ctx, slog.LevelInfo); l != nil && (r.Sessions > 0 || err != nil) {
		attrs := []slog.Attr{slog.String("op", op), slog.String("tenant", m.tenant), slog.Int("sessions", r.Sessions), slog.Int("messages", r.Messages)}
		if err != nil {
			attrs = append(attrs, slog.Any("error", err))
		}
		l.LogAttrs(ctx, slog.LevelInfo, "turnkeep: sessions deleted", attrs...)
	}
	if err != nil {
		return r, fmt.Errorf("memory: %s: %w", op, err)
	}
	return r, nil
}

// ExpireEvery runs Expire(now - idle) every interval until ctx ends, for a
// long-lived server; it returns ctx's error. A failed run is passed to
// onError (when not nil) and the next run goes ahead.
//
//	go m.ExpireEvery(ctx, time.Hour, 90*24*time.Hour, func(err error) { log.Print(err) })
func (m *PersistentBufferMemory) ExpireEvery(ctx context.Context, interval, idle time.Duration, onError func(error)) error {
	if interval <= 0 || idle <= 0 {
		return fmt.Errorf("%w: expire every %v after %v idle", ErrInvalidOption, interval, idle)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := m.Expire(ctx, m.now().Add(-idle)); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Search finds messages in the tenant's sessions (q.User's exactly, or one
// session's, when given) by the database's full-text search, best first.
// Every word of q.Text must occur; characters that the database's search
// syntax would read as operators are taken as text, so a query can never
// change the search. Text in languages written without spaces (Chinese,
// Japanese, Korean) is found by its characters. A query with no word is
// an empty result. Hits are ranked by how often the words occur in the
// message against its length (BM25's term-frequency part, computed the
// same on SQLite and PostgreSQL), among at most 200 matches per
// statement: on SQLite the newest, on PostgreSQL the first its index
// yields (about the oldest). So a word in half a million messages costs a
// few times what a rare word does, and its hits are the best of those
// matches, not of all. MySQL returns matches in session and turn order,
// each scored 1. Text longer than MaxSearchBytes, or with more
// than MaxSearchTerms distinct words, is ErrInvalidQuery, and reaches no
// database. Search returns once ctx is done.
func (m *PersistentBufferMemory) Search(ctx context.Context, q SearchQuery) (_ []SearchHit, err error) {
	defer m.trace(&ctx, opSearch, q.SessionID).end(&err)
	st, err := m.store()
	if err != nil {
		return nil, err
	}
	if err := ValidateUser(q.User); err != nil {
		return nil, err
	}
	if q.SessionID != "" {
		if err := ValidateSessionID(q.SessionID); err != nil {
			return nil, err
		}
	}
	// The limits first: a query too long is refused by its length alone.
	if _, err := driver.QueryTerms(q.Text); err != nil {
		return nil, err
	}
	if err := driver.ValidateText(q.Text); err != nil {
		return nil, fmt.Errorf("%w: search text %v", ErrInvalidOption, err)
	}
	if len(q.Text) > m.maxBytes {
		return nil, fmt.Errorf("%w: search text is %d bytes, limit %d", ErrInvalidOption, len(q.Text), m.maxBytes)
	}
	switch {
	case q.Limit < 0 || q.Limit > MaxListLimit:
		return nil, fmt.Errorf("%w: limit %d, want 0 to %d", ErrInvalidOption, q.Limit, MaxListLimit)
	case q.Limit == 0:
		q.Limit = driver.DefaultSearchLimit
	}
	hits, err := st.Search(ctx, m.tenant, q)
	if err != nil {
		return nil, fmt.Errorf("memory: search: %w", err)
	}
	return hits, nil
}

// History returns a page of the session's turns, oldest first (or newest
// first with q.NewestFirst), for reading or exporting a whole
// conversation without loading it at once. Pass the page's Next as the
// next query's After; a malformed After is ErrInvalidCursor. A session
// that does not exist has an empty history.
func (m *PersistentBufferMemory) History(ctx context.Context, sessionID string, q HistoryQuery) (_ HistoryPage, err error) {
	defer m.trace(&ctx, opHistory, sessionID).end(&err)
	key, err := m.check(sessionID)
	if err != nil {
		return HistoryPage{}, err
	}
	st, err := m.store()
	if err != nil {
		return HistoryPage{}, err
	}
	switch {
	case q.Limit < 0 || q.Limit > MaxListLimit:
		return HistoryPage{}, fmt.Errorf("%w: limit %d, want 0 to %d", ErrInvalidOption, q.Limit, MaxListLimit)
	case q.Limit == 0:
		q.Limit = DefaultListLimit
	}
	p, err := st.History(ctx, key, q)
	if err != nil {
		return HistoryPage{}, fmt.Errorf("memory: history: %w", err)
	}
	return p, nil
}
