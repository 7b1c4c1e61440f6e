package summarize

import (
	"context"
	"sort"
	"strings"
	"unicode"

	"github.com/turnkeep/turnkeep/memory"
)

// NewExtractive returns an offline, deterministic Summarizer,
// for tests, demos and setups with no model. It keeps sentences rather
// than writing new ones: every sentence of the previous summary and of
// the turns' user and assistant messages is scored by what a reader
// later needs (names, numbers, first-person facts), and the best are kept,
// in their order, within the request's MaxTokens (counted by counter;
// nil: memory.DefaultTokenCounter). Tool calls and results are left out.
func NewExtractive(counter memory.TokenCounter) memory.Summarizer {
	if counter == nil {
		counter = memory.DefaultTokenCounter
	}
	return extractive{counter: counter}
}

type extractive struct{ counter memory.TokenCounter }

// Summarize implements memory.Summarizer.
func (e extractive) Summarize(ctx context.Context, req memory.SummaryRequest) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	type sentence struct {
		text  string
		score int
		order int
	}
	var all []sentence
	add := func(text string) {
		for _, s := range splitSentences(text) {
			all = append(all, sentence{text: s, score: scoreSentence(s), order: len(all)})
		}
	}
	add(req.Previous)
	for _, t := range req.Turns {
		for _, m := range Messages(t) {
			if m.Role == memory.RoleUser || (m.Role == memory.RoleAssistant && len(m.ToolCalls) == 0) {
				add(m.Content)
			}
		}
	}
	// Best first; among equals the older, so that facts stated early
	// stay (a later repetition scores the same).
	ranked := append([]sentence(nil), all...)
	sort.SliceStable(ranked, func(i, j int) bool { return ranked[i].score > ranked[j].score })
	keep := make(map[int]bool)
	seen := make(map[string]bool)
	budget := max(req.MaxTokens, 1)
	used := 0
	for _, s := range ranked {
		if s.score <= 0 || seen[s.text] {
			continue
		}
		n := e.counter.CountTokens(memory.Message{Role: memory.RoleSystem, Content: s.text})
		if used+n > budget {
			continue
		}
		used += n
		keep[s.order], seen[s.text] = true, true
	}
	var b strings.Builder
	for _, s := range all {
		if keep[s.order] {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(s.text)
		}
	}
	return b.String(), nil
}

func splitSentences(text string) []string {
	var out []string
	start := 0
	for i, r := range text {
		if r == '.' || r == '!' || r == '?' || r == '\n' {
			if s := strings.TrimSpace(text[start : i+1]); len(s) > 1 {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(text[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// scoreSentence favours what identifies and quantifies: capitalised words
// past the first (names), numbers, and statements about the user.
func scoreSentence(s string) int {
	score := 0
	for i, w := range strings.Fields(s) {
		w = strings.Trim(w, ".,!?;:\"'()")
		if w == "" {
			continue
		}
		r := []rune(w)
		switch {
		case strings.ContainsFunc(w, unicode.IsDigit):
			score += 3
		case i > 0 && unicode.IsUpper(r[0]):
			score += 2
		}
		switch strings.ToLower(w) {
		case "my", "i'm", "i", "name", "am", "is", "call":
			score++
		}
	}
	return score
}
