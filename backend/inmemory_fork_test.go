package backend

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/memory"
)

// A fork of InMemoryBackend shares its parent's stored turns, and its
// capacity is clipped at the fork point, so neither a save to the parent
// nor one to the fork writes into the other's turns.
func TestInMemoryForkSharesPrefix(t *testing.T) {
	ctx := context.Background()
	b := NewInMemoryBackend()
	for _, id := range []string{"t1", "t2", "t3"} {
		require.NoError(t, storeTurn(ctx, b, "p", driver.Turn{ID: id, User: "u " + id, Agent: "a " + id}))
	}
	require.NoError(t, b.Fork(ctx, "p", "t2", "c"))
	p, c := b.sessions["p"], b.sessions["c"]
	require.Same(t, &p.turns[0], &c.turns[0], "the fork's turns are the parent's, not a copy")
	require.Equal(t, 2, cap(c.turns))
	require.Equal(t, inMemoryFork{point: &driver.ForkPoint{SessionID: "p", TurnID: "t2"}, base: "p", inherited: 2, order: 1}, c.inMemoryFork)
	require.True(t, p.shared)

	require.NoError(t, storeTurn(ctx, b, "c", driver.Turn{ID: "c3", User: "fork"}))
	require.NoError(t, storeTurn(ctx, b, "p", driver.Turn{ID: "t4", User: "parent"}))
	w, err := readWindow(ctx, b, "c", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"t1", "t2", "c3"}, turnIDs(w))
	w, err = readWindow(ctx, b, "p", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"t1", "t2", "t3", "t4"}, turnIDs(w))

	// A fork of the fork at an inherited turn is stored by p.
	require.NoError(t, b.Fork(ctx, "c", "t1", "g"))
	require.Equal(t, "p", b.sessions["g"].base)
	require.Equal(t, 1, b.sessions["g"].inherited)
	// Clearing p makes c and g store what they inherited from it.
	require.NoError(t, b.ClearSession(ctx, "p"))
	require.Equal(t, "", b.sessions["c"].base)
	require.Equal(t, 0, b.sessions["c"].inherited)
	require.Equal(t, 0, b.sessions["g"].inherited)
}

// Export of a fork writes its whole history, and Import stores it as a
// session that is no fork (docs/sessions.md).
func TestForkExportMaterializes(t *testing.T) {
	ctx := context.Background()
	m, err := memory.NewPersistentBufferMemory(NewInMemoryBackend())
	require.NoError(t, err)
	for _, id := range []string{"t1", "t2", "t3"} {
		require.NoError(t, m.SaveTurn(ctx, "p", driver.Turn{ID: id, User: "u " + id, Agent: "a " + id}))
	}
	require.NoError(t, m.Fork(ctx, "p", "t2", "c"))
	require.NoError(t, m.SaveTurn(ctx, "c", driver.Turn{ID: "c3", User: "own"}))
	var buf bytes.Buffer
	require.NoError(t, m.Export(ctx, "c", &buf))

	dst := NewInMemoryBackend()
	to, err := memory.NewPersistentBufferMemory(dst)
	require.NoError(t, err)
	info, err := to.Import(ctx, &buf)
	require.NoError(t, err)
	require.Equal(t, "c", info.ID)
	got, err := to.SessionInfo(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, 3, got.TurnCount)
	require.Nil(t, got.ForkOf, "the relation is not kept")
	w, err := readWindow(ctx, dst, "c", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"t1", "t2", "c3"}, turnIDs(w))
}
