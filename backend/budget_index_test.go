package backend

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/driver"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A database of an earlier release holds the budget index, which the
// SQLite and PostgreSQL stores no longer read (budgetScanLo): the messages
// table's migration drops it (its history's checksum is not the model's),
// and the rows stay. The MySQL family keeps it.
func TestBudgetIndexDropped(t *testing.T) {
	ctx := context.Background()
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		url := d.URL(t)
		db, _ := openDB(t, url)
		b, err := NewDataFlowBackend(db)
		require.NoError(t, err)
		require.NoError(t, storeTurn(ctx, b, "s1", driver.Turn{User: "before", Agent: "the upgrade"}))
		indexes := func(b *DataFlowBackend) int {
			if slices.Contains(v1Indexes(t, b.db, MessagesTable), budgetIdx) {
				return 1
			}
			return 0
		}
		if d.Name == "mysql" {
			assert.Equal(t, 1, indexes(b), "the MySQL family keeps its budget index")
			return
		}
		require.Zero(t, indexes(b), "a new database's budget index")
		// As an earlier release left it: the index, and its checksum in the
		// history.
		_, err = db.ExecContext(ctx, `CREATE INDEX `+MessagesTable+`_budget_idx ON `+MessagesTable+` (session_id, tokens_before, seq)`)
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, db.Rebind(`UPDATE turnkeep_migrations SET checksum = 'previous release' WHERE table_name = ?`), MessagesTable)
		require.NoError(t, err)
		require.NoError(t, db.Close())

		db2, _ := openDB(t, url)
		b2, err := NewDataFlowBackend(db2)
		require.NoError(t, err)
		require.NoError(t, storeTurn(ctx, b2, "s1", driver.Turn{User: "after", Agent: "the upgrade"}))
		assert.Zero(t, indexes(b2), "the budget index after the upgrade")
		w, err := readWindow(ctx, b2, "s1", 10)
		require.NoError(t, err)
		assert.Len(t, w.Turns, 2)
		w, _, err = b2.Load(ctx, "s1", driver.WindowQuery{MaxTurns: 10, TokenBudget: 1, Known: driver.UnknownVersion})
		require.NoError(t, err)
		assert.Len(t, w.Turns, 1, "a budget window holds the newest turn even over budget")
	})
}
