package backend

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/migrate"
)

// HeadlessUpgrade names the data upgrade of the turns an earlier release's
// CountedUpgrade left without a head row: where it deleted the empty
// first message of a one-sided turn, the turn's rows stayed at their
// places, from position 1. This one moves them down to position 0 and on,
// as CountedUpgrade now does itself, so that every turn has its head row,
// the one lookups of a turn by its ID read. See Upgrades.
const HeadlessUpgrade = "turnkeep.headless.v1"

func (b *DataFlowBackend) headlessUpgrade(fresh bool) migrate.Upgrade {
	return migrate.Upgrade{
		Name: HeadlessUpgrade,
		Note: "move the rows of turns left without their first message (position 0) by an earlier release's " +
			CountedUpgrade + " down a place, keeping their message IDs, and their search entries with them",
		Tables: []string{SessionsTable, MessagesTable},
		Batch: func(ctx context.Context, tx migrate.UpgradeTx, cursor string, until time.Time) (string, int64, bool, error) {
			if fresh {
				// The tables did not exist before this run: no release
				// upgraded their rows, and CountedUpgrade leaves no turn
				// headless. Recorded done without a scan.
				return cursor, 0, true, nil
			}
			return b.headlessBatch(ctx, tx, cursor, until)
		},
	}
}

// headlessBatch moves down the rows of the headless turns of the sessions
// after cursor, upgradeScan sessions per statement (a range of the message
// table's primary key), until the time until passes.
func (b *DataFlowBackend) headlessBatch(ctx context.Context, tx migrate.UpgradeTx, cursor string, until time.Time) (string, int64, bool, error) {
	var done int64
	for {
		rows, err := tx.QueryContext(ctx, `SELECT MAX(id), COUNT(*) FROM (SELECT id FROM `+SessionsTable+` WHERE id > ? ORDER BY id LIMIT ?) s`, cursor, upgradeScan)
		if err != nil {
			return cursor, done, false, err
		}
		var last sql.NullString
		var scanned int
		if err := scanOne(rows, &last, &scanned); err != nil {
			return cursor, done, false, err
		}
		if scanned == 0 {
			return cursor, done, true, nil
		}
		type turn struct {
			session string
			seq     int64
		}
		var turns []turn
		rows, err = tx.QueryContext(ctx, `SELECT m.session_id, m.seq FROM `+MessagesTable+` m
WHERE m.session_id > ? AND m.session_id <= ? AND m.pos = 1
	AND NOT EXISTS (SELECT 1 FROM `+MessagesTable+` h WHERE h.session_id = m.session_id AND h.seq = m.seq AND h.pos = 0)
ORDER BY m.session_id, m.seq`, cursor, last.String)
		if err != nil {
			return cursor, done, false, err
		}
		for rows.Next() {
			var t turn
			if err := rows.Scan(&t.session, &t.seq); err != nil {
				rows.Close()
				return cursor, done, false, err
			}
			turns = append(turns, t)
		}
		if err := rows.Close(); err != nil {
			return cursor, done, false, err
		}
		if err := rows.Err(); err != nil {
			return cursor, done, false, err
		}
		for _, t := range turns {
			n, err := b.headTurn(ctx, tx, t.session, t.seq)
			if err != nil {
				return cursor, done, false, fmt.Errorf("%s: %w", sessionName(t.session), err)
			}
			done += n
		}
		cursor = last.String
		if scanned < upgradeScan {
			return cursor, done, true, nil
		}
		if time.Now().After(until) {
			return cursor, done, false, nil
		}
	}
}

// headTurn moves the rows of the session's turn at seq down to position
// 0 and on, in ascending order, if it has no head row still once the
// session row is locked (a writer of an earlier release may append to it
// meanwhile) and no other turn's head row holds its turn ID. A row keeps
// its ID: one stored NULL (the ID its place derives, written by a release
// with compact keys) gets that ID stored, which its new place does not
// derive. It returns how many rows moved.
func (b *DataFlowBackend) headTurn(ctx context.Context, tx migrate.UpgradeTx, sessionID string, seq int64) (int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT 1 FROM `+SessionsTable+` WHERE id = ?`+b.store.rowLock(), sessionID)
	if err != nil {
		return 0, err
	}
	var one int
	if err := scanOne(rows, &one); err != nil && err != sql.ErrNoRows {
		return 0, err
	}
	type row struct {
		pos    int32
		turnID string
		msgID  sql.NullString
	}
	var turn []row
	rows, err = tx.QueryContext(ctx, `SELECT pos, turn_id, msg_id FROM `+MessagesTable+` WHERE session_id = ? AND seq = ? ORDER BY pos`, sessionID, seq)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.pos, &r.turnID, &r.msgID); err != nil {
			rows.Close()
			return 0, err
		}
		turn = append(turn, r)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(turn) == 0 || turn[0].pos == 0 {
		return 0, nil
	}
	// The release found a turn by its head row alone, so a save of the
	// turn's ID again stored a new turn under it: that one keeps the ID,
	// and this turn stays where it is (a head row would break the unique
	// turn index, failing every run).
	rows, err = tx.QueryContext(ctx, `SELECT 1 FROM `+MessagesTable+` WHERE session_id = ? AND turn_id = ? AND pos = 0`, sessionID, turn[0].turnID)
	if err != nil {
		return 0, err
	}
	if err := scanOne(rows, &one); err != sql.ErrNoRows {
		return 0, err // nil: the turn ID is held
	}
	shift := turn[0].pos
	for _, r := range turn {
		id := r.msgID.String
		if !r.msgID.Valid {
			id = driver.DerivedMessageID(r.turnID, int(r.pos))
		}
		if _, err := tx.ExecContext(ctx, `UPDATE `+MessagesTable+` SET pos = ?, msg_id = ? WHERE session_id = ? AND seq = ? AND pos = ?`,
			r.pos-shift, id, sessionID, seq, r.pos); err != nil {
			return 0, err
		}
		if err := b.store.moveEntries(ctx, tx, sessionID, seq, r.pos, r.pos-shift); err != nil {
			return 0, err
		}
	}
	return int64(len(turn)), nil
}
