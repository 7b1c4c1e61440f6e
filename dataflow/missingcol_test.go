package dataflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// tagged has a column, tag, that another program drops from the live table.
type tagged struct {
	bun.BaseModel `bun:"table:tagged"`

	ID   int64   `bun:"id,pk,autoincrement"`
	Name string  `bun:"name,notnull"`
	Tag  *string `bun:"tag"`
}

// rawCount counts the rows of table through db's raw statements.
func rawCount(t *testing.T, ctx context.Context, db *dataflow.DB, table string) int {
	t.Helper()
	rows, err := db.QueryContext(ctx, "SELECT count(*) FROM "+table)
	require.NoError(t, err)
	defer rows.Close()
	var n int
	require.True(t, rows.Next())
	require.NoError(t, rows.Scan(&n))
	return n
}

// A model column missing from the live table is ErrSchemaMismatch on every
// dialect and in every mode. On SQLite a double-quoted unknown identifier
// used to read as a string literal: List returned Tag="tag" for every row
// and BulkDelete(tag IS NOT NULL) emptied the table.
func TestMissingColumnIsSchemaMismatch(t *testing.T) {
	modes := []struct {
		name string
		opt  dataflow.Option
	}{
		{"existing schema", dataflow.WithExistingSchemaMode(true)},
		{"skip table checks", dataflow.WithSkipTableChecks(true)},
		{"auto-migrate, checksum still recorded", dataflow.WithAutoMigrate(true)},
		{"auto-migrate off", dataflow.WithAutoMigrate(false)},
	}
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		url := d.URL(t)

		// Another program creates the table, fills it, and then drops tag
		// behind every engine's back (the history still holds the model's
		// checksum).
		other := open(t, url)
		require.NoError(t, register[tagged](t, other).BulkCreate(ctx, []tagged{
			{Name: "a", Tag: ptr("x")}, {Name: "b"}, {Name: "c", Tag: ptr("y")},
		}))
		_, err := other.ExecContext(ctx, "ALTER TABLE tagged DROP COLUMN tag")
		require.NoError(t, err)
		const rows = 3

		for _, m := range modes {
			t.Run(m.name, func(t *testing.T) {
				db := open(t, url, m.opt, dataflow.WithEnsureBackoff(time.Millisecond, time.Millisecond))
				tbl := register[tagged](t, db)
				ops := []struct {
					name string
					op   func() error
				}{
					{"List", func() error { _, err := tbl.List(ctx, dataflow.Query{}); return err }},
					{"Read", func() error { _, err := tbl.Read(ctx, int64(1)); return err }},
					{"Count", func() error {
						_, err := tbl.Count(ctx, dataflow.Filter{"tag": dataflow.IsNull(false)})
						return err
					}},
					{"BulkDelete", func() error {
						_, err := tbl.BulkDelete(ctx, dataflow.Filter{"tag": dataflow.IsNull(false)})
						return err
					}},
					{"BulkUpdate", func() error {
						_, err := tbl.BulkUpdate(ctx, dataflow.Filter{"tag": dataflow.IsNull(false)}, map[string]any{"name": "z"})
						return err
					}},
					{"BulkUpdate set", func() error {
						_, err := tbl.BulkUpdate(ctx, dataflow.Filter{"id": 1}, map[string]any{"tag": "z"})
						return err
					}},
					{"List order", func() error { _, err := tbl.List(ctx, dataflow.Query{OrderBy: []string{"tag"}}); return err }},
					{"Create", func() error { return tbl.Create(ctx, &tagged{Name: "d", Tag: ptr("t")}) }},
					{"Update", func() error { return tbl.Update(ctx, &tagged{ID: 1, Name: "z"}) }},
					{"Upsert", func() error { return tbl.Upsert(ctx, &tagged{ID: 1, Name: "z"}) }},
					{"BulkCreate", func() error { return tbl.BulkCreate(ctx, []tagged{{Name: "d"}}) }},
				}
				for _, op := range ops {
					err := op.op()
					require.Error(t, err, "%s on a table without tag", op.name)
					assert.ErrorIs(t, err, dataflow.ErrSchemaMismatch, "%s", op.name)
					assert.Contains(t, err.Error(), "tag", "%s: the error names the column", op.name)
				}
				assert.Equal(t, rows, rawCount(t, ctx, other, "tagged"), "rows deleted or added")
				n, err := db.QueryContext(ctx, "SELECT count(*) FROM tagged WHERE name = 'z'")
				require.NoError(t, err)
				var changed int
				require.True(t, n.Next())
				require.NoError(t, n.Scan(&changed))
				require.NoError(t, n.Close())
				assert.Zero(t, changed, "rows updated")
			})
		}
	})
}
