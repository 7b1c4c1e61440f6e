package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// The peer benchmarks put turnkeep's two hot operations, adding a turn and
// loading a session's window from the database, beside the closest Go
// peer, tmc/langchaingo's chat message histories, reproduced here statement
// for statement without depending on langchaingo:
//
//   - SQLite: langchaingo's memory/sqlite3 on mattn/go-sqlite3 (cgo), in
//     the module tests/sqlite3peer, so that this module does not require
//     mattn/go-sqlite3; it runs turnkeep's SQLite side beside it. Here
//     SQLite runs turnkeep alone.
//   - PostgreSQL: langchaingo's pgx history (memory/alloydb and
//     memory/cloudsql: a *pgxpool.Pool, one JSONB row per message).
//
// Each sub-benchmark gets a fresh database with peerSessions sessions of
// peerTurns turns (100 × 100, as in the issue), then adds a turn to, or
// loads, a random session per iteration; every side draws the same
// sessions. The pg sub-benchmarks skip without TURNKEEP_POSTGRES_URL:
//
//	TURNKEEP_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' \
//	  go test -run '^$' -bench 'BenchmarkPeer' -benchtime 2000x -count 5 ./tests/
//
// What differs, so that the ratios are read for what they are:
//
//   - Adding a turn. langchaingo runs AddUserMessage then AddAIMessage: two
//     auto-commit INSERTs, two commits (two fsyncs on PostgreSQL), not
//     atomic (a crash between them leaves half a turn) and not idempotent
//     (a retried turn is stored twice). turnkeep's SaveTurn is one
//     transaction (session upsert numbering the turn, then both messages;
//     on PostgreSQL one statement doing both), one commit, and a turn ID
//     already stored is not stored again.
//   - Loading. turnkeep reads the newest 10 turns and the exact turn count
//     (one statement). langchaingo's SQLite history reads the OLDEST
//     messages (ORDER BY created ASC LIMIT ?; limit 20 here for a 10-turn
//     window), so it does the same amount of row work but returns the wrong
//     end of a long chat; its PostgreSQL history has no limit and reads
//     every message of the session (200 here), with no index on session_id
//     (as langchaingo ships its table), and a window buffer trims them in
//     memory.
//
// "pg/raw-4rt" and "pg/raw-cte" are floors for turnkeep's PostgreSQL save
// with plain pgx: the backend's two statements (its SQLite save) in
// BEGIN … COMMIT (4 round trips), and proposedCTESave, a copy of the one
// statement the backend saves with on PostgreSQL (1 round trip).

const (
	peerSessions = 100
	peerTurns    = 100 // turns per session before the timed loop
	peerWindow   = memory.DefaultMaxTurns
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

// peerSide names how to open one side: the dialect, then the store.
type peerSide struct {
	dialect, name string
	open          func(tb testing.TB, ids []string) peerStore
}

func peerSides(withFloors bool) []peerSide {
	sides := []peerSide{
		{"sqlite", "turnkeep", func(tb testing.TB, ids []string) peerStore {
			return openTurnkeepPeer(tb, dbtest.SQLiteURL(tb), ids)
		}},
		// langchaingo's two inserts on turnkeep's pure-Go driver: the bar of
		// turnkeep's save on the same driver (the cgo side, mattn, is the
		// module tests/sqlite3peer).
		{"sqlite", "langchaingo-style-modernc", openSQLiteLangchaingoModernc},
		{"pg", "turnkeep", func(tb testing.TB, ids []string) peerStore {
			return openTurnkeepPeer(tb, dbtest.PostgresURL(tb), ids)
		}},
		{"pg", "langchaingo-style", openPGLangchaingo},
	}
	if withFloors {
		sides = append(sides,
			peerSide{"pg", "raw-4rt", func(tb testing.TB, ids []string) peerStore { return openPGRaw(tb, ids, false) }},
			peerSide{"pg", "raw-cte", func(tb testing.TB, ids []string) peerStore { return openPGRaw(tb, ids, true) }},
		)
	}
	return sides
}

// runPeer runs op on every side, as sub-benchmarks "dialect/name", on a
// random session per iteration (the same sequence on every side).
func runPeer(b *testing.B, withFloors bool, op func(ctx context.Context, s peerStore, session string) error) {
	ctx := context.Background()
	ids := sessionIDs("peer", peerSessions)
	for _, side := range peerSides(withFloors) {
		b.Run(side.dialect+"/"+side.name, func(b *testing.B) {
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
// INSERTs, and on PostgreSQL the raw floors of turnkeep's save.
func BenchmarkPeerAddTurn(b *testing.B) {
	runPeer(b, true, func(ctx context.Context, s peerStore, session string) error {
		return s.addTurn(ctx, session)
	})
}

// BenchmarkPeerLoad loads a random session of a prefilled database from
// the database: turnkeep's LoadContext with no cache (WithCacheTTL(0))
// against langchaingo's Messages.
func BenchmarkPeerLoad(b *testing.B) {
	runPeer(b, false, func(ctx context.Context, s peerStore, session string) error {
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

func openTurnkeepPeer(tb testing.TB, dbURL string, ids []string) peerStore {
	tb.Helper()
	prefillTurnkeep(tb, dbURL, ids)
	db, err := dataflow.Open(context.Background(), dbURL)
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
	return &turnkeepPeer{saver: save, reader: load}
}

func (p *turnkeepPeer) addTurn(ctx context.Context, session string) error {
	return p.saver.SaveTurn(ctx, session, memory.Turn{User: peerUser, Agent: peerAgent})
}

func (p *turnkeepPeer) load(ctx context.Context, session string) (int, error) {
	w, err := p.reader.LoadContext(ctx, session)
	return 2 * len(w.Turns), err
}

// prefillTurnkeep stores peerTurns turns in every session with the
// backend's own SaveTurn, turn by turn across sessions as chats
// interleave. On PostgreSQL it uses connections of its own with
// synchronous_commit=off, only to fill faster: the rows are the same.
func prefillTurnkeep(tb testing.TB, dbURL string, ids []string) {
	tb.Helper()
	ctx := context.Background()
	workers := 1
	if strings.HasPrefix(dbURL, "postgres") {
		dbURL = withParam(tb, dbURL, "synchronous_commit", "off")
		workers = 4
	}
	db, err := dataflow.Open(ctx, dbURL)
	if err != nil {
		tb.Fatalf("open prefill: %v", err)
	}
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		tb.Fatalf("new backend: %v", err)
	}
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for t := range peerTurns {
				for i := w; i < len(ids); i += workers {
					if err := storeTurn(ctx, b, ids[i], memory.Turn{User: peerUser, Agent: peerAgent}); err != nil {
						errs <- fmt.Errorf("prefill %s turn %d: %w", ids[i], t, err)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
}

func withParam(tb testing.TB, raw, key, value string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("parse %s: %v", raw, err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// ---- langchaingo-style PostgreSQL ----

// pgLangchaingoTable is langchaingo's pgx history table as it ships it:
// a serial key, JSONB content and no index on session_id.
const pgLangchaingoTable = `CREATE TABLE langchaingo_messages (
	id SERIAL PRIMARY KEY,
	session_id TEXT NOT NULL,
	data JSONB NOT NULL,
	type TEXT NOT NULL,
	created_at TIMESTAMP DEFAULT now()
)`

const (
	pgLangchaingoInsert = `INSERT INTO langchaingo_messages (session_id, data, type) VALUES ($1, $2, $3)`
	pgLangchaingoSelect = `SELECT id, session_id, data, type FROM langchaingo_messages WHERE session_id = $1 ORDER BY id`
)

// langchaingo's message types (llms.ChatMessageTypeHuman, …AI).
const (
	peerTypeHuman = "human"
	peerTypeAI    = "ai"
)

// peerMessage is a message as langchaingo returns it.
type peerMessage struct {
	typ, content string
}

type pgLangchaingo struct {
	pool *pgxpool.Pool
}

func openPGPool(tb testing.TB, dbURL string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		tb.Fatalf("pgxpool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

func openPGLangchaingo(tb testing.TB, ids []string) peerStore {
	tb.Helper()
	return openPGLangchaingoURL(tb, dbtest.PostgresURL(tb), ids)
}

// openPGLangchaingoURL is openPGLangchaingo on the database at dbURL.
func openPGLangchaingoURL(tb testing.TB, dbURL string, ids []string) peerStore {
	tb.Helper()
	ctx := context.Background()
	pool := openPGPool(tb, dbURL)
	if _, err := pool.Exec(ctx, pgLangchaingoTable); err != nil {
		tb.Fatalf("create table: %v", err)
	}
	// Prefill with the same INSERT, a turn of every session per
	// transaction: the rows are those of auto-commit inserts.
	data := map[string][]byte{peerTypeHuman: peerJSON(tb, peerUser), peerTypeAI: peerJSON(tb, peerAgent)}
	for range peerTurns {
		batch := &pgx.Batch{}
		for _, id := range ids {
			batch.Queue(pgLangchaingoInsert, id, data[peerTypeHuman], peerTypeHuman)
			batch.Queue(pgLangchaingoInsert, id, data[peerTypeAI], peerTypeAI)
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, batch).Close() }); err != nil {
			tb.Fatalf("prefill: %v", err)
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE langchaingo_messages`); err != nil {
		tb.Fatalf("analyze: %v", err)
	}
	return &pgLangchaingo{pool: pool}
}

func peerJSON(tb testing.TB, s string) []byte {
	data, err := json.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// addMessage is langchaingo's: the content as a JSON string, one
// auto-commit INSERT.
func (p *pgLangchaingo) addMessage(ctx context.Context, session, content, typ string) error {
	data, err := json.Marshal(content)
	if err != nil {
		return fmt.Errorf("failed to serialize content to JSON: %w", err)
	}
	if _, err := p.pool.Exec(ctx, pgLangchaingoInsert, session, data, typ); err != nil {
		return fmt.Errorf("failed to add message to database: %w", err)
	}
	return nil
}

func (p *pgLangchaingo) addTurn(ctx context.Context, session string) error {
	if err := p.addMessage(ctx, session, peerUser, peerTypeHuman); err != nil {
		return err
	}
	return p.addMessage(ctx, session, peerAgent, peerTypeAI)
}

// load is langchaingo's Messages: every message of the session, oldest
// first, each unmarshalled from JSON.
func (p *pgLangchaingo) load(ctx context.Context, session string) (int, error) {
	rows, err := p.pool.Query(ctx, pgLangchaingoSelect, session)
	if err != nil {
		return 0, fmt.Errorf("failed to retrieve messages: %w", err)
	}
	defer rows.Close()
	var msgs []peerMessage
	for rows.Next() {
		var id int
		var sessionID, data, typ string
		if err := rows.Scan(&id, &sessionID, &data, &typ); err != nil {
			return 0, fmt.Errorf("failed to scan row: %w", err)
		}
		var content string
		if err := json.Unmarshal([]byte(data), &content); err != nil {
			return 0, fmt.Errorf("failed to unmarshal data: %w", err)
		}
		msgs = append(msgs, peerMessage{typ: typ, content: content})
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("failed to iterate over rows: %w", err)
	}
	return len(msgs), nil
}

// ---- raw pgx floors of turnkeep's PostgreSQL save ----

// rawSaveSession and rawSaveMessages are DataFlowBackend's saveSession and
// saveMessages (backend/dataflow.go), rebound for pgx.
const (
	rawSaveSession = `INSERT INTO turnkeep_sessions (id, turn_count, version, created_at, updated_at) VALUES ($1, 1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET turn_count = turnkeep_sessions.turn_count + 1, version = turnkeep_sessions.version + 1, updated_at = excluded.updated_at
RETURNING turn_count, version`
	rawSaveMessages = `INSERT INTO turnkeep_messages (session_id, seq, pos, turn_id, role, content, metadata, created_at)
VALUES ($1, $2, 0, $3, 'user', $4, $5, $6), ($7, $8, 1, $9, 'assistant', $10, NULL, $11)
ON CONFLICT (session_id, turn_id, pos) DO NOTHING`
)

// proposedCTESave mirrors backend/dataflow.go's saveTurn statement (run by
// DataFlowBackend.saveInOne) as a raw pgx baseline for the "pg/raw-cte"
// floor; it also returns how many messages it inserted. Its behaviour is
// tested through the backend itself (TestDataFlowBackendSaveInOne in
// backend/save_one_test.go); keep the two in step. It stores a turn in one
// statement, atomically and idempotently, replacing BEGIN, saveSession,
// saveMessages, COMMIT (4 round trips) with 1. Parameters: $1 session ID, $2 turn ID, $3 the version of a
// new session row (random, as firstVersion), $4 now (the session's
// created_at/updated_at), $5 user content, $6 agent content, $7 the turn's
// timestamp, $8 the metadata JSON or NULL. It must run outside a
// transaction (auto-commit), and the caller reads its result so:
//
//   - one row (turn_count, version, stored): the turn is stored as number
//     turn_count; stored is 2.
//   - unique violation (23505) of turnkeep_messages_turn_idx: the turn ID
//     was already stored, or a concurrent save of it committed first.
//     The statement bumped the session row (after waiting for the other
//     save's row lock) but, being one statement, is rolled back whole by
//     the violation, bump included: report "already stored". (ON CONFLICT
//     DO NOTHING on the messages would keep the bump and leave a turn
//     number without messages; the bump cannot depend on the insert, as the
//     insert needs the bumped count.)
//
// The session row's lock orders concurrent saves of a session, so turn
// numbers stay gap-free: a rolled-back bump is never seen.
const proposedCTESave = `WITH s AS (
	INSERT INTO turnkeep_sessions (id, turn_count, version, created_at, updated_at)
	VALUES ($1, 1, $3::bigint, $4::timestamptz, $4::timestamptz)
	ON CONFLICT (id) DO UPDATE SET turn_count = turnkeep_sessions.turn_count + 1, version = turnkeep_sessions.version + 1, updated_at = excluded.updated_at
	RETURNING turn_count, version
), m AS (
	INSERT INTO turnkeep_messages (session_id, seq, pos, turn_id, role, content, metadata, created_at)
	SELECT $1, s.turn_count, v.pos, $2, v.role, v.content, v.metadata, $7::timestamptz
	FROM s, (VALUES (0, 'user', $5::text, $8::text), (1, 'assistant', $6::text, NULL::text)) AS v (pos, role, content, metadata)
	RETURNING pos
)
SELECT s.turn_count, s.version, (SELECT count(*) FROM m) FROM s`

// cteTurnIndex is the unique index whose violation means "already stored".
const cteTurnIndex = backend.MessagesTable + "_turn_idx"

// cteSave runs proposedCTESave and maps its outcomes: stored is false, and
// err nil, when the turn ID was already stored.
func cteSave(ctx context.Context, pool *pgxpool.Pool, session, turnID, user, agent string, meta any, at time.Time) (stored bool, seq, version int64, err error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	var n int64
	err = pool.QueryRow(ctx, proposedCTESave, session, turnID, rand.Int64N(1<<62)+1, now, user, agent, at, meta).Scan(&seq, &version, &n)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, 0, 0, nil
	case errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == cteTurnIndex:
		return false, 0, 0, nil
	case err != nil:
		return false, 0, 0, err
	case n != 2:
		return false, 0, 0, fmt.Errorf("stored %d of 2 messages", n)
	}
	return true, seq, version, nil
}

// pgRaw saves turnkeep's rows with plain pgx, on turnkeep's schema.
type pgRaw struct {
	pool *pgxpool.Pool
	cte  bool
}

// openPGRaw prefills a database with turnkeep (which makes the schema) and
// opens a pgx pool on it.
func openPGRaw(tb testing.TB, ids []string, cte bool) peerStore {
	tb.Helper()
	dbURL := dbtest.PostgresURL(tb)
	prefillTurnkeep(tb, dbURL, ids)
	return &pgRaw{pool: openPGPool(tb, dbURL), cte: cte}
}

func (p *pgRaw) addTurn(ctx context.Context, session string) error {
	now := time.Now().UTC().Truncate(time.Microsecond)
	turnID := memory.NewTurnID()
	if p.cte {
		stored, _, _, err := cteSave(ctx, p.pool, session, turnID, peerUser, peerAgent, nil, now)
		if err == nil && !stored {
			err = fmt.Errorf("turn %s not stored", turnID)
		}
		return err
	}
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var seq, version int64
		if err := tx.QueryRow(ctx, rawSaveSession, session, rand.Int64N(1<<62)+1, now, now).Scan(&seq, &version); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, rawSaveMessages,
			session, seq, turnID, peerUser, nil, now,
			session, seq, turnID, peerAgent, now)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 2 {
			return fmt.Errorf("stored %d of 2 messages", tag.RowsAffected())
		}
		return nil
	})
}

func (p *pgRaw) load(context.Context, string) (int, error) {
	return 0, errors.New("pgRaw: no load floor")
}
