package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/memory"
)

func TestInvalidOptions(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		opt  memory.Option
	}{
		{"max turns 0", memory.WithMaxTurns(0)},
		{"max turns -1", memory.WithMaxTurns(-1)},
		{"cache ttl -1ns", memory.WithCacheTTL(-time.Nanosecond)},
		{"stale reads -1ns", memory.WithStaleReads(-time.Nanosecond)},
		{"max cached sessions 0", memory.WithMaxCachedSessions(0)},
		{"max message bytes 0", memory.WithMaxMessageBytes(0)},
		{"nil option", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := memory.NewPersistentBufferMemory(newRecordingBackend(), memory.WithMaxTurns(3), tt.opt)
			require.ErrorIs(t, err, memory.ErrInvalidOption)
			assert.Nil(t, m)

			bm := memory.NewBufferMemory(tt.opt)
			require.NotNil(t, bm)
			assert.ErrorIs(t, bm.SaveTurn(ctx, "s", memory.Turn{User: "u"}), memory.ErrInvalidOption)
			_, err = bm.LoadContext(ctx, "s")
			assert.ErrorIs(t, err, memory.ErrInvalidOption)
			assert.ErrorIs(t, bm.Clear(ctx, "s"), memory.ErrInvalidOption)
		})
	}
}

func TestNilBackend(t *testing.T) {
	m, err := memory.NewPersistentBufferMemory(nil)
	require.ErrorIs(t, err, memory.ErrInvalidOption)
	assert.Nil(t, m)
}

func TestValidOptionsApply(t *testing.T) {
	ctx := context.Background()
	b := newRecordingBackend()
	m := newPersistent(t, b, memory.WithMaxTurns(2), memory.WithMaxMessageBytes(4), memory.WithCacheTTL(0), memory.WithMaxCachedSessions(1))
	for _, u := range []string{"a", "b", "c"} {
		require.NoError(t, m.SaveTurn(ctx, "s", memory.Turn{User: u}))
	}
	assert.ErrorIs(t, m.SaveTurn(ctx, "s", memory.Turn{User: "12345"}), memory.ErrTurnTooLarge)
	w, err := m.LoadContext(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, 3, w.TurnCount)
	assert.Equal(t, []string{"b", "c"}, users(w))
	_, err = m.LoadContext(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, int64(2), b.loads.Load(), "ttl 0 must read through every time")
	assert.Zero(t, b.checks.Load())
}

func users(w memory.Window) []string {
	var out []string
	for _, t := range w.Turns {
		out = append(out, t.User)
	}
	return out
}
