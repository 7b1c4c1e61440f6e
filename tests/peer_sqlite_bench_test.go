package tests

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// The langchaingo-style SQLite side of the peer benchmarks: langchaingo's
// memory/sqlite3 (SqliteChatMessageHistory), its schema and statements as
// in tmc/langchaingo memory/sqlite3 (sqlite3_history.go,
// sqlite3_history_options.go), on either driver: mattn/go-sqlite3 (cgo, as
// langchaingo ships it; peer_sqlite3_bench_test.go) or modernc.org/sqlite
// (pure Go, turnkeep's driver: the same statements on the same driver).

// sqliteModerncDSN opens a file with modernc.org/sqlite as the mattn side
// opens it.
const sqliteModerncDSN = "file:%s?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(5000)"

func openSQLiteLangchaingoModernc(tb testing.TB, ids []string) peerStore {
	return openSQLiteLangchaingoOn(tb, "sqlite", sqliteModerncDSN, ids)
}

// sqliteLangchaingoSchema is langchaingo's DefaultSchema for the default
// table name.
const sqliteLangchaingoSchema = `CREATE TABLE IF NOT EXISTS langchaingo_messages (
		id INTEGER PRIMARY KEY,
		name TEXT,
		session TEXT NOT NULL,
		content TEXT NOT NULL,
		type TEXT NOT NULL,
		created TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_langchaingo_id ON langchaingo_messages (id);
CREATE INDEX IF NOT EXISTS idx_langchaingo_session ON langchaingo_messages (session);`

const (
	sqliteLangchaingoInsert = `INSERT INTO langchaingo_messages (session, content, type) VALUES (?, ?, ?);`
	// sqliteLangchaingoSelect is langchaingo's Messages query. It reads the
	// OLDEST messages of the session (ORDER BY created ASC LIMIT ?), not
	// the newest: with the limit at 2 × the window it does a window's row
	// work but returns the start of a long chat.
	sqliteLangchaingoSelect = `SELECT content,type,created FROM langchaingo_messages WHERE session = ? ORDER BY created ASC LIMIT ?;`
)

type sqliteLangchaingo struct {
	db    *sql.DB
	limit int
}

// openSQLiteLangchaingoOn opens langchaingo's store on a new file database
// through driver with dsn (the file's path is dsn's %s), as a sensible user
// would (langchaingo defaults to ":memory:"): WAL journal,
// synchronous=NORMAL, as turnkeep's SQLite runs, and a busy timeout. The
// pool is database/sql's default, as langchaingo's sql.Open leaves it.
func openSQLiteLangchaingoOn(tb testing.TB, driver, dsn string, ids []string) peerStore {
	tb.Helper()
	db := prefillSQLiteLangchaingo(tb, driver, dsn, filepath.Join(tb.TempDir(), "langchaingo.db"), ids)
	tb.Cleanup(func() { db.Close() })
	return &sqliteLangchaingo{db: db, limit: 2 * peerWindow}
}

// prefillSQLiteLangchaingo opens the database file path through driver
// with dsn, creates langchaingo's table and fills it with peerTurns turns
// of every session of ids, and returns it open.
func prefillSQLiteLangchaingo(tb testing.TB, driver, dsn, path string, ids []string) *sql.DB {
	tb.Helper()
	ctx := context.Background()
	db, err := sql.Open(driver, fmt.Sprintf(dsn, path))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	ok := false
	defer func() {
		if !ok {
			db.Close()
		}
	}()
	if _, err := db.ExecContext(ctx, sqliteLangchaingoSchema); err != nil {
		tb.Fatalf("schema: %v", err)
	}
	// Prefill with the same INSERT, in one transaction: the rows are those
	// of auto-commit inserts.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, sqliteLangchaingoInsert)
	if err != nil {
		tb.Fatal(err)
	}
	for range peerTurns {
		for _, id := range ids {
			if _, err := stmt.ExecContext(ctx, id, peerUser, peerTypeHuman); err != nil {
				tb.Fatal(err)
			}
			if _, err := stmt.ExecContext(ctx, id, peerAgent, peerTypeAI); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
		tb.Fatal(err)
	}
	ok = true
	return db
}

// addMessage is langchaingo's: one auto-commit INSERT.
func (s *sqliteLangchaingo) addMessage(ctx context.Context, session, text, typ string) error {
	_, err := s.db.ExecContext(ctx, sqliteLangchaingoInsert, session, text, typ)
	return err
}

// addTurn is AddUserMessage then AddAIMessage: two commits, not atomic.
func (s *sqliteLangchaingo) addTurn(ctx context.Context, session string) error {
	if err := s.addMessage(ctx, session, peerUser, peerTypeHuman); err != nil {
		return err
	}
	return s.addMessage(ctx, session, peerAgent, peerTypeAI)
}

// load is langchaingo's Messages.
func (s *sqliteLangchaingo) load(ctx context.Context, session string) (int, error) {
	rows, err := s.db.QueryContext(ctx, sqliteLangchaingoSelect, session, s.limit)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var msgs []peerMessage
	for rows.Next() {
		var content, typ string
		var created any
		if err := rows.Scan(&content, &typ, &created); err != nil {
			return 0, err
		}
		switch typ {
		case peerTypeAI, peerTypeHuman:
			msgs = append(msgs, peerMessage{typ: typ, content: content})
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return len(msgs), nil
}
