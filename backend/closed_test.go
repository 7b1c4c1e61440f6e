package backend

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// backendCalls calls every method of DataFlowBackend that returns an error,
// with valid arguments, on session "s".
func backendCalls() []struct {
	name string
	call func(ctx context.Context, b *DataFlowBackend) error
} {
	turn := driver.Turn{User: "u", Agent: "a", Metadata: map[string]any{"k": "v"}}
	return []struct {
		name string
		call func(ctx context.Context, b *DataFlowBackend) error
	}{
		{"SaveTurn", func(ctx context.Context, b *DataFlowBackend) error { return storeTurn(ctx, b, "s", turn) }},
		{"Save", func(ctx context.Context, b *DataFlowBackend) error {
			s, err := b.Save(ctx, "s", driver.PreparedTurn{Turn: turn})
			if s != (driver.Saved{}) {
				return errors.New("Save reported a save")
			}
			return err
		}},
		{"Save prepared", func(ctx context.Context, b *DataFlowBackend) error {
			p, err := driver.Prepare(turn, time.Now(), 0, nil)
			if err != nil {
				return err
			}
			s, err := b.Save(ctx, "s", p)
			if s != (driver.Saved{}) {
				return errors.New("Save reported a save")
			}
			return err
		}},
		{"Append", func(ctx context.Context, b *DataFlowBackend) error {
			s, err := b.Append(ctx, "s", "t", []driver.PreparedMessage{{Message: driver.Message{Role: driver.RoleAssistant, Content: "more"}}})
			if s != (driver.Saved{}) {
				return errors.New("Append reported a save")
			}
			return err
		}},
		{"LoadWindow", func(ctx context.Context, b *DataFlowBackend) error {
			w, err := readWindow(ctx, b, "s", 10)
			if w.TurnCount != 0 || len(w.Turns) != 0 {
				return errors.New("LoadWindow returned a window")
			}
			return err
		}},
		{"Load", func(ctx context.Context, b *DataFlowBackend) error {
			w, v, err := b.Load(ctx, "s", driver.WindowQuery{MaxTurns: 10, Known: driver.UnknownVersion})
			if w.TurnCount != 0 || len(w.Turns) != 0 || v != 0 {
				return errors.New("Load returned a window")
			}
			return err
		}},
		{"Load known", func(ctx context.Context, b *DataFlowBackend) error {
			w, v, err := b.Load(ctx, "s", driver.WindowQuery{MaxTurns: 10, Known: driver.NoSession})
			if w.TurnCount != 0 || len(w.Turns) != 0 || v != 0 {
				return errors.New("Load reported a change")
			}
			return err
		}},
		{"ClearSession", func(ctx context.Context, b *DataFlowBackend) error { return b.ClearSession(ctx, "s") }},
		{"SessionInfo", func(ctx context.Context, b *DataFlowBackend) error {
			_, err := b.SessionInfo(ctx, "s")
			return err
		}},
		{"Err", func(_ context.Context, b *DataFlowBackend) error { return b.Err() }},
	}
}

// The zero DataFlowBackend, and a nil one, fail every method with
// driver.ErrClosed and never panic.
func TestDataFlowBackendZeroValueClosed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		b    *DataFlowBackend
	}{
		{"zero", &DataFlowBackend{}},
		{"nil", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range backendCalls() {
				t.Run(c.name, func(t *testing.T) {
					var err error
					require.NotPanics(t, func() { err = c.call(ctx, tc.b) })
					assert.ErrorIs(t, err, driver.ErrClosed)
				})
			}
			assert.Nil(t, tc.b.DB(), "DB of a backend without one")

			// A memory over it fails the same way, and caches nothing.
			m := newMemory(t, tc.b, memory.WithStaleReads(time.Hour))
			_, err := m.LoadContext(ctx, "s")
			assert.ErrorIs(t, err, driver.ErrClosed, "LoadContext")
			assert.ErrorIs(t, m.SaveTurn(ctx, "s", driver.Turn{User: "u"}), driver.ErrClosed, "SaveTurn")
			assert.ErrorIs(t, m.Clear(ctx, "s"), driver.ErrClosed, "Clear")
		})
	}
}

// After the database is closed every backend method returns
// dataflow.ErrClosed: on a backend never used (its tables not yet checked)
// and on one in use.
func TestDataFlowBackendAfterClose(t *testing.T) {
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		for _, used := range []bool{false, true} {
			name := "never used"
			if used {
				name = "in use"
			}
			t.Run(name, func(t *testing.T) {
				db, err := dataflow.Open(ctx, url)
				require.NoError(t, err)
				b, err := NewDataFlowBackend(db)
				require.NoError(t, err)
				if used {
					require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: "before close"}))
					_, err := readWindow(ctx, b, "s", 10)
					require.NoError(t, err)
				}
				require.NoError(t, b.Err(), "Err of an open database")
				require.NoError(t, db.Close())
				for _, c := range backendCalls() {
					t.Run(c.name, func(t *testing.T) {
						var err error
						require.NotPanics(t, func() { err = c.call(ctx, b) })
						assert.ErrorIs(t, err, dataflow.ErrClosed)
					})
				}
				assert.Same(t, db, b.DB(), "DB after Close")
			})
		}
	})
}

// A PersistentBufferMemory never answers from its cache once the database
// is closed: not when it confirms cached windows with the backend (the
// default), nor when it may serve them unconfirmed (WithStaleReads).
func TestPersistentMemoryOverClosedDataFlow(t *testing.T) {
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		for _, mode := range []struct {
			name string
			opts []memory.Option
		}{
			{"default", []memory.Option{memory.WithCacheTTL(time.Hour)}},
			{"stale reads", []memory.Option{memory.WithCacheTTL(time.Hour), memory.WithStaleReads(time.Hour)}},
		} {
			t.Run(mode.name, func(t *testing.T) {
				db, err := dataflow.Open(ctx, d.URL(t))
				require.NoError(t, err)
				b, err := NewDataFlowBackend(db)
				require.NoError(t, err)
				m := newMemory(t, b, mode.opts...)
				require.NoError(t, m.SaveTurn(ctx, "s", driver.Turn{User: "u", Agent: "a"}))
				w, err := m.LoadContext(ctx, "s")
				require.NoError(t, err)
				require.Equal(t, 1, w.TurnCount)
				// The window is cached: a second load is a hit.
				hits := m.Stats().Hits
				_, err = m.LoadContext(ctx, "s")
				require.NoError(t, err)
				require.Equal(t, hits+1, m.Stats().Hits, "the window was not cached before Close")

				require.NoError(t, db.Close())
				hits = m.Stats().Hits
				for i := range 2 { // the failure is not cached either
					w, err := m.LoadContext(ctx, "s")
					assert.ErrorIs(t, err, dataflow.ErrClosed, "load %d after Close", i)
					assert.Equal(t, driver.Window{}, w, "load %d after Close", i)
				}
				assert.Equal(t, hits, m.Stats().Hits, "answered from the cache after Close")
				assert.ErrorIs(t, m.SaveTurn(ctx, "s", driver.Turn{User: "u2"}), dataflow.ErrClosed, "SaveTurn after Close")
				assert.ErrorIs(t, m.Clear(ctx, "s"), dataflow.ErrClosed, "Clear after Close")
			})
		}
	})
}
