package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/internal/testutil"
	"github.com/turnkeep/turnkeep/memory"
)

// Random concurrent saves (some re-using IDs), loads, invalidations and
// clears on a few sessions; afterwards every cached window must equal a
// read-through.
func TestPersistentConcurrentCacheEqualsReadThrough(t *testing.T) {
	const (
		rounds     = 20
		goroutines = 8
		ops        = 200
		windowSize = 4
	)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ctx := context.Background()
	sessions := []string{"s0", "s1", "s2", "s3"}
	compared := 0

	for round := range rounds {
		store := backend.NewInMemoryBackend()
		m := newPersistent(t, store, memory.WithMaxTurns(windowSize), memory.WithMaxCachedSessions(3))
		var wg sync.WaitGroup
		for g := range goroutines {
			rng := rand.New(rand.NewPCG(seed, uint64(round*goroutines+g)))
			wg.Go(func() {
				for i := range ops {
					id := sessions[rng.IntN(len(sessions))]
					var err error
					switch p := rng.IntN(100); {
					case p < 35:
						err = m.SaveTurn(ctx, id, memory.Turn{User: fmt.Sprint(g, "-", i), Metadata: map[string]any{"g": g, "i": []any{i}}})
					case p < 55:
						err = m.SaveTurn(ctx, id, memory.Turn{ID: fmt.Sprint("dup-", rng.IntN(6)), User: fmt.Sprint(g, "-", i)})
					case p < 95:
						var w memory.Window
						w, err = m.LoadContext(ctx, id)
						if err == nil && (len(w.Turns) > windowSize || w.TurnCount < len(w.Turns)) {
							err = fmt.Errorf("impossible window: %d turns of %d", len(w.Turns), w.TurnCount)
						}
					case p < 98:
						m.InvalidateCache(id)
					default:
						err = m.Clear(ctx, id)
					}
					if err != nil {
						t.Errorf("op %d on %s: %v", i, id, err)
						return
					}
				}
			})
		}
		testutil.Wait(t, &wg, 30*time.Second)

		for _, id := range sessions {
			want := readThrough(t, store, id, windowSize)
			if w, ok := memory.CachedWindow(m, id); ok {
				compared++
				require.Equal(t, want, w, "round %d session %s: cache differs from read-through", round, id)
			}
			require.Equal(t, want, load(t, m, id), "round %d session %s", round, id)
		}
		windows, entries := memory.CachedSessions(m)
		require.LessOrEqual(t, windows, 3)
		require.Equal(t, windows, entries, "entries outlived their windows")
	}
	require.Positive(t, compared, "no window was cached at the end of any round; the test proves nothing")
}
