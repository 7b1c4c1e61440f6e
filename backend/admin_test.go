package backend

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/memory"
	"github.com/turnkeep/turnkeep/migrate"
)

func openAdmin(t *testing.T, d dbtest.Dialect, url string, opts ...dataflow.Option) (*dataflow.DB, *DataFlowBackend, *memory.PersistentBufferMemory) {
	t.Helper()
	db, err := dataflow.Open(context.Background(), url, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	b, err := NewDataFlowBackend(db)
	require.NoError(t, err)
	m, err := memory.NewPersistentBufferMemory(b)
	require.NoError(t, err)
	return db, b, m
}

// Models are what the engine migrates: after the engine made the tables,
// each is up to date and plans no step; and tables made from Models alone,
// with auto-migration off, are ones the engine takes as they are.
func TestModelsMatchRegistered(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := d.URL(t)
		db, b, m := openAdmin(t, d, url)
		require.NoError(t, m.SaveTurn(ctx, "s1", driver.Turn{User: "hi", Agent: "hello"}))
		models := b.Models()
		require.Len(t, models, 3)
		for _, model := range models {
			st, err := db.Migrator().Check(ctx, model)
			require.NoError(t, err)
			require.Equal(t, migrate.UpToDate, st, "%T", model.Value)
			p, err := db.Migrator().Plan(ctx, model)
			require.NoError(t, err)
			require.True(t, p.Empty(), "%T: got steps %v; want none", model.Value, p.Steps)
		}

		fresh := d.URL(t)
		db2, b2, m2 := openAdmin(t, d, fresh, dataflow.WithAutoMigrate(false))
		err := m2.SaveTurn(ctx, "s1", driver.Turn{User: "hi", Agent: "hello"})
		require.ErrorIs(t, err, dataflow.ErrTableMissing)
		for _, model := range b2.Models() {
			res, err := db2.Migrator().Apply(ctx, model, false)
			require.NoError(t, err)
			require.NotEmpty(t, res.Applied)
		}
		// A new process (the failed first use above is backed off in this one).
		_, _, m3 := openAdmin(t, d, fresh, dataflow.WithAutoMigrate(false))
		require.NoError(t, m3.SaveTurn(ctx, "s1", driver.Turn{User: "hi", Agent: "hello"}))
	})
}

func TestTenantCountsAndSize(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		_, b, m := openAdmin(t, d, d.URL(t))
		size0, err := b.DatabaseSize(ctx)
		require.NoError(t, err)
		require.GreaterOrEqual(t, size0, int64(0))

		counts, err := b.TenantCounts(ctx)
		require.NoError(t, err)
		require.Empty(t, counts)

		require.NoError(t, m.SaveTurn(ctx, "a", driver.Turn{User: "1", Agent: "2"}))
		require.NoError(t, m.SaveTurn(ctx, "a", driver.Turn{User: "3", Agent: "4"}))
		acme := m.ForTenant("acme")
		require.NoError(t, acme.SaveTurn(ctx, "a", driver.Turn{Messages: []driver.Message{{Role: driver.RoleUser, Content: "x"}}}))
		require.NoError(t, acme.CreateSession(ctx, driver.SessionInfo{ID: "empty", User: "ada"}))

		counts, err = b.TenantCounts(ctx)
		require.NoError(t, err)
		require.Equal(t, []TenantCount{
			{Tenant: "", Sessions: 1, Turns: 2, Messages: 4},
			{Tenant: "acme", Sessions: 2, Turns: 1, Messages: 1},
		}, counts)

		size, err := b.DatabaseSize(ctx)
		require.NoError(t, err)
		require.Greater(t, size, int64(0))
	})
}

// EnsureSearchIndex makes the index a schema migrated by hand lacks, so
// the first saves are found.
func TestEnsureSearchIndex(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		url := d.URL(t)
		db, b, _ := openAdmin(t, d, url)
		for _, model := range b.Models() {
			_, err := db.Migrator().Apply(ctx, model, false)
			require.NoError(t, err)
		}
		require.NoError(t, b.EnsureSearchIndex(ctx))
		require.NoError(t, b.EnsureSearchIndex(ctx)) // idempotent
		require.NoError(t, db.Close())

		_, _, m := openAdmin(t, d, url, dataflow.WithAutoMigrate(false))
		require.NoError(t, m.SaveTurn(ctx, "s", driver.Turn{User: "find the pineapple", Agent: "ok"}))
		hits, err := m.Search(ctx, driver.SearchQuery{Text: "pineapple"})
		require.NoError(t, err)
		require.Len(t, hits, 1)
	})
}

func TestAdminZeroAndClosed(t *testing.T) {
	var zero DataFlowBackend
	_, err := zero.TenantCounts(context.Background())
	require.ErrorIs(t, err, driver.ErrClosed)
	_, err = zero.DatabaseSize(context.Background())
	require.ErrorIs(t, err, driver.ErrClosed)
	require.ErrorIs(t, zero.EnsureSearchIndex(context.Background()), driver.ErrClosed)
}
