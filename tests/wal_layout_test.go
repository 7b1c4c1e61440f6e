package tests

// Candidate SQLite layouts for a save, prototyped with raw SQL and chosen by
// counting the WAL pages each save appends (issue 17, item 4). Each keeps
// the guarantees the backend's layout must keep: an atomic turn, an
// idempotent turn ID (a held one stores nothing), newest-N and token-budget
// windows read by seeks, a keyset listing, and a search index that a save
// defers (a queue, or the append order itself) and a batch catches up.
//
//	TURNKEEP_LAYOUTS=1 go test ./tests -run 'TestWALLayouts' -v -count=1
//
// It is opt-in (it builds a 100,000-message database per layout: about a
// minute); TestWALPagesBackend measures the backend itself.

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/driver"
)

// walLayout is one candidate: its schema, its save (a transaction of its
// own statements), and, for a deferred search index, the catch-up that
// indexes what saves queued.
type walLayout struct {
	name    string
	ddl     []string
	save    func(ctx context.Context, tx protoExec, s int, seq int64, at string) error
	catchUp func(ctx context.Context, tx *sql.Tx) (int, error) // nil: no deferred index
	// autocommit: save runs each statement as its own transaction (it is
	// given the database, not a transaction), as langchaingo does.
	autocommit bool
}

// protoExec runs a layout's statements: a transaction, or the database
// for an auto-commit layout.
type protoExec interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// protoSave runs l's save of session s's turn seq at at on db: in a
// transaction of its own, or auto-commit.
func protoSave(ctx context.Context, db *sql.DB, l walLayout, s int, seq int64, at string) error {
	if l.autocommit {
		return l.save(ctx, db, s, seq, at)
	}
	return protoTx(ctx, db, func(tx *sql.Tx) error { return l.save(ctx, tx, s, seq, at) })
}

const (
	protoSessionCols = `id TEXT NOT NULL PRIMARY KEY, turn_count INTEGER NOT NULL, version INTEGER NOT NULL, tokens INTEGER NOT NULL DEFAULT 0,
	counted INTEGER NOT NULL DEFAULT 0, tenant TEXT NOT NULL DEFAULT '', user_id TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '',
	metadata TEXT, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL`
	protoMessageCols = `session_id TEXT NOT NULL, seq INTEGER NOT NULL, pos INTEGER NOT NULL, turn_id TEXT NOT NULL, role TEXT NOT NULL,
	content TEXT NOT NULL, metadata TEXT, created_at TIMESTAMP NOT NULL, msg_id TEXT, name TEXT NOT NULL DEFAULT '', tool_calls TEXT,
	tool_call_id TEXT NOT NULL DEFAULT '', parts TEXT, msg_metadata TEXT, tokens INTEGER NOT NULL DEFAULT 0,
	tokens_before INTEGER NOT NULL DEFAULT 0, search_text TEXT`
	protoFTS = `CREATE VIRTUAL TABLE search USING fts5(body, sk, tk, skey UNINDEXED, seq UNINDEXED, pos UNINDEXED, tokenize = 'unicode61 remove_diacritics 0')`
	// protoFTSContentless is the deferred index's table: contentless (the
	// messages hold the text), rows deletable (contentless_delete), so
	// each entry is only its terms; the rowid names the message.
	protoFTSContentless = `CREATE VIRTUAL TABLE search USING fts5(body, sk, content='', contentless_delete=1, tokenize = 'unicode61 remove_diacritics 0')`
	protoSecureDelete   = `INSERT INTO search(search, rank) VALUES ('secure-delete', 1)`
)

// protoTurn is walTurn's messages as rows: content, tokens.
func protoTurn(s int, seq int64) [2]string {
	t := walTurn(s, seq)
	return [2]string{t.User, t.Agent}
}

func protoTokens(text string) int64 { return int64(len(text)/4 + 1) }

// protoUpsert upserts the session row and returns its new turn count and
// tokens. With bucket, the row has an hour bucket (the listing's key),
// set by the insert and by bucketTrigger when the hour changes: an upsert
// that named the column would rewrite the listing's index entries on every
// save, changed or not.
func protoUpsert(ctx context.Context, tx protoExec, s int, tokens int64, at string, bucket bool) (seq, total int64, err error) {
	cols, vals := "", ""
	args := []any{walSessionID(s), tokens, at, at}
	if bucket {
		cols, vals = ", bucket", ", substr(?, 1, 13)"
		args = append(args, at)
	}
	q := `INSERT INTO sessions (id, turn_count, version, tokens, counted, created_at, updated_at` + cols + `)
VALUES (?, 1, 1, ?, 1, ?, ?` + vals + `)
ON CONFLICT (id) DO UPDATE SET turn_count = turn_count + 1, version = version + 1, tokens = tokens + excluded.tokens, updated_at = excluded.updated_at
RETURNING turn_count, tokens`
	err = tx.QueryRowContext(ctx, q, args...).Scan(&seq, &total)
	return seq, total, err
}

// bucketTrigger moves a session's listing entries when its hour changes,
// and only then.
const bucketTrigger = `CREATE TRIGGER sessions_bucket AFTER UPDATE OF updated_at ON sessions
WHEN substr(new.updated_at, 1, 13) <> new.bucket BEGIN
	UPDATE sessions SET bucket = substr(new.updated_at, 1, 13) WHERE id = new.id;
END`

// protoLayouts are the candidates.
func protoLayouts() []walLayout {
	clustered := func(name string, listing []string, msgIdx []string, fts string, derivedNull bool, queue bool, bucket bool) walLayout {
		return keyed(name, listing, msgIdx, fts, derivedNull, queue, bucket, false)
	}
	listing := []string{
		`CREATE INDEX sessions_user_idx ON sessions (tenant, user_id, updated_at, id)`,
		`CREATE INDEX sessions_tenant_idx ON sessions (tenant, updated_at, id)`,
	}
	bucketListing := []string{
		`CREATE INDEX sessions_user_idx ON sessions (tenant, user_id, bucket, id)`,
		`CREATE INDEX sessions_tenant_idx ON sessions (tenant, bucket, id)`,
	}
	todayIdx := []string{
		`CREATE UNIQUE INDEX messages_turn_idx ON messages (session_id, turn_id, pos)`,
		`CREATE UNIQUE INDEX messages_msg_idx ON messages (session_id, msg_id)`,
		`CREATE INDEX messages_budget_idx ON messages (session_id, tokens_before, seq)`,
	}
	trimmedIdx := []string{
		`CREATE UNIQUE INDEX messages_turn_idx ON messages (session_id, turn_id) WHERE pos = 0`,
		`CREATE UNIQUE INDEX messages_msg_idx ON messages (session_id, msg_id) WHERE msg_id IS NOT NULL`,
	}
	// Today's backend (owner listing of owned sessions, trimmed indexes,
	// queued search), clustered and as a rowid table.
	ownerListing := []string{
		`CREATE INDEX sessions_tenant_idx ON sessions (tenant, updated_at, id)`,
		`CREATE INDEX sessions_owner_idx ON sessions (tenant, user_id, updated_at, id) WHERE user_id <> ''`,
	}
	return append([]walLayout{
		clustered("today, search inline", listing, todayIdx, protoFTS, false, false, false),
		clustered("today, no search", listing, todayIdx, "", false, false, false),
		clustered("today + queued search", listing, todayIdx, protoFTSContentless, false, true, false),
		clustered("clustered trimmed indexes + queue", listing, trimmedIdx, protoFTSContentless, true, true, false),
		clustered("clustered trimmed + hour listing + queue", bucketListing, trimmedIdx, protoFTSContentless, true, true, true),
		appendOrdered(appendHourListing),
		appendOrdered(appendExactListing),
		appendOrdered(appendBatchedListing),
		keyed("keyed: clustered (WITHOUT ROWID); trimmed indexes, owner listing, queue", ownerListing, trimmedIdx, protoFTSContentless, true, true, false, false),
		keyed("keyed: rowid table, its key a unique index; trimmed indexes, owner listing, queue", ownerListing, trimmedIdx, protoFTSContentless, true, true, false, true),
	}, append(appendLadder(), langchaingoLayout(true), langchaingoLayout(false))...)
}

// appendLadder is the append-ordered layout with its guarantees added one
// at a time, up to the whole layout with the exact listing
// (BenchmarkSQLiteSaveFloor times each rung against langchaingo).
func appendLadder() []walLayout {
	return []walLayout{
		appendLayout(appendRung{name: "ladder 1: append-ordered rows + session count (sequence index)", listing: appendNoListing}),
		appendLayout(appendRung{name: "ladder 2: + idempotent turn and message IDs", listing: appendNoListing, turnIDs: true}),
		appendLayout(appendRung{name: "ladder 3: + exact listing", listing: appendExactListing, turnIDs: true}),
		appendLayout(appendRung{name: "ladder 4: + search: the whole layout (append-ordered + exact listing + watermark search)", listing: appendExactListing, turnIDs: true, search: true}),
		appendLayout(appendRung{name: "ladder 2t: rung 2, the turn-ID index led by time-ordered turn IDs", listing: appendNoListing, turnIDs: true, orderedIDs: true}),
		appendLayout(appendRung{name: "ladder 3t: rung 3, time-ordered turn IDs", listing: appendExactListing, turnIDs: true, orderedIDs: true}),
		appendLayout(appendRung{name: "ladder 4t: rung 4, time-ordered turn IDs", listing: appendExactListing, turnIDs: true, orderedIDs: true, search: true}),
	}
}

// keyed is a layout keyed by (session_id, seq, pos): the table's key
// (WITHOUT ROWID), or with rowid a rowid table whose key is a unique
// index, so that a save appends its rows at the table's end.
func keyed(name string, listing []string, msgIdx []string, fts string, derivedNull bool, queue bool, bucket bool, rowid bool) walLayout {
	ddl := []string{`CREATE TABLE sessions (` + protoSessionCols + `)`}
	if bucket {
		ddl = []string{`CREATE TABLE sessions (` + protoSessionCols + `, bucket TEXT NOT NULL DEFAULT '')`, bucketTrigger}
	}
	ddl = append(ddl, listing...)
	table := `CREATE TABLE messages (` + protoMessageCols + `, PRIMARY KEY (session_id, seq, pos))`
	if !rowid {
		table += ` WITHOUT ROWID`
	}
	ddl = append(ddl, table)
	ddl = append(ddl, msgIdx...)
	if fts != "" {
		ddl = append(ddl, fts, protoSecureDelete)
	}
	if queue {
		ddl = append(ddl, `CREATE TABLE search_queue (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, seq INTEGER NOT NULL, pos INTEGER NOT NULL)`,
			`CREATE TRIGGER messages_queue AFTER INSERT ON messages BEGIN
	INSERT INTO search_queue (session_id, seq, pos) VALUES (new.session_id, new.seq, new.pos);
END`)
	}
	l := walLayout{name: name, ddl: ddl}
	l.save = func(ctx context.Context, tx protoExec, s int, seq int64, at string) error {
		msgs := protoTurn(s, seq)
		tokens := protoTokens(msgs[0]) + protoTokens(msgs[1])
		n, total, err := protoUpsert(ctx, tx, s, tokens, at, bucket)
		if err != nil {
			return err
		}
		turnID := scaleTurnID(s, seq)
		ids := [2]any{driver.DerivedMessageID(turnID, 0), driver.DerivedMessageID(turnID, 1)}
		if derivedNull {
			ids = [2]any{nil, nil}
		}
		conflict := `ON CONFLICT (session_id, turn_id, pos) DO NOTHING`
		if derivedNull {
			conflict = `ON CONFLICT (session_id, turn_id) WHERE pos = 0 DO NOTHING`
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO messages (session_id, seq, pos, turn_id, msg_id, role, content, tokens, tokens_before, created_at)
VALUES (?, ?, 0, ?, ?, 'user', ?, ?, ?, ?), (?, ?, 1, ?, ?, 'assistant', ?, ?, ?, ?) `+conflict,
			walSessionID(s), n, turnID, ids[0], msgs[0], protoTokens(msgs[0]), total-tokens, at,
			walSessionID(s), n, turnID, ids[1], msgs[1], protoTokens(msgs[1]), total-tokens, at)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k != 2 {
			return fmt.Errorf("stored %d rows; want 2", k)
		}
		if fts != "" && !queue {
			key := walSessionID(s)
			var args []any
			for pos, text := range msgs {
				row, _ := backend.SearchEntry(key, n, int32(pos), text)
				args = append(args, row...)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO search (body, sk, tk, skey, seq, pos) VALUES (?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?)`, args...)
		}
		return err
	}
	if queue {
		l.catchUp = func(ctx context.Context, tx *sql.Tx) (int, error) {
			return protoCatchUpQueue(ctx, tx)
		}
	}
	return l
}

// protoCatchUpQueue indexes every queued message in one statement, then
// empties the queue: the FTS rowid is the queue's, so that no other key
// is needed; the message row is found by its key.
func protoCatchUpQueue(ctx context.Context, tx *sql.Tx) (int, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO search (rowid, body, sk)
SELECT q.id, m.content, m.session_id FROM search_queue q JOIN messages m ON m.session_id = q.session_id AND m.seq = q.seq AND m.pos = q.pos ORDER BY q.id`)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	_, err = tx.ExecContext(ctx, `DELETE FROM search_queue`)
	return int(n), err
}

// appendListing is how the append-ordered layout lists sessions.
type appendListing int

const (
	// appendHourListing keys the listing by an hour bucket, moved by a
	// trigger only when the hour changes; the listing sorts within the
	// newest buckets (issue 10's middle-page bound does not hold: a page
	// inside a large bucket sorts the bucket).
	appendHourListing appendListing = iota
	// appendExactListing is today's listing: (tenant, updated_at, id),
	// moved by every save.
	appendExactListing
	// appendBatchedListing keys the listing by listed_at, which the
	// catch-up sets to updated_at for the sessions saved since the last
	// one (a partial index of them, WHERE listed_at <> updated_at); a
	// listing catches up first, so it stays exact.
	appendBatchedListing
	// appendNoListing has no listing index (a rung of the save-floor
	// ladder, not a layout the backend could take).
	appendNoListing
)

// appendRung is the append-ordered layout with some of its guarantees:
// the whole layout (appendOrdered) has them all; the save-floor ladder
// (BenchmarkSQLiteSaveFloor) adds them one at a time.
type appendRung struct {
	name    string
	listing appendListing
	// turnIDs: a held turn ID stores nothing (the unique turn-ID index
	// of head rows) and app-given message IDs are unique (a partial
	// index, which a derived ID, stored NULL, does not enter).
	turnIDs bool
	// orderedIDs: the turn-ID index leads with the turn ID, (turn_id,
	// session_id), as unique as (session_id, turn_id), and the saves'
	// turn IDs grow with time (as a generated ID could), so that its
	// entries append at its end rather than into the session's leaf.
	orderedIDs bool
	// search: the FTS table, caught up past a watermark rowid.
	search bool
}

// appendOrdered is the append-ordered layout: messages in a rowid table
// with a global rowid, so that a save appends at the table's end; one
// index entry per turn (its first message: turn ID unique per session,
// and the sequence for windows); the listing; and no queue: the search
// index's catch-up reads the messages after its watermark rowid.
func appendOrdered(listing appendListing) walLayout {
	name := map[appendListing]string{
		appendHourListing:    "append-ordered + hour listing + watermark search",
		appendExactListing:   "append-ordered + exact listing + watermark search",
		appendBatchedListing: "append-ordered + batched exact listing + watermark search",
	}[listing]
	return appendLayout(appendRung{name: name, listing: listing, turnIDs: true, search: true})
}

// appendLayout is the append-ordered layout with r's guarantees.
func appendLayout(r appendRung) walLayout {
	ddl := map[appendListing][]string{
		appendHourListing: {
			`CREATE TABLE sessions (` + protoSessionCols + `, bucket TEXT NOT NULL DEFAULT '')`,
			bucketTrigger,
			`CREATE INDEX sessions_tenant_idx ON sessions (tenant, bucket, id)`,
		},
		appendExactListing: {
			`CREATE TABLE sessions (` + protoSessionCols + `)`,
			`CREATE INDEX sessions_tenant_idx ON sessions (tenant, updated_at, id)`,
		},
		appendBatchedListing: {
			`CREATE TABLE sessions (` + protoSessionCols + `, listed_at TIMESTAMP NOT NULL DEFAULT '')`,
			`CREATE INDEX sessions_tenant_idx ON sessions (tenant, listed_at, id)`,
			`CREATE INDEX sessions_unlisted_idx ON sessions (tenant, id) WHERE listed_at <> updated_at`,
		},
		appendNoListing: {
			`CREATE TABLE sessions (` + protoSessionCols + `)`,
		},
	}[r.listing]
	ddl = append(ddl,
		`CREATE TABLE messages (rid INTEGER PRIMARY KEY, `+protoMessageCols+`)`,
		`CREATE UNIQUE INDEX messages_turn_idx ON messages (session_id, seq) WHERE pos = 0`)
	if r.turnIDs {
		key := "session_id, turn_id"
		if r.orderedIDs {
			key = "turn_id, session_id"
		}
		ddl = append(ddl,
			`CREATE UNIQUE INDEX messages_turnid_idx ON messages (`+key+`) WHERE pos = 0`,
			`CREATE UNIQUE INDEX messages_msg_idx ON messages (session_id, msg_id) WHERE msg_id IS NOT NULL`)
	}
	if r.search {
		ddl = append(ddl,
			protoFTSContentless,
			protoSecureDelete,
			`CREATE TABLE search_mark (id INTEGER PRIMARY KEY CHECK (id = 1), rid INTEGER NOT NULL)`,
			`INSERT INTO search_mark VALUES (1, 0)`)
	}
	l := walLayout{name: r.name, ddl: ddl}
	l.save = func(ctx context.Context, tx protoExec, s int, seq int64, at string) error {
		msgs := protoTurn(s, seq)
		tokens := protoTokens(msgs[0]) + protoTokens(msgs[1])
		n, total, err := protoUpsert(ctx, tx, s, tokens, at, r.listing == appendHourListing)
		if err != nil {
			return err
		}
		turnID := scaleTurnID(s, seq)
		if r.orderedIDs {
			turnID = at + "/" + turnID // at grows with every save (protoAt)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO messages (session_id, seq, pos, turn_id, role, content, tokens, tokens_before, created_at)
VALUES (?, ?, 0, ?, 'user', ?, ?, ?, ?), (?, ?, 1, ?, 'assistant', ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			walSessionID(s), n, turnID, msgs[0], protoTokens(msgs[0]), total-tokens, at,
			walSessionID(s), n, turnID, msgs[1], protoTokens(msgs[1]), total-tokens, at)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k != 2 {
			return fmt.Errorf("stored %d rows; want 2", k)
		}
		return nil
	}
	if !r.search && r.listing != appendBatchedListing {
		return l
	}
	l.catchUp = func(ctx context.Context, tx *sql.Tx) (int, error) {
		var n int64
		if r.search {
			res, err := tx.ExecContext(ctx, `INSERT INTO search (rowid, body, sk)
SELECT m.rid, m.content, m.session_id FROM messages m WHERE m.rid > (SELECT rid FROM search_mark) ORDER BY m.rid`)
			if err != nil {
				return 0, err
			}
			n, _ = res.RowsAffected()
			if _, err = tx.ExecContext(ctx, `UPDATE search_mark SET rid = (SELECT COALESCE(MAX(rid), 0) FROM messages)`); err != nil {
				return 0, err
			}
		}
		if r.listing == appendBatchedListing {
			if _, err := tx.ExecContext(ctx, `UPDATE sessions SET listed_at = updated_at WHERE tenant = '' AND listed_at <> updated_at`); err != nil {
				return 0, err
			}
		}
		return int(n), nil
	}
	return l
}

// protoAt is the timestamp of the k-th save: one a second from a fixed
// start, so that the prefill spans hours and the measured saves fall in
// the hour after it.
func protoAt(k int) string {
	return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(k) * 100 * time.Millisecond).Format("2006-01-02 15:04:05.000000+00:00")
}

// protoOpen opens a new database file with layout l's schema, on one
// connection whose transactions take the write lock at BEGIN. Its own
// commits checkpoint (SQLite's default, every 1,000 pages) with
// checkpoints, and never without (countWAL's then are the only ones).
func protoOpen(tb testing.TB, file string, l walLayout, checkpoints bool) *sql.DB {
	tb.Helper()
	dsn := "file:" + file + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=secure_delete(1)&_txlock=immediate"
	if !checkpoints {
		dsn += "&_pragma=wal_autocheckpoint(0)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { db.Close() })
	for _, q := range l.ddl {
		if _, err := db.ExecContext(context.Background(), q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	return db
}

// protoTx runs fn in a transaction of db, committed when fn succeeds.
func protoTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// protoBuild fills db with walSessions sessions of walTurns turns by l's
// own save, a round of every session's next turn per transaction (so that
// b-trees split as they would one save at a time), the search index caught
// up per round. It returns each session's next sequence and the number of
// saves made (protoAt's clock).
func protoBuild(ctx context.Context, tb testing.TB, db *sql.DB, l walLayout) (next []int64, k int) {
	tb.Helper()
	next = make([]int64, walSessions)
	for seq := int64(1); seq <= walTurns; seq++ {
		err := protoTx(ctx, db, func(tx *sql.Tx) error {
			for s := range walSessions {
				if err := l.save(ctx, tx, s, seq, protoAt(k)); err != nil {
					return err
				}
				k++
				next[s] = seq + 1
			}
			return nil
		})
		if err == nil && l.catchUp != nil {
			err = protoTx(ctx, db, func(tx *sql.Tx) error { _, err := l.catchUp(ctx, tx); return err })
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	return next, k
}

// TestWALLayouts counts the WAL pages per save of each candidate layout,
// with the saves' time per save beside them (same run, one connection).
// The deferred layouts' catch-up runs every protoCatchUpEvery saves;
// its pages are counted apart, per save.
func TestWALLayouts(t *testing.T) {
	if os.Getenv("TURNKEEP_LAYOUTS") != "1" {
		t.Skip("layout prototypes skipped: set TURNKEEP_LAYOUTS=1 (builds a 100,000-message database per layout)")
	}
	const protoCatchUpEvery = 64
	for _, l := range protoLayouts() {
		if only := os.Getenv("TURNKEEP_LAYOUT"); only != "" && !strings.Contains(l.name, only) {
			continue
		}
		t.Run(l.name, func(t *testing.T) {
			ctx := context.Background()
			file := filepath.Join(t.TempDir(), "proto.db")
			db := protoOpen(t, file, l, false)
			next, k := protoBuild(ctx, t, db, l)
			inTx := func(fn func(tx *sql.Tx) error) error { return protoTx(ctx, db, fn) }
			order := walSaveOrder(walWarmup + walMeasured)
			save := func(i int) error {
				s := order[i]
				seq := next[s]
				next[s]++
				k++
				return protoSave(ctx, db, l, s, seq, protoAt(k))
			}
			for i := range walWarmup {
				if err := save(i); err != nil {
					t.Fatal(err)
				}
			}
			if l.catchUp != nil {
				if err := inTx(func(tx *sql.Tx) error { _, err := l.catchUp(ctx, tx); return err }); err != nil {
					t.Fatal(err)
				}
			}
			conn := openPageMap(t, file)
			start := time.Now()
			c := countWAL(ctx, t, file, conn, walMeasured, func(i int) error { return save(walWarmup + i) })
			perSave := time.Since(start) / walMeasured
			t.Logf("%s: %v\n  %v per save", l.name, c, perSave)
			if l.catchUp == nil {
				return
			}
			// The catch-up, in batches of protoCatchUpEvery saves, over
			// the same number of new saves.
			indexed := 0
			start = time.Now()
			cu := countWAL(ctx, t, file, conn, walMeasured, func(i int) error {
				if err := save(i); err != nil { // the order again, with new turns
					return err
				}
				if (i+1)%protoCatchUpEvery != 0 {
					return nil
				}
				return inTx(func(tx *sql.Tx) error { n, err := l.catchUp(ctx, tx); indexed += n; return err })
			})
			perSave = time.Since(start) / walMeasured
			t.Logf("%s, saves + catch-up every %d saves: %v\n  %v per save, catch-up included; %d messages indexed", l.name, protoCatchUpEvery, cu, perSave, indexed)
		})
	}
}
