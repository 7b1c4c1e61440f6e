package memory_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/memory"
)

func TestBufferMemoryWindow(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		saves     int
		wantUsers []string
	}{
		{0, nil},
		{1, []string{"u0"}},
		{3, []string{"u0", "u1", "u2"}},
		{4, []string{"u1", "u2", "u3"}},
		{8, []string{"u5", "u6", "u7"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.saves, " saves"), func(t *testing.T) {
			m := memory.NewBufferMemory(memory.WithMaxTurns(3))
			for i := range tt.saves {
				require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: fmt.Sprint("u", i), Agent: "a"}))
			}
			w, err := m.LoadContext(ctx, "s")
			require.NoError(t, err)
			assert.Equal(t, tt.saves, w.TurnCount)
			assert.Equal(t, tt.wantUsers, users(w))
		})
	}
}

func TestBufferMemoryIdempotent(t *testing.T) {
	ctx := context.Background()
	m := memory.NewBufferMemory(memory.WithMaxTurns(2))
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "one", User: "first"}))
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "one", User: "retry"}))
	w, err := m.LoadContext(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, 1, w.TurnCount)
	assert.Equal(t, []string{"first"}, users(w))

	// Once "one" has left the window, its ID is no longer known.
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: "two"}))
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: "three"}))
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{ID: "one", User: "again"}))
	w, err = m.LoadContext(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, 4, w.TurnCount)
	assert.Equal(t, []string{"three", "again"}, users(w))
}

func TestBufferMemorySessionsAndClear(t *testing.T) {
	ctx := context.Background()
	var m memory.BufferMemory // the zero value works
	require.NoError(t, m.SaveTurn(ctx, "a", memory.Turn{User: "a1"}))
	require.NoError(t, m.SaveTurn(ctx, "b", memory.Turn{User: "b1"}))

	w, err := m.LoadContext(ctx, "unknown")
	require.NoError(t, err)
	assert.Equal(t, memory.Window{}, w)

	require.NoError(t, m.Clear(ctx, "a"))
	w, err = m.LoadContext(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, memory.Window{}, w)
	w, err = m.LoadContext(ctx, "b")
	require.NoError(t, err)
	assert.Equal(t, []string{"b1"}, users(w))
}

func TestBufferMemoryReturnsCopies(t *testing.T) {
	ctx := context.Background()
	m := memory.NewBufferMemory()
	meta := map[string]any{"k": "v"}
	require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: "u", Metadata: meta}))
	meta["k"] = "changed"

	w, err := m.LoadContext(ctx, "s")
	require.NoError(t, err)
	w.Turns[0].User = "corrupted"
	w, err = m.LoadContext(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, "u", w.Turns[0].User)
	assert.Equal(t, map[string]any{"k": "v"}, w.Turns[0].Metadata)
}

func TestBufferMemoryConcurrent(t *testing.T) {
	ctx := context.Background()
	m := memory.NewBufferMemory(memory.WithMaxTurns(5))
	const goroutines, saves = 8, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range saves {
				assert.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: fmt.Sprint(g, "-", i)}))
				_, err := m.LoadContext(ctx, "s")
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	w, err := m.LoadContext(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, goroutines*saves, w.TurnCount)
	assert.Len(t, w.Turns, 5)
}
