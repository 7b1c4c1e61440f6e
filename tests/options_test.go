package tests

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/backend"
	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/migrate"
)

// Options behave alike in every package: a nil option is an error from the
// constructor, never skipped and never a panic; an option that only Open
// can apply is refused by New instead of being ignored.
func TestOptionsBehaveAlike(t *testing.T) {
	ctx := context.Background()
	url := dbtest.SQLiteURL(t)

	_, err := dataflow.Open(ctx, url, nil)
	require.ErrorIs(t, err, dataflow.ErrInvalidOption, "dataflow.Open")
	db := openDB(t, url)
	_, err = dataflow.New(db.Bun(), nil)
	require.ErrorIs(t, err, dataflow.ErrInvalidOption, "dataflow.New")
	_, err = migrate.New(db.Bun(), nil)
	require.ErrorIs(t, err, migrate.ErrInvalidOption, "migrate.New")
	_, err = backend.NewDataFlowBackend(db, nil)
	require.ErrorIs(t, err, memory.ErrInvalidOption, "backend.NewDataFlowBackend")
	_, err = memory.NewPersistentBufferMemory(backend.NewInMemoryBackend(), nil)
	require.ErrorIs(t, err, memory.ErrInvalidOption, "memory.NewPersistentBufferMemory")

	for name, opt := range map[string]dataflow.Option{
		"WithBusyTimeout":     dataflow.WithBusyTimeout(0),
		"WithSynchronousFull": dataflow.WithSynchronousFull(true),
		"WithMaxOpenConns":    dataflow.WithMaxOpenConns(4),
		"WithCheckpointEvery": dataflow.WithCheckpointEvery(0),
	} {
		_, err := dataflow.New(db.Bun(), opt)
		require.ErrorIs(t, err, dataflow.ErrInvalidOption, "New(%s)", name)
		require.ErrorContains(t, err, name)
	}
}
