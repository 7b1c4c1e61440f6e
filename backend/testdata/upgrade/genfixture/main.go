// Command genfixture writes a database with the previous release's backend:
// 3 sessions x 5 turns, with metadata, into the URL given.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

func main() {
	ctx := context.Background()
	db, err := dataflow.Open(ctx, os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		log.Fatal(err)
	}
	base := time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC)
	for s := 1; s <= 3; s++ {
		for i := 1; i <= 5; i++ {
			t := driver.Turn{
				ID:        fmt.Sprintf("s%d-t%d", s, i),
				User:      fmt.Sprintf("question %d of session %d", i, s),
				Agent:     fmt.Sprintf("answer %d of session %d", i, s),
				Timestamp: base.Add(time.Duration(s*100+i) * time.Second),
				Metadata:  map[string]any{"session": float64(s), "turn": float64(i), "tags": []any{"a", fmt.Sprint(i)}},
			}
			if i == 3 {
				t.Metadata = nil // a turn without metadata
			}
			if err := b.SaveTurn(ctx, fmt.Sprintf("session-%d", s), t); err != nil {
				log.Fatal(err)
			}
		}
	}
	for s := 1; s <= 3; s++ {
		w, err := b.LoadWindow(ctx, fmt.Sprintf("session-%d", s), 10)
		if err != nil || w.TurnCount != 5 || len(w.Turns) != 5 {
			log.Fatalf("session-%d: %+v %v", s, w, err)
		}
	}
	fmt.Println("ok")
}
