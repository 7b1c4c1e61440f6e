package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A turn driver.Prepare made is stored as it is, not validated or encoded
// again: its metadata JSON goes to the database unchanged, and the size
// limit it was prepared with is the one limit (the memory's), even when it
// is larger than the default. A PreparedTurn that Prepare did not make
// is validated first, within driver.DefaultMaxMessageBytes.
func TestDataFlowBackendStoresPreparedTurnAsIs(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		const limit = driver.DefaultMaxMessageBytes
		b, _ := newEnv(t, d)

		p, err := driver.Prepare(driver.Turn{ID: "t1", User: "u", Agent: "a", Metadata: map[string]any{"k": "v"}}, time.Now(), limit, nil)
		require.NoError(t, err)
		// Marks what only a store without re-encoding keeps.
		p.Metadata = []byte(`{"encoded":"once"}`)
		s, err := b.Save(ctx, "s", p)
		require.NoError(t, err)
		require.True(t, s.Stored)
		w, err := readWindow(ctx, b, "s", 10)
		require.NoError(t, err)
		require.Len(t, w.Turns, 1)
		require.Equal(t, map[string]any{"encoded": "once"}, w.Turns[0].Metadata, "the prepared JSON is what was stored")

		// Hand-made: validated, so bad input is refused and writes nothing.
		_, err = b.Save(ctx, "s", driver.PreparedTurn{Turn: driver.Turn{User: "nul\x00"}})
		require.ErrorIs(t, err, driver.ErrInvalidTurn)
		// Hand-made over the default limit: refused with it.
		_, err = b.Save(ctx, "s", driver.PreparedTurn{Turn: driver.Turn{User: strings.Repeat("x", limit+1)}})
		require.ErrorIs(t, err, driver.ErrTurnTooLarge)
		w, err = readWindow(ctx, b, "s", 10)
		require.NoError(t, err)
		require.Equal(t, 1, w.TurnCount, "refused turns wrote nothing")

		// Prepared against a larger limit than the default: the memory's
		// limit is the one limit, so it is stored as it is.
		big, err := driver.Prepare(driver.Turn{ID: "big", User: strings.Repeat("x", limit+1)}, time.Now(), 2*limit, nil)
		require.NoError(t, err)
		s, err = b.Save(ctx, "s", big)
		require.NoError(t, err)
		require.True(t, s.Stored)
		w, err = readWindow(ctx, b, "s", 10)
		require.NoError(t, err)
		require.Equal(t, 2, w.TurnCount)
		want := big.Turn
		want.Seq = 2 // the loaded turn carries its position
		require.Equal(t, want, w.Turns[1], "the prepared turn read back")
	})
}
