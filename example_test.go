package turnkeep_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/memory"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "turnkeep-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	url := "sqlite:///" + filepath.Join(dir, "chat.db") // or "postgres://user:pass@host/db"

	ctx := context.Background()
	mem, err := turnkeep.Open(ctx, url, turnkeep.Memory(memory.WithMaxTurns(10)))
	if err != nil {
		log.Fatal(err)
	}
	defer mem.Close() // closes the database too
	if err := mem.SaveTurn(ctx, "session-1", memory.Turn{User: "Hello", Agent: "Hi there"}); err != nil {
		log.Fatal(err) // the turn was not stored; nothing half-written remains
	}
	w, err := mem.LoadContext(ctx, "session-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(w.TurnCount, w.Turns[0].User, "/", w.Turns[0].Agent)
	// Output: 1 Hello / Hi there
}
