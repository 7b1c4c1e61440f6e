//go:build cgo

package sqlite3peer

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3", as langchaingo's memory/sqlite3 does

	_ "github.com/turnkeep/turnkeep" // registers "sqlite" for dataflow.Open
	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/memory"
)

// The peer benchmarks on SQLite: turnkeep beside langchaingo's
// memory/sqlite3 (SqliteChatMessageHistory) on mattn/go-sqlite3, its
// schema and statements as in tmc/langchaingo memory/sqlite3
// (sqlite3_history.go, sqlite3_history_options.go), reproduced statement
// for statement without depending on langchaingo. The PostgreSQL side is
// in the core module (tests/peer_bench_test.go), which does not depend on
// mattn/go-sqlite3. Both sides run in one benchmark, so the ratio is read
// from one run:
//
//	go test -run '^$' -bench 'BenchmarkPeer' -benchtime 2000x -count 5 ./tests/sqlite3peer/
//
// Each sub-benchmark gets a fresh database with peerSessions sessions of
// peerTurns turns (100 × 100), then adds a turn to, or loads, a random
// session per iteration; both sides draw the same sessions. What differs:
//
//   - Adding a turn. langchaingo runs AddUserMessage then AddAIMessage: two
//     auto-commit INSERTs, two commits, not atomic (a crash between them
//     leaves half a turn) and not idempotent. turnkeep's SaveTurn is one
//     transaction (session upsert numbering the turn, then both messages),
//     one commit.
//   - Loading. turnkeep reads the newest 10 turns and the exact turn count
//     (one statement). langchaingo's SQLite history reads the OLDEST
//     messages (ORDER BY created ASC LIMIT ?; limit 20 here for a 10-turn
//     window): the same row work, the wrong end of a long chat.

const (
	peerSessions = 100
	peerTurns    = 100 // turns per session before the timed loop
	peerWindow   = memory.DefaultMaxTurns

	peerTypeHuman = "human"
	peerTypeAI    = "ai"
)

// peerUser and peerAgent are a turn's messages: about 100 and 300 bytes.
var (
	peerUser  = strings.Repeat("How do I rotate the API keys of a staging project? ", 2)[:100]
	peerAgent = strings.Repeat("Open the project settings, choose Keys, create a new key, deploy it, then revoke the old one. ", 4)[:300]
)

// peerStore is one side of a peer benchmark, opened on a prefilled
// database.
type peerStore interface {
	// addTurn stores a new turn of peerUser and peerAgent.
	addTurn(ctx context.Context, session string) error
	// load reads the session's context and returns the messages read.
	load(ctx context.Context, session string) (int, error)
}

// peerMessage is a message as langchaingo returns it.
type peerMessage struct {
	typ, content string
}

// runPeer runs op on both sides, as sub-benchmarks "sqlite/turnkeep" and
// "sqlite/langchaingo-style", on a random session per iteration (the same
// sequence on both).
func runPeer(b *testing.B, op func(ctx context.Context, s peerStore, session string) error) {
	ctx := context.Background()
	ids := make([]string, peerSessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("peer-%03d", i)
	}
	sides := []struct {
		name string
		open func(tb testing.TB, ids []string) peerStore
	}{
		{"turnkeep", openTurnkeep},
		{"langchaingo-style", openSQLiteLangchaingo},
	}
	for _, side := range sides {
		b.Run("sqlite/"+side.name, func(b *testing.B) {
			s := side.open(b, ids)
			rng := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			for b.Loop() {
				if err := op(ctx, s, ids[rng.IntN(len(ids))]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPeerAddTurn adds a turn to a random session of a prefilled
// database: turnkeep's SaveTurn against langchaingo's two auto-commit
// INSERTs.
func BenchmarkPeerAddTurn(b *testing.B) {
	runPeer(b, func(ctx context.Context, s peerStore, session string) error {
		return s.addTurn(ctx, session)
	})
}

// BenchmarkPeerLoad loads a random session of a prefilled database from
// the database: turnkeep's LoadContext with no cache (WithCacheTTL(0))
// against langchaingo's Messages.
func BenchmarkPeerLoad(b *testing.B) {
	runPeer(b, func(ctx context.Context, s peerStore, session string) error {
		n, err := s.load(ctx, session)
		if err != nil {
			return err
		}
		if n < 2*peerWindow {
			return fmt.Errorf("load %s: got %d messages; want at least %d", session, n, 2*peerWindow)
		}
		return nil
	})
}

// ---- turnkeep ----

// turnkeepPeer is turnkeep with default options: a SaveTurn memory and a
// read-through (WithCacheTTL(0)) memory on the same backend.
type turnkeepPeer struct {
	saver, reader *memory.PersistentBufferMemory
}

// openTurnkeep opens a file database, fills it turn by turn across
// sessions as chats interleave, and returns turnkeep's side.
func openTurnkeep(tb testing.TB, ids []string) peerStore {
	tb.Helper()
	ctx := context.Background()
	db, err := dataflow.Open(ctx, "sqlite:///"+filepath.Join(tb.TempDir(), "turnkeep.db"))
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		tb.Fatalf("new backend: %v", err)
	}
	save, err := memory.NewPersistentBufferMemory(b)
	if err != nil {
		tb.Fatalf("new memory: %v", err)
	}
	load, err := memory.NewPersistentBufferMemory(b, memory.WithCacheTTL(0))
	if err != nil {
		tb.Fatalf("new memory: %v", err)
	}
	p := &turnkeepPeer{saver: save, reader: load}
	for range peerTurns {
		for _, id := range ids {
			// Through the memory without a cache, so that the saver's
			// cache starts empty, as after a restart.
			if err := load.SaveTurn(ctx, id, memory.Turn{User: peerUser, Agent: peerAgent}); err != nil {
				tb.Fatalf("prefill %s: %v", id, err)
			}
		}
	}
	return p
}

func (p *turnkeepPeer) addTurn(ctx context.Context, session string) error {
	return p.saver.SaveTurn(ctx, session, memory.Turn{User: peerUser, Agent: peerAgent})
}

func (p *turnkeepPeer) load(ctx context.Context, session string) (int, error) {
	w, err := p.reader.LoadContext(ctx, session)
	return 2 * len(w.Turns), err
}

// ---- langchaingo-style, on mattn/go-sqlite3 ----

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

// openSQLiteLangchaingo opens a file database as a sensible user would
// (langchaingo defaults to ":memory:"): WAL journal, synchronous=NORMAL,
// as turnkeep's SQLite runs, and a busy timeout. The pool is database/sql's
// default, as langchaingo's sql.Open leaves it.
func openSQLiteLangchaingo(tb testing.TB, ids []string) peerStore {
	tb.Helper()
	db := prefillSQLiteLangchaingo(tb, filepath.Join(tb.TempDir(), "langchaingo.db"), ids)
	tb.Cleanup(func() { db.Close() })
	return &sqliteLangchaingo{db: db, limit: 2 * peerWindow}
}

// sqliteLangchaingoDSN opens the file %s as openSQLiteLangchaingo does.
const sqliteLangchaingoDSN = "file:%s?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=5000"

// prefillSQLiteLangchaingo opens the database file path with mattn's
// driver, creates langchaingo's table and fills it with peerTurns turns of
// every session of ids, and returns it open.
func prefillSQLiteLangchaingo(tb testing.TB, path string, ids []string) *sql.DB {
	tb.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", fmt.Sprintf(sqliteLangchaingoDSN, path))
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
