package sqlcore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// The cross-process lock on the MySQL family is a lease: a row of
// LockTable that names its holder and an expiry, taken and released by
// plain autocommitted writes. Galera has neither GET_LOCK nor LOCK TABLES,
// and a row lock (SELECT … FOR UPDATE) is local to one node; but two nodes
// that write the same row concurrently are ordered by certification, which
// lets exactly one of them commit (the other gets error 1213 and tries
// again). DDL commits implicitly on MySQL, so the lock could not be held by
// the transaction that runs it anyway.
//
// A holder that dies leaves the lease to expire (LockLease); a live holder
// renews it every LockLease/3 while fn runs.

// LockTable is the table of MySQL leases, made on first use by Locked
// (never by LockedNoDDL, which reports it missing).
const LockTable = "turnkeep_locks"

// LockLease is how long a MySQL lease lasts unless renewed.
const LockLease = 30 * time.Second

var (
	lockCreate = "CREATE TABLE IF NOT EXISTS `" + LockTable + "` (" +
		"name VARCHAR(255) NOT NULL PRIMARY KEY, " +
		"owner VARCHAR(64) NOT NULL DEFAULT '', " +
		"expires_at DATETIME(6) NOT NULL" +
		") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin" // its keys are ours: no trailing spaces
	lockRow     = "INSERT INTO `" + LockTable + "` (name, owner, expires_at) VALUES (?, '', '1970-01-01 00:00:00') ON DUPLICATE KEY UPDATE name = name"
	lockTake    = "UPDATE `" + LockTable + "` SET owner = ?, expires_at = UTC_TIMESTAMP(6) + INTERVAL ? SECOND WHERE name = ? AND (owner = '' OR expires_at < UTC_TIMESTAMP(6))"
	lockRenew   = "UPDATE `" + LockTable + "` SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? SECOND WHERE name = ? AND owner = ?"
	lockRelease = "UPDATE `" + LockTable + "` SET owner = '' WHERE name = ? AND owner = ?"
)

// lockedMySQL is Locked on the MySQL family: fn runs on a connection of
// its own, outside any transaction (its DDL would commit one), while the
// lease named key is held. Only with ddl does it make LockTable.
func lockedMySQL(ctx context.Context, db *bun.DB, key string, ddl bool, fn func(bun.IConn) error) (err error) {
	var tb [16]byte
	_, _ = rand.Read(tb[:])
	owner := hex.EncodeToString(tb[:])
	if err := takeLease(ctx, db, key, owner, ddl); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() { // renew while fn runs
		defer close(renewed)
		t := time.NewTicker(LockLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), LockLease/3)
				_, _ = db.ExecContext(rctx, lockRenew, int(LockLease/time.Second), key, owner)
				cancel()
			}
		}
	}()
	defer func() {
		close(stop)
		<-renewed
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RollbackTimeout)
		defer cancel()
		if _, rerr := db.ExecContext(rctx, lockRelease, key, owner); rerr != nil && err == nil {
			// The lease expires on its own; the work is done.
			err = fmt.Errorf("migration lock: release: %w", rerr)
		}
	}()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	defer conn.Close()
	return fn(conn)
}

// takeLease waits until the lease named key is free or expired and takes
// it for owner, making the lease's row on first use, and the lock table
// too with ddl; without ddl a missing lock table is ErrTableMissing.
// Certification conflicts and deadlocks are retried; waiting ends with ctx.
func takeLease(ctx context.Context, db *bun.DB, key, owner string, ddl bool) error {
	made := false
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		res, err := db.ExecContext(ctx, lockTake, owner, int(LockLease/time.Second), key)
		if err == nil {
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				return nil
			}
		}
		switch {
		case err != nil && IsMySQLErrno(err, MySQLNoSuchTable) && !made,
			err == nil && !made: // no row yet, or another holds it: make sure the row exists, once
			if _, err := db.ExecContext(ctx, lockRow, key); err != nil {
				if !IsMySQLErrno(err, MySQLNoSuchTable) {
					if MySQLRetryable(err) {
						continue
					}
					return err
				}
				if !ddl {
					return fmt.Errorf("%w: %s (the migration lock's lease table, which a client that may not change the schema does not create)", ErrTableMissing, LockTable)
				}
				if _, err := db.ExecContext(ctx, lockCreate); err != nil {
					return fmt.Errorf("create %s: %w", LockTable, err)
				}
				if _, err := db.ExecContext(ctx, lockRow, key); err != nil && !MySQLRetryable(err) {
					return err
				}
			}
			made = true
			continue
		case err != nil && !MySQLRetryable(err):
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(wait):
		}
	}
}
