package backend

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/migrate"
)

// makeHeadless leaves the session's turn at seq as an earlier release's
// CountedUpgrade left a turn whose empty first message it deleted: its
// rows a place further on (from position 1), each with its ID (stored
// NULL on a store with compact keys where its new place derives it), and
// their search entries and queued rows with them; and HeadlessUpgrade not
// recorded done.
func makeHeadless(t testing.TB, b *DataFlowBackend, key string, seq int64) {
	t.Helper()
	ctx := context.Background()
	db := b.db
	exec := func(q string, args ...any) {
		t.Helper()
		_, err := db.ExecContext(ctx, db.Rebind(q), args...)
		require.NoError(t, err, q)
	}
	type row struct {
		pos    int32
		turnID string
		id     string
	}
	var turn []row
	rows, err := db.QueryContext(ctx, db.Rebind(`SELECT pos, turn_id, msg_id FROM `+MessagesTable+` WHERE session_id = ? AND seq = ? ORDER BY pos DESC`), key, seq)
	require.NoError(t, err)
	for rows.Next() {
		var r row
		var id *string
		require.NoError(t, rows.Scan(&r.pos, &r.turnID, &id))
		r.id = messageID(deref(id), id != nil, r.turnID, r.pos)
		turn = append(turn, r)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.NotEmpty(t, turn)
	sqlite := db.Dialect() == "sqlite"
	var search, queue bool
	if sqlite {
		search = v1Count(t, db, `SELECT count(*) FROM sqlite_master WHERE name = ?`, SearchTable) == 1
		queue = v1Count(t, db, `SELECT count(*) FROM sqlite_master WHERE name = ?`, SearchQueueTable) == 1
	}
	for _, r := range turn { // descending: no two rows meet
		var id any = r.id
		if b.compact && r.id == driver.DerivedMessageID(r.turnID, int(r.pos+1)) {
			id = nil
		}
		exec(`UPDATE `+MessagesTable+` SET pos = ?, msg_id = ? WHERE session_id = ? AND seq = ? AND pos = ?`, r.pos+1, id, key, seq, r.pos)
		if search {
			exec(`UPDATE `+SearchTable+` SET pos = ? WHERE skey = ? AND seq = ? AND pos = ?`, r.pos+1, key, seq, r.pos)
		}
		if queue {
			exec(`UPDATE `+SearchQueueTable+` SET pos = ? WHERE skey = ? AND seq = ? AND pos = ?`, r.pos+1, key, seq, r.pos)
		}
	}
	exec(`DELETE FROM `+db.Migrator().HistoryTable()+` WHERE table_name = ?`, "upgrade:"+HeadlessUpgrade)
	require.Positive(t, headlessRows(t, db), "the turn is headless")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// headlessRows counts the message rows of turns without a head row.
func headlessRows(t testing.TB, db *dataflow.DB) int {
	t.Helper()
	return v1Count(t, db, `SELECT count(*) FROM `+MessagesTable+` m
WHERE NOT EXISTS (SELECT 1 FROM `+MessagesTable+` h WHERE h.session_id = m.session_id AND h.seq = m.seq AND h.pos = 0)`)
}

// assertHeaded asserts that no turn is without its head row, that the
// session key's turn turnID has one, and that a search of msg's words in
// the session finds msg there, by its ID.
func assertHeaded(t testing.TB, b *DataFlowBackend, key, turnID string, msg driver.Message) {
	t.Helper()
	assert.Zero(t, headlessRows(t, b.db), "rows of turns without a head row")
	assert.Equal(t, 1, v1Count(t, b.db, `SELECT count(*) FROM `+MessagesTable+` WHERE session_id = ? AND turn_id = ? AND pos = 0`, key, turnID),
		"turn %s's head row", turnID)
	hits, err := b.Search(context.Background(), "", driver.SearchQuery{Text: msg.Content, SessionID: key})
	require.NoError(t, err)
	var ids []string
	for _, h := range hits {
		if h.TurnID == turnID {
			ids = append(ids, h.Message.ID)
		}
	}
	assert.Contains(t, ids, msg.ID, "search finds %q in turn %s by its ID", msg.Content, turnID)
}

// HeadlessUpgrade: on a new database it is recorded done, its batch
// reading nothing;
// on one where an earlier release's CountedUpgrade left turns without
// their head row (one row, two rows with an ID stored NULL, a turn
// before a later one, a message whose search entry is written and one
// still queued on SQLite) it moves their rows down to position 0 and on,
// keeping every ID, and search finds them there; a summary is read with
// the window whose newest turn was one; the turns are held and take
// appends. The sessions load as before. The MySQL family runs it
// alike (it never held such turns; they are made here).
func TestHeadlessUpgrade(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := d.URL(t)
		db, _ := v1Open(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		// A new database's run (the first use's): the batch returns done
		// at once; it would fail on a statement of the zero UpgradeTx.
		_, n, done, err := b.headlessUpgrade(true).Batch(ctx, migrate.UpgradeTx{}, "", time.Now())
		require.NoError(t, err)
		assert.True(t, done)
		assert.Zero(t, n)
		res, err := b.RunUpgrades(ctx)
		require.NoError(t, err)
		require.Len(t, res, 2)
		assert.Zero(t, res[1].Rows)
		h, err := db.Migrator().History(ctx, "upgrade:"+HeadlessUpgrade)
		require.NoError(t, err)
		assert.Len(t, h, 1, "recorded done")
		require.NoError(t, storeTurn(ctx, b, "s1", driver.Turn{ID: "a1", User: "first question", Agent: "first answer"}))

		require.NoError(t, storeTurn(ctx, b, "s1", driver.Turn{ID: "h1", Agent: "an orphaned walrus answer"}))
		tail := driver.Message{ID: driver.DerivedMessageID("h1", 2), Role: driver.RoleUser, Content: "a trailing walrus remark"}
		enc, err := driver.PrepareMessages([]driver.Message{tail}, 0, nil)
		require.NoError(t, err)
		_, err = b.Append(ctx, "s1", "h1", enc)
		require.NoError(t, err)
		require.NoError(t, storeTurn(ctx, b, "s2", driver.Turn{ID: "h2", Agent: "a lonely penguin reply"}))
		require.NoError(t, storeTurn(ctx, b, "s2", driver.Turn{ID: "after", User: "a later question", Agent: "a later answer"}))
		_, err = b.Search(ctx, "", driver.SearchQuery{Text: "walrus"}) // indexes what is queued (SQLite)
		require.NoError(t, err)
		require.NoError(t, storeTurn(ctx, b, "s3", driver.Turn{ID: "h3", Agent: "a queued narwhal reply"}))
		want := map[string]driver.Window{}
		for _, s := range []string{"s1", "s2", "s3"} {
			want[s] = v1Load(t, b, s, driver.WindowQuery{})
		}
		makeHeadless(t, b, "s1", 2)
		makeHeadless(t, b, "s2", 1)
		makeHeadless(t, b, "s3", 1)
		require.NoError(t, db.Close())

		db, _ = v1Open(t, url)
		b, err = NewDataFlowBackend(db)
		require.NoError(t, err)
		res, err = b.RunUpgrades(ctx)
		require.NoError(t, err)
		require.Len(t, res, 2)
		assert.False(t, res[0].Ran, "CountedUpgrade is done")
		assert.EqualValues(t, 4, res[1].Rows, "the rows of the three turns moved")
		for _, s := range []string{"s1", "s2", "s3"} {
			assert.Equal(t, want[s], v1Load(t, b, s, driver.WindowQuery{}), "session %s", s)
		}
		h, err = db.Migrator().History(ctx, "upgrade:"+HeadlessUpgrade)
		require.NoError(t, err)
		assert.Len(t, h, 1, "recorded done")
		if d.Name == "sqlite" {
			assert.Equal(t, 1, v1Count(t, db, `SELECT count(*) FROM `+MessagesTable+` WHERE session_id = ? AND seq = 2 AND pos = 1 AND msg_id = ?`, "s1", tail.ID),
				"an ID its old place derived is stored where it moved")
		}
		assertHeaded(t, b, "s1", "h1", want["s1"].Turns[1].Messages[0])
		assertHeaded(t, b, "s1", "h1", tail)
		assertHeaded(t, b, "s2", "h2", want["s2"].Turns[0].Messages[0])
		assertHeaded(t, b, "s3", "h3", want["s3"].Turns[0].Messages[0])

		// A summary is read from the newest turn's head row: s3's only
		// turn was the headless one.
		sum := driver.Summary{Text: "a narwhal was mentioned", Turns: 1, Tokens: 5, UpdatedAt: time.Now().UTC().Truncate(time.Microsecond)}
		require.NoError(t, b.PutSummary(ctx, "s3", sum))
		w, _, err := b.Load(ctx, "s3", driver.WindowQuery{MaxTurns: 10, Known: driver.UnknownVersion, Summary: true})
		require.NoError(t, err)
		if assert.NotNil(t, w.Summary, "the summary of a session whose newest turn was headless") {
			assert.Equal(t, sum.Text, w.Summary.Text)
			assert.Equal(t, sum.Turns, w.Summary.Turns)
		}

		before := tableCounts(t, b)
		saved, err := b.Save(ctx, "s2", driver.PreparedTurn{Turn: driver.Turn{ID: "h2", Agent: "a lonely penguin reply"}})
		require.NoError(t, err)
		assert.False(t, saved.Stored, "the turn is held")
		assert.Equal(t, before, tableCounts(t, b), "nothing stored")
		enc, err = driver.PrepareMessages([]driver.Message{{ID: "late", Role: driver.RoleUser, Content: "a late follow-up"}}, 0, nil)
		require.NoError(t, err)
		saved, err = b.Append(ctx, "s2", "h2", enc)
		require.NoError(t, err)
		assert.True(t, saved.Stored)
		assert.Equal(t, 1, saved.Seq, "appended to the moved turn")
	})
}
