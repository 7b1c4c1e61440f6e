package memory_test

import (
	"context"
	"fmt"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/memory"
)

// An agent loop's exchange is one turn: the user's message is saved before
// the model is called, and what the model sends back (a tool call, the
// tool's result, the answer) is appended as it comes. A crash mid-answer
// loses nothing the user typed, and a retried append stores nothing twice.
func ExamplePersistentBufferMemory_AppendMessages() {
	ctx := context.Background()
	m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend())
	if err != nil {
		panic(err)
	}
	err = m.SaveTurn(ctx, "s1", memory.Turn{ID: "turn-1", Messages: []memory.Message{
		{Role: memory.RoleSystem, Content: "You can use a calculator."},
		{Role: memory.RoleUser, Content: "What is 6*7?"},
	}})
	if err != nil {
		panic(err)
	}
	call := memory.ToolCall{ID: "call-1", Name: "calculator", Arguments: `{"expression":"6*7"}`}
	for _, msg := range []memory.Message{
		{ID: "turn-1/call", Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{call}},
		{ID: "turn-1/result", Role: memory.RoleTool, ToolCallID: "call-1", Content: "42"},
		{ID: "turn-1/answer", Role: memory.RoleAssistant, Content: "6*7 is 42."},
		{ID: "turn-1/answer", Role: memory.RoleAssistant, Content: "6*7 is 42."}, // a retry
	} {
		if err := m.AppendMessages(ctx, "s1", "turn-1", msg); err != nil {
			panic(err)
		}
	}
	w, err := m.LoadContext(ctx, "s1")
	if err != nil {
		panic(err)
	}
	for _, msg := range w.Messages() {
		switch {
		case len(msg.ToolCalls) > 0:
			fmt.Printf("%s: calls %s(%s)\n", msg.Role, msg.ToolCalls[0].Name, msg.ToolCalls[0].Arguments)
		case msg.Role == memory.RoleTool:
			fmt.Printf("%s %s: %s\n", msg.Role, msg.ToolCallID, msg.Content)
		default:
			fmt.Printf("%s: %s\n", msg.Role, msg.Content)
		}
	}
	fmt.Printf("turns: %d, user: %q, agent: %q\n", w.TurnCount, w.Turns[0].User, w.Turns[0].Agent)
	// Output:
	// system: You can use a calculator.
	// user: What is 6*7?
	// assistant: calls calculator({"expression":"6*7"})
	// tool call-1: 42
	// assistant: 6*7 is 42.
	// turns: 1, user: "What is 6*7?", agent: "6*7 is 42."
}

// A token budget keeps the newest whole turns that fit it; a turn that
// does not fit is left out with every older one, so a tool call is never
// separated from its result.
func ExampleWithTokenBudget() {
	ctx := context.Background()
	// One token per message keeps the arithmetic plain; the default
	// counter estimates real tokenizers.
	oneEach := memory.TokenCounterFunc(func(memory.Message) int { return 1 })
	m, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(),
		memory.WithMaxTurns(50), memory.WithTokenBudget(4), memory.WithTokenCounter(oneEach))
	if err != nil {
		panic(err)
	}
	for _, q := range []string{"one", "two", "three"} {
		if err := m.SaveTurn(ctx, "s1", memory.Turn{User: q, Agent: "re: " + q}); err != nil {
			panic(err)
		}
	}
	w, err := m.LoadContext(ctx, "s1")
	if err != nil {
		panic(err)
	}
	fmt.Println(len(w.Turns), "turns,", w.Tokens, "tokens, of", w.TurnCount)
	w, err = m.LoadContext(ctx, "s1", memory.LoadTokenBudget(100)) // this call only
	if err != nil {
		panic(err)
	}
	fmt.Println(len(w.Turns), "turns,", w.Tokens, "tokens, of", w.TurnCount)
	// Output:
	// 2 turns, 4 tokens, of 3
	// 3 turns, 6 tokens, of 3
}
