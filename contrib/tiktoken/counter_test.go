package tiktoken_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/turnkeep/turnkeep/contrib/tiktoken"
	"github.com/turnkeep/turnkeep/memory"
)

func TestNewUnknownEncoding(t *testing.T) {
	for _, encoding := range []string{"", "p50k_base", "O200K_BASE", "gpt-4o"} {
		c, err := tiktoken.New(encoding)
		if !errors.Is(err, tiktoken.ErrUnknownEncoding) || c != nil {
			t.Errorf("New(%q) = %v, %v; want nil, ErrUnknownEncoding", encoding, c, err)
		}
	}
}

func TestForModel(t *testing.T) {
	for _, tt := range []struct{ model, want string }{
		{"gpt-4o", tiktoken.O200kBase},
		{"gpt-4o-mini", tiktoken.O200kBase},
		{"gpt-4o-2024-08-06", tiktoken.O200kBase},
		{"chatgpt-4o-latest", tiktoken.O200kBase},
		{"gpt-4.1-nano", tiktoken.O200kBase},
		{"gpt-4.5-preview", tiktoken.O200kBase},
		{"gpt-5", tiktoken.O200kBase},
		{"gpt-5.1", tiktoken.O200kBase},
		{"gpt-5-mini", tiktoken.O200kBase},
		{"o1", tiktoken.O200kBase},
		{"o3-mini", tiktoken.O200kBase},
		{"o4-mini", tiktoken.O200kBase},
		{"ft:gpt-4o-mini-2024-07-18:acme::abc123", tiktoken.O200kBase},
		{"gpt-4", tiktoken.CL100kBase},
		{"gpt-4-turbo", tiktoken.CL100kBase},
		{"gpt-4-0613", tiktoken.CL100kBase},
		{"gpt-3.5-turbo-0125", tiktoken.CL100kBase},
		{"ft:gpt-3.5-turbo:acme::xyz", tiktoken.CL100kBase},
		{"text-embedding-3-small", tiktoken.CL100kBase},
	} {
		c, err := tiktoken.ForModel(tt.model)
		if err != nil {
			t.Errorf("ForModel(%q): %v", tt.model, err)
			continue
		}
		if got := c.Encoding(); got != tt.want {
			t.Errorf("ForModel(%q).Encoding() = %q; want %q", tt.model, got, tt.want)
		}
	}
	for _, model := range []string{"", "gpt", "gpt-4x", "gpt-4oo", "o2", "o1x", "claude-3-5-sonnet", "text-davinci-003"} {
		c, err := tiktoken.ForModel(model)
		if !errors.Is(err, tiktoken.ErrUnknownModel) || c != nil {
			t.Errorf("ForModel(%q) = %v, %v; want nil, ErrUnknownModel", model, c, err)
		}
	}
}

func TestZeroCounterIsO200k(t *testing.T) {
	var zero tiktoken.Counter
	o200k, err := tiktoken.New(tiktoken.O200kBase)
	if err != nil {
		t.Fatal(err)
	}
	if got := zero.Encoding(); got != tiktoken.O200kBase {
		t.Errorf("Encoding() = %q; want %q", got, tiktoken.O200kBase)
	}
	const text = "你好，世界 👍 hello world"
	if got, want := zero.Count(text), o200k.Count(text); got != want {
		t.Errorf("Count(%q) = %d; want %d", text, got, want)
	}
}

func TestCountTokens(t *testing.T) {
	for _, encoding := range []string{tiktoken.O200kBase, tiktoken.CL100kBase} {
		c, err := tiktoken.New(encoding)
		if err != nil {
			t.Fatal(err)
		}
		call := memory.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Lisbon"}`}
		for _, tt := range []struct {
			name string
			m    memory.Message
			want int
		}{
			{"empty", memory.Message{}, tiktoken.MessageTokens},
			{"role", memory.Message{Role: memory.RoleUser}, tiktoken.MessageTokens + 1},
			{"content", memory.Message{Role: memory.RoleUser, Content: "hello world"},
				tiktoken.MessageTokens + 1 + 2},
			{"name", memory.Message{Role: memory.RoleUser, Content: "hello world", Name: "ana"},
				tiktoken.MessageTokens + 1 + 2 + tiktoken.NameTokens + c.Count("ana")},
			{"tool calls", memory.Message{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{call, call}},
				tiktoken.MessageTokens + 1 + 2*(tiktoken.ToolCallTokens+c.Count(call.Name)+c.Count(call.Arguments))},
			{"tool result", memory.Message{Role: memory.RoleTool, ToolCallID: "call_1", Content: "hello world"},
				tiktoken.MessageTokens + 1 + c.Count("call_1") + 2},
			{"parts", memory.Message{Role: memory.RoleUser, Parts: []memory.Part{
				{Type: "text", Text: "hello world"}, {Type: "image", URL: "https://example.com/a.png"}, {Type: "audio", Data: []byte{1}},
			}}, tiktoken.MessageTokens + 1 + 2 + 2*tiktoken.NonTextPartTokens},
		} {
			if got := c.CountTokens(tt.m); got != tt.want {
				t.Errorf("%s: %s: CountTokens = %d; want %d", encoding, tt.name, got, tt.want)
			}
		}
	}
}

// Counters of one encoding and of the zero value count alike from many
// goroutines at once (run with -race).
func TestConcurrentCounting(t *testing.T) {
	texts := []string{"hello world", "你好，世界", "func main() {}", "👨‍👩‍👧‍👦", "안녕하세요"}
	o200k, err := tiktoken.New(tiktoken.O200kBase)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, len(texts))
	for i, s := range texts {
		want[i] = o200k.Count(s)
	}
	counters := []*tiktoken.Counter{o200k, new(tiktoken.Counter), new(tiktoken.Counter)}

	const goroutines, rounds = 8, 50
	var wrong, done atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			c := counters[g%len(counters)]
			for range rounds {
				for i, s := range texts {
					if c.Count(s) != want[i] {
						wrong.Add(1)
					}
					done.Add(1)
				}
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatal("counting hung")
	}
	if got, want := done.Load(), int64(goroutines*rounds*len(texts)); got != want {
		t.Errorf("%d counts; want %d", got, want)
	}
	if n := wrong.Load(); n != 0 {
		t.Errorf("%d counts differed from a serial count", n)
	}
}
