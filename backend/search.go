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
)

// SearchTable is the SQLite FTS5 table of the search index. On PostgreSQL
// the index is a GIN index over turnkeep_messages.search_text instead.
const SearchTable = "turnkeep_search"

// The search index holds each message's content as driver.SearchText
// writes it: lower-cased words and CJK characters separated by spaces, so
// that both databases' tokenizers split it exactly where a query is split,
// and text without spaces (Chinese, Japanese, Korean) is found by its
// characters. It is written in the transaction that writes the message,
// and deleted in the one that deletes it, so a hit always exists and a
// deleted message is never found.
//
// SQLite: an FTS5 table with, per message, its search text (body) with
// every term prefixed by its tenant (tenantTerm: "t", the tenant in hex,
// "z", the term), so that a query reads only its own terms' postings in its
// own tenant, however large the tenant, and a token naming its session
// (sk: "k" and the key in hex), through which a query is confined to a
// session and a session's entries are deleted. tk holds the tenant's token
// too, for inspection.
//
// PostgreSQL: the messages' search_text column, written by the save
// itself (no extra statement), under a GIN index on
// to_tsvector('simple', search_text).

// ensureSearch finds the search index, once per backend, in the catalog,
// and creates it when it is missing and the DB may change the schema;
// otherwise search is off on SQLite (saves skip indexing; PostgreSQL
// searches without the index, only slower). So a warm process runs no
// DDL for it.
func (b *DataFlowBackend) ensureSearch(ctx context.Context) error {
	return b.search.Ensure(ctx, func(ctx context.Context) error {
		if b.noSearch {
			b.searchOff.Store(true)
			return nil
		}
		pg := b.db.Dialect() == "pg"
		exists, err := b.searchIndexExists(ctx)
		if err != nil {
			return err
		}
		if exists {
			if pg {
				return nil
			}
			return b.secureDeleteSearch(ctx)
		}
		if !b.db.SchemaChanges() {
			b.searchOff.Store(!pg)
			return nil
		}
		for _, stmt := range b.searchIndexDDL() {
			if _, err := b.db.ExecContext(ctx, stmt); err != nil {
				return err
			}
		}
		return nil // the DDL sets SQLite's secure-delete option too
	})
}

// searchIndexName is the search index's name in the catalog: the FTS5
// table on SQLite, the GIN index on PostgreSQL.
func (b *DataFlowBackend) searchIndexName() string {
	if b.db.Dialect() == "pg" {
		return MessagesTable + "_search_idx"
	}
	return SearchTable
}

// searchIndexDDL returns the statements that create the search index, in
// order; `turnkeep migrate plan` prints them (SearchIndexPlan).
func (b *DataFlowBackend) searchIndexDDL() []string {
	if b.db.Dialect() == "pg" {
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
		return []string{`CREATE INDEX CONCURRENTLY IF NOT EXISTS ` + b.searchIndexName() + ` ON ` + MessagesTable +
			` USING GIN (to_tsvector('simple'::regconfig, search_text))`}
	}
	return []string{`CREATE VIRTUAL TABLE IF NOT EXISTS ` + SearchTable +
		` USING fts5(body, sk, tk, skey UNINDEXED, seq UNINDEXED, pos UNINDEXED, tokenize = 'unicode61 remove_diacritics 0')`,
		SearchSecureDelete}
}

// searchIndexExists reports whether the catalog holds the search index; on
// PostgreSQL a valid one only (see searchIndexDDL for an invalid one).
func (b *DataFlowBackend) searchIndexExists(ctx context.Context) (bool, error) {
	q := `SELECT 1 FROM sqlite_master WHERE name = ?`
	if b.db.Dialect() == "pg" {
		q = `SELECT 1 FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = ? AND x.indisvalid`
	}
	rows, err := b.db.QueryContext(ctx, b.db.Rebind(q), b.searchIndexName())
	if err != nil {
		return false, err
	}
	var one int
	if err := scanOne(rows, &one); err != nil && err != sql.ErrNoRows {
		return false, err
	}
	return one == 1, nil
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
func (b *DataFlowBackend) secureDeleteSearch(ctx context.Context) error {
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

// searchCandidates bounds how many matches PostgreSQL ranks for one
// search: a query of a very common word ranks the first this many it finds.
const searchCandidates = 10000

// searchIndexTimeout bounds a run that builds the search index: on
// PostgreSQL over a table of millions of messages it takes minutes.
const searchIndexTimeout = time.Hour

// indexed reports whether writes on SQLite keep the FTS5 table; it runs
// ensureSearch first.
func (b *DataFlowBackend) indexed(ctx context.Context) (bool, error) {
	if b.db.Dialect() == "pg" {
		return false, nil // the save writes search_text itself
	}
	if err := b.ensureSearch(ctx); err != nil {
		return false, fmt.Errorf("search index: %w", err)
	}
	return !b.searchOff.Load(), nil
}

func keyToken(key string) string  { return "k" + hex.EncodeToString([]byte(key)) }
func tenantToken(t string) string { return "t" + hex.EncodeToString([]byte(t)) }

// SearchEntry is the row the SQLite search index (SearchTable: body, sk,
// tk, skey, seq, pos) holds for a message of content stored in the session
// key at seq and pos, for programs that load rows in bulk beside the
// backend; ok is false for content with no word, which has no entry.
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
func searchArg(content string) any {
	if s := driver.SearchText(content); s != "" {
		return s
	}
	return nil
}

// indexTx adds search entries for msgs, stored in the session key at seq
// from position pos on, on SQLite; messages with no words get none.
func (b *DataFlowBackend) indexTx(ctx context.Context, tx *dataflow.Tx, key string, seq int64, pos int32, msgs []driver.PreparedMessage) error {
	var args []any
	for i := range msgs {
		if row, ok := SearchEntry(key, seq, pos+int32(i), msgs[i].Content); ok {
			args = append(args, row...)
		}
	}
	if len(args) == 0 {
		return nil
	}
	n := len(args) / 6
	st := b.stmt(fmt.Sprintf("index/%d", n), func() *dataflow.Stmt {
		rows := strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", n), ", ")
		return b.db.NewStmt(`INSERT INTO `+SearchTable+` (body, sk, tk, skey, seq, pos) VALUES `+rows, b.messages)
	})
	_, err := st.ExecTx(ctx, tx, args...)
	return err
}

// unindexKeysTx removes the search entries of the sessions of keys, on
// SQLite (on PostgreSQL they go with the rows).
func (b *DataFlowBackend) unindexKeysTx(ctx context.Context, tx *dataflow.Tx, keys []string) error {
	if b.db.Dialect() == "pg" || b.searchOff.Load() || len(keys) == 0 {
		return nil
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

// searchColumns are the message columns a hit is read from, in scanHit's
// order, before its score.
const searchColumns = `m.session_id, m.turn_id, m.seq, m.pos, m.msg_id, m.role, m.content, m.name, m.tool_calls, m.tool_call_id, m.parts, m.msg_metadata, m.tokens`

// Search finds the messages of the tenant's sessions holding every term of
// q.Text, best first, in one statement: on SQLite an FTS5 MATCH confined
// to the tenant (and session) by its tokens, ranked by bm25; on
// PostgreSQL a GIN index scan of to_tsvector('simple', search_text),
// ranked by ts_rank. The query is built from driver.QueryTerms only, so
// it is never search syntax, and a query over driver.MaxSearchTerms or
// driver.MaxSearchBytes is driver.ErrInvalidQuery before any SQL runs. It
// implements driver.SessionStore.
//
// It returns once ctx is done, and the drivers stop the statement
// (SQLite's sqlite3_interrupt, PostgreSQL's cancel request). The work
// SQLite does without checking for that, FTS5 parsing the MATCH expression
// (quadratic in its terms) and reading their posting lists, is bounded by
// driver.MaxSearchTerms.
func (b *DataFlowBackend) Search(ctx context.Context, tenant string, q driver.SearchQuery) ([]driver.SearchHit, error) {
	if b == nil || b.db == nil {
		return nil, errNoDB
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("backend: search: %w", err)
	}
	terms, err := driver.QueryTerms(q.Text)
	if err != nil {
		return nil, fmt.Errorf("backend: search: %w", err)
	}
	if len(terms) == 0 {
		return nil, nil
	}
	if err := b.ensureSearch(ctx); err != nil {
		return nil, fmt.Errorf("backend: search index: %w", err)
	}
	if b.searchOff.Load() && b.db.Dialect() != "pg" {
		return nil, fmt.Errorf("backend: %w: no search index (%s): WithSearchIndex(false), or a DB that may not create it", bare{driver.ErrNotSupported}, SearchTable)
	}
	pg := b.db.Dialect() == "pg"
	name := fmt.Sprintf("search/%t/%t", q.User != "", q.SessionID != "")
	st := b.stmt(name, func() *dataflow.Stmt {
		if pg {
			// The scope is checked per hit, by primary key, in a scalar
			// subquery the planner cannot turn into a join that would read
			// the whole tenant's sessions.
			where := `to_tsvector('simple'::regconfig, m.search_text) @@ q.q AND (SELECT s.tenant FROM ` + SessionsTable + ` s WHERE s.id = m.session_id) = ?`
			if q.User != "" {
				where = `to_tsvector('simple'::regconfig, m.search_text) @@ q.q AND (SELECT s.user_id FROM ` + SessionsTable + ` s WHERE s.id = m.session_id AND s.tenant = ?) = ?`
			}
			if q.SessionID != "" {
				where += ` AND m.session_id = ?`
			}
			// Ranked among the first searchCandidates matches: a word in
			// half of a million messages would otherwise rank them all
			// (35 s measured) to return twenty.
			return b.db.NewReadStmt(`SELECT `+searchColumns+`, ts_rank(to_tsvector('simple'::regconfig, m.search_text), m.q) AS score
FROM (SELECT m.*, q.q FROM (SELECT to_tsquery('simple'::regconfig, ?) AS q) q, `+MessagesTable+` m
	WHERE `+where+` LIMIT `+fmt.Sprint(searchCandidates)+`) m
ORDER BY score DESC, m.session_id, m.seq, m.pos LIMIT ?`, b.sessions, b.messages)
		}
		join, where := "", ""
		if q.User != "" {
			join = ` JOIN ` + SessionsTable + ` s ON s.id = f.skey`
			where = ` AND s.user_id = ?`
		}
		return b.db.NewReadStmt(`SELECT `+searchColumns+`, -bm25(`+SearchTable+`) AS score
FROM `+SearchTable+` f JOIN `+MessagesTable+` m ON m.session_id = f.skey AND m.seq = f.seq AND m.pos = f.pos`+join+`
WHERE `+SearchTable+` MATCH ?`+where+` ORDER BY bm25(`+SearchTable+`), m.session_id, m.seq, m.pos LIMIT ?`, b.sessions, b.messages)
	})
	var args []any
	if pg {
		quoted := make([]string, len(terms))
		for i, t := range terms {
			quoted[i] = "'" + strings.ReplaceAll(t, "'", "''") + "'"
		}
		args = append(args, strings.Join(quoted, " & "), tenant)
		if q.User != "" {
			args = append(args, q.User)
		}
		if q.SessionID != "" {
			args = append(args, driver.SessionKey(tenant, q.SessionID))
		}
	} else {
		var match strings.Builder
		for i, t := range terms {
			if i > 0 {
				match.WriteString(" AND ")
			}
			match.WriteString(`body:"` + strings.ReplaceAll(tenantTerms(tenant, []string{t}), `"`, `""`) + `"`)
		}
		if q.SessionID != "" {
			match.WriteString(` AND sk:"` + keyToken(driver.SessionKey(tenant, q.SessionID)) + `"`)
		}
		args = append(args, match.String())
		if q.User != "" {
			args = append(args, q.User)
		}
	}
	args = append(args, q.Limit)
	// The drivers stop the statement once ctx is done, but SQLite drops an
	// interrupt that comes before the statement has started, and the
	// driver's own check runs between steps of SQLite's VM, not within
	// FTS5's first read of the terms' posting lists, one step that takes
	// a few hundred milliseconds for MaxSearchTerms common terms in a
	// large tenant. So the statement runs on a goroutine of its own, and
	// Search returns at ctx's end without waiting for that step: the
	// statement stops after it and gives its connection back.
	type result struct {
		hits []driver.SearchHit
		err  error
	}
	done := make(chan result, 1)
	go func() {
		hits, err := runSearch(ctx, st, args, terms)
		done <- result{hits, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("backend: search: %w", r.err)
		}
		return r.hits, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("backend: search: %w", ctx.Err())
	}
}

// runSearch runs the search statement st with args and reads its hits.
func runSearch(ctx context.Context, st *dataflow.Stmt, args []any, terms []string) ([]driver.SearchHit, error) {
	rows, err := st.Query(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hits []driver.SearchHit
	for rows.Next() {
		h, err := scanHit(rows, terms)
		if err != nil {
			return nil, err
		}
		hits = append(hits, h)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return hits, rows.Close()
}

func scanHit(rows *sql.Rows, terms []string) (driver.SearchHit, error) {
	var (
		key, turnID, role, content, name, tcID string
		seq                                    int64
		pos                                    int32
		msgID                                  sql.NullString
		calls, parts, meta                     []byte
		tokens                                 int64
		score                                  float64
	)
	if err := rows.Scan(&key, &turnID, &seq, &pos, &msgID, &role, &content, &name, &calls, &tcID, &parts, &meta, &tokens, &score); err != nil {
		return driver.SearchHit{}, err
	}
	m := driver.Message{ID: msgID.String, Role: driver.Role(role), Content: content, Name: name, ToolCallID: tcID, Tokens: int(tokens)}
	if !msgID.Valid {
		m.ID = driver.DerivedMessageID(turnID, int(pos))
	}
	if err := driver.DecodeMessage(&m, calls, parts, meta); err != nil {
		return driver.SearchHit{}, err
	}
	_, id := driver.ParseSessionKey(key)
	return driver.SearchHit{SessionID: id, TurnID: turnID, Message: m, Snippet: driver.Snippet(content, terms), Score: score}, nil
}
