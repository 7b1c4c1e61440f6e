package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/memory"
)

// Guarded saves through both memories: a turn with Seq lands at exactly
// that place or is ErrConflict, loaded turns carry their Seq, a cached
// window never holds a refused turn, and a replacement's Seq is its
// position.
func TestSaveTurnSeq(t *testing.T) {
	ctx := context.Background()
	p, err := memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), memory.WithCacheTTL(time.Hour))
	require.NoError(t, err)
	for name, m := range map[string]interface {
		memory.Memory
		ReplaceSession(context.Context, string, ...memory.Turn) error
	}{"persistent": p, "buffer": memory.NewBufferMemory()} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "a", User: "a", Seq: 2}), memory.ErrConflict)
			require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "a", User: "a", Seq: 1}))
			require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "b", User: "b"}))
			w, err := m.LoadContext(ctx, "s")
			require.NoError(t, err)
			require.ErrorIs(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "c", User: "c", Seq: 2}), memory.ErrConflict)
			require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "a", User: "a", Seq: 7}), "a held turn is no conflict")
			w2, err := m.LoadContext(ctx, "s")
			require.NoError(t, err)
			assert.Equal(t, w, w2, "the refused turn is in no window")
			require.Len(t, w.Turns, 2)
			assert.Equal(t, []int{1, 2}, []int{w.Turns[0].Seq, w.Turns[1].Seq})
			require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "c", User: "c", Seq: 3}))
			w, err = m.LoadContext(ctx, "s")
			require.NoError(t, err)
			require.Len(t, w.Turns, 3)
			assert.Equal(t, 3, w.Turns[2].Seq, "the cached window's new turn carries its Seq")

			require.ErrorIs(t, m.ReplaceSession(ctx, "s", memory.Turn{ID: "x", User: "x", Seq: 2}), memory.ErrInvalidTurn)
			require.NoError(t, m.ReplaceSession(ctx, "s", memory.Turn{ID: "x", User: "x", Seq: 1}, memory.Turn{ID: "y", User: "y"}))
			w, err = m.LoadContext(ctx, "s")
			require.NoError(t, err)
			require.Len(t, w.Turns, 2)
			assert.Equal(t, []int{1, 2}, []int{w.Turns[0].Seq, w.Turns[1].Seq})
		})
	}
}
