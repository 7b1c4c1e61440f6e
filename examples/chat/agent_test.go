package main

import (
	"context"
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := offlineAgent{}.Reply(context.Background(), tt.window, tt.message)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
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
