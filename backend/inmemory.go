package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/turnkeep/turnkeep/memory"
)

// InMemoryBackend is a memory.Backend that keeps every turn in process
// memory, for tests and demos. Like a database it stores metadata as JSON
// and decodes it on every read, so callers never share its state. It is
// safe for concurrent use.
type InMemoryBackend struct {
	mu       sync.Mutex // protects sessions
	sessions map[string]*inMemorySession
}

type inMemorySession struct {
	turns     []storedTurn // in save order
	ids       map[string]struct{}
	version   memory.Version // random at creation, then one more per stored turn
	createdAt time.Time
	updatedAt time.Time
}

type storedTurn struct {
	turn     memory.Turn // Metadata is nil; see metadata
	metadata []byte      // JSON, nil for none
}

var (
	_ memory.VersionedBackend = (*InMemoryBackend)(nil)
	_ memory.TurnStorer       = (*InMemoryBackend)(nil)
)

// NewInMemoryBackend returns an empty InMemoryBackend. The zero value is
// ready to use too.
func NewInMemoryBackend() *InMemoryBackend {
	return &InMemoryBackend{}
}

// SaveTurn validates turn with memory.PrepareTurn (DefaultMaxMessageBytes)
// and appends it to the session. A turn whose ID the session already holds
// is not stored again, and nil is returned.
func (b *InMemoryBackend) SaveTurn(ctx context.Context, sessionID string, turn memory.Turn) error {
	_, err := b.StoreTurn(ctx, sessionID, turn)
	return err
}

// StoreTurn is SaveTurn that also reports whether the turn was stored
// (false: the session already held its ID). It implements
// memory.TurnStorer.
func (b *InMemoryBackend) StoreTurn(ctx context.Context, sessionID string, turn memory.Turn) (bool, error) {
	s, err := b.SaveTurnVersioned(ctx, sessionID, memory.PreparedTurn{Turn: turn})
	return s.Stored, err
}

// MaxMessageBytes is memory.DefaultMaxMessageBytes, the limit the backend
// validates with. It implements memory.VersionedBackend.
func (b *InMemoryBackend) MaxMessageBytes() int { return memory.DefaultMaxMessageBytes }

// SaveTurnVersioned is SaveTurn that also reports the turn's sequence number
// and the session's new version. A turn memory.Prepare made is stored as it
// is; any other is validated first. It implements memory.VersionedBackend.
func (b *InMemoryBackend) SaveTurnVersioned(ctx context.Context, sessionID string, turn memory.PreparedTurn) (memory.Saved, error) {
	if err := checkRequest(ctx, sessionID); err != nil {
		return memory.Saved{}, fmt.Errorf("backend: save turn: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !turn.Prepared(memory.DefaultMaxMessageBytes) {
		var err error
		if turn, err = memory.Prepare(turn.Turn, now, memory.DefaultMaxMessageBytes); err != nil {
			return memory.Saved{}, fmt.Errorf("backend: save turn: %w", err)
		}
	}
	t, metadata := turn.Turn, turn.Metadata
	t.Metadata = nil

	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[sessionID]
	if s == nil {
		s = &inMemorySession{ids: make(map[string]struct{}), createdAt: now, version: memory.Version(rand.Int64N(1<<62)) + 1}
		if b.sessions == nil {
			b.sessions = make(map[string]*inMemorySession)
		}
		b.sessions[sessionID] = s
	}
	if _, ok := s.ids[t.ID]; ok {
		return memory.Saved{}, nil
	}
	s.ids[t.ID] = struct{}{}
	s.turns = append(s.turns, storedTurn{turn: t, metadata: metadata})
	s.updatedAt = now
	if len(s.turns) > 1 {
		s.version++
	}
	return memory.Saved{Stored: true, Seq: len(s.turns), Version: s.version}, nil
}

// LoadWindow returns the newest maxTurns turns, oldest first, and the total
// turn count; an unknown session yields an empty Window. maxTurns < 1 is an
// error wrapping memory.ErrInvalidOption.
func (b *InMemoryBackend) LoadWindow(ctx context.Context, sessionID string, maxTurns int) (memory.Window, error) {
	w, _, _, err := b.LoadWindowIfChanged(ctx, sessionID, maxTurns, memory.UnknownVersion)
	return w, err
}

// LoadWindowIfChanged is LoadWindow that returns only the session's version
// when it is known. It implements memory.VersionedBackend.
func (b *InMemoryBackend) LoadWindowIfChanged(ctx context.Context, sessionID string, maxTurns int, known memory.Version) (memory.Window, memory.Version, bool, error) {
	if err := checkRequest(ctx, sessionID); err != nil {
		return memory.Window{}, 0, false, fmt.Errorf("backend: load window: %w", err)
	}
	if maxTurns < 1 {
		return memory.Window{}, 0, false, fmt.Errorf("backend: load window: %w: max turns must be at least 1, got %d", memory.ErrInvalidOption, maxTurns)
	}
	b.mu.Lock()
	s := b.sessions[sessionID]
	var stored []storedTurn
	var count int
	v := memory.NoSession
	if s != nil {
		v = s.version
		count = len(s.turns)
		stored = s.turns[max(0, count-maxTurns):] // stored turns are never modified
	}
	b.mu.Unlock()
	if v == known {
		return memory.Window{}, v, false, nil
	}

	w := memory.Window{TurnCount: count}
	if len(stored) > 0 {
		w.Turns = make([]memory.Turn, len(stored))
	}
	for i, st := range stored {
		w.Turns[i] = st.turn
		if st.metadata != nil {
			if err := json.Unmarshal(st.metadata, &w.Turns[i].Metadata); err != nil {
				return memory.Window{}, 0, false, fmt.Errorf("backend: load window: turn %s metadata: %w", st.turn.ID, err)
			}
		}
	}
	return w, v, true, nil
}

// ClearSession removes every turn of the session.
func (b *InMemoryBackend) ClearSession(ctx context.Context, sessionID string) error {
	if err := checkRequest(ctx, sessionID); err != nil {
		return fmt.Errorf("backend: clear session: %w", err)
	}
	b.mu.Lock()
	delete(b.sessions, sessionID)
	b.mu.Unlock()
	return nil
}

// SessionInfo returns the turn count and the times of the first and latest
// save; a session with no turns yields memory.ErrSessionNotFound.
func (b *InMemoryBackend) SessionInfo(ctx context.Context, sessionID string) (memory.SessionInfo, error) {
	if err := checkRequest(ctx, sessionID); err != nil {
		return memory.SessionInfo{}, fmt.Errorf("backend: session info: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sessions[sessionID]
	if s == nil {
		return memory.SessionInfo{}, fmt.Errorf("backend: session info %q: %w", sessionID, memory.ErrSessionNotFound)
	}
	return memory.SessionInfo{TurnCount: len(s.turns), CreatedAt: s.createdAt, UpdatedAt: s.updatedAt}, nil
}

// checkRequest fails like a database would for a done context, and
// validates the session ID.
func checkRequest(ctx context.Context, sessionID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return memory.ValidateSessionID(sessionID)
}
