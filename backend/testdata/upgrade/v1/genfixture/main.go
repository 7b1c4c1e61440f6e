// Command genfixture writes a database with the backend of the release
// b1aee53 (before the conversation model): the sessions of
// ../README.md, into the URL given. Build it inside an export of that
// commit; it does not compile against later releases.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

var base = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

// turn is turn i of session s: answers of growing length, some in other
// scripts, metadata on every turn but those divisible by 3.
func turn(s, i int) driver.Turn {
	t := driver.Turn{
		ID:        fmt.Sprintf("v1-s%d-t%d", s, i),
		User:      fmt.Sprintf("question %d of session %d?", i, s),
		Agent:     fmt.Sprintf("answer %d of session %d: %s", i, s, strings.Repeat("lorem ipsum dolor ", i*s)),
		Timestamp: base.Add(time.Duration(s*1000+i) * time.Second),
		Metadata:  map[string]any{"session": float64(s), "turn": float64(i), "tags": []any{"v1", fmt.Sprint(i)}, "nested": map[string]any{"ok": i%2 == 0}},
	}
	if i%3 == 0 {
		t.Metadata = nil
	}
	if s == 2 && i == 4 {
		t.User = "日本語の質問です 🙂"
		t.Agent = "Ответ по-русски, with code: func main() { fmt.Println(42) }"
	}
	return t
}

func main() {
	ctx := context.Background()
	db, err := dataflow.Open(ctx, os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	b, err := backend.NewDataFlowBackend(db)
	if err != nil {
		log.Fatal(err)
	}
	save := func(session string, t driver.Turn) {
		if err := b.SaveTurn(ctx, session, t); err != nil {
			log.Fatal(err)
		}
	}
	// Session 3 first holds 3 turns that a clear removes; the 6 saved
	// after it are what stays.
	for i := 1; i <= 3; i++ {
		save("session-3", driver.Turn{ID: fmt.Sprintf("v1-s3-old%d", i), User: "forgotten question", Agent: "forgotten answer",
			Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	if err := b.ClearSession(ctx, "session-3"); err != nil {
		log.Fatal(err)
	}
	for s := 1; s <= 3; s++ {
		for i := 1; i <= 6; i++ {
			save(fmt.Sprintf("session-%d", s), turn(s, i))
		}
	}
	// A turn saved twice is stored once.
	save("session-1", turn(1, 6))
	// Session 4: turns this release took with one side empty.
	save("session-4", driver.Turn{ID: "v1-s4-t1", User: "a question saved before its answer", Timestamp: base.Add(4001 * time.Second)})
	save("session-4", driver.Turn{ID: "v1-s4-t2", Agent: "an answer with no question", Timestamp: base.Add(4002 * time.Second)})
	for s := 1; s <= 4; s++ {
		w, err := b.LoadWindow(ctx, fmt.Sprintf("session-%d", s), 100)
		want := 6
		if s == 4 {
			want = 2
		}
		if err != nil || w.TurnCount != want || len(w.Turns) != want {
			log.Fatalf("session-%d: %+v %v", s, w, err)
		}
	}
	if err := db.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ok")
}
