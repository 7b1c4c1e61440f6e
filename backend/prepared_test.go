package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// A turn memory.Prepare made within the backend's limit is stored as it
// is, not validated or encoded again: its metadata JSON goes to the
// database unchanged. A PreparedTurn that Prepare did not make, or made
// with a larger limit than the backend's, is validated first.
func TestDataFlowBackendStoresPreparedTurnAsIs(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		b, _ := newEnv(t, d)

		p, err := memory.Prepare(memory.Turn{ID: "t1", User: "u", Agent: "a", Metadata: map[string]any{"k": "v"}}, time.Now(), b.MaxMessageBytes())
		require.NoError(t, err)
		// Marks what only a store without re-encoding keeps.
		p.Metadata = []byte(`{"encoded":"once"}`)
		s, err := b.SaveTurnVersioned(ctx, "s", p)
		require.NoError(t, err)
		require.True(t, s.Stored)
		w, err := b.LoadWindow(ctx, "s", 10)
		require.NoError(t, err)
		require.Len(t, w.Turns, 1)
		require.Equal(t, map[string]any{"encoded": "once"}, w.Turns[0].Metadata, "the prepared JSON is what was stored")

		// Hand-made: validated, so bad input is refused and writes nothing.
		_, err = b.SaveTurnVersioned(ctx, "s", memory.PreparedTurn{Turn: memory.Turn{User: "nul\x00"}})
		require.ErrorIs(t, err, memory.ErrInvalidTurn)
		// Prepared against a larger limit than the backend's: validated
		// again with the backend's.
		big, err := memory.Prepare(memory.Turn{User: strings.Repeat("x", b.MaxMessageBytes()+1)}, time.Now(), 2*b.MaxMessageBytes())
		require.NoError(t, err)
		_, err = b.SaveTurnVersioned(ctx, "s", big)
		require.ErrorIs(t, err, memory.ErrTurnTooLarge)
		w, err = b.LoadWindow(ctx, "s", 10)
		require.NoError(t, err)
		require.Equal(t, 1, w.TurnCount, "refused turns wrote nothing")
	})
}
