package sqlcore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite"

	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

var (
	sqlite = sqlcore.SQLite
	pg     = sqlcore.Postgres
)

func openSQLite(t *testing.T) *bun.DB {
	t.Helper()
	sqldb, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "t.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	require.NoError(t, err)
	db := bun.NewDB(sqldb, sqlitedialect.New())
	t.Cleanup(func() { db.Close() })
	_, err = db.Exec("CREATE TABLE t (n INTEGER)")
	require.NoError(t, err)
	return db
}

func count(t *testing.T, db *bun.DB) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow("SELECT count(*) FROM t").Scan(&n))
	return n
}

func TestDetect(t *testing.T) {
	sqldb, err := sql.Open("sqlite", ":memory:")
	require.NoError(t, err)
	defer sqldb.Close()
	d, ok := sqlcore.Detect(bun.NewDB(sqldb, sqlitedialect.New()))
	assert.True(t, ok)
	assert.Equal(t, sqlite, d)
	assert.Equal(t, "sqlite", d.Name())
	d, ok = sqlcore.Detect(bun.NewDB(sqldb, pgdialect.New()))
	assert.True(t, ok)
	assert.Equal(t, pg, d)
	assert.Equal(t, "pg", d.Name())
}

func TestDialect(t *testing.T) {
	const q = `SELECT '?', "a?" FROM t WHERE a = ? AND b = ?`
	assert.Equal(t, q, sqlite.Rebind(q))
	assert.Equal(t, `SELECT '?', "a?" FROM t WHERE a = $1 AND b = $2`, pg.Rebind(q))
	assert.Equal(t, "?", sqlite.Placeholder(3))
	assert.Equal(t, "$3", pg.Placeholder(3))
	assert.Equal(t, "`a``b`", sqlite.Quote("a`b"))
	assert.Equal(t, `"a""b"`, pg.Quote(`a"b`))

	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	assert.Equal(t, "2026-01-02 02:04:05.000000006+00:00", sqlite.BindTime(at))
	assert.Equal(t, at.UTC(), pg.BindTime(at))
}

type state string

func (s state) Error() string    { return "pg error " + string(s) }
func (s state) SQLState() string { return string(s) }

func TestConnLost(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{io.EOF, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{state("57P01"), true},
		{state("08006"), true},
		{state("23505"), false},
		{fmt.Errorf("%w: %w", context.DeadlineExceeded, io.EOF), false},
		{errors.New("disk full"), false},
	} {
		assert.Equal(t, tt.want, sqlcore.ConnLost(tt.err), "ConnLost(%v)", tt.err)
	}
	code, ok := sqlcore.SQLState(fmt.Errorf("x: %w", state("40001")))
	assert.True(t, ok)
	assert.Equal(t, "40001", code)
}

func TestTx(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	insert := func(commit bool) error {
		conn, err := db.DB.Conn(ctx)
		require.NoError(t, err)
		require.NoError(t, sqlcore.BeginImmediate(ctx, conn, conn))
		_, err = conn.ExecContext(ctx, "INSERT INTO t VALUES (1)")
		require.NoError(t, err)
		if commit {
			return sqlcore.Commit(ctx, conn, conn)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel() // ROLLBACK runs anyway
		return sqlcore.Rollback(cctx, conn, conn)
	}
	require.NoError(t, insert(false))
	assert.Equal(t, 0, count(t, db), "rolled back")
	require.NoError(t, insert(true))
	assert.Equal(t, 1, count(t, db), "committed")

	// A ROLLBACK of a transaction SQLite already ended is not an error.
	conn, err := db.DB.Conn(ctx)
	require.NoError(t, err)
	require.NoError(t, sqlcore.BeginImmediate(ctx, conn, conn))
	_, err = conn.ExecContext(ctx, "ROLLBACK")
	require.NoError(t, err)
	assert.NoError(t, sqlcore.Rollback(ctx, conn, conn))
	assert.Equal(t, 0, db.Stats().InUse, "a connection was not released")
}

func TestLocked(t *testing.T) {
	ctx := context.Background()
	db := openSQLite(t)
	insert := func(c bun.IConn) error {
		_, err := c.ExecContext(ctx, "INSERT INTO t VALUES (1)")
		return err
	}
	boom := errors.New("boom")
	err := sqlite.Locked(ctx, db, "k", func(c bun.IConn) error { return errors.Join(insert(c), boom) })
	assert.ErrorIs(t, err, boom)
	assert.Panics(t, func() {
		_ = sqlite.Locked(ctx, db, "k", func(c bun.IConn) error { _ = insert(c); panic("fn") })
	})
	assert.Equal(t, 0, count(t, db), "a failed or panicking fn left rows")
	require.NoError(t, sqlite.Locked(ctx, db, "k", insert))
	assert.Equal(t, 1, count(t, db))
	assert.Equal(t, 0, db.Stats().InUse, "a connection was not released")
}

type good struct {
	ID int64 `bun:",pk"`
}

type bad struct {
	ID int64 `bun:",pk,nosuchoption,type:"`
	X  int   `bun:"x,rel:has-one"`
}

type empty struct {
	bun.BaseModel `bun:"table:empty"`
}

func TestModels(t *testing.T) {
	db := openSQLite(t)
	var m sqlcore.Models
	tbl, err := m.Table(db, reflect.TypeFor[good]())
	require.NoError(t, err)
	assert.True(t, sqlcore.HasColumn(tbl, "id"))
	assert.False(t, sqlcore.HasColumn(tbl, "nope"))

	_, err = m.Table(db, reflect.TypeFor[empty]())
	assert.ErrorContains(t, err, "has no columns")

	_, first := m.Table(db, reflect.TypeFor[bad]())
	require.Error(t, first, "bun built a malformed model")
	_, again := m.Table(db, reflect.TypeFor[bad]())
	assert.Equal(t, first, again, "the verdict on a malformed model was not remembered")
}
