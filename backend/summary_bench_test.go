package backend

import (
	"context"
	"fmt"
	"testing"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// BenchmarkSaveTurnSummarizer compares SaveTurn with a summarizer set
// (every save past the window queues the session for the background
// worker) to the same save without one, in one run, on every dialect:
// the bound is 1.1x. The sessions are long (past the window), so
// every save with a summarizer queues its session; the worker's own
// statements run beside the saves, as they would in production.
func BenchmarkSaveTurnSummarizer(b *testing.B) {
	for _, d := range []dbtest.Dialect{{Name: "sqlite", URL: dbtest.SQLiteURL}, {Name: "pg", URL: dbtest.PostgresURL}} {
		for _, mode := range []string{"without", "with"} {
			b.Run(d.Name+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				db, err := dataflow.Open(ctx, d.URL(b))
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				be, err := NewDataFlowBackend(db)
				if err != nil {
					b.Fatal(err)
				}
				opts := []memory.Option{memory.WithMaxTurns(10)}
				if mode == "with" {
					opts = append(opts, memory.WithSummarizer(memory.NewExtractiveSummarizer(nil), 200))
				}
				m, err := memory.NewPersistentBufferMemory(be, opts...)
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close()
				const sessions = 16
				for s := range sessions {
					for i := range 12 {
						if err := m.SaveTurn(ctx, fmt.Sprint("s", s), driver.Turn{User: fmt.Sprint("question ", i), Agent: "answer"}); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := m.SaveTurn(ctx, fmt.Sprint("s", i%sessions), driver.Turn{User: "My name is Ada and I am 36.", Agent: "Noted."}); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}
