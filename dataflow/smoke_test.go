package dataflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

type smokeUser struct {
	ID      int64          `bun:"id,pk,autoincrement"`
	Name    string         `bun:"name,notnull"`
	Age     int            `bun:"age"`
	Created time.Time      `bun:"created,notnull"`
	Meta    map[string]any `bun:"meta"`
}

func TestSmoke(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := context.Background()
		db, err := dataflow.Open(ctx, d.URL(t))
		require.NoError(t, err)
		defer db.Close()
		users, err := dataflow.Register[smokeUser](db, dataflow.WithIndex("smoke_users_name_idx", "name"))
		require.NoError(t, err)
		u := smokeUser{Name: "ann", Age: 30, Created: time.Now(), Meta: map[string]any{"a": 1.0}}
		require.NoError(t, users.Create(ctx, &u))
		require.NotZero(t, u.ID)
		got, err := users.Read(ctx, u.ID)
		require.NoError(t, err)
		require.Equal(t, "ann", got.Name)
		require.Equal(t, u.Meta, got.Meta)
		require.WithinDuration(t, u.Created, got.Created, time.Microsecond)
		require.NoError(t, users.BulkCreate(ctx, []smokeUser{{Name: "bob", Age: 20, Created: time.Now()}, {Name: "cy", Age: 40, Created: time.Now()}}))
		list, err := users.List(ctx, dataflow.Query{Filter: dataflow.Filter{"age": dataflow.Gte(30)}, OrderBy: []string{"-age"}})
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, "cy", list[0].Name)
		n, err := users.Count(ctx, dataflow.Filter{"name": dataflow.In("ann", "bob")})
		require.NoError(t, err)
		require.Equal(t, 2, n)
		got.Age = 31
		require.NoError(t, users.Update(ctx, got))
		require.NoError(t, users.Upsert(ctx, &smokeUser{ID: got.ID, Name: "ann2", Created: time.Now()}))
		got, err = users.Read(ctx, u.ID)
		require.NoError(t, err)
		require.Equal(t, "ann2", got.Name)
		m, err := users.BulkUpdate(ctx, dataflow.Filter{"age": dataflow.Lt(100)}, map[string]any{"age": 7})
		require.NoError(t, err)
		require.EqualValues(t, 3, m)
		m, err = users.BulkDelete(ctx, dataflow.Filter{"age": 7})
		require.NoError(t, err)
		require.EqualValues(t, 3, m)
		require.ErrorIs(t, users.Delete(ctx, got), dataflow.ErrNotFound)
		_, err = users.Read(ctx, u.ID)
		require.ErrorIs(t, err, dataflow.ErrNotFound)
		t.Logf("%+v", db.Stats())
	})
}
