package driver

import (
	"context"
	"time"
)

// Defaults and limits of what a backend stores.
const (
	DefaultMaxMessageBytes = 1 << 20 // 1 MiB: the size limit of a message when none is set
	MaxSessionIDBytes      = 255
	MaxTurnIDBytes         = 128
	MaxMetadataDepth       = 100 // levels of nested objects and arrays in a turn's metadata

	// DeleteBatch is how many sessions a memory's DeleteUser and Expire
	// ask SessionStore.DeleteSessions to remove per transaction, so that
	// no lock is held for long however many there are.
	DeleteBatch = 100
)

// Backend is the storage a memory needs. Implementations must be safe for
// concurrent use, validate session keys with ValidateSessionKey, store a
// turn whose ID the session already holds only once, and store a message
// whose ID the session already holds only once. Both backends in package
// backend implement it.
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
	Summary     bool         // read the session's summary too, into Window.Summary (a SummaryStore; see there)
}

// A Replacer is a Backend that can replace a session's whole history in
// one atomic write. Both backends in package backend implement it.
type Replacer interface {
	// Replace makes turns, in order, the session's whole history,
	// atomically: readers see the old history or the new one, never a
	// mix. The session's owner, title and metadata are kept.
	Replace(ctx context.Context, sessionID string, turns []PreparedTurn) (Saved, error)
}

// An EngineReporter is a Backend that reports counters of the engine under
// it by name, as backend.DataFlowBackend reports its dataflow.DB's Stats.
type EngineReporter interface {
	EngineStats() map[string]uint64
}

// A SessionStore is a Backend that manages sessions as a product: owners,
// listing, deletion in batches, search and paging through history. Both
// backends in package backend implement it. Sessions are named by their
// keys (SessionKey); operations over many sessions take the tenant.
type SessionStore interface {
	Backend
	// CreateSession records the session's owner, title and metadata,
	// creating it with no turns if need be. A session owned by another
	// user is ErrSessionOwned; an unowned one that holds turns is
	// ErrSessionExists (unless s.User is empty), and an unowned empty one
	// takes s.User as its owner.
	CreateSession(ctx context.Context, key string, s SessionInfo) error
	// ClaimSession makes user the owner of the existing, unowned session,
	// atomically: of two claims at once exactly one wins, and the other
	// is ErrSessionOwned. A session the user owns already is no change;
	// one that does not exist is ErrSessionNotFound.
	ClaimSession(ctx context.Context, key, user string) error
	// Import stores, all or nothing, the session's head and every turn
	// next yields until it returns io.EOF: the whole import is one
	// transaction, and an error from next, or from storing any turn,
	// leaves the session as it was. The head's owner must be the
	// session's (ErrSessionOwned; ErrSessionExists for an unowned session
	// that holds turns), or the session must be new or empty and
	// unowned, when it takes that owner; when the head has an owner, a
	// title or metadata, they become the session's. A turn whose ID the
	// session (or the import) holds is no change when its messages equal
	// the held ones, and otherwise an error wrapping ErrInvalidImport
	// naming the turn, as is a message ID another turn holds. Only what
	// one turn needs is held in memory, never the whole import.
	Import(ctx context.Context, key string, s SessionInfo, next func() (PreparedTurn, error)) error
	// ListSessions returns a page of the tenant's sessions, most recently
	// updated first, by keyset: one indexed query per page.
	ListSessions(ctx context.Context, tenant string, q SessionQuery) (SessionPage, error)
	// DeleteSessions removes, in batches of at most batch sessions, every
	// session of the tenant owned by user (when user is not nil) and last
	// updated before before (when it is not zero), with their messages and
	// search entries, and returns the keys it removed.
	DeleteSessions(ctx context.Context, tenant string, user *string, before time.Time, batch int) (DeleteReport, []string, error)
	// Search finds messages of the tenant's sessions by full-text search.
	Search(ctx context.Context, tenant string, q SearchQuery) ([]SearchHit, error)
	// History returns a page of the session's turns, in sequence order.
	History(ctx context.Context, key string, q HistoryQuery) (HistoryPage, error)
}

// MaxForks is how many forks ListForks returns at most.
const MaxForks = 1000

// A Forker is a SessionStore that forks sessions. A fork shares its
// parent's turns up to the fork point instead of copying them, so a fork
// costs the same whatever the parent holds; afterwards the two are
// independent: clearing, replacing or deleting the parent leaves the fork
// whole. Both backends in package backend implement it.
type Forker interface {
	SessionStore
	// Fork makes the session child hold the turns of the session parent
	// up to and including its turn atTurnID, then continue on its own.
	// parent and child are keys of the same tenant. The child is owned by
	// the parent's owner. It returns an error wrapping ErrTurnNotFound if
	// the parent holds no such turn, ErrSessionExists if the child holds
	// turns, and ErrSessionOwned if the child exists and another user
	// owns it.
	Fork(ctx context.Context, parent, atTurnID, child string) error
	// ListForks returns the sessions forked from the session key (whose
	// ForkOf names it), newest first, at most limit (1 to MaxForks).
	ListForks(ctx context.Context, key string, limit int) ([]SessionInfo, error)
}
