package dataflow_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/migrate"
)

// itemV1 and itemV2 are two versions of one model: a changes type.
type itemV1 struct {
	bun.BaseModel `bun:"table:dc_items"`

	ID int64 `bun:"id,pk"`
	A  int64 `bun:"a"`
}

type itemV2 struct {
	bun.BaseModel `bun:"table:dc_items"`

	ID int64  `bun:"id,pk"`
	A  string `bun:"a"`
}

// extraOld is the model of an older program; extraNullable and
// extraNotNull are newer versions of it that added a column b.
type extraOld struct {
	bun.BaseModel `bun:"table:dc_extra"`

	ID int64 `bun:"id,pk"`
	A  int64 `bun:"a"`
}

type extraNullable struct {
	bun.BaseModel `bun:"table:dc_extra"`

	ID int64   `bun:"id,pk"`
	A  int64   `bun:"a"`
	B  *string `bun:"b"`
}

type extraNotNull struct {
	bun.BaseModel `bun:"table:dc_extra"`

	ID int64  `bun:"id,pk"`
	A  int64  `bun:"a"`
	B  string `bun:"b,notnull"`
}

// fastRetry makes a failed first-use run retried at once, so a test sees
// each run's own outcome rather than the backoff's copy.
var fastRetry = dataflow.WithEnsureBackoff(time.Millisecond, time.Millisecond)

func TestDestructiveChange(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)

		t.Run("type change", func(t *testing.T) {
			url := d.URL(t)
			v1db := open(t, url)
			require.NoError(t, register[itemV1](t, v1db).Create(ctx, &itemV1{ID: 1, A: 42}))
			require.NoError(t, v1db.Close())

			db := open(t, url, fastRetry)
			items := register[itemV2](t, db)
			errs := map[string]error{"EnsureTable": items.EnsureTable(ctx)}
			errs["Create"] = items.Create(ctx, &itemV2{ID: 2, A: "x"})
			_, errs["List"] = items.List(ctx, dataflow.Query{})
			_, errs["Count"] = items.Count(ctx, nil)
			for op, err := range errs {
				require.Error(t, err, op)
				assert.ErrorIs(t, err, dataflow.ErrDestructiveChange, op)
				assert.ErrorIs(t, err, dataflow.ErrEnsureFailed, op)
				for _, want := range []string{"dc_items", string(migrate.AlterType), " a "} {
					assert.Contains(t, err.Error(), want, "%s: the error names the table, the change and the column", op)
				}
			}
			require.NoError(t, db.Close())

			forced := open(t, url, dataflow.WithForceDestructive(true), fastRetry)
			items = register[itemV2](t, forced)
			err := items.EnsureTable(ctx)
			if d.Name == "sqlite" {
				// SQLite cannot change a column's type in place: forced or
				// not, the difference stays, and says so.
				require.ErrorIs(t, err, dataflow.ErrDestructiveChange)
				require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
				require.ErrorIs(t, err, migrate.ErrDestructive)
				return
			}
			require.NoError(t, err)
			got, err := items.List(ctx, dataflow.Query{})
			require.NoError(t, err)
			assert.Equal(t, []itemV2{{ID: 1, A: "42"}}, got)
			require.NoError(t, items.Create(ctx, &itemV2{ID: 2, A: "x"}))
		})

		t.Run("type change with auto-migration off", func(t *testing.T) {
			url := d.URL(t)
			v1db := open(t, url)
			require.NoError(t, register[itemV1](t, v1db).EnsureTable(ctx))
			db := open(t, url, dataflow.WithAutoMigrate(false))
			err := register[itemV2](t, db).EnsureTable(ctx)
			require.ErrorIs(t, err, dataflow.ErrSchemaMismatch)
			require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
			assert.Contains(t, err.Error(), string(migrate.AlterType))
		})

		t.Run("extra nullable column: rolling deploy", func(t *testing.T) {
			url := d.URL(t)
			newer := open(t, url)
			require.NoError(t, register[extraNullable](t, newer).Create(ctx, &extraNullable{ID: 1, A: 1, B: ptr("b")}))

			for _, opts := range [][]dataflow.Option{nil, {dataflow.WithAutoMigrate(false)}} {
				older := open(t, url, opts...)
				tbl := register[extraOld](t, older)
				require.NoError(t, tbl.EnsureTable(ctx))
				require.NoError(t, tbl.Create(ctx, &extraOld{ID: 2 + int64(len(opts)), A: 2}))
				got, err := tbl.List(ctx, dataflow.Query{})
				require.NoError(t, err)
				assert.Len(t, got, 2+len(opts))
			}
			ti, err := newer.Migrator().Inspect(ctx, "dc_extra")
			require.NoError(t, err)
			assert.Len(t, ti.Columns, 3, "the newer program's column was dropped")
		})

		t.Run("extra NOT NULL column without default", func(t *testing.T) {
			url := d.URL(t)
			newer := open(t, url)
			require.NoError(t, register[extraNotNull](t, newer).Create(ctx, &extraNotNull{ID: 1, A: 1, B: "b"}))

			older := open(t, url, fastRetry)
			tbl := register[extraOld](t, older)
			err := tbl.EnsureTable(ctx)
			require.ErrorIs(t, err, dataflow.ErrDestructiveChange)
			require.ErrorIs(t, err, dataflow.ErrEnsureFailed)
			assert.Contains(t, err.Error(), string(migrate.DropColumn)+" b ")
			err = tbl.Create(ctx, &extraOld{ID: 2, A: 2})
			require.ErrorIs(t, err, dataflow.ErrDestructiveChange, "Create hit the NOT NULL column")

			forced := open(t, url, dataflow.WithForceDestructive(true))
			tbl = register[extraOld](t, forced)
			require.NoError(t, tbl.EnsureTable(ctx))
			require.NoError(t, tbl.Create(ctx, &extraOld{ID: 2, A: 2}))
			got, err := tbl.List(ctx, dataflow.Query{})
			require.NoError(t, err)
			assert.Equal(t, []extraOld{{ID: 1, A: 1}, {ID: 2, A: 2}}, got)
		})
	})
}
