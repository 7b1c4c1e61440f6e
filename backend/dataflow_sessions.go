package backend

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// The owner index: listing and deletion by owner, of owned sessions only
// (see NewDataFlowBackend).
const (
	ownerIdx   = SessionsTable + "_owner_idx"
	ownerWhere = "user_id <> ''"
)

var _ driver.SessionStore = (*DataFlowBackend)(nil)

// sessionColumns are what a SessionInfo is read from, in scanInfo's order.
func (b *DataFlowBackend) sessionColumns(alias string) string {
	return alias + "id, " + alias + "user_id, " + alias + "title, " + alias + "metadata, " + alias + "turn_count, " + alias + "tokens, " +
		b.db.TimeColumn(alias+"created_at") + ", " + b.db.TimeColumn(alias+"updated_at") + ", " + alias + "fork_of, " + alias + "fork_turn"
}

// scanInfo reads a row of sessionColumns.
func scanInfo(rows *sql.Rows) (driver.SessionInfo, error) {
	var (
		info       driver.SessionInfo
		key        string
		meta       sql.NullString
		count, tok int64
		created    dataflow.Time
		updated    dataflow.Time
		forkOf     string
		forkTurn   string
	)
	if err := rows.Scan(&key, &info.User, &info.Title, &meta, &count, &tok, &created, &updated, &forkOf, &forkTurn); err != nil {
		return driver.SessionInfo{}, err
	}
	if forkOf != "" {
		_, id := driver.ParseSessionKey(forkOf)
		info.ForkOf = &driver.ForkPoint{SessionID: id, TurnID: forkTurn}
	}
	_, info.ID = driver.ParseSessionKey(key)
	info.TurnCount, info.Tokens = int(count), int(tok)
	info.CreatedAt, info.UpdatedAt = created.Time.UTC(), updated.Time.UTC()
	if meta.Valid && meta.String != "" {
		if err := json.Unmarshal([]byte(meta.String), &info.Metadata); err != nil {
			return driver.SessionInfo{}, fmt.Errorf("decode metadata of %s: %w", sessionName(key), err)
		}
	}
	return info, nil
}

// stmt returns the statement named name, made by build the first time: the
// statements whose text depends on a query's shape (listing with or without
// an owner or a cursor, deleting a batch of n sessions).
func (b *DataFlowBackend) stmt(name string, build func() *dataflow.Stmt) *dataflow.Stmt {
	b.namedMu.Lock()
	defer b.namedMu.Unlock()
	if st := b.named[name]; st != nil {
		return st
	}
	st := build()
	b.named[name] = st
	return st
}

// SessionInfo describes the session; one that does not exist is
// driver.ErrSessionNotFound. It implements driver.Backend.
func (b *DataFlowBackend) SessionInfo(ctx context.Context, sessionID string) (driver.SessionInfo, error) {
	if err := b.check(sessionID); err != nil {
		return driver.SessionInfo{}, err
	}
	st := b.stmt("info", func() *dataflow.Stmt {
		return b.db.NewReadStmt(`SELECT `+b.sessionColumns("")+` FROM `+SessionsTable+` WHERE id = ?`, b.sessions)
	})
	rows, err := st.Query(ctx, sessionID)
	if err != nil {
		return driver.SessionInfo{}, fmt.Errorf("backend: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return driver.SessionInfo{}, fmt.Errorf("backend: %w", err)
		}
		return driver.SessionInfo{}, fmt.Errorf("backend: %s: %w", sessionName(sessionID), bare{driver.ErrSessionNotFound})
	}
	info, err := scanInfo(rows)
	if err != nil {
		return driver.SessionInfo{}, fmt.Errorf("backend: %w", err)
	}
	return info, rows.Close()
}

// CreateSession records the session's owner, title and metadata, creating
// it with no turns if need be, in one statement: an upsert that changes an
// existing row only when it is owned by the same user, or unowned and
// empty (turn_count 0, under the row's lock, so a save racing it either
// came first, and the session is driver.ErrSessionExists, or comes after
// into the owned session). When it changes nothing, the owner is read to
// tell driver.ErrSessionExists from driver.ErrSessionOwned. It implements
// driver.SessionStore.
func (b *DataFlowBackend) CreateSession(ctx context.Context, key string, info driver.SessionInfo) error {
	if err := b.check(key); err != nil {
		return err
	}
	meta, err := encodeMetadata(info.Metadata)
	if err != nil {
		return err
	}
	st := b.stmt("create", func() *dataflow.Stmt {
		return b.db.NewStmt(b.form("create", `INSERT INTO `+SessionsTable+` (id, tenant, user_id, title, metadata, turn_count, version, tokens, counted, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, 0, ?, 0, 1, ?, ?)
ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, title = excluded.title, metadata = excluded.metadata, updated_at = excluded.updated_at
WHERE (`+SessionsTable+`.user_id = excluded.user_id AND `+SessionsTable+`.user_id <> '') OR (`+SessionsTable+`.user_id = '' AND `+SessionsTable+`.turn_count = 0)
RETURNING id`), b.sessions)
	})
	at := now()
	created := at
	if !info.CreatedAt.IsZero() {
		created = info.CreatedAt.UTC().Truncate(time.Microsecond)
	}
	// The title and metadata may be a user's words: a session a
	// DeleteUser deleted since the call began is not made again with
	// them (ErasedRow), the mark being read after the row's upsert, in
	// the same transaction, as Import reads it.
	err = b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		rows, err := st.QueryTx(ctx, tx, key, tenantOf(key), info.User, info.Title, jsonArg(meta), firstVersion(), created, at)
		if err != nil {
			return err
		}
		var got string
		if err := scanOne(rows, &got); err != nil {
			return err
		}
		switch erased, err := b.erasedSinceTx(ctx, tx, key, at); {
		case err != nil:
			return err
		case erased:
			return driver.ErrSessionDeleted
		}
		return nil
	}, b.sessions, b.erased)
	switch {
	case errors.Is(err, driver.ErrSessionDeleted):
		return fmt.Errorf("backend: %s: %w", sessionName(key), bare{driver.ErrSessionDeleted})
	case errors.Is(err, sql.ErrNoRows):
		owner, err := b.owner(ctx, key)
		if err != nil && !errors.Is(err, sql.ErrNoRows) { // a row deleted meanwhile was another's
			return fmt.Errorf("backend: %w", err)
		}
		return refusedOwner(key, owner)
	case err != nil:
		return fmt.Errorf("backend: %w", b.writeOutcome(ctx, "create session", err))
	}
	return nil
}

// ListSessions returns a page of the tenant's sessions, most recently
// updated first: one statement, a keyset range scan of the owner or tenant
// index, backwards from the cursor. It implements driver.SessionStore.
func (b *DataFlowBackend) ListSessions(ctx context.Context, tenant string, q driver.SessionQuery) (driver.SessionPage, error) {
	if b == nil || b.db == nil {
		return driver.SessionPage{}, errNoDB
	}
	var after *listCursor
	if q.After != "" {
		after = new(listCursor)
		if err := decodeCursor(q.After, after); err != nil {
			return driver.SessionPage{}, err
		}
	}
	name := fmt.Sprintf("list/%t/%t", q.User != "", after != nil)
	st := b.stmt(name, func() *dataflow.Stmt {
		where := `tenant = ?`
		if q.User != "" {
			where += ` AND user_id = ? AND ` + ownerWhere // the owner index's condition, so that it serves
		}
		if after != nil {
			where += ` AND (updated_at, id) < (?, ?)`
		}
		return b.db.NewReadStmt(`SELECT `+b.sessionColumns("")+` FROM `+SessionsTable+` WHERE `+where+`
ORDER BY updated_at DESC, id DESC LIMIT ?`, b.sessions)
	})
	args := []any{tenant}
	if q.User != "" {
		args = append(args, q.User)
	}
	if after != nil {
		args = append(args, time.UnixMicro(after.UpdatedAt).UTC(), after.Key)
	}
	args = append(args, q.Limit+1)
	rows, err := st.Query(ctx, args...)
	if err != nil {
		return driver.SessionPage{}, fmt.Errorf("backend: %w", err)
	}
	defer rows.Close()
	var p driver.SessionPage
	for rows.Next() {
		info, err := scanInfo(rows)
		if err != nil {
			return driver.SessionPage{}, fmt.Errorf("backend: %w", err)
		}
		p.Sessions = append(p.Sessions, info)
	}
	if err := rows.Err(); err != nil {
		return driver.SessionPage{}, fmt.Errorf("backend: %w", err)
	}
	if len(p.Sessions) > q.Limit {
		p.Sessions = p.Sessions[:q.Limit]
		last := p.Sessions[q.Limit-1]
		p.Next = encodeCursor(listCursor{UpdatedAt: last.UpdatedAt.UnixMicro(), Key: driver.SessionKey(tenant, last.ID)})
	}
	return p, rows.Close()
}

// DeleteSessions removes the selected sessions in batches, each in a
// transaction of its own: the batch's rows are chosen and locked (on
// PostgreSQL with SKIP LOCKED, so that processes running it at once take
// different batches and each session is removed and counted once), then
// their messages, search entries and session rows are deleted. A save
// racing it waits for the lock, and then either finds its session gone
// and starts a new one, or was first and is deleted with it. Deleting a
// user's sessions (user not nil) also marks them erased (ErasedRow) in the
// batch's transaction, so that a save begun before is refused with
// driver.ErrSessionDeleted instead of starting a new session. Each
// session goes whole, with its batch; cut off by ctx, it returns what
// the committed batches deleted with the error, and running it again
// deletes the rest. It implements driver.SessionStore.
func (b *DataFlowBackend) DeleteSessions(ctx context.Context, tenant string, user *string, before time.Time, batch int) (driver.DeleteReport, []string, error) {
	if b == nil || b.db == nil {
		return driver.DeleteReport{}, nil, errNoDB
	}
	if batch < 1 {
		return driver.DeleteReport{}, nil, fmt.Errorf("backend: %w: batch %d", driver.ErrInvalidOption, batch)
	}
	index, err := b.indexed(ctx)
	if err != nil {
		return driver.DeleteReport{}, nil, fmt.Errorf("backend: %w", err)
	}
	if err := b.pruneErased(ctx, tenant); err != nil {
		return driver.DeleteReport{}, nil, fmt.Errorf("backend: %w", err)
	}
	where := `tenant = ?`
	if user != nil {
		where += ` AND user_id = ?`
		if *user != "" {
			where += ` AND ` + ownerWhere // the owner index's condition, so that it serves
		}
	}
	if !before.IsZero() {
		where += ` AND updated_at < ?`
	}
	shape := fmt.Sprintf("%t/%t/%t", user != nil, user != nil && *user != "", !before.IsZero())
	pickStmt := func(lock string) *dataflow.Stmt {
		return b.stmt("pick/"+shape+lock, func() *dataflow.Stmt {
			return b.db.NewStmt(`SELECT id FROM `+SessionsTable+` WHERE `+where+` ORDER BY updated_at, id LIMIT ?`+lock, b.sessions)
		})
	}
	// On PostgreSQL batches skip rows another transaction holds, so that
	// servers deleting at once take different batches; once nothing is
	// left to take so, the rows still matching (held by a save, an append
	// or another deleter) are waited for, until none matches.
	pick := pickStmt(b.store.skipLocked())
	left := b.stmt("left/"+shape, func() *dataflow.Stmt {
		return b.db.NewReadStmt(`SELECT COUNT(*) FROM (SELECT 1 FROM `+SessionsTable+` WHERE `+where+` LIMIT 1) x`, b.sessions)
	})
	args := []any{tenant}
	if user != nil {
		args = append(args, *user)
	}
	if !before.IsZero() {
		args = append(args, before.UTC())
	}
	args = append(args, batch)

	var (
		report driver.DeleteReport
		keys   []string
	)
	// finish marks a DeleteUser's sessions done (ErasedRow): saves begun
	// from now on start new sessions.
	finish := func() error {
		if user == nil {
			return nil
		}
		if err := b.finishErased(ctx, tenant, *user); err != nil {
			return fmt.Errorf("backend: %w", err)
		}
		return nil
	}
	sums, tables, err := b.erasing(ctx, b.sessions, b.messages, b.erased)
	if err != nil {
		return report, keys, fmt.Errorf("backend: %w", err)
	}
	retries := 0
	for {
		var got []string
		var msgs int64
		err := b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			got, msgs = got[:0], 0
			rows, err := pick.QueryTx(ctx, tx, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return err
				}
				got = append(got, k)
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil || len(got) == 0 {
				return err
			}
			if msgs, err = b.deleteKeysTx(ctx, tx, got, sums, index); err != nil || user == nil {
				return err
			}
			return b.markErasedTx(ctx, tx, tenant, *user, got)
		}, tables...)
		if err != nil && retries < deleteRetries && dataflow.Retryable(err) && ctx.Err() == nil {
			// The batch was rolled back whole (a deadlock of two batches'
			// gap locks on MySQL, a Galera certification conflict): pick
			// again.
			retries++
			continue
		}
		if err != nil {
			return report, keys, fmt.Errorf("backend: %w", err)
		}
		retries = 0
		if len(got) == 0 && b.store.skipLocked() == "" {
			return report, keys, finish() // the transaction saw every row
		}
		if len(got) == 0 {
			rows, err := left.Query(ctx, args[:len(args)-1]...)
			if err != nil {
				return report, keys, fmt.Errorf("backend: %w", err)
			}
			var n int
			if err := scanOne(rows, &n); err != nil {
				return report, keys, fmt.Errorf("backend: %w", err)
			}
			if n == 0 {
				return report, keys, finish()
			}
			pick = pickStmt(b.store.rowLock())
			continue
		}
		report.Sessions += len(got)
		report.Messages += int(msgs)
		keys = append(keys, got...)
	}
}

// deleteKeysTx deletes the sessions of keys, with their messages and search
// entries, and returns how many messages it deleted. The forks sharing
// their turns get copies first (detachTx; index: the SQLite index is
// written inline).
// With sums, their summaries too.
func (b *DataFlowBackend) deleteKeysTx(ctx context.Context, tx *dataflow.Tx, keys []string, sums, index bool) (int64, error) {
	in := strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ")
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	if err := b.detachTx(ctx, tx, keys, index); err != nil {
		return 0, err
	}
	if err := b.store.unindexKeysTx(ctx, tx, keys); err != nil {
		return 0, err
	}
	if sums {
		if err := b.deleteSummariesTx(ctx, tx, keys); err != nil {
			return 0, err
		}
	}
	delMsgs := b.stmt(fmt.Sprintf("delmsgs/%d", len(keys)), func() *dataflow.Stmt {
		return b.db.NewStmt(`DELETE FROM `+MessagesTable+` WHERE session_id IN (`+in+`)`, b.messages)
	})
	res, err := delMsgs.ExecTx(ctx, tx, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	delSessions := b.stmt(fmt.Sprintf("delsessions/%d", len(keys)), func() *dataflow.Stmt {
		return b.db.NewStmt(`DELETE FROM `+SessionsTable+` WHERE id IN (`+in+`)`, b.sessions)
	})
	if _, err := delSessions.ExecTx(ctx, tx, args...); err != nil {
		return 0, err
	}
	return n, nil
}

// pageWhole reports whether w, a history page read with the bounds lo
// and hi (nil: from the turn count) and limit, holds every turn of its
// range (lo, hi] of the session's turns (see readWhole); SummaryTurns
// reads its range likewise.
func pageWhole(w driver.Window, lo, hi any, limit int64) bool {
	count := int64(w.TurnCount)
	from, to := count-limit, count
	if lo != nil {
		from, to = lo.(int64), min(hi.(int64), count)
	}
	from = max(from, 0)
	n := int64(len(w.Turns))
	if n != max(to-from, 0) {
		return false
	}
	return n == 0 || int64(w.Turns[0].Seq) == from+1 && int64(w.Turns[n-1].Seq) == from+n
}

// History returns a page of the session's turns, in one statement: the
// session row joined with a primary-key range of its messages per session
// of its fork chain (chainRead). It
// implements driver.SessionStore.
func (b *DataFlowBackend) History(ctx context.Context, key string, q driver.HistoryQuery) (driver.HistoryPage, error) {
	if err := b.check(key); err != nil {
		return driver.HistoryPage{}, err
	}
	var after *historyCursor
	if q.After != "" {
		after = new(historyCursor)
		if err := decodeCursor(q.After, after); err != nil {
			return driver.HistoryPage{}, err
		}
	}
	st := b.stmt("history", func() *dataflow.Stmt {
		return b.db.NewReadStmt(b.chainRead("history", `, COALESCE(CAST(? AS BIGINT), s.turn_count - CAST(? AS BIGINT)) AS lo,
	COALESCE(CAST(? AS BIGINT), s.turn_count) AS hi`, "h.lo", "h.lo", "h.hi"), b.sessions, b.messages)
	})
	// Turns (lo, hi] of the session: oldest first from the cursor up;
	// newest first from the cursor (or the newest turn) down.
	var lo, hi any
	limit := int64(q.Limit)
	switch {
	case !q.NewestFirst && after == nil:
		lo, hi = int64(0), limit
	case !q.NewestFirst:
		lo, hi = after.Seq, after.Seq+limit
	case after == nil:
		lo, hi = nil, nil
	default:
		lo, hi = max(after.Seq-1-limit, 0), after.Seq-1
	}
	wq := driver.WindowQuery{MaxTurns: q.Limit, Known: driver.UnknownVersion}
	if err := b.upgraded(ctx, nil); err != nil {
		return driver.HistoryPage{}, fmt.Errorf("backend: %w", err)
	}
	var w driver.Window
	err := b.readWhole(ctx, func() (bool, error) {
		rows, err := st.Query(ctx, lo, limit, hi, key)
		if err != nil {
			return false, err
		}
		w, _, err = scanWindow(rows, wq, nil)
		return pageWhole(w, lo, hi, limit), err
	})
	if err != nil {
		return driver.HistoryPage{}, fmt.Errorf("backend: %w", err)
	}
	p := driver.HistoryPage{Turns: w.Turns}
	if len(p.Turns) == 0 {
		p.Turns = nil
		return p, nil
	}
	// Sequences are dense (1 to the turn count), so the page's bounds say
	// whether there is more.
	firstSeq := int64(w.TurnCount) - int64(len(p.Turns)) + 1
	if q.NewestFirst {
		if after != nil {
			firstSeq = after.Seq - int64(len(p.Turns))
		}
		for i, j := 0, len(p.Turns)-1; i < j; i, j = i+1, j-1 {
			p.Turns[i], p.Turns[j] = p.Turns[j], p.Turns[i]
		}
		if firstSeq > 1 {
			p.Next = encodeCursor(historyCursor{Seq: firstSeq})
		}
		return p, nil
	}
	lastSeq := int64(len(p.Turns))
	if after != nil {
		lastSeq += after.Seq
	}
	if lastSeq < int64(w.TurnCount) {
		p.Next = encodeCursor(historyCursor{Seq: lastSeq})
	}
	return p, nil
}
