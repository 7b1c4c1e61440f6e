package dataflow_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

type dupA struct {
	bun.BaseModel `bun:"table:dup"`
	ID            int64 `bun:"id,pk"`
}

type dupB struct {
	bun.BaseModel `bun:"table:dup"`
	ID            int64  `bun:"id,pk"`
	Name          string `bun:"name"`
}

type noColumns struct {
	bun.BaseModel `bun:"table:no_columns"`
}

type keyOnly struct {
	ID int64 `bun:"id,pk"`
}

type noKey struct {
	Name string `bun:"name"`
}

func TestRegisterErrors(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		db, rec := openRec(t, d.URL(t))
		require.NoError(t, func() error { _, err := dataflow.Register[dupA](db); return err }())
		tests := []struct {
			name string
			want error
			reg  func() error
		}{
			{"int", dataflow.ErrInvalidModel, func() error { _, err := dataflow.Register[int](db); return err }},
			{"string", dataflow.ErrInvalidModel, func() error { _, err := dataflow.Register[string](db); return err }},
			{"pointer to struct", dataflow.ErrInvalidModel, func() error { _, err := dataflow.Register[*user](db); return err }},
			{"slice of structs", dataflow.ErrInvalidModel, func() error { _, err := dataflow.Register[[]user](db); return err }},
			{"map", dataflow.ErrInvalidModel, func() error { _, err := dataflow.Register[map[string]any](db); return err }},
			{"struct without columns", dataflow.ErrInvalidModel, func() error { _, err := dataflow.Register[noColumns](db); return err }},
			{"table name taken by another type", dataflow.ErrInvalidModel, func() error { _, err := dataflow.Register[dupB](db); return err }},
			{"same type, other indexes", dataflow.ErrInvalidModel, func() error {
				_, err := dataflow.Register[dupA](db, dataflow.WithIndex("dup_id_idx", "id"))
				return err
			}},
			{"unknown index column", dataflow.ErrUnknownColumn, func() error {
				_, err := dataflow.Register[user](db, dataflow.WithIndex("users_x_idx", "name", "nope"))
				return err
			}},
			{"index on Go field name", dataflow.ErrUnknownColumn, func() error {
				_, err := dataflow.Register[user](db, dataflow.WithIndex("users_x_idx", "Name"))
				return err
			}},
			{"index without columns", dataflow.ErrInvalidOption, func() error {
				_, err := dataflow.Register[user](db, dataflow.WithIndex("users_x_idx"))
				return err
			}},
			{"unique index without a name", dataflow.ErrInvalidOption, func() error {
				_, err := dataflow.Register[user](db, dataflow.WithUniqueIndex("", "name"))
				return err
			}},
			{"nil db", dataflow.ErrInvalidArgument, func() error { _, err := dataflow.Register[user](nil); return err }},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				require.ErrorIs(t, tt.reg(), tt.want)
			})
		}
		t.Run("the taken name is in the error", func(t *testing.T) {
			_, err := dataflow.Register[dupB](db)
			require.Error(t, err)
			assert.Contains(t, err.Error(), `"dup"`)
		})
		assert.Empty(t, rec.all(), "Register ran SQL")
	})
}

// Registering a type again returns a handle on the same table state: it
// is ensured once.
func TestRegisterTwiceSharesState(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db, rec := openRec(t, d.URL(t))
		ix := dataflow.WithIndex("users_name_idx", "name")
		a := register[user](t, db, ix)
		b := register[user](t, db, ix)
		assert.Equal(t, "users", a.Name())
		assert.Equal(t, []string{"id", "name", "age", "nick", "score", "created", "meta"}, a.Columns())
		require.NoError(t, a.EnsureTable(ctx))
		rec.reset()
		require.NoError(t, b.Create(ctx, &user{Name: "x", Created: time.Now()}))
		assert.Equal(t, 1, rec.counts().Total, "second handle re-ensured: %v", rec.counts())
		assert.EqualValues(t, 1, db.Stats().EnsureRuns)
	})
}

// A model without a primary key supports what needs none.
func TestModelWithoutPrimaryKey(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db := open(t, d.URL(t))
		nk := register[noKey](t, db)
		require.NoError(t, nk.Create(ctx, &noKey{Name: "a"}))
		require.NoError(t, nk.BulkCreate(ctx, []noKey{{Name: "b"}, {Name: "c"}}))
		list, err := nk.List(ctx, dataflow.Query{OrderBy: []string{"name"}})
		require.NoError(t, err)
		assert.Equal(t, []noKey{{"a"}, {"b"}, {"c"}}, list)
		_, err = nk.Read(ctx, 1)
		assert.ErrorIs(t, err, dataflow.ErrNoPrimaryKey)
		assert.ErrorIs(t, nk.Update(ctx, &noKey{}), dataflow.ErrNoPrimaryKey)
		assert.ErrorIs(t, nk.Delete(ctx, &noKey{}), dataflow.ErrNoPrimaryKey)
		assert.ErrorIs(t, nk.Upsert(ctx, &noKey{}), dataflow.ErrNoPrimaryKey)
		assert.ErrorIs(t, nk.BulkUpsert(ctx, []noKey{{}}), dataflow.ErrNoPrimaryKey)
		n, err := nk.BulkDelete(ctx, dataflow.Filter{"name": "b"})
		require.NoError(t, err)
		assert.EqualValues(t, 1, n)
	})
}

// A model that is only its key can be created, read, upserted and deleted,
// but has nothing to update.
func TestModelOnlyKey(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db := open(t, d.URL(t))
		k := register[keyOnly](t, db)
		require.NoError(t, k.Create(ctx, &keyOnly{ID: 1}))
		require.NoError(t, k.Upsert(ctx, &keyOnly{ID: 1}), "upsert of an existing key-only row")
		require.NoError(t, k.BulkUpsert(ctx, []keyOnly{{ID: 1}, {ID: 2}}))
		assert.ErrorIs(t, k.Update(ctx, &keyOnly{ID: 1}), dataflow.ErrInvalidArgument)
		got, err := k.Read(ctx, int64(2))
		require.NoError(t, err)
		assert.Equal(t, keyOnly{ID: 2}, *got)
		require.NoError(t, k.Delete(ctx, &keyOnly{ID: 1}))
		n, err := k.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
	})
}

type autoKeyOnly struct {
	bun.BaseModel `bun:"table:auto_key_only"`

	ID int64 `bun:"id,pk,autoincrement"`
}

// A model that is only an auto-increment key leaves every column to the
// database: INSERT … DEFAULT VALUES, one statement per row on SQLite.
func TestModelOnlyAutoKey(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db := open(t, d.URL(t))
		k := register[autoKeyOnly](t, db)
		var one autoKeyOnly
		require.NoError(t, k.Create(ctx, &one))
		assert.NotZero(t, one.ID)
		rows := make([]autoKeyOnly, 3)
		require.NoError(t, k.BulkCreate(ctx, rows))
		seen := map[int64]bool{one.ID: true}
		for _, r := range rows {
			assert.NotZero(t, r.ID)
			assert.False(t, seen[r.ID], "id %d read back twice", r.ID)
			seen[r.ID] = true
		}
		n, err := k.Count(ctx, nil)
		require.NoError(t, err)
		assert.Equal(t, 4, n)
	})
}

type badEmbed struct {
	ID int64 `bun:"id,pk"`
	X  int   `bun:",embed"` // embed of a non-struct: bun panics building it
}

// bun panics on a malformed model only the first time and then hands out a
// half-built table; Register must refuse it every time.
func TestRegisterMalformedTagTwice(t *testing.T) {
	db := open(t, dbtest.SQLiteURL(t))
	for i := range 3 {
		_, err := dataflow.Register[badEmbed](db)
		require.ErrorIs(t, err, dataflow.ErrInvalidModel, "attempt %d", i+1)
	}
}

// WithoutRowID needs a primary key: Register says so, not first use.
func TestRegisterWithoutRowIDNeedsKey(t *testing.T) {
	db := open(t, dbtest.SQLiteURL(t))
	_, err := dataflow.Register[noKey](db, dataflow.WithoutRowID())
	require.ErrorIs(t, err, dataflow.ErrInvalidModel)
	_, err = dataflow.Register[keyOnly](db, dataflow.WithoutRowID())
	require.NoError(t, err)
}
