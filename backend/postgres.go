package backend

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/migrate"
)

// postgresStore is the backend's PostgreSQL: a save and an append to the
// newest turn are one statement each (one round trip), and the search
// index is a GIN index over the message rows' search_text, written by the
// insert itself.
type postgresStore struct {
	b *DataFlowBackend

	saveTurn  *dataflow.Stmt // the whole save in one statement
	saveFirst *dataflow.Stmt // saveTurn of a turn of Seq 1: only into a session of no turns
	saveLater *dataflow.Stmt // saveTurn of a turn of Seq > 1: only into a session of Seq-1 turns
	appendNew *dataflow.Stmt // an append to the newest turn in one statement
}

func init() {
	registerStore("pg", func(b *DataFlowBackend) store { return &postgresStore{b: b} })
}

func (s *postgresStore) cast(expr, typ string) string { return "CAST(" + expr + " AS " + typ + ")" }
func (s *postgresStore) rowLock() string              { return " FOR UPDATE" }
func (s *postgresStore) skipLocked() string           { return " FOR UPDATE SKIP LOCKED" }
func (s *postgresStore) greatest() string             { return "GREATEST" }
func (s *postgresStore) indexInRows() bool            { return true }
func (s *postgresStore) holeyReads() bool             { return false }

// budgetLo scans the primary key backwards (budgetScanLo): PostgreSQL
// keeps no budget index, one index entry less per message saved.
func (s *postgresStore) budgetLo() string { return budgetScanLo("GREATEST", "LEAST") }

// noBudgetIndex marks PostgreSQL as keeping no budget index.
func (s *postgresStore) noBudgetIndex() {}

// chainQuery is a chain read on PostgreSQL: OFFSET 0 keeps the planner
// from pulling s up into the query that reads it, and the message rows
// of each chain row are a LATERAL subquery, which OFFSET 0 keeps from
// being pulled up into a join: an index scan of each chain row's range.
// Joined directly, a planner without statistics (a new table) chose a
// hash join that read the session's every message and evaluated the
// budget's subquery once per message row: 2.8x the turn window's cost.
func (s *postgresStore) chainQuery(ctes, lo, hi, cols, cond string) string {
	return ctes + `,
s AS (SELECT h.id, h.turn_count, h.version, ` + lo + ` AS lo, ` + hi + ` AS hi FROM h OFFSET 0)
` + cols + `
FROM s CROSS JOIN c LEFT JOIN LATERAL (SELECT * FROM ` + MessagesTable + ` x WHERE ` + strings.ReplaceAll(cond, "m.", "x.") + ` OFFSET 0) m ON TRUE`
}

// prepare makes the PostgreSQL statements that do a write in one round
// trip.
func (s *postgresStore) prepare() {
	b := s.b
	// The whole save in one statement, so one round trip, atomic as any
	// statement is. A turn ID the session holds is found by the insert
	// itself: its rows violate the turn index (or the message ID index),
	// which aborts the whole statement, the session row's bump included,
	// and Save reports the turn as held. So the statement reads no
	// message index before it writes: an earlier form looked the turn up
	// first, and a planner without statistics, or with statistics from
	// before the session grew, served that lookup from the budget index
	// (it too leads with session_id), reading every entry of the session:
	// a save grew with history (19 buffers at 100 turns, 186 at 1,000,
	// docs/performance-postgres.md). Two saves of one new ID at once: the
	// session row lock orders them, and the second's insert violates the
	// index in the same way. A clear holds the session row lock
	// (inserting the row if need be), so the upsert waits for it, as the
	// two-statement save does. Repeating it stores nothing twice, so it is
	// run again on a pooled connection found dead, as BEGIN was. The
	// messages come as one JSON array, so one statement text serves every
	// number of messages.
	//
	// A session DeleteUser deleted after the save began (ErasedRow) is not
	// made again: nothing is stored, and the row that comes back has a
	// NULL count. The
	// mark is read in the statement's snapshot, but a deletion may commit
	// while the upsert waits for the row's lock: the upsert then inserts a
	// new row. So the row's created_at in the snapshot (o) is compared
	// with the upserted row's, and when they differ (and the last
	// parameter does not accept it) the statement fails with
	// errVanishedText, aborting it whole, to be run again on a fresh
	// snapshot, which sees the mark, or, after a clear or an expiry,
	// starts the new session.
	//
	// A guarded save (Seq > 0) has its own session step, which writes
	// only when the count is right, checked under the row's lock (the
	// condition is evaluated again on the row as it is once the lock is
	// granted): Seq 1 is the upsert whose update path writes only on a
	// row of no turns; a later Seq is an UPDATE of a row holding Seq-1
	// turns, so that no new row is made. When it writes nothing, s is
	// empty and so is m, as for an erased session.
	upsert := func(cond string) string {
		return `INSERT INTO ` + SessionsTable + ` (id, tenant, turn_count, version, tokens, counted, created_at, updated_at)
	SELECT ?, ?, 1, CAST(? AS BIGINT), CAST(? AS BIGINT), 1, CAST(? AS TIMESTAMPTZ), CAST(? AS TIMESTAMPTZ)
	WHERE ` + b.erasedCheck() + `
	ON CONFLICT (id) DO UPDATE SET turn_count = ` + SessionsTable + `.turn_count + 1, version = ` + SessionsTable + `.version + 1,
		tokens = ` + SessionsTable + `.tokens + excluded.tokens, updated_at = excluded.updated_at` + cond + `
	RETURNING turn_count, version, tokens, created_at`
	}
	s.saveTurn = s.saveStmt(upsert(""))
	s.saveFirst = s.saveStmt(upsert(`
	WHERE ` + SessionsTable + `.turn_count = 0`))
	s.saveLater = s.saveStmt(`UPDATE ` + SessionsTable + ` SET turn_count = ` + SessionsTable + `.turn_count + 1, version = ` + SessionsTable + `.version + 1,
		tokens = ` + SessionsTable + `.tokens + CAST(? AS BIGINT), updated_at = CAST(? AS TIMESTAMPTZ)
	WHERE id = ? AND turn_count = CAST(? AS BIGINT) AND ` + b.erasedCheck() + `
	RETURNING turn_count, version, tokens, created_at`)
	// An append to the newest turn in one statement. The turn is found,
	// with the session row's version, in the statement's snapshot; the
	// session row's update then re-checks, under its lock (PostgreSQL
	// evaluates the update's condition again on the row as it is once the
	// lock is granted), that the version is still that one and the turn
	// the newest (turn_count = seq). So when anything was written to the
	// session since the snapshot (a replace, a save, another append), or
	// it was cleared or deleted, nothing is written (no version comes
	// back) and the transaction path runs, which takes the lock first and
	// finds the turn, or ErrTurnNotFound, on the session as it is then.
	// Without the version, an append racing a replace found the old turn
	// and wrote into the new turn of the same sequence.
	s.appendNew = b.db.NewStmt(`WITH t AS (
	SELECT m.seq, m.tokens_before, m.created_at, s.version FROM `+MessagesTable+` m JOIN `+SessionsTable+` s ON s.id = m.session_id
	WHERE m.session_id = ? AND m.turn_id = ? AND m.pos = 0
), u AS (
	SELECT u.* FROM json_to_recordset(CAST(? AS JSON)) AS u(pos INT, id TEXT, role TEXT, content TEXT, name TEXT,
		tool_calls TEXT, tool_call_id TEXT, parts TEXT, meta TEXT, tokens BIGINT, search TEXT)
	WHERE NOT EXISTS (SELECT 1 FROM `+MessagesTable+` x WHERE x.session_id = ? AND x.msg_id = u.id)
), n AS (
	SELECT COUNT(*) AS n, COALESCE(SUM(tokens), 0) AS tokens FROM u
), s AS (
	UPDATE `+SessionsTable+` SET version = `+SessionsTable+`.version + 1, tokens = `+SessionsTable+`.tokens + n.tokens, updated_at = CAST(? AS TIMESTAMPTZ)
	FROM n, t WHERE `+SessionsTable+`.id = ? AND n.n > 0 AND `+SessionsTable+`.version = t.version AND `+SessionsTable+`.turn_count = t.seq
		AND NOT EXISTS (SELECT 1 FROM `+SessionsTable+` d WHERE d.base = `+SessionsTable+`.id AND d.`+baseWhere+`)
	RETURNING `+SessionsTable+`.version
), p AS (
	SELECT MAX(pos) AS pos FROM `+MessagesTable+` WHERE session_id = ? AND seq = (SELECT seq FROM t)
), i AS (
	INSERT INTO `+MessagesTable+` (`+messageColumns+`)
	SELECT ?, t.seq, p.pos + u.pos, ?, u.id, u.role, u.content, u.name, u.tool_calls, u.tool_call_id, u.parts, u.meta, u.tokens,
		t.tokens_before, NULL, t.created_at, u.search
	FROM s, t, p, u
)
SELECT t.seq, n.n, s.version FROM t CROSS JOIN n LEFT JOIN s ON TRUE`, b.sessions, b.messages)
}

// saveStmt is the save statement (see prepare) whose session step is
// session: a statement returning the session row's new count, version,
// tokens and created_at.
func (s *postgresStore) saveStmt(session string) *dataflow.Stmt {
	b := s.b
	return b.db.NewIdempotentStmt(`WITH o AS (
	SELECT created_at FROM `+SessionsTable+` WHERE id = ?
), s AS (
	`+session+`
), m AS (
	INSERT INTO `+MessagesTable+` (`+messageColumns+`)
	SELECT ?, s.turn_count, u.pos, ?, u.id, u.role, u.content, u.name, u.tool_calls, u.tool_call_id, u.parts, u.meta, u.tokens,
		s.tokens - CAST(? AS BIGINT), CASE WHEN u.pos = 0 THEN CAST(? AS TEXT) END, CAST(? AS TIMESTAMPTZ), u.search
	FROM s, json_to_recordset(CAST(? AS JSON)) AS u(pos INT, id TEXT, role TEXT, content TEXT, name TEXT,
		tool_calls TEXT, tool_call_id TEXT, parts TEXT, meta TEXT, tokens BIGINT, search TEXT)
)
SELECT s.turn_count, s.version,
	CAST(CASE WHEN s.created_at IS NULL OR o.created_at IS NULL OR o.created_at = s.created_at OR CAST(? AS BOOLEAN) THEN '0' ELSE '`+errVanishedText+`' END AS INT)
FROM (SELECT 1) one LEFT JOIN s ON TRUE LEFT JOIN o ON TRUE`, b.sessions, b.messages, b.erased)
}

// msgIDConflict reports whether err is a violation of the message ID
// index: a message ID the session holds in another turn.
func (s *postgresStore) msgIDConflict(err error) bool {
	return err != nil && dataflow.IsUniqueViolation(err, MessagesTable+"_msg_idx")
}

// lockSessionTx locks the session row first (SQLite's transaction holds
// the write lock already).
func (s *postgresStore) lockSessionTx(ctx context.Context, tx *dataflow.Tx, sessionID, turnID string) error {
	return s.b.lockRowTx(ctx, tx, sessionID, turnID)
}

// jsonRows encodes msgs for the PostgreSQL statements, numbering them from
// first (see appendPGRows).
func jsonRows(msgs []driver.PreparedMessage, first int32) (string, error) {
	size := 2
	for i := range msgs {
		size += 160 + 2*len(msgs[i].Content) + len(msgs[i].ID) + len(msgs[i].ToolCallsJSON) + len(msgs[i].PartsJSON) + len(msgs[i].MetadataJSON)
	}
	return string(appendPGRows(make([]byte, 0, size), msgs, first)), nil
}

// errVanishedText is the text of the error the PostgreSQL save statement
// fails with when its session row was deleted while it waited for its lock.
const errVanishedText = "turnkeep: session row deleted under the save"

// errNotSaved is a PostgreSQL save that stored nothing on every try, each
// time for a reason gone when asked: not acknowledged as stored.
var errNotSaved = errors.New("save: the session changed under every try")

// save is Save on PostgreSQL: one statement, one round trip.
func (s *postgresStore) save(ctx context.Context, sessionID string, turn driver.PreparedTurn, metaArg any, tokens int64, at time.Time, begun time.Time) (driver.Saved, error) {
	b := s.b
	if err := ctx.Err(); err != nil {
		return driver.Saved{}, err // nothing sent
	}
	t := &turn.Turn
	rowsJSON, err := jsonRows(turn.Encoded, 0)
	if err != nil {
		return driver.Saved{}, err
	}
	var seq, version sql.NullInt64
	var vanished int
	// Run again while the session row is deleted under the statement (see
	// preparePG); the last try takes the new row (a clear or an expiry is
	// deleting the session again and again). Run again too when it stored
	// nothing for a reason gone since: a DeleteUser that was running in
	// its snapshot has ended before the save began.
	const tries = 4
	st, args := s.saveTurn, make([]any, 0, 17)
	args = append(args, sessionID)
	switch guardOf(t.Seq) {
	case guardFirst:
		st = s.saveFirst
	case guardLater:
		st = s.saveLater
		args = append(args, tokens, at, sessionID, int64(t.Seq-1), erasedDigest(sessionID), begun)
	}
	if st != s.saveLater {
		args = append(args, sessionID, tenantOf(sessionID), firstVersion(), tokens, at, at, erasedDigest(sessionID), begun)
	}
	args = append(args, sessionID, t.ID, tokens, metaArg, t.Timestamp, rowsJSON, false)
	for try := 1; try <= tries; try++ {
		var rows *sql.Rows
		args[len(args)-1] = try == tries
		rows, err = st.Query(ctx, args...)
		if err == nil {
			err = scanOne(rows, &seq, &version, &vanished)
		}
		switch {
		case err == nil && !seq.Valid:
			// DeleteUser deleted the session, in the statement's snapshot,
			// after the save began, or was deleting it then.
			switch erased, err := b.erasedSince(ctx, sessionID, begun); {
			case err != nil:
				return driver.Saved{}, err
			case erased:
				return driver.Saved{}, fmt.Errorf("%s: %w", sessionName(sessionID), bare{driver.ErrSessionDeleted})
			case t.Seq > 0:
				return driver.Saved{}, errSeqConflict // the session is not at the turn's Seq
			}
			err = errNotSaved
			continue
		case err != nil && strings.Contains(err.Error(), errVanishedText):
			continue
		}
		break
	}
	switch {
	case err == nil:
		return driver.Saved{Stored: true, Seq: int(seq.Int64), Version: reported(version.Int64), Messages: len(turn.Encoded)}, nil
	case errors.Is(err, errNotSaved):
		return driver.Saved{}, err
	case dataflow.IsUniqueViolation(err, MessagesTable+"_turn_idx"):
		return driver.Saved{}, nil // the session holds the turn's ID, or a concurrent save of it won
	case dataflow.IsUniqueViolation(err, MessagesTable+"_msg_idx"):
		return driver.Saved{}, err // the caller tells which
	}
	// A statement sent and then cut off by the context or a lost
	// connection may have committed: ErrOutcomeUnknown. A retry with the
	// same turn ID stores nothing twice.
	return driver.Saved{}, b.writeOutcome(ctx, "save", err)
}

// appendNewest is Append to the newest turn in one statement. A
// concurrent append to the turn that took the same positions (or stored
// the same ID) first made the statement store nothing: the transaction
// path, which locks the session row first, then sees what the other
// stored and cannot collide.
func (s *postgresStore) appendNewest(ctx context.Context, sessionID, turnID string, msgs []driver.PreparedMessage) (driver.Saved, bool, error) {
	saved, done, err := s.appendInOne(ctx, sessionID, turnID, msgs)
	if err != nil && (dataflow.IsUniqueViolation(err, MessagesTable+"_pkey") || dataflow.IsUniqueViolation(err, MessagesTable+"_msg_idx")) {
		return driver.Saved{}, false, nil
	}
	return saved, done, err
}

// appendInOne is Append to the newest turn on PostgreSQL; done is false
// when the turn is not the newest.
func (s *postgresStore) appendInOne(ctx context.Context, sessionID, turnID string, msgs []driver.PreparedMessage) (driver.Saved, bool, error) {
	b := s.b
	if err := ctx.Err(); err != nil {
		return driver.Saved{}, false, err
	}
	rowsJSON, err := jsonRows(msgs, 1)
	if err != nil {
		return driver.Saved{}, false, err
	}
	rows, err := s.appendNew.Query(ctx, sessionID, turnID, rowsJSON, sessionID, now(), sessionID, sessionID, sessionID, turnID)
	if err != nil {
		return driver.Saved{}, false, b.writeOutcome(ctx, "append", err)
	}
	var seq, n int64
	var version sql.NullInt64
	err = scanOne(rows, &seq, &n, &version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// The session's own rows hold no such turn: the transaction path
		// tells a turn a fork inherited from none (appendMissing).
		return driver.Saved{}, false, nil
	case err != nil:
		return driver.Saved{}, false, b.writeOutcome(ctx, "append", err)
	case n == 0:
		return driver.Saved{}, true, nil // every message is held
	case !version.Valid:
		return driver.Saved{}, false, nil // not the newest turn
	}
	return driver.Saved{Stored: true, Seq: int(seq), Version: reported(version.Int64), Messages: int(n)}, true, nil
}

// indexTx does nothing: the insert wrote each row's search_text.
func (s *postgresStore) indexTx(context.Context, *dataflow.Tx, string, int64, int32, []driver.PreparedMessage) error {
	return nil
}

// upgradeIndexSQL is none: the upgrade writes the row's search_text.
func (s *postgresStore) upgradeIndexSQL() string { return "" }

// moveEntries does nothing: the row holds its search_text.
func (s *postgresStore) moveEntries(context.Context, migrate.UpgradeTx, string, int64, int32, int32) error {
	return nil
}

// unindexKeysTx does nothing: the entries go with the rows.
func (s *postgresStore) unindexKeysTx(context.Context, *dataflow.Tx, []string) error { return nil }

// searchIndexName is the GIN index's name in the catalog.
func (s *postgresStore) searchIndexName() string { return MessagesTable + "_search_idx" }

// searchIndexMissing returns nothing: an existing GIN index is whole.
func (s *postgresStore) searchIndexMissing(context.Context) ([]string, error) { return nil, nil }

// searchIndexDDL returns the statements that create the search index, in
// order; `turnkeep migrate plan` prints them (SearchIndexPlan).
func (s *postgresStore) searchIndexDDL() ([]string, migrate.Step) {
	// Built CONCURRENTLY, so that a table that already holds
	// messages (an upgraded deployment) keeps taking writes while
	// it builds; the run has searchIndexTimeout, and callers stop
	// waiting on their own contexts while it goes on. Two
	// processes building at once: IF NOT EXISTS skips the second
	// (or it fails on the name, and its next run finds the first's
	// index). A build cut off leaves an invalid index, which the
	// planner ignores and IF NOT EXISTS keeps: search then works
	// unindexed until it is dropped (DROP INDEX CONCURRENTLY
	// turnkeep_messages_search_idx) and the next process builds it.
	return []string{`CREATE INDEX CONCURRENTLY IF NOT EXISTS ` + s.searchIndexName() + ` ON ` + MessagesTable +
			` USING GIN (to_tsvector('simple'::regconfig, search_text))`},
		migrate.Step{Kind: migrate.CreateIndex, Table: MessagesTable, Name: s.searchIndexName()}
}

// searchIndexExists reports whether the catalog holds a valid search
// index (see searchIndexDDL for an invalid one).
func (s *postgresStore) searchIndexExists(ctx context.Context) (bool, error) {
	return searchIndexExists(ctx, s.b, `SELECT 1 FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = ? AND x.indisvalid`, s.searchIndexName())
}

func (s *postgresStore) searchIndexFound(context.Context) error { return nil }

// searchStmt is a GIN index scan of to_tsvector('simple', search_text):
// the first searchCandidates matches in the table's order (about the
// oldest: a bitmap scan reads the heap in block order), ranked by the
// client (rankHits); its LIMIT is the candidates' number. ts_rank would
// parse every candidate's text again on the server.
//
// A GIN index has only bitmap scans, which read a word's whole posting
// list before the first row, whatever the LIMIT: 43 ms for a word in
// 500,000 messages, against under a millisecond for a rare one. So a
// search first reads recent messages (r): for the tenant or the owner,
// those of the searchRecentSessions sessions updated last, newest first;
// for a session, its own, newest first; at most searchRecentRows either
// way. It keeps those holding every term (LIKE on the stored terms, then
// the same tsquery). When they fill the statement's LIMIT (the
// candidates), they are the answer: a common word costs a read of
// recent rows that stops there, not of its posting list. Else the
// branches below run, each gated by that count (one-time filters, so
// only one branch runs), in one statement and one snapshot: for a
// tenant or owner, the GIN scan.
//
// A search scoped to a session, past r, reads the words' matches in the
// scope (tenant, or owner), at most searchScopeProbe + 1, and when there
// are no more than searchScopeProbe keeps the session's among them: a
// cost set by the words, not by the session. Only for words more common
// than that does it match the session's primary-key range too, which the
// prepared statement's generic plan ANDs with the GIN bitmap: an index
// entry read per message of the session (6.3 ms at 20,000 messages
// against 0.03 ms for a rare word's entries), but bounded where the GIN
// scan alone would read the heap in block order until 200 of the word's
// matches are the session's (0.54 s for a 1,000-message session behind
// a 200,000-message one).
func (s *postgresStore) searchStmt(q driver.SearchQuery) *dataflow.Stmt {
	b := s.b
	name := fmt.Sprintf("search/%t/%t", q.User != "", q.SessionID != "")
	return b.stmt(name, func() *dataflow.Stmt {
		// The scope is checked per hit, by primary key, in a scalar
		// subquery the planner cannot turn into a join that would read
		// the whole tenant's sessions.
		scope := `(SELECT s.tenant FROM ` + SessionsTable + ` s WHERE s.id = m.session_id) = ?`
		sessions := `s.tenant = ?`
		if q.User != "" {
			scope = `(SELECT s.user_id FROM ` + SessionsTable + ` s WHERE s.id = m.session_id AND s.tenant = ?) = ?`
			sessions = `s.tenant = ? AND s.user_id = ? AND s.user_id <> ''` // the owner index is partial
		}
		match := `to_tsvector('simple'::regconfig, m.search_text) @@ to_tsquery('simple'::regconfig, ?)`
		cols := searchColumns + `, ` + b.db.TimeColumn("m.created_at") + `, 0.0 AS score`
		// r: the newest messages of the scope (or of the session) that
		// hold the words, up to the statement's LIMIT.
		recent := `r AS MATERIALIZED (SELECT m.* FROM (
		SELECT m.* FROM (SELECT s.id FROM ` + SessionsTable + ` s WHERE ` + sessions + `
			ORDER BY s.updated_at DESC, s.id DESC LIMIT ` + fmt.Sprint(searchRecentSessions) + `) s
		CROSS JOIN LATERAL (SELECT m.* FROM ` + MessagesTable + ` m WHERE m.session_id = s.id
			ORDER BY m.seq DESC, m.pos DESC LIMIT ` + fmt.Sprint(searchRecentRows) + `) m
		LIMIT ` + fmt.Sprint(searchRecentRows) + `) m
	WHERE m.search_text LIKE ALL (string_to_array(?, ' ')) AND ` + match + ` LIMIT ?)`
		if q.SessionID != "" {
			recent = `r AS MATERIALIZED (SELECT m.* FROM (
		SELECT m.* FROM ` + MessagesTable + ` m WHERE m.session_id = ? AND m.seq <= ?
			ORDER BY m.seq DESC, m.pos DESC LIMIT ` + fmt.Sprint(searchRecentRows) + `) m
	WHERE m.search_text LIKE ALL (string_to_array(?, ' ')) AND ` + match + ` AND ` + scope + ` LIMIT ?)`
		}
		fromRecent := `SELECT m.* FROM r m WHERE (SELECT count(*) FROM r) >= ?`
		notRecent := `(SELECT count(*) FROM r) < ?`
		if q.SessionID == "" {
			return b.db.NewReadStmt(`WITH `+recent+`
SELECT `+cols+` FROM (
	`+fromRecent+`
	UNION ALL
	SELECT m.* FROM `+MessagesTable+` m WHERE `+notRecent+` AND `+match+` AND `+scope+`
) m
LIMIT ?`, b.sessions, b.messages)
		}
		probe := fmt.Sprint(searchScopeProbe)
		return b.db.NewReadStmt(`WITH `+recent+`,
c AS MATERIALIZED (SELECT m.* FROM `+MessagesTable+` m
	WHERE `+match+` AND `+scope+` LIMIT `+fmt.Sprint(searchScopeProbe+1)+`)
SELECT `+cols+` FROM (
	`+fromRecent+`
	UNION ALL
	SELECT m.* FROM c m WHERE `+notRecent+` AND (SELECT count(*) FROM c) <= `+probe+` AND m.session_id = ? AND m.seq <= ?
	UNION ALL
	SELECT m.* FROM `+MessagesTable+` m WHERE `+notRecent+` AND (SELECT count(*) FROM c) > `+probe+`
		AND `+match+` AND m.session_id = ? AND m.seq <= ? AND `+scope+`
) m
LIMIT ?`, b.sessions, b.messages)
	})
}

// Bounds of the recent read of a search of the scope on PostgreSQL
// (postgresStore.searchStmt): a word in more than about one in five of
// the scope's newest messages is found there.
const (
	searchRecentSessions = 200
	searchRecentRows     = 1000
)

// rankedInClient is the number of candidates a search reads: rankHits
// ranks them and keeps q.Limit.
func (s *postgresStore) rankedInClient() int { return searchCandidates }

func (s *postgresStore) searchArgs(tenant string, terms []string, q driver.SearchQuery, through int64) []any {
	quoted := make([]string, len(terms))
	for i, t := range terms {
		quoted[i] = "'" + strings.ReplaceAll(t, "'", "''") + "'"
	}
	words := strings.Join(quoted, " & ")
	scope := []any{tenant}
	if q.User != "" {
		scope = append(scope, q.User)
	}
	patterns := make([]string, len(terms))
	for i, t := range terms {
		patterns[i] = "%" + likeEscaper.Replace(t) + "%"
	}
	limit := int64(max(s.rankedInClient(), q.Limit)) // the statement's LIMIT, as searchOnce sets it
	if q.SessionID == "" {
		args := append(slices.Clone(scope), strings.Join(patterns, " "), words, limit, limit, limit, words)
		return append(args, scope...)
	}
	key := driver.SessionKey(tenant, q.SessionID)
	args := []any{key, through, strings.Join(patterns, " "), words}
	args = append(args, scope...)
	args = append(args, limit, words)
	args = append(args, scope...)
	args = append(args, limit, limit, key, through, limit, words, key, through)
	return append(args, scope...)
}

// sizeQuery is the backend's two tables with their indexes and TOAST
// (pg_total_relation_size), 0 for a table that does not exist.
func (s *postgresStore) sizeQuery() (string, []any) {
	return `SELECT COALESCE(pg_total_relation_size(to_regclass(CAST(? AS text))), 0) +
	COALESCE(pg_total_relation_size(to_regclass(CAST(? AS text))), 0)`, []any{SessionsTable, MessagesTable}
}
