package sqlcore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Execer runs a statement on a transaction's connection. dataflow's Tx
// and bun.Conn both are one, so that BEGIN, COMMIT and ROLLBACK pass
// through their query hooks.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// RollbackTimeout bounds a SQLite ROLLBACK that the caller's context no
// longer bounds.
const RollbackTimeout = 30 * time.Second

// BeginImmediate starts a SQLite write transaction on conn with BEGIN
// IMMEDIATE, run by x (which runs on conn). Waiting for the write lock, up
// to the busy timeout, ends with ctx. If BEGIN fails, conn is discarded:
// BEGIN may have been interrupted half way.
func BeginImmediate(ctx context.Context, conn *sql.Conn, x Execer) error {
	if _, err := x.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		Discard(conn)
		return err
	}
	return nil
}

// Commit commits the SQLite transaction on conn and releases conn; if
// COMMIT fails, it rolls back as Rollback does.
//
// SQLite's COMMIT is local: a write and an fsync, and a wait for readers
// bounded by the busy timeout. Interrupting it would only leave its
// outcome unknown, so it runs to the end; and a context that can never end
// lets the driver skip its interrupt watcher.
func Commit(ctx context.Context, conn *sql.Conn, x Execer) error {
	if _, err := x.ExecContext(context.WithoutCancel(ctx), "COMMIT"); err != nil {
		return errors.Join(fmt.Errorf("commit: %w", err), Rollback(ctx, conn, x))
	}
	conn.Close()
	return nil
}

// Rollback ends the SQLite transaction on conn and releases conn, so that
// no pooled connection is ever left inside a transaction. ROLLBACK is
// local and runs on a context that the caller's cancellation cannot stop,
// bounded by RollbackTimeout; if it fails, conn is discarded.
func Rollback(ctx context.Context, conn *sql.Conn, x Execer) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RollbackTimeout)
	defer cancel()
	if _, err := x.ExecContext(rctx, "ROLLBACK"); err != nil {
		// "no transaction is active" means SQLite already rolled back.
		if !strings.Contains(err.Error(), "no transaction is active") {
			Discard(conn)
			return fmt.Errorf("rollback: %w", err)
		}
	}
	conn.Close()
	return nil
}
