package dataflow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

// querier is what runs statements: *sql.DB, *sql.Conn or *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// exec runs a statement with bound parameters, showing it to the hooks.
func (db *DB) exec(ctx context.Context, q querier, query string, args []any) (sql.Result, error) {
	if len(db.cfg.hooks) == 0 {
		res, err := q.ExecContext(ctx, query, args...)
		return res, withCtxErr(ctx, err)
	}
	ctx, ev := db.beforeQuery(ctx, query, args)
	res, err := q.ExecContext(ctx, query, args...)
	ev.Result, ev.Err = res, err
	db.afterQuery(ctx, ev)
	return res, withCtxErr(ctx, err)
}

// query runs a query with bound parameters, showing it to the hooks.
func (db *DB) query(ctx context.Context, q querier, query string, args []any) (*sql.Rows, error) {
	if len(db.cfg.hooks) == 0 {
		rows, err := q.QueryContext(ctx, query, args...)
		return rows, withCtxErr(ctx, err)
	}
	ctx, ev := db.beforeQuery(ctx, query, args)
	rows, err := q.QueryContext(ctx, query, args...)
	ev.Err = err
	db.afterQuery(ctx, ev)
	return rows, withCtxErr(ctx, err)
}

func (db *DB) beforeQuery(ctx context.Context, query string, args []any) (context.Context, *bun.QueryEvent) {
	ev := &bun.QueryEvent{DB: db.bun, Query: query, QueryTemplate: query, QueryArgs: args, StartTime: time.Now()}
	for _, h := range db.cfg.hooks {
		ctx = h.BeforeQuery(ctx, ev)
	}
	return ctx, ev
}

func (db *DB) afterQuery(ctx context.Context, ev *bun.QueryEvent) {
	for i := len(db.cfg.hooks) - 1; i >= 0; i-- {
		db.cfg.hooks[i].AfterQuery(ctx, ev)
	}
}

// Rebind rewrites ? placeholders into the dialect's form ($1, $2, … on
// PostgreSQL). ? inside quoted strings and identifiers is left alone. Do it
// once per statement, not per call.
func (db *DB) Rebind(query string) string {
	if db == nil {
		return query
	}
	return db.d.Rebind(query)
}

// ExecContext runs a statement written in the dialect's placeholder form
// (see Rebind) with bound parameters. Query hooks see it; the table ensurer
// does not run (call Table.Ready first).
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	return db.exec(ctx, db.sql, query, args)
}

// QueryContext runs a query like ExecContext does.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	return db.query(ctx, db.sql, query, args)
}

// ConnExecContext runs a statement on conn, a connection of db's pool
// the caller holds (db.Bun().DB.Conn), like ExecContext: query hooks see
// it. It is for a text that must run on one connection, such as a
// transaction begun and ended within one text of several statements.
func (db *DB) ConnExecContext(ctx context.Context, conn *sql.Conn, query string, args ...any) (sql.Result, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	return db.exec(ctx, conn, query, args)
}

// ConnQueryContext runs a query on conn like ConnExecContext.
func (db *DB) ConnQueryContext(ctx context.Context, conn *sql.Conn, query string, args ...any) (*sql.Rows, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	return db.query(ctx, conn, query, args)
}

// ScanRows scans rows into dest (a pointer to a model, a slice of models,
// or plain values) the way bun does, and closes rows.
func (db *DB) ScanRows(ctx context.Context, rows *sql.Rows, dest ...any) error {
	if err := db.usable(); err != nil {
		if rows != nil {
			rows.Close()
		}
		return err
	}
	return db.bun.ScanRows(ctx, rows, dest...)
}

// Tx is a transaction begun by RunInTx. Bind tables to it with
// Table.WithTx; run raw statements with its ExecContext and QueryContext.
type Tx struct {
	db   *DB
	q    querier
	conn *sql.Conn // the transaction's connection; nil once it ended
	// tx is the transaction database/sql began: on PostgreSQL, and on a
	// SQLite database Open opened (see beginSQLite). On a SQLite database
	// given to New it is nil: BEGIN IMMEDIATE runs on conn (see sqlcore).
	tx     *sql.Tx
	cancel context.CancelFunc // SQLite with tx: releases the context tx began with

	stmtsMu sync.Mutex              // protects stmts
	stmts   map[*sql.Stmt]*sql.Stmt // tx's own of each prepared statement run in it (see stmt)
}

// stmt returns tx's own of the prepared statement p, made once per
// transaction: database/sql keeps every statement Tx.StmtContext returns
// until the transaction ends, so one made per call would grow a long
// transaction's memory with every statement it runs (an import of a
// million turns).
func (tx *Tx) stmt(ctx context.Context, p *sql.Stmt) *sql.Stmt {
	tx.stmtsMu.Lock()
	defer tx.stmtsMu.Unlock()
	if st := tx.stmts[p]; st != nil {
		return st
	}
	st := tx.tx.StmtContext(ctx, p)
	if tx.stmts == nil {
		tx.stmts = make(map[*sql.Stmt]*sql.Stmt)
	}
	tx.stmts[p] = st
	return st
}

// begin starts a transaction. A BEGIN that fails because its pooled
// connection died since its last use (the server restarted, or terminated
// it) did no work, so it is retried: the pool discards each dead
// connection as it finds it, and the pool may hold several.
func (db *DB) begin(ctx context.Context) (*Tx, error) {
	var err error
	for attempt := 0; attempt <= db.connRetries(); attempt++ {
		var tx *Tx
		if tx, err = db.beginOnce(ctx); err == nil {
			return tx, nil
		}
		if ctx.Err() != nil || !sqlcore.ConnLost(err) || attempt == db.connRetries() {
			break
		}
		db.retried(ctx, "begin", attempt+1, err)
	}
	return nil, fmt.Errorf("begin: %w", withCtxErr(ctx, err))
}

// connRetries is how many times a statement that is safe to repeat is
// retried after its connection was found dead: as many as the pool may hold
// idle connections that died together, and at least 2.
func (db *DB) connRetries() int { return max(2, db.maxIdle) }

// beginOnce starts a transaction on a connection of its own, honouring
// ctx throughout.
//
// On PostgreSQL the transaction is bound to ctx, as database/sql binds it:
// BEGIN, every statement and COMMIT run under ctx, whose end makes pgx
// interrupt a read or write blocked on a frozen network, and makes
// database/sql roll back. (Running BEGIN and COMMIT as plain statements
// would lose pgx's report of a COMMIT that rolled back a transaction
// aborted by an earlier error.)
//
// On SQLite, BEGIN IMMEDIATE takes the write lock: waiting for it, up to
// the busy timeout, ends with ctx. Holding the lock, it then checks that
// the database file is still the one Open opened (see
// ErrDatabaseReplaced), so that the check and the write are ordered.
func (db *DB) beginOnce(ctx context.Context) (*Tx, error) {
	conn, err := db.sql.Conn(ctx) // waiting for the pool honours ctx
	if err != nil {
		return nil, err
	}
	if !db.d.ImmediateTx() {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			sqlcore.Discard(conn) // BEGIN may have been interrupted half way
			return nil, err
		}
		return &Tx{db: db, q: tx, tx: tx, conn: conn}, nil
	}
	var tx *Tx
	if db.txImmediate {
		if tx, err = db.beginSQLite(ctx, conn); err != nil {
			return nil, err
		}
	} else {
		tx = &Tx{db: db, q: conn, conn: conn}
		if err := sqlcore.BeginImmediate(ctx, conn, tx); err != nil {
			return nil, err
		}
	}
	if db.file != nil {
		if err := db.file.check(); err != nil {
			return nil, errors.Join(err, tx.rollback(ctx))
		}
	}
	return tx, nil
}

// beginSQLite begins a SQLite transaction on conn as a *sql.Tx, whose
// driver sends BEGIN IMMEDIATE (Open's connection string sets _txlock), so
// that a Stmt runs in it as the statement database/sql keeps prepared on
// that connection instead of being prepared again (see Stmt.inTx).
//
// database/sql binds a transaction to the context it began with, and the
// driver's COMMIT watches that context too. So that the wait for the write
// lock ends with ctx but COMMIT still runs to the end (see sqlcore.Commit),
// the transaction begins with a context that ctx cancels only while BEGIN
// runs. If ctx ends then, BEGIN fails, or the transaction it began is
// rolled back, and the connection is discarded: BEGIN may have been
// interrupted half way.
func (db *DB) beginSQLite(ctx context.Context, conn *sql.Conn) (*Tx, error) {
	tctx, cancel, stop := ctx, context.CancelFunc(func() {}), func() bool { return true }
	if ctx.Done() != nil {
		tctx, cancel = context.WithCancel(context.WithoutCancel(ctx))
		stop = context.AfterFunc(ctx, cancel)
	}
	var stx *sql.Tx
	err := db.control(ctx, "BEGIN IMMEDIATE", func() (err error) {
		stx, err = conn.BeginTx(tctx, nil)
		return err
	})
	ended := !stop()
	if err == nil && ended {
		_ = stx.Rollback() // database/sql may have rolled back already
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		sqlcore.Discard(conn)
		if ended && errors.Is(err, context.Canceled) {
			err = ctx.Err() // the cancel was beginSQLite's, on ctx's behalf
		}
		return nil, err
	}
	return &Tx{db: db, q: stx, tx: stx, conn: conn, cancel: cancel}, nil
}

// control runs fn, a transaction control statement that database/sql
// sends (query names it), showing it to the query hooks as if it ran as a
// statement.
func (db *DB) control(ctx context.Context, query string, fn func() error) error {
	if len(db.cfg.hooks) == 0 {
		return fn()
	}
	ctx, ev := db.beforeQuery(ctx, query, nil)
	err := fn()
	ev.Err = err
	db.afterQuery(ctx, ev)
	return err
}

// commit commits unless ctx has ended, in which case it rolls back and
// returns ctx's error: nothing was sent, so the outcome is known.
func (tx *Tx) commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return errors.Join(err, tx.rollback(ctx))
	}
	if tx.cancel != nil {
		return tx.commitSQLite(ctx)
	}
	if tx.tx != nil {
		conn := tx.conn
		tx.conn = nil
		err := tx.tx.Commit() // under the ctx the transaction began with
		if err == nil {
			conn.Close()
			return nil
		}
		return commitFailed(ctx, conn, err)
	}
	conn := tx.conn
	tx.conn = nil
	return sqlcore.Commit(ctx, conn, tx) // runs to the end: it is local
}

// commitSQLite commits a transaction begun by beginSQLite and releases
// its connection. COMMIT runs to the end (see beginSQLite). If it fails,
// the driver has rolled back; ROLLBACK then makes sure of it, as
// sqlcore.Commit does, and discards the connection if it fails.
func (tx *Tx) commitSQLite(ctx context.Context) error {
	conn := tx.conn
	tx.conn = nil
	defer tx.cancel()
	err := tx.db.control(ctx, "COMMIT", tx.tx.Commit)
	if err == nil {
		conn.Close()
		return nil
	}
	return errors.Join(fmt.Errorf("commit: %w", err), sqlcore.Rollback(ctx, conn, &Tx{db: tx.db, q: conn}))
}

// rollbackSQLite rolls back a transaction begun by beginSQLite and
// releases its connection, or discards it if ROLLBACK fails. The driver
// runs ROLLBACK to the end, whatever ctx does: it is local.
func (tx *Tx) rollbackSQLite(ctx context.Context, conn *sql.Conn) error {
	defer tx.cancel()
	err := tx.db.control(context.WithoutCancel(ctx), "ROLLBACK", tx.tx.Rollback)
	if err != nil && !errors.Is(err, sql.ErrTxDone) && !strings.Contains(err.Error(), "no transaction is active") {
		sqlcore.Discard(conn)
		return fmt.Errorf("rollback: %w", err)
	}
	conn.Close()
	return nil
}

// commitFailed reports a failed PostgreSQL COMMIT and ends its connection.
// If the server answered (with an error such as a serialization failure or
// a deferred constraint, or with ROLLBACK for a transaction aborted by an
// earlier error) the transaction did not commit. If the connection was
// lost or ctx ended while COMMIT was in flight, nobody can tell: the error
// wraps ErrOutcomeUnknown, and the connection, whose place in the protocol
// is unknown too, is discarded.
//
// "Nothing was sent" is not claimed from the error: pgx marks a read that
// found the connection closed after COMMIT went out as safe to retry, and
// database/sql returns the same bare context error for a COMMIT it did not
// send as pgx does for one it interrupted. The outcome is known unsent only
// when ctx ended before commit began, which commit checks.
func commitFailed(ctx context.Context, conn *sql.Conn, err error) error {
	if ctx.Err() != nil || sqlcore.ConnLost(err) {
		sqlcore.Discard(conn)
		return fmt.Errorf("commit: %w: %w", ErrOutcomeUnknown, withCtxErr(ctx, err))
	}
	conn.Close()
	return fmt.Errorf("commit: %w", err)
}

// rollback ends the transaction, so that no pooled connection is ever left
// inside a transaction.
//
// On PostgreSQL, ROLLBACK runs under the transaction's context. Once that
// context has ended, or the connection is lost, nothing is sent: the
// connection is discarded and the server rolls back as the session ends.
// Either way the transaction is rolled back, and no error is reported.
//
// On SQLite, ROLLBACK is local and runs on a context that the caller's
// cancellation cannot stop (see sqlcore.Rollback); the connection is
// discarded if it fails.
func (tx *Tx) rollback(ctx context.Context) error {
	if tx.conn == nil {
		return nil
	}
	conn := tx.conn
	tx.conn = nil
	if tx.cancel != nil {
		return tx.rollbackSQLite(ctx, conn)
	}
	if tx.tx != nil {
		err := tx.tx.Rollback()
		if errors.Is(err, sql.ErrTxDone) {
			err = nil // database/sql rolled back when ctx ended
		}
		if ctx.Err() != nil || err != nil {
			sqlcore.Discard(conn)
		} else {
			conn.Close()
		}
		if err != nil && ctx.Err() == nil && !sqlcore.ConnLost(err) {
			return fmt.Errorf("rollback: %w", err)
		}
		return nil
	}
	return sqlcore.Rollback(ctx, conn, tx)
}

// ExecContext runs a statement in the transaction (placeholders as for
// DB.ExecContext).
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if tx == nil || tx.db == nil || tx.q == nil {
		return nil, errNotOpen
	}
	return tx.db.exec(ctx, tx.q, query, args)
}

// QueryContext runs a query in the transaction.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if tx == nil || tx.db == nil || tx.q == nil {
		return nil, errNotOpen
	}
	return tx.db.query(ctx, tx.q, query, args)
}

// Bind converts v the way operations convert values before binding them:
// times to UTC (fixed-width text on SQLite, so text order is time order),
// maps, slices and structs to JSON. Use it for arguments of raw statements
// on columns that operations also write.
func (db *DB) Bind(v any) (any, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	return bindValue(db.d, v)
}

// withCtxErr makes an error that happened while ctx was ending say so: a
// driver may report a passed deadline as its own timeout (a dial i/o
// timeout), which errors.Is(err, context.DeadlineExceeded) should still see.
func withCtxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
		// The driver's own timer (a dial timeout taken from the
		// deadline) may fire a moment before the context's.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// Retryable reports whether err is transient, so that a read, or a write
// that is idempotent (such as a turn saved with its ID), may be tried
// again, preferably after a pause: the connection was lost (which
// QueryRetry and the BEGIN of RunInTx act on at once), the transaction lost a serialization conflict (40001) or a deadlock (40P01)
// on PostgreSQL, a deadlock or Galera certification conflict (1213,
// SQLSTATE 40001) or a lock wait timeout (1205) on MySQL, or SQLite stayed busy for the whole busy timeout, because
// another writer held the lock that long.
//
// It is false once the context ended, and for errors that another attempt
// would meet again: constraint violations, syntax errors, missing files,
// permissions, a full or read-only disk, ErrDatabaseReplaced. An error
// wrapping ErrOutcomeUnknown may be retryable: retry only an idempotent
// write.
func Retryable(err error) bool {
	if sqlcore.ConnLost(err) {
		return true
	}
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if sqlcore.MySQLRetryable(err) {
		return true
	}
	if code, ok := sqlcore.SQLState(err); ok {
		return code == "40001" || code == "40P01"
	}
	return isBusy(err)
}

// QueryRetry is QueryContext for a read: while the query fails because its
// pooled connection turns out dead, it is run again on another, as often as
// the pool may hold dead connections. Never use it for a write.
func (db *DB) QueryRetry(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, query, args...)
	for attempt := 0; err != nil && attempt < db.connRetries() && ctx.Err() == nil && sqlcore.ConnLost(err); attempt++ {
		db.retried(ctx, "query", attempt+1, err)
		rows, err = db.QueryContext(ctx, query, args...)
	}
	return rows, err
}
