package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/turnkeep/turnkeep/memory"
)

// An Agent answers the user's message, given the remembered window of the
// conversation before it (oldest turn first), by passing the text of its
// answer to emit piece by piece as it is produced. The server streams each
// piece to the browser and stores the answer as it grows. Stream returns
// an error if it could not answer; the pieces emitted before it are kept.
type Agent interface {
	Stream(ctx context.Context, w memory.Window, message string, emit func(text string)) error
}

// offlineAgent answers without a language model, only from the window, so
// that the server visibly remembers: it learns the user's name and recalls
// it, and otherwise says how much of the conversation it holds and what was
// said before. It emits its answer a word at a time, pausing delay between
// words, so that streaming can be seen (and tested) without a model.
type offlineAgent struct {
	delay time.Duration
}

var (
	nameIsRE  = regexp.MustCompile(`(?i)\b(?:my name is|my name's|call me)\s+([\p{L}\p{M}'-]+)`)
	askNameRE = regexp.MustCompile(`(?i)\b(?:what(?: is|'s) my name|who am i)\b`)
)

func (a offlineAgent) Stream(ctx context.Context, w memory.Window, message string, emit func(string)) error {
	words := strings.SplitAfter(offlineAnswer(w, message), " ")
	for i, word := range words {
		if i > 0 && a.delay > 0 {
			t := time.NewTimer(a.delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		emit(word)
	}
	return nil
}

// offlineAnswer is the whole answer of the offline agent.
func offlineAnswer(w memory.Window, message string) string {
	if m := nameIsRE.FindStringSubmatch(message); m != nil {
		return fmt.Sprintf("Nice to meet you, %s. I will remember your name, even across restarts.", m[1])
	}
	if askNameRE.MatchString(message) {
		for i := len(w.Turns) - 1; i >= 0; i-- {
			if m := nameIsRE.FindStringSubmatch(w.Turns[i].User); m != nil {
				return fmt.Sprintf("Your name is %s.", m[1])
			}
		}
		return "You haven't told me your name yet. Say \"my name is …\"."
	}
	if len(w.Turns) == 0 {
		return fmt.Sprintf("Hello! You said %q. This is the start of our conversation; I will remember what you say.", message)
	}
	return fmt.Sprintf("You said %q. I remember %d earlier %s of this conversation; before this you said %q.",
		message, w.TurnCount, plural(w.TurnCount, "turn", "turns"), w.Turns[len(w.Turns)-1].User)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
