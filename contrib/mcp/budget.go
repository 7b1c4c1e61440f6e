package mcp

import (
	"unicode/utf8"

	"github.com/turnkeep/turnkeep/memory"
)

// A budget counts the tokens of one tool answer. Message text is counted
// as the memory counted it when it stored the message (Message.Tokens, set
// by the memory's token counter); everything else, field names, IDs and
// times, as memory.EstimateTokens of each value plus its key (fieldTokens).
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

// fieldTokens is what the JSON of an object with these field values costs
// beyond its message text: each value's tokens and four for its key and
// punctuation, and two for the braces.
func fieldTokens(values ...string) int {
	n := 2
	for _, v := range values {
		n += 4
		if v != "" {
			n += memory.EstimateTokens(v)
		}
	}
	return n
}

// messageOverhead is fieldTokens of a rendered message without its text.
func messageOverhead(m historyMessage) int {
	n := fieldTokens(m.Role, m.Name, "")
	for _, name := range m.ToolCalls {
		n += memory.EstimateTokens(name) + 2
	}
	return n
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
