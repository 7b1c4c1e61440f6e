package memory

import "context"

// Memory is what a chat application uses: save a turn, append to it as an
// answer streams, load the recent context of a session, forget a session.
type Memory interface {
	SaveTurn(ctx context.Context, sessionID string, turn Turn) error
	AppendMessages(ctx context.Context, sessionID, turnID string, msgs ...Message) error
	LoadContext(ctx context.Context, sessionID string, opts ...LoadOption) (Window, error)
	Clear(ctx context.Context, sessionID string) error
}

// Backend is the storage a PersistentBufferMemory needs. Implementations
// must be safe for concurrent use, validate session IDs with
// ValidateSessionID, store a turn whose ID the session already holds only
// once, and store a message whose ID the session already holds only once.
// Both backends in package backend implement it.
//
// A backend given a PreparedTurn or PreparedMessages that Prepare or
// PrepareMessages made stores them as they are; it validates any other
// itself.
type Backend interface {
	// Save stores turn atomically as the newest turn of the session and
	// reports what it did.
	Save(ctx context.Context, sessionID string, turn PreparedTurn) (Saved, error)
	// Append adds msgs to the session's turn turnID atomically, skipping
	// every message whose ID the session holds already. It returns an
	// error wrapping ErrTurnNotFound if the session has no such turn.
	Append(ctx context.Context, sessionID, turnID string, msgs []PreparedMessage) (Saved, error)
	// Load returns the session's version and, when it is not q.Known, the
	// window q asks for, read in the same snapshot: at least every turn of
	// TrimWindow's answer, and at most q.MaxTurns turns. When the version
	// is q.Known, w is empty and nothing else is read. An unknown session
	// has version NoSession and an empty window.
	Load(ctx context.Context, sessionID string, q WindowQuery) (w Window, v Version, err error)
	// ClearSession removes every turn of the session.
	ClearSession(ctx context.Context, sessionID string) error
	// SessionInfo describes the session; one that does not exist (never
	// created nor saved to, or cleared) is ErrSessionNotFound, while one
	// created with no turns yet is returned with TurnCount 0.
	SessionInfo(ctx context.Context, sessionID string) (SessionInfo, error)
}

// A WindowQuery says which window Backend.Load returns.
type WindowQuery struct {
	MaxTurns    int          // at most the newest MaxTurns turns; at least 1
	TokenBudget int          // > 0: only the newest whole turns whose tokens fit it, and always the newest turn
	Known       Version      // the version the caller holds; UnknownVersion for none
	Counter     TokenCounter // counts messages stored without a count, by a release before counts were stored; nil: DefaultTokenCounter
}

var (
	_ Memory = (*BufferMemory)(nil)
	_ Memory = (*PersistentBufferMemory)(nil)
)
