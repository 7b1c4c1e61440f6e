package backend

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// On the MySQL family (holeyReads) a window whose rows are not the newest
// turns of its count is read again, loadReads reads in all, and the last
// read is returned as it is; elsewhere, and when whole, it is read once.
func TestLoadRereadsWindowWithHole(t *testing.T) {
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, rec := newEnv(t, d)
		holey, rereads := 1, 0 // the reads of a range with a hole, the rereads of one
		if d.Name == "mysql" {
			holey, rereads = 3, 2
		}
		for i := range 5 {
			require.NoError(t, storeTurn(ctx, b, "s", driver.Turn{User: fmt.Sprint("u", i), Agent: "a"}))
		}
		turnSeqs := func(w driver.Window) []int {
			var out []int
			for _, turn := range w.Turns {
				out = append(out, turn.Seq)
			}
			return out
		}

		// reads counts the load statements run since its last call.
		reads := func() int {
			n := 0
			for _, q := range rec.take() {
				if strings.Contains(q, "WITH RECURSIVE h AS") {
					n++
				}
			}
			return n
		}

		reads()
		w, err := readWindow(ctx, b, "s", 3)
		require.NoError(t, err)
		assert.Equal(t, []int{3, 4, 5}, turnSeqs(w))
		assert.Equal(t, 1, reads(), "a whole window is read once")
		assert.Zero(t, b.EngineStats()["load_rereads"])

		// A hole no read closes: the turn's rows are gone.
		_, err = b.db.ExecContext(ctx, `DELETE FROM `+MessagesTable+` WHERE seq = 4`)
		require.NoError(t, err)
		reads()
		w, err = readWindow(ctx, b, "s", 3)
		require.NoError(t, err)
		assert.Equal(t, []int{3, 5}, turnSeqs(w), "the last read, as it is")
		assert.Equal(t, 5, w.TurnCount)
		assert.Equal(t, holey, reads())
		assert.EqualValues(t, rereads, b.EngineStats()["load_rereads"])

		// History pages likewise.
		page, err := b.History(ctx, "s", driver.HistoryQuery{Limit: 2})
		require.NoError(t, err)
		assert.Equal(t, []int{1, 2}, turnSeqs(driver.Window{Turns: page.Turns}))
		assert.Equal(t, 1, reads())
		page, err = b.History(ctx, "s", driver.HistoryQuery{Limit: 2, After: page.Next})
		require.NoError(t, err)
		assert.Equal(t, []int{3}, turnSeqs(driver.Window{Turns: page.Turns}))
		assert.Equal(t, holey, reads())
		page, err = b.History(ctx, "s", driver.HistoryQuery{Limit: 3, NewestFirst: true})
		require.NoError(t, err)
		assert.Equal(t, []int{5, 3}, turnSeqs(driver.Window{Turns: page.Turns}))
		assert.Equal(t, holey, reads())
		assert.EqualValues(t, 3*rereads, b.EngineStats()["load_rereads"])
	})
}

func TestPageWhole(t *testing.T) {
	page := func(count int, seqs ...int) driver.Window {
		w := driver.Window{TurnCount: count}
		for _, s := range seqs {
			w.Turns = append(w.Turns, driver.Turn{Seq: s})
		}
		return w
	}
	for _, c := range []struct {
		name   string
		w      driver.Window
		lo, hi any
		limit  int64
		whole  bool
	}{
		{"no session", page(0), nil, nil, 3, true},
		{"newest", page(9, 7, 8, 9), nil, nil, 3, true},
		{"newest, short session", page(2, 1, 2), nil, nil, 3, true},
		{"newest with a hole", page(9, 7, 9), nil, nil, 3, false},
		{"newest missing", page(9, 6, 7, 8), nil, nil, 3, false},
		{"first page", page(9, 1, 2, 3), int64(0), int64(3), 3, true},
		{"last page, short", page(9, 8, 9), int64(7), int64(10), 3, true},
		{"past the end", page(9), int64(9), int64(12), 3, true},
		{"page with a hole", page(9, 4, 6), int64(3), int64(6), 3, false},
		{"page missing its first", page(9, 5, 6), int64(3), int64(6), 3, false},
		{"count without rows", page(4), int64(0), int64(3), 3, false},
	} {
		assert.Equal(t, c.whole, pageWhole(c.w, c.lo, c.hi, c.limit), c.name)
	}
}

func TestWhole(t *testing.T) {
	turns := func(seqs ...int) []driver.Turn {
		var out []driver.Turn
		for _, s := range seqs {
			out = append(out, driver.Turn{Seq: s})
		}
		return out
	}
	for _, c := range []struct {
		name  string
		w     driver.Window
		q     driver.WindowQuery
		whole bool
	}{
		{"no session", driver.Window{}, driver.WindowQuery{MaxTurns: 4}, true},
		{"count without rows", driver.Window{TurnCount: 2}, driver.WindowQuery{MaxTurns: 4}, false},
		{"newest turns", driver.Window{TurnCount: 9, Turns: turns(6, 7, 8, 9)}, driver.WindowQuery{MaxTurns: 4}, true},
		{"short session", driver.Window{TurnCount: 2, Turns: turns(1, 2)}, driver.WindowQuery{MaxTurns: 4}, true},
		{"hole", driver.Window{TurnCount: 9, Turns: turns(6, 7, 9)}, driver.WindowQuery{MaxTurns: 4}, false},
		{"oldest missing", driver.Window{TurnCount: 9, Turns: turns(7, 8, 9)}, driver.WindowQuery{MaxTurns: 4}, false},
		{"newest missing", driver.Window{TurnCount: 9, Turns: turns(5, 6, 7, 8)}, driver.WindowQuery{MaxTurns: 4}, false},
		{"budget", driver.Window{TurnCount: 9, Turns: turns(8, 9)}, driver.WindowQuery{MaxTurns: 4, TokenBudget: 10}, true},
		{"budget with a hole", driver.Window{TurnCount: 9, Turns: turns(7, 9)}, driver.WindowQuery{MaxTurns: 4, TokenBudget: 10}, false},
	} {
		assert.Equal(t, c.whole, whole(c.w, c.q), c.name)
	}
}
