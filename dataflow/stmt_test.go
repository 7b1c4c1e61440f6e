package dataflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/turnkeep/turnkeep/dataflow"
	"github.com/turnkeep/turnkeep/internal/dbtest"
)

// A Stmt makes its tables ready, binds times as operations do, shows the
// statement to the hooks, and reads back through TimeColumn without
// guessing, inside and outside transactions, on every dialect.
func TestStmt(t *testing.T) {
	dbtest.Run(t, func(t *testing.T, d dbtest.Dialect) {
		ctx := testCtx(t, time.Minute)
		db, rec := openRec(t, d.URL(t))
		users := register[user](t, db)
		insert := db.NewStmt(`INSERT INTO users (name, age, score, created) VALUES (?, ?, 0, ?)`, users)
		read := db.NewReadStmt(`SELECT name, `+db.TimeColumn("created")+` FROM users WHERE age = ? ORDER BY id`, users)

		// The table does not exist yet: the statement's first run makes it.
		at := time.Date(2026, 11, 30, 23, 59, 58, 123456789, time.FixedZone("CET", 3600))
		_, err := insert.Exec(ctx, "outside", 1, at)
		require.NoError(t, err)
		require.NoError(t, db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			_, err := insert.ExecTx(ctx, tx, "inside", 1, at.Add(time.Second))
			return err
		}, users))

		for range 3 { // prepared once, run again
			rows, err := read.Query(ctx, 1)
			require.NoError(t, err)
			var got []string
			var times []time.Time
			for rows.Next() {
				var name string
				var created dataflow.Time
				require.NoError(t, rows.Scan(&name, &created))
				got = append(got, name)
				times = append(times, created.Time)
			}
			require.NoError(t, rows.Err())
			require.NoError(t, rows.Close())
			assert.Equal(t, []string{"outside", "inside"}, got)
			want := at.UTC()
			if d.Name == "pg" || d.Name == "mysql" {
				want = want.Truncate(time.Microsecond) // timestamptz and DATETIME(6) keep microseconds
			}
			assert.Equal(t, []time.Time{want, want.Add(time.Second)}, times, "times read back in UTC, exactly")
		}
		var seen int
		for _, s := range rec.all() {
			if s.Query == read.String() {
				seen++
			}
		}
		assert.Equal(t, 3, seen, "the hooks see every run of a statement")

		// A statement of another DB is refused inside a transaction.
		other := open(t, d.URL(t))
		foreign := other.NewStmt(`SELECT 1`)
		err = db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			_, err := foreign.ExecTx(ctx, tx)
			return err
		}, users)
		require.ErrorIs(t, err, dataflow.ErrInvalidArgument)

		// An argument a dialect would reject raw is refused before any SQL.
		rec.reset()
		_, err = insert.Exec(ctx, "bad\x00name", 1, at)
		require.ErrorIs(t, err, dataflow.ErrInvalidArgument)
		assert.Empty(t, rec.all(), "a refused argument ran no statement")

		// After Close every statement fails with ErrClosed.
		require.NoError(t, db.Close())
		_, err = read.Query(ctx, 1)
		require.ErrorIs(t, err, dataflow.ErrClosed)
		_, err = insert.Exec(ctx, "late", 1, at)
		require.ErrorIs(t, err, dataflow.ErrClosed)
	})
}

// A nil or zero Stmt returns ErrClosed and never panics.
func TestStmtZero(t *testing.T) {
	ctx := context.Background()
	for name, s := range map[string]*dataflow.Stmt{"nil": nil, "zero": new(dataflow.Stmt)} {
		_, err := s.Query(ctx)
		assert.ErrorIs(t, err, dataflow.ErrClosed, name)
		_, err = s.Exec(ctx)
		assert.ErrorIs(t, err, dataflow.ErrClosed, name)
		_, err = s.QueryTx(ctx, nil)
		assert.ErrorIs(t, err, dataflow.ErrClosed, name)
	}
}

// Time reads the stored layout exactly, other SQLite layouts only as a
// fallback, driver times in UTC, and NULL as the zero time.
func TestTimeScan(t *testing.T) {
	want := time.Date(2026, 11, 30, 23, 59, 58, 123456789, time.UTC)
	for _, tc := range []struct {
		name string
		in   any
		want time.Time
	}{
		{"stored layout", want.Format(dataflow.SQLiteTimeLayout), want},
		{"stored layout as bytes", []byte(want.Format(dataflow.SQLiteTimeLayout)), want},
		{"RFC 3339", want.Format(time.RFC3339Nano), want},
		{"no zone", "2026-11-30 23:59:58", want.Truncate(time.Second)},
		{"driver time", want.In(time.FixedZone("X", -7200)), want},
		{"NULL", nil, time.Time{}},
	} {
		var got dataflow.Time
		require.NoError(t, got.Scan(tc.in), tc.name)
		assert.True(t, tc.want.Equal(got.Time), "%s: got %v; want %v", tc.name, got.Time, tc.want)
		if !got.IsZero() {
			assert.Equal(t, time.UTC, got.Location(), tc.name)
		}
	}
	var got dataflow.Time
	err := got.Scan("yesterday")
	require.Error(t, err)
	assert.Contains(t, err.Error(), dataflow.SQLiteTimeLayout)
	require.Error(t, got.Scan(42))
}

// In a SQLite transaction a Stmt runs as the statement prepared on the
// transaction's connection; with no connection left to prepare it on (an
// in-memory database has one), it does not wait for one, and once prepared
// it is reused there. Transactions that end by rollback or a discarded
// connection leave it usable.
func TestStmtInTxOneConnection(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	db := open(t, ":memory:")
	users := register[user](t, db)
	insert := db.NewStmt(`INSERT INTO users (name, age, score, created) VALUES (?, ?, 0, ?)`, users)
	count := db.NewReadStmt(`SELECT count(*) FROM users`, users)
	inTx := func() error {
		return db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
			for range 2 {
				if _, err := insert.ExecTx(ctx, tx, "a", 1, time.Now()); err != nil {
					return err
				}
			}
			return nil
		}, users)
	}
	require.NoError(t, inTx(), "before the statement was prepared")
	_, err := insert.Exec(ctx, "b", 1, time.Now())
	require.NoError(t, err)
	require.NoError(t, inTx(), "prepared")
	require.Error(t, db.RunInTx(ctx, func(ctx context.Context, tx *dataflow.Tx) error {
		if _, err := insert.ExecTx(ctx, tx, "c", 1, time.Now()); err != nil {
			return err
		}
		return assert.AnError
	}, users))
	ended, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, db.RunInTx(ended, func(context.Context, *dataflow.Tx) error { return nil }), context.Canceled)
	require.NoError(t, inTx(), "after a rollback and an ended context")
	rows, err := count.Query(ctx)
	require.NoError(t, err)
	var n int
	require.True(t, rows.Next())
	require.NoError(t, rows.Scan(&n))
	require.NoError(t, rows.Close())
	assert.Equal(t, 7, n)
}
