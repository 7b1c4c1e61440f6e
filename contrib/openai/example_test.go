package openai_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/turnkeep/turnkeep/backend"
	tkopenai "github.com/turnkeep/turnkeep/contrib/openai"
	"github.com/turnkeep/turnkeep/memory"
)

// An agent loop over chat completions: the user's message is saved before
// the model is called; each reply, with the results of the tools it
// calls, is appended to the turn; the next call sends the window again.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(fakeModel))
	defer srv.Close()
	client := openai.NewClient(option.WithBaseURL(srv.URL), option.WithAPIKey("test"), option.WithMaxRetries(0))

	ctx := context.Background()
	mem, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend())
	if err != nil {
		panic(err)
	}
	const session, turn = "s1", "turn-1"
	err = mem.SaveTurn(ctx, session, memory.Turn{ID: turn, Messages: []memory.Message{
		{Role: memory.RoleSystem, Content: "Answer in one sentence."},
		{Role: memory.RoleUser, Content: "What's the weather in Paris?"},
	}})
	if err != nil {
		panic(err)
	}
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})}

	for step := 0; ; step++ {
		w, err := mem.LoadContext(ctx, session)
		if err != nil {
			panic(err)
		}
		msgs, err := tkopenai.Messages(w)
		if err != nil {
			panic(err)
		}
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: openai.ChatModelGPT5_4Mini, Messages: msgs, Tools: tools,
		})
		if err != nil {
			panic(err)
		}
		reply, err := tkopenai.FromResponse(resp.Choices[0].Message)
		if err != nil {
			panic(err)
		}
		reply.ID = fmt.Sprintf("%s/reply-%d", turn, step) // a retried append stores it once
		batch := []memory.Message{reply}
		for _, call := range reply.ToolCalls {
			batch = append(batch, memory.Message{
				ID: turn + "/" + call.ID, Role: memory.RoleTool, ToolCallID: call.ID, Content: getWeather(call.Arguments),
			})
		}
		if err := mem.AppendMessages(ctx, session, turn, batch...); err != nil {
			panic(err)
		}
		if len(reply.ToolCalls) == 0 {
			break
		}
	}

	w, err := mem.LoadContext(ctx, session)
	if err != nil {
		panic(err)
	}
	for _, m := range w.Messages() {
		switch {
		case len(m.ToolCalls) > 0:
			fmt.Printf("%s: calls %s(%s)\n", m.Role, m.ToolCalls[0].Name, m.ToolCalls[0].Arguments)
		case m.Role == memory.RoleTool:
			fmt.Printf("%s %s: %s\n", m.Role, m.ToolCallID, m.Content)
		default:
			fmt.Printf("%s: %s\n", m.Role, m.Content)
		}
	}
	// Output:
	// model got: system user
	// model got: system user assistant tool
	// system: Answer in one sentence.
	// user: What's the weather in Paris?
	// assistant: calls get_weather({"city":"Paris"})
	// tool call_1: {"temp_c":18,"sky":"sunny"}
	// assistant: It is 18°C and sunny in Paris.
}

// getWeather is the tool.
func getWeather(args string) string {
	var in struct{ City string }
	if err := json.Unmarshal([]byte(args), &in); err != nil || in.City != "Paris" {
		return `{"error":"unknown city"}`
	}
	return `{"temp_c":18,"sky":"sunny"}`
}

// fakeModel speaks enough of the chat completions API for the example:
// it calls get_weather until it has the tool's result, then answers.
func fakeModel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []struct {
			Role       string `json:"role"`
			ToolCallID string `json:"tool_call_id"`
		} `json:"messages"`
	}
	if r.Method != http.MethodPost || r.URL.Path != "/chat/completions" || json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Messages) == 0 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	fmt.Print("model got:")
	for _, m := range req.Messages {
		fmt.Print(" ", m.Role)
	}
	fmt.Println()

	message := `{"role":"assistant","content":null,"tool_calls":[
		{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}`
	finish := "tool_calls"
	if last := req.Messages[len(req.Messages)-1]; last.Role == "tool" && last.ToolCallID == "call_1" {
		message, finish = `{"role":"assistant","content":"It is 18°C and sunny in Paris."}`, "stop"
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"gpt-5.4-mini",
		"choices":[{"index":0,"finish_reason":%q,"message":%s}]}`, finish, message)
}
