package backend

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
)

// A database with no summaries table (an earlier release's), opened with
// auto-migration off, has no summaries: a load asking for one, a clear, a
// replacement and a deletion all work without the table.
func TestSummariesTableMissingAutoMigrateOff(t *testing.T) {
	ctx := context.Background()
	url := "sqlite:///" + filepath.Join(t.TempDir(), "old.db")
	db, err := dataflow.Open(ctx, url)
	require.NoError(t, err)
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, storeTurn(ctx, b, id, driver.Turn{User: "q", Agent: "a"}))
	}
	require.NoError(t, db.Close())

	db, err = dataflow.Open(ctx, url, dataflow.WithAutoMigrate(false))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	b, err = NewDataFlowBackend(db)
	require.NoError(t, err)
	w, _, err := b.Load(ctx, "a", driver.WindowQuery{MaxTurns: 5, Known: driver.UnknownVersion, Summary: true})
	require.NoError(t, err)
	assert.Nil(t, w.Summary)
	assert.Len(t, w.Turns, 1)
	require.NoError(t, b.ClearSession(ctx, "a"))
	p, err := driver.Prepare(driver.Turn{User: "new"}, now(), 0, nil)
	require.NoError(t, err)
	_, err = b.Replace(ctx, "b", []driver.PreparedTurn{p})
	require.NoError(t, err)
	_, _, err = b.DeleteSessions(ctx, "", nil, now().Add(1e9), 10)
	require.NoError(t, err)
	ok, err := b.summaries(ctx)
	require.NoError(t, err)
	assert.False(t, ok, "no summaries table was made")
}

// discardSummarizer returns a fixed text: what a save costs with a
// summarizer set, not the summarizer's own work.
type discardSummarizer struct{}

func (discardSummarizer) Summarize(context.Context, memory.SummaryRequest) (string, error) {
	return "summary", nil
}

// With a summarizer set, a save runs the statements it runs without one,
// and a load of the window with its summary is one statement, on every
// dialect; the summary's columns are read by the session key.
func TestSummaryStatementCounts(t *testing.T) {
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		b, rec := newEnv(t, d)
		plain := newMemory(t, b, memory.WithMaxTurns(3), memory.WithCacheTTL(0))
		summed := newMemory(t, b, memory.WithMaxTurns(3), memory.WithCacheTTL(0), memory.WithSummarizer(discardSummarizer{}, 50))
		t.Cleanup(func() { _ = summed.Close() })
		// Warm-up: every table's first use.
		require.NoError(t, plain.SaveTurn(ctx, "warm", driver.Turn{User: "u"}))
		require.NoError(t, plain.Clear(ctx, "warm"))
		for i := range 5 {
			require.NoError(t, summed.SaveTurn(ctx, "s", driver.Turn{User: fmt.Sprint("u", i)}))
		}
		_, err := summed.Summarize(ctx, "s")
		require.NoError(t, err)
		// The worker may still look at "s" (queued by the saves), and it
		// folds a session at most once a second, deferring a later save's
		// fold to then: wait until the database has been quiet for longer
		// than that, so that only the calls below count.
		require.Eventually(t, func() bool {
			rec.take()
			time.Sleep(1200 * time.Millisecond)
			return len(rec.take()) == 0
		}, 20*time.Second, time.Millisecond)

		var saves [2][]string
		for i, m := range []*memory.PersistentBufferMemory{plain, summed} {
			rec.take()
			require.NoError(t, m.SaveTurn(ctx, fmt.Sprint("fresh-", i), driver.Turn{User: "u"})) // a first turn: nothing leaves the window
			saves[i] = byKind(rec.take())[kindData]
		}
		assert.Equal(t, len(saves[0]), len(saves[1]), "a save with a summarizer: %q; without: %q", saves[1], saves[0])

		rec.take()
		w, err := summed.LoadContext(ctx, "s")
		require.NoError(t, err)
		kinds := byKind(rec.take())
		require.NotNil(t, w.Summary)
		assert.Equal(t, 2, w.Summary.Turns)
		if assert.Len(t, kinds[kindData], 1, "a load with its summary: %q", kinds[kindData]) {
			assert.Contains(t, kinds[kindData][0], SummariesTable+" x WHERE x.id = s.id")
		}
		assert.Empty(t, kinds[kindTx])
	})
}
