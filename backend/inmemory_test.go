package backend_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/driver"
)

func TestInMemoryBackendWindow(t *testing.T) {
	ctx := context.Background()
	b := backend.NewInMemoryBackend()
	for i := range 5 {
		require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: fmt.Sprint("u", i), Metadata: map[string]any{"i": i}}))
	}
	tests := []struct {
		maxTurns  int
		wantUsers []string
	}{
		{1, []string{"u4"}},
		{3, []string{"u2", "u3", "u4"}},
		{5, []string{"u0", "u1", "u2", "u3", "u4"}},
		{100, []string{"u0", "u1", "u2", "u3", "u4"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint("max ", tt.maxTurns), func(t *testing.T) {
			w, err := readWindow(ctx, b, "s", tt.maxTurns)
			require.NoError(t, err)
			assert.Equal(t, 5, w.TurnCount)
			var got []string
			for _, turn := range w.Turns {
				got = append(got, turn.User)
				i, err := strconv.Atoi(turn.User[1:])
				require.NoError(t, err)
				assert.Equal(t, map[string]any{"i": float64(i)}, turn.Metadata, "metadata of %s", turn.User)
			}
			assert.Equal(t, tt.wantUsers, got)
		})
	}

	w, err := readWindow(ctx, b, "unknown", 3)
	require.NoError(t, err)
	assert.Equal(t, driver.Window{}, w)

	for _, n := range []int{0, -1} {
		_, err := readWindow(ctx, b, "s", n)
		assert.ErrorIs(t, err, driver.ErrInvalidOption, "maxTurns %d", n)
	}
}

func TestInMemoryBackendIdempotent(t *testing.T) {
	ctx := context.Background()
	b := backend.NewInMemoryBackend()
	require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: "t1", User: "first"}))
	require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "second"}))
	require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: "t1", User: "retry"}))
	require.NoError(t, storeTurn(ctx, b, "other", driver.Turn{ID: "t1", User: "other session"}))

	w, err := readWindow(ctx, b, "s", 10)
	require.NoError(t, err)
	require.Equal(t, 2, w.TurnCount)
	assert.Equal(t, "first", w.Turns[0].User)
	assert.Equal(t, "second", w.Turns[1].User)
}

func TestInMemoryBackendReturnsCopies(t *testing.T) {
	ctx := context.Background()
	b := backend.NewInMemoryBackend()
	meta := map[string]any{"k": "v"}
	require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "u", Metadata: meta}))
	meta["k"] = "changed by caller"

	w, err := readWindow(ctx, b, "s", 1)
	require.NoError(t, err)
	w.Turns[0].User = "corrupted"
	w.Turns[0].Metadata["k"] = "corrupted"

	w, err = readWindow(ctx, b, "s", 1)
	require.NoError(t, err)
	assert.Equal(t, "u", w.Turns[0].User)
	assert.Equal(t, map[string]any{"k": "v"}, w.Turns[0].Metadata)
}

func TestInMemoryBackendSessionInfoAndClear(t *testing.T) {
	ctx := context.Background()
	var b backend.InMemoryBackend // the zero value works
	_, err := b.SessionInfo(ctx, "s")
	require.ErrorIs(t, err, driver.ErrSessionNotFound)

	before := time.Now().Add(-time.Millisecond)
	require.NoError(t, storeTurn(ctx, &b, "s", driver.Turn{User: "a"}))
	require.NoError(t, storeTurn(ctx, &b, "s", driver.Turn{User: "b"}))
	info, err := b.SessionInfo(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, 2, info.TurnCount)
	assert.True(t, info.CreatedAt.After(before), "created %v before %v", info.CreatedAt, before)
	assert.False(t, info.UpdatedAt.Before(info.CreatedAt), "updated %v before created %v", info.UpdatedAt, info.CreatedAt)

	require.NoError(t, b.ClearSession(ctx, "s"))
	_, err = b.SessionInfo(ctx, "s")
	require.ErrorIs(t, err, driver.ErrSessionNotFound)
	w, err := readWindow(ctx, &b, "s", 10)
	require.NoError(t, err)
	assert.Zero(t, w.TurnCount)
}

func TestInMemoryBackendValidates(t *testing.T) {
	ctx := context.Background()
	b := backend.NewInMemoryBackend()
	assert.ErrorIs(t, storeTurn(ctx, b, "", driver.Turn{User: "u"}), driver.ErrInvalidSessionID)
	assert.ErrorIs(t, storeTurn(ctx, b, "s", driver.Turn{}), driver.ErrInvalidTurn)
	assert.ErrorIs(t, storeTurn(ctx, b, "s", driver.Turn{User: string(make([]byte, driver.DefaultMaxMessageBytes+1))}), driver.ErrTurnTooLarge)
	_, err := readWindow(ctx, b, "a\x00", 1)
	assert.ErrorIs(t, err, driver.ErrInvalidSessionID)
	assert.ErrorIs(t, b.ClearSession(ctx, "\xff"), driver.ErrInvalidSessionID)
	_, err = b.SessionInfo(ctx, "")
	assert.ErrorIs(t, err, driver.ErrInvalidSessionID)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, storeTurn(canceled, b, "s", driver.Turn{User: "u"}), context.Canceled)

	_, err = b.SessionInfo(ctx, "s")
	assert.ErrorIs(t, err, driver.ErrSessionNotFound, "a refused turn was stored")
}

func TestInMemoryBackendConcurrent(t *testing.T) {
	ctx := context.Background()
	b := backend.NewInMemoryBackend()
	const goroutines, saves = 8, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range saves {
				// Every goroutine saves the same IDs: each is stored once.
				assert.NoError(t, storeTurn(ctx, b, "s", driver.Turn{ID: fmt.Sprint("t", i), User: fmt.Sprint(g)}))
				_, err := readWindow(ctx, b, "s", 3)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	info, err := b.SessionInfo(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, saves, info.TurnCount)
}
