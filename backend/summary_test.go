package backend

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// A database with no summaries table (an earlier release's), opened with
// auto-migration off, has no summaries: a load asking for one, a clear, a
// replacement and a deletion all work without the table.
func TestSummariesTableMissingAutoMigrateOff(t *testing.T) {
	ctx := context.Background()
	url := "sqlite:///" + filepath.Join(t.TempDir(), "old.db")
	db, err := dataflow.Open(ctx, url)
	require.NoError(t, err)
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, storeTurn(ctx, b, id, driver.Turn{User: "q", Agent: "a"}))
	}
	require.NoError(t, db.Close())

	db, err = dataflow.Open(ctx, url, dataflow.WithAutoMigrate(false))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	b, err = NewDataFlowBackend(db)
	require.NoError(t, err)
	w, _, err := b.Load(ctx, "a", driver.WindowQuery{MaxTurns: 5, Known: driver.UnknownVersion, Summary: true})
	require.NoError(t, err)
	assert.Nil(t, w.Summary)
	assert.Len(t, w.Turns, 1)
	require.NoError(t, b.ClearSession(ctx, "a"))
	p, err := driver.Prepare(driver.Turn{User: "new"}, now(), 0, nil)
	require.NoError(t, err)
	_, err = b.Replace(ctx, "b", []driver.PreparedTurn{p})
	require.NoError(t, err)
	_, _, err = b.DeleteSessions(ctx, "", nil, now().Add(1e9), 10)
	require.NoError(t, err)
	ok, err := b.summaries(ctx)
	require.NoError(t, err)
	assert.False(t, ok, "no summaries table was made")
}
