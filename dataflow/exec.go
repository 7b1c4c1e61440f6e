package dataflow

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uptrace/bun"
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
	if !db.pg {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ExecContext runs a statement written in the dialect's placeholder form
// (see Rebind) with bound parameters. Query hooks see it; the table ensurer
// does not run (call Table.Ready first).
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return db.exec(ctx, db.sql, query, args)
}

// QueryContext runs a query like ExecContext does.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	return db.query(ctx, db.sql, query, args)
}

// ScanRows scans rows into dest (a pointer to a model, a slice of models,
// or plain values) the way bun does, and closes rows.
func (db *DB) ScanRows(ctx context.Context, rows *sql.Rows, dest ...any) error {
	return db.bun.ScanRows(ctx, rows, dest...)
}

// Tx is a transaction begun by RunInTx. Bind tables to it with
// Table.WithTx; run raw statements with its ExecContext and QueryContext.
type Tx struct {
	db   *DB
	q    querier
	conn *sql.Conn // the transaction's connection; nil once it ended
	tx   *sql.Tx   // PostgreSQL; SQLite runs BEGIN IMMEDIATE on conn
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
		if ctx.Err() != nil || !connLost(err) {
			break
		}
	}
	return nil, fmt.Errorf("begin: %w", withCtxErr(ctx, err))
}

// connRetries is how many times a statement that is safe to repeat is
// retried after its connection was found dead: as many as the pool may hold
// idle connections that died together, and at least 2.
func (db *DB) connRetries() int { return max(2, db.maxIdle) }

func (db *DB) beginOnce(ctx context.Context) (*Tx, error) {
	conn, err := db.sql.Conn(ctx) // waiting for the pool honours ctx
	if err != nil {
		return nil, err
	}
	if db.pg {
		// The transaction outlives ctx (statements still use it): commit
		// and rollback must run to the end, or the caller could not know
		// whether a commit the server carried out happened.
		tx, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return &Tx{db: db, q: tx, tx: tx, conn: conn}, nil
	}
	if _, err := db.exec(ctx, conn, "BEGIN IMMEDIATE", nil); err != nil {
		discard(conn)
		return nil, err
	}
	return &Tx{db: db, q: conn, conn: conn}, nil
}

// commit commits unless ctx has ended, in which case it rolls back and
// returns ctx's error. COMMIT itself is not interrupted by ctx: once sent,
// its outcome is the one reported.
func (tx *Tx) commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return errors.Join(err, tx.rollback(ctx))
	}
	if tx.tx != nil {
		err := tx.tx.Commit()
		tx.conn.Close()
		tx.conn = nil
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	// No timer: SQLite's busy timeout bounds the wait, and a context that
	// can never end lets the driver skip its interrupt watcher.
	if _, err := tx.db.exec(context.WithoutCancel(ctx), tx.conn, "COMMIT", nil); err != nil {
		return errors.Join(fmt.Errorf("commit: %w", err), tx.rollback(ctx))
	}
	tx.conn.Close()
	tx.conn = nil
	return nil
}

// rollbackTimeout bounds a ROLLBACK that the caller's context no longer
// bounds.
const rollbackTimeout = 30 * time.Second

// rollback ends the transaction. On SQLite it runs ROLLBACK on a context
// that the caller's cancellation cannot stop, and discards the connection
// if that fails, so no pooled connection is ever left inside a transaction.
func (tx *Tx) rollback(ctx context.Context) error {
	if tx.conn == nil {
		return nil
	}
	conn := tx.conn
	tx.conn = nil
	if tx.tx != nil {
		err := tx.tx.Rollback()
		conn.Close()
		if err != nil && !errors.Is(err, sql.ErrTxDone) {
			return fmt.Errorf("rollback: %w", err)
		}
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if _, err := tx.db.exec(rctx, conn, "ROLLBACK", nil); err != nil {
		// "no transaction is active" means SQLite already rolled back.
		if !strings.Contains(err.Error(), "no transaction is active") {
			discard(conn)
			return fmt.Errorf("rollback: %w", err)
		}
	}
	conn.Close()
	return nil
}

// discard closes conn and tells the pool not to reuse its driver connection.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}

// ExecContext runs a statement in the transaction (placeholders as for
// DB.ExecContext).
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.db.exec(ctx, tx.q, query, args)
}

// QueryContext runs a query in the transaction.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.db.query(ctx, tx.q, query, args)
}

// Bind converts v the way operations convert values before binding them:
// times to UTC (fixed-width text on SQLite, so text order is time order),
// maps, slices and structs to JSON. Use it for arguments of raw statements
// on columns that operations also write.
func (db *DB) Bind(v any) (any, error) { return bindValue(db.pg, v) }

// withCtxErr makes an error that happened while ctx was ending say so: a
// driver may report a passed deadline as its own timeout (a dial i/o
// timeout), which errors.Is(err, context.DeadlineExceeded) should still see.
func withCtxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// connLost reports whether err says the connection died (rather than the
// statement failed): a driver's ErrBadConn, a network error, an unexpected
// EOF, pgx's closed connection, or a PostgreSQL error of class 08
// (connection exception) or 57P (operator intervention, such as
// pg_terminate_backend).
func connLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller gave up; DeadlineExceeded is also a net.Error
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var state interface{ SQLState() string }
	if errors.As(err, &state) {
		code := state.SQLState()
		return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "57P")
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return strings.Contains(err.Error(), "conn closed")
}

// Retryable reports whether err means the connection was lost, so that a
// read, or a write that is idempotent (such as a turn saved with its ID),
// may be tried again, as QueryRetry and the BEGIN of RunInTx do.
func Retryable(err error) bool { return connLost(err) }

// QueryRetry is QueryContext for a read: while the query fails because its
// pooled connection turns out dead, it is run again on another, as often as
// the pool may hold dead connections. Never use it for a write.
func (db *DB) QueryRetry(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	for attempt := 0; err != nil && attempt < db.connRetries() && ctx.Err() == nil && connLost(err); attempt++ {
		rows, err = db.QueryContext(ctx, query, args...)
	}
	return rows, err
}
