package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/turnkeep/turnkeep/driver"
)

// InMemoryBackend is a driver.Backend that keeps every turn in process
// memory, for tests and demos. Like a database it stores metadata as JSON
// and decodes it on every read, so callers never share its state. It is
// safe for concurrent use.
type InMemoryBackend struct {
	mu       sync.Mutex // protects sessions, erased and forks
	sessions map[string]*inMemorySession
	erased   map[string]time.Time // sessions DeleteUser deleted, and when it returned (zero while it runs); see ErasedRow
	forks    uint64               // forks made, to order ListForks (inmemory_fork.go)
}

type inMemorySession struct {
	turns     []storedTurn        // in save order
	ids       map[string]struct{} // turn IDs
	msgIDs    map[string]struct{} // message IDs
	version   driver.Version      // random at creation, then one more per stored turn
	createdAt time.Time
	updatedAt time.Time
	user      string
	title     string
	metadata  []byte          // JSON, nil for none
	summary   inMemorySummary // goes with the session: a clear, replacement or deletion drops it

	inMemoryFork // its ancestry, when it is a fork (inmemory_fork.go)
}

// storedTurn is a turn as stored: its messages encoded, so that every read
// decodes fresh values and callers never share the backend's state. A
// stored turn is never modified: an append replaces it.
type storedTurn struct {
	id       string
	at       time.Time
	metadata []byte // JSON, nil for none
	msgs     []driver.PreparedMessage
	tokens   int
}

var _ driver.Backend = (*InMemoryBackend)(nil)

// NewInMemoryBackend returns an empty InMemoryBackend. The zero value is
// ready to use too.
func NewInMemoryBackend() *InMemoryBackend {
	return &InMemoryBackend{}
}

// Save stores turn as the newest turn of the session and reports what it
// did. A turn driver.Prepare made is stored as it is; any other is
// validated first (DefaultMaxMessageBytes). A turn with Seq > 0 whose ID
// the session does not hold is stored only as the session's turn Seq:
// otherwise the error wraps driver.ErrConflict and nothing is written. It
// implements driver.Backend.
func (b *InMemoryBackend) Save(ctx context.Context, sessionID string, turn driver.PreparedTurn) (driver.Saved, error) {
	if err := checkRequest(ctx, sessionID); err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !turn.Prepared() {
		var err error
		if turn, err = driver.Prepare(turn.Turn, now, driver.DefaultMaxMessageBytes, nil); err != nil {
			return driver.Saved{}, fmt.Errorf("backend: %w", err)
		}
	}
	st := storedTurn{id: turn.ID, at: turn.Timestamp, metadata: turn.Metadata, msgs: turn.Encoded, tokens: turn.Tokens()}

	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[sessionID]
	if at, ok := b.erased[sessionID]; ok && s == nil && (at.IsZero() || at.After(now)) {
		return driver.Saved{}, fmt.Errorf("backend: %s: %w", sessionName(sessionID), bare{driver.ErrSessionDeleted})
	}
	if n := 0; turn.Seq > 0 {
		if s != nil {
			if _, ok := s.ids[st.id]; ok {
				return driver.Saved{}, nil
			}
			n = len(s.turns)
		}
		if turn.Seq != n+1 {
			return driver.Saved{}, fmt.Errorf("backend: %s turn %q: %w: it is not turn %d", sessionName(sessionID), st.id, bare{driver.ErrConflict}, turn.Seq)
		}
	}
	if s == nil {
		s = &inMemorySession{ids: make(map[string]struct{}), msgIDs: make(map[string]struct{}), createdAt: now, version: driver.Version(rand.Int64N(1<<62)) + 1}
		if b.sessions == nil {
			b.sessions = make(map[string]*inMemorySession)
		}
		b.sessions[sessionID] = s
	}
	if _, ok := s.ids[st.id]; ok {
		return driver.Saved{}, nil
	}
	for i := range st.msgs {
		if _, ok := s.msgIDs[st.msgs[i].ID]; ok {
			return driver.Saved{}, fmt.Errorf("backend: %s turn %q: %w: message id %q is stored in another turn", sessionName(sessionID), st.id, bare{driver.ErrInvalidTurn}, st.msgs[i].ID)
		}
	}
	s.ids[st.id] = struct{}{}
	for i := range st.msgs {
		s.msgIDs[st.msgs[i].ID] = struct{}{}
	}
	s.turns = append(s.turns, st)
	s.updatedAt = now
	if len(s.turns) > 1 {
		s.version++
	}
	return driver.Saved{Stored: true, Seq: len(s.turns), Version: s.version, Messages: len(st.msgs)}, nil
}

// Append adds msgs to the session's turn turnID, skipping every message
// whose ID the session holds already. It implements driver.Backend.
func (b *InMemoryBackend) Append(ctx context.Context, sessionID, turnID string, msgs []driver.PreparedMessage) (driver.Saved, error) {
	if err := checkRequest(ctx, sessionID); err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	msgs, err := preparedMessages(msgs)
	if err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[sessionID]
	i := -1
	if s != nil {
		for j := range s.turns {
			if s.turns[j].id == turnID {
				i = j
				break
			}
		}
	}
	if i < 0 {
		return driver.Saved{}, fmt.Errorf("backend: %w", errTurnNotFound(sessionID, turnID))
	}
	if err := s.writableTurn(sessionID, i); err != nil {
		return driver.Saved{}, fmt.Errorf("backend: %w", err)
	}
	st := s.turns[i]
	st.msgs = append([]driver.PreparedMessage(nil), st.msgs...)
	n := 0
	for _, m := range msgs {
		if _, ok := s.msgIDs[m.ID]; ok {
			continue
		}
		s.msgIDs[m.ID] = struct{}{}
		st.msgs = append(st.msgs, m)
		st.tokens += m.Tokens
		n++
	}
	if n == 0 {
		return driver.Saved{}, nil
	}
	s.turns[i] = st
	s.version++
	s.updatedAt = time.Now().UTC().Truncate(time.Microsecond)
	return driver.Saved{Stored: true, Seq: i + 1, Version: s.version, Messages: n}, nil
}

// Load returns the window q asks for, exactly, unless the session's
// version is q.Known. It implements driver.Backend.
func (b *InMemoryBackend) Load(ctx context.Context, sessionID string, q driver.WindowQuery) (driver.Window, driver.Version, error) {
	if err := checkRequest(ctx, sessionID); err != nil {
		return driver.Window{}, 0, fmt.Errorf("backend: %w", err)
	}
	if err := checkQuery(q); err != nil {
		return driver.Window{}, 0, err
	}
	b.mu.Lock()
	s := b.sessions[sessionID]
	var stored []storedTurn
	var count int
	var sum *driver.Summary
	v := driver.NoSession
	if s != nil {
		v = s.version
		if q.Summary && s.summary.Turns > 0 {
			x := s.summary.Summary
			sum = &x
		}
		count = len(s.turns)
		// Copied under the lock: an append replaces an element of s.turns
		// (a stored turn's messages are never modified, the slot is).
		stored = append([]storedTurn(nil), s.turns[max(0, count-q.MaxTurns):]...)
		sum, first := 0, len(stored)
		// The newest turn always, even alone over the budget (see
		// driver.TrimWindow).
		for i := len(stored) - 1; i >= 0 && (q.TokenBudget == 0 || sum+stored[i].tokens <= q.TokenBudget || i == len(stored)-1); i-- {
			sum, first = sum+stored[i].tokens, i
		}
		stored = stored[first:]
	}
	b.mu.Unlock()
	if v == q.Known {
		return driver.Window{}, v, nil
	}

	w := driver.Window{TurnCount: count, Summary: sum}
	if len(stored) > 0 {
		w.Turns = make([]driver.Turn, len(stored))
	}
	for i := range stored {
		t, err := stored[i].turn()
		if err != nil {
			return driver.Window{}, 0, err
		}
		t.Seq = count - len(stored) + i + 1
		w.Turns[i] = t
		w.Tokens += stored[i].tokens
	}
	return w, v, nil
}

// checkQuery refuses a window query with no turns or a negative budget.
func checkQuery(q driver.WindowQuery) error {
	if q.MaxTurns < 1 {
		return fmt.Errorf("backend: %w: max turns must be at least 1, got %d", driver.ErrInvalidOption, q.MaxTurns)
	}
	if q.TokenBudget < 0 {
		return fmt.Errorf("backend: %w: token budget must not be negative, got %d", driver.ErrInvalidOption, q.TokenBudget)
	}
	return nil
}

// ClearSession removes every turn of the session.
func (b *InMemoryBackend) ClearSession(ctx context.Context, sessionID string) error {
	if err := checkRequest(ctx, sessionID); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	if s := b.sessions[sessionID]; s != nil {
		b.repointForks(sessionID, s)
	}
	delete(b.sessions, sessionID)
	b.mu.Unlock()
	return nil
}

// SessionInfo describes the session; one that does not exist is
// driver.ErrSessionNotFound.
func (b *InMemoryBackend) SessionInfo(ctx context.Context, sessionID string) (driver.SessionInfo, error) {
	if err := checkRequest(ctx, sessionID); err != nil {
		return driver.SessionInfo{}, fmt.Errorf("backend: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[sessionID]
	if s == nil {
		return driver.SessionInfo{}, fmt.Errorf("backend: %s: %w", sessionName(sessionID), bare{driver.ErrSessionNotFound})
	}
	return s.info(sessionID)
}

// info describes s, named by its key; b.mu is held.
func (s *inMemorySession) info(key string) (driver.SessionInfo, error) {
	_, id := driver.ParseSessionKey(key)
	info := driver.SessionInfo{ID: id, User: s.user, Title: s.title, TurnCount: len(s.turns), CreatedAt: s.createdAt, UpdatedAt: s.updatedAt}
	if s.point != nil {
		fp := *s.point
		info.ForkOf = &fp
	}
	for i := range s.turns {
		info.Tokens += s.turns[i].tokens
	}
	if s.metadata != nil {
		if err := json.Unmarshal(s.metadata, &info.Metadata); err != nil {
			return driver.SessionInfo{}, fmt.Errorf("backend: %s metadata: %w", sessionName(key), err)
		}
	}
	return info, nil
}

// checkRequest fails like a database would for a done context, and
// validates the session ID.
func checkRequest(ctx context.Context, sessionID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return driver.ValidateSessionKey(sessionID)
}
