package backend

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
	"github.com/turnkeep/turnkeep/memory"
)

// noDDLModes are the engine options under which a client promises not to
// change the schema (dataflow.DB.SchemaChanges is false).
var noDDLModes = []struct {
	name string
	opt  dataflow.Option
}{
	{"AutoMigrateOff", dataflow.WithAutoMigrate(false)},
	{"ExistingSchema", dataflow.WithExistingSchemaMode(true)},
}

// openDBWith opens url with a recorder hook and opts.
func openDBWith(t *testing.T, url string, opts ...dataflow.Option) (*dataflow.DB, *recorder) {
	t.Helper()
	rec := &recorder{}
	db, err := dataflow.Open(context.Background(), url, append([]dataflow.Option{dataflow.WithQueryHook(rec)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db, rec
}

// useEverything runs the public operations of a memory with a summarizer
// over b, each on sessions of its own named by tag: saves, an append, a
// load, a summary, a search, a listing, a history page, a fork, a clear,
// the deletion of a user's sessions and an expiry. It returns the first
// error.
func useEverything(ctx context.Context, t *testing.T, b *DataFlowBackend, tag string) error {
	t.Helper()
	m, err := memory.NewPersistentBufferMemory(b, memory.WithMaxTurns(2), memory.WithSummarizer(discardSummarizer{}, 50))
	require.NoError(t, err)
	defer m.Close()
	s, user := tag+"-s", tag+"-user"
	if err := m.CreateSession(ctx, memory.SessionInfo{ID: s, User: user}); err != nil {
		return fmt.Errorf("CreateSession: %w", err)
	}
	for i := range 4 {
		if err := m.SaveTurn(ctx, s, driver.Turn{ID: fmt.Sprint("t", i), User: fmt.Sprint("needle question ", i), Agent: "answer"}); err != nil {
			return fmt.Errorf("SaveTurn: %w", err)
		}
	}
	if err := m.AppendMessages(ctx, s, "t3", driver.Message{Role: driver.RoleAssistant, Content: "more"}); err != nil {
		return fmt.Errorf("AppendMessages: %w", err)
	}
	if _, err := m.LoadContext(ctx, s); err != nil {
		return fmt.Errorf("LoadContext: %w", err)
	}
	sum, err := m.Summarize(ctx, s)
	if err != nil {
		return fmt.Errorf("Summarize: %w", err)
	}
	assert.Equal(t, 2, sum.Turns, "%s: turns summarized", tag)
	hits, err := m.Search(ctx, memory.SearchQuery{Text: "needle", SessionID: s})
	if err != nil {
		return fmt.Errorf("Search: %w", err)
	}
	assert.Len(t, hits, 4, "%s: search hits", tag)
	page, err := m.ListSessions(ctx, memory.SessionQuery{User: user})
	if err != nil {
		return fmt.Errorf("ListSessions: %w", err)
	}
	assert.Len(t, page.Sessions, 1, "%s: sessions listed", tag)
	if _, err := m.History(ctx, s, memory.HistoryQuery{}); err != nil {
		return fmt.Errorf("History: %w", err)
	}
	if err := m.Fork(ctx, s, "t1", tag+"-fork"); err != nil {
		return fmt.Errorf("Fork: %w", err)
	}
	if err := m.Clear(ctx, tag+"-fork"); err != nil {
		return fmt.Errorf("Clear: %w", err)
	}
	rep, err := m.DeleteUser(ctx, user)
	if err != nil {
		return fmt.Errorf("DeleteUser: %w", err)
	}
	assert.Equal(t, 1, rep.Sessions, "%s: sessions deleted", tag)
	if _, err := m.Expire(ctx, time.Now().Add(-time.Hour)); err != nil {
		return fmt.Errorf("Expire: %w", err)
	}
	return nil
}

// ddl returns the statements of qs that change the schema.
func ddl(qs []string) []string {
	var out []string
	for _, q := range qs {
		if dbtest.IsDDL(q) {
			out = append(out, q)
		}
	}
	return out
}

// A client that may not change the schema (WithAutoMigrate(false),
// WithExistingSchemaMode(true)) runs no DDL on a database a migrating
// client made, whatever it does: every public operation, a summary with a
// summarizer set included. Nor where the data upgrade is not recorded and
// the MySQL family's lease table is missing (a schema made by hand, or by
// another tool): the upgrade needs the migration lock, and a no-DDL client
// does not make its table, but says which table is missing
// (dataflow.ErrTableMissing), and works once a client that may change the
// schema made it; where the lock needs no table (SQLite, PostgreSQL) the
// upgrade runs at once. Either way it is recorded.
func TestNoDDLClientRunsNoDDL(t *testing.T) {
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		db, _ := openDB(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		require.NoError(t, useEverything(ctx, t, b, "migrating"))
		require.NoError(t, db.Close())

		for _, mode := range noDDLModes {
			t.Run(mode.name, func(t *testing.T) {
				db, rec := openDBWith(t, url, mode.opt)
				require.False(t, db.SchemaChanges())
				b, err := NewDataFlowBackend(db)
				require.NoError(t, err)
				require.NoError(t, useEverything(ctx, t, b, mode.name))
				assert.Empty(t, ddl(rec.take()), "DDL of a client that may not change the schema")
			})
		}

		t.Run("UpgradePendingNoLockTable", func(t *testing.T) {
			admin, _ := openDB(t, url)
			hist := admin.Migrator().HistoryTable()
			for _, mode := range noDDLModes {
				t.Run(mode.name, func(t *testing.T) {
					// The upgrade not recorded, and no lease table.
					_, err := admin.ExecContext(ctx, admin.Rebind(`DELETE FROM `+hist+` WHERE table_name = ?`), "upgrade:"+CountedUpgrade)
					require.NoError(t, err)
					if d.Name == "mysql" {
						_, err := admin.ExecContext(ctx, `DROP TABLE IF EXISTS `+sqlcore.LockTable)
						require.NoError(t, err)
					}
					db, rec := openDBWith(t, url, mode.opt, dataflow.WithEnsureBackoff(time.Millisecond, time.Millisecond))
					b, err := NewDataFlowBackend(db)
					require.NoError(t, err)
					err = useEverything(ctx, t, b, "pending-"+mode.name)
					assert.Empty(t, ddl(rec.take()), "DDL of a client that may not change the schema")
					if d.Name == "mysql" {
						require.ErrorIs(t, err, dataflow.ErrTableMissing)
						require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
						assert.ErrorContains(t, err, sqlcore.LockTable)
						// Once a client that may change the schema made
						// the table, the same backend works, and the
						// upgrade is recorded.
						require.NoError(t, sqlcore.MySQL.Locked(ctx, admin.Bun(), "a first use", func(bun.IConn) error { return nil }))
						rec.take()
						time.Sleep(5 * time.Millisecond) // the backoff
						err = useEverything(ctx, t, b, "recovered-"+mode.name)
						assert.Empty(t, ddl(rec.take()), "DDL of a client that may not change the schema")
					}
					require.NoError(t, err)
					pending, err := db.Migrator().UpgradePending(ctx, b.Upgrades()[0])
					require.NoError(t, err)
					assert.False(t, pending, "the upgrade, run by a no-DDL client with a history table, is recorded")
				})
			}
		})
	})
}
