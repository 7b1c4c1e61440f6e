package driver_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/turnkeep/turnkeep/driver"
)

// estimateSamples are texts of the kinds EstimateTokens is fitted to,
// with the estimate each gets (o200k_base's exact count in the comment).
var estimateSamples = []struct {
	name, text string
	want       int
}{
	{"empty", "", 0},
	{"space", " ", 1},             // 1
	{"english", "hello world", 2}, // 2
	{"sentence", "The quick brown fox jumps over the lazy dog.", 10}, // 10
	{"contraction", "can't", 1},                                      // 1
	{"camelCase", "getWeatherForecast", 3},                           // 3
	{"number", "12345", 2},                                           // 2
	{"go", "func main() {\n\tfmt.Println(\"hi\")\n}\n", 11},          // 10
	{"json", `{"city":"Lisbon"}`, 6},                                 // 6
	{"chinese", "你好，世界", 4},                                          // 3
	{"korean", "안녕하세요", 4},                                           // 2
	{"emoji", "👍", 2},                                                // 1
	{"zwj sequence", "👨‍👩‍👧‍👦", 11},                                  // 11
	{"invalid utf-8", "\xff\xfe", 1},
}

func TestEstimateTokens(t *testing.T) {
	for _, tt := range estimateSamples {
		if got := driver.EstimateTokens(tt.text); got != tt.want {
			t.Errorf("%s: EstimateTokens(%q) = %d; want %d", tt.name, tt.text, got, tt.want)
		}
	}
}

// checkEstimate checks what holds for every text: no negative count, at
// least a token for a non-empty text, and at most a token per byte.
func checkEstimate(t *testing.T, s string) {
	t.Helper()
	n := driver.EstimateTokens(s)
	switch {
	case n < 0:
		t.Errorf("EstimateTokens(%q) = %d; want >= 0", s, n)
	case s == "" && n != 0:
		t.Errorf("EstimateTokens(%q) = %d; want 0", s, n)
	case s != "" && n < 1:
		t.Errorf("EstimateTokens(%q) = %d; want >= 1", s, n)
	case n > len(s):
		t.Errorf("EstimateTokens(%q) = %d; want <= %d, its length in bytes", s, n, len(s))
	}
}

func FuzzEstimateTokens(f *testing.F) {
	for _, tt := range estimateSamples {
		f.Add(tt.text)
	}
	f.Add("  1 2\t\t3\n\n  \n")
	f.Add("a'b''c'")
	f.Fuzz(checkEstimate)
}

// The estimate grows with the text: lines of a text, one more each time,
// count more each time, and within a token per line of as many times the
// tokens of one line. (A
// text glued to itself may count fewer: "can't" twice is two words, but
// "can'tcan't" is one, in o200k_base as in the estimate.)
func TestEstimateTokensGrowsWithText(t *testing.T) {
	for _, tt := range estimateSamples {
		if strings.TrimSpace(tt.text) == "" {
			continue // whitespace, however long, is a token or two
		}
		line := strings.TrimSuffix(tt.text, "\n") + "\n"
		prev, one := 0, driver.EstimateTokens(line)
		for k := 1; k <= 8; k++ {
			s := strings.Repeat(line, k)
			checkEstimate(t, s)
			n := driver.EstimateTokens(s)
			if n <= prev {
				t.Errorf("%s: %d lines estimate %d tokens; want more than %d lines' %d", tt.name, k, n, k-1, prev)
			}
			if n < k*(one-1) || n > k*(one+1) { // one line's estimate is rounded
				t.Errorf("%s: %d lines estimate %d tokens; want about %d times %d", tt.name, k, n, k, one)
			}
			prev = n
		}
	}
}

// Huge texts do not overflow the estimate.
func TestEstimateTokensLongText(t *testing.T) {
	s := strings.Repeat("👨‍👩‍👧‍👦 ", 1<<16)
	n := driver.EstimateTokens(s)
	if want := 12 << 16; n < want-(1<<16) || n > want+(1<<16) {
		t.Errorf("EstimateTokens(%d bytes of emoji) = %d; want about %d", len(s), n, want)
	}
	if !utf8.ValidString(s) {
		t.Fatal("bad sample")
	}
}

func TestDefaultTokenCounter(t *testing.T) {
	c := driver.DefaultTokenCounter
	est := driver.EstimateTokens
	call := driver.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Lisbon"}`}
	for _, tt := range []struct {
		name string
		m    driver.Message
		want int
	}{
		{"empty", driver.Message{}, driver.MessageOverheadTokens},
		{"role only", driver.Message{Role: driver.RoleUser}, driver.MessageOverheadTokens},
		{"content", driver.Message{Role: driver.RoleUser, Content: "hello world"},
			driver.MessageOverheadTokens + est("hello world")},
		{"name", driver.Message{Role: driver.RoleUser, Content: "hello world", Name: "ana"},
			driver.MessageOverheadTokens + est("hello world") + 1 + est("ana")},
		{"tool calls", driver.Message{Role: driver.RoleAssistant, ToolCalls: []driver.ToolCall{call, call}},
			driver.MessageOverheadTokens + 2*(3+est(call.Name)+est(call.Arguments))},
		{"tool result", driver.Message{Role: driver.RoleTool, ToolCallID: "call_1", Content: "sunny"},
			driver.MessageOverheadTokens + est("call_1") + est("sunny")},
		{"parts", driver.Message{Role: driver.RoleUser, Parts: []driver.Part{
			{Type: "text", Text: "hello world"}, {Type: "image", URL: "https://example.com/a.png"}, {Type: "file"},
		}}, driver.MessageOverheadTokens + est("hello world") + 2*driver.ImagePartTokens},
		{"metadata and id are free", driver.Message{ID: "m1", Role: driver.RoleUser, Metadata: map[string]any{"k": "v"}},
			driver.MessageOverheadTokens},
	} {
		if got := c.CountTokens(tt.m); got != tt.want {
			t.Errorf("%s: CountTokens = %d; want %d", tt.name, got, tt.want)
		}
	}
}

// More text in any field never means fewer tokens.
func TestDefaultTokenCounterGrowsWithText(t *testing.T) {
	c := driver.DefaultTokenCounter
	base := driver.Message{Role: driver.RoleAssistant, Content: "hi", Name: "bot", ToolCalls: []driver.ToolCall{{Name: "f", Arguments: "{}"}}}
	n := c.CountTokens(base)
	grow := map[string]func(m *driver.Message){
		"content":   func(m *driver.Message) { m.Content += " and a great deal more" },
		"name":      func(m *driver.Message) { m.Name += "_with_a_longer_name" },
		"arguments": func(m *driver.Message) { m.ToolCalls = []driver.ToolCall{{Name: "f", Arguments: `{"q":"more"}`}} },
		"tool call": func(m *driver.Message) { m.ToolCalls = append(m.ToolCalls, driver.ToolCall{Name: "g"}) },
		"part":      func(m *driver.Message) { m.Parts = append(m.Parts, driver.Part{Type: "text", Text: "x"}) },
	}
	for name, f := range grow {
		m := base
		f(&m)
		if got := c.CountTokens(m); got <= n {
			t.Errorf("more %s: CountTokens = %d; want more than %d", name, got, n)
		}
	}
}

var allocSample = driver.Message{
	Role:      driver.RoleAssistant,
	Content:   "The quick brown fox 🦊 jumps over the lazy dog; 你好，世界! 12345",
	Name:      "bot",
	ToolCalls: []driver.ToolCall{{ID: "c1", Name: "get_weather", Arguments: `{"city":"Lisbon"}`}},
	Parts:     []driver.Part{{Type: "text", Text: "more"}, {Type: "image"}},
}

func TestTokenCountingAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { driver.EstimateTokens(allocSample.Content) }); n != 0 {
		t.Errorf("EstimateTokens: %v allocations; want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { driver.DefaultTokenCounter.CountTokens(allocSample) }); n != 0 {
		t.Errorf("DefaultTokenCounter.CountTokens: %v allocations; want 0", n)
	}
}

// The benchmarks are here rather than in a _bench_test.go file because
// this file is the one place the token counter's tests live.
func BenchmarkEstimateTokens(b *testing.B) {
	for _, bm := range []struct{ name, text string }{
		{"english", strings.Repeat("The quick brown fox jumps over the lazy dog. ", 25)},
		{"code", strings.Repeat("func main() {\n\tfmt.Println(\"hi\", 42)\n}\n", 25)},
		{"cjk", strings.Repeat("你好，世界。こんにちは。안녕하세요. ", 25)},
		{"emoji", strings.Repeat("Happy birthday 🎂🥳 👨‍👩‍👧‍👦 ", 25)},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(bm.text)))
			b.ReportAllocs()
			for b.Loop() {
				driver.EstimateTokens(bm.text)
			}
		})
	}
	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			driver.DefaultTokenCounter.CountTokens(allocSample)
		}
	})
}
