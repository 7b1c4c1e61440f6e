package backend

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/migrate"
)

// CountedUpgrade names the data upgrade of sessions written before
// messages had IDs and token counts (releases before 2e761bd's counts,
// such as af8f09f and b1aee53): see Upgrades.
const CountedUpgrade = "turnkeep.counted.v1"

// upgradeScan is how many session rows one statement of the upgrade
// reads, in key order, to find those left to count.
const upgradeScan = 512

// upgradeTimeout bounds one run of the upgrades at first use: on a large
// database written by an earlier release it takes minutes (docs/upgrade.md).
const upgradeTimeout = time.Hour

// Upgrades returns the data upgrades of the backend's tables, in the
// order they run (CountedUpgrade, then HeadlessUpgrade), for
// migrate.Migrator.UpgradePending and `turnkeep migrate status` and
// `plan`; RunUpgrades runs them. An upgrade made here counts old messages
// with driver.DefaultTokenCounter.
func (b *DataFlowBackend) Upgrades() []migrate.Upgrade {
	return b.upgrades(nil, false)
}

// upgrades are the data upgrades, old messages counted by counter; fresh
// is true when their tables did not exist before this run (see
// headlessUpgrade).
func (b *DataFlowBackend) upgrades(counter driver.TokenCounter, fresh bool) []migrate.Upgrade {
	return []migrate.Upgrade{b.countedUpgrade(counter), b.headlessUpgrade(fresh)}
}

// RunUpgrades runs the data upgrades that are pending, as the first use of
// the backend does, so that a deploy can run them ahead (`turnkeep
// migrate up`): the tables and the search index are ensured first. It
// counts old messages with driver.DefaultTokenCounter.
func (b *DataFlowBackend) RunUpgrades(ctx context.Context) ([]migrate.UpgradeResult, error) {
	if err := b.Err(); err != nil {
		return nil, err
	}
	res, err := b.runUpgrades(ctx, nil, 0)
	if err != nil {
		return res, fmt.Errorf("backend: %w", err)
	}
	return res, nil
}

// upgraded runs the pending data upgrades once per backend (the first
// use's run), so that the hot path reads and writes one form of rows: on
// the fast path one atomic load. Old messages are counted by counter, the
// first caller's. The run goes on when the caller gives up (its batches
// are bounded by the caller's deadline, so that a batch never holds the
// migration lock longer than the caller would wait), and later callers
// join it.
func (b *DataFlowBackend) upgraded(ctx context.Context, counter driver.TokenCounter) error {
	if b.upgrade.Ready() {
		return nil
	}
	if b.db.Closed() {
		return dataflow.ErrClosed
	}
	batch := migrate.DefaultUpgradeBatch
	if d, ok := ctx.Deadline(); ok {
		batch = min(batch, time.Until(d))
	}
	return b.upgrade.Ensure(ctx, func(ctx context.Context) error {
		// A run resumes where it stopped, so one cut off by a dead pooled
		// connection (or a transient conflict) is run again at once, as
		// dataflow runs a table's first use again; only what fails again
		// is cached, with its backoff.
		_, err := b.runUpgrades(ctx, counter, batch)
		for attempt := 0; err != nil && attempt < upgradeRetries && ctx.Err() == nil && dataflow.Retryable(err); attempt++ {
			_, err = b.runUpgrades(ctx, counter, batch)
		}
		if err != nil && !errors.Is(err, dataflow.ErrEnsureFailed) {
			// A failed first-use step, as a table's: callers tell it, and
			// its backoff, by dataflow.ErrEnsureFailed.
			err = fmt.Errorf("%w: %w", dataflow.ErrEnsureFailed, err)
		}
		return err
	})
}

// upgradeRetries bounds the runs again of an upgrade check cut off by a
// dead pooled connection: a pool may hold that many dead ones.
const upgradeRetries = 4

func (b *DataFlowBackend) runUpgrades(ctx context.Context, counter driver.TokenCounter, batch time.Duration) ([]migrate.UpgradeResult, error) {
	mig := b.db.Migrator()
	ups := b.upgrades(counter, false)
	// One look at the catalog and the history (two statements) for the
	// tables a first use needs (a save's statement names the erased
	// table too) and the upgrades, asked before the tables are readied: an upgrade is not pending where its tables do not
	// exist yet (a new database), and then its run finds nothing to do,
	// needs no search index, and records so. The tables' first use
	// (below) runs no check of its own after it.
	states, err := b.db.Survey(ctx, ups, b.sessions, b.messages, b.erased)
	if err != nil {
		return nil, err
	}
	if states[0] == migrate.UpgradeNotApplicable {
		// A new database: no earlier release upgraded its rows.
		ups = b.upgrades(counter, true)
	}
	// The tables, as every operation readies them: their first use
	// migrates them to the columns the upgrades fill in.
	for _, t := range []interface{ Ready(context.Context) error }{b.sessions, b.messages} {
		if err := t.Ready(ctx); err != nil {
			return nil, err
		}
	}
	var out []migrate.UpgradeResult
	for i, u := range ups {
		switch states[i] {
		case migrate.UpgradeDone: // recorded done: it never runs again
			out = append(out, migrate.UpgradeResult{})
			continue
		case migrate.UpgradeIsPending:
			// Before the lock: the batches index old messages when the
			// search index is on, and ensureSearch may create it.
			if _, err := b.indexed(ctx); err != nil {
				return out, err
			}
		}
		res, err := mig.RunUpgrade(ctx, u, migrate.UpgradeOptions{MaxBatch: batch, NoDDL: !b.db.SchemaChanges()})
		out = append(out, res)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (b *DataFlowBackend) countedUpgrade(counter driver.TokenCounter) migrate.Upgrade {
	if counter == nil {
		counter = driver.DefaultTokenCounter
	}
	return migrate.Upgrade{
		Name: CountedUpgrade,
		Note: "give the messages of sessions written before messages had IDs and token counts their IDs (driver.DerivedMessageID), " +
			"token counts and the tokens before each turn, and search entries; delete the empty message of one-sided turns",
		Tables: []string{SessionsTable, MessagesTable},
		Batch: func(ctx context.Context, tx migrate.UpgradeTx, cursor string, until time.Time) (string, int64, bool, error) {
			return b.countBatch(ctx, tx, cursor, until, counter)
		},
	}
}

// countBatch counts the sessions left to count after cursor, in key
// order, until the time until passes (one session at least).
func (b *DataFlowBackend) countBatch(ctx context.Context, tx migrate.UpgradeTx, cursor string, until time.Time, counter driver.TokenCounter) (string, int64, bool, error) {
	st, err := b.prepareCount(ctx, tx)
	if err != nil {
		return cursor, 0, false, err
	}
	defer st.close()
	var done int64
	for {
		rows, err := tx.QueryContext(ctx, `SELECT id, counted FROM `+SessionsTable+` WHERE id > ? ORDER BY id LIMIT ?`, cursor, upgradeScan)
		if err != nil {
			return cursor, done, false, err
		}
		var ids []string
		scanned, last := 0, cursor
		for rows.Next() {
			var id string
			var counted int16
			if err := rows.Scan(&id, &counted); err != nil {
				rows.Close()
				return cursor, done, false, err
			}
			scanned, last = scanned+1, id
			if counted == 0 {
				ids = append(ids, id)
			}
		}
		if err := rows.Close(); err != nil {
			return cursor, done, false, err
		}
		if err := rows.Err(); err != nil {
			return cursor, done, false, err
		}
		for i, id := range ids {
			if i > 0 && time.Now().After(until) {
				return cursor, done, false, nil // id and after: the next batch
			}
			n, err := b.countSession(ctx, tx, st, id, counter)
			if err != nil {
				return cursor, done, false, fmt.Errorf("session %s: %w", sessionName(id), err)
			}
			cursor, done = id, done+n
		}
		cursor = last
		if scanned < upgradeScan {
			return cursor, done, true, nil
		}
		if time.Now().After(until) {
			return cursor, done, false, nil
		}
	}
}

// countSession fills in the IDs and counts of a session's rows written by
// a release before messages had them, and the tokens before every turn,
// so that windows read them as any others; it marks the session counted,
// with its tokens. It returns how many rows it wrote. A session counted
// meanwhile (by a writer of the previous release, which counts on its own
// path: the row is locked, on SQLite by the transaction) is left as it is.
//
// A row gets driver.DerivedMessageID (made unique within the session if a
// message appended since holds it) and counter's count. The empty message
// such a release stored for a one-sided turn is deleted: the conversation
// model has no empty messages, and it carried nothing. The turn's rows
// after it move down a place (in ascending order, so that no two meet),
// keeping their IDs, so that every turn has its head row (pos 0), which
// every lookup of a turn by ID reads: an answer with no question is the
// row X/1 at position 0. The turn's metadata, which the release stored on
// the deleted row, goes to the new head row.
func (b *DataFlowBackend) countSession(ctx context.Context, tx migrate.UpgradeTx, st *countStmts, sessionID string, counter driver.TokenCounter) (int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT counted FROM `+SessionsTable+` WHERE id = ?`+b.store.rowLock(), sessionID)
	if err != nil {
		return 0, err
	}
	var counted int16
	if err := scanOne(rows, &counted); err != nil || counted != 0 {
		return 0, err
	}
	type row struct {
		seq           int64
		pos           int32
		turnID, msgID string
		counted       bool
		role, content string
		tokens        int64
		meta          sql.NullString // the turn's metadata, on its first row
	}
	var all []row
	rows, err = tx.QueryContext(ctx, `SELECT seq, pos, turn_id, msg_id, role, content, tokens, metadata FROM `+MessagesTable+` WHERE session_id = ?`, sessionID)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var r row
		var id sql.NullString
		if err := rows.Scan(&r.seq, &r.pos, &r.turnID, &id, &r.role, &r.content, &r.tokens, &r.meta); err != nil {
			rows.Close()
			return 0, err
		}
		r.msgID, r.counted = id.String, id.Valid
		all = append(all, r)
	}
	if err := rows.Close(); err != nil {
		return 0, err
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	slices.SortFunc(all, func(a, b row) int { return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.pos, b.pos)) })
	held := make(map[string]bool, len(all))
	for _, r := range all {
		if r.counted {
			held[r.msgID] = true
		}
	}
	inRows := b.store.indexInRows()
	var total, before, n int64
	var deleted int32 // the turn's rows deleted so far: the rows after them move down
	var meta any      // the metadata of the turn's head row, deleted: its new head row takes it
	for i, r := range all {
		if i == 0 || r.seq != all[i-1].seq {
			before, deleted, meta = total, 0, nil
		}
		if !r.counted {
			if r.content == "" {
				if _, err := st.del.ExecContext(ctx, sessionID, r.seq, r.pos); err != nil {
					return 0, err
				}
				if r.pos == 0 && r.meta.Valid {
					meta = r.meta.String
				}
				n++
				deleted++
				continue
			}
			// The ID of the place the release wrote it at, which it keeps
			// if it moves (stored: it is not the one its new place derives).
			id := driver.DerivedMessageID(r.turnID, int(r.pos))
			for held[id] {
				id += "+"
			}
			held[id] = true
			r.msgID = id
			r.tokens = int64(max(counter.CountTokens(driver.Message{ID: id, Role: driver.Role(r.role), Content: r.content}), 0))
		}
		total += r.tokens
		var search any // the search text, in the row, of a row written before there was one
		if inRows {
			search = searchArg(r.content)
		}
		pos := r.pos - deleted
		var headMeta any
		if pos == 0 {
			headMeta = meta
		}
		if _, err := st.update.ExecContext(ctx, pos, r.msgID, r.tokens, before, search, headMeta, sessionID, r.seq, r.pos); err != nil {
			return 0, err
		}
		n++
		if r.counted && pos != r.pos {
			// A row written with its ID since (its search entries are
			// written or queued already) moves down as well.
			if err := b.store.moveEntries(ctx, tx, sessionID, r.seq, r.pos, pos); err != nil {
				return 0, err
			}
		}
		if row, ok := SearchEntry(sessionID, r.seq, pos, r.content); !r.counted && st.indexSQL != "" && ok {
			index, err := st.indexStmt(ctx)
			if err != nil {
				return 0, err
			}
			if _, err := index.ExecContext(ctx, row...); err != nil {
				return 0, err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE `+SessionsTable+` SET tokens = ?, counted = 1 WHERE id = ?`, total, sessionID); err != nil {
		return 0, err
	}
	return n, nil
}

// countStmts are the statements countSession runs per row, prepared once
// per batch: on SQLite each ExecContext would parse its text again.
type countStmts struct {
	tx          migrate.UpgradeTx
	update, del *sql.Stmt
	indexSQL    string    // "": no search entries to write (see store.upgradeIndexSQL)
	index       *sql.Stmt // indexSQL prepared, at its first use (a new database has no index yet and needs none)
}

func (st *countStmts) indexStmt(ctx context.Context) (*sql.Stmt, error) {
	if st.index == nil {
		var err error
		if st.index, err = st.tx.PrepareContext(ctx, st.indexSQL); err != nil {
			return nil, err
		}
	}
	return st.index, nil
}

func (b *DataFlowBackend) prepareCount(ctx context.Context, tx migrate.UpgradeTx) (*countStmts, error) {
	st := &countStmts{tx: tx}
	var err error
	if st.update, err = tx.PrepareContext(ctx, `UPDATE `+MessagesTable+` SET pos = ?, msg_id = ?, tokens = ?, tokens_before = ?, search_text = COALESCE(search_text, ?), metadata = COALESCE(metadata, ?) WHERE session_id = ? AND seq = ? AND pos = ?`); err != nil {
		return nil, err
	}
	if st.del, err = tx.PrepareContext(ctx, `DELETE FROM `+MessagesTable+` WHERE session_id = ? AND seq = ? AND pos = ?`); err != nil {
		st.close()
		return nil, err
	}
	if !b.searchOff.Load() {
		st.indexSQL = b.store.upgradeIndexSQL()
	}
	return st, nil
}

func (st *countStmts) close() {
	for _, s := range []*sql.Stmt{st.update, st.del, st.index} {
		if s != nil {
			s.Close()
		}
	}
}
