package memory

import "context"

// A Version identifies one stored state of a session. Every write that
// changes a session (a stored turn, a clear) gives it a version it never had
// before, and a session that does not exist has version NoSession. Versions
// are compared for equality only; their order means nothing.
type Version int64

// Version values with a meaning of their own.
const (
	// NoSession is the version of a session that does not exist.
	NoSession Version = 0
	// UnknownVersion, given to LoadWindowIfChanged, matches no session
	// state, so the window is always returned.
	UnknownVersion Version = -1
)

// A Saved reports what a save did.
type Saved struct {
	Stored  bool    // false: the session already held the turn's ID and nothing changed
	Seq     int     // the turn's sequence number, its session's turn count after the save; 0 when !Stored
	Version Version // the session's version after the save; 0 when !Stored
}

// A VersionedBackend is a Backend that versions its sessions, so that a
// PersistentBufferMemory can cache windows in front of it and still show,
// on every process, every write any process has finished (see the package
// doc). Both backends in package backend implement it. Without it, a
// PersistentBufferMemory reads every window through unless
// WithStaleReads allows it to serve possibly stale windows.
type VersionedBackend interface {
	Backend
	// SaveTurnVersioned stores turn like SaveTurn and reports what it did.
	// A turn Prepare made within the backend's size limit is stored as it
	// is, not validated again; any other is validated first.
	SaveTurnVersioned(ctx context.Context, sessionID string, turn PreparedTurn) (Saved, error)
	// MaxMessageBytes is the backend's size limit; a memory prepares turns
	// within the smaller of it and its own.
	MaxMessageBytes() int
	// LoadWindowIfChanged returns the session's version and, when it is
	// not known (changed), the window LoadWindow returns, read in the same
	// snapshot. When the version is known, w is empty and nothing else is
	// read.
	LoadWindowIfChanged(ctx context.Context, sessionID string, maxTurns int, known Version) (w Window, v Version, changed bool, err error)
}
