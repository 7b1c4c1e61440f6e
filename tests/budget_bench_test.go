package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// BenchmarkBudgetWindowLongSession loads, cache off, a turn window and a
// token-budget window holding the same 10 turns from one session of 1,000
// and of 100,000 messages (1,000,000 with TURNKEEP_SCALE=1), in one run:
// the budget window must cost about the turn window's, whatever the
// session's history (issue 17, item 5).
//
//	go test ./tests -run '^$' -bench BenchmarkBudgetWindowLongSession -benchtime 2000x -count 3
func BenchmarkBudgetWindowLongSession(b *testing.B) {
	sizes := []int{1_000, 100_000}
	if os.Getenv(scaleEnv) == "1" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("messages=%d", n), func(b *testing.B) {
			ctx := context.Background()
			file := filepath.Join(b.TempDir(), "long.db")
			be := openWALBackend(b, file, true)
			const key = "long"
			fillLongSession(ctx, b, file, be, key, n/2)
			m, err := memory.NewPersistentBufferMemory(be, memory.WithCacheTTL(0), memory.WithMaxTurns(10))
			if err != nil {
				b.Fatal(err)
			}
			w, err := m.LoadContext(ctx, key)
			if err != nil || len(w.Turns) != 10 {
				b.Fatalf("turn window: %d turns, %v", len(w.Turns), err)
			}
			budget := w.Tokens
			for _, c := range []struct {
				name string
				opts []memory.LoadOption
			}{
				{"turn-window", nil},
				// A turn limit far above the window, so the budget bounds it (the memory
				// sizes its buffers by the limit: not the session's length).
				{"budget-window", []memory.LoadOption{memory.LoadMaxTurns(1000), memory.LoadTokenBudget(budget)}},
			} {
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						w, err := m.LoadContext(ctx, key, c.opts...)
						if err != nil || len(w.Turns) != 10 {
							b.Fatalf("%d turns, %v", len(w.Turns), err)
						}
					}
				})
			}
		})
	}
}

// fillLongSession stores turns turns in the session key, in bulk, as the
// backend stores them.
func fillLongSession(ctx context.Context, tb testing.TB, file string, be *backend.DataFlowBackend, key string, turns int) {
	tb.Helper()
	if err := storeTurn(ctx, be, key, memory.Turn{User: "create", Agent: "tables"}); err != nil {
		tb.Fatal(err)
	}
	if err := be.ClearSession(ctx, key); err != nil {
		tb.Fatal(err)
	}
	loader, err := dataflow.Open(ctx, "sqlite:///"+file, dataflow.WithExistingSchemaMode(true))
	if err != nil {
		tb.Fatal(err)
	}
	defer loader.Close()
	sessions, err := dataflow.Register[backend.SessionRow](loader)
	if err != nil {
		tb.Fatal(err)
	}
	messages, err := dataflow.Register[backend.MessageRow](loader)
	if err != nil {
		tb.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var total int64
	var rows []backend.MessageRow
	flush := func() {
		if err := messages.BulkCreate(ctx, rows); err != nil {
			tb.Fatal(err)
		}
		rows = rows[:0]
	}
	for seq := int64(1); seq <= int64(turns); seq++ {
		p, err := driver.Prepare(walTurn(int(seq%97), seq), at, memory.DefaultMaxMessageBytes, nil)
		if err != nil {
			tb.Fatal(err)
		}
		for pos, m := range p.Encoded {
			row := backend.MessageRow{SessionID: key, Seq: seq, Pos: int32(pos), TurnID: p.ID, Role: string(m.Role),
				Content: m.Content, CreatedAt: at, Tokens: int64(m.Tokens), TokensBefore: total}
			row.MsgID.String, row.MsgID.Valid = m.ID, true
			rows = append(rows, row)
		}
		total += int64(p.Tokens())
		if len(rows) >= 5000 {
			flush()
		}
	}
	flush()
	if err := sessions.BulkCreate(ctx, []backend.SessionRow{{ID: key, TurnCount: int64(turns), Version: 1, Tokens: total, Counted: 1, CreatedAt: at, UpdatedAt: at}}); err != nil {
		tb.Fatal(err)
	}
	if _, err := loader.ExecContext(ctx, `DELETE FROM `+backend.SearchQueueTable); err != nil {
		tb.Fatal(err)
	}
	if _, err := loader.ExecContext(ctx, `ANALYZE`); err != nil {
		tb.Fatal(err)
	}
}
