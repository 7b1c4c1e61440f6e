package dataflow_test

import (
	"bytes"
	"database/sql"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

func TestInvalidOptions(t *testing.T) {
	bdb := bun.NewDB(&sql.DB{}, sqlitedialect.New()) // never used for I/O
	tests := []struct {
		name string
		opt  dataflow.Option
	}{
		{"nil hook", dataflow.WithQueryHook(nil)},
		{"nil logger", dataflow.WithLogger(nil)},
		{"negative busy timeout", dataflow.WithBusyTimeout(-time.Second)},
		{"zero ensure timeout", dataflow.WithEnsureTimeout(0)},
		{"zero min backoff", dataflow.WithEnsureBackoff(0, time.Second)},
		{"max below min", dataflow.WithEnsureBackoff(time.Second, time.Millisecond)},
		{"zero pool", dataflow.WithMaxOpenConns(0)},
		{"empty history table", dataflow.WithHistoryTable("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dataflow.Open(t.Context(), dbtest.SQLiteURL(t), tt.opt)
			require.ErrorIs(t, err, dataflow.ErrInvalidOption, "Open")
			_, err = dataflow.New(bdb, tt.opt)
			require.ErrorIs(t, err, dataflow.ErrInvalidOption, "New")
		})
	}
	t.Run("nil db", func(t *testing.T) {
		_, err := dataflow.New(nil)
		require.ErrorIs(t, err, dataflow.ErrInvalidArgument)
	})
}

// New wraps the caller's *bun.DB: hooks go on a copy, and Close leaves the
// caller's handle open.
func TestNewWrapsBunDB(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		src := open(t, d.URL(t)) // only to get a driver-level handle with the right settings
		var bdb *bun.DB
		if d.Name == "pg" {
			bdb = bun.NewDB(src.Bun().DB, pgdialect.New())
		} else if d.Name == "mysql" {
			bdb = bun.NewDB(src.Bun().DB, mysqldialect.New())
		} else {
			bdb = bun.NewDB(src.Bun().DB, sqlitedialect.New())
		}
		rec := &recorder{}
		db, err := dataflow.New(bdb, dataflow.WithQueryHook(rec))
		require.NoError(t, err)
		users := register[user](t, db)
		require.NoError(t, users.Create(ctx, &user{Name: "ann", Created: time.Now()}))
		assert.Equal(t, 1, rec.createTables("users"), "the hook saw the migration")

		rec.reset()
		var n int
		require.NoError(t, bdb.NewSelect().TableExpr("users").ColumnExpr("count(*)").Scan(ctx, &n))
		assert.Equal(t, 1, n)
		assert.Empty(t, rec.all(), "the hook was added to the caller's *bun.DB")

		require.NoError(t, db.Close())
		assert.NoError(t, bdb.PingContext(ctx), "Close closed the caller's handle")
		_, err = users.Count(ctx, nil)
		assert.ErrorIs(t, err, dataflow.ErrClosed)
	})
}

func TestHistoryTableAndLogger(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		var logs bytes.Buffer
		db, rec := openRec(t, d.URL(t), dataflow.WithHistoryTable("my_history"),
			dataflow.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		users := register[user](t, db)
		require.NoError(t, users.EnsureTable(ctx))
		assert.Equal(t, "my_history", db.Migrator().HistoryTable())
		hist, err := db.Migrator().History(ctx, "users")
		require.NoError(t, err)
		assert.Len(t, hist, 1)
		for _, s := range rec.all() {
			assert.NotContains(t, s.Query, "turnkeep_migrations", "default history table used")
		}
		assert.Contains(t, logs.String(), "users", "the migration was not logged")
	})
}

// A query hook sees the engine's own statements with their bound values.
func TestQueryHookSeesArgs(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx, users, rec := ready(t, d)
		require.NoError(t, users.Create(ctx, &user{Name: "hooked", Age: 33, Created: time.Now()}))
		stmts := rec.all()
		require.Len(t, stmts, 1)
		if d.Name == "mysql" {
			assert.Contains(t, stmts[0].Query, "INSERT INTO `users`")
		} else {
			assert.Contains(t, stmts[0].Query, `INSERT INTO "users"`)
		}
		assert.Contains(t, stmts[0].Args, any("hooked"))
		assert.Contains(t, stmts[0].Args, any(33))
		assert.NoError(t, stmts[0].Err)

		rec.reset()
		_, err := users.Read(ctx, int64(12345))
		require.ErrorIs(t, err, dataflow.ErrNotFound)
		require.Len(t, rec.all(), 1)
		assert.Contains(t, rec.all()[0].Args, any(int64(12345)))

		rec.reset()
		err = users.Create(ctx, &user{ID: 1, Name: "dup", Created: time.Now()})
		require.Error(t, err)
		require.Len(t, rec.all(), 1)
		assert.Error(t, rec.all()[0].Err, "the hook saw no error for a failed statement")
	})
}
