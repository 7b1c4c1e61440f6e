package backend

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A release that left a turn headless found it held by its head row
// alone, so a save of its ID again stored a new turn under that ID (one
// message, whose derived ID X/0 the headless row did not hold). The
// upgrade cannot give the old turn a head row under an ID another turn's
// head holds: it leaves that turn as it is, and the next runs do not fail.
func TestHeadlessUpgradeTurnIDSavedAgain(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := d.URL(t)
		db, _ := v1Open(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		_, err = b.RunUpgrades(ctx)
		require.NoError(t, err)
		require.NoError(t, storeTurn(ctx, b, "s1", driver.Turn{ID: "h1", Messages: []driver.Message{
			{ID: driver.DerivedMessageID("h1", 1), Role: driver.RoleAssistant, Content: "an orphaned walrus answer"}}}))
		makeHeadless(t, b, "s1", 1)
		saved, err := b.Save(ctx, "s1", driver.PreparedTurn{Turn: driver.Turn{ID: "h1", Agent: "the walrus answer again"}})
		require.NoError(t, err)
		require.True(t, saved.Stored, "the release stored the turn again")
		want := v1Load(t, b, "s1", driver.WindowQuery{})
		require.Len(t, want.Turns, 2)
		require.NoError(t, db.Close())

		db, _ = v1Open(t, url)
		b, err = NewDataFlowBackend(db)
		require.NoError(t, err)
		_, err = b.RunUpgrades(ctx)
		require.NoError(t, err, "the upgrade runs to its end")
		h, err := db.Migrator().History(ctx, "upgrade:"+HeadlessUpgrade)
		require.NoError(t, err)
		assert.Len(t, h, 1, "recorded done")
		assert.Equal(t, want, v1Load(t, b, "s1", driver.WindowQuery{}), "the session loads as before")
	})
}
