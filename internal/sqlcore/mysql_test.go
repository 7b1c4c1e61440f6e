package sqlcore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/mysqldialect"

	"github.com/turnkeep/turnkeep/internal/dbtest"
	"github.com/turnkeep/turnkeep/internal/sqlcore"
)

var my = sqlcore.MySQL

func TestMySQLDialect(t *testing.T) {
	sqldb, err := sql.Open("sqlite", ":memory:")
	require.NoError(t, err)
	defer sqldb.Close()
	d, ok := sqlcore.Detect(bun.NewDB(sqldb, mysqldialect.New()))
	assert.True(t, ok)
	assert.Equal(t, my, d)
	assert.Equal(t, "mysql", d.Name())
	assert.Equal(t, "mysql", d.System())
	assert.False(t, d.ImmediateTx(), "a server's transactions are database/sql's")
	assert.False(t, d.PrepareStatements(), "the driver prepares nothing turnkeep should")
	assert.False(t, d.TimeAsText(), "DATETIME(6)")
	assert.False(t, d.NativeArrays())
	assert.False(t, d.WithoutRowID(), "InnoDB clusters every table by its key")
	assert.True(t, d.EnforcesVarcharLength())
	assert.Equal(t, "tinyint", d.NormType("BOOLEAN"))
	assert.Equal(t, "varchar", d.NormType("varchar(64)"))
	assert.Equal(t, " () VALUES ()", d.DefaultRow())
	assert.Equal(t, " DEFAULT VALUES", pg.DefaultRow())
	assert.Equal(t, " ON DUPLICATE KEY UPDATE `b` = VALUES(`b`)", d.Upsert([]string{"`a`"}, []string{"`b`"}))
	assert.Equal(t, " ON DUPLICATE KEY UPDATE `a` = `a`", d.Upsert([]string{"`a`"}, nil))
	assert.Equal(t, ` ON CONFLICT ("a") DO UPDATE SET "b" = EXCLUDED."b"`, pg.Upsert([]string{`"a"`}, []string{`"b"`}))
	assert.Equal(t, ` ON CONFLICT ("a") DO NOTHING`, pg.Upsert([]string{`"a"`}, nil))
	const q = `SELECT '?' FROM t WHERE a = ?`
	assert.Equal(t, q, my.Rebind(q))
	assert.Equal(t, "`a``b`", my.Quote("a`b"))
	assert.Equal(t, ` ESCAPE '\\'`, my.LikeEscape())
	assert.Equal(t, ` ESCAPE '\'`, pg.LikeEscape())
	assert.Equal(t, " LIMIT 18446744073709551615", my.UnboundedLimit())
	assert.Equal(t, " LIMIT -1", sqlite.UnboundedLimit())
	assert.Equal(t, "", pg.UnboundedLimit())
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", 3600))
	assert.Equal(t, at.UTC(), my.BindTime(at))
}

// MySQL errors are read from the driver's own type, wrapped or joined.
func TestMySQLErrno(t *testing.T) {
	deadlock := &mysql.MySQLError{Number: 1213, SQLState: [5]byte{'4', '0', '0', '0', '1'}, Message: "Deadlock found"}
	n, state, ok := sqlcore.MySQLErrno(fmt.Errorf("commit: %w", deadlock))
	require.True(t, ok)
	assert.Equal(t, uint16(1213), n)
	assert.Equal(t, "40001", state)
	code, ok := sqlcore.SQLState(errors.Join(errors.New("x"), deadlock))
	assert.True(t, ok)
	assert.Equal(t, "40001", code)
	assert.True(t, sqlcore.MySQLRetryable(deadlock))
	assert.True(t, sqlcore.MySQLRetryable(&mysql.MySQLError{Number: 1205, Message: "Lock wait timeout"}))
	assert.False(t, sqlcore.MySQLRetryable(&mysql.MySQLError{Number: 1062}))
	_, _, ok = sqlcore.MySQLErrno(errors.New("Error 1213 (40001): text alone is not the driver's error"))
	assert.False(t, ok)

	for _, tt := range []struct {
		err  error
		want bool
	}{
		{mysql.ErrInvalidConn, true},
		{&mysql.MySQLError{Number: 1927, SQLState: [5]byte{'7', '0', '1', '0', '0'}}, true},  // connection killed
		{&mysql.MySQLError{Number: 1047, SQLState: [5]byte{'0', '8', 'S', '0', '1'}}, true},  // wsrep not ready
		{&mysql.MySQLError{Number: 1317, SQLState: [5]byte{'7', '0', '1', '0', '0'}}, false}, // query interrupted
		{deadlock, false},
		{&mysql.MySQLError{Number: 1062, SQLState: [5]byte{'2', '3', '0', '0', '0'}}, false},
	} {
		assert.Equal(t, tt.want, sqlcore.ConnLost(tt.err), "ConnLost(%v)", tt.err)
	}
}

func openMySQL(t *testing.T) *bun.DB {
	t.Helper()
	dsn, err := dbtest.MySQLDSN(dbtest.MySQLURL(t))
	require.NoError(t, err)
	sqldb, err := sql.Open("mysql", dsn)
	require.NoError(t, err)
	db := bun.NewDB(sqldb, mysqldialect.New())
	t.Cleanup(func() { db.Close() })
	return db
}

// The MySQL lock is a lease: holders never overlap, a failing fn releases
// it, and a lease whose holder died is taken once it expires.
func TestLockedMySQL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := openMySQL(t)
	var inside, overlaps, runs atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := my.Locked(ctx, db, "k", func(c bun.IConn) error {
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				defer inside.Add(-1)
				runs.Add(1)
				_, err := c.ExecContext(ctx, "SELECT SLEEP(0.02)")
				return err
			})
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 6, runs.Load())
	assert.EqualValues(t, 0, overlaps.Load(), "two holders of one lease at once")

	boom := errors.New("boom")
	require.ErrorIs(t, my.Locked(ctx, db, "k", func(bun.IConn) error { return boom }), boom)
	require.NoError(t, my.Locked(ctx, db, "k", func(bun.IConn) error { return nil }), "a failed fn kept the lease")

	// A holder that died: its lease is taken only once it expired.
	_, err := db.ExecContext(ctx, "UPDATE "+sqlcore.LockTable+" SET owner = 'dead', expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 SECOND WHERE name = 'k'")
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, my.Locked(ctx, db, "k", func(bun.IConn) error { return nil }))
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "a live lease was taken")

	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	_, err = db.ExecContext(ctx, "UPDATE "+sqlcore.LockTable+" SET owner = 'live', expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 MINUTE WHERE name = 'k'")
	require.NoError(t, err)
	err = my.Locked(short, db, "k", func(bun.IConn) error { t.Error("ran without the lease"); return nil })
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
