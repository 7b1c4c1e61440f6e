package memory_test

import (
	"context"
	"fmt"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/memory"
)

func ExamplePersistentBufferMemory() {
	ctx := context.Background()
	m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), memory.WithMaxTurns(2))
	if err != nil {
		panic(err)
	}
	for _, q := range []string{"hi", "what is 2+2?", "and 3+3?"} {
		if err := m.SaveTurn(ctx, "session-1", memory.Turn{User: q, Agent: "answer to " + q}); err != nil {
			panic(err)
		}
	}
	w, err := m.LoadContext(ctx, "session-1")
	if err != nil {
		panic(err)
	}
	fmt.Println("turns stored:", w.TurnCount)
	for _, t := range w.Turns {
		fmt.Printf("user: %s / agent: %s\n", t.User, t.Agent)
	}
	// Output:
	// turns stored: 3
	// user: what is 2+2? / agent: answer to what is 2+2?
	// user: and 3+3? / agent: answer to and 3+3?
}

func ExampleBufferMemory() {
	ctx := context.Background()
	m := memory.NewBufferMemory(memory.WithMaxTurns(1))
	_ = m.SaveTurn(ctx, "s", memory.Turn{ID: "t1", User: "hello"})
	_ = m.SaveTurn(ctx, "s", memory.Turn{ID: "t1", User: "hello"}) // a retry: stored once
	w, _ := m.LoadContext(ctx, "s")
	fmt.Println(w.TurnCount, w.Turns[0].User)
	// Output: 1 hello
}
