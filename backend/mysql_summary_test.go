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
	"github.com/turnkeep/turnkeep/memory"
)

// Summaries on MariaDB (the MySQL forms of the lease and the put): a
// lease is the first owner's until it expires or is ended, a write is
// guarded by the owner and the coverage and gives the session a new
// version, a release writes nothing, a put and an import store a summary,
// a clear deletes it, and a memory with a summarizer folds what left the
// window.
func TestMySQLSummaries(t *testing.T) {
	b := newMySQLBackend(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := driver.SessionKey("acme", "s")
	for i := range 4 {
		require.NoError(t, storeTurn(ctx, b, key, driver.Turn{ID: fmt.Sprint("t", i), User: fmt.Sprint("u", i), Agent: "a", Timestamp: time.Now()}))
	}
	load := func() (driver.Window, driver.Version) {
		t.Helper()
		w, v, err := b.Load(ctx, key, driver.WindowQuery{MaxTurns: 1, Known: driver.UnknownVersion, Summary: true})
		require.NoError(t, err)
		return w, v
	}

	// No session: no lease.
	_, ok, err := b.LeaseSummary(ctx, driver.SessionKey("acme", "none"), "A", time.Now().Add(time.Minute))
	require.NoError(t, err)
	assert.False(t, ok, "a lease of no session")

	s, ok, err := b.LeaseSummary(ctx, key, "A", time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.True(t, ok, "A takes the free lease")
	assert.Equal(t, driver.Summary{}, driver.Summary{Text: s.Text, Turns: s.Turns, Tokens: s.Tokens})
	_, ok, err = b.LeaseSummary(ctx, key, "B", time.Now().Add(time.Minute))
	require.NoError(t, err)
	assert.False(t, ok, "B cannot take A's unexpired lease")

	ok, err = b.WriteSummary(ctx, key, "B", 0, driver.Summary{Text: "by B", Turns: 2, Tokens: 2, UpdatedAt: time.Now()})
	require.NoError(t, err)
	assert.False(t, ok, "B does not hold the lease")
	ok, err = b.WriteSummary(ctx, key, "A", 1, driver.Summary{Text: "stale", Turns: 2, Tokens: 2, UpdatedAt: time.Now()})
	require.NoError(t, err)
	assert.False(t, ok, "the stored summary covers 0 turns, not 1")
	_, v0 := load()
	ok, err = b.WriteSummary(ctx, key, "A", 0, driver.Summary{Text: "u0 and u1", Turns: 2, Tokens: 3, UpdatedAt: time.Now()})
	require.NoError(t, err)
	require.True(t, ok, "A writes under its lease")
	w, v1 := load()
	assert.NotEqual(t, v0, v1, "a write gives the session a new version")
	require.NotNil(t, w.Summary)
	assert.Equal(t, "u0 and u1", w.Summary.Text)
	assert.Equal(t, 2, w.Summary.Turns)
	assert.Equal(t, 3, w.Summary.Tokens)

	// The write ended A's lease: B takes it, with the summary, and a
	// release ends it writing nothing.
	s, ok, err = b.LeaseSummary(ctx, key, "B", time.Now().Add(time.Minute))
	require.NoError(t, err)
	require.True(t, ok, "the write ended A's lease")
	assert.Equal(t, "u0 and u1", s.Text)
	assert.Equal(t, 2, s.Turns)
	require.NoError(t, b.ReleaseSummary(ctx, key, "B"))
	w, _ = load()
	assert.Equal(t, "u0 and u1", w.Summary.Text, "a release writes nothing")

	// An expired lease is taken over.
	_, ok, err = b.LeaseSummary(ctx, key, "A", time.Now().Add(-time.Second))
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = b.LeaseSummary(ctx, key, "B", time.Now().Add(time.Minute))
	require.NoError(t, err)
	assert.True(t, ok, "B takes A's expired lease")
	ok, err = b.WriteSummary(ctx, key, "A", 2, driver.Summary{Text: "late", Turns: 3, UpdatedAt: time.Now()})
	require.NoError(t, err)
	assert.False(t, ok, "A's expired lease writes nothing")
	require.NoError(t, b.ReleaseSummary(ctx, key, "B"))

	turns, err := b.SummaryTurns(ctx, key, 2, 4, 50)
	require.NoError(t, err)
	require.Len(t, turns, 2)
	assert.Equal(t, "t2", turns[0].ID)

	require.NoError(t, b.PutSummary(ctx, key, driver.Summary{Text: "put", Turns: 3, Tokens: 1, UpdatedAt: time.Now()}))
	w, _ = load()
	assert.Equal(t, "put", w.Summary.Text)
	require.NoError(t, b.PutSummary(ctx, key, driver.Summary{Text: "put again", Turns: 4, Tokens: 1, UpdatedAt: time.Now()}))
	w, _ = load()
	assert.Equal(t, "put again", w.Summary.Text)
	assert.Equal(t, 4, w.Summary.Turns)

	require.NoError(t, b.ClearSession(ctx, key))
	w, _ = load()
	assert.Nil(t, w.Summary, "a clear deletes the summary")

	// An import with a summary, all or nothing.
	m := newMemory(t, b)
	file := importLines(importHeadSummary("imp", 2, 1, "the user is Ada"),
		importTurn("t1", "m1=I am Ada", "m2=hi"), importTurn("t2", "m3=more", "m4=ok"))
	fault := fmt.Errorf("fault after the summary")
	importFault = func(string) error { return fault }
	_, err = m.Import(ctx, strings.NewReader(file))
	importFault = nil
	require.ErrorIs(t, err, fault)
	assert.Nil(t, storedSummaryOf(t, b, "imp"))
	_, count := heldTurns(t, m, "imp")
	assert.Equal(t, -1, count)
	_, err = m.Import(ctx, strings.NewReader(file))
	require.NoError(t, err)
	require.NotNil(t, storedSummaryOf(t, b, "imp"))
	assert.Equal(t, "the user is Ada", storedSummaryOf(t, b, "imp").Text)

	// A memory with a summarizer folds what left its window.
	sm := newMemory(t, b, memory.WithMaxTurns(2), memory.WithSummarizer(discardSummarizer{}, 50))
	t.Cleanup(func() { _ = sm.Close() })
	for i := range 5 {
		require.NoError(t, sm.SaveTurn(ctx, "fold", driver.Turn{User: fmt.Sprint("u", i), Agent: "a"}))
	}
	sum, err := sm.Summarize(ctx, "fold")
	require.NoError(t, err)
	assert.Equal(t, 3, sum.Turns)
	win, err := sm.LoadContext(ctx, "fold")
	require.NoError(t, err)
	require.NotNil(t, win.Summary)
	assert.Equal(t, 0, win.Unsummarized)
	assert.Equal(t, win.TurnCount, win.Summary.Turns+win.Unsummarized+len(win.Turns))
}
