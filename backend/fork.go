package backend

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// Forks share their parent's prefix instead of copying it.
//
// A session row names the session that stores its turns up to a sequence:
// base and base_seq ("" and 0 for none). Its own message rows all have a
// sequence above base_seq, and sequences and tokens_before continue
// across the chain (a fork at turn k starts with turn_count k and the
// tokens of turns 1 to k), so a read of a fork's turns (lo, hi] is, per
// session of its chain, one range of the messages' primary key:
// session_id = that session AND seq > lo AND seq <= the least fork point
// below it. chainRead makes every such read one statement: a recursive CTE
// walks the chain by primary key (only as far down as the range reaches),
// then each chain row joins its range.
//
// Fork itself writes the new session's row (and copies a summary that
// covers no turn past the fork point): the same statements and rows
// whatever the parent holds. fork_of and fork_turn record where a fork
// left its parent, for SessionInfo.ForkOf and ListForks (a partial index
// of forks, which a save of a session that is no fork never writes).
//
// Before a session's messages are deleted (clear, replace, expiry,
// DeleteUser), every session whose base it is gets the rows it shared
// copied into its own (detachTx), with their search entries, and its base
// moved down the chain: a fork stays whole, and no byte of the deleted
// session stays behind for it.
//
// Depth: forks of forks chain without a limit of their own (tested to 12);
// a read visits one chain row per session of the chain its range reaches,
// the walk stopping below the range. The recursive CTE is bounded by the
// engine: MariaDB's max_recursive_iterations (a chain of more sessions
// than it allows fails to read), none on SQLite and PostgreSQL. On MySQL
// an ancestor's rows are read by its session_id and filtered to its range
// (see mysqlStore.chainQuery); a session that is no fork reads its range.
//
// A turn saved into a fork whose ID its inherited prefix holds is not
// found by the save's duplicate check (the session's own rows): it is
// stored again, as a new turn.

// Index names and conditions of the sessions' fork columns.
const (
	forkIdx   = SessionsTable + "_fork_idx"
	forkWhere = "fork_of <> ''"
	baseIdx   = SessionsTable + "_base_idx"
	baseWhere = "base <> ''"
)

var _ driver.Forker = (*DataFlowBackend)(nil)

// chainRead returns the read of the session's messages (lo, hi] across its
// fork chain, selecting loadColumns (for scanWindow): the session row h by
// primary key with the columns head adds (expressions over the row s,
// whose parameters come before the session ID's), the chain c of the
// sessions storing its turns, each with its highest sequence hi (walked
// while its fork point is above prune), and per chain row its range of
// messages m (the store's chainQuery puts these together, with the
// one-row CTE s of the session's bounds lo and hi). A session that does
// not exist yields no row; one whose range is empty yields its row alone
// (m's columns NULL). lo and hi are expressions over h (lo may read c).
func (b *DataFlowBackend) chainRead(name, head, prune, lo, hi string) string {
	ctes := `WITH RECURSIVE h AS (SELECT s.id, s.turn_count, s.version, s.base, s.base_seq` + head + ` FROM ` + SessionsTable + ` s WHERE s.id = ?),
c (id, hi, base, base_seq) AS (SELECT h.id, h.turn_count, h.base, h.base_seq FROM h
	UNION ALL
	SELECT p.id, c.base_seq, p.base, p.base_seq FROM c JOIN h ON c.base <> '' AND c.base_seq > ` + prune + ` JOIN ` + SessionsTable + ` p ON p.id = c.base)`
	return b.form(name, b.store.chainQuery(ctes, lo, hi, loadColumns+b.db.TimeColumn("m.created_at"),
		"m.session_id = c.id AND m.seq > s.lo AND m.seq <= c.hi AND m.seq <= s.hi"))
}

// windowReads returns the load statements, without and with a token
// budget; their arguments are the known version (minus one), the turn
// limit, with a budget the budget, and the session key.
//
// Both start the range at turn_count - maxTurns, or past the newest turn
// when the version is the known one (so nothing but the session row is
// read). A budget window starts no earlier than the oldest turn whose
// tokens_before is at least tokens - budget (h.th; tokens_before ascends
// with the sequence along the chain, so the turns from it on are the
// newest that fit), and no later than the newest turn (a window holds it
// even over budget): the store's budgetLo finds it per chain row.
func (b *DataFlowBackend) windowReads() (window, budget string) {
	turns := `, s.turn_count - CASE WHEN s.version = CAST(? AS BIGINT) THEN 0 ELSE CAST(? AS BIGINT) END AS t`
	window = b.chainRead("load/window", turns, "h.t", "h.t", "h.turn_count")
	budget = b.chainRead("load/budget", turns+`, s.tokens - CAST(? AS BIGINT) AS th`, "h.t", b.store.budgetLo(), "h.turn_count")
	return window, budget
}

// budgetScanLo is the bound of a budget window read without a budget
// index: the newest turn before the budget (per chain row, the first row
// reading its range of the primary key backwards from its top whose
// tokens_before is under h.th), no older than the turn limit's bound and
// no newer than the turn before the newest (a window holds the newest
// turn even over budget). It reads the window's rows and one more per
// chain row, whatever the session's history (the turn limit stops a
// budget that holds every turn), through the primary key. greatest and
// least are the engine's two-argument functions (MAX and MIN on SQLite).
func budgetScanLo(greatest, least string) string {
	return greatest + `(h.t, ` + least + `(COALESCE((SELECT MAX((SELECT x.seq FROM ` + MessagesTable + ` x WHERE x.session_id = c.id AND x.seq > h.t AND x.seq <= c.hi AND x.tokens_before < h.th
	ORDER BY x.seq DESC LIMIT 1)) FROM c), 0), h.turn_count - 1))`
}

// budgetBounder is a store that keeps no budget index: every save then
// writes one index entry less per message. Its budgetLo is budgetScanLo.
type budgetBounder interface{ noBudgetIndex() }

// Fork makes child hold parent's turns up to and including atTurnID, in
// one transaction of a fixed number of statements whatever the parent
// holds: the child's row names the session storing the fork point's turn
// as its base. The child is owned by the parent's owner; an empty child
// row (CreateSession) keeps its title and metadata and gets a new version.
// A summary of the parent is copied when it covers no turn past the fork
// point. It implements driver.Forker.
func (b *DataFlowBackend) Fork(ctx context.Context, parent, atTurnID, child string) error {
	if err := b.check(parent); err != nil {
		return err
	}
	if err := driver.ValidateSessionKey(child); err != nil {
		return err
	}
	if err := driver.ValidateTurnID(atTurnID); err != nil {
		return err
	}
	if tenantOf(parent) != tenantOf(child) {
		return fmt.Errorf("backend: fork %s into %s: %w: a fork stays in its parent's tenant", sessionName(parent), sessionName(child), driver.ErrInvalidQuery)
	}
	if parent == child {
		return fmt.Errorf("backend: fork: %s: %w: a session cannot be forked into itself", sessionName(child), bare{driver.ErrSessionExists})
	}
	if err := b.upgraded(ctx, nil); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	sums, tables, err := b.erasing(ctx, b.sessions, b.messages, b.erased)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	begun := now()
	err = b.runTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		return b.forkTx(ctx, tx, parent, atTurnID, child, sums, begun)
	}, tables...)
	if err != nil {
		if errors.Is(err, driver.ErrTurnNotFound) || errors.Is(err, driver.ErrSessionExists) ||
			errors.Is(err, driver.ErrSessionOwned) || errors.Is(err, driver.ErrSessionDeleted) {
			return fmt.Errorf("backend: fork: %w", err)
		}
		return fmt.Errorf("backend: fork: %w", b.writeOutcome(ctx, "fork", err))
	}
	return nil
}

// turnTokens is the tokens of the turn of message row m: its rows' sum, a
// range of the primary key.
const turnTokens = `(SELECT CAST(COALESCE(SUM(x.tokens), 0) AS BIGINT) FROM ` + MessagesTable + ` x WHERE x.session_id = m.session_id AND x.seq = m.seq)`

// forkPoint is where a fork's turn is stored.
type forkPoint struct {
	store  string // the session whose own rows hold the turn
	seq    int64
	tokens int64 // the tokens of the turns up to and including it
}

// findForkPoint finds the turn turnID of key's history: in its own rows or
// those of the sessions its prefix is stored in, one statement. The turn is
// found by its head row (pos 0, which a compact turn index alone holds);
// its tokens are its rows' sum.
// CROSS JOIN keeps SQLite reading the chain first: given statistics, it
// otherwise skip-scanned the turn index over every session.
func (b *DataFlowBackend) findForkPoint(ctx context.Context, tx *dataflow.Tx, key, turnID string) (forkPoint, bool, error) {
	st := b.stmt("fork/find", func() *dataflow.Stmt {
		return b.db.NewStmt(b.form("fork/find", `WITH RECURSIVE c (id, hi, base, base_seq) AS (
	SELECT id, turn_count, base, base_seq FROM `+SessionsTable+` WHERE id = ?
	UNION ALL
	SELECT p.id, c.base_seq, p.base, p.base_seq FROM c JOIN `+SessionsTable+` p ON p.id = c.base)
SELECT c.id, m.seq, m.tokens_before, `+turnTokens+` FROM c CROSS JOIN `+MessagesTable+` m WHERE m.session_id = c.id AND m.turn_id = ? AND m.pos = 0 AND m.seq <= c.hi`), b.sessions, b.messages)
	})
	rows, err := st.QueryTx(ctx, tx, key, turnID)
	if err != nil {
		return forkPoint{}, false, err
	}
	defer rows.Close()
	var (
		fp    forkPoint
		found bool
	)
	for rows.Next() {
		var (
			id                  string
			seq, before, tokens int64
		)
		if err := rows.Scan(&id, &seq, &before, &tokens); err != nil {
			return forkPoint{}, false, err
		}
		if !found || seq > fp.seq { // the newest turn of the ID, should the chain hold it twice
			fp, found = forkPoint{store: id, seq: seq, tokens: before + tokens}, true
		}
	}
	if err := rows.Err(); err != nil {
		return forkPoint{}, false, err
	}
	return fp, found, rows.Close()
}

// lockOwner locks the session row key in tx (where the engine has row
// locks) and returns its owner and turn count; ok is false for no row.
func (b *DataFlowBackend) lockOwner(ctx context.Context, tx *dataflow.Tx, key string) (owner string, count int64, ok bool, err error) {
	st := b.stmt("fork/lock", func() *dataflow.Stmt {
		return b.db.NewStmt(`SELECT user_id, turn_count FROM `+SessionsTable+` WHERE id = ?`+b.store.rowLock(), b.sessions)
	})
	rows, err := st.QueryTx(ctx, tx, key)
	if err != nil {
		return "", 0, false, err
	}
	switch err := scanOne(rows, &owner, &count); {
	case errors.Is(err, sql.ErrNoRows):
		return "", 0, false, nil
	case err != nil:
		return "", 0, false, err
	}
	return owner, count, true, nil
}

// forkRetries bounds how often a fork finds the session storing its turn
// changed (a deletion moved it down the chain) after locking it.
const forkRetries = 3

func (b *DataFlowBackend) forkTx(ctx context.Context, tx *dataflow.Tx, parent, turnID, child string, sums bool, begun time.Time) error {
	// Locks go from the storing session to the parent, the order a
	// deletion of the storing session takes them in (its row, then the
	// rows whose base it is), so the two never wait on each other: the
	// storing session is found, locked, and found again after the
	// parent's lock.
	var (
		fp    forkPoint
		owner string
	)
	for try := 0; ; try++ {
		first, found, err := b.findForkPoint(ctx, tx, parent, turnID)
		if err != nil {
			return err
		}
		if !found {
			return errTurnNotFound(parent, turnID)
		}
		if first.store != parent {
			if _, _, _, err := b.lockOwner(ctx, tx, first.store); err != nil {
				return err
			}
		}
		o, _, ok, err := b.lockOwner(ctx, tx, parent)
		if err != nil {
			return err
		}
		if !ok {
			return errTurnNotFound(parent, turnID)
		}
		if b.store.rowLock() == "" { // the transaction holds the write lock: nothing moved
			fp, owner = first, o
			break
		}
		again, found, err := b.findForkPoint(ctx, tx, parent, turnID)
		if err != nil {
			return err
		}
		if !found {
			return errTurnNotFound(parent, turnID)
		}
		if again.store == first.store || try == forkRetries {
			fp, owner = again, o
			if again.store != first.store {
				if _, _, _, err := b.lockOwner(ctx, tx, again.store); err != nil {
					return err
				}
			}
			break
		}
	}
	at := now()
	held, count, exists, err := b.lockOwner(ctx, tx, child)
	if err != nil {
		return err
	}
	switch {
	case exists && held != "" && held != owner:
		return fmt.Errorf("%s: %w", sessionName(child), bare{driver.ErrSessionOwned})
	case exists && count > 0:
		return fmt.Errorf("%s: %w", sessionName(child), bare{driver.ErrSessionExists})
	case exists:
		st := b.stmt("fork/update", func() *dataflow.Stmt {
			return b.db.NewStmt(`UPDATE `+SessionsTable+` SET user_id = ?, turn_count = ?, tokens = ?, version = version + 1, counted = 1, updated_at = ?,
	fork_of = ?, fork_turn = ?, base = ?, base_seq = ? WHERE id = ?`, b.sessions)
		})
		if _, err := st.ExecTx(ctx, tx, owner, fp.seq, fp.tokens, at, parent, turnID, fp.store, fp.seq, child); err != nil {
			return err
		}
	default:
		st := b.stmt("fork/insert", func() *dataflow.Stmt {
			return b.db.NewStmt(b.form("fork/insert", `INSERT INTO `+SessionsTable+` (id, tenant, user_id, title, turn_count, version, tokens, counted, created_at, updated_at, fork_of, fork_turn, base, base_seq)
VALUES (?, ?, ?, '', ?, ?, ?, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`), b.sessions)
		})
		res, err := st.ExecTx(ctx, tx, child, tenantOf(child), owner, fp.seq, firstVersion(), fp.tokens, at, at, parent, turnID, fp.store, fp.seq)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 { // made by a write racing this one
			return fmt.Errorf("%s: %w", sessionName(child), bare{driver.ErrSessionExists})
		}
	}
	switch erased, err := b.erasedSinceTx(ctx, tx, child, begun); {
	case err != nil:
		return err
	case erased:
		return fmt.Errorf("%s: %w", sessionName(child), bare{driver.ErrSessionDeleted})
	}
	if !sums {
		return nil
	}
	if err := b.deleteSummaryTx(ctx, tx, child); err != nil {
		return err
	}
	st := b.stmt("fork/summary", func() *dataflow.Stmt {
		return b.db.NewStmt(`INSERT INTO `+SummariesTable+` (id, text, turns, tokens, updated_at, lease_owner, lease_until)
SELECT `+b.cast("?", "VARCHAR")+`, text, turns, tokens, updated_at, '', 0 FROM `+SummariesTable+` WHERE id = ? AND turns > 0 AND turns <= `+b.cast("?", "BIGINT"), b.summary.table)
	})
	_, err = st.ExecTx(ctx, tx, child, parent, fp.seq)
	return err
}

// ListForks returns the sessions forked from key, newest first, at most
// limit: one range of the forks' partial index. It implements
// driver.Forker.
func (b *DataFlowBackend) ListForks(ctx context.Context, key string, limit int) ([]driver.SessionInfo, error) {
	if err := b.check(key); err != nil {
		return nil, err
	}
	if limit < 1 || limit > driver.MaxForks {
		return nil, fmt.Errorf("backend: list forks: %w: limit %d (want 1 to %d)", driver.ErrInvalidQuery, limit, driver.MaxForks)
	}
	st := b.stmt("forks", func() *dataflow.Stmt {
		return b.db.NewReadStmt(`SELECT `+b.sessionColumns("")+` FROM `+SessionsTable+` WHERE fork_of = ? AND `+forkWhere+`
ORDER BY created_at DESC, id DESC LIMIT ?`, b.sessions)
	})
	rows, err := st.Query(ctx, key, limit)
	if err != nil {
		return nil, fmt.Errorf("backend: list forks: %w", err)
	}
	defer rows.Close()
	var forks []driver.SessionInfo
	for rows.Next() {
		info, err := scanInfo(rows)
		if err != nil {
			return nil, fmt.Errorf("backend: list forks: %w", err)
		}
		forks = append(forks, info)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("backend: list forks: %w", err)
	}
	return forks, rows.Close()
}

// runTx is db.RunInTx, run again (up to deleteRetries times) when the
// transaction was rolled back whole because it lost a deadlock or a
// serialization conflict: a fork and a deletion along one chain take row
// locks in orders that may cross.
func (b *DataFlowBackend) runTx(ctx context.Context, fn func(context.Context, *dataflow.Tx) error, tables ...dataflow.Readier) error {
	for try := 0; ; try++ {
		err := b.db.RunInTx(ctx, fn, tables...)
		if err != nil && try < deleteRetries && dataflow.Retryable(err) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

// detachTx makes every session whose prefix is stored in the sessions of
// keys (which the transaction is about to delete) hold it itself: the rows
// it shares are copied into its own, with their search entries (index:
// the SQLite index written inline; with the queue, its trigger queues the
// copies; on the other engines the rows carry their search text), and its
// base moves to the deleted session's base. Repeated until no session
// left outside keys has its base in them (a fork of a fork whose base was
// also deleted moves down once more). It costs nothing when no session
// has its base in keys: one read of the base index.
func (b *DataFlowBackend) detachTx(ctx context.Context, tx *dataflow.Tx, keys []string, index bool) error {
	gone := make(map[string]bool, len(keys))
	args := make([]any, len(keys))
	for i, k := range keys {
		gone[k], args[i] = true, k
	}
	// The deleted sessions' rows p by key (equality for one), the
	// sessions based on them d through the base index.
	in := `p.id IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ") + `)`
	if len(keys) == 1 {
		in = `p.id = ?`
	}
	deps := b.stmt(fmt.Sprintf("fork/deps/%d", len(keys)), func() *dataflow.Stmt {
		return b.db.NewStmt(`SELECT d.id, d.base, d.base_seq, p.base, p.base_seq FROM `+SessionsTable+` p JOIN `+SessionsTable+` d ON d.base = p.id
WHERE `+in+` AND d.`+baseWhere+b.store.rowLock(), b.sessions)
	})
	copyRows := b.stmt("fork/copy", func() *dataflow.Stmt {
		return b.db.NewStmt(`INSERT INTO `+MessagesTable+` (`+messageColumns+`)
SELECT `+b.cast("?", "VARCHAR")+`, seq, pos, turn_id, msg_id, role, content, name, tool_calls, tool_call_id, parts, msg_metadata, tokens, tokens_before, metadata, created_at, search_text
FROM `+MessagesTable+` WHERE session_id = ? AND seq > `+b.cast("?", "BIGINT")+` AND seq <= `+b.cast("?", "BIGINT"), b.messages, b.sessions)
	})
	move := b.stmt("fork/move", func() *dataflow.Stmt {
		return b.db.NewStmt(`UPDATE `+SessionsTable+` SET base = ?, base_seq = ? WHERE id = ?`, b.sessions)
	})
	// A session d whose base src is deleted: its rows (base, seq]
	// are stored in src, its base becomes src's base.
	type dep struct {
		id, src string
		seq     int64
		base    string
		baseSeq int64
	}
	for {
		rows, err := deps.QueryTx(ctx, tx, args...)
		if err != nil {
			return err
		}
		var todo []dep
		for rows.Next() {
			var d dep
			if err := rows.Scan(&d.id, &d.src, &d.seq, &d.base, &d.baseSeq); err != nil {
				rows.Close()
				return err
			}
			if !gone[d.id] {
				todo = append(todo, d)
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(todo) == 0 {
			return nil
		}
		for _, d := range todo {
			// The new base's row is locked first, so that a deletion of
			// it waits for this one, then finds d based on it (a read
			// whose snapshot predates this commit would miss d), or the
			// two deadlock and one is rolled back and run again
			// (runTx).
			if d.base != "" {
				if _, _, ok, err := b.lockOwner(ctx, tx, d.base); err != nil {
					return err
				} else if !ok {
					return fmt.Errorf("detach %s: its base %s is gone", sessionName(d.id), sessionName(d.base))
				}
			}
			if _, err := copyRows.ExecTx(ctx, tx, d.id, d.src, d.baseSeq, d.seq); err != nil {
				return err
			}
			if index {
				if err := b.indexRangeTx(ctx, tx, d.id, d.baseSeq, d.seq); err != nil {
					return err
				}
			}
			if _, err := move.ExecTx(ctx, tx, d.base, d.baseSeq, d.id); err != nil {
				return err
			}
		}
	}
}

// indexRangeTx writes the search entries of key's messages (lo, hi] into
// the SQLite index, in batches.
func (b *DataFlowBackend) indexRangeTx(ctx context.Context, tx *dataflow.Tx, key string, lo, hi int64) error {
	st := b.stmt("fork/indexrange", func() *dataflow.Stmt {
		return b.db.NewStmt(`SELECT seq, pos, content FROM `+MessagesTable+` WHERE session_id = ? AND seq > ? AND seq <= ?`, b.messages)
	})
	rows, err := st.QueryTx(ctx, tx, key, lo, hi)
	if err != nil {
		return err
	}
	var entries [][]any
	for rows.Next() {
		var (
			seq     int64
			pos     int32
			content string
		)
		if err := rows.Scan(&seq, &pos, &content); err != nil {
			rows.Close()
			return err
		}
		if row, ok := SearchEntry(key, seq, pos, content); ok {
			entries = append(entries, row)
		}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for len(entries) > 0 {
		n := min(len(entries), searchInsertRows)
		var args []any
		for _, e := range entries[:n] {
			args = append(args, e...)
		}
		if err := b.insertEntries(ctx, tx, args); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

// chainLink is a session of a fork chain and the highest turn sequence of
// its own rows the chain reads.
type chainLink struct {
	key string
	hi  int64
}

// chainOf returns key's fork chain, the session itself first (its own
// rows unbounded), then each session storing its inherited turns; none for
// no session. One statement, a primary-key lookup per link.
func (b *DataFlowBackend) chainOf(ctx context.Context, key string) ([]chainLink, error) {
	st := b.stmt("fork/chain", func() *dataflow.Stmt {
		return b.db.NewReadStmt(`WITH RECURSIVE c (id, hi, base, base_seq) AS (
	SELECT id, turn_count, base, base_seq FROM `+SessionsTable+` WHERE id = ?
	UNION ALL
	SELECT p.id, c.base_seq, p.base, p.base_seq FROM c JOIN `+SessionsTable+` p ON p.id = c.base)
SELECT id, hi FROM c`, b.sessions)
	})
	rows, err := st.Query(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var chain []chainLink
	for rows.Next() {
		var l chainLink
		if err := rows.Scan(&l.key, &l.hi); err != nil {
			return nil, err
		}
		if l.key == key {
			l.hi = math.MaxInt64
		}
		chain = append(chain, l)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return chain, rows.Close()
}

// searchChain is a search scoped to a session: of a fork, its own messages
// and those it inherits, each session of its chain searched up to its
// fork point (one statement per session of the chain, after the chain's
// own), the hits named by the fork, merged best first (oldest first among
// equal scores), at most q.Limit. A tenant- or user-wide search returns
// each stored message once, under the session that stores it.
func (b *DataFlowBackend) searchChain(ctx context.Context, tenant string, terms []string, q driver.SearchQuery) ([]driver.SearchHit, error) {
	key := driver.SessionKey(tenant, q.SessionID)
	chain, err := b.chainOf(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("backend: search: %w", err)
	}
	if len(chain) == 0 {
		chain = []chainLink{{key: key, hi: math.MaxInt64}}
	}
	var hits []driver.SearchHit
	for i := len(chain) - 1; i >= 0; i-- {
		sub := q
		_, sub.SessionID = driver.ParseSessionKey(chain[i].key)
		h, err := b.searchOnce(ctx, tenant, terms, sub, chain[i].hi)
		if err != nil {
			return nil, err
		}
		for j := range h {
			h[j].SessionID = q.SessionID
		}
		hits = append(hits, h...)
	}
	if len(chain) > 1 {
		slices.SortStableFunc(hits, func(a, b driver.SearchHit) int { return cmp.Compare(b.Score, a.Score) })
		if q.Limit > 0 && len(hits) > q.Limit {
			hits = hits[:q.Limit]
		}
	}
	return hits, nil
}

// appendMissing is the error of an append to a turn the session's own rows
// do not hold: a turn a fork inherited is stored in an ancestor, which an
// append never writes into (driver.ErrNotSupported: fork after the turn
// instead, then save the new turn); otherwise ErrTurnNotFound.
func (b *DataFlowBackend) appendMissing(ctx context.Context, tx *dataflow.Tx, key, turnID string) error {
	if fp, found, err := b.findForkPoint(ctx, tx, key, turnID); err != nil {
		return err
	} else if found && fp.store != key {
		return fmt.Errorf("%s turn %q: %w: the turn is inherited from the session the fork was made from; fork after it instead", sessionName(key), turnID, bare{driver.ErrNotSupported})
	}
	return errTurnNotFound(key, turnID)
}
