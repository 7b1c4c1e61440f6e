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

// userV1 is an older version of user: same table, fewer columns.
type userV1 struct {
	bun.BaseModel `bun:"table:users"`

	ID   int64  `bun:"id,pk,autoincrement"`
	Name string `bun:"name,notnull"`
}

// createUsers makes the users table through a separate handle, as another
// program would.
func createUsers[T any](t *testing.T, ctx context.Context, url string) {
	t.Helper()
	other := open(t, url)
	require.NoError(t, register[T](t, other).EnsureTable(ctx))
	require.NoError(t, other.Close())
}

// allOps runs every operation once and returns the errors, by name.
func allOps(ctx context.Context, db *dataflow.DB, users *dataflow.Table[user]) map[string]error {
	u := &user{ID: 1, Name: "x", Created: time.Now()}
	errs := map[string]error{}
	errs["Create"] = users.Create(ctx, &user{Name: "x", Created: time.Now()})
	_, errs["Read"] = users.Read(ctx, int64(1))
	errs["Update"] = users.Update(ctx, u)
	errs["Upsert"] = users.Upsert(ctx, u)
	_, errs["List"] = users.List(ctx, dataflow.Query{})
	_, errs["Count"] = users.Count(ctx, nil)
	errs["BulkCreate"] = users.BulkCreate(ctx, []user{{Name: "y", Created: time.Now()}})
	errs["BulkUpsert"] = users.BulkUpsert(ctx, []user{*u})
	_, errs["BulkUpdate"] = users.BulkUpdate(ctx, dataflow.Filter{"id": 1}, map[string]any{"age": 1})
	_, errs["BulkDelete"] = users.BulkDelete(ctx, dataflow.Filter{"id": 2})
	errs["Delete"] = users.Delete(ctx, u)
	errs["EnsureTable"] = users.EnsureTable(ctx)
	errs["Ready"] = users.Ready(ctx)
	// A transaction fails where it uses the table, not because the table
	// is registered.
	errs["RunInTx"] = db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		_, err := users.WithTx(tx).Count(ctx, nil)
		return err
	})
	return errs
}

func TestAutoMigrateOff(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)

		t.Run("missing table, then created by other means", func(t *testing.T) {
			url := d.URL(t)
			db, rec := openRec(t, url, dataflow.WithAutoMigrate(false),
				dataflow.WithEnsureBackoff(10*time.Millisecond, 20*time.Millisecond))
			users := register[user](t, db)
			for op, err := range allOps(ctx, db, users) {
				assert.ErrorIs(t, err, dataflow.ErrEnsureFailed, op)
				assert.ErrorIs(t, err, dataflow.ErrTableMissing, op)
			}
			c := rec.counts()
			assert.Zero(t, c.DDL, "DDL with auto-migration off: %v", c)
			assert.NotZero(t, c.Catalog, "the first use must check the table: %v", c)

			createUsers[user](t, ctx, url)
			rec.reset()
			require.Eventually(t, func() bool { return users.Create(ctx, &user{Name: "ok", Created: time.Now()}) == nil },
				10*time.Second, 5*time.Millisecond, "table created by other means never became usable")
			n, err := users.Count(ctx, nil)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			assert.Zero(t, rec.counts().DDL, "%v", rec.counts())
			assert.Zero(t, db.Stats().MigrationsApplied)
		})

		t.Run("existing table", func(t *testing.T) {
			url := d.URL(t)
			createUsers[user](t, ctx, url)
			db, rec := openRec(t, url, dataflow.WithAutoMigrate(false))
			users := register[user](t, db, dataflow.WithIndex("users_name_idx", "name")) // index missing: not DDL either
			require.NoError(t, users.Create(ctx, &user{Name: "ann", Created: time.Now()}))
			got, err := users.List(ctx, dataflow.Query{})
			require.NoError(t, err)
			assert.Equal(t, []string{"ann"}, names(got))
			c := rec.counts()
			assert.Zero(t, c.DDL, "%v", c)
			assert.Zero(t, c.History, "%v", c)
			st := db.Stats()
			assert.EqualValues(t, 1, st.EnsureRuns, "%+v", st)
			assert.Zero(t, st.MigrationsApplied, "%+v", st)

			rec.reset()
			_, err = users.Count(ctx, nil)
			require.NoError(t, err)
			assert.Equal(t, 1, rec.counts().Total, "warm Count: %v", rec.counts())
		})

		t.Run("table lacks a column", func(t *testing.T) {
			url := d.URL(t)
			createUsers[userV1](t, ctx, url)
			db, rec := openRec(t, url, dataflow.WithAutoMigrate(false))
			users := register[user](t, db)
			_, err := users.Count(ctx, nil)
			require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
			require.ErrorIs(t, err, dataflow.ErrSchemaMismatch)
			assert.Contains(t, err.Error(), "age", "the error names a missing column")
			assert.Zero(t, rec.counts().DDL)
		})
	})
}

func TestExistingSchemaMode(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)

		t.Run("pre-created table", func(t *testing.T) {
			url := d.URL(t)
			createUsers[user](t, ctx, url)
			db, rec := openRec(t, url, dataflow.WithExistingSchemaMode(true))
			users := register[user](t, db)
			require.NoError(t, users.EnsureTable(ctx))
			assert.Empty(t, rec.all(), "EnsureTable in existing-schema mode ran SQL")

			seed := &user{Name: "seed", Created: time.Now()}
			require.NoError(t, users.Create(ctx, seed))
			for _, op := range budgetOps(ctx, users, seed) {
				rec.reset()
				require.NoError(t, op.op(), op.name)
				c := rec.counts()
				assert.Equal(t, op.want, c.Total, "%s: %v", op.name, c)
				assert.Zero(t, c.Catalog+c.History+c.DDL, "%s: %v", op.name, c)
			}
			st := db.Stats()
			assert.Zero(t, st.EnsureRuns, "%+v", st)
			assert.Zero(t, st.MigrationsApplied, "%+v", st)
		})

		t.Run("missing table", func(t *testing.T) {
			db, rec := openRec(t, d.URL(t), dataflow.WithExistingSchemaMode(true))
			users := register[user](t, db)
			require.NoError(t, users.EnsureTable(ctx), "EnsureTable trusts the schema")
			err := users.Create(ctx, &user{Name: "x", Created: time.Now()})
			require.Error(t, err, "insert into a missing table")
			assert.NotErrorIs(t, err, dataflow.ErrEnsureFailed)
			c := rec.counts()
			assert.Equal(t, 1, c.Total, "%v", c)
			assert.Zero(t, c.Catalog+c.DDL, "%v", c)
		})
	})
}

func TestSkipTableChecks(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)

		t.Run("pre-created table", func(t *testing.T) {
			url := d.URL(t)
			createUsers[user](t, ctx, url)
			db, rec := openRec(t, url, dataflow.WithSkipTableChecks(true))
			users := register[user](t, db)
			require.NoError(t, users.Create(ctx, &user{Name: "ann", Created: time.Now()}))
			c := rec.counts()
			assert.Equal(t, 1, c.Total, "first Create: %v", c)
			assert.Zero(t, c.Catalog+c.History+c.DDL, "%v", c)
			assert.Zero(t, db.Stats().EnsureRuns)
		})

		t.Run("EnsureTable still checks", func(t *testing.T) {
			db, rec := openRec(t, d.URL(t), dataflow.WithSkipTableChecks(true))
			users := register[user](t, db)
			require.NoError(t, users.EnsureTable(ctx))
			c := rec.counts()
			assert.NotZero(t, c.Catalog, "EnsureTable ran no check: %v", c)
			assert.Equal(t, 1, rec.createTables("users"), "%v", c)
			require.NoError(t, users.Create(ctx, &user{Name: "ann", Created: time.Now()}))
		})

		t.Run("EnsureTable after an unchecked operation", func(t *testing.T) {
			db, rec := openRec(t, d.URL(t), dataflow.WithSkipTableChecks(true))
			users := register[user](t, db)
			_, err := users.Count(ctx, nil)
			require.Error(t, err, "Count on a missing, unchecked table")
			c := rec.counts()
			assert.Equal(t, 1, c.Total, "%v", c)
			assert.Zero(t, c.Catalog, "%v", c)

			require.NoError(t, users.EnsureTable(ctx))
			assert.Equal(t, 1, rec.createTables("users"), "EnsureTable did not create the table: %v", rec.counts())
			n, err := users.Count(ctx, nil)
			require.NoError(t, err)
			assert.Zero(t, n)
		})
	})
}
