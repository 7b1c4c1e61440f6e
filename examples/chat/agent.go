package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/turnkeep/turnkeep/memory"
)

// An Agent answers the user's message, given the remembered window of the
// conversation before it (oldest turn first; TurnCount counts every turn,
// also those outside the window).
//
// The agent passes each message of its answer to emit as soon as it has
// it: an assistant message calling tools, the tools' results, and last the
// answer, an assistant message without tool calls. The chat shows and
// stores each one as it comes, so what the agent did before a failure is
// kept. Reply returns an error if it could not answer.
type Agent interface {
	Reply(ctx context.Context, w memory.Window, message string, emit func(memory.Message)) error
}

// offlineAgent answers without a language model, only from the window, so
// that the chat visibly remembers: it learns the user's name, recalls the
// first and the last thing said, and otherwise quotes the previous message.
// It shows a tool at work too: given arithmetic ("what is 6*7"), it calls
// the calculator and answers with the result. Its answers are
// deterministic; only the IDs of its tool calls are random.
type offlineAgent struct{}

var (
	// "my name is Ada", "call me Ada": the name is what follows.
	nameIsRE = regexp.MustCompile(`(?i)\b(?:my name is|my name's|call me)\s+([^.,;:!?]+)`)
	// "I am Ada", "I'm Ada": a name only if capitalized ("I am tired" is not).
	iAmRE = regexp.MustCompile(`(?i)\b(?:i am|i'm)\s+([^.,;:!?]+)`)

	askNameRE  = regexp.MustCompile(`(?i)\b(?:what(?: is|'s) my name|who am i|do you (?:know|remember) my name)\b`)
	askFirstRE = regexp.MustCompile(`(?i)\b(?:what did i (?:say|tell you) first|what was my first message|what did i say at the (?:start|beginning))\b`)
	askLastRE  = regexp.MustCompile(`(?i)\b(?:what did i (?:just|last) say|what did i say last|what was my last message)\b`)
)

func (offlineAgent) Reply(_ context.Context, w memory.Window, message string, emit func(memory.Message)) error {
	if expr := expressionIn(message); expr != "" && nameIn(message) == "" {
		call := calculatorCall(expr)
		emit(memory.Message{Role: memory.RoleAssistant, ToolCalls: []memory.ToolCall{call}})
		result, err := callTool(call)
		emit(result)
		answer := fmt.Sprintf("%s = %s", expr, result.Content)
		if err != nil {
			answer = fmt.Sprintf("I could not work out %s: %v.", expr, err)
		}
		emit(memory.Message{Role: memory.RoleAssistant, Content: answer})
		return nil
	}
	emit(memory.Message{Role: memory.RoleAssistant, Content: offlineAnswer(w, message)})
	return nil
}

// offlineAnswer is the offline agent's answer to a message without
// arithmetic.
func offlineAnswer(w memory.Window, message string) string {
	if name := nameIn(message); name != "" {
		return fmt.Sprintf("Nice to meet you, %s. I will remember your name.", name)
	}
	window := fmt.Sprintf("the last %s I keep in mind", turns(len(w.Turns)))
	// A memory's window always holds the session's newest turn, even over
	// its token budget; a window built otherwise may hold none of the
	// session's turns.
	forgotten := len(w.Turns) == 0 && w.TurnCount > 0
	switch {
	case askNameRE.MatchString(message):
		for i := len(w.Turns) - 1; i >= 0; i-- {
			if name := nameIn(w.Turns[i].User); name != "" {
				return fmt.Sprintf("Your name is %s.", name)
			}
		}
		if len(w.Turns) < w.TurnCount {
			return fmt.Sprintf("I don't know. If you told me, it was before %s.", window)
		}
		return "You haven't told me your name yet."
	case askFirstRE.MatchString(message):
		switch {
		case forgotten:
			return fmt.Sprintf("I don't know: none of the %s we had fits in what I keep in mind.", turns(w.TurnCount))
		case len(w.Turns) == 0:
			return "Nothing yet: this is the first thing you said."
		case len(w.Turns) < w.TurnCount:
			return fmt.Sprintf("Of %s, the first thing you said was %q.", window, w.Turns[0].User)
		}
		return fmt.Sprintf("The first thing you said was %q.", w.Turns[0].User)
	case askLastRE.MatchString(message):
		switch {
		case forgotten:
			return fmt.Sprintf("I don't know: none of the %s we had fits in what I keep in mind.", turns(w.TurnCount))
		case len(w.Turns) == 0:
			return "Nothing yet: this is the first thing you said."
		}
		return fmt.Sprintf("You just said %q.", w.Turns[len(w.Turns)-1].User)
	}
	switch {
	case forgotten:
		return fmt.Sprintf("I remember %s of our conversation, but none fits in what I keep in mind.", turns(w.TurnCount))
	case len(w.Turns) == 0:
		return "Hello! This is the start of our conversation; I will remember what you say."
	}
	return fmt.Sprintf("I remember %s of our conversation. You said: %q.",
		turns(w.TurnCount), w.Turns[len(w.Turns)-1].User)
}

// nameIn returns the name the user gives in s ("my name is Ada Lovelace",
// "I'm Ada"), or "". The name is its first word and the capitalized words
// after it.
func nameIn(s string) string {
	m := nameIsRE.FindStringSubmatch(s)
	capitalizedOnly := false
	if m == nil {
		m = iAmRE.FindStringSubmatch(s)
		capitalizedOnly = true
	}
	if m == nil {
		return ""
	}
	var name []string
	for i, word := range strings.Fields(m[1]) {
		first := []rune(word)[0]
		if (i > 0 || capitalizedOnly) && !unicode.IsUpper(first) {
			break
		}
		name = append(name, word)
	}
	return strings.Join(name, " ")
}
