package backend

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A save writes no search entry: it queues its messages; a search on
// another backend of the same file (another server) finds them, having
// caught the index up, and empties the queue.
func TestSQLiteSearchQueueReadYourWrites(t *testing.T) {
	ctx := context.Background()
	url := dbtest.SQLiteURL(t)
	dbA, _ := openDB(t, url)
	dbB, _ := openDB(t, url)
	a, err := NewDataFlowBackend(dbA)
	require.NoError(t, err)
	b, err := NewDataFlowBackend(dbB)
	require.NoError(t, err)

	key := driver.SessionKey("acme", "s1")
	require.NoError(t, storeTurn(ctx, a, key, driver.Turn{User: "where is the lighthouse", Agent: "past the harbour"}))
	assert.Equal(t, 0, countQuery(t, dbA, `SELECT count(*) FROM `+SearchTable), "search entries written by the save")
	assert.Equal(t, 2, countQuery(t, dbA, `SELECT count(*) FROM `+SearchQueueTable+` WHERE tenant = 'acme'`), "messages queued by the save")

	hits, err := b.Search(ctx, "acme", driver.SearchQuery{Text: "lighthouse", Limit: 10})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	assert.Equal(t, "s1", hits[0].SessionID)
	assert.Equal(t, 0, countQuery(t, dbA, `SELECT count(*) FROM `+SearchQueueTable), "queued messages after the search")
	assert.Equal(t, 2, countQuery(t, dbA, `SELECT count(*) FROM `+SearchTable), "search entries after the search")

	// Another tenant's search catches up its own queue only.
	other := driver.SessionKey("other", "s1")
	require.NoError(t, storeTurn(ctx, a, other, driver.Turn{User: "lighthouse keeper", Agent: "hello"}))
	hits, err = b.Search(ctx, "acme", driver.SearchQuery{Text: "lighthouse", Limit: 10})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	assert.Equal(t, 2, countQuery(t, dbA, `SELECT count(*) FROM `+SearchQueueTable+` WHERE tenant = 'other'`), "the other tenant's queue after acme's search")
	hits, err = b.Search(ctx, "other", driver.SearchQuery{Text: "lighthouse", Limit: 10})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	assert.Equal(t, 0, countQuery(t, dbA, `SELECT count(*) FROM `+SearchQueueTable), "queued messages after both searches")
}

// A backend that has queued searchCatchUpAfter messages catches the index
// up after the save that crossed it, with no search.
func TestSQLiteSearchQueueCatchesUpAfterSaves(t *testing.T) {
	ctx := context.Background()
	b, _ := newEnv(t, dbtest.Dialect{Name: "sqlite", URL: dbtest.SQLiteURL})
	saves := searchCatchUpAfter / 2
	for i := range saves - 1 {
		require.NoError(t, storeTurn(ctx, b, fmt.Sprintf("s%d", i%7), driver.Turn{User: fmt.Sprintf("question %d", i), Agent: "answer"}))
	}
	assert.Equal(t, 2*(saves-1), countQuery(t, b.db, `SELECT count(*) FROM `+SearchQueueTable), "queued before the threshold")
	require.NoError(t, storeTurn(ctx, b, "s0", driver.Turn{User: "the last one", Agent: "answer"}))
	assert.Equal(t, 0, countQuery(t, b.db, `SELECT count(*) FROM `+SearchQueueTable), "queued after the threshold")
	assert.Equal(t, 2*saves, countQuery(t, b.db, `SELECT count(*) FROM `+SearchTable), "search entries after the threshold")
}

// A catch-up takes at most searchBatch messages, or searchBatchBytes of
// text, per transaction, and goes on until the queue is empty: more
// messages than a batch, and a few large ones past the bytes bound, are
// all indexed by one search.
func TestSQLiteSearchQueueBatchBounds(t *testing.T) {
	ctx := context.Background()
	b, _ := newEnv(t, dbtest.Dialect{Name: "sqlite", URL: dbtest.SQLiteURL})
	big := strings.Repeat("ballast ", driver.DefaultMaxMessageBytes/8-64)
	n := searchBatchBytes/len(big) + 2
	for i := range n {
		require.NoError(t, storeTurn(ctx, b, "big", driver.Turn{User: fmt.Sprintf("large%d ", i) + big, Agent: "ok"}))
	}
	small := searchBatch + 10
	for i := range small {
		require.NoError(t, storeTurn(ctx, b, driver.SessionKey("", fmt.Sprintf("s%d", i%5)), driver.Turn{User: fmt.Sprintf("small%d lantern", i), Agent: "ok"}))
	}
	queued := 2 * (n + small)
	hits, err := b.Search(ctx, "", driver.SearchQuery{Text: "lantern", Limit: driver.MaxListLimit})
	require.NoError(t, err)
	assert.Len(t, hits, small)
	for i := range n {
		hits, err := b.Search(ctx, "", driver.SearchQuery{Text: fmt.Sprintf("large%d", i)})
		require.NoError(t, err)
		assert.Len(t, hits, 1, "large message %d", i)
	}
	assert.Equal(t, 0, countQuery(t, b.db, `SELECT count(*) FROM `+SearchQueueTable), "queued after the search")
	assert.Equal(t, queued, countQuery(t, b.db, `SELECT count(*) FROM `+SearchTable), "search entries")
}

// What deletes a session (a clear, a replace, expiry) before the
// index caught up leaves nothing of it queued, and a catch-up then indexes
// only what is stored.
func TestSQLiteSearchQueueErasure(t *testing.T) {
	ctx := context.Background()
	b, _ := newEnv(t, dbtest.Dialect{Name: "sqlite", URL: dbtest.SQLiteURL})
	keep, cleared, replaced := driver.SessionKey("t", "keep"), driver.SessionKey("t", "cleared"), driver.SessionKey("t", "replaced")
	for _, k := range []string{keep, cleared, replaced} {
		require.NoError(t, storeTurn(ctx, b, k, driver.Turn{User: "secret walrus " + k, Agent: "noted"}))
	}
	require.NoError(t, b.ClearSession(ctx, cleared))
	_, err := b.Replace(ctx, replaced, []driver.PreparedTurn{{Turn: driver.Turn{User: "new words", Agent: "only"}}})
	require.NoError(t, err)

	assert.Equal(t, 0, countQuery(t, b.db, `SELECT count(*) FROM `+SearchQueueTable+` WHERE skey = ?`, cleared), "queued rows of the cleared session")
	assert.Equal(t, 2, countQuery(t, b.db, `SELECT count(*) FROM `+SearchQueueTable+` WHERE skey = ?`, replaced), "queued rows of the replaced session: its new turn")
	hits, err := b.Search(ctx, "t", driver.SearchQuery{Text: "walrus", Limit: 10})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	assert.Equal(t, "keep", hits[0].SessionID)
	hits, err = b.Search(ctx, "t", driver.SearchQuery{Text: "new words", Limit: 10})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	assertNoOrphans(t, b)

	// Expiry deletes sessions by the batch: their queued rows go too.
	for _, id := range []string{"e1", "e2", "e3"} {
		require.NoError(t, storeTurn(ctx, b, driver.SessionKey("x", id), driver.Turn{User: "expiring walrus", Agent: "noted"}))
	}
	report, keys, err := b.DeleteSessions(ctx, "x", nil, time.Now().Add(time.Hour), 100)
	require.NoError(t, err)
	require.Len(t, keys, 3, "deleted: %+v", report)
	assert.Equal(t, 0, countQuery(t, b.db, `SELECT count(*) FROM `+SearchQueueTable+` WHERE tenant = 'x'`), "queued rows of expired sessions")
	hits, err = b.Search(ctx, "x", driver.SearchQuery{Text: "walrus", Limit: 10})
	require.NoError(t, err)
	assert.Empty(t, hits)
	assertNoOrphans(t, b)
}
