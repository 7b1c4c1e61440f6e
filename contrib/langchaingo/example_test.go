package langchaingo_test

import (
	"context"
	"fmt"
	"log"

	"github.com/tmc/langchaingo/chains"
	"github.com/tmc/langchaingo/llms"
	"github.com/tmc/langchaingo/llms/fake"
	lcmemory "github.com/tmc/langchaingo/memory"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/contrib/langchaingo"
	"github.com/turnkeep/turnkeep/memory"
)

// A langchaingo conversation chain remembering in turnkeep: each exchange
// is one turn. A real program would use a backend.DataFlowBackend and a
// real model.
func Example() {
	ctx := context.Background()
	mem, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend())
	if err != nil {
		log.Fatal(err)
	}
	h, err := langchaingo.NewHistory(mem, "session-1", langchaingo.WithWindow(10))
	if err != nil {
		log.Fatal(err)
	}
	llm := fake.NewFakeLLM([]string{"Hello Ada!", "Your name is Ada."})
	chain := chains.NewConversation(llm, lcmemory.NewConversationBuffer(lcmemory.WithChatHistory(h)))
	for _, q := range []string{"my name is Ada", "what is my name?"} {
		if _, err := chains.Run(ctx, chain, q); err != nil {
			log.Fatal(err)
		}
	}

	w, err := mem.LoadContext(ctx, "session-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("turns:", w.TurnCount)
	for _, t := range w.Turns {
		fmt.Printf("user: %s / agent: %s\n", t.User, t.Agent)
	}
	// Output:
	// turns: 2
	// user: my name is Ada / agent: Hello Ada!
	// user: what is my name? / agent: Your name is Ada.
}

// A tool call and its result are appended to the turn of the question
// they answer, so a window never separates them.
func ExampleHistory_AddMessage() {
	ctx := context.Background()
	h, err := langchaingo.NewHistory(memory.NewBufferMemory(), "s", langchaingo.WithWindow(1))
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range []llms.ChatMessage{
		llms.HumanChatMessage{Content: "hi"},
		llms.AIChatMessage{Content: "hello"},
		llms.HumanChatMessage{Content: "weather in Paris?"},
		llms.AIChatMessage{ToolCalls: []llms.ToolCall{{
			ID: "call_1", Type: "function",
			FunctionCall: &llms.FunctionCall{Name: "weather", Arguments: `{"city":"Paris"}`},
		}}},
		llms.ToolChatMessage{ID: "call_1", Content: "18C, sunny"},
		llms.AIChatMessage{Content: "18C and sunny."},
	} {
		if err := h.AddMessage(ctx, m); err != nil {
			log.Fatal(err)
		}
	}
	msgs, err := h.Messages(ctx) // the newest turn
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("%s: %q\n", m.GetType(), m.GetContent())
	}
	// Output:
	// human: "weather in Paris?"
	// ai: ""
	// tool: "18C, sunny"
	// ai: "18C and sunny."
}
