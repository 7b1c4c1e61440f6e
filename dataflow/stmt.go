package dataflow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// A Stmt is a raw statement a client builds once, from its SQL text (with ?
// placeholders) and the tables it uses, and runs many times. Running it
// does every step a raw statement needs, so its caller remembers none:
//
//   - the tables are made ready (one atomic load each once they are);
//   - the arguments are bound as operations bind them (times in UTC, as
//     fixed-width text on SQLite; see Bind);
//   - query hooks see it;
//   - a read (NewReadStmt) whose pooled connection turns out dead is run
//     again on another, as often as the pool may hold dead connections;
//   - on SQLite it is prepared once per pooled connection and reused
//     (database/sql keeps one prepared statement per connection and
//     prepares again on a new one), outside transactions and inside those
//     of a database Open opened. On PostgreSQL pgx
//     caches statements per connection itself, as its query exec mode says,
//     so a pooler in transaction mode can opt out in the URL.
//
// A Stmt is safe for concurrent use.
type Stmt struct {
	db         *DB
	query      string // in the dialect's placeholder form
	tables     []Readier
	repeatable bool // safe to repeat on a lost connection: a read, or an idempotent write

	mu   sync.Mutex               // serializes preparing
	prep atomic.Pointer[sql.Stmt] // SQLite; prepared on first use
}

// NewStmt returns a statement that writes: it is never repeated on its own.
// Placeholders are ?, rewritten once for the dialect.
func (db *DB) NewStmt(query string, tables ...Readier) *Stmt {
	return &Stmt{db: db, query: db.Rebind(query), tables: tables}
}

// NewReadStmt returns a statement that only reads, so that it is run again
// when its pooled connection turns out dead.
func (db *DB) NewReadStmt(query string, tables ...Readier) *Stmt {
	s := db.NewStmt(query, tables...)
	s.repeatable = true
	return s
}

// NewIdempotentStmt returns a statement that writes and commits on its own
// but is safe to repeat (running it twice stores what running it once
// does, as a save keyed by an idempotency key), so that, like a read, it is
// run again when its pooled connection turns out dead.
func (db *DB) NewIdempotentStmt(query string, tables ...Readier) *Stmt {
	return db.NewReadStmt(query, tables...)
}

// String returns the statement's SQL in the dialect's placeholder form.
func (s *Stmt) String() string { return s.query }

// Query runs the statement outside any transaction.
func (s *Stmt) Query(ctx context.Context, args ...any) (*sql.Rows, error) {
	if s == nil || s.db == nil {
		return nil, errNotOpen
	}
	return runStmt(ctx, s, args, s.db.query)
}

// Exec runs the statement outside any transaction.
func (s *Stmt) Exec(ctx context.Context, args ...any) (sql.Result, error) {
	if s == nil || s.db == nil {
		return nil, errNotOpen
	}
	return runStmt(ctx, s, args, s.db.exec)
}

// runStmt runs s outside any transaction with do (DB.query or DB.exec),
// again on another connection while a statement safe to repeat finds its
// pooled connection dead.
func runStmt[R any](ctx context.Context, s *Stmt, args []any, do func(context.Context, querier, string, []any) (R, error)) (R, error) {
	var zero R
	args, err := s.start(ctx, args)
	if err != nil {
		return zero, err
	}
	var q querier = s.db.sql // the driver caches statements (pgx)
	if s.db.d.PrepareStatements() {
		p, err := s.prepared(ctx)
		if err != nil {
			return zero, err
		}
		q = preparedQuerier{p}
	}
	r, err := do(ctx, q, s.query, args)
	for attempt := 0; s.repeatable && err != nil && attempt < s.db.connRetries() && ctx.Err() == nil && sqlcore.ConnLost(err); attempt++ {
		s.db.retried(ctx, "statement", attempt+1, err)
		r, err = do(ctx, q, s.query, args)
	}
	return r, err
}

// QueryTx runs the statement in tx. RunInTx made the tables it was given
// ready; the statement's own tables are made ready too.
func (s *Stmt) QueryTx(ctx context.Context, tx *Tx, args ...any) (*sql.Rows, error) {
	args, err := s.startTx(ctx, tx, args)
	if err != nil {
		return nil, err
	}
	q, err := s.inTx(ctx, tx)
	if err != nil {
		return nil, err
	}
	return s.db.query(ctx, q, s.query, args)
}

// ExecTx runs the statement in tx.
func (s *Stmt) ExecTx(ctx context.Context, tx *Tx, args ...any) (sql.Result, error) {
	args, err := s.startTx(ctx, tx, args)
	if err != nil {
		return nil, err
	}
	q, err := s.inTx(ctx, tx)
	if err != nil {
		return nil, err
	}
	return s.db.exec(ctx, q, s.query, args)
}

// inTx returns what runs the statement in tx. In a SQLite transaction that
// database/sql began (see DB.beginSQLite) it is the statement prepared on
// the transaction's connection, which database/sql keeps with the one
// prepare returns, so that it is prepared once per connection. Elsewhere it
// is tx itself, which prepares the statement again; so it is too while the
// statement was never prepared and the pool has no connection left to
// prepare it on (SetMaxOpenConns), rather than wait for one, perhaps for
// tx's own.
func (s *Stmt) inTx(ctx context.Context, tx *Tx) (querier, error) {
	if tx.tx == nil || !s.db.d.PrepareStatements() {
		return tx.q, nil
	}
	p := s.prep.Load()
	if p == nil {
		if st := s.db.sql.Stats(); st.MaxOpenConnections > 0 && st.InUse >= st.MaxOpenConnections {
			return tx.q, nil
		}
		var err error
		if p, err = s.prepared(ctx); err != nil {
			return nil, err
		}
	}
	return preparedQuerier{tx.stmt(ctx, p)}, nil
}

func (s *Stmt) startTx(ctx context.Context, tx *Tx, args []any) ([]any, error) {
	if tx == nil || tx.db == nil || tx.q == nil {
		return nil, errNotOpen
	}
	if tx.db != s.db {
		return nil, fmt.Errorf("%w: statement of another DB", ErrInvalidArgument)
	}
	return s.start(ctx, args)
}

// start checks the DB, makes the tables ready and binds the arguments into
// a new slice (the caller's is left alone).
func (s *Stmt) start(ctx context.Context, args []any) ([]any, error) {
	if s == nil || s.db == nil {
		return nil, errNotOpen
	}
	if err := s.db.usable(); err != nil {
		return nil, err
	}
	for _, t := range s.tables {
		if err := t.Ready(ctx); err != nil {
			return nil, err
		}
	}
	bound := make([]any, len(args))
	for i, a := range args {
		b, err := bindValue(s.db.d, a)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		bound[i] = b
	}
	return bound, nil
}

// prepared returns the statement prepared on the pool (SQLite only),
// preparing it on first use.
func (s *Stmt) prepared(ctx context.Context) (*sql.Stmt, error) {
	if p := s.prep.Load(); p != nil {
		return p, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.prep.Load(); p != nil {
		return p, nil
	}
	p, err := s.db.sql.PrepareContext(ctx, s.query)
	if err != nil {
		return nil, withCtxErr(ctx, err)
	}
	if err := s.db.trackStmt(p); err != nil {
		return nil, err
	}
	s.prep.Store(p)
	return p, nil
}

// preparedQuerier runs a prepared statement where a querier is expected;
// the query text, already prepared, is ignored.
type preparedQuerier struct{ st *sql.Stmt }

func (p preparedQuerier) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return p.st.ExecContext(ctx, args...)
}

func (p preparedQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return p.st.QueryContext(ctx, args...)
}

// IsUniqueViolation reports whether err is a unique violation of the named
// index or constraint (PostgreSQL SQLSTATE 23505, MySQL error 1062), so that a caller can
// tell a write that lost a race for a key from any other failure.
func IsUniqueViolation(err error, name string) bool {
	if isMySQLDuplicate(err, name) {
		return true
	}
	code, ok := sqlcore.SQLState(err)
	return ok && code == "23505" && strings.Contains(err.Error(), `"`+name+`"`)
}

// WriteOutcome classifies the error of a write that commits on its own (a
// statement run outside a transaction): if ctx ended or the connection was
// lost while it ran, it may have committed, and the error returned wraps
// ErrOutcomeUnknown as well as err. Other errors are returned as they are.
func WriteOutcome(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrOutcomeUnknown) {
		return err
	}
	if errors.Is(err, ErrEnsureFailed) || errors.Is(err, ErrClosed) || errors.Is(err, ErrInvalidArgument) {
		return err // failed before anything was sent
	}
	var unsent interface{ SafeToRetry() bool }
	if errors.As(err, &unsent) && unsent.SafeToRetry() {
		return withCtxErr(ctx, err) // the driver says nothing was sent
	}
	if ctx.Err() != nil || sqlcore.ConnLost(err) {
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, withCtxErr(ctx, err))
	}
	return err
}
