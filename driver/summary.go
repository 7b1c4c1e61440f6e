package driver

import (
	"context"
	"time"
)

// A Summary is what a session's summary covers: the session's first Turns
// turns are folded into Text.
type Summary struct {
	Text      string
	Turns     int // the session's first Turns turns are folded into it
	Tokens    int
	UpdatedAt time.Time
}

// A SummaryStore is a Backend that keeps a summary beside each session,
// in a place of its own (the session's turns stay as they are), and
// hands out the right to write it as a lease held in the database, so
// that of many processes only one folds a range of turns at a time.
//
// Its Load, given WindowQuery.Summary, reads the summary in the same
// statement as the window. Writing a summary gives the session a new
// Version, so every cache's window is confirmed again. Clearing,
// replacing or deleting a session deletes its summary, and with it any
// lease: a write of a lease taken before lands nowhere.
type SummaryStore interface {
	Backend
	// LeaseSummary takes the session's summary lease for owner until
	// until, if no one holds an unexpired one, and returns the stored
	// summary. ok is false when another owner holds it or the session
	// does not exist.
	LeaseSummary(ctx context.Context, key, owner string, until time.Time) (s Summary, ok bool, err error)
	// WriteSummary stores s as the session's summary and ends the lease,
	// only while owner holds the lease and the stored summary covers
	// prev turns; ok is false (nothing written) otherwise.
	WriteSummary(ctx context.Context, key, owner string, prev int, s Summary) (ok bool, err error)
	// ReleaseSummary ends owner's lease, if it holds it, writing nothing.
	ReleaseSummary(ctx context.Context, key, owner string) error
	// SummaryTurns returns the session's turns after sequence after,
	// through sequence through, oldest first, at most limit of them; a
	// limit below 1 or a negative after is an error wrapping
	// ErrInvalidQuery.
	SummaryTurns(ctx context.Context, key string, after, through, limit int) ([]Turn, error)
	// PutSummary makes s the session's summary, unguarded, as an import
	// or a copy does; an empty s (no Turns) deletes it.
	PutSummary(ctx context.Context, key string, s Summary) error
}

// A SummaryImporter is a SummaryStore whose import stores the session's
// summary in the import's own transaction, so that an import with a
// summary is all or nothing too.
type SummaryImporter interface {
	SummaryStore
	// ImportSummary is SessionStore.Import, and then, in the same
	// transaction, stores sum as the session's summary when the session
	// holds at least sum.Turns turns and its stored summary covers fewer:
	// an error anywhere, after the last turn too, leaves the session, its
	// turns and its summary as they were.
	ImportSummary(ctx context.Context, key string, s SessionInfo, sum Summary, next func() (PreparedTurn, error)) error
}
