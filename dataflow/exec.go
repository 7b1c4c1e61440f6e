package dataflow

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
		return q.ExecContext(ctx, query, args...)
	}
	ctx, ev := db.beforeQuery(ctx, query, args)
	res, err := q.ExecContext(ctx, query, args...)
	ev.Result, ev.Err = res, err
	db.afterQuery(ctx, ev)
	return res, err
}

// query runs a query with bound parameters, showing it to the hooks.
func (db *DB) query(ctx context.Context, q querier, query string, args []any) (*sql.Rows, error) {
	if len(db.cfg.hooks) == 0 {
		return q.QueryContext(ctx, query, args...)
	}
	ctx, ev := db.beforeQuery(ctx, query, args)
	rows, err := q.QueryContext(ctx, query, args...)
	ev.Err = err
	db.afterQuery(ctx, ev)
	return rows, err
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
	conn *sql.Conn // SQLite: the connection running BEGIN IMMEDIATE
	tx   *sql.Tx   // PostgreSQL
}

func (db *DB) begin(ctx context.Context) (*Tx, error) {
	if db.pg {
		tx, err := db.sql.BeginTx(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("begin: %w", err)
		}
		return &Tx{db: db, q: tx, tx: tx}, nil
	}
	conn, err := db.sql.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if _, err := db.exec(ctx, conn, "BEGIN IMMEDIATE", nil); err != nil {
		discard(conn)
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &Tx{db: db, q: conn, conn: conn}, nil
}

func (tx *Tx) commit(ctx context.Context) error {
	if tx.tx != nil {
		if err := tx.tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	if _, err := tx.db.exec(ctx, tx.conn, "COMMIT", nil); err != nil {
		return errors.Join(fmt.Errorf("commit: %w", err), tx.rollback(ctx))
	}
	tx.conn.Close()
	return nil
}

// rollback ends the transaction. On SQLite it runs ROLLBACK on a context
// that the caller's cancellation cannot stop, and discards the connection
// if that fails, so no pooled connection is ever left inside a transaction.
func (tx *Tx) rollback(ctx context.Context) error {
	if tx.tx != nil {
		if err := tx.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
			return fmt.Errorf("rollback: %w", err)
		}
		return nil
	}
	if tx.conn == nil {
		return nil
	}
	conn := tx.conn
	tx.conn = nil
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
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
