package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/summarize"
)

// copy copies a session's summary, to every engine; sessions show
// prints it.
func TestCopyAndShowSummary(t *testing.T) {
	ctx := context.Background()
	src := dbtest.SQLiteURL(t)
	db, err := dataflow.Open(ctx, src)
	require.NoError(t, err)
	b, err := backend.NewDataFlowBackend(db)
	require.NoError(t, err)
	m, err := memory.NewPersistentBufferMemory(b, memory.WithMaxTurns(2),
		memory.WithSummarizer(summarize.NewExtractive(nil), 100))
	require.NoError(t, err)
	m = m.ForTenant("acme")
	require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{User: "I am Ada Lovelace, born 1815.", Agent: "Noted."}))
	for range 4 {
		require.NoError(t, m.SaveTurn(ctx, "s1", memory.Turn{User: "go on", Agent: "ok"}))
	}
	sum, err := m.Summarize(ctx, "s1")
	require.NoError(t, err)
	require.Equal(t, 3, sum.Turns)
	require.Contains(t, sum.Text, "Ada Lovelace")
	require.NoError(t, m.Close())
	require.NoError(t, db.Close())

	r := run(t, "", "sessions", "show", "s1", "--tenant", "acme", "--db", src).want(t, 0)
	require.Contains(t, r.stdout, "summary of turns 1-3")
	require.Contains(t, r.stdout, "Ada Lovelace, born 1815")

	// To each engine: SQLite, and PostgreSQL and MariaDB when their
	// variables are set.
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		dst := d.URL(t)
		run(t, "", "copy", "--from", src, "--to", dst).want(t, 0)
		db, err := dataflow.Open(ctx, dst)
		require.NoError(t, err)
		defer db.Close()
		b, err := backend.NewDataFlowBackend(db)
		require.NoError(t, err)
		w, _, err := b.Load(ctx, driver.SessionKey("acme", "s1"), driver.WindowQuery{MaxTurns: 2, Known: driver.UnknownVersion, Summary: true})
		require.NoError(t, err)
		require.NotNil(t, w.Summary, "the copy holds the summary")
		require.Equal(t, sum.Text, w.Summary.Text)
		require.Equal(t, sum.Turns, w.Summary.Turns)
		require.Equal(t, sum.Tokens, w.Summary.Tokens)
		require.True(t, sum.UpdatedAt.Equal(w.Summary.UpdatedAt), "updated %v; want %v", w.Summary.UpdatedAt, sum.UpdatedAt)
		r := run(t, "", "sessions", "show", "s1", "--tenant", "acme", "--db", dst).want(t, 0)
		require.Contains(t, r.stdout, "summary of turns 1-3")
	})
}
