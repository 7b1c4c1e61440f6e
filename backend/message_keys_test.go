package backend

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

func TestParseDerivedID(t *testing.T) {
	for _, c := range []struct {
		id   string
		turn string
		pos  int
		ok   bool
	}{
		{"t1/0", "t1", 0, true},
		{"t1/12", "t1", 12, true},
		{"a/b/3", "a/b", 3, true},
		{"/0", "", 0, true},
		{"t1/", "", 0, false},
		{"t1/01", "", 0, false},
		{"t1/-1", "", 0, false},
		{"t1/+1", "", 0, false},
		{"t1/1x", "", 0, false},
		{"t1/1234567890", "", 0, false},
		{"t1", "", 0, false},
	} {
		turn, pos, ok := parseDerivedID(c.id)
		assert.Equal(t, c.ok, ok, "%q", c.id)
		if ok {
			assert.Equal(t, c.turn, turn, "%q", c.id)
			assert.Equal(t, c.pos, pos, "%q", c.id)
			assert.Equal(t, c.id, driver.DerivedMessageID(turn, pos), "%q parses back", c.id)
		}
	}
}

// storedIDs returns the msg_id column of the session's rows in key order,
// "<nil>" for NULL.
func storedIDs(t *testing.T, b *DataFlowBackend, sessionID string) []string {
	t.Helper()
	rows, err := b.db.QueryContext(context.Background(), b.db.Rebind(`SELECT msg_id FROM `+MessagesTable+` WHERE session_id = ? ORDER BY seq, pos`), sessionID)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id sql.NullString
		require.NoError(t, rows.Scan(&id))
		if id.Valid {
			out = append(out, id.String)
		} else {
			out = append(out, "<nil>")
		}
	}
	require.NoError(t, rows.Err())
	return out
}

func windowIDs(w driver.Window) []string {
	var out []string
	for _, t := range w.Turns {
		for _, m := range t.Messages {
			out = append(out, m.ID)
		}
	}
	return out
}

// With compact keys (SQLite) a derived message ID is stored NULL, and
// every read returns it as before: windows, history, search hits and an
// export through Import's comparison. Other engines store it as it is.
func TestCompactKeysReadDerivedIDs(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: "t1", User: "alpha question", Agent: "alpha answer"}))
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: "t2", Messages: []driver.Message{
			{ID: "mine", Role: driver.RoleUser, Content: "beta question"},
			{Role: driver.RoleAssistant, Content: "beta answer"},
			{ID: "t2/2", Role: driver.RoleAssistant, Content: "beta more"}, // its own derived ID, given
		}}))
		want := []string{"t1/0", "t1/1", "mine", "t2/1", "t2/2"}
		if b.compact {
			assert.Equal(t, []string{"<nil>", "<nil>", "mine", "<nil>", "<nil>"}, storedIDs(t, b, "s"))
		} else {
			assert.Equal(t, want, storedIDs(t, b, "s"))
		}
		assert.Equal(t, want, windowIDs(loadWindow(t, b, "s", 10)))
		w, _, err := b.Load(ctx, "s", driver.WindowQuery{MaxTurns: 10, TokenBudget: 1000, Known: driver.UnknownVersion})
		require.NoError(t, err)
		assert.Equal(t, want, windowIDs(w), "budget window")
		page, err := b.History(ctx, "s", driver.HistoryQuery{Limit: 10})
		require.NoError(t, err)
		assert.Equal(t, want, windowIDs(driver.Window{Turns: page.Turns}), "history")
		hits, err := b.Search(ctx, "", driver.SearchQuery{Text: "beta", Limit: 100})
		require.NoError(t, err)
		var ids []string
		for _, h := range hits {
			ids = append(ids, h.Message.ID)
		}
		assert.ElementsMatch(t, []string{"mine", "t2/1", "t2/2"}, ids, "search hits")

		// A fork at t1 reads t1's rows through the parent: the same IDs.
		require.NoError(t, b.Fork(ctx, "s", "t1", "f"))
		assert.Equal(t, want[:2], windowIDs(loadWindow(t, b, "f", 10)), "fork")

		// Importing the session's own turns again changes nothing: each is
		// found held with the same messages.
		turns := loadWindow(t, b, "s", 10).Turns
		i := 0
		require.NoError(t, b.Import(ctx, "s", driver.SessionInfo{}, func() (driver.PreparedTurn, error) {
			if i == len(turns) {
				return driver.PreparedTurn{}, io.EOF
			}
			i++
			return driver.PreparedTurn{Turn: turns[i-1]}, nil
		}))
		assert.Equal(t, want, windowIDs(loadWindow(t, b, "s", 10)), "after the import")
	})
}

// A message ID is held once per session in either form: an app's ID that
// has the form of another place's derived ID stays distinct from it, and
// neither is stored twice.
func TestCompactKeysHeldIDs(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		// Turn y gives the ID "x/0" before turn x exists.
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: "y", Messages: []driver.Message{{ID: "x/0", Role: driver.RoleUser, Content: "y asks"}}}))
		// Turn x's derived first ID is held: refused, nothing written.
		before := tableCounts(t, b)
		err := storeTurn(ctx, b, "s", driver.Turn{ID: "x", User: "x asks", Agent: "x answers"})
		require.ErrorIs(t, err, driver.ErrInvalidTurn)
		assert.Equal(t, before, tableCounts(t, b), "a refused save writes nothing")

		// Turn z, derived IDs stored; then an app's ID equal to z's
		// derived one, in another turn: refused.
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: "z", User: "z asks", Agent: "z answers"}))
		err = storeTurn(ctx, b, "s", driver.Turn{ID: "w", Messages: []driver.Message{{ID: "z/1", Role: driver.RoleUser, Content: "w asks"}}})
		require.ErrorIs(t, err, driver.ErrInvalidTurn)
		// The same save again: held, no error, nothing stored.
		saved, err := b.Save(ctx, "s", driver.PreparedTurn{Turn: driver.Turn{ID: "z", User: "z asks", Agent: "z answers"}})
		require.NoError(t, err)
		assert.False(t, saved.Stored)
		assert.Equal(t, []string{"x/0", "z/0", "z/1"}, windowIDs(loadWindow(t, b, "s", 10)))

		// Appends skip IDs held in either form and store the others.
		msgs, err := driver.PrepareMessages([]driver.Message{
			{ID: "z/0", Role: driver.RoleAssistant, Content: "held derived"},
			{ID: "x/0", Role: driver.RoleAssistant, Content: "held given"},
			{ID: "z/2", Role: driver.RoleAssistant, Content: "new, its own place"},
			{ID: "z/9", Role: driver.RoleAssistant, Content: "new, another place's form"},
		}, 0, nil)
		require.NoError(t, err)
		saved, err = b.Append(ctx, "s", "z", msgs)
		require.NoError(t, err)
		assert.Equal(t, 2, saved.Messages)
		want := []string{"x/0", "z/0", "z/1", "z/2", "z/9"}
		assert.Equal(t, want, windowIDs(loadWindow(t, b, "s", 10)))
		// Again: all held.
		saved, err = b.Append(ctx, "s", "z", msgs)
		require.NoError(t, err)
		assert.Equal(t, 0, saved.Messages)
		assert.Equal(t, want, windowIDs(loadWindow(t, b, "s", 10)))
		if b.compact {
			// The skipped messages keep their places (2 and 3): z/2 and
			// z/9 sit at places 4 and 5, so both are stored.
			assert.Equal(t, []string{"x/0", "<nil>", "<nil>", "z/2", "z/9"}, storedIDs(t, b, "s"))
		}

		// An import of a turn whose derived ID is held: ErrInvalidImport,
		// nothing written.
		before = tableCounts(t, b)
		done := false
		err = b.Import(ctx, "s", driver.SessionInfo{}, func() (driver.PreparedTurn, error) {
			if done {
				return driver.PreparedTurn{}, io.EOF
			}
			done = true
			return driver.PreparedTurn{Turn: driver.Turn{ID: "x", User: "x asks"}}, nil
		})
		require.ErrorIs(t, err, driver.ErrInvalidImport)
		assert.Equal(t, before, tableCounts(t, b))

		// A replacement giving one ID in both forms: ErrInvalidTurn.
		_, err = b.Replace(ctx, "s", []driver.PreparedTurn{
			{Turn: driver.Turn{ID: "q", Messages: []driver.Message{{ID: "r/0", Role: driver.RoleUser, Content: "q asks"}}}},
			{Turn: driver.Turn{ID: "r", User: "r asks"}},
		})
		require.ErrorIs(t, err, driver.ErrInvalidTurn)
		assert.NotContains(t, err.Error(), "turn id")
		_, err = b.Replace(ctx, "s", []driver.PreparedTurn{
			{Turn: driver.Turn{ID: "q", User: "q asks"}},
			{Turn: driver.Turn{ID: "q", User: "q again"}},
		})
		require.ErrorIs(t, err, driver.ErrInvalidTurn)
		assert.Contains(t, err.Error(), "turn id")
		assert.Equal(t, before, tableCounts(t, b), "refused replacements write nothing")
		assert.Equal(t, want, windowIDs(loadWindow(t, b, "s", 10)))
	})
}

// Turns are found by ID through their head row: appends to an older turn,
// a fork at it, and a guarded save that meets a held turn.
func TestCompactKeysTurnLookups(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)
		for _, id := range []string{"a", "b", "c"} {
			require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: id, User: id + " asks", Agent: id + " answers"}))
		}
		msgs, err := driver.PrepareMessages([]driver.Message{{ID: "b/2", Role: driver.RoleTool, ToolCallID: "call", Content: "tool says"}}, 0, nil)
		require.NoError(t, err)
		saved, err := b.Append(ctx, "s", "b", msgs)
		require.NoError(t, err)
		assert.Equal(t, 1, saved.Messages)
		w := loadWindow(t, b, "s", 10)
		require.Len(t, w.Turns, 3)
		assert.Equal(t, []string{"b/0", "b/1", "b/2"}, windowIDs(driver.Window{Turns: w.Turns[1:2]}))
		if b.compact {
			assert.Equal(t, "<nil>", storedIDs(t, b, "s")[4], "an appended message's own derived ID is stored NULL")
		}

		_, err = b.Append(ctx, "s", "nope", msgs)
		require.ErrorIs(t, err, driver.ErrTurnNotFound)

		require.NoError(t, b.Fork(ctx, "s", "b", "f"))
		fw := loadWindow(t, b, "f", 10)
		require.Len(t, fw.Turns, 2)
		assert.Equal(t, w.Turns[0].Tokens()+w.Turns[1].Tokens(), fw.Tokens, "the fork's tokens are its turns' (the whole turn b)")

		_, err = b.Save(ctx, "s", driver.PreparedTurn{Turn: driver.Turn{ID: "a", Seq: 4, User: "a asks", Agent: "a answers"}})
		require.NoError(t, err, "a held turn is no conflict whatever its Seq")
		_, err = b.Save(ctx, "s", driver.PreparedTurn{Turn: driver.Turn{ID: "d", Seq: 9, User: "d asks"}})
		require.True(t, errors.Is(err, driver.ErrConflict), "got %v", err)
	})
}

// Rows of a release before compact keys hold their derived IDs stored, and
// a turn whose empty first message the data upgrade deleted holds its
// other row at its head (pos 0) under that row's ID (X/1): lookups find
// both. Saving a held turn again stores nothing, that one too; an import
// of the sessions' own turns changes nothing; a fork at that turn takes
// the whole turn.
func TestCompactKeysUpgradedRows(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		db, _ := v1Open(t, v1Fixture(t, d))
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		for _, s := range []string{v1Session(1), "session-4"} {
			w := v1Load(t, b, s, driver.WindowQuery{})
			before := tableCounts(t, b)
			for _, turn := range w.Turns {
				saved, err := b.Save(ctx, s, driver.PreparedTurn{Turn: turn})
				require.NoError(t, err, "%s turn %s saved again", s, turn.ID)
				assert.False(t, saved.Stored, "%s turn %s is held", s, turn.ID)
			}
			i := 0
			require.NoError(t, b.Import(ctx, s, driver.SessionInfo{}, func() (driver.PreparedTurn, error) {
				if i == len(w.Turns) {
					return driver.PreparedTurn{}, io.EOF
				}
				i++
				return driver.PreparedTurn{Turn: w.Turns[i-1]}, nil
			}), "%s imported into itself", s)
			assert.Equal(t, before, tableCounts(t, b), "%s: nothing stored again", s)
			assert.Equal(t, w, v1Load(t, b, s, driver.WindowQuery{}), "%s unchanged", s)
		}
		w := v1Load(t, b, "session-4", driver.WindowQuery{})
		require.Len(t, w.Turns, 2)
		headless := w.Turns[1] // "an answer with no question": its empty first message went
		require.NoError(t, b.Fork(ctx, "session-4", headless.ID, "fork-4"))
		f := v1Load(t, b, "fork-4", driver.WindowQuery{})
		assert.Equal(t, w.Turns, f.Turns)
		assert.Equal(t, w.Tokens, f.Tokens)
	})
}
