package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// importHead is the session line of an import of session id owned by user.
func importHead(id, user string) string {
	data, _ := json.Marshal(map[string]any{"format": memory.ExportFormat, "id": id, "user": user, "turn_count": 0,
		"created_at": time.Unix(1700000000, 0).UTC(), "updated_at": time.Unix(1700000000, 0).UTC()})
	return string(data)
}

// importTurn is a turn line: its messages are msgID=content pairs, user
// and assistant in turn.
func importTurn(id string, msgs ...string) string {
	type msg struct {
		ID      string `json:"id"`
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	var ms []msg
	for i, kv := range msgs {
		k, v, _ := strings.Cut(kv, "=")
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		ms = append(ms, msg{ID: k, Role: role, Content: v})
	}
	data, _ := json.Marshal(map[string]any{"id": id, "timestamp": time.Unix(1700000100, 0).UTC(), "messages": ms})
	return string(data)
}

func importLines(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// heldTurns is the session's turn IDs, oldest first, and its turn count
// (-1 when the session does not exist).
func heldTurns(t *testing.T, m *memory.PersistentBufferMemory, id string) ([]string, int) {
	t.Helper()
	ctx := context.Background()
	info, err := m.SessionInfo(ctx, id)
	if err != nil {
		require.ErrorIs(t, err, driver.ErrSessionNotFound)
		return nil, -1
	}
	p, err := m.History(ctx, id, driver.HistoryQuery{Limit: driver.MaxListLimit})
	require.NoError(t, err)
	var ids []string
	for _, turn := range p.Turns {
		ids = append(ids, turn.ID)
	}
	return ids, info.TurnCount
}

// An import stores everything or nothing: a file that passes the reader's
// checks but that the store refuses leaves the session as it was, and a
// turn or message ID held with other content, in the file or in the
// session, is ErrInvalidImport naming the line.
func TestImportAllOrNothing(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup []driver.Turn // saved to session s before the import
		file  string
		line  string // the error names it
	}{
		{"a message id repeated across two turns of the file", nil,
			importLines(importHead("s", ""), importTurn("t1", "m1=hello", "m2=hi"), importTurn("t2", "m3=again", "m1=hello")), "line 3"},
		{"a message id the session holds in another turn",
			[]driver.Turn{{ID: "t0", Messages: []driver.Message{{ID: "m1", Role: driver.RoleUser, Content: "held"}}}},
			importLines(importHead("s", ""), importTurn("t1", "m2=new"), importTurn("t2", "m3=x", "m1=held")), "line 3"},
		{"a turn id repeated in the file with other content", nil,
			importLines(importHead("s", ""), importTurn("t1", "m1=first"), importTurn("t2", "m2=x"), importTurn("t1", "m1=changed")), "line 4"},
		{"a turn id repeated in the file with another message", nil,
			importLines(importHead("s", ""), importTurn("t1", "m1=first"), importTurn("t1", "m1=first", "m9=more")), "line 3"},
		{"a turn id the session holds with other content",
			[]driver.Turn{{ID: "t1", Messages: []driver.Message{{ID: "m1", Role: driver.RoleUser, Content: "held"}}}},
			importLines(importHead("s", ""), importTurn("t2", "m2=new"), importTurn("t1", "m1=not what is held")), "line 3"},
		{"a malformed line after good turns", nil,
			importLines(importHead("s", ""), importTurn("t1", "m1=fine"), `{"id": "t2", "timestamp": `), "line 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			backends(t, func(t *testing.T, b driver.Backend) {
				ctx := context.Background()
				m := newMemory(t, b).ForTenant("acme")
				for _, turn := range c.setup {
					require.NoError(t, m.SaveTurn(ctx, "s", turn))
				}
				beforeIDs, beforeCount := heldTurns(t, m, "s")

				_, err := m.Import(ctx, strings.NewReader(c.file))
				require.ErrorIs(t, err, driver.ErrInvalidImport)
				assert.Contains(t, err.Error(), c.line)
				ids, count := heldTurns(t, m, "s")
				assert.Equal(t, beforeIDs, ids, "the refused import left the session's turns as they were")
				assert.Equal(t, beforeCount, count, "the refused import left the turn count as it was (-1: no session)")
			})
		})
	}
}

// Importing the same file twice stores nothing twice, and a turn the file
// repeats as it is, or that the session holds as it is, is no change.
func TestImportIdempotent(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("acme")
		require.NoError(t, m.SaveTurn(ctx, "s", driver.Turn{ID: "t1", Timestamp: time.Unix(1700000100, 0), Messages: []driver.Message{
			{ID: "m1", Role: driver.RoleUser, Content: "hello"}, {ID: "m2", Role: driver.RoleAssistant, Content: "hi"}}}))
		file := importLines(importHead("s", ""), importTurn("t1", "m1=hello", "m2=hi"), importTurn("t2", "m3=more", "m4=sure"),
			importTurn("t2", "m3=more", "m4=sure"), importTurn("t3", "m5=last"))
		for range 2 {
			info, err := m.Import(ctx, strings.NewReader(file))
			require.NoError(t, err)
			assert.Equal(t, 3, info.TurnCount)
			ids, count := heldTurns(t, m, "s")
			assert.Equal(t, []string{"t1", "t2", "t3"}, ids)
			assert.Equal(t, 3, count)
		}
	})
}

// An import never takes a session another user owns, nor an unowned one
// that holds turns; into a new session it brings its owner.
func TestImportOwner(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b).ForTenant("acme")
		require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "bobs", User: "bob"}))
		require.NoError(t, m.SaveTurn(ctx, "bobs", driver.Turn{ID: "b1", User: "bob's secret"}))
		require.NoError(t, m.SaveTurn(ctx, "loose", driver.Turn{ID: "l1", User: "nobody's"}))

		for _, c := range []struct {
			name, id, user string
			want           error
		}{
			{"another user's session", "bobs", "mallory", driver.ErrSessionOwned},
			{"an owned session, by a file without an owner", "bobs", "", driver.ErrSessionOwned},
			{"an unowned session that holds turns", "loose", "mallory", driver.ErrSessionExists},
		} {
			_, err := m.Import(ctx, strings.NewReader(importLines(importHead(c.id, c.user), importTurn("x1", "x1m=planted"))))
			require.ErrorIs(t, err, c.want, c.name)
			info, err := m.SessionInfo(ctx, c.id)
			require.NoError(t, err)
			assert.Equal(t, 1, info.TurnCount, "%s: nothing stored", c.name)
			assert.NotEqual(t, "mallory", info.User, c.name)
		}

		info, err := m.Import(ctx, strings.NewReader(importLines(importHead("bobs", "bob"), importTurn("b2", "b2m=more"))))
		require.NoError(t, err, "the owner imports into their session")
		assert.Equal(t, 2, info.TurnCount)
		info, err = m.Import(ctx, strings.NewReader(importLines(importHead("fresh", "ada"), importTurn("f1", "f1m=new"))))
		require.NoError(t, err)
		assert.Equal(t, "ada", info.User)
		assert.Equal(t, 1, info.TurnCount)
	})
}

// A failed import leaves no trace on a session it would have created, and
// what is read into it is the cached window's too.
func TestImportDropsCachedWindow(t *testing.T) {
	backends(t, func(t *testing.T, b driver.Backend) {
		ctx := context.Background()
		m := newMemory(t, b)
		require.NoError(t, m.SaveTurn(ctx, "s", driver.Turn{ID: "t1", User: "one"}))
		w, err := m.LoadContext(ctx, "s")
		require.NoError(t, err)
		require.Equal(t, 1, w.TurnCount)
		_, err = m.Import(ctx, strings.NewReader(importLines(importHead("s", ""), importTurn("t2", "m2=two"))))
		require.NoError(t, err)
		w, err = m.LoadContext(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, 2, w.TurnCount, fmt.Sprintf("%+v", w.Turns))
	})
}
