package main

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// TestEditAndRetry says a changed last message with /edit and asks for
// another answer with /retry: each in a fork of the session before its last
// turn, which the chat moves to, leaving the session as it was.
func TestEditAndRetry(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		dbURL := d.URL(t)
		r := runChat(t, nil, "/retry\n/edit\nmy name is Ada\nhello\n/edit what is my name?\n/retry\n/history\n", "-db", dbURL)
		require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		assert.Equal(t, "chat: there is no message to edit or answer again yet\n"+
			"chat: /edit TEXT: say what to say instead of your last message\n", r.stderr)

		forks := regexp.MustCompile(`Now in session "(default-[0-9a-f]{6})", a fork of "(default(?:-[0-9a-f]{6})?)" before its last turn`).
			FindAllStringSubmatch(r.stdout, -1)
		require.Len(t, forks, 2, "stdout: %s", r.stdout)
		edited, retried := forks[0][1], forks[1][1]
		assert.Equal(t, DefaultSession, forks[0][2], "/edit forks the session")
		assert.Equal(t, edited, forks[1][2], "/retry forks the fork the chat moved to")
		assert.NotEqual(t, edited, retried)
		assert.Equal(t, 3, strings.Count(r.stdout, "agent: Your name is Ada.\n"), "the edit and the retry are answered from the shared first turn, and /history shows the retry")
		assert.Contains(t, r.stdout, `History of session "`+retried+`": 2 turns:`+"\n"+"   1. you:   my name is Ada\n")
		assert.Contains(t, r.stdout, "   2. you:   what is my name?\n      agent: Your name is Ada.\n")

		assert.Equal(t, []string{"my name is Ada", "hello"}, users(stored(t, dbURL, DefaultSession)), "the session is as it was")
		assert.Equal(t, []string{"my name is Ada", "what is my name?"}, users(stored(t, dbURL, edited)))
		assert.Equal(t, []string{"my name is Ada", "what is my name?"}, users(stored(t, dbURL, retried)))

		// With one turn there is no turn before it to fork at: a new session.
		r = runChat(t, nil, "hi\n/edit my name is Bob\n", "-db", dbURL, "-session", "solo")
		require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
		m := regexp.MustCompile(`Now in session "(solo-[0-9a-f]{6})", a new one`).FindStringSubmatch(r.stdout)
		require.NotNil(t, m, "stdout: %s", r.stdout)
		assert.Equal(t, []string{"my name is Bob"}, users(stored(t, dbURL, m[1])))
		assert.Equal(t, []string{"hi"}, users(stored(t, dbURL, "solo")))
	})
}

func TestEditNeedsForks(t *testing.T) {
	c, _, errOut := newTestChat(memory.NewBufferMemory())
	c.say(context.Background(), "hello")
	c.handle(context.Background(), "/retry")
	assert.Equal(t, "chat: *memory.BufferMemory cannot fork a session\n", errOut.String())
	assert.Equal(t, "s", c.session)
}
