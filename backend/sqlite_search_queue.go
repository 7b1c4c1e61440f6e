package backend

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/turnkeep/turnkeep/dataflow"
)

// The SQLite search index is kept off the save's path: a save writes its
// messages, and a trigger on the messages table appends one row per message
// to a queue (SearchQueueTable: the message's key, nothing of its text), at
// the queue's end, so a save writes no FTS5 page and runs no statement for
// the index. The index catches up in batches (catchUpSearch), each one
// transaction that reads the queued messages, inserts their entries and
// empties what it read:
//
//   - Search catches up first, so a search sees every save acknowledged
//     before it began, on any server (the queue is in the database).
//   - A backend whose saves, appends and imports have queued
//     searchCatchUpAfter messages since its last catch-up runs one after
//     the write that crossed it, once that write has committed: a failure
//     there is logged and the messages stay queued, never the write lost.
//
// Measured (TestWALPagesBackend, BenchmarkSearchIndexCost): a save costs
// what it costs with no index plus one queue page, and the catch-up costs a
// fraction of the inline index's pages per message, because one FTS5
// segment then holds a batch instead of one save.
//
// Erasure: whatever deletes a session's messages (clear, expiry, replace,
// DeleteUser) deletes its queued rows in the same transaction
// (unindexKeysTx), and SQLite's secure_delete zeroes them, so the queue
// keeps nothing of a deleted session either.
//
// A database where the index exists but the queue does not (written by an
// earlier release) gets the queue at the search index's ensure run; under
// a DB that may not change the schema it stays without, and saves index
// inline as before.

// SearchQueueTable is the SQLite table of messages saved and not yet in the
// search index, in the order they were saved.
const SearchQueueTable = "turnkeep_search_queue"

// searchQueueTrigger is the trigger that queues every message inserted.
const searchQueueTrigger = "turnkeep_search_enqueue"

const (
	// searchCatchUpAfter is how many messages this backend queues before
	// it catches the index up after a write.
	searchCatchUpAfter = 256
	// searchBatch and searchBatchBytes bound the messages one catch-up
	// transaction indexes, and so the memory it holds (their text and
	// entries): it stops reading at either. FTS5 writes a segment per
	// transaction, so a bigger batch writes fewer segments and merges:
	// at 256 rather than 64, 0.31 WAL pages less per save
	// (TestWALPagesBackend: 10.34 -> 10.03).
	searchBatch      = 256
	searchBatchBytes = 4 << 20
	// searchInsertRows bounds the rows of one insert into the index (6
	// parameters each).
	searchInsertRows = 128
)

// searchQueueDDL returns the statements that create the queue and its
// trigger. The queue is keyed by tenant, so that a catch-up reads and
// indexes one tenant's messages (every statement names its tenant), then
// by the message's key: a message is queued once (OR IGNORE). It stays
// small (what saves queued since the last catch-up), so a save writes one
// of its few leaf pages wherever its key falls.
func searchQueueDDL() []string {
	return []string{
		`CREATE TABLE IF NOT EXISTS ` + SearchQueueTable + ` (tenant TEXT NOT NULL, skey TEXT NOT NULL, seq INTEGER NOT NULL, pos INTEGER NOT NULL,
	PRIMARY KEY (tenant, skey, seq, pos)) WITHOUT ROWID`,
		// The tenant is the key's part before U+001F, as tenantOf splits it.
		`CREATE TRIGGER IF NOT EXISTS ` + searchQueueTrigger + ` AFTER INSERT ON ` + MessagesTable + ` BEGIN
	INSERT OR IGNORE INTO ` + SearchQueueTable + ` (tenant, skey, seq, pos) VALUES (
		CASE WHEN instr(new.session_id, char(31)) > 0 THEN substr(new.session_id, 1, instr(new.session_id, char(31)) - 1) ELSE '' END,
		new.session_id, new.seq, new.pos);
END`,
	}
}

// searchQueue is the state of the SQLite search queue in one backend.
type searchQueue struct {
	on      atomic.Bool  // the trigger exists: writes queue their messages, and do not index them
	pending atomic.Int64 // messages this backend queued since its last catch-up
}

// ensureSearchQueue finds the queue's trigger, and creates the queue and
// the trigger, in one transaction, where they are missing and the DB may
// change the schema. Run by the search index's ensure run, after the FTS5
// table exists.
func (b *DataFlowBackend) ensureSearchQueue(ctx context.Context) error {
	rows, err := b.db.QueryContext(ctx, `SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?`, searchQueueTrigger)
	if err != nil {
		return err
	}
	var one int
	if err := scanOne(rows, &one); err != nil && err != sql.ErrNoRows {
		return err
	}
	if one == 1 {
		b.queue.on.Store(true)
		return nil
	}
	if !b.db.SchemaChanges() {
		b.log.Warn("turnkeep: the search index is written inside every save: its queue is missing, and the DB may not change the schema",
			"table", SearchQueueTable, "fix", "turnkeep migrate up")
		return nil
	}
	err = b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		for _, q := range searchQueueDDL() {
			if _, err := b.db.NewStmt(q).ExecTx(ctx, tx); err != nil {
				return err
			}
		}
		return nil
	}, b.messages) // the trigger is on the messages table
	if err != nil {
		return err
	}
	b.queue.on.Store(true)
	return nil
}

// queued notes that a committed write to the session key queued n
// messages, and catches the key's tenant's index up once this backend has
// queued searchCatchUpAfter since the last time. Its own failure is
// logged, not returned: the write is stored, and its messages stay queued
// for the next catch-up.
func (b *DataFlowBackend) queued(ctx context.Context, key string, n int) {
	if !b.queue.on.Load() || b.queue.pending.Add(int64(n)) < searchCatchUpAfter {
		return
	}
	b.queue.pending.Store(0)
	if err := b.catchUpSearch(ctx, tenantOf(key)); err != nil {
		b.log.Warn("turnkeep: search index catch-up failed; the messages stay queued", "error", err)
	}
}

// catchUpSearch indexes every queued message of the tenant, a batch
// per transaction. It reads first whether anything is queued, so that a
// search with nothing to catch up takes no write lock.
func (b *DataFlowBackend) catchUpSearch(ctx context.Context, tenant string) error {
	if !b.queue.on.Load() {
		return nil
	}
	exists := b.stmt("queue/any", func() *dataflow.Stmt {
		return b.db.NewReadStmt(`SELECT EXISTS (SELECT 1 FROM `+SearchQueueTable+` WHERE tenant = ?)`, b.messages)
	})
	rows, err := exists.Query(ctx, tenant)
	if err != nil {
		return err
	}
	var queued bool
	if err := scanOne(rows, &queued); err != nil || !queued {
		return err
	}
	for {
		more, err := b.catchUpBatch(ctx, tenant)
		if err != nil || !more {
			return err
		}
	}
}

// catchUpBatch indexes the first queued messages of the tenant, at most
// searchBatch or searchBatchBytes of text, in one transaction, and
// reports whether it stopped at a bound (more may be queued). A queued
// message that is gone (deleted since) has no row to index.
func (b *DataFlowBackend) catchUpBatch(ctx context.Context, tenant string) (more bool, err error) {
	read := b.stmt("queue/read", func() *dataflow.Stmt {
		return b.db.NewStmt(`SELECT q.skey, q.seq, q.pos, m.content FROM `+SearchQueueTable+` q
LEFT JOIN `+MessagesTable+` m ON m.session_id = q.skey AND m.seq = q.seq AND m.pos = q.pos
WHERE q.tenant = ? ORDER BY q.skey, q.seq, q.pos LIMIT ?`, b.messages)
	})
	done := b.stmt("queue/done", func() *dataflow.Stmt {
		return b.db.NewStmt(`DELETE FROM `+SearchQueueTable+` WHERE tenant = ? AND (skey, seq, pos) <= (?, ?, ?)`, b.messages)
	})
	err = b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		taken, size := 0, 0
		more = false
		rows, err := read.QueryTx(ctx, tx, tenant, searchBatch)
		if err != nil {
			return err
		}
		var (
			args    []any
			lastKey string
			lastSeq int64
			lastPos int32
		)
		for rows.Next() {
			var content sql.NullString
			if err := rows.Scan(&lastKey, &lastSeq, &lastPos, &content); err != nil {
				rows.Close()
				return err
			}
			taken++
			if entry, ok := SearchEntry(lastKey, lastSeq, lastPos, content.String); content.Valid && ok {
				args = append(args, entry...)
			}
			if size += len(content.String); size >= searchBatchBytes {
				more = true
				break
			}
		}
		more = more || taken == searchBatch
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for len(args) > 0 {
			n := min(len(args), 6*searchInsertRows)
			if err := b.insertEntries(ctx, tx, args[:n]); err != nil {
				return err
			}
			args = args[n:]
		}
		if taken == 0 {
			return nil
		}
		_, err = done.ExecTx(ctx, tx, tenant, lastKey, lastSeq, lastPos)
		return err
	}, b.messages)
	return more, err
}

// insertEntries inserts search entries, the arguments of SearchEntry rows.
func (b *DataFlowBackend) insertEntries(ctx context.Context, tx *dataflow.Tx, args []any) error {
	n := len(args) / 6
	st := b.stmt(fmt.Sprintf("index/%d", n), func() *dataflow.Stmt {
		rows := strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ")
		return b.db.NewStmt(`INSERT INTO `+SearchTable+` (body, sk, tk, skey, seq, pos) VALUES `+rows, b.messages)
	})
	_, err := st.ExecTx(ctx, tx, args...)
	return err
}

// unqueueKeysTx deletes the queued rows of the sessions of keys: by key
// for one key, else a scan of each tenant's queued rows, which hold at
// most what writes queued since the last catch-up.
func (b *DataFlowBackend) unqueueKeysTx(ctx context.Context, tx *dataflow.Tx, keys []string) error {
	if !b.queue.on.Load() || len(keys) == 0 {
		return nil
	}
	if len(keys) == 1 {
		st := b.stmt("queue/delete", func() *dataflow.Stmt {
			return b.db.NewStmt(`DELETE FROM `+SearchQueueTable+` WHERE tenant = ? AND skey = ?`, b.messages)
		})
		_, err := st.ExecTx(ctx, tx, tenantOf(keys[0]), keys[0])
		return err
	}
	st := b.stmt("queue/delete-keys", func() *dataflow.Stmt {
		return b.db.NewStmt(`DELETE FROM `+SearchQueueTable+` WHERE tenant = ? AND hex(skey) IN (SELECT value FROM json_each(?))`, b.messages)
	})
	// Hex, so that any bytes of a key (one of an earlier release's rows)
	// survive JSON.
	byTenant := map[string][]string{}
	for _, k := range keys {
		t := tenantOf(k)
		byTenant[t] = append(byTenant[t], strings.ToUpper(hex.EncodeToString([]byte(k))))
	}
	for t, hexed := range byTenant {
		list, err := json.Marshal(hexed)
		if err != nil {
			return err
		}
		if _, err := st.ExecTx(ctx, tx, t, string(list)); err != nil {
			return err
		}
	}
	return nil
}
