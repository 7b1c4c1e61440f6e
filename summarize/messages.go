package summarize

import "github.com/turnkeep/turnkeep/memory"

// Messages returns what a summarizer reads of a turn: its messages, or
// those its User and Agent shorthand stand for when it has none (a turn
// as an app may build it, before it is saved).
func Messages(t memory.Turn) []memory.Message {
	if len(t.Messages) > 0 || (t.User == "" && t.Agent == "") {
		return t.Messages
	}
	var out []memory.Message
	if t.User != "" {
		out = append(out, memory.Message{Role: memory.RoleUser, Content: t.User})
	}
	if t.Agent != "" {
		out = append(out, memory.Message{Role: memory.RoleAssistant, Content: t.Agent})
	}
	return out
}
