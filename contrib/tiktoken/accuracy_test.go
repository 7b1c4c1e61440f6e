package tiktoken_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/turnkeep/turnkeep/contrib/tiktoken"
	"github.com/turnkeep/turnkeep/memory"
)

// The bounds TestDefaultEstimateAccuracy holds memory.EstimateTokens to,
// per kind of text, against exact o200k_base counts.
const (
	maxRatioError = 0.15 // |estimate/exact - 1| over all of a kind's text
	maxMAPE       = 0.20 // mean |estimate/exact - 1| over a kind's chunks
	chunkBytes    = 200  // a chunk is whole lines, at least this long but for the last
)

// sampleKinds are the texts in testdata: a few KB of each kind.
var sampleKinds = []struct{ name, file string }{
	{"English prose", "english.txt"},
	{"Go", "go.txt"},
	{"Python", "python.txt"},
	{"JSON", "json.txt"},
	{"Chinese", "chinese.txt"},
	{"Japanese", "japanese.txt"},
	{"Korean", "korean.txt"},
	{"emoji", "emoji.txt"},
	{"mixed", "mixed.txt"},
}

// chunks splits text into runs of whole lines of at least chunkBytes
// (the last may be shorter), about the size of a chat message.
func chunks(text string) []string {
	var out []string
	start := 0
	for i := 0; i < len(text); i++ {
		if text[i] == '\n' && i+1-start >= chunkBytes {
			out = append(out, text[start:i+1])
			start = i + 1
		}
	}
	if strings.TrimSpace(text[start:]) != "" {
		out = append(out, text[start:])
	}
	return out
}

// accuracy is how memory.EstimateTokens compares with exact counts over
// some chunks of text.
type accuracy struct {
	chunks          int
	exact, estimate int     // summed over the chunks
	absErrSum       float64 // of |estimate/exact - 1| over the chunks
}

func (a *accuracy) add(exact, estimate int) {
	a.chunks++
	a.exact += exact
	a.estimate += estimate
	a.absErrSum += math.Abs(float64(estimate)/float64(exact) - 1)
}

func (a accuracy) ratio() float64 { return float64(a.estimate) / float64(a.exact) }
func (a accuracy) mape() float64  { return a.absErrSum / float64(a.chunks) }

func (a accuracy) String() string {
	return fmt.Sprintf("%6d %6d %8d %6.3f %5.1f%%", a.chunks, a.exact, a.estimate, a.ratio(), 100*a.mape())
}

func readSample(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// measure compares memory.EstimateTokens with c on each kind's chunks.
func measure(t *testing.T, c *tiktoken.Counter) (perKind []accuracy, overall accuracy) {
	t.Helper()
	for _, k := range sampleKinds {
		var a accuracy
		for _, chunk := range chunks(readSample(t, k.file)) {
			exact, estimate := c.Count(chunk), memory.EstimateTokens(chunk)
			a.add(exact, estimate)
			overall.add(exact, estimate)
		}
		perKind = append(perKind, a)
	}
	return perKind, overall
}

// TestDefaultEstimateAccuracy measures memory.EstimateTokens against the
// exact counts of o200k_base, which it is held to, and of cl100k_base,
// which it is only logged against. The figures in the doc comment of
// memory.DefaultTokenCounter come from its log (go test -v -run
// Accuracy).
func TestDefaultEstimateAccuracy(t *testing.T) {
	for _, encoding := range []string{tiktoken.O200kBase, tiktoken.CL100kBase} {
		c, err := tiktoken.New(encoding)
		if err != nil {
			t.Fatal(err)
		}
		perKind, overall := measure(t, c)
		var table strings.Builder
		fmt.Fprintf(&table, "memory.EstimateTokens against %s:\n%-14s %6s %6s %8s %6s %6s\n",
			encoding, "kind", "chunks", "exact", "estimate", "ratio", "MAPE")
		for i, k := range sampleKinds {
			fmt.Fprintf(&table, "%-14s %v\n", k.name, perKind[i])
		}
		fmt.Fprintf(&table, "%-14s %v", "overall", overall)
		t.Log(table.String())

		if encoding != tiktoken.O200kBase {
			continue
		}
		for i, k := range sampleKinds {
			a := perKind[i]
			if math.Abs(a.ratio()-1) > maxRatioError {
				t.Errorf("%s: estimate/exact = %d/%d = %.3f; want within %.0f%% of 1",
					k.name, a.estimate, a.exact, a.ratio(), 100*maxRatioError)
			}
			if a.mape() > maxMAPE {
				t.Errorf("%s: mean error per chunk %.1f%%; want at most %.0f%%",
					k.name, 100*a.mape(), 100*maxMAPE)
			}
		}
	}
}

// TestDefaultCounterOverheads checks that memory.DefaultTokenCounter adds
// what Counter adds around the text: on messages whose texts it estimates
// exactly, the two agree.
func TestDefaultCounterOverheads(t *testing.T) {
	c, err := tiktoken.New(tiktoken.O200kBase)
	if err != nil {
		t.Fatal(err)
	}
	call := memory.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Lisbon"}`}
	for _, m := range []memory.Message{
		{Role: memory.RoleUser}, // a stored message has a role: DefaultTokenCounter counts it in its overhead
		{Role: memory.RoleSystem, Content: "hello world"},
		{Role: memory.RoleUser, Content: "hello world", Name: "ana"},
		{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{call, call}},
		{Role: memory.RoleTool, ToolCallID: "call", Content: "hello world"},
		{Role: memory.RoleUser, Parts: []memory.Part{{Type: "text", Text: "hello world"}, {Type: "image"}}},
	} {
		for _, text := range []string{m.Content, m.Name, m.ToolCallID, call.Name, call.Arguments} {
			if e, x := memory.EstimateTokens(text), c.Count(text); e != x {
				t.Fatalf("EstimateTokens(%q) = %d, exact %d: pick a text it gets right", text, e, x)
			}
		}
		if got, want := memory.DefaultTokenCounter.CountTokens(m), c.CountTokens(m); got != want {
			t.Errorf("DefaultTokenCounter.CountTokens(%+v) = %d; Counter.CountTokens = %d", m, got, want)
		}
	}
}
