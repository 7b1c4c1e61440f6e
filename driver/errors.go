package driver

import (
	"errors"

	"github.com/turnkeep/turnkeep/internal/optx"
)

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

	// ErrSessionNotFound is returned by SessionInfo (and so by Export) for a
	// session that does not exist: never created nor saved to, or removed
	// by Clear, DeleteUser or Expire. A session CreateSession made exists
	// before its first turn: SessionInfo returns it with TurnCount 0.
	ErrSessionNotFound = errors.New("memory: session not found")

	// ErrTurnNotFound is returned by AppendMessages when the session holds
	// no turn with the given ID.
	ErrTurnNotFound = errors.New("memory: turn not found")

	// ErrSessionDeleted is returned by SaveTurn (and Replace, Import and
	// CreateSession) when DeleteUser deleted the session while the call
	// was under way: nothing is stored, so the erased user's words (turns,
	// a title, metadata) do not survive in a new session. A call begun
	// after DeleteUser returned starts a new session.
	ErrSessionDeleted = errors.New("memory: session deleted while saving")

	// ErrInvalidTenant is returned for a tenant name ValidateTenant
	// refuses.
	ErrInvalidTenant = errors.New("memory: invalid tenant")

	// ErrInvalidUser is returned for an owner name ValidateUser refuses.
	ErrInvalidUser = errors.New("memory: invalid user")

	// ErrSessionOwned is returned by CreateSession, ClaimSession and Import
	// for a session another user owns.
	ErrSessionOwned = errors.New("memory: session owned by another user")

	// ErrSessionExists is returned by CreateSession and Import for an
	// unowned session that holds turns, which only ClaimSession gives an
	// owner.
	ErrSessionExists = errors.New("memory: session exists without an owner")

	// ErrInvalidCursor is returned for a page cursor (SessionQuery.After,
	// HistoryQuery.After) that no page returned.
	ErrInvalidCursor = errors.New("memory: invalid cursor")

	// ErrInvalidImport is returned by Import for input that is not the
	// JSON Lines Export writes, or that gives a turn ID or message ID
	// other content than the file or the session holds under it.
	ErrInvalidImport = errors.New("memory: invalid import")

	// ErrInvalidQuery is returned by Search, and by the Search of every
	// SessionStore in package backend (through QueryTerms), for search text
	// longer than MaxSearchBytes or with more than MaxSearchTerms distinct
	// terms.
	ErrInvalidQuery = errors.New("memory: invalid query")

	// ErrNotSupported is returned by the session methods of a
	// PersistentBufferMemory whose backend is not a SessionStore.
	ErrNotSupported = errors.New("memory: not supported by the backend")

	// ErrInvalidOption is returned by NewPersistentBufferMemory for an invalid
	// option or a nil backend, by every method of a BufferMemory built with an
	// invalid option, and by backends for an invalid maxTurns.
	ErrInvalidOption = optx.ErrInvalidOption

	// ErrConflict is returned by a guarded save (a Turn whose Seq is not
	// 0) when the turn would not land at exactly its Seq: the session
	// moved on (or has not reached it). Nothing is written.
	ErrConflict = errors.New("memory: conflict: the session moved on")

	// ErrClosed is returned by every method of a PersistentBufferMemory
	// after Close, and of one not made by NewPersistentBufferMemory (the
	// zero value), and by a backend's methods when it has no store.
	ErrClosed = errors.New("memory: closed")
)
