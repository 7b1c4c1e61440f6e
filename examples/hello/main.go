// Hello is the README's first program: it saves one turn of a chat in the
// SQLite file chat.db (made in the working directory on first use) and
// loads the session's recent turns back.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/turnkeep/turnkeep"
	"github.com/turnkeep/turnkeep/memory"
)

func main() {
	ctx := context.Background()
	mem, err := turnkeep.Open(ctx, "sqlite:///chat.db") // or "postgres://user:pass@host/db"
	if err != nil {
		log.Fatal(err)
	}
	defer mem.Close() // closes the database too

	err = mem.SaveTurn(ctx, "session-1", memory.Turn{User: "Hello", Agent: "Hi there"})
	if err != nil {
		log.Fatal(err) // the turn was not stored; nothing half-written remains
	}
	w, err := mem.LoadContext(ctx, "session-1") // the newest turns, oldest first
	if err != nil {
		log.Fatal(err)
	}
	last := w.Turns[len(w.Turns)-1]
	fmt.Println(w.TurnCount, last.User, last.Agent) // 1 Hello Hi there (on a fresh chat.db)
}
