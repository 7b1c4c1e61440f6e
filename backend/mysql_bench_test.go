package backend

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// BenchmarkEngineSaveLoad puts the three engines side by side in one run:
// a save of a two-message turn (new turn IDs, one session growing) and a
// cache-miss load of a 10-turn window, each engine skipped without its
// variable (TURNKEEP_POSTGRES_URL, TURNKEEP_MYSQL_URL).
//
//	go test -run '^$' -bench EngineSaveLoad -benchtime 2000x ./backend
func BenchmarkEngineSaveLoad(b *testing.B) {
	for _, e := range []struct {
		name string
		url  func(testing.TB) string
	}{{"sqlite", dbtest.SQLiteURL}, {"pg", dbtest.PostgresURL}, {"mysql", dbtest.MySQLURL}} {
		b.Run(e.name, func(b *testing.B) {
			ctx := context.Background()
			db, err := dataflow.Open(ctx, e.url(b))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			be, err := NewDataFlowBackend(db)
			if err != nil {
				b.Fatal(err)
			}
			key := driver.SessionKey("bench", "s")
			turn := func(i int) driver.Turn {
				return driver.Turn{ID: fmt.Sprintf("t%d", i), User: "what is the weather like today", Agent: "sunny, 21 degrees", Timestamp: time.Now()}
			}
			for i := range 10 { // warm: tables made, a window to read
				if err := storeTurn(ctx, be, key, turn(-1-i)); err != nil {
					b.Fatal(err)
				}
			}
			next := 0 // new turn IDs however often the sub-benchmark runs
			b.Run("save", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					next++
					if err := storeTurn(ctx, be, key, turn(next)); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("load", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := be.Load(ctx, key, driver.WindowQuery{MaxTurns: 10, Known: driver.UnknownVersion}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
