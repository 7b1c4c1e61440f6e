package backend

import (
	"context"
	"fmt"
	"testing"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

// BenchmarkSaveTurnSummarizer compares SaveTurn with a summarizer set
// (every save past the window queues the session for the background
// worker) to the same save without one, in one run, on every dialect:
// the bound is 1.1x. Run it in rounds (-count 1, several times):
// each round runs without, with and without again, so the ratio is read
// beside the drift of a shared machine. The sessions are long (past the
// window), so every save with a summarizer queues its session; the
// worker's own statements run beside the saves, as they would in
// production.
func BenchmarkSaveTurnSummarizer(b *testing.B) {
	for _, d := range []dbtest.Dialect{{Name: "sqlite", URL: dbtest.SQLiteURL}, {Name: "pg", URL: dbtest.PostgresURL}, {Name: "mysql", URL: dbtest.MySQLURL}} {
		for _, mode := range []string{"without", "with", "without-again"} {
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
					opts = append(opts, memory.WithSummarizer(summarize.NewExtractive(nil), 200))
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

// BenchmarkLoadSummary compares a read-through LoadContext of a window
// with its summary (one statement: the window's and four scalar
// subqueries by primary key) to the same load without a summarizer, in
// one run, on every dialect.
func BenchmarkLoadSummary(b *testing.B) {
	for _, d := range []dbtest.Dialect{{Name: "sqlite", URL: dbtest.SQLiteURL}, {Name: "pg", URL: dbtest.PostgresURL}, {Name: "mysql", URL: dbtest.MySQLURL}} {
		b.Run(d.Name, func(b *testing.B) {
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
			summed, err := memory.NewPersistentBufferMemory(be, memory.WithMaxTurns(10), memory.WithCacheTTL(0),
				memory.WithSummarizer(summarize.NewExtractive(nil), 300))
			if err != nil {
				b.Fatal(err)
			}
			defer summed.Close()
			plain, err := memory.NewPersistentBufferMemory(be, memory.WithMaxTurns(10), memory.WithCacheTTL(0))
			if err != nil {
				b.Fatal(err)
			}
			for i := range 40 {
				if err := summed.SaveTurn(ctx, "s", driver.Turn{User: fmt.Sprintf("My name is Ada and order %d is late.", i), Agent: "I will look into it."}); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := summed.Summarize(ctx, "s"); err != nil {
				b.Fatal(err)
			}
			for _, c := range []struct {
				name string
				m    *memory.PersistentBufferMemory
			}{{"without", plain}, {"with", summed}} {
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						w, err := c.m.LoadContext(ctx, "s")
						if err != nil || len(w.Turns) != 10 || (c.m == summed) != (w.Summary != nil) {
							b.Fatal(err, len(w.Turns))
						}
					}
				})
			}
		})
	}
}
