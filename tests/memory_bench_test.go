package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// Every benchmark runs on each dialect with a turnkeep sub-benchmark beside
// a "bun" one doing the same database work with plain bun, each on a fresh
// database of its own, so the ratio of the performance contract is read
// from one run:
//
//	go test ./tests -run XXX -bench . -benchtime 2000x -count 3

// benchDialects are the dialects benchmarks run on; pg skips without
// dbtest.EnvPostgres.
var benchDialects = []dbtest.Dialect{
	{Name: "sqlite", URL: dbtest.SQLiteURL},
	{Name: "pg", URL: dbtest.PostgresURL},
}

const (
	benchSessions    = 64 // sessions SaveTurn rotates over
	benchLoadSess    = 8  // sessions LoadContext rotates over
	benchTurnsStored = 50 // turns each LoadContext session holds
	benchWindow      = 10 // MaxTurns of the LoadContext benchmarks
)

// benchTurn is a typical turn: two short messages and small metadata.
var benchTurn = memory.Turn{
	User:     "What is the weather like in Lisbon today?",
	Agent:    "Sunny and 24 °C, with a light breeze from the sea.",
	Metadata: map[string]any{"model": "small-chat", "tokens": 42},
}

func sessionIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return ids
}

// openTurnkeep opens a fresh database at url and returns a persistent
// memory over a DataFlowBackend on it, with opts.
func openTurnkeep(tb testing.TB, url string, dbOpts []dataflow.Option, opts ...memory.Option) (*memory.PersistentBufferMemory, *backend.DataFlowBackend) {
	tb.Helper()
	db, err := dataflow.Open(context.Background(), url, dbOpts...)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		tb.Fatalf("new backend: %v", err)
	}
	m, err := memory.NewPersistentBufferMemory(b, opts...)
	if err != nil {
		tb.Fatalf("new memory: %v", err)
	}
	return m, b
}

// rawStore writes and reads DataFlowBackend's rows with plain bun: the
// floor the performance contract measures turnkeep against.
//
// Its *bun.DB comes from dataflow.Open, used only to get the same driver
// settings (WAL, synchronous, busy timeout, immediate transactions, pool
// size) turnkeep runs with, and its schema is made by DataFlowBackend, so
// the two differ in nothing but the code that runs the statements.
type rawStore struct {
	db *bun.DB
}

// rawLoadSQL is DataFlowBackend's window query, with the count column named
// so that bun can scan it.
const rawLoadSQL = `SELECT (SELECT turn_count FROM ` + backend.SessionsTable + ` WHERE id = ?) AS turn_count,
	m.seq, m.pos, m.turn_id, m.content, m.metadata, m.created_at
FROM ` + backend.MessagesTable + ` m
WHERE m.session_id = ? AND m.seq > (SELECT turn_count FROM ` + backend.SessionsTable + ` WHERE id = ?) - ?
ORDER BY m.seq, m.pos`

// windowRow is a row of rawLoadSQL: backend.MessageRow's read columns plus
// the session's turn count.
type windowRow struct {
	TurnCount int64          `bun:"turn_count"`
	Seq       int64          `bun:"seq"`
	Pos       int32          `bun:"pos"`
	TurnID    string         `bun:"turn_id"`
	Content   string         `bun:"content"`
	Metadata  sql.NullString `bun:"metadata"`
	CreatedAt time.Time      `bun:"created_at"`
}

// openRaw opens a fresh database at url with turnkeep's schema and no
// hooks, and returns plain bun on it.
func openRaw(tb testing.TB, url string) *rawStore {
	tb.Helper()
	ctx := context.Background()
	db, err := dataflow.Open(ctx, url)
	if err != nil {
		tb.Fatalf("open raw: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		tb.Fatalf("new backend: %v", err)
	}
	if _, err := readWindow(ctx, b, "raw-schema", 1); err != nil { // creates both tables
		tb.Fatalf("create raw schema: %v", err)
	}
	return &rawStore{db: db.Bun()}
}

// save stores turn as DataFlowBackend does, in one transaction: the session
// upsert returning the new turn count, which numbers the turn, then one
// multi-row INSERT of the user and agent messages. Like the backend it
// encodes the metadata and generates the turn ID.
func (r *rawStore) save(ctx context.Context, sessionID string, turn memory.Turn) error {
	var meta sql.NullString
	if len(turn.Metadata) > 0 {
		data, err := json.Marshal(turn.Metadata)
		if err != nil {
			return err
		}
		meta = sql.NullString{String: string(data), Valid: true}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	ts := turn.Timestamp
	if ts.IsZero() {
		ts = now
	}
	ts = ts.UTC().Truncate(time.Microsecond)
	turnID := memory.NewTurnID()
	return r.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		s := backend.SessionRow{ID: sessionID, TurnCount: 1, CreatedAt: now, UpdatedAt: now}
		if r.db.Dialect().Name() == dialect.MySQL {
			// MySQL has neither ON CONFLICT nor RETURNING: the upsert,
			// then a read of the row it locked.
			if _, err := tx.NewInsert().Model(&s).
				On("DUPLICATE KEY UPDATE").
				Set("turn_count = turn_count + 1").
				Set("updated_at = VALUES(updated_at)").
				Exec(ctx); err != nil {
				return err
			}
			if err := tx.NewSelect().Model(&s).Column("turn_count").Where("id = ?", sessionID).For("UPDATE").Scan(ctx); err != nil {
				return err
			}
		} else if _, err := tx.NewInsert().Model(&s).
			On("CONFLICT (id) DO UPDATE").
			Set("turn_count = ?TableAlias.turn_count + 1").
			Set("updated_at = EXCLUDED.updated_at").
			Returning("turn_count").
			Exec(ctx); err != nil {
			return err
		}
		msgs := []backend.MessageRow{
			{SessionID: sessionID, Seq: s.TurnCount, Pos: 0, TurnID: turnID, Role: string(memory.RoleUser), Content: turn.User, Metadata: meta, CreatedAt: ts},
			{SessionID: sessionID, Seq: s.TurnCount, Pos: 1, TurnID: turnID, Role: string(memory.RoleAssistant), Content: turn.Agent, CreatedAt: ts},
		}
		_, err := tx.NewInsert().Model(&msgs).Exec(ctx)
		return err
	})
}

// load runs the window query, scanning the messages of the newest maxTurns
// turns into windowRows.
func (r *rawStore) load(ctx context.Context, sessionID string, maxTurns int) ([]windowRow, error) {
	var rows []windowRow
	err := r.db.NewRaw(rawLoadSQL, sessionID, sessionID, sessionID, maxTurns).Scan(ctx, &rows)
	return rows, err
}

// BenchmarkSaveTurn stores a turn with small metadata into a rotating set of
// sessions whose windows are cached, as a chat loop does.
func BenchmarkSaveTurn(b *testing.B) {
	ctx := context.Background()
	ids := sessionIDs("save", benchSessions)
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			b.Run("turnkeep", func(b *testing.B) {
				m, _ := openTurnkeep(b, d.URL(b), nil, memory.WithMaxTurns(benchWindow))
				for _, id := range ids { // tables created, windows cached
					if err := m.SaveTurn(ctx, id, benchTurn); err != nil {
						b.Fatal(err)
					}
					if _, err := m.LoadContext(ctx, id); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := m.SaveTurn(ctx, ids[i%len(ids)], benchTurn); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run("bun", func(b *testing.B) {
				r := openRaw(b, d.URL(b))
				for _, id := range ids {
					if err := r.save(ctx, id, benchTurn); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := r.save(ctx, ids[i%len(ids)], benchTurn); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}

// BenchmarkLoadContextMiss reads the newest 10 of 50 turns from the
// database on every call (cache TTL 0).
func BenchmarkLoadContextMiss(b *testing.B) {
	ctx := context.Background()
	ids := sessionIDs("load", benchLoadSess)
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			b.Run("turnkeep", func(b *testing.B) {
				m, _ := openTurnkeep(b, d.URL(b), nil, memory.WithMaxTurns(benchWindow), memory.WithCacheTTL(0))
				for _, id := range ids {
					for range benchTurnsStored {
						if err := m.SaveTurn(ctx, id, benchTurn); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					w, err := m.LoadContext(ctx, ids[i%len(ids)])
					if err != nil || len(w.Turns) != benchWindow || w.TurnCount != benchTurnsStored {
						b.Fatalf("LoadContext: got %d turns of %d, %v; want %d of %d", len(w.Turns), w.TurnCount, err, benchWindow, benchTurnsStored)
					}
					i++
				}
			})
			b.Run("bun", func(b *testing.B) {
				r := openRaw(b, d.URL(b))
				for _, id := range ids {
					for range benchTurnsStored {
						if err := r.save(ctx, id, benchTurn); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					rows, err := r.load(ctx, ids[i%len(ids)], benchWindow)
					if err != nil || len(rows) != 2*benchWindow || rows[0].TurnCount != benchTurnsStored {
						b.Fatalf("load: got %d rows, %v; want %d", len(rows), err, 2*benchWindow)
					}
					i++
				}
			})
		})
	}
}

// BenchmarkLoadContextHit serves the window from the cache: no database
// work, so there is no baseline. Target: under 2 µs, a handful of
// allocations.
func BenchmarkLoadContextHit(b *testing.B) {
	ctx := context.Background()
	ids := sessionIDs("hit", benchLoadSess)
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			m, _ := openTurnkeep(b, d.URL(b), nil, memory.WithMaxTurns(benchWindow))
			for _, id := range ids {
				for range benchTurnsStored {
					if err := m.SaveTurn(ctx, id, benchTurn); err != nil {
						b.Fatal(err)
					}
				}
				m.InvalidateCache(id)
				if _, err := m.LoadContext(ctx, id); err != nil { // a miss fills the cache
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				w, err := m.LoadContext(ctx, ids[i%len(ids)])
				if err != nil || len(w.Turns) != benchWindow || w.TurnCount != benchTurnsStored {
					b.Fatalf("LoadContext: got %d turns of %d, %v; want %d of %d", len(w.Turns), w.TurnCount, err, benchWindow, benchTurnsStored)
				}
				i++
			}
		})
	}
}
