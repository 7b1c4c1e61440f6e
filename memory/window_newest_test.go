package memory_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// byLength counts a message's tokens as the bytes of its content, so that
// a test reads its budgets off the strings it saves.
var byLength = memory.TokenCounterFunc(func(m memory.Message) int { return len(m.Content) })

// shape is what a test compares of a window: its turn IDs, tokens and
// turn count.
type shape struct {
	IDs       []string
	Tokens    int
	TurnCount int
}

func shapeOf(w memory.Window) shape {
	s := shape{Tokens: w.Tokens, TurnCount: w.TurnCount}
	for _, t := range w.Turns {
		s.IDs = append(s.IDs, t.ID)
	}
	return s
}

// windowSubject is a memory to write through, and the reads whose every
// answer must be the same window.
type windowSubject struct {
	write memory.Memory
	reads map[string]memory.Memory // by name; a cached memory is read twice, a miss and a hit
	hits  func() uint64            // the cached memory's hits; nil for none
}

// forEachWindowMemory runs fn on every kind of memory that builds a
// window: BufferMemory, and PersistentBufferMemory over the in-memory
// backend and over SQL on every dialect. A persistent memory is written
// through a cached memory and read through it and through one without a
// cache over the same backend, so that the cache's own trimming (after a
// save or an append, or cutting a per-call budget from the cached window)
// is held to what the backend returns.
func forEachWindowMemory(t *testing.T, opts []memory.Option, fn func(t *testing.T, s windowSubject)) {
	persistent := func(t *testing.T, b driver.Backend) windowSubject {
		cached, err := memory.NewPersistentBufferMemory(b, opts...)
		require.NoError(t, err)
		direct, err := memory.NewPersistentBufferMemory(b, append(append([]memory.Option(nil), opts...), memory.WithCacheTTL(0))...)
		require.NoError(t, err)
		return windowSubject{write: cached, reads: map[string]memory.Memory{"cached": cached, "read-through": direct},
			hits: func() uint64 { return cached.Stats().Hits }}
	}
	t.Run("buffer", func(t *testing.T) {
		m := memory.NewBufferMemory(opts...)
		fn(t, windowSubject{write: m, reads: map[string]memory.Memory{"buffer": m}})
	})
	t.Run("inmemory", func(t *testing.T) { fn(t, persistent(t, backend.NewInMemoryBackend())) })
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		db, err := dataflow.Open(context.Background(), d.URL(t))
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		b, err := backend.NewDataFlowBackend(db)
		require.NoError(t, err)
		fn(t, persistent(t, b))
	})
}

// A window always holds the session's newest turn, even when it alone is
// over the token budget; Window.Tokens then shows the excess. Older turns
// join it only while the whole fits. It holds on every memory, for the
// memory's budget and a per-call one, on a cache miss and a hit alike.
func TestWindowHoldsNewestTurn(t *testing.T) {
	big := strings.Repeat("x", 40) // 40 tokens: over the budget of 10
	opts := []memory.Option{memory.WithTokenCounter(byLength), memory.WithTokenBudget(10), memory.WithMaxTurns(20)}
	forEachWindowMemory(t, opts, func(t *testing.T, s windowSubject) {
		ctx := context.Background()
		// check loads the window every way; on the cached memory, a load
		// within the memory's limits is answered by the cache the second
		// time, one asking for more (readThrough) is not.
		check := func(step string, want shape, readThrough bool, lo ...memory.LoadOption) {
			t.Helper()
			for name, m := range s.reads {
				before := uint64(0)
				if s.hits != nil && name == "cached" {
					before = s.hits()
				}
				w, err := m.LoadContext(ctx, "s", lo...)
				require.NoError(t, err, "%s: %s", step, name)
				assert.Equal(t, want, shapeOf(w), "%s: %s", step, name)
				if s.hits == nil || name != "cached" || len(want.IDs) == 0 {
					continue
				}
				w, err = m.LoadContext(ctx, "s", lo...)
				require.NoError(t, err, "%s: %s, again", step, name)
				assert.Equal(t, want, shapeOf(w), "%s: %s, again", step, name)
				if !readThrough {
					assert.Greater(t, s.hits(), before, "%s: the cache answered", step)
				}
			}
		}

		check("no session", shape{}, false)
		require.NoError(t, s.write.SaveTurn(ctx, "s", memory.Turn{ID: "t1", User: big}))
		check("the only turn is over the budget", shape{IDs: []string{"t1"}, Tokens: 40, TurnCount: 1}, false)

		require.NoError(t, s.write.SaveTurn(ctx, "s", memory.Turn{ID: "t2", User: "ab"}))
		check("a small newest turn: the big one no longer fits", shape{IDs: []string{"t2"}, Tokens: 2, TurnCount: 2}, false)

		require.NoError(t, s.write.SaveTurn(ctx, "s", memory.Turn{ID: "t3", User: "cd", Agent: "ef"}))
		check("two small turns fit", shape{IDs: []string{"t2", "t3"}, Tokens: 6, TurnCount: 3}, false)

		require.NoError(t, s.write.AppendMessages(ctx, "s", "t3", memory.Message{ID: "a", Role: memory.RoleAssistant, Content: big}))
		check("the newest turn grew over the budget", shape{IDs: []string{"t3"}, Tokens: 44, TurnCount: 3}, false)

		check("per-call budget under the memory's", shape{IDs: []string{"t3"}, Tokens: 44, TurnCount: 3}, false, memory.LoadTokenBudget(1))
		check("per-call budget over the memory's", shape{IDs: []string{"t3"}, Tokens: 44, TurnCount: 3}, true, memory.LoadTokenBudget(45))
		check("per-call budget holding two turns", shape{IDs: []string{"t2", "t3"}, Tokens: 46, TurnCount: 3}, true, memory.LoadTokenBudget(46))
		check("no budget", shape{IDs: []string{"t1", "t2", "t3"}, Tokens: 86, TurnCount: 3}, true, memory.LoadTokenBudget(0))

		require.NoError(t, s.write.SaveTurn(ctx, "s", memory.Turn{ID: "t4", User: big + big}))
		check("a new newest turn over the budget", shape{IDs: []string{"t4"}, Tokens: 80, TurnCount: 4}, false)
		check("one turn at most", shape{IDs: []string{"t4"}, Tokens: 80, TurnCount: 4}, false, memory.LoadMaxTurns(1), memory.LoadTokenBudget(1))

		require.NoError(t, s.write.Clear(ctx, "s"))
		check("cleared", shape{}, false)
	})
}

// TrimWindow keeps the newest turn whatever the budget, and reports its
// tokens; only a window of no turns (maxTurns < 1, or none given) is
// empty.
func TestTrimWindowKeepsNewestTurn(t *testing.T) {
	turn := func(id string, tokens int) memory.Turn {
		return memory.Turn{ID: id, Messages: []memory.Message{{Tokens: tokens}}}
	}
	w := memory.Window{Turns: []memory.Turn{turn("a", 3), turn("b", 50)}, TurnCount: 9}
	for _, c := range []struct {
		maxTurns, budget int
		want             shape
	}{
		{10, 10, shape{IDs: []string{"b"}, Tokens: 50, TurnCount: 9}},
		{10, 1, shape{IDs: []string{"b"}, Tokens: 50, TurnCount: 9}},
		{10, 50, shape{IDs: []string{"b"}, Tokens: 50, TurnCount: 9}},
		{10, 53, shape{IDs: []string{"a", "b"}, Tokens: 53, TurnCount: 9}},
		{1, 1, shape{IDs: []string{"b"}, Tokens: 50, TurnCount: 9}},
		{0, 1, shape{TurnCount: 9}},
	} {
		assert.Equal(t, c.want, shapeOf(driver.TrimWindow(w, c.maxTurns, c.budget)), "maxTurns %d budget %d", c.maxTurns, c.budget)
	}
	assert.Equal(t, shape{TurnCount: 3}, shapeOf(driver.TrimWindow(memory.Window{TurnCount: 3}, 10, 1)), "no turns given")
}
