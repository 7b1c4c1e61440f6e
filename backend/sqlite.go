package backend

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/migrate"
)

// SearchTable is the SQLite FTS5 table of the search index. On PostgreSQL
// the index is a GIN index over turnkeep_messages.search_text instead.
const SearchTable = "turnkeep_search"

// sqliteStore is the backend's SQLite: a save is one transaction of two
// statements, under the write lock of BEGIN IMMEDIATE, and the search
// index is an FTS5 table of its own (SearchTable) that catches up with
// what writes queued (sqlite_search_queue.go).
type sqliteStore struct{ b *DataFlowBackend }

func init() {
	registerStore("sqlite", func(b *DataFlowBackend) store { return &sqliteStore{b: b} })
}

// cast is expr: SQLite's CAST would change the stored form of a time.
func (s *sqliteStore) cast(expr, _ string) string { return expr }
func (s *sqliteStore) rowLock() string            { return "" }
func (s *sqliteStore) skipLocked() string         { return "" }
func (s *sqliteStore) greatest() string           { return "MAX" }
func (s *sqliteStore) indexInRows() bool          { return false }
func (s *sqliteStore) holeyReads() bool           { return false }
func (s *sqliteStore) prepare()                   {}

// budgetLo scans the primary key backwards (budgetScanLo).
func (s *sqliteStore) budgetLo() string { return budgetScanLo("MAX", "MIN") }

// chainQuery is a chain read on SQLite: the message rows joined to each
// chain row, a range of the primary key (session_id, seq). LIMIT keeps
// SQLite from flattening s into the query that reads it: flattened, the
// bound of a budget window (a subquery of its own) was evaluated again for
// every message row of the range, and the window cost 2.3x the turn
// window's.
func (s *sqliteStore) chainQuery(ctes, lo, hi, cols, cond string) string {
	return ctes + `,
s AS (SELECT h.id, h.turn_count, h.version, ` + lo + ` AS lo, ` + hi + ` AS hi FROM h LIMIT 1)
` + cols + `
FROM s CROSS JOIN c LEFT JOIN ` + MessagesTable + ` m ON ` + cond
}

// noBudgetIndex marks SQLite as keeping no budget index.
func (s *sqliteStore) noBudgetIndex() {}

// compactKeys marks SQLite as keeping compact message keys: a turn index
// of head rows and a message ID index of stored IDs (message_keys.go).
// Together they write 2.6 WAL pages less per save than the whole indexes
// (docs/performance-sqlite.md).
func (s *sqliteStore) compactKeys() {}

// insertRowsQuery is the insert of n message rows with compact keys, each
// row its messageColumns and then the three values of its ID check
// (DataFlowBackend.rowArgs): the message ID, and the turn and position
// whose derived ID it has, or NULLs. The session holds a row's ID when it
// is stored (a probe of the message ID index) or derived (a row at that
// place with a NULL msg_id: the turn's head in the turn index, then the
// primary key).
//
//   - An append skips a held ID's row, as ON CONFLICT DO NOTHING skips
//     one the message ID index holds; RowsAffected counts the others.
//   - A save, an import or a replacement stores all or none: a row of a
//     held ID gets a NULL turn_id, whose NOT NULL constraint
//     (msgIDConflict) fails the statement as the index's UNIQUE
//     constraint fails one of a stored ID. Its rows of a held turn are
//     skipped by the partial turn index's conflict, so that a held turn
//     is errDuplicate, without another read.
func (s *sqliteStore) insertRowsQuery(n int, append bool) string {
	cols := strings.Split(messageColumns, ", ")
	id, lookTurn, lookPos := len(cols)+1, len(cols)+2, len(cols)+3
	held := fmt.Sprintf(`EXISTS (SELECT 1 FROM `+MessagesTable+` x WHERE x.session_id = v.column1 AND x.msg_id = v.column%d)
	OR EXISTS (SELECT 1 FROM `+MessagesTable+` h JOIN `+MessagesTable+` x ON x.session_id = h.session_id AND x.seq = h.seq AND x.pos = v.column%d
		WHERE h.session_id = v.column1 AND h.turn_id = v.column%d AND h.pos = 0 AND x.msg_id IS NULL)`, id, lookPos, lookTurn)
	var q strings.Builder
	q.WriteString(`INSERT INTO ` + MessagesTable + ` (` + messageColumns + `) SELECT `)
	for i, c := range cols {
		if i > 0 {
			q.WriteString(", ")
		}
		if c == "turn_id" && !append {
			fmt.Fprintf(&q, "CASE WHEN %s THEN NULL ELSE column%d END", held, i+1)
			continue
		}
		fmt.Fprintf(&q, "column%d", i+1)
	}
	q.WriteString(` FROM (VALUES `)
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)+3), ", ") + ")"
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString(row)
	}
	if append {
		q.WriteString(`) v WHERE NOT (` + held + `) ON CONFLICT DO NOTHING`)
	} else {
		q.WriteString(`) v WHERE true ON CONFLICT (session_id, turn_id, pos) WHERE ` + turnHeadWhere + ` DO NOTHING`)
	}
	return q.String()
}

// msgIDConflict reports whether err is a violation of the message ID
// index: a message ID the session holds in another turn.
func (s *sqliteStore) msgIDConflict(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") && strings.Contains(msg, MessagesTable+".msg_id") ||
		strings.Contains(msg, "NOT NULL constraint failed: "+MessagesTable+".turn_id") // insertRowsQuery's held ID
}

// lockSessionTx does nothing: the transaction holds the write lock.
func (s *sqliteStore) lockSessionTx(context.Context, *dataflow.Tx, string, string) error { return nil }

// appendNewest leaves every append to the transaction path.
func (s *sqliteStore) appendNewest(context.Context, string, string, []driver.PreparedMessage) (driver.Saved, bool, error) {
	return driver.Saved{}, false, nil
}

// save is Save on SQLite: one transaction, the session row's upsert and
// the messages' insert (and their search entries). A guarded turn (Seq >
// 0) is checked against the count the upsert returns, under the write
// lock, before the insert: a mismatch rolls the upsert back.
func (s *sqliteStore) save(ctx context.Context, sessionID string, turn driver.PreparedTurn, metaArg any, tokens int64, at time.Time, begun time.Time) (driver.Saved, error) {
	b := s.b
	t := &turn.Turn
	var seq, version, total int64
	index, err := b.indexed(ctx)
	if err != nil {
		return driver.Saved{}, err
	}
	err = b.db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		seq, version, total, err = b.newTurnTx(ctx, tx, sessionID, tokens, at, begun)
		if err != nil {
			return err
		}
		if t.Seq > 0 && seq != int64(t.Seq) {
			return errSeqConflict // rolled back: the upsert is undone
		}
		args := b.rowArgs(nil, sessionID, seq, 0, t.ID, turn.Encoded, total-tokens, metaArg, t.Timestamp)
		if err := b.insert(ctx, tx, len(turn.Encoded), args); err != nil {
			return err // errDuplicate when the turn is held
		}
		if index {
			return s.indexTx(ctx, tx, sessionID, seq, 0, turn.Encoded)
		}
		return nil
	}, b.sessions, b.messages, b.erased)
	if err != nil {
		return driver.Saved{}, err
	}
	return driver.Saved{Stored: true, Seq: int(seq), Version: reported(version), Messages: len(turn.Encoded)}, nil
}

// searchIndexName is the FTS5 table's name in the catalog.
func (s *sqliteStore) searchIndexName() string { return SearchTable }

// searchIndexDDL returns the statements that create the search index, in
// order; `turnkeep migrate plan` prints them (SearchIndexPlan).
func (s *sqliteStore) searchIndexDDL() ([]string, migrate.Step) {
	return []string{`CREATE VIRTUAL TABLE IF NOT EXISTS ` + SearchTable +
		` USING fts5(body, sk, tk, skey UNINDEXED, seq UNINDEXED, pos UNINDEXED, tokenize = 'unicode61 remove_diacritics 0')`,
		SearchSecureDelete}, migrate.Step{Kind: migrate.CreateTable, Table: SearchTable}
}

// searchIndexMissing returns the statements an existing index still
// needs: the queue of messages to index and its trigger, where an earlier
// release made the index without them.
func (s *sqliteStore) searchIndexMissing(ctx context.Context) ([]string, error) {
	rows, err := s.b.db.QueryContext(ctx, `SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?`, searchQueueTrigger)
	if err != nil {
		return nil, err
	}
	var one int
	if err := scanOne(rows, &one); err != nil && err != sql.ErrNoRows {
		return nil, err
	}
	if one == 1 {
		return nil, nil
	}
	return searchQueueDDL(), nil
}

// searchIndexExists reports whether the catalog holds the FTS5 table.
func (s *sqliteStore) searchIndexExists(ctx context.Context) (bool, error) {
	return searchIndexExists(ctx, s.b, `SELECT 1 FROM sqlite_master WHERE name = ?`, s.searchIndexName())
}

// searchIndexFound turns on the table's secure-delete option where it is
// off (secureDeleteSearch), and makes the queue of messages to index
// where it is missing (ensureSearchQueue).
func (s *sqliteStore) searchIndexFound(ctx context.Context) error {
	if err := s.secureDeleteSearch(ctx); err != nil {
		return err
	}
	return s.b.ensureSearchQueue(ctx)
}

// SearchSecureDelete is the statement that turns on the secure-delete
// option of the SQLite search index (SearchTable), which the backend runs
// once where the table lacks it (see secureDeleteSearch).
const SearchSecureDelete = `INSERT INTO ` + SearchTable + `(` + SearchTable + `, rank) VALUES ('secure-delete', 1)`

// secureDeleteSearch turns on FTS5's secure-delete option of the search
// table, unless it is on already: one read of the table's configuration,
// at the ensure run, never on the hot path.
//
// Without it FTS5 deletes a row's entries by writing delete markers into
// a new segment: the old segments keep the row's terms (here, the tenant's
// prefix and each word of the message) until a merge happens to rewrite
// them, which may be never, and PRAGMA secure_delete cannot zero what is
// still in use. With it, a delete rewrites the leaf pages that hold the
// row's entries without them (and drops a term, and its %_idx entry, that
// no row holds any more), so what it frees is zeroed by secure_delete like
// any other row. The option is stored in the table (its _config), so one
// run sets it for every connection and process; it costs a leaf-page
// rewrite per term of each deleted row, and nothing on an insert. A table
// with the option cannot be read by SQLite before 3.42, which introduced
// it; modernc.org/sqlite bundles a later one.
//
// A table made by an earlier release gets it here too. Under a DB that may
// not change the schema it is not set (a warning says so once): run
// `turnkeep migrate up`, or SearchSecureDelete by hand.
func (s *sqliteStore) secureDeleteSearch(ctx context.Context) error {
	b := s.b
	rows, err := b.db.QueryContext(ctx, `SELECT v FROM `+SearchTable+`_config WHERE k = 'secure-delete'`)
	if err != nil {
		return err
	}
	var on int64
	if err := scanOne(rows, &on); err != nil && err != sql.ErrNoRows {
		return err
	}
	if on == 1 {
		return nil
	}
	if !b.db.SchemaChanges() {
		b.log.Warn("turnkeep: the search index keeps the words of deleted messages: its secure-delete option is off, and the DB may not change the schema",
			"table", SearchTable, "fix", SearchSecureDelete)
		return nil
	}
	_, err = b.db.ExecContext(ctx, SearchSecureDelete)
	return err
}

func keyToken(key string) string  { return "k" + hex.EncodeToString([]byte(key)) }
func tenantToken(t string) string { return "t" + hex.EncodeToString([]byte(t)) }

// SearchEntry is the row the SQLite search index (SearchTable: body, sk,
// tk, skey, seq, pos) holds for a message of content stored in the session
// key at seq and pos, for programs that load rows in bulk beside the
// backend; ok is false for content with no word, which has no entry. The
// insert of a message row queues it for the index (SearchQueueTable): a
// program that writes the entries itself deletes those queued rows in the
// same transaction, or the index catches up with them again. One that
// writes none leaves the rows queued, and the next search indexes them.
// (PostgreSQL's index reads the message row's search_text,
// driver.SearchText of its content.)
func SearchEntry(key string, seq int64, pos int32, content string) (row []any, ok bool) {
	terms := driver.SearchTerms(content)
	if len(terms) == 0 {
		return nil, false
	}
	tenant := tenantOf(key)
	return []any{tenantTerms(tenant, terms), keyToken(key), tenantToken(tenant), key, seq, pos}, true
}

// tenantTerms is text's search terms as the SQLite index holds them: each
// prefixed by the tenant's token and "z" (no hex digit), one token each.
func tenantTerms(tenant string, terms []string) string {
	prefix := tenantToken(tenant) + "z"
	var b strings.Builder
	for i, t := range terms {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(prefix)
		b.WriteString(t)
	}
	return b.String()
}

// indexTx adds search entries for msgs, stored in the session key at seq
// from position pos on, on SQLite, where the index has no queue (written
// by an earlier release, and the DB may not change the schema); messages
// with no words get none.
func (s *sqliteStore) indexTx(ctx context.Context, tx *dataflow.Tx, key string, seq int64, pos int32, msgs []driver.PreparedMessage) error {
	b := s.b
	var args []any
	for i := range msgs {
		if row, ok := SearchEntry(key, seq, pos+int32(i), msgs[i].Content); ok {
			args = append(args, row...)
		}
	}
	if len(args) == 0 {
		return nil
	}
	return b.insertEntries(ctx, tx, args)
}

// unindexKeysTx removes the search entries of the sessions of keys, and
// their queued messages, on SQLite.
func (s *sqliteStore) unindexKeysTx(ctx context.Context, tx *dataflow.Tx, keys []string) error {
	b := s.b
	if b.searchOff.Load() || len(keys) == 0 {
		return nil
	}
	if err := b.unqueueKeysTx(ctx, tx, keys); err != nil {
		return err
	}
	var match strings.Builder
	for i, k := range keys {
		if i > 0 {
			match.WriteString(" OR ")
		}
		match.WriteString(`sk:"` + keyToken(k) + `"`)
	}
	st := b.stmt("unindex", func() *dataflow.Stmt {
		return b.db.NewStmt(`DELETE FROM `+SearchTable+` WHERE `+SearchTable+` MATCH ?`, b.messages)
	})
	_, err := st.ExecTx(ctx, tx, match.String())
	return err
}

// searchStmt is an FTS5 MATCH confined to the tenant by its tokens: the
// newest searchCandidates matches (by FTS5 rowid, the order the index took
// them in, which is the order they were saved; FTS5 reads the terms'
// posting lists from their end and stops there), oldest first, ranked by
// the client (rankHits). Its LIMIT is the candidates' number,
// searchCandidates or q.Limit if larger.
//
// It calls no FTS5 ranking function: bm25 counts the rows of every phrase
// of the query before it scores the first one, which reads the whole
// posting list of a common word, and of a session's token (an entry per
// message of the session) in a scoped search.
//
// A search scoped to a session reads the words' matches in the tenant and
// keeps the session's (f.skey) when the tenant has at most
// searchScopeProbe of them, which the statement counts first (reading at
// most that many rowids); only a more common word is matched with the
// session's token too (sk), whose posting list FTS5 steps through page by
// page, a cost that grows with the session (1.4 ms at 1,000,000 messages
// against 0.4 at 1,000).
func (s *sqliteStore) searchStmt(q driver.SearchQuery) *dataflow.Stmt {
	b := s.b
	name := fmt.Sprintf("search/%t/%t", q.User != "", q.SessionID != "")
	return b.stmt(name, func() *dataflow.Stmt {
		join, where, match := "", "", "?"
		if q.User != "" {
			join = ` JOIN ` + SessionsTable + ` s ON s.id = f.skey`
			where = ` AND s.user_id = ?`
		}
		if q.SessionID != "" {
			match = `(SELECT CASE WHEN count(*) > ` + fmt.Sprint(searchScopeProbe) + ` THEN ? ELSE ? END
		FROM (SELECT 1 FROM ` + SearchTable + ` WHERE ` + SearchTable + ` MATCH ? LIMIT ` + fmt.Sprint(searchScopeProbe+1) + `))`
			where += ` AND f.skey = ? AND f.seq <= ?`
		}
		return b.db.NewReadStmt(`SELECT `+searchColumns+`, `+b.db.TimeColumn("m.created_at")+`, 0.0 AS score
FROM (SELECT f.rowid AS rid, f.skey, f.seq, f.pos FROM `+SearchTable+` f`+join+`
	WHERE `+SearchTable+` MATCH `+match+where+` ORDER BY f.rowid DESC LIMIT ?) f
JOIN `+MessagesTable+` m ON m.session_id = f.skey AND m.seq = f.seq AND m.pos = f.pos
ORDER BY f.rid`, b.sessions, b.messages)
	})
}

// rankedInClient is the number of candidates a search reads: rankHits
// ranks them and keeps q.Limit.
func (s *sqliteStore) rankedInClient() int { return searchCandidates }

func (s *sqliteStore) searchArgs(tenant string, terms []string, q driver.SearchQuery, through int64) []any {
	var match strings.Builder
	for i, t := range terms {
		if i > 0 {
			match.WriteString(" AND ")
		}
		match.WriteString(`body:"` + strings.ReplaceAll(tenantTerms(tenant, []string{t}), `"`, `""`) + `"`)
	}
	words := match.String()
	if q.SessionID == "" {
		args := []any{words}
		if q.User != "" {
			args = append(args, q.User)
		}
		return args
	}
	key := driver.SessionKey(tenant, q.SessionID)
	// A common word: its matches and the session's token; else its
	// matches alone; the count, of its matches.
	args := []any{words + ` AND sk:"` + keyToken(key) + `"`, words, words}
	if q.User != "" {
		args = append(args, q.User)
	}
	return append(args, key, through)
}

// sizeQuery is the whole database: page_count × page_size, without the
// WAL.
func (s *sqliteStore) sizeQuery() (string, []any) {
	return `SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`, nil
}

// upgradeIndexSQL inserts the FTS5 entry of an old message the data
// upgrade counts.
func (s *sqliteStore) upgradeIndexSQL() string {
	return `INSERT INTO ` + SearchTable + ` (body, sk, tk, skey, seq, pos) VALUES (?, ?, ?, ?, ?, ?)`
}

// moveEntries moves the FTS5 entry of the message the session key holds
// at seq and from to position to, and its queued row, if any: found by
// the session's token, as unindexKeysTx finds the session's entries. A
// queued row at to (none is expected: no row is there) gives way.
func (s *sqliteStore) moveEntries(ctx context.Context, tx migrate.UpgradeTx, key string, seq int64, from, to int32) error {
	b := s.b
	if b.searchOff.Load() {
		return nil
	}
	if b.queue.on.Load() {
		if _, err := tx.ExecContext(ctx, `UPDATE OR REPLACE `+SearchQueueTable+` SET pos = ? WHERE tenant = ? AND skey = ? AND seq = ? AND pos = ?`,
			to, tenantOf(key), key, seq, from); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `UPDATE `+SearchTable+` SET pos = ? WHERE `+SearchTable+` MATCH ? AND skey = ? AND seq = ? AND pos = ?`,
		to, `sk:"`+keyToken(key)+`"`, key, seq, from)
	return err
}
