package memory

import "errors"

var (
	// ErrInvalidSessionID is returned by ValidateSessionID, and so by every
	// Memory and Backend method, for an empty, over-long (more than
	// MaxSessionIDBytes), non-UTF-8 or NUL-containing session ID.
	ErrInvalidSessionID = errors.New("memory: invalid session id")

	// ErrInvalidTurn is returned by PrepareTurn, and so by every SaveTurn, for
	// a turn with no message, a bad ID, or metadata that cannot be stored as
	// JSON exactly as given.
	ErrInvalidTurn = errors.New("memory: invalid turn")

	// ErrTurnTooLarge is returned by PrepareTurn, and so by every SaveTurn,
	// when a message or the metadata JSON exceeds the maximum message size.
	ErrTurnTooLarge = errors.New("memory: turn too large")

	// ErrSessionNotFound is returned by Backend.SessionInfo for a session that
	// holds no turns.
	ErrSessionNotFound = errors.New("memory: session not found")

	// ErrTurnNotFound is returned by AppendMessages when the session holds
	// no turn with the given ID.
	ErrTurnNotFound = errors.New("memory: turn not found")

	// ErrSessionDeleted is returned by SaveTurn (and Replace) when
	// DeleteUser deleted the session while the save was under way: the
	// turn is not stored, so the erased user's words do not survive in a
	// new session. A save begun after DeleteUser returned starts a new,
	// unowned session.
	ErrSessionDeleted = errors.New("memory: session deleted while saving")

	// ErrInvalidTenant is returned for a tenant name ValidateTenant
	// refuses.
	ErrInvalidTenant = errors.New("memory: invalid tenant")

	// ErrInvalidUser is returned for an owner name ValidateUser refuses.
	ErrInvalidUser = errors.New("memory: invalid user")

	// ErrSessionOwned is returned by CreateSession for a session another
	// user owns.
	ErrSessionOwned = errors.New("memory: session owned by another user")

	// ErrInvalidCursor is returned for a page cursor (SessionQuery.After,
	// HistoryQuery.After) that no page returned.
	ErrInvalidCursor = errors.New("memory: invalid cursor")

	// ErrInvalidImport is returned by Import for input that is not the
	// JSON Lines Export writes.
	ErrInvalidImport = errors.New("memory: invalid import")

	// ErrNotSupported is returned by the session methods of a
	// PersistentBufferMemory whose backend is not a SessionStore.
	ErrNotSupported = errors.New("memory: not supported by the backend")

	// ErrInvalidOption is returned by NewPersistentBufferMemory for an invalid
	// option or a nil backend, by every method of a BufferMemory built with an
	// invalid option, and by backends for an invalid maxTurns.
	ErrInvalidOption = errors.New("memory: invalid option")

	// ErrClosed is returned by every method of a PersistentBufferMemory
	// after Close, and of one not made by NewPersistentBufferMemory (the
	// zero value), and by a backend's methods when it has no store.
	ErrClosed = errors.New("memory: closed")
)
