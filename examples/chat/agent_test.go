package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/memory"
)

func window(count int, users ...string) memory.Window {
	w := memory.Window{TurnCount: count}
	for _, u := range users {
		w.Turns = append(w.Turns, memory.Turn{User: u, Agent: "ok"})
	}
	return w
}

func TestOfflineAgent(t *testing.T) {
	tests := []struct {
		name    string
		window  memory.Window
		message string
		want    string
	}{
		{"start", window(0), "hello", "Hello! This is the start of our conversation; I will remember what you say."},
		{"quotes previous", window(7, "a", "b"), "c", `I remember 7 turns of our conversation. You said: "b".`},
		{"one turn", window(1, "a"), "c", `I remember 1 turn of our conversation. You said: "a".`},
		{"learns name", window(0), "Hi, my name is Ada Lovelace and I code.", "Nice to meet you, Ada Lovelace. I will remember your name."},
		{"I am", window(0), "I'm Grace.", "Nice to meet you, Grace. I will remember your name."},
		{"I am not a name", window(0), "I am tired", "Hello! This is the start of our conversation; I will remember what you say."},
		{"call me", window(0), "call me ishmael", "Nice to meet you, ishmael. I will remember your name."},
		{"recalls name", window(3, "my name is Ada", "x", "y"), "What is my name?", "Your name is Ada."},
		{"newest name wins", window(2, "my name is Ada", "actually, call me Grace"), "what's my name", "Your name is Grace."},
		{"name not told", window(2, "x", "y"), "who am I?", "You haven't told me your name yet."},
		{"name outside window", window(12, "x", "y"), "do you know my name?", "I don't know. If you told me, it was before the last 2 turns I keep in mind."},
		{"first", window(2, "hello", "y"), "what did I say first?", `The first thing you said was "hello".`},
		{"first outside window", window(5, "c", "d"), "What did I say first?", `Of the last 2 turns I keep in mind, the first thing you said was "c".`},
		{"first of nothing", window(0), "what did I say first?", "Nothing yet: this is the first thing you said."},
		{"just said", window(2, "hello", "the sky is blue"), "What did I just say?", `You just said "the sky is blue".`},
		{"just said nothing", window(0), "what did I just say", "Nothing yet: this is the first thing you said."},
		{"nothing fits", window(4), "hi", "I remember 4 turns of our conversation, but none fits in what I keep in mind."},
		{"first, nothing fits", window(4), "what did I say first?", "I don't know: none of the 4 turns we had fits in what I keep in mind."},
		{"last, nothing fits", window(1), "what did I just say", "I don't know: none of the 1 turn we had fits in what I keep in mind."},
		{"no arithmetic", window(0), "is 6 the answer, or 7?", "Hello! This is the start of our conversation; I will remember what you say."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := reply(t, offlineAgent{}, tt.window, tt.message)
			assert.Equal(t, []memory.Message{{Role: memory.RoleAssistant, Content: tt.want}}, msgs)
		})
	}
}

// reply returns the messages agent emits answering message.
func reply(t *testing.T, agent Agent, w memory.Window, message string) []memory.Message {
	t.Helper()
	var msgs []memory.Message
	err := agent.Reply(context.Background(), w, message, func(m memory.Message) { msgs = append(msgs, m) })
	require.NoError(t, err)
	return msgs
}

func TestOfflineAgentCallsCalculator(t *testing.T) {
	tests := []struct {
		message, expr, result, answer string
	}{
		{"what is 6*7", "6*7", "42", "6*7 = 42"},
		{"What is (1.5 + 2) * 4?", "(1.5 + 2) * 4", "14", "(1.5 + 2) * 4 = 14"},
		{"and 0.1+0.2.", "0.1+0.2", "0.3", "0.1+0.2 = 0.3"},
		{"(is it 10/4?)", "10/4", "2.5", "10/4 = 2.5"},
		{"what is 1/0", "1/0", "error: division by zero", "I could not work out 1/0: division by zero."},
		{"try 2*(3+", "2*(3+", "error: unexpected end of expression", "I could not work out 2*(3+: unexpected end of expression."},
	}
	for _, tt := range tests {
		t.Run(tt.message, func(t *testing.T) {
			msgs := reply(t, offlineAgent{}, window(0), tt.message)
			require.Len(t, msgs, 3)
			call := msgs[0]
			require.Len(t, call.ToolCalls, 1)
			assert.Equal(t, memory.RoleAssistant, call.Role)
			assert.Empty(t, call.Content)
			assert.Equal(t, calculatorName, call.ToolCalls[0].Name)
			args, err := json.Marshal(map[string]string{"expression": tt.expr})
			require.NoError(t, err)
			assert.JSONEq(t, string(args), call.ToolCalls[0].Arguments)
			assert.NotEmpty(t, call.ToolCalls[0].ID)

			assert.Equal(t, memory.Message{Role: memory.RoleTool, Name: calculatorName, ToolCallID: call.ToolCalls[0].ID, Content: tt.result}, msgs[1])
			assert.Equal(t, memory.Message{Role: memory.RoleAssistant, Content: tt.answer}, msgs[2])
		})
	}
	// Each call has its own ID.
	a, b := reply(t, offlineAgent{}, window(0), "1+1"), reply(t, offlineAgent{}, window(0), "1+1")
	assert.NotEqual(t, a[0].ToolCalls[0].ID, b[0].ToolCalls[0].ID)
}

func TestNameIn(t *testing.T) {
	tests := map[string]string{
		"my name is Ada":                 "Ada",
		"My name's ada lovelace":         "ada",
		"my name is Ada Lovelace, hi":    "Ada Lovelace",
		"I am Ada":                       "Ada",
		"i'm Ada Byron King. Hello":      "Ada Byron King",
		"I am not sure what my name is":  "",
		"what is my name?":               "",
		"hello":                          "",
		"my name is":                     "",
		"Call me Émile":                  "Émile",
		"they say I am Ada but I am Bob": "Ada",
	}
	for in, want := range tests {
		assert.Equal(t, want, nameIn(in), "nameIn(%q)", in)
	}
}
