package backend

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/searchtext"
)

// The search index holds each message's content as driver.SearchText
// writes it: lower-cased words and CJK characters separated by spaces, so
// that both databases' tokenizers split it exactly where a query is split,
// and text without spaces (Chinese, Japanese, Korean) is found by its
// characters. On PostgreSQL it is written in the transaction that writes
// the message; on SQLite that transaction queues the message, and the
// index catches up in batches, first thing in a search
// (sqlite_search_queue.go). It is deleted in the transaction that deletes
// the message, so a hit always exists and a deleted message is never
// found.
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
		exists, err := b.store.searchIndexExists(ctx)
		if err != nil {
			return err
		}
		if exists {
			return b.store.searchIndexFound(ctx)
		}
		if !b.db.SchemaChanges() {
			b.searchOff.Store(!b.store.indexInRows())
			return nil
		}
		ddl, _ := b.store.searchIndexDDL()
		for _, stmt := range ddl {
			if _, err := b.db.ExecContext(ctx, stmt); err != nil {
				return err
			}
		}
		// What an existing index gets too (SQLite: the queue of messages
		// saved and not yet indexed).
		return b.store.searchIndexFound(ctx)
	})
}

// searchIndexTimeout bounds a run that builds the search index: on
// PostgreSQL over a table of millions of messages it takes minutes.
const searchIndexTimeout = time.Hour

// indexed reports whether writes on SQLite write the FTS5 table's entries
// themselves: only where the index has no queue (sqlite_search_queue.go);
// it runs ensureSearch first.
func (b *DataFlowBackend) indexed(ctx context.Context) (bool, error) {
	if b.store.indexInRows() {
		return false, nil // the insert writes the indexed column itself
	}
	if err := b.ensureSearch(ctx); err != nil {
		return false, fmt.Errorf("search index: %w", err)
	}
	return !b.searchOff.Load() && !b.queue.on.Load(), nil
}

func searchArg(content string) any {
	if s := driver.SearchText(content); s != "" {
		return s
	}
	return nil
}

// searchColumns are the message columns a hit is read from, in scanHit's
// order, before its turn's time (dataflow.TimeColumn of m.created_at) and its
// score.
const searchColumns = `m.session_id, m.turn_id, m.seq, m.pos, m.msg_id, m.role, m.content, m.name, m.tool_calls, m.tool_call_id, m.parts, m.msg_metadata, m.tokens`

// Search finds the messages of the tenant's sessions holding every term of
// q.Text, best first, in one statement: on SQLite an FTS5 MATCH confined
// to the tenant (and session) by its tokens; on PostgreSQL a GIN index
// scan of to_tsvector('simple', search_text); each reads at most
// searchCandidates matches, which rankHits ranks. The query is built from driver.QueryTerms only, so
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
	if q.Limit, err = driver.SearchLimit(q.Limit); err != nil {
		return nil, fmt.Errorf("backend: search: %w", err)
	}
	if len(terms) == 0 {
		return nil, nil
	}
	if err := b.ensureSearch(ctx); err != nil {
		return nil, fmt.Errorf("backend: search index: %w", err)
	}
	if b.searchOff.Load() && !b.store.indexInRows() {
		return nil, fmt.Errorf("backend: %w: no search index (%s): WithSearchIndex(false), or a DB that may not create it", bare{driver.ErrNotSupported}, SearchTable)
	}
	// Read-your-writes: what saves queued is indexed first (SQLite).
	if err := b.catchUpSearch(ctx, tenant); err != nil {
		return nil, fmt.Errorf("backend: search index catch-up: %w", err)
	}
	if q.SessionID != "" {
		return b.searchChain(ctx, tenant, terms, q)
	}
	return b.searchOnce(ctx, tenant, terms, q, 0)
}

// searchOnce runs the search statement of q (for a scoped search, its
// session's messages of turns up to through).
func (b *DataFlowBackend) searchOnce(ctx context.Context, tenant string, terms []string, q driver.SearchQuery, through int64) ([]driver.SearchHit, error) {
	st := b.store.searchStmt(q)
	limit, snippets := q.Limit, terms
	client, ranked := b.store.(interface{ rankedInClient() int })
	if ranked {
		// The candidates: rankHits keeps q.Limit of them, and writes the
		// snippets of those only.
		limit, snippets = max(client.rankedInClient(), q.Limit), nil
	}
	args := append(b.store.searchArgs(tenant, terms, q, through), limit)
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
		hits, err := runSearch(ctx, st, args, snippets)
		done <- result{hits, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("backend: search: %w", r.err)
		}
		if ranked {
			return rankHits(r.hits, terms, q.Limit), nil
		}
		return r.hits, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("backend: search: %w", ctx.Err())
	}
}

// searchCandidates bounds how many matches one search statement reads and
// ranks (rankHits): a word in half of a million messages costs what a word
// in this many does. Which matches, per engine: sqliteStore.searchStmt,
// postgresStore.searchStmt.
const searchCandidates = 200

// searchScopeProbe is how many matches of its words in the scope a search
// scoped to a session reads first, to choose how it finds the session's
// (sqliteStore.searchStmt, postgresStore.searchStmt).
const searchScopeProbe = 1000

// The constants of rankHits's BM25: k1 and b as FTS5's bm25 has them, and
// a fixed average length, so that the scores of the statements of one
// scoped search (searchChain) compare.
const (
	rankK1       = 1.2
	rankB        = 0.75
	rankAvgTerms = 64.0
)

// rankHits scores hits, which hold every term (an AND query), by BM25's
// term-frequency part: for each term, tf·(k1+1) / (tf + k1·(1−b+b·len/avg)),
// summed, where tf is the term's count in the message's search terms and
// len their number. BM25's IDF factor is left out: it needs each term's
// count over the whole index (a read of the term's whole posting list,
// what the bounded candidate set avoids), and among hits that all hold
// every term it only weighs one term against another. It returns the
// best limit, best first, the oldest first among equal scores (hits come
// oldest first).
func rankHits(hits []driver.SearchHit, terms []string, limit int) []driver.SearchHit {
	want := make(map[string]int, len(terms))
	for i, t := range terms {
		want[t] = i
	}
	type ranked struct {
		i     int
		score float64
	}
	order := make([]ranked, len(hits))
	tf := make([]float64, len(terms))
	for i := range hits {
		clear(tf)
		n := 0
		for w := range searchtext.All(hits[i].Message.Content) {
			n++
			if j, ok := want[w]; ok {
				tf[j]++
			}
		}
		norm := rankK1 * (1 - rankB + rankB*float64(n)/rankAvgTerms)
		var score float64
		for _, f := range tf {
			score += f * (rankK1 + 1) / (f + norm)
		}
		order[i] = ranked{i, score}
	}
	slices.SortStableFunc(order, func(a, b ranked) int { return cmp.Compare(b.score, a.score) })
	if limit > 0 && len(order) > limit {
		order = order[:limit]
	}
	out := make([]driver.SearchHit, len(order))
	for k, r := range order {
		h := hits[r.i]
		h.Score = r.score
		h.Snippet = driver.Snippet(h.Message.Content, terms)
		out[k] = h
	}
	return out
}

// runSearch runs the search statement st with args and reads its hits,
// with their snippets of terms (none if terms is nil).
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
		at                                     dataflow.Time
		score                                  float64
	)
	if err := rows.Scan(&key, &turnID, &seq, &pos, &msgID, &role, &content, &name, &calls, &tcID, &parts, &meta, &tokens, &at, &score); err != nil {
		return driver.SearchHit{}, err
	}
	m := driver.Message{ID: messageID(msgID.String, msgID.Valid, turnID, pos), Role: driver.Role(role), Content: content, Name: name, ToolCallID: tcID, Tokens: int(tokens)}
	if err := driver.DecodeMessage(&m, calls, parts, meta); err != nil {
		return driver.SearchHit{}, err
	}
	_, id := driver.ParseSessionKey(key)
	h := driver.SearchHit{SessionID: id, TurnID: turnID, Message: m, Score: score, Time: at.UTC()}
	if terms != nil {
		h.Snippet = driver.Snippet(content, terms)
	}
	return h, nil
}

// searchIndexExists runs q, the catalog query of a store's search index,
// for name, and reports whether it found a row.
func searchIndexExists(ctx context.Context, b *DataFlowBackend, q, name string) (bool, error) {
	rows, err := b.db.QueryContext(ctx, b.db.Rebind(q), name)
	if err != nil {
		return false, err
	}
	var one int
	if err := scanOne(rows, &one); err != nil && err != sql.ErrNoRows {
		return false, err
	}
	return one == 1, nil
}
