package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// version posts a new version of a turn to session (after: the turn
// before it, "" for none) and returns the answer and the session it is in.
func (in *instance) version(t *testing.T, user, session, after, text string) (answerText, in2 string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"after": after, "content": text})
	req, err := http.NewRequestWithContext(context.Background(), "POST",
		in.ts.URL+"/api/sessions/"+url.PathEscape(session)+"/versions", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(UserHeader, user)
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.ts.Client().Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	events := readEvents(t, resp)
	got := answer(t, events)
	return got, events[0].data["session_id"].(string)
}

// versionsOf returns what the history of session shows beside each turn:
// its versions, or nil.
func versionsOf(h historyJSON) []*versionsJSON {
	out := make([]*versionsJSON, len(h.Turns))
	for i, t := range h.Turns {
		out[i] = t.Versions
	}
	return out
}

func users(h historyJSON) []string {
	var out []string
	for _, t := range h.Turns {
		out = append(out, t.User)
	}
	return out
}

// TestVersions edits a message and regenerates an answer through the
// API, and checks the versions the history shows beside each turn, down a
// fork of a fork, and that deleting the chat deletes its versions.
func TestVersions(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		in := newInstance(t, d.URL(t), offlineAgent{})
		s := in.create(t, "ada").ID
		answer(t, in.send(t, "ada", s, "my name is Ada"))
		answer(t, in.send(t, "ada", s, "hello there"))

		h := in.history(t, "ada", s)
		require.Len(t, h.Turns, 2)
		t1, t2 := h.Turns[0], h.Turns[1]
		assert.Equal(t, []bool{true, false}, []bool{t1.First, t2.First})
		assert.Nil(t, t1.Fork, "a first turn has no turn before it to fork at")
		assert.Equal(t, &forkJSON{SessionID: s, TurnID: t1.ID}, t2.Fork)
		assert.Equal(t, []*versionsJSON{nil, nil}, versionsOf(h), "one version of each")
		assert.Equal(t, s, h.Root)

		// Edit the second message: a fork at the first turn, which it
		// remembers.
		got, f1 := in.version(t, "ada", s, t1.ID, "what is my name?")
		assert.Equal(t, "Your name is Ada.", got)
		assert.NotEqual(t, s, f1)
		h = in.history(t, "ada", f1)
		assert.Equal(t, []string{"my name is Ada", "what is my name?"}, users(h))
		assert.Equal(t, t1.ID, h.Turns[0].ID, "the fork shares the first turn")
		assert.Equal(t, &forkJSON{SessionID: s, TurnID: t1.ID}, h.Session.ForkOf)
		assert.Equal(t, "my name is Ada", h.Session.Title, "a version keeps the chat's title")
		assert.Equal(t, s, h.Root)
		assert.Equal(t, []*versionsJSON{nil, {Sessions: []string{s, f1}, Index: 1}}, versionsOf(h))
		assert.Equal(t, &forkJSON{SessionID: s, TurnID: t1.ID}, h.Turns[1].Fork, "a new version forks the session that owns the turn before")
		listed := map[string]*forkJSON{}
		for _, l := range in.sessions(t, "ada") {
			listed[l.ID] = l.ForkOf
		}
		assert.Equal(t, map[string]*forkJSON{s: nil, f1: {SessionID: s, TurnID: t1.ID}}, listed, "the list marks a fork, which the page hides")
		h = in.history(t, "ada", s)
		assert.Equal(t, []string{"my name is Ada", "hello there"}, users(h), "the original is as it was")
		assert.Equal(t, []*versionsJSON{nil, {Sessions: []string{s, f1}, Index: 0}}, versionsOf(h))

		// Regenerate the answer from the fork: a third version, of the
		// same session at the same turn.
		_, f2 := in.version(t, "ada", s, t1.ID, "what is my name?")
		three := []string{s, f1, f2}
		for i, id := range three {
			h = in.history(t, "ada", id)
			assert.Equal(t, &versionsJSON{Sessions: three, Index: i}, h.Turns[1].Versions, "shown from %s", id)
		}

		// A fork of a fork: edit a third turn said in f2.
		answer(t, in.send(t, "ada", f2, "third"))
		h = in.history(t, "ada", f2)
		require.Len(t, h.Turns, 3)
		assert.Equal(t, &forkJSON{SessionID: f2, TurnID: h.Turns[1].ID}, h.Turns[2].Fork, "f2 owns its second turn")
		got, f3 := in.version(t, "ada", f2, h.Turns[1].ID, "my name is Bob")
		assert.Contains(t, got, "Bob")
		h = in.history(t, "ada", f3)
		assert.Equal(t, []string{"my name is Ada", "what is my name?", "my name is Bob"}, users(h))
		assert.Equal(t, []*versionsJSON{nil, {Sessions: three, Index: 2}, {Sessions: []string{f2, f3}, Index: 1}}, versionsOf(h))
		assert.Equal(t, s, h.Root)
		// A page of the newest turns gets the versions of its oldest too.
		var page historyJSON
		in.get(t, "GET", "/api/sessions/"+f3+"/history?newest_first=true&limit=2", "ada", nil, http.StatusOK, &page)
		assert.Equal(t, []string{"my name is Bob", "what is my name?"}, users(page))
		assert.Equal(t, []*versionsJSON{{Sessions: []string{f2, f3}, Index: 1}, {Sessions: three, Index: 2}}, versionsOf(page))
		assert.False(t, page.Turns[1].First)

		// Bad requests write nothing.
		before := len(in.sessions(t, "ada"))
		for _, c := range []struct {
			user, session string
			body          map[string]string
			status        int
		}{
			{"ada", s, map[string]string{"after": "no-such-turn", "content": "x"}, http.StatusNotFound},
			{"ada", s, map[string]string{"after": t1.ID, "content": "  "}, http.StatusBadRequest},
			{"bob", s, map[string]string{"after": t1.ID, "content": "x"}, http.StatusNotFound},
			{"ada", s, map[string]string{"after": t1.ID, "content": "x", "id": "mine"}, http.StatusBadRequest},
		} {
			status, body := in.call(t, "POST", "/api/sessions/"+c.session+"/versions", c.user, c.body)
			assert.Equal(t, c.status, status, "%v: %s", c.body, body)
		}
		assert.Len(t, in.sessions(t, "ada"), before)
		assert.Empty(t, in.sessions(t, "bob"))

		// A new version of a first turn is a new chat.
		got, n := in.version(t, "ada", s, "", "my name is Eve")
		assert.Contains(t, got, "Eve")
		h = in.history(t, "ada", n)
		assert.Nil(t, h.Session.ForkOf)
		assert.Equal(t, "my name is Eve", h.Session.Title)
		assert.Equal(t, n, h.Root)

		// Deleting the chat deletes its versions; the new chat stays.
		in.get(t, "DELETE", "/api/sessions/"+s, "ada", nil, http.StatusNoContent, nil)
		assert.Equal(t, []string{n}, ids(in.sessions(t, "ada")))
	})
}
