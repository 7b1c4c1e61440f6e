package backend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/migrate"
)

// store is one engine's part of the backend: every statement whose text
// differs between engines, the writes an engine does its own way, and the
// features shared code asks for instead of comparing dialect names
// (goose's querier per dialect; bun's feature flags). Each engine is one
// store in files of its own (sqlite*.go, postgres*.go), registered by
// dialect in registerStore; adding an engine means adding its files.
//
// Shared code (validation, error mapping, the flows of sessions, search,
// import, replace and erasure) calls these methods; the statements both
// engines write alike stay with the flow that runs them.
type store interface {
	// cast is CAST(expr AS typ) where an INSERT ... SELECT needs its
	// parameters' types (PostgreSQL), and expr where a CAST would change
	// the stored form of a time (SQLite).
	cast(expr, typ string) string
	// rowLock is the clause that makes a SELECT of a session row take
	// its lock (" FOR UPDATE"), or "" where the transaction holds the
	// database's write lock already.
	rowLock() string
	// skipLocked is the clause that makes a SELECT skip the rows other
	// transactions hold (" FOR UPDATE SKIP LOCKED"), or "" where a
	// transaction sees and holds every row (SQLite's write lock).
	skipLocked() string
	// greatest is the name of the two-argument function of the greater
	// value (MAX on SQLite, GREATEST on PostgreSQL).
	greatest() string
	// budgetLo is the bound of a budget window's range, an expression
	// over a chain read's session row h (with h.t, the turn limit's
	// bound, and h.th, the session's tokens minus the budget) and its
	// chain c (see windowReads).
	budgetLo() string
	// chainQuery completes a chain read (chainRead) from its CTEs h
	// and c: the one-row CTE s (id, turn_count, version, and the bounds
	// lo and hi, expressions over h and c), then the SELECT of cols: per
	// chain row its message rows m that cond (over m, c and s) holds
	// for, every chain row with at least one row (m's columns NULL where
	// none).
	chainQuery(ctes, lo, hi, cols, cond string) string
	// prepare makes the engine's own statements, once, at construction.
	prepare()

	// save stores turn as the newest turn of the session (see
	// DataFlowBackend.Save): errDuplicate or a zero Saved when the
	// session holds its ID, an error msgIDConflict recognises when a
	// message ID is another turn's.
	save(ctx context.Context, sessionID string, turn driver.PreparedTurn, metaArg any, tokens int64, at time.Time, begun time.Time) (driver.Saved, error)
	// appendNewest appends msgs to turn turnID when it is the session's
	// newest, in one statement where the engine can; done is false when
	// the transaction path must do it.
	appendNewest(ctx context.Context, sessionID, turnID string, msgs []driver.PreparedMessage) (saved driver.Saved, done bool, err error)
	// lockSessionTx takes the session row's lock in tx, where the
	// transaction does not hold the write lock already, failing with
	// errTurnNotFound(sessionID, turnID) for no session.
	lockSessionTx(ctx context.Context, tx *dataflow.Tx, sessionID, turnID string) error
	// msgIDConflict reports whether err is a violation of the message ID
	// index: a message ID the session holds in another turn.
	msgIDConflict(err error) bool

	// indexTx adds search entries for msgs, stored in the session key at
	// seq from position pos on, where the index is a table of its own
	// (indexInRows is false); messages with no words get none.
	indexTx(ctx context.Context, tx *dataflow.Tx, key string, seq int64, pos int32, msgs []driver.PreparedMessage) error
	// unindexKeysTx removes the search entries of the sessions of keys,
	// where they do not go with the rows.
	unindexKeysTx(ctx context.Context, tx *dataflow.Tx, keys []string) error
	// upgradeIndexSQL is the insert of one search entry (SearchEntry's
	// row) that the data upgrade runs for each old message, where the
	// index is a table of its own (indexInRows is false); "" otherwise.
	upgradeIndexSQL() string
	// moveEntries moves the search entries of the message the session
	// key holds at seq and from to position to, as a data upgrade moves
	// its row, where the index is a table of its own that writes keep
	// (and its queue of messages to index); nothing where the index
	// reads the rows.
	moveEntries(ctx context.Context, tx migrate.UpgradeTx, key string, seq int64, from, to int32) error
	// indexInRows reports whether the search index reads the message
	// rows themselves (PostgreSQL's search_text, written by the insert),
	// rather than being a table of its own that writes keep (SQLite's
	// FTS5 table, see indexTx).
	indexInRows() bool
	// holeyReads reports whether one statement may read a range of a
	// session's turns with a hole: a save's rows without those of a save
	// committed just before it (MariaDB's InnoDB; see readWhole).
	holeyReads() bool
	// searchIndexName is the search index's name in the catalog.
	searchIndexName() string
	// searchIndexDDL returns the statements that create the search
	// index, in order, and the kind of step they are in a plan.
	searchIndexDDL() ([]string, migrate.Step)
	// searchIndexMissing returns the statements an existing search index
	// still needs (migrate up runs them; see SearchIndexPlan).
	searchIndexMissing(ctx context.Context) ([]string, error)
	// searchIndexExists reports whether the catalog holds a usable
	// search index.
	searchIndexExists(ctx context.Context) (bool, error)
	// searchIndexFound finishes ensureSearch for an index that exists.
	searchIndexFound(ctx context.Context) error
	// searchStmt is the search statement for q's shape, and searchArgs
	// its arguments but the limit. A search scoped to a session (its
	// key q.SessionID of tenant) finds its messages of turns up to
	// through (see Search: a fork's search reads each session of its
	// chain up to its fork point).
	searchStmt(q driver.SearchQuery) *dataflow.Stmt
	searchArgs(tenant string, terms []string, q driver.SearchQuery, through int64) []any

	// sizeQuery is DatabaseSize's statement and its arguments.
	sizeQuery() (string, []any)
}

// stores make the store of each registered engine, by dataflow.DB's
// dialect name.
var stores = map[string]func(*DataFlowBackend) store{}

// registerStore makes newStore the store of dialect's databases; an
// engine's file calls it from init.
func registerStore(dialect string, newStore func(*DataFlowBackend) store) {
	if _, dup := stores[dialect]; dup {
		panic("backend: store of " + dialect + " registered twice")
	}
	stores[dialect] = newStore
}

// newStore returns the store of b's database.
func newStore(b *DataFlowBackend) (store, error) {
	mk, ok := stores[b.db.Dialect()]
	if !ok {
		return nil, fmt.Errorf("%w: no store for dialect %s", driver.ErrInvalidOption, b.db.Dialect())
	}
	return mk(b), nil
}

// statementForms is implemented by a store whose engine writes some of
// the shared statements otherwise (MySQL has no ON CONFLICT): form
// returns the engine's text of the shared statement name, whose shared
// text is query. A store without it runs the shared texts.
type statementForms interface {
	form(name, query string) string
}

// rowInserts is implemented by a store whose insert of message rows is
// its own (SQLite's compact keys, MySQL's lack of ON CONFLICT):
// insertRowsQuery returns the text of insertRows(n, append).
type rowInserts interface {
	insertRowsQuery(n int, append bool) string
}

// form returns the store's text of the shared statement name.
func (b *DataFlowBackend) form(name, query string) string {
	if f, ok := b.store.(statementForms); ok {
		return f.form(name, query)
	}
	return query
}

// deleteRetries bounds how often in a row a batch of a delete by owner or
// age (DeleteUser, Expire) that lost a deadlock or a certification
// conflict is picked again.
const deleteRetries = 5

// lockRowTx locks the session row in tx (lockRow: SELECT … FOR UPDATE),
// for the engines whose transactions lock rows, not the database: a
// missing row is the turn's ErrTurnNotFound.
func (b *DataFlowBackend) lockRowTx(ctx context.Context, tx *dataflow.Tx, sessionID, turnID string) error {
	rows, err := b.lockRow.QueryTx(ctx, tx, sessionID)
	if err != nil {
		return err
	}
	var one int
	if err := scanOne(rows, &one); errors.Is(err, sql.ErrNoRows) {
		return errTurnNotFound(sessionID, turnID)
	} else if err != nil {
		return err
	}
	return nil
}
