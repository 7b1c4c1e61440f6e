package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/turnkeep/turnkeep/memory"
)

// An Agent answers a message, given the remembered window of the
// conversation (oldest turn first; TurnCount counts every turn, also those
// outside the window).
type Agent interface {
	Reply(ctx context.Context, window memory.Window, message string) (string, error)
}

// offlineAgent answers without a language model, only from the window, so
// that the chat visibly remembers: it learns the user's name, recalls the
// first and the last thing said, and otherwise quotes the previous message.
// It is deterministic.
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

func (offlineAgent) Reply(_ context.Context, w memory.Window, message string) (string, error) {
	if name := nameIn(message); name != "" {
		return fmt.Sprintf("Nice to meet you, %s. I will remember your name.", name), nil
	}
	window := fmt.Sprintf("the last %s I keep in mind", turns(len(w.Turns)))
	switch {
	case askNameRE.MatchString(message):
		for i := len(w.Turns) - 1; i >= 0; i-- {
			if name := nameIn(w.Turns[i].User); name != "" {
				return fmt.Sprintf("Your name is %s.", name), nil
			}
		}
		if len(w.Turns) < w.TurnCount {
			return fmt.Sprintf("I don't know. If you told me, it was before %s.", window), nil
		}
		return "You haven't told me your name yet.", nil
	case askFirstRE.MatchString(message):
		switch {
		case len(w.Turns) == 0:
			return "Nothing yet: this is the first thing you said.", nil
		case len(w.Turns) < w.TurnCount:
			return fmt.Sprintf("Of %s, the first thing you said was %q.", window, w.Turns[0].User), nil
		}
		return fmt.Sprintf("The first thing you said was %q.", w.Turns[0].User), nil
	case askLastRE.MatchString(message):
		if len(w.Turns) == 0 {
			return "Nothing yet: this is the first thing you said.", nil
		}
		return fmt.Sprintf("You just said %q.", w.Turns[len(w.Turns)-1].User), nil
	}
	if len(w.Turns) == 0 {
		return "Hello! This is the start of our conversation; I will remember what you say.", nil
	}
	return fmt.Sprintf("I remember %s of our conversation. You said: %q.",
		turns(w.TurnCount), w.Turns[len(w.Turns)-1].User), nil
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
