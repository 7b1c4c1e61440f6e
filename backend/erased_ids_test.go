package backend

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
)

// TestDeleteUserLeavesNoIDs: the marks DeleteUser keeps so that a racing
// save is refused (ErasedTable) hold digests, so neither the user's name
// nor the IDs of the sessions it erased stay readable in the SQLite files
// once the memory is closed; and a save racing nothing still works after.
func TestDeleteUserLeavesNoIDs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ids.db")
	db, err := dataflow.Open(ctx, "sqlite:///"+path)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	m := newMemory(t, b).ForTenant("acme")

	user, session := "u"+newMarker(t), "s"+newMarker(t)
	require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: session, User: user}))
	require.NoError(t, m.SaveTurn(ctx, session, driver.Turn{User: "hello", Agent: "hi"}))
	requireCheckpoint(t, db)
	require.Positive(t, markerCount(t, path, user), "the owner reached the database file")
	require.Positive(t, markerCount(t, path, session), "the session ID reached the database file")

	r, err := m.DeleteUser(ctx, user)
	require.NoError(t, err)
	require.Equal(t, 1, r.Sessions)
	var marks int
	rows, err := db.QueryContext(ctx, `SELECT COUNT(*) FROM `+ErasedTable+` WHERE id = ?`, erasedDigest(driver.SessionKey("acme", session)))
	require.NoError(t, err)
	require.NoError(t, scanOne(rows, &marks))
	require.Equal(t, 1, marks, "the session is marked, by its digest")

	require.NoError(t, m.Close())
	require.NoError(t, db.Close())
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		require.Zero(t, markerCount(t, f, user), "%s holds the erased user's name", filepath.Base(f))
		require.Zero(t, markerCount(t, f, session), "%s holds the erased session's ID", filepath.Base(f))
	}
}
