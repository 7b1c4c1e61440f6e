package memory

import "context"

// Memory is what a chat application uses: save a turn, load the recent
// context of a session, forget a session.
type Memory interface {
	SaveTurn(ctx context.Context, sessionID string, turn Turn) error
	LoadContext(ctx context.Context, sessionID string) (Window, error)
	Clear(ctx context.Context, sessionID string) error
}

// Backend is the storage a PersistentBufferMemory needs. Implementations
// must be safe for concurrent use, validate with ValidateSessionID and
// PrepareTurn, and store a turn whose ID the session already holds only once
// (a second save of that ID returns nil and changes nothing).
type Backend interface {
	// SaveTurn stores turn atomically as the newest turn of the session.
	SaveTurn(ctx context.Context, sessionID string, turn Turn) error
	// LoadWindow returns the newest maxTurns turns, oldest first, and the
	// session's total turn count. An unknown session yields an empty Window.
	LoadWindow(ctx context.Context, sessionID string, maxTurns int) (Window, error)
	// ClearSession removes every turn of the session.
	ClearSession(ctx context.Context, sessionID string) error
	// SessionInfo returns ErrSessionNotFound for a session with no turns.
	SessionInfo(ctx context.Context, sessionID string) (SessionInfo, error)
}

// A TurnStorer is a Backend that also reports whether a save stored the
// turn (true) or found its ID already stored and changed nothing (false).
// PersistentBufferMemory uses it, when the backend has it, to keep a cached
// window exact after a retry with a caller-chosen ID, without reading
// through. Both backends in package backend implement it.
type TurnStorer interface {
	StoreTurn(ctx context.Context, sessionID string, turn Turn) (stored bool, err error)
}

var (
	_ Memory = (*BufferMemory)(nil)
	_ Memory = (*PersistentBufferMemory)(nil)
)
