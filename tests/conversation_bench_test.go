package tests

import (
	"context"
	"fmt"
	"testing"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// The conversation model's benchmarks, each beside its raw baseline in the
// same run (the ratios issue 9 sets):
//
//	go test ./tests -run XXX -bench 'BenchmarkConversation' -benchtime 2000x -count 5
//
// - SaveTurn of an agent-loop turn of 6 messages (user, assistant with 2
//   tool calls, 2 tool results, answer): at most 1.5x a 2-message turn;
// - a budget window: at most 1.2x a turn window of the same turns;
// - AppendMessages of one message: at most 1.0x SaveTurn of a 2-message turn.

// agentLoopTurn is a 6-message turn an agent loop writes.
func agentLoopTurn() memory.Turn {
	return memory.Turn{Messages: []memory.Message{
		{Role: memory.RoleUser, Content: "What is the weather like in Lisbon and Porto today?"},
		{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{
			{ID: "call_1", Name: "weather", Arguments: `{"city":"Lisbon"}`},
			{ID: "call_2", Name: "weather", Arguments: `{"city":"Porto"}`},
		}},
		{Role: memory.RoleTool, ToolCallID: "call_1", Content: `{"temp_c":24,"sky":"sunny"}`},
		{Role: memory.RoleTool, ToolCallID: "call_2", Content: `{"temp_c":19,"sky":"cloudy"}`},
		{Role: memory.RoleAssistant, Content: "Lisbon: sunny, 24 °C. Porto: cloudy, 19 °C."},
	}, Metadata: map[string]any{"model": "small-chat"}}
}

func BenchmarkConversationSave(b *testing.B) {
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			for _, c := range []struct {
				name string
				turn func() memory.Turn
			}{
				{"2-messages", func() memory.Turn { return benchTurn }},
				{"6-messages", agentLoopTurn},
			} {
				b.Run(c.name, func(b *testing.B) {
					ctx := context.Background()
					m, _ := openTurnkeep(b, d.URL(b), nil, memory.WithCacheTTL(0))
					ids := sessionIDs("save", benchSessions)
					turn := c.turn()
					b.ResetTimer()
					for i := range b.N {
						turn.ID = ""
						if err := m.SaveTurn(ctx, ids[i%len(ids)], turn); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkConversationAppend appends one message to the newest turn, as
// a streamed answer does, beside SaveTurn of a 2-message turn.
func BenchmarkConversationAppend(b *testing.B) {
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			b.Run("save-2-messages", func(b *testing.B) {
				ctx := context.Background()
				m, _ := openTurnkeep(b, d.URL(b), nil, memory.WithCacheTTL(0))
				ids := sessionIDs("save", benchSessions)
				b.ResetTimer()
				for i := range b.N {
					if err := m.SaveTurn(ctx, ids[i%len(ids)], benchTurn); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("append-1-message", func(b *testing.B) {
				ctx := context.Background()
				m, _ := openTurnkeep(b, d.URL(b), nil, memory.WithCacheTTL(0))
				ids := sessionIDs("append", benchSessions)
				for _, id := range ids {
					if err := m.SaveTurn(ctx, id, memory.Turn{ID: "t", User: benchTurn.User}); err != nil {
						b.Fatal(err)
					}
				}
				msg := memory.Message{Role: memory.RoleAssistant, Content: benchTurn.Agent}
				b.ResetTimer()
				for i := range b.N {
					msg.ID = fmt.Sprint("m", i)
					if err := m.AppendMessages(ctx, ids[i%len(ids)], "t", msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkConversationBudgetLoad reads a budget window and a turn window
// holding the same turns, cache off.
func BenchmarkConversationBudgetLoad(b *testing.B) {
	for _, d := range benchDialects {
		b.Run(d.Name, func(b *testing.B) {
			ctx := context.Background()
			m, _ := openTurnkeep(b, d.URL(b), nil, memory.WithCacheTTL(0), memory.WithMaxTurns(benchWindow))
			ids := sessionIDs("load", benchLoadSess)
			for _, id := range ids {
				for range benchTurnsStored {
					if err := m.SaveTurn(ctx, id, benchTurn); err != nil {
						b.Fatal(err)
					}
				}
			}
			// The budget that holds exactly the turn window's turns.
			w, err := m.LoadContext(ctx, ids[0])
			if err != nil {
				b.Fatal(err)
			}
			budget := w.Tokens
			for _, c := range []struct {
				name string
				opts []memory.LoadOption
			}{
				{"turn-window", nil},
				{"budget-window", []memory.LoadOption{memory.LoadMaxTurns(benchTurnsStored), memory.LoadTokenBudget(budget)}},
			} {
				b.Run(c.name, func(b *testing.B) {
					for i := range b.N {
						w, err := m.LoadContext(ctx, ids[i%len(ids)], c.opts...)
						if err != nil {
							b.Fatal(err)
						}
						if len(w.Turns) != benchWindow {
							b.Fatalf("window of %d turns, want %d", len(w.Turns), benchWindow)
						}
					}
				})
			}
		})
	}
}

// BenchmarkSearchIndexCost is SaveTurn of a 2-message turn with and
// without the SQLite full-text index (backend.WithSearchIndex), in one run:
// what keeping search entries in the save's transaction costs. On
// PostgreSQL the search text rides in the save's one statement.
//
//	go test ./tests -run '^$' -bench BenchmarkSearchIndexCost -benchtime 2000x -count 3
func BenchmarkSearchIndexCost(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("sqlite/search-index=%v", on), func(b *testing.B) {
			ctx := context.Background()
			db, err := dataflow.Open(ctx, dbtest.SQLiteURL(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			be, err := backend.NewDataFlowBackend(db, backend.WithSearchIndex(on))
			if err != nil {
				b.Fatal(err)
			}
			m, err := memory.NewPersistentBufferMemory(be, memory.WithCacheTTL(0))
			if err != nil {
				b.Fatal(err)
			}
			ids := sessionIDs("save", benchSessions)
			for i := range 2 * benchSessions { // warm: tables, search index, statements
				if err := m.SaveTurn(ctx, ids[i%len(ids)], benchTurn); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				if err := m.SaveTurn(ctx, ids[i%len(ids)], benchTurn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
