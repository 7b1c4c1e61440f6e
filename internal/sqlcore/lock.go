package sqlcore

import (
	"context"
	"errors"
	"fmt"

	"github.com/uptrace/bun"
)

// Locked runs fn in a transaction on db that holds the cross-process lock
// named key: a transaction-scoped advisory lock on PostgreSQL (per key and
// current schema), the write lock of BEGIN IMMEDIATE on SQLite. It commits
// if fn returns nil and rolls back otherwise, also when fn panics.
//
// On MySQL the lock is a lease in LockTable and fn runs outside a
// transaction, each of its statements committing on its own (DDL commits
// implicitly there): see lockedMySQL.
func (d Dialect) Locked(ctx context.Context, db *bun.DB, key string, fn func(bun.IConn) error) error {
	if d.MySQL {
		return lockedMySQL(ctx, db, key, fn)
	}
	if d.PG {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext(? || current_schema()))`, key); err != nil {
				return fmt.Errorf("migration lock: %w", err)
			}
			return fn(tx)
		})
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	if err := BeginImmediate(ctx, conn.Conn, conn); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	done := false
	defer func() {
		if !done { // fn panicked
			_ = Rollback(ctx, conn.Conn, conn)
		}
	}()
	err = fn(conn)
	done = true
	if err != nil {
		return errors.Join(err, Rollback(ctx, conn.Conn, conn))
	}
	return Commit(ctx, conn.Conn, conn)
}
