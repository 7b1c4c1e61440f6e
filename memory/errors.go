package memory

import "github.com/turnkeep/turnkeep/driver"

// The errors of this package, compared with errors.Is. Package driver
// defines them, so that a backend returns the same values.
var (
	// ErrInvalidSessionID is returned by ValidateSessionID, and so by every
	// Memory method and every backend for an empty, over-long (more than
	// MaxSessionIDBytes), non-UTF-8 or NUL-containing session ID.
	ErrInvalidSessionID = driver.ErrInvalidSessionID

	// ErrInvalidTurn is returned by every SaveTurn (and driver.Prepare) for
	// a turn with no message, a bad ID, or metadata that cannot be stored as
	// JSON exactly as given.
	ErrInvalidTurn = driver.ErrInvalidTurn

	// ErrTurnTooLarge is returned by every SaveTurn (and driver.Prepare)
	// when a message or the metadata JSON exceeds the maximum message size.
	ErrTurnTooLarge = driver.ErrTurnTooLarge

	// ErrSessionNotFound is returned by SessionInfo (and so by Export) for a
	// session that does not exist: never created nor saved to, or removed
	// by Clear, DeleteUser or Expire. A session CreateSession made exists
	// before its first turn: SessionInfo returns it with TurnCount 0.
	ErrSessionNotFound = driver.ErrSessionNotFound

	// ErrTurnNotFound is returned by AppendMessages when the session holds
	// no turn with the given ID.
	ErrTurnNotFound = driver.ErrTurnNotFound

	// ErrSessionDeleted is returned by SaveTurn (and Replace, Import and
	// CreateSession) when DeleteUser deleted the session while the call
	// was under way: nothing is stored, so the erased user's words (turns,
	// a title, metadata) do not survive in a new session. A call begun
	// after DeleteUser returned starts a new session.
	ErrSessionDeleted = driver.ErrSessionDeleted

	// ErrInvalidTenant is returned for a tenant name ValidateTenant
	// refuses.
	ErrInvalidTenant = driver.ErrInvalidTenant

	// ErrInvalidUser is returned for an owner name ValidateUser refuses.
	ErrInvalidUser = driver.ErrInvalidUser

	// ErrSessionOwned is returned by CreateSession, ClaimSession and Import
	// for a session another user owns.
	ErrSessionOwned = driver.ErrSessionOwned

	// ErrSessionExists is returned by CreateSession and Import for an
	// unowned session that holds turns, which only ClaimSession gives an
	// owner.
	ErrSessionExists = driver.ErrSessionExists

	// ErrInvalidCursor is returned for a page cursor (SessionQuery.After,
	// HistoryQuery.After) that no page returned.
	ErrInvalidCursor = driver.ErrInvalidCursor

	// ErrInvalidImport is returned by Import for input that is not the
	// JSON Lines Export writes, or that gives a turn ID or message ID
	// other content than the file or the session holds under it.
	ErrInvalidImport = driver.ErrInvalidImport

	// ErrInvalidQuery is returned by Search, and by the Search of every
	// backend in package backend (through driver.QueryTerms), for search text
	// longer than MaxSearchBytes or with more than MaxSearchTerms distinct
	// terms.
	ErrInvalidQuery = driver.ErrInvalidQuery

	// ErrNotSupported is returned by the session methods of a
	// PersistentBufferMemory whose backend is not a driver.SessionStore.
	ErrNotSupported = driver.ErrNotSupported

	// ErrInvalidOption is returned by NewPersistentBufferMemory for an invalid
	// option or a nil backend, by every method of a BufferMemory built with an
	// invalid option, and by backends for an invalid maxTurns. It is the
	// one value of a bad option in every turnkeep package (dataflow's and
	// migrate's ErrInvalidOption are the same).
	ErrInvalidOption = driver.ErrInvalidOption

	// ErrConflict is returned by SaveTurn for a guarded turn (Seq > 0)
	// that would not land at exactly its Seq: the session moved on.
	// Nothing is written.
	ErrConflict = driver.ErrConflict

	// ErrClosed is returned by every method of a PersistentBufferMemory
	// after Close, and of one not made by NewPersistentBufferMemory (the
	// zero value), and by a backend's methods when it has no store.
	ErrClosed = driver.ErrClosed
)
