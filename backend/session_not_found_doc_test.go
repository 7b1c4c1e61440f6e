package backend

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// TestSessionInfoOfEmptySession pins driver.ErrSessionNotFound's doc
// (issue 16, item 12): a session CreateSession made exists with no turns;
// one never created, or cleared, is ErrSessionNotFound. On both backends.
func TestSessionInfoOfEmptySession(t *testing.T) {
	check := func(t *testing.T, b driver.SessionStore) {
		ctx := context.Background()
		m := newMemory(t, b)
		_, err := m.SessionInfo(ctx, "never")
		require.ErrorIs(t, err, driver.ErrSessionNotFound)
		require.NoError(t, m.CreateSession(ctx, driver.SessionInfo{ID: "empty", User: "ada"}))
		info, err := m.SessionInfo(ctx, "empty")
		require.NoError(t, err, "a created session with no turns exists")
		require.Equal(t, 0, info.TurnCount)
		require.Equal(t, "ada", info.User)
		require.NoError(t, m.Clear(ctx, "empty"))
		_, err = m.SessionInfo(ctx, "empty")
		require.ErrorIs(t, err, driver.ErrSessionNotFound, "a cleared session")
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, _ := newEnv(t, d)
		check(t, b)
	})
	t.Run("inmemory", func(t *testing.T) { check(t, NewInMemoryBackend()) })
}
