package mcp

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/turnkeep/turnkeep/memory"
)

// A budget counts the tokens of one tool answer. Message text is counted
// as the memory counted it when it stored the message (Message.Tokens, set
// by the memory's token counter); everything else, field names, IDs and
// times, as memory.EstimateTokens of its JSON.
type budget struct{ spent, limit int }

func newBudget(limit int) *budget { return &budget{limit: limit} }

// take spends n tokens if they fit, and says whether they did.
func (b *budget) take(n int) bool {
	if b.spent+n > b.limit {
		return false
	}
	b.spent += n
	return true
}

func (b *budget) left() int { return b.limit - b.spent }

// overhead is the tokens of v's JSON, a rendered item without its text.
func (b *budget) overhead(v any) int {
	data, _ := json.Marshal(v) // plain structs of strings and numbers
	return memory.EstimateTokens(string(data)) + 1
}

// messageTokens is the tokens the memory counted for m, or the default
// counter's count when m holds none (stored by an old release).
func messageTokens(m memory.Message) int {
	if m.Tokens > 0 {
		return m.Tokens
	}
	return memory.DefaultTokenCounter.CountTokens(m)
}

// snippetTokens is the share of the message's tokens its snippet takes,
// rounded up.
func snippetTokens(m memory.Message, snippet string) int {
	return share(messageTokens(m), utf8.RuneCountInString(snippet), utf8.RuneCountInString(m.Content))
}

func share(tokens, part, whole int) int {
	if whole <= 0 || part >= whole {
		return tokens
	}
	return (tokens*part + whole - 1) / whole
}

// fitText returns text, whose tokens are tokens, cut to at most limit
// tokens (by its share of runes), and the tokens of what it returns.
func fitText(text string, tokens, limit int) (string, int) {
	if tokens <= limit {
		return text, tokens
	}
	n := utf8.RuneCountInString(text)
	keep := n * limit / max(tokens, 1)
	i := 0
	for pos := range text {
		if i == keep {
			return text[:pos] + "…", limit
		}
		i++
	}
	return text, tokens
}
